//! Actions as the host validates, applies and audits them.
//!
//! The runtime checks what it can know from the plugin alone: the action is
//! within the manifest's capabilities and within size limits, and a label is
//! one the manifest's `labels` allow. The flow
//! pipeline later checks what depends on the tenant and the contact (grants,
//! opt-out, restriction, the service window).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::manifest::{Capability, Manifest};
use crate::bindings::types as wit;

/// WhatsApp's limit on a text message body, in characters.
pub const MAX_REPLY_CHARS: usize = 4096;
/// Longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 64;
/// Longest hand-off note or lead-score reason, in characters.
pub const MAX_NOTE_CHARS: usize = 1024;

/// An action a plugin asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// Send a text reply.
    Reply { text: String },
    /// Add a label to the contact.
    AddLabel { label: String },
    /// Remove a label from the contact.
    RemoveLabel { label: String },
    /// Set the contact's lead score.
    SetLeadScore { score: u8, reason: String },
    /// Hand the conversation to a human.
    HandOff { note: String },
}

/// Why the host dropped an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Refusal {
    /// The manifest does not declare the action's capability.
    #[error("the manifest does not declare the `{capability}` capability")]
    Undeclared { capability: Capability },
    /// The tenant did not grant the capability to this installation.
    #[error("the tenant did not grant the `{capability}` capability")]
    NotGranted { capability: Capability },
    /// A text over the host's limit.
    #[error("{what} is {chars} characters, the limit is {limit}")]
    TooLong {
        what: String,
        chars: usize,
        limit: usize,
    },
    /// An empty reply or label.
    #[error("{what} is empty")]
    Empty { what: String },
    /// A label the manifest's `labels` do not allow. (The label itself is
    /// not kept: it may be exactly the personal data the rule keeps out.)
    #[error("the label is not one the manifest's `labels` allow")]
    UndeclaredLabel,
    /// A lead score above 100.
    #[error("lead score {score} is above 100")]
    ScoreOutOfRange { score: u8 },
    /// The contact opted out of messages.
    #[error("the contact opted out of messages")]
    OptedOut,
    /// The contact's processing is restricted.
    #[error("the contact's processing is restricted")]
    Restricted,
    /// WhatsApp's 24-hour service window is closed.
    #[error("the 24-hour service window is closed")]
    WindowClosed,
    /// The conversation was handed to a human; automatic replies are paused.
    #[error("the conversation is with a human; automatic replies are paused")]
    HandedOff,
}

impl Action {
    /// The capability this action needs.
    pub fn capability(&self) -> Capability {
        match self {
            Action::Reply { .. } => Capability::Reply,
            Action::AddLabel { .. } => Capability::AddLabel,
            Action::RemoveLabel { .. } => Capability::RemoveLabel,
            Action::SetLeadScore { .. } => Capability::SetLeadScore,
            Action::HandOff { .. } => Capability::HandOff,
        }
    }

    /// Check the action against the manifest and the host's size limits.
    pub fn check(&self, manifest: &Manifest) -> Result<(), Refusal> {
        let capability = self.capability();
        if !manifest.allows(capability) {
            return Err(Refusal::Undeclared { capability });
        }
        match self {
            Action::Reply { text } => check_text("reply", text, MAX_REPLY_CHARS),
            Action::AddLabel { label } | Action::RemoveLabel { label } => {
                check_text("label", label, MAX_LABEL_CHARS)?;
                if !manifest.allows_label(label) {
                    return Err(Refusal::UndeclaredLabel);
                }
                Ok(())
            }
            Action::SetLeadScore { score, reason } => {
                if *score > 100 {
                    return Err(Refusal::ScoreOutOfRange { score: *score });
                }
                check_length("lead-score reason", reason, MAX_NOTE_CHARS)
            }
            Action::HandOff { note } => check_length("hand-off note", note, MAX_NOTE_CHARS),
        }
    }

    /// A one-line description without personal data, for logs and the audit
    /// trail: the kind and sizes, never the text.
    pub fn redacted(&self) -> String {
        match self {
            Action::Reply { text } => format!("reply ({} chars)", text.chars().count()),
            Action::AddLabel { label } => format!("add-label ({} chars)", label.chars().count()),
            Action::RemoveLabel { label } => {
                format!("remove-label ({} chars)", label.chars().count())
            }
            Action::SetLeadScore { score, .. } => format!("set-lead-score {score}"),
            Action::HandOff { note } => format!("hand-off ({} chars)", note.chars().count()),
        }
    }
}

fn check_text(what: &str, text: &str, limit: usize) -> Result<(), Refusal> {
    if text.trim().is_empty() {
        return Err(Refusal::Empty { what: what.into() });
    }
    check_length(what, text, limit)
}

