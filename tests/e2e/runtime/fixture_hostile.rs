//! `fixture-hostile`: each misbehaviour it performs on request is
//! contained and reported for that call, and the next honest call is
//! served.

use flowgate::plugin::action::MAX_REPLY_CHARS;
use flowgate::plugin::{Action, Capability, Refusal};
use flowgate::runtime::{CallError, Limits, Runtime, RuntimeConfig};
use flowgate_testkit::guests::load;

use crate::sandbox::{assert_still_serving, attack, hostile};

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let (runtime, plugin) = hostile();
    let failure = attack(runtime, &plugin, "loop").unwrap_err();
    assert_eq!(
        failure.error,
        CallError::OutOfFuel {
            budget: runtime.limits().fuel
        }
    );
    assert_eq!(failure.fuel, runtime.limits().fuel);
    assert_eq!(failure.plugin, "fixture-hostile");
    assert!(
        failure
            .to_string()
            .starts_with("plugin `fixture-hostile` ran out of fuel")
    );
    assert_still_serving(runtime, &plugin);
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    let (runtime, plugin) = hostile();
    let failure = attack(runtime, &plugin, "alloc").unwrap_err();
    assert_eq!(
        failure.error,
        CallError::MemoryLimit {
            limit_bytes: runtime.limits().memory_bytes
        }
    );
    assert_still_serving(runtime, &plugin);
}

#[test]
fn deep_recursion_traps() {
    let (runtime, plugin) = hostile();
    let failure = attack(runtime, &plugin, "recurse").unwrap_err();
    // Rust guests keep their stack in linear memory: running off its end is
    // an out-of-bounds access, or a wasm stack overflow if that comes first.
    assert!(
        matches!(&failure.error, CallError::StackOverflow)
            || matches!(&failure.error, CallError::Trapped { message } if message.contains("out of bounds")),
        "{failure}"
    );
    assert!(failure.error.is_trap());
    assert_still_serving(runtime, &plugin);
}

#[test]
fn a_panic_is_reported_with_its_message() {
    let (runtime, plugin) = hostile();
    let failure = attack(runtime, &plugin, "panic").unwrap_err();
    match &failure.error {
        CallError::Panicked { message } => {
            assert!(
                message.contains("the fixture panics on purpose"),
                "{message}"
            )
        }
        other => panic!("expected a panic, got {other}"),
    }
    assert_still_serving(runtime, &plugin);
}

#[test]
fn a_ten_megabyte_reply_is_refused_not_sent() {
    let (runtime, plugin) = hostile();
    let invocation = attack(runtime, &plugin, "huge-reply").unwrap();
    assert!(invocation.actions.is_empty());
    let [(action, refusal)] = invocation.refused.as_slice() else {
        panic!(
            "expected one refused action: {:?}",
            invocation.refused.len()
        );
    };
    assert!(matches!(action, Action::Reply { text } if text.len() == 10 << 20));
    // The fixture declares `reply`, so what refuses it is its size (counted
    // in bytes: a text this far over the limit is not counted character by
    // character).
    assert_eq!(
        refusal,
        &Refusal::TooLong {
            what: "reply".into(),
            chars: 10 << 20,
            limit: MAX_REPLY_CHARS,
        }
    );
    assert_still_serving(runtime, &plugin);
}

#[test]
fn a_forbidden_action_kind_is_dropped_and_reported() {
    let (runtime, plugin) = hostile();
    let invocation = attack(runtime, &plugin, "forbidden-action").unwrap();
    assert!(invocation.actions.is_empty());
    assert_eq!(
        invocation.refused[0].1,
        Refusal::Undeclared {
            capability: Capability::HandOff
        }
    );
}

#[test]
fn a_call_that_writes_state_then_traps_is_a_failure() {
    // The runtime hands back no state for a failed call, so the service
    // has none to store: tests/e2e/http/service.rs checks nothing is kept.
    let (runtime, plugin) = hostile();
    let failure = attack(runtime, &plugin, "state-then-trap").unwrap_err();
    match &failure.error {
        CallError::Panicked { message } => {
            assert!(message.contains("trap after writing state"), "{message}")
        }
        other => panic!("expected a panic, got {other}"),
    }
    assert_still_serving(runtime, &plugin);
}

#[test]
fn over_long_labels_and_too_many_actions_are_refused() {
    let (runtime, plugin) = hostile();
    let invocation = attack(runtime, &plugin, "long-label").unwrap();
    assert!(matches!(
        invocation.refused[0].1,
        Refusal::TooLong {
            chars: 65,
            limit: 64,
            ..
        }
    ));
    let failure = attack(runtime, &plugin, "too-many-actions").unwrap_err();
    assert_eq!(
        failure.error,
        CallError::TooManyActions {
            count: 1000,
            limit: runtime.limits().max_actions
        }
    );
}

#[test]
fn state_quota_is_an_error_the_guest_can_handle() {
    let (runtime, plugin) = hostile();
    let failure = attack(runtime, &plugin, "state-flood").unwrap_err();
    match failure.error {
        CallError::Failed { message } => {
            assert!(message.contains("32 keys per contact"), "{message}")
        }
        other => panic!("expected the guest's own error, got {other}"),
    }
}

#[test]
fn log_floods_are_capped() {
    // 100,000 log calls take a while on a loaded machine: this checks the
    // cap, not speed, so the call gets a deadline it cannot miss.
    let runtime = Runtime::new(RuntimeConfig {
        limits: Limits {
            deadline_ms: 60_000,
            ..Limits::default()
        },
        max_instances: 4,
    })
    .unwrap();
    let plugin = load(&runtime, "fixture-hostile");
    let invocation = attack(&runtime, &plugin, "log-flood").unwrap();
    assert_eq!(invocation.logs.len(), runtime.limits().max_log_lines);
    assert_eq!(
        invocation.dropped_log_lines,
        100_000 - runtime.limits().max_log_lines
    );
}

#[test]
fn every_event_gets_a_fresh_instance() {
    let (runtime, plugin) = hostile();
    for _ in 0..3 {
        let invocation = attack(runtime, &plugin, "static-counter").unwrap();
        assert_eq!(
            invocation.actions,
            vec![Action::AddLabel {
                label: "calls:1".into()
            }]
        );
    }
}

#[test]
fn fuel_is_reported_and_deterministic() {
    let (runtime, plugin) = hostile();
    let first = attack(runtime, &plugin, "none").unwrap().fuel;
    let second = attack(runtime, &plugin, "none").unwrap().fuel;
    assert!(first > 0);
    assert_eq!(first, second);
}
