//! The three first-party plugins, as components in the real runtime, with
//! minimised views built the way the service builds them.

use std::collections::BTreeSet;

use flowgate::channel::whatsapp::payload::MessageKind;
use flowgate::plugin::{Action, DataField};
use flowgate::runtime::{Call, LoadedPlugin, PluginState, Runtime};
use flowgate::view::{self, ContactData, EventContext, MessageFacts, ProcessingState};

use crate::support::{NOW, load, shared_runtime};

struct Harness {
    runtime: &'static Runtime,
    plugin: std::sync::Arc<LoadedPlugin>,
    grants: BTreeSet<DataField>,
    config: Vec<(String, String)>,
    processing: ProcessingState,
    state: PluginState,
}

impl Harness {
    fn new(name: &str, config: &[(&str, &str)]) -> Harness {
        let runtime = shared_runtime();
        let plugin = load(runtime, name);
        let grants = plugin.manifest.fields.iter().copied().collect();
        let processing = ProcessingState::consenting_to(&plugin.manifest);
        Harness {
            runtime,
            plugin,
            grants,
            config: config
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            processing,
            state: PluginState::default(),
        }
    }

    /// Run one message and keep the plugin's state for the next.
    fn message(
        &mut self,
        contact: &ContactData,
        text: &str,
        at: u64,
        window_open: bool,
    ) -> Vec<Action> {
        let disclosure = view::disclose(&self.plugin.manifest, &self.grants, &self.processing)
            .expect("processed");
        let config = view::resolve_config(&self.plugin.manifest, &self.config).expect("config");
        let event = view::build_event(
            &disclosure,
            contact,
            EventContext {
                pseudonym: "ps_contact".into(),
                message: Some(MessageFacts {
                    kind: MessageKind::Text,
                    text: Some(text.into()),
                    received_at: at,
                    service_window_open: window_open,
                }),
                status: None,
                config,
                now: at,
                timezone: "UTC".into(),
                utc_offset_minutes: 0,
            },
        );
        let invocation = self
            .runtime
            .invoke(&self.plugin, Call::new(event).state(self.state.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(invocation.refused.is_empty(), "{:?}", invocation.refused);
        self.state = PluginState::new(invocation.state.merged());
        invocation.actions
    }
}

fn contact(labels: &[&str]) -> ContactData {
    ContactData {
        wa_id: Some("16505551234".into()),
        user_id: None,
        profile_name: Some("Sheena Nelson".into()),
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        lead_score: None,
    }
}

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
    let event = crate::support::message_event(Some("hi"), &[("rules", "[{\"label\": 1}]")]);
    let failure = runtime.invoke(&plugin, Call::new(event)).unwrap_err();
    assert_eq!(failure.error.kind(), "invalid-config");
}

#[test]
fn lead_score_accumulates_in_state_and_hands_off_once() {
    let mut scorer = Harness::new("lead-score", &[("hand-off-at", "50")]);
    let someone = contact(&[]);
    let first = scorer.message(&someone, "hello", NOW, true);
    assert!(
        matches!(first.as_slice(), [Action::SetLeadScore { score: 4, .. }]),
        "{first:?}"
    );
    let second = scorer.message(
        &someone,
        "I want to buy it, how much? Is it in stock?",
        NOW + 60,
        true,
    );
    assert!(
        matches!(second[0], Action::SetLeadScore { score: 58, .. }),
        "{second:?}"
    );
    assert!(matches!(second[1], Action::HandOff { .. }));
    let third = scorer.message(&someone, "thanks", NOW + 120, true);
    assert!(
        !third.iter().any(|a| matches!(a, Action::HandOff { .. })),
        "hands off only once: {third:?}"
    );
}

#[test]
fn lead_score_is_not_run_without_consent() {
    // Lead scoring is profiling: without the contact's consent the host
    // does not call the plugin at all, so it counts nothing.
    let scorer = Harness::new("lead-score", &[]);
    assert_eq!(
        view::disclose(
            &scorer.plugin.manifest,
            &scorer.grants,
            &ProcessingState::default()
        ),
        Err(view::NotProcessed::NoConsent {
            purpose: flowgate::plugin::Purpose::parse("personalize.profiling").unwrap()
        })
    );
}

#[test]
fn auto_reply_answers_once_per_cooldown_and_never_outside_the_window() {
    let faq = r#"[{"keywords": ["opening hours"], "reply": "Open 9-18, {name}."}]"#;
    let mut replier = Harness::new("auto-reply", &[("faq", faq), ("cooldown-minutes", "30")]);
    let someone = contact(&[]);
    assert_eq!(
        replier.message(&someone, "opening hours?", NOW, false),
        vec![],
        "window closed"
    );
    assert_eq!(
        replier.message(&someone, "opening hours?", NOW, true),
        vec![Action::Reply {
            text: "Open 9-18, Sheena Nelson.".into()
        }]
    );
    assert_eq!(
        replier.message(&someone, "opening hours?", NOW + 600, true),
        vec![]
    );
    assert_eq!(
        replier
            .message(&someone, "opening hours?", NOW + 1800, true)
            .len(),
        1
    );
}

#[test]
fn auto_reply_without_the_name_grant_does_not_learn_the_name() {
    let faq = r#"[{"keywords": ["hours"], "reply": "Hi {name}!"}]"#;
    let mut replier = Harness::new("auto-reply", &[("faq", faq)]);
    replier.grants.remove(&DataField::ProfileName);
    assert_eq!(
        replier.message(&contact(&[]), "hours?", NOW, true),
        vec![Action::Reply {
            text: "Hi there!".into()
        }]
    );
}

#[test]
fn every_first_party_plugin_declares_only_what_it_uses() {
    let runtime = shared_runtime();
    let expect = [
        ("labeller", vec![DataField::MessageText, DataField::Labels]),
        (
            "lead-score",
            vec![DataField::MessageText, DataField::Labels],
        ),
        (
            "auto-reply",
            vec![DataField::MessageText, DataField::ProfileName],
        ),
    ];
    for (name, fields) in expect {
        let plugin = load(runtime, name);
        assert_eq!(plugin.manifest.fields, fields, "{name}");
        assert!(
            !plugin.manifest.declares(DataField::PhoneNumber),
            "{name} must not ask for phone numbers"
        );
    }
}
