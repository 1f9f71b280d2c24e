//! `fixture-wasi-probe`: a Rust guest built for WASI reaches nothing through
//! the host's deny-all WASI context, and its output is captured; its waits
//! on WASI pollables end at the call's deadline, and it sees the event's
//! time and randomness seeded per call.

use std::time::Duration;

use flowgate::runtime::{
    Call, CallError, Invocation, InvokeFailure, Limits, LoadedPlugin, Runtime, RuntimeConfig, Seed,
};
use flowgate_testkit::event::{NOW, message_event};
use flowgate_testkit::guests::{load, shared_runtime};

use crate::sandbox::{assert_still_serving, labels, reading, readings_from};

fn probe(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    wait: Option<&str>,
) -> Result<Invocation, InvokeFailure> {
    let config: Vec<(&str, &str)> = wait.map(|w| ("wait", w)).into_iter().collect();
    runtime.invoke(plugin, Call::new(message_event(Some("hi"), &config)))
}

#[test]
fn wasi_guests_run_under_a_deny_all_context_with_output_captured() {
    let runtime = shared_runtime();
    let plugin = load(runtime, "fixture-wasi-probe");
    assert!(plugin.uses_wasi);
    let invocation = probe(runtime, &plugin, None).unwrap();
    let labels = labels(&invocation);
    assert_eq!(
        labels[..5],
        ["stdout:ok", "env:0", "args:0", "preopens:0", "dns:denied"]
    );
    // Then the clocks and the random sources, checked below.
    assert_eq!(
        readings_from(&labels, 5),
        ["wall", "mono", "random", "insecure", "seed"]
    );
    let logged: Vec<(&str, &str)> = invocation
        .logs
        .iter()
        .map(|l| (l.level, l.message.as_str()))
        .collect();
    assert_eq!(
        logged,
        vec![
            ("stdout", "probe says hello on stdout"),
            ("stderr", "probe says hello on stderr")
        ]
    );
}

/// A blocking WASI call used to escape the deadline: epoch interruption
/// stops guest code, not a host call that waits, so a guest sleeping on a
/// monotonic-clock subscription held the call (and the worker thread every
/// tenant shares) for as long as it asked.
#[test]
fn a_guest_waiting_on_a_wasi_pollable_ends_within_its_deadline() {
    let runtime = shared_runtime();
    let plugin = load(runtime, "fixture-wasi-probe");
    let deadline = runtime.limits().deadline_ms;
    for wait in ["sleep", "poll-forever"] {
        let failure = probe(runtime, &plugin, Some(wait)).unwrap_err();
        assert_eq!(
            failure.error,
            CallError::Deadline {
                deadline_ms: deadline
            },
            "{wait}"
        );
        assert!(
            failure.elapsed < Duration::from_millis(deadline + 500),
            "{wait}: {:?}",
            failure.elapsed
        );
    }
    // Standard input is closed: a blocking read returns at once.
    let invocation = probe(runtime, &plugin, Some("stdin")).unwrap();
    assert_eq!(labels(&invocation), ["stdin:closed"]);
    assert_still_serving(runtime, &load(runtime, "fixture-hostile"));
}

/// WASI guests used to read the host's real clock and random source. Now
/// the wall clock reads the event's time, the monotonic clock the call's
/// own waits, and randomness comes from a seed per (installation, event).
#[test]
fn wasi_guests_read_the_events_time_and_randomness_seeded_per_call() {
    let runtime = shared_runtime();
    let plugin = load(runtime, "fixture-wasi-probe");
    let first = labels(&probe(runtime, &plugin, None).unwrap());
    assert_eq!(reading(&first, "wall:"), format!("{NOW}.000000000"));
    assert_eq!(reading(&first, "mono:"), "0");

    // The same event twice: the same randomness (so a redone event behaves
    // the same); another seed: other randomness, every source.
    let again = labels(&probe(runtime, &plugin, None).unwrap());
    assert_eq!(first, again);
    let reseeded = runtime
        .invoke(
            &plugin,
            Call::new(message_event(Some("hi"), &[])).seed(Seed([7; 32])),
        )
        .map(|i| labels(&i))
        .unwrap();
    for source in ["random:", "insecure:", "seed:"] {
        assert_ne!(
            reading(&first, source),
            reading(&reseeded, source),
            "{source}"
        );
        assert_eq!(reading(&first, source).len(), 16, "{source}");
    }

    // A sleep lets exactly the time slept pass, on both clocks, without
    // the call waiting for it.
    let slept = probe(runtime, &plugin, Some("short-sleep")).unwrap();
    let slept_labels = labels(&slept);
    assert_eq!(reading(&slept_labels, "slept:"), "100000000");
    assert_eq!(reading(&slept_labels, "wall:"), format!("{NOW}.100000000"));
    assert_eq!(reading(&slept_labels, "mono:"), "100000000");
    assert!(
        slept.elapsed < Duration::from_millis(100),
        "{:?}",
        slept.elapsed
    );

    // A busy-wait for the clock to move never sees it move: fuel or the
    // deadline ends it.
    let failure = probe(runtime, &plugin, Some("busy-wait")).unwrap_err();
    assert!(
        matches!(
            failure.error,
            CallError::OutOfFuel { .. } | CallError::Deadline { .. }
        ),
        "{}",
        failure.error
    );
    // Without the fixed clock it would spin forever; the bound leaves a
    // loaded machine room (the sleep tests hold the tight margin).
    assert!(
        failure.elapsed < Duration::from_millis(runtime.limits().deadline_ms + 1_500),
        "{:?}",
        failure.elapsed
    );
}

#[test]
fn describe_sees_the_unix_epoch_and_a_fixed_seed() {
    let runtime = shared_runtime();
    let plugin = load(runtime, "fixture-wasi-probe");
    let summary = &plugin.manifest.summary;
    assert!(
        summary.contains("described at 0 with "),
        "describe() read a clock: {summary}"
    );
    // Another runtime, another load: the same manifest, randomness
    // included.
    let other = Runtime::new(RuntimeConfig {
        limits: Limits::default(),
        max_instances: 4,
    })
    .unwrap();
    assert_eq!(
        load(&other, "fixture-wasi-probe").manifest.summary,
        *summary
    );
}
