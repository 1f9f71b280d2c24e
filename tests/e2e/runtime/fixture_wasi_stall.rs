//! `fixture-wasi-stall`: a `describe()` that waits on a WASI pollable is
//! stopped at its deadline when the plugin loads.

use std::time::{Duration, Instant};

use flowgate::runtime::{CallError, LoadError};
use flowgate_testkit::guests::{component, shared_runtime};

#[test]
fn a_describe_that_waits_is_stopped_at_its_deadline_when_the_plugin_loads() {
    let runtime = shared_runtime();
    let started = Instant::now();
    let error = runtime.load(&component("fixture-wasi-stall")).unwrap_err();
    let elapsed = started.elapsed();
    match &error {
        LoadError::Describe(CallError::Deadline { deadline_ms }) => {
            assert_eq!(*deadline_ms, runtime.limits().deadline_ms)
        }
        other => panic!("expected describe() to miss its deadline, got {other}"),
    }
    // Compiling the small component and the call, not the ten seconds the
    // guest asked to wait.
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}
