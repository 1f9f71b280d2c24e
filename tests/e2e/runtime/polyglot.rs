//! What the Python (componentize-py) and JavaScript (componentize-js)
//! guests share: run through the real runtime under its deny-all WASI
//! context, loaded once per test binary (`flowgate_testkit::guests::polyglot`);
//! and what their interpreters' sleeps, clocks and randomness become there.
//!
//! xtask builds them only when it could install their tools. A guest it
//! could not build fails its tests, unless `FLOWGATE_ALLOW_SKIPPED_GUESTS` is
//! set: then they say so on the terminal and run nothing.

use std::time::Duration;

use flowgate::plugin::Action;
use flowgate::runtime::bindings::types as wit;
use flowgate::runtime::{
    Call, CallError, Invocation, InvokeFailure, LoadedPlugin, PluginState, Seed,
};
use flowgate_testkit::event::{NOW, message_event};
use flowgate_testkit::guests::{polyglot, shared_runtime};

use crate::faq_js::FAQ;
use crate::sandbox::{labels, reading};

pub fn run(plugin: &LoadedPlugin, event: wit::Event) -> Result<Invocation, InvokeFailure> {
    run_with_state(plugin, event, PluginState::default())
}

pub fn run_with_state(
    plugin: &LoadedPlugin,
    event: wit::Event,
    state: PluginState,
) -> Result<Invocation, InvokeFailure> {
    shared_runtime().invoke(plugin, Call::new(event).state(state))
}

pub fn add(label: &str) -> Action {
    Action::AddLabel {
        label: label.into(),
    }
}

pub fn remove(label: &str) -> Action {
    Action::RemoveLabel {
        label: label.into(),
    }
}

pub fn reply(text: &str) -> Action {
    Action::Reply { text: text.into() }
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
