use std::fmt;

use crate::wit::flowgate::plugin::types as wit;

/// What a plugin asks the host to do.
///
/// The host applies actions in order after checking each one against the
/// manifest's capabilities, the tenant's grants, the contact's opt-out,
/// restriction and consent, and WhatsApp's rules. A refused action is dropped
/// and audited; the others still apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a text to the contact: at most 4096 characters, only while the
    /// service window is open ([`Message::service_window_open`](crate::Message::service_window_open)).
    Reply(String),
    /// Add a label to the contact (at most 64 characters).
    AddLabel(String),
    /// Remove a label from the contact.
    RemoveLabel(String),
    /// Set the contact's lead score, 0 to 100, with a reason for humans.
    SetLeadScore {
        /// 0 (cold) to 100 (ready to buy).
        score: u8,
        /// Why, in a short sentence.
        reason: String,
    },
    /// Hand the conversation to a human, with a note (at most 1024 characters).
    HandOff(String),
}

impl Action {
    /// A text reply.
    pub fn reply(text: impl Into<String>) -> Action {
        Action::Reply(text.into())
    }

    /// Add a label.
    pub fn add_label(label: impl Into<String>) -> Action {
        Action::AddLabel(label.into())
    }

    /// Remove a label.
    pub fn remove_label(label: impl Into<String>) -> Action {
        Action::RemoveLabel(label.into())
    }

    /// Set the lead score; scores above 100 are clamped to 100.
    pub fn lead_score(score: u8, reason: impl Into<String>) -> Action {
        Action::SetLeadScore {
            score: score.min(100),
            reason: reason.into(),
        }
    }

    /// Hand the conversation to a human.
    pub fn hand_off(note: impl Into<String>) -> Action {
        Action::HandOff(note.into())
    }
}

impl From<Action> for wit::Action {
    fn from(action: Action) -> Self {
        match action {
            Action::Reply(text) => wit::Action::Reply(text),
            Action::AddLabel(label) => wit::Action::AddLabel(label),
            Action::RemoveLabel(label) => wit::Action::RemoveLabel(label),
            Action::SetLeadScore { score, reason } => {
                wit::Action::SetLeadScore(wit::LeadScore { score, reason })
            }
            Action::HandOff(note) => wit::Action::HandOff(note),
        }
    }
}

/// Why a plugin could not handle an event. The host records it and the
/// contact sees nothing; repeated errors open the installation's circuit
/// breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// The installation's configuration is unusable: say which key and why.
    /// The tenant sees this message.
    InvalidConfig(String),
    /// Anything else.
    Failed(String),
}

impl PluginError {
    /// A configuration error.
    pub fn invalid_config(message: impl Into<String>) -> PluginError {
        PluginError::InvalidConfig(message.into())
    }

    /// Any other failure.
    pub fn failed(message: impl Into<String>) -> PluginError {
        PluginError::Failed(message.into())
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginError::InvalidConfig(message) => write!(f, "invalid configuration: {message}"),
            PluginError::Failed(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for PluginError {}

impl From<PluginError> for wit::PluginError {
    fn from(error: PluginError) -> Self {
        match error {
            PluginError::InvalidConfig(message) => wit::PluginError::InvalidConfig(message),
            PluginError::Failed(message) => wit::PluginError::Failed(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lead_score_is_clamped() {
        assert_eq!(
            Action::lead_score(250, "eager"),
            Action::SetLeadScore {
                score: 100,
                reason: "eager".into()
            }
        );
    }
}
