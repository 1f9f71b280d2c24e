//! `labeller`: labels contacts by what they write.
//!
//! The installation's `rules` config is a JSON list of rules. A rule matches
//! when the message contains one of its `keywords` (on a word boundary) or
//! one of its `patterns` (regular expressions) matches; matching ignores case
//! and diacritics, so `preco` matches "Preço". A matching rule adds its
//! `label` (if any) and removes the labels in `remove`:
//!
//! ```json
//! [
//!   {"label": "pricing", "keywords": ["price", "how much", "quanto custa"], "patterns": ["\\bquote\\b"]},
//!   {"label": "complaint", "keywords": ["refund", "broken", "defeito"]},
//!   {"keywords": ["thanks, solved", "problem solved"], "remove": ["complaint"]}
//! ]
//! ```
//!
//! It asks for the message text and, to avoid adding a label the contact
//! already has or removing one it lacks, the contact's labels. Without the
//! labels grant it still works and lets the host ignore no-op changes.
//!
//! The labels are the tenant's words, so the manifest declares the family
//! the host lets it write: lower-case words of `a`-`z`, `-` and `_`, at most
//! 32 characters (no digits: a label is never a number). A rule naming any
//! other label is refused as invalid configuration, before it could be
//! dropped by the host.

use flowgate_sdk::text::{contains_keyword, fold};
use flowgate_sdk::{
    Action, Capability, Event, Field, LabelAlphabet, Manifest, Plugin, PluginError, Purpose,
    Trigger,
};
use regex_lite::{Regex, RegexBuilder};
use serde::Deserialize;

/// Longest pattern accepted, so a tenant cannot configure a regex whose
/// compilation eats the call's fuel budget.
const MAX_PATTERN_CHARS: usize = 256;
/// Most rules accepted.
const MAX_RULES: usize = 64;
/// Longest label, in characters: the manifest's label pattern.
const MAX_LABEL_CHARS: u8 = 32;

pub struct Labeller;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    patterns: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

struct Rule {
    label: Option<String>,
    keywords: Vec<String>,
    patterns: Vec<Regex>,
    remove: Vec<String>,
}

impl Rule {
    fn matches(&self, folded: &str) -> bool {
        self.keywords.iter().any(|k| contains_keyword(folded, k))
            || self.patterns.iter().any(|p| p.is_match(folded))
    }
}

fn parse_rules(config: &str) -> Result<Vec<Rule>, PluginError> {
    let configs: Vec<RuleConfig> = serde_json::from_str(config).map_err(|e| {
        PluginError::invalid_config(format!("`rules` is not a valid rule list: {e}"))
    })?;
    if configs.len() > MAX_RULES {
        return Err(PluginError::invalid_config(format!(
            "`rules` has {} rules; at most {MAX_RULES}",
            configs.len()
        )));
    }
    // The labels the host lets this plugin write, checked here so that a
    // rule the host would drop is reported to the tenant instead.
    let manifest = Labeller::manifest();
    configs
        .into_iter()
        .enumerate()
        .map(|(index, rule)| {
            let n = index + 1;
            if rule.label.is_none() && rule.remove.is_empty() {
                return Err(PluginError::invalid_config(format!(
                    "rule {n} neither adds a `label` nor has labels to `remove`"
                )));
            }
            if rule.keywords.is_empty() && rule.patterns.is_empty() {
                return Err(PluginError::invalid_config(format!(
                    "rule {n} has no `keywords` and no `patterns`"
                )));
            }
            let patterns = rule
                .patterns
                .iter()
                .map(|pattern| compile(n, pattern))
                .collect::<Result<_, _>>()?;
            let label = rule
                .label
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty());
            for name in label.iter().chain(&rule.remove) {
                if !manifest.allows_label(name) {
                    return Err(PluginError::invalid_config(format!(
                        "rule {n}: label `{name}` is not 1 to {MAX_LABEL_CHARS} lower-case letters, \
                         `-` and `_`, the only labels this plugin may write"
                    )));
                }
            }
            Ok(Rule {
                label,
                keywords: rule
                    .keywords
                    .iter()
                    .map(|k| fold(k.trim()))
                    .filter(|k| !k.is_empty())
                    .collect(),
                patterns,
                remove: rule.remove,
            })
        })
        .collect()
}

