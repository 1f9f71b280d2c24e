//! `labeller`: labels contacts by keyword and pattern rules.

use flowgate::plugin::Action;
use flowgate::runtime::Call;
use flowgate_testkit::event::{NOW, message_event};
use flowgate_testkit::guests::{load, shared_runtime};

use crate::first_party::{Harness, contact};

const RULES: &str = r#"[
  {"label": "pricing", "keywords": ["price", "quanto custa"], "patterns": ["\\bquote\\b"]},
  {"label": "complaint", "keywords": ["refund", "broken"]},
  {"keywords": ["problem solved"], "remove": ["complaint"]}
]"#;

#[test]
fn labeller_adds_and_removes_labels_by_rules() {
    let mut labeller = Harness::new("labeller", &[("rules", RULES)]);
    assert_eq!(
        labeller.message(&contact(&[]), "Quanto CUSTA o frete?", NOW, true),
        vec![Action::AddLabel {
            label: "pricing".into()
        }]
    );
    assert_eq!(
        labeller.message(
            &contact(&["complaint"]),
            "problem solved, thank you",
            NOW,
            true
        ),
        vec![Action::RemoveLabel {
            label: "complaint".into()
        }]
    );
    assert_eq!(
        labeller.message(&contact(&["pricing"]), "a quote please", NOW, true),
        vec![]
    );
}

#[test]
fn labeller_reports_bad_rules_as_invalid_config() {
    let runtime = shared_runtime();
    let plugin = load(runtime, "labeller");
    let event = message_event(Some("hi"), &[("rules", "[{\"label\": 1}]")]);
    let failure = runtime.invoke(&plugin, Call::new(event)).unwrap_err();
    assert_eq!(failure.error.kind(), "invalid-config");
}
