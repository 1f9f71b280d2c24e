//! `faq-js`, written in JavaScript: answers frequently asked questions by
//! keyword.

use flowgate::plugin::Capability;
use flowgate::runtime::CallError;
use flowgate_testkit::event::message_event;
use flowgate_testkit::guests::polyglot;

use crate::polyglot::{reply, run};

pub const FAQ: &str = r#"[
  {"keywords": ["price", "how much", "quanto custa"], "reply": "Prices: https://shop.example/prices"},
  {"keywords": ["horário", "opening hours"], "reply": "We're open 9 to 6, {name}!"}
]"#;

#[test]
fn faq_js_replies_from_the_configured_faq_ignoring_case_and_accents() {
    let Some(plugin) = polyglot("faq-js") else {
        return;
    };
    assert_eq!(plugin.manifest.id, "faq-js");
    assert_eq!(
        plugin
            .manifest
            .fields
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>(),
        ["user.content.private", "user.name"]
    );
    assert_eq!(plugin.manifest.capabilities, [Capability::Reply]);
    assert!(plugin.uses_wasi);

    let ask = |text: &str| {
        run(&plugin, message_event(Some(text), &[("faq", FAQ)]))
            .unwrap()
            .actions
    };
    // The keyword is written with an accent, the message in capitals
    // without one; `{name}` is the profile name.
    assert_eq!(
        ask("Qual o HORARIO de vocês?"),
        [reply("We're open 9 to 6, Ana!")]
    );
    assert_eq!(
        ask("QUANTO CUSTA?"),
        [reply("Prices: https://shop.example/prices")]
    );
    // Keywords start at a word boundary and may end inside a word.
    assert_eq!(
        ask("prices?"),
        [reply("Prices: https://shop.example/prices")]
    );
    assert_eq!(ask("an unpriced item"), []);
    assert_eq!(ask("hello"), []);

    // Without the name grant the reply still reads well.
    let mut anonymous = message_event(Some("opening hours?"), &[("faq", FAQ)]);
    anonymous.contact.name = None;
    let invocation = run(&plugin, anonymous).unwrap();
    assert_eq!(invocation.actions, [reply("We're open 9 to 6, there!")]);
    let matched = invocation
        .logs
        .iter()
        .find(|l| l.message == "faq entry matched")
        .expect("a log line for the match");
    assert_eq!(matched.fields, [("entry".to_owned(), "2".to_owned())]);
}

#[test]
fn faq_js_never_replies_when_the_service_window_is_closed() {
    let Some(plugin) = polyglot("faq-js") else {
        return;
    };
    let mut event = message_event(Some("what are your opening hours?"), &[("faq", FAQ)]);
    event.message.as_mut().unwrap().service_window_open = false;
    let invocation = run(&plugin, event).unwrap();
    assert_eq!(invocation.actions, []);
    assert!(invocation.refused.is_empty());
    assert!(
        invocation
            .logs
            .iter()
            .any(|l| l.level == "debug" && l.message.contains("service window closed"))
    );
}

#[test]
fn faq_js_reports_unusable_configuration() {
    let Some(plugin) = polyglot("faq-js") else {
        return;
    };
    for (faq, expected) in [
        ("not json", "`faq` is not valid JSON"),
        (r#"{"keywords": ["a"]}"#, "must be a JSON list"),
        (
            r#"[{"keywords": "a", "reply": "b"}]"#,
            "entry 1 needs `keywords`",
        ),
        (
            r#"[{"keywords": ["a"], "reply": ""}]"#,
            "entry 1 needs a non-empty `reply`",
        ),
        (
            r#"[{"keywords": ["a"], "reply": "b", "colour": "red"}]"#,
            "unknown field `colour`",
        ),
    ] {
        let failure = run(&plugin, message_event(Some("a"), &[("faq", faq)])).unwrap_err();
        match &failure.error {
            CallError::InvalidConfig { message } => {
                assert!(message.contains(expected), "{faq}: {message}")
            }
            other => panic!("{faq}: expected invalid configuration, got {other:?}"),
        }
    }
}

#[test]
fn javascript_plugins_are_built_without_network_access() {
    let Some(plugin) = polyglot("faq-js") else {
        return;
    };
    // xtask builds with `--disable http fetch-event`: no `fetch`, so no
    // wasi:http import (which the host would refuse). What is left, stdio,
    // clocks, random and a filesystem API StarlingMonkey never exposes to
    // scripts, reaches the deny-all context.
    assert!(
        plugin
            .imports
            .iter()
            .all(|i| !i.starts_with("wasi:http/") && !i.starts_with("wasi:sockets/")),
        "{:?}",
        plugin.imports
    );
    // Every call starts the engine afresh from its build-time snapshot
    // (reading the clock and random source on the way) and still gives the
    // same answer: nothing the host denies leaks into behaviour.
    let event = message_event(Some("how much?"), &[("faq", FAQ)]);
    let first = run(&plugin, event.clone()).unwrap();
    let second = run(&plugin, event).unwrap();
    assert_eq!(first.actions, second.actions);
    assert_eq!(first.fuel, second.fuel, "fuel is deterministic per event");
}
