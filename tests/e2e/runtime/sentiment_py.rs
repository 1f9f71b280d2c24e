//! `sentiment-py`, written in Python: labels contacts by the sentiment of
//! their messages and keeps a tally in plugin state.

use flowgate::plugin::Capability;
use flowgate::runtime::bindings::types as wit;
use flowgate::runtime::{CallError, PluginState};
use flowgate_testkit::event::{message_event, with_labels};
use flowgate_testkit::guests::polyglot;

use crate::polyglot::{add, remove, run, run_with_state};

/// The `tally` the sentiment plugin keeps, as (positive, negative, neutral).
fn tally(state: &PluginState) -> (u64, u64, u64) {
    let raw = state.get("tally").expect("a tally in the plugin's state");
    let value: serde_json::Value = serde_json::from_slice(raw).expect("the tally is JSON");
    let count = |mood: &str| value[mood].as_u64().expect("a count");
    (count("positive"), count("negative"), count("neutral"))
}

#[test]
fn sentiment_py_describes_itself_with_the_hosts_identifiers() {
    let Some(plugin) = polyglot("sentiment-py") else {
        return;
    };
    let manifest = &plugin.manifest;
    assert_eq!(manifest.id, "sentiment");
    assert_eq!(
        manifest
            .purposes
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>(),
        ["essential.service.operations"]
    );
    assert_eq!(
        manifest
            .fields
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>(),
        ["user.content.private", "user.behavior.labels"]
    );
    assert_eq!(
        manifest.capabilities,
        [Capability::AddLabel, Capability::RemoveLabel]
    );
    let keys: Vec<(&str, bool)> = manifest
        .config
        .iter()
        .map(|k| (k.name.as_str(), k.default_value.is_some()))
        .collect();
    assert_eq!(
        keys,
        [
            ("positive-words", true),
            ("negative-words", true),
            ("negation-words", true)
        ]
    );
    // CPython needs WASI; the host gave it the deny-all context.
    assert!(plugin.uses_wasi);
}

#[test]
fn sentiment_py_labels_by_lexicon_with_negation_and_swaps_the_opposite_label() {
    let Some(plugin) = polyglot("sentiment-py") else {
        return;
    };
    // "not good" is negative, as are "WORST" and "Péssimo" (accents and case
    // ignored); the positive label the contact had goes.
    let unhappy = with_labels(
        message_event(
            Some("The delivery was not good. Honestly the WORST, péssimo!"),
            &[],
        ),
        &["positive", "vip"],
    );
    let invocation = run(&plugin, unhappy).unwrap();
    assert_eq!(invocation.actions, [add("negative"), remove("positive")]);
    // It logs the score and counts through the log import, never the text.
    let line = invocation
        .logs
        .iter()
        .find(|l| l.message == "message scored negative")
        .expect("a log line for the score");
    assert_eq!(line.level, "info");
    assert!(line.fields.contains(&("score".into(), "-3".into())));
    assert!(
        invocation
            .logs
            .iter()
            .all(|l| !l.message.contains("delivery") && l.level != "stderr")
    );

    // "not bad" flips to positive; the contact has no negative label, so
    // there is nothing to remove.
    let happy = with_labels(
        message_event(Some("Ótimo, thanks! Not bad at all"), &[]),
        &[],
    );
    assert_eq!(run(&plugin, happy).unwrap().actions, [add("positive")]);

    // Already labelled positive: nothing to add, the stale negative goes.
    let again = with_labels(
        message_event(Some("great, thank you"), &[]),
        &["positive", "negative"],
    );
    assert_eq!(run(&plugin, again).unwrap().actions, [remove("negative")]);

    // Without the labels grant it cannot know: it adds and removes, and the
    // host ignores changes that change nothing.
    let mut ungranted = message_event(Some("terrible"), &[]);
    ungranted.contact.labels = None;
    assert_eq!(
        run(&plugin, ungranted).unwrap().actions,
        [add("negative"), remove("positive")]
    );

    // Neutral text, a negation whose clause ended, media without text, and
    // a status update change no label.
    for text in [Some("Where is my order?"), Some("No. It was good"), None] {
        let invocation = run(&plugin, with_labels(message_event(text, &[]), &[])).unwrap();
        let expected = if text == Some("No. It was good") {
            vec![add("positive")]
        } else {
            vec![]
        };
        assert_eq!(invocation.actions, expected, "{text:?}");
    }
    let mut status = message_event(None, &[]);
    status.trigger = wit::Trigger::StatusUpdate;
    status.message = None;
    status.status = Some(wit::StatusView {
        status: wit::DeliveryStatus::Read,
        at: status.now,
    });
    assert_eq!(run(&plugin, status).unwrap().actions, []);
}

#[test]
fn sentiment_py_keeps_a_running_tally_per_contact_in_state() {
    let Some(plugin) = polyglot("sentiment-py") else {
        return;
    };
    let first = run(&plugin, message_event(Some("This is great"), &[])).unwrap();
    assert_eq!(tally(&first.state), (1, 0, 0));
    assert!(first.state.changes().contains_key("tally"));

    // The next event starts from what the first one wrote, as the service
    // loads it from the store: a fresh instance remembers nothing itself.
    let second = run_with_state(
        &plugin,
        message_event(Some("but the app is slow"), &[]),
        PluginState::new(first.state.merged()),
    )
    .unwrap();
    assert_eq!(tally(&second.state), (1, 1, 0));
    let third = run_with_state(
        &plugin,
        message_event(Some("ok"), &[]),
        PluginState::new(second.state.merged()),
    )
    .unwrap();
    assert_eq!(tally(&third.state), (1, 1, 1));
    assert_eq!(third.actions, []);
}

#[test]
fn sentiment_py_lexicon_is_configurable_and_bad_lists_are_reported() {
    let Some(plugin) = polyglot("sentiment-py") else {
        return;
    };
    let config = [
        ("positive-words", "sucesso, Rápido"),
        ("negative-words", "fracasso"),
        ("negation-words", "nada"),
    ];
    let custom = |text: &str| {
        run(
            &plugin,
            with_labels(message_event(Some(text), &config), &[]),
        )
        .unwrap()
        .actions
    };
    assert_eq!(custom("Foi um SUCESSO!"), [add("positive")]);
    assert_eq!(custom("nada rápido"), [add("negative")]);
    // The defaults no longer apply.
    assert_eq!(custom("great"), []);

    for (config, expected) in [
        (
            [("positive-words", "good"), ("negative-words", "good, bad")],
            "both positive and negative: good",
        ),
        (
            [("positive-words", "very good"), ("negative-words", "bad")],
            "is not a single word",
        ),
        (
            [("positive-words", " , "), ("negative-words", "bad")],
            "`positive-words` lists no words",
        ),
    ] {
        let failure = run(&plugin, message_event(Some("good"), &config)).unwrap_err();
        match &failure.error {
            CallError::InvalidConfig { message } => {
                assert!(message.contains(expected), "{message}")
            }
            other => panic!("expected invalid configuration, got {other:?}"),
        }
        assert!(failure.to_string().contains("plugin `sentiment`"));
    }
}
