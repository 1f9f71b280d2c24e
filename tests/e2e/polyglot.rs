//! Plugins written in Python (componentize-py) and JavaScript
//! (componentize-js), run through the real runtime under its deny-all WASI
//! context: `examples/sentiment-py`, `examples/faq-js` and the WASI probe
//! `tests/guests/wasi-probe-py`.
//!
//! xtask builds them only when it could install their tools. When it could
//! not, it leaves `target/guests/<name>.skipped` with the reason, and these
//! tests say so on the terminal (past the test harness's output capture)
//! instead of failing or passing quietly.

use std::io::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use flowgate::plugin::{Action, Capability};
use flowgate::runtime::bindings::types as wit;
use flowgate::runtime::{
    Call, CallError, Invocation, InvokeFailure, LoadedPlugin, PluginState, Seed,
};

use crate::support::{NOW, guests_dir, message_event, shared_runtime};

/// The plugin compiled once for the whole test binary. Compiling an
/// interpreter takes tens of seconds, and concurrent tests loading the same
/// bytes would each compile it (the runtime caches only finished loads).
fn polyglot(name: &'static str) -> Option<Arc<LoadedPlugin>> {
    static SENTIMENT: OnceLock<Option<Arc<LoadedPlugin>>> = OnceLock::new();
    static FAQ: OnceLock<Option<Arc<LoadedPlugin>>> = OnceLock::new();
    static PROBE: OnceLock<Option<Arc<LoadedPlugin>>> = OnceLock::new();
    static PROBE_JS: OnceLock<Option<Arc<LoadedPlugin>>> = OnceLock::new();
    let cell = match name {
        "sentiment-py" => &SENTIMENT,
        "faq-js" => &FAQ,
        "fixture-wasi-probe-py" => &PROBE,
        "fixture-wasi-probe-js" => &PROBE_JS,
        other => panic!("no polyglot guest `{other}` in these tests"),
    };
    cell.get_or_init(|| {
        let dir = guests_dir();
        let component = dir.join(format!("{name}.wasm"));
        if !component.is_file() {
            if let Ok(reason) = std::fs::read_to_string(dir.join(format!("{name}.skipped"))) {
                // Straight to the terminal: libtest captures print! and
                // eprint! of passing tests, and a skip must not go unseen.
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "\n*** SKIPPED: the tests of `{name}` did not run: {} ***\n",
                    reason.trim()
                );
                return None;
            }
            panic!(
                "{}: missing, and xtask recorded no reason. Run the tests with \
                 `cargo xtask test`, or `cargo xtask build-guests` first",
                component.display()
            );
        }
        let bytes = std::fs::read(&component).expect("reading the component");
        let plugin = shared_runtime()
            .load(&bytes)
            .unwrap_or_else(|e| panic!("loading {name}: {e}"));
        Some(plugin)
    })
    .clone()
}

fn run(plugin: &LoadedPlugin, event: wit::Event) -> Result<Invocation, InvokeFailure> {
    run_with_state(plugin, event, PluginState::default())
}

fn run_with_state(
    plugin: &LoadedPlugin,
    event: wit::Event,
    state: PluginState,
) -> Result<Invocation, InvokeFailure> {
    shared_runtime().invoke(plugin, Call::new(event).state(state))
}

fn with_labels(mut event: wit::Event, labels: &[&str]) -> wit::Event {
    event.contact.labels = Some(labels.iter().map(|l| (*l).to_owned()).collect());
    event
}

fn add(label: &str) -> Action {
    Action::AddLabel {
        label: label.into(),
    }
}

fn remove(label: &str) -> Action {
    Action::RemoveLabel {
        label: label.into(),
    }
}

fn reply(text: &str) -> Action {
    Action::Reply { text: text.into() }
}

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