fn compile(rule: usize, pattern: &str) -> Result<Regex, PluginError> {
    if pattern.chars().count() > MAX_PATTERN_CHARS {
        return Err(PluginError::invalid_config(format!(
            "rule {rule}: pattern longer than {MAX_PATTERN_CHARS} characters"
        )));
    }
    RegexBuilder::new(&fold_pattern(pattern))
        .case_insensitive(true)
        .size_limit(1 << 16)
        .build()
        .map_err(|e| {
            PluginError::invalid_config(format!("rule {rule}: bad pattern `{pattern}`: {e}"))
        })
}

/// Patterns run against folded (lower-case, accent-free) text; folding the
/// pattern's literals too lets tenants write `preço`. Escapes are kept as
/// written: folding `\B` or `\W` would change their meaning.
fn fold_pattern(pattern: &str) -> String {
    let mut folded = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            folded.push(c);
            folded.extend(chars.next());
        } else {
            let mut buffer = [0u8; 4];
            folded.push_str(&fold(c.encode_utf8(&mut buffer)));
        }
    }
    folded
}

impl Plugin for Labeller {
    fn manifest() -> Manifest {
        Manifest::builder("labeller", "0.1.0")
            .summary("Adds and removes contact labels by keywords and patterns in messages")
            .purpose(Purpose::ESSENTIAL_SERVICE_OPERATIONS)
            .field(Field::MessageText)
            .field(Field::Labels)
            .capability(Capability::AddLabel)
            .capability(Capability::RemoveLabel)
            .label_pattern("", LabelAlphabet::Words, MAX_LABEL_CHARS)
            .config(
                "rules",
                "JSON list of rules: {\"label\", \"keywords\": [...], \"patterns\": [...], \"remove\": [...]}",
                true,
                None,
            )
            .build()
    }

    fn handle(event: Event) -> Result<Vec<Action>, PluginError> {
        let rules = parse_rules(event.config("rules").unwrap_or("[]"))?;
        if event.trigger != Trigger::MessageReceived {
            return Ok(Vec::new());
        }
        let Some(text) = event.text() else {
            return Ok(Vec::new());
        };
        let folded = fold(text);
        let known = event.contact.labels.as_ref();
        let mut add: Vec<&str> = Vec::new();
        let mut remove: Vec<&str> = Vec::new();
        for rule in rules.iter().filter(|rule| rule.matches(&folded)) {
            if let Some(label) = &rule.label {
                add.push(label);
            }
            remove.extend(rule.remove.iter().map(String::as_str));
        }
        // A label both added and removed by this message stays: adding is
        // the more specific signal.
        remove.retain(|label| !add.contains(label));
        let mut actions = Vec::new();
        for label in dedup(add) {
            if known.is_none_or(|labels| !labels.iter().any(|l| l == label)) {
                actions.push(Action::add_label(label));
            }
        }
        for label in dedup(remove) {
            if known.is_none_or(|labels| labels.iter().any(|l| l == label)) {
                actions.push(Action::remove_label(label));
            }
        }
        Ok(actions)
    }
}

fn dedup(mut labels: Vec<&str>) -> Vec<&str> {
    let mut seen = Vec::with_capacity(labels.len());
    labels.retain(|label| {
        let fresh = !seen.contains(label);
        seen.push(*label);
        fresh
    });
    labels
}

flowgate_sdk::export!(Labeller);

#[cfg(test)]
mod tests {
    use super::*;
    use flowgate_sdk::harness::{self, Rejection, TestEvent};
    use flowgate_sdk::{DeliveryStatus, MessageKind};