fn check_length(what: &str, text: &str, limit: usize) -> Result<(), Refusal> {
    // Cheap bound first: a string of at most `limit` bytes has at most
    // `limit` characters; a 10 MB reply is refused without counting.
    if text.len() <= limit {
        return Ok(());
    }
    if text.len() > limit * 4 {
        return Err(Refusal::TooLong {
            what: what.into(),
            chars: text.len(),
            limit,
        });
    }
    let chars = text.chars().count();
    if chars > limit {
        return Err(Refusal::TooLong {
            what: what.into(),
            chars,
            limit,
        });
    }
    Ok(())
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Reply { text } => write!(f, "reply {text:?}"),
            Action::AddLabel { label } => write!(f, "add-label {label:?}"),
            Action::RemoveLabel { label } => write!(f, "remove-label {label:?}"),
            Action::SetLeadScore { score, reason } => {
                write!(f, "set-lead-score {score} ({reason})")
            }
            Action::HandOff { note } => write!(f, "hand-off {note:?}"),
        }
    }
}

impl From<wit::Action> for Action {
    fn from(action: wit::Action) -> Self {
        match action {
            wit::Action::Reply(text) => Action::Reply { text },
            wit::Action::AddLabel(label) => Action::AddLabel { label },
            wit::Action::RemoveLabel(label) => Action::RemoveLabel { label },
            wit::Action::SetLeadScore(score) => Action::SetLeadScore {
                score: score.score,
                reason: score.reason,
            },
            wit::Action::HandOff(note) => Action::HandOff { note },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::manifest::Purpose;

    fn manifest(capabilities: Vec<Capability>) -> Manifest {
        Manifest {
            id: "t".into(),
            version: "1.0.0".into(),
            summary: String::new(),
            purposes: vec![Purpose::parse("essential.service").unwrap()],
            fields: vec![],
            capabilities,
            config: vec![],
            labels: vec![crate::plugin::LabelRule::Exact("vip".into())],
        }
    }

    #[test]
    fn undeclared_capability_is_refused() {
        let m = manifest(vec![Capability::AddLabel]);
        let refusal = Action::Reply { text: "hi".into() }.check(&m).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::Undeclared {
                capability: Capability::Reply
            }
        );
    }

    #[test]
    fn reply_length_counts_characters_not_bytes() {
        let m = manifest(vec![Capability::Reply]);
        // 4096 two-byte characters: 8192 bytes, still within the limit.
        let ok = Action::Reply {
            text: "é".repeat(MAX_REPLY_CHARS),
        };
        assert_eq!(ok.check(&m), Ok(()));
        let long = Action::Reply {
            text: "é".repeat(MAX_REPLY_CHARS + 1),
        };
        assert!(matches!(
            long.check(&m),
            Err(Refusal::TooLong { chars: 4097, .. })
        ));
        let huge = Action::Reply {
            text: "x".repeat(10 << 20),
        };
        assert!(matches!(huge.check(&m), Err(Refusal::TooLong { .. })));
    }

    #[test]
    fn empty_texts_and_scores_over_100_are_refused() {
        let m = manifest(vec![
            Capability::Reply,
            Capability::AddLabel,
            Capability::SetLeadScore,
        ]);
        assert!(matches!(
            Action::Reply { text: "  ".into() }.check(&m),
            Err(Refusal::Empty { .. })
        ));
        assert!(matches!(
            Action::AddLabel {
                label: String::new()
            }
            .check(&m),
            Err(Refusal::Empty { .. })
        ));
        assert_eq!(
            Action::SetLeadScore {
                score: 101,
                reason: "x".into()
            }
            .check(&m),
            Err(Refusal::ScoreOutOfRange { score: 101 })
        );
    }

    #[test]
    fn labels_outside_the_declared_rules_are_refused_without_keeping_them() {
        let m = manifest(vec![Capability::AddLabel, Capability::RemoveLabel]);
        let add = |label: &str| Action::AddLabel {
            label: label.into(),
        };
        assert_eq!(add("vip").check(&m), Ok(()));
        let refusal = add("16505551234").check(&m).unwrap_err();
        assert_eq!(refusal, Refusal::UndeclaredLabel);
        assert!(!serde_json::to_string(&refusal).unwrap().contains("1650"));
        assert!(!refusal.to_string().contains("1650"));
        let remove = Action::RemoveLabel {
            label: "complaint".into(),
        };
        assert_eq!(remove.check(&m), Err(Refusal::UndeclaredLabel));
        // The size limits still come first.
        assert!(matches!(
            add(&"v".repeat(65)).check(&m),
            Err(Refusal::TooLong { .. })
        ));
    }

    #[test]
    fn redacted_form_has_no_text() {
        let action = Action::Reply {
            text: "call me on +4915551234".into(),
        };
        assert!(!action.redacted().contains("4915551234"));
    }
}
