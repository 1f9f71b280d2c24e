//! `fixture-wasi-probe-js`: what the deny-all WASI context leaves a
//! JavaScript plugin.

use flowgate::runtime::CallError;
use flowgate_testkit::event::message_event;
use flowgate_testkit::guests::polyglot;

use crate::polyglot::run;
use crate::sandbox::{labels, readings_from};

#[test]
fn javascript_plugins_reach_nothing_through_the_deny_all_wasi_context() {
    let Some(plugin) = polyglot("fixture-wasi-probe-js") else {
        return;
    };
    assert!(plugin.uses_wasi);
    let invocation = run(&plugin, message_event(Some("hi"), &[])).unwrap();
    let labels = labels(&invocation);
    assert_eq!(
        labels[..7],
        [
            "fetch:function",
            "websocket:absent",
            // No API reaches files, the environment or processes.
            "require:absent",
            "process:absent",
            "deno:absent",
            // The clock reads a plausible date (the event's time) and
            // Math.random() numbers in [0, 1).
            "clock:ok",
            "random:ok",
        ]
    );
    // Then the clocks and the random sources: the event's time and seeded
    // randomness (crate::polyglot checks their values).
    assert_eq!(
        readings_from(&labels, 7),
        ["date", "perf", "crypto", "math"]
    );
    // console.log and console.error land in the plugin's log, not on the
    // host's terminal.
    assert_eq!(
        invocation
            .logs
            .iter()
            .map(|l| (l.level, l.message.as_str()))
            .collect::<Vec<_>>(),
        [
            ("stdout", "probe says hello on stdout"),
            ("stderr", "probe says hello on stderr")
        ]
    );

    // `fetch` exists, but what is behind it was left out of the build: a
    // call traps, and the runtime serves the next call.
    let failure = run(&plugin, message_event(Some("hi"), &[("call", "fetch")])).unwrap_err();
    match &failure.error {
        CallError::Trapped { message } => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected a trap, got {other}"),
    }
    assert!(run(&plugin, message_event(Some("hi"), &[])).is_ok());
}