const FAQ: &str = r#"[
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
fn python_plugins_reach_nothing_through_the_deny_all_wasi_context() {
    let Some(plugin) = polyglot("fixture-wasi-probe-py") else {
        return;
    };
    // CPython for WASI imports sockets, files and the environment; the host
    // links them all, to a context that denies them.
    for import in ["wasi:filesystem/", "wasi:sockets/", "wasi:cli/environment"] {
        assert!(
            plugin.imports.iter().any(|i| i.starts_with(import)),
            "{import} in {:?}",
            plugin.imports
        );
    }
    let invocation = run(&plugin, message_event(Some("hi"), &[])).unwrap();
    let labels = labels(&invocation);
    assert_eq!(
        labels[..6],
        [
            // No preopened directory: not even the app's own source, which
            // was readable when the component was built.
            "file:denied:FileNotFoundError",
            "listdir:denied:FileNotFoundError",
            "env:0",
            "connect:denied:PermissionError",
            "dns:denied:LookupError",
            // Modules not imported at build time cannot be loaded later.
            "late-import:denied:ModuleNotFoundError",
        ]
    );
    // print() lands in the plugin's log, not on the host's terminal.
    assert_eq!(
        invocation
            .logs
            .iter()
            .map(|l| (l.level, l.message.as_str()))
            .collect::<Vec<_>>(),
        [("stdout", "probe says hello on stdout")]
    );
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

#[test]
fn interpreters_fit_the_default_limits_with_room_to_spare() {
    // Measured figures are in BENCHMARKS.md; this guards the margins the
    // default limits leave (a change that doubles an interpreter's cost
    // should be a decision, not a surprise).
    let runtime = shared_runtime();
    let limits = runtime.limits();
    let long = "not good at all, this is the worst! ".repeat(100);
    for (name, config) in [("sentiment-py", vec![]), ("faq-js", vec![("faq", FAQ)])] {
        let Some(plugin) = polyglot(name) else {
            continue;
        };
        let invocation = run(&plugin, message_event(Some(&long), &config)).unwrap();
        assert!(
            invocation.fuel < limits.fuel / 10,
            "{name}: {} fuel of {}",
            invocation.fuel,
            limits.fuel
        );
        assert!(
            invocation.memory_bytes < limits.memory_bytes / 2,
            "{name}: {} bytes of memory of {}",
            invocation.memory_bytes,
            limits.memory_bytes
        );
        assert!(
            plugin.describe_fuel < limits.fuel / 10,
            "{name}: describe() used {} fuel",
            plugin.describe_fuel
        );
    }
}

fn labels(invocation: &Invocation) -> Vec<String> {
    invocation
        .actions
        .iter()
        .map(|a| match a {
            Action::AddLabel { label } => label.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// The label starting with `prefix`, without it.
fn reading<'a>(labels: &'a [String], prefix: &str) -> &'a str {
    labels
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` label in {labels:?}"))
}

fn waiting(wait: &str) -> wit::Event {
    message_event(Some("hi"), &[("wait", wait)])
}

/// `time.sleep(5)` in a Python plugin, a five-second `setTimeout` awaited
/// in a JavaScript one: both used to hold the call, and the worker, for the
/// five seconds, reported afterwards as over the 500 ms deadline.
#[test]
fn python_and_javascript_sleeps_end_within_the_deadline() {
    let deadline = shared_runtime().limits().deadline_ms;
    for name in ["fixture-wasi-probe-py", "fixture-wasi-probe-js"] {
        let Some(plugin) = polyglot(name) else {
            continue;
        };
        let failure = run(&plugin, waiting("sleep")).unwrap_err();
        assert_eq!(
            failure.error,
            CallError::Deadline {
                deadline_ms: deadline
            },
            "{name}"
        );
        assert!(
            failure.elapsed < Duration::from_millis(deadline + 500),
            "{name}: {:?}",
            failure.elapsed
        );
        assert!(failure.to_string().contains("exceeded its 500 ms deadline"));
    }
}

/// Python read the host's wall clock (`time.time()`) and the operating
/// system's random source (`os.urandom`); so did JavaScript (`Date.now()`,
/// `crypto.getRandomValues`). Now: the event's time, the call's own
/// progress, and randomness seeded per (installation, event).
#[test]
fn python_and_javascript_read_the_events_time_and_seeded_randomness() {
    if let Some(python) = polyglot("fixture-wasi-probe-py") {
        let first = labels(&run(&python, message_event(Some("hi"), &[])).unwrap());
        assert_eq!(reading(&first, "wall:"), format!("{NOW}000000000"));
        assert_eq!(reading(&first, "mono:"), "0");
        let again = labels(&run(&python, message_event(Some("hi"), &[])).unwrap());
        assert_eq!(first, again, "the same event: the same readings");
        let reseeded = shared_runtime()
            .invoke(
                &python,
                Call::new(message_event(Some("hi"), &[])).seed(Seed([9; 32])),
            )
            .map(|i| labels(&i))
            .unwrap();
        for source in ["urandom:", "random:"] {
            assert_ne!(
                reading(&first, source),
                reading(&reseeded, source),
                "{source}"
            );
        }

        let slept = run(&python, waiting("short-sleep")).unwrap();
        let slept_labels = labels(&slept);
        assert_eq!(reading(&slept_labels, "slept:"), "100000000");
        assert_eq!(reading(&slept_labels, "wall:"), format!("{NOW}100000000"));
        let busy = run(&python, waiting("busy-wait")).unwrap_err();
        assert!(
            matches!(
                busy.error,
                CallError::OutOfFuel { .. } | CallError::Deadline { .. }
            ),
            "{}",
            busy.error
        );
    }
    if let Some(js) = polyglot("fixture-wasi-probe-js") {
        let first = labels(&run(&js, message_event(Some("hi"), &[])).unwrap());
        assert_eq!(reading(&first, "date:"), format!("{NOW}000"));
        let again = labels(&run(&js, message_event(Some("hi"), &[])).unwrap());
        assert_eq!(first, again, "the same event: the same readings");
        let reseeded = shared_runtime()
            .invoke(
                &js,
                Call::new(message_event(Some("hi"), &[])).seed(Seed([9; 32])),
            )
            .map(|i| labels(&i))
            .unwrap();
        assert_ne!(reading(&first, "crypto:"), reading(&reseeded, "crypto:"));

        let slept = labels(&run(&js, waiting("short-sleep")).unwrap());
        assert_eq!(reading(&slept, "date:"), format!("{}", NOW * 1000 + 100));
        let busy = run(&js, waiting("busy-wait")).unwrap_err();
        assert!(
            matches!(
                busy.error,
                CallError::OutOfFuel { .. } | CallError::Deadline { .. }
            ),
            "{}",
            busy.error
        );
    }
}