    const RULES: &str = r#"[
        {"label": "pricing", "keywords": ["price", "how much", "quanto custa", "preço"], "patterns": ["\\bquote\\b"]},
        {"label": "complaint", "keywords": ["refund", "broken"]},
        {"keywords": ["problem solved"], "remove": ["complaint"]}
    ]"#;

    fn run(text: &str, labels: &[&str]) -> Result<Vec<Action>, Rejection> {
        harness::run::<Labeller>(
            TestEvent::message(text)
                .labels(labels.iter().copied())
                .config("rules", RULES),
        )
    }

    #[test]
    fn keywords_match_ignoring_case_and_diacritics() {
        assert_eq!(
            run("QUANTO CUSTA?", &[]).unwrap(),
            vec![Action::add_label("pricing")]
        );
        assert_eq!(
            run("qual o preco?", &[]).unwrap(),
            vec![Action::add_label("pricing")]
        );
        assert_eq!(
            run("Prices please", &[]).unwrap(),
            vec![Action::add_label("pricing")]
        );
    }

    #[test]
    fn patterns_match_the_folded_text() {
        assert_eq!(
            run("Can I get a QUOTE?", &[]).unwrap(),
            vec![Action::add_label("pricing")]
        );
        assert_eq!(run("quoted", &[]).unwrap(), vec![]);
    }

    #[test]
    fn pattern_escapes_keep_their_meaning() {
        assert_eq!(fold_pattern(r"Preço\B\W"), r"preco\B\W");
        let rules = r#"[{"label": "order-number", "patterns": ["\\bORD-\\d{4}\\b"]}]"#;
        let run = |text| harness::run::<Labeller>(TestEvent::message(text).config("rules", rules));
        assert_eq!(
            run("my order ORD-1234 is late").unwrap(),
            vec![Action::add_label("order-number")]
        );
        assert_eq!(run("my order ORD-12345").unwrap(), vec![]);
    }

    #[test]
    fn existing_labels_are_not_added_twice_and_absent_ones_not_removed() {
        assert_eq!(run("how much is it", &["pricing"]).unwrap(), vec![]);
        assert_eq!(run("problem solved, thanks", &[]).unwrap(), vec![]);
        assert_eq!(
            run("problem solved, thanks", &["complaint"]).unwrap(),
            vec![Action::remove_label("complaint")]
        );
    }

    #[test]
    fn several_rules_can_match_one_message() {
        assert_eq!(
            run("It arrived broken, how much is a refund?", &[]).unwrap(),
            vec![Action::add_label("pricing"), Action::add_label("complaint")]
        );
    }

    #[test]
    fn without_the_labels_grant_it_still_labels() {
        let event = TestEvent::message("refund please")
            .config("rules", RULES)
            .build();
        let mut event = event;
        event.contact.labels = None;
        assert_eq!(
            Labeller::handle(event).unwrap(),
            vec![Action::add_label("complaint")]
        );
    }

    #[test]
    fn messages_without_text_and_status_updates_do_nothing() {
        let image = TestEvent::of_kind(MessageKind::Image, None).config("rules", RULES);
        assert_eq!(harness::run::<Labeller>(image).unwrap(), vec![]);
        let status = TestEvent::status(DeliveryStatus::Read).config("rules", RULES);
        assert_eq!(harness::run::<Labeller>(status).unwrap(), vec![]);
    }

    #[test]
    fn bad_configuration_is_reported_precisely() {
        let cases = [
            ("not json", "not a valid rule list"),
            (r#"[{"label":"x"}]"#, "no `keywords`"),
            (r#"[{"keywords":["a"]}]"#, "neither adds"),
            (r#"[{"label":"x","patterns":["("]}]"#, "bad pattern"),
            (
                r#"[{"label":"x","keywords":["a"],"colour":"red"}]"#,
                "unknown field",
            ),
            (
                r#"[{"label":"VIP 2024","keywords":["a"]}]"#,
                "label `VIP 2024` is not",
            ),
            (
                r#"[{"keywords":["a"],"remove":["15550001111"]}]"#,
                "label `15550001111` is not",
            ),
        ];
        for (rules, expected) in cases {
            let result = harness::run::<Labeller>(TestEvent::message("a").config("rules", rules));
            match result {
                Err(Rejection::Plugin(PluginError::InvalidConfig(message))) => {
                    assert!(message.contains(expected), "{message}")
                }
                other => panic!("{rules}: expected invalid config, got {other:?}"),
            }
        }
        let missing = harness::run::<Labeller>(TestEvent::message("a"));
        assert_eq!(missing, Err(Rejection::MissingConfig("rules".into())));
    }
}
