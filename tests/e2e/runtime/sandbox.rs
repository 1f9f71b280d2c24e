//! The sandbox contains misbehaving plugins: every hostile behaviour ends as
//! a clearly reported error for that call, and the runtime keeps serving
//! other calls, other plugins and other installations.
//! `fixture-hostile` misbehaves on request (its `attack` config key).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use flowgate::plugin::{Action, Refusal};
use flowgate::runtime::{
    BreakerTransition, Call, CallError, Invocation, InvokeFailure, Limits, LoadError, LoadedPlugin,
    Runtime, RuntimeConfig,
};
use flowgate_testkit::event::message_event;
use flowgate_testkit::guests::{load, shared_runtime};

pub fn hostile() -> (&'static Runtime, Arc<LoadedPlugin>) {
    let runtime = shared_runtime();
    (runtime, load(runtime, "fixture-hostile"))
}

pub fn attack(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    attack: &str,
) -> Result<Invocation, InvokeFailure> {
    runtime.invoke(
        plugin,
        Call::new(message_event(Some("hi"), &[("attack", attack)])),
    )
}

pub fn assert_still_serving(runtime: &Runtime, plugin: &LoadedPlugin) {
    let honest = attack(runtime, plugin, "none").expect("an honest call after a hostile one");
    assert_eq!(
        honest.actions,
        vec![Action::AddLabel {
            label: "survived".into()
        }]
    );
}

#[test]
fn garbage_bytes_are_not_a_component() {
    let runtime = shared_runtime();
    assert!(matches!(
        runtime.load(b"\0asm garbage"),
        Err(LoadError::Invalid(_))
    ));
    assert!(matches!(runtime.load(b""), Err(LoadError::Invalid(_))));
}

#[test]
fn the_deadline_stops_what_fuel_would_not() {
    // Fuel high enough to run for minutes: only the epoch deadline ends it.
    let runtime = Runtime::new(RuntimeConfig {
        limits: Limits {
            fuel: u64::MAX / 4,
            deadline_ms: 50,
            ..Limits::default()
        },
        max_instances: 4,
    })
    .unwrap();
    let plugin = load(&runtime, "fixture-hostile");
    let failure = attack(&runtime, &plugin, "loop").unwrap_err();
    assert_eq!(failure.error, CallError::Deadline { deadline_ms: 50 });
    assert!(failure.elapsed >= Duration::from_millis(50));
    assert!(
        failure.elapsed < Duration::from_secs(2),
        "{:?}",
        failure.elapsed
    );
}

#[test]
fn a_hostile_call_does_not_stall_honest_calls_on_other_threads() {
    // An endless loop that only the deadline ends: it holds a call for a
    // whole second, long enough to see whether other calls wait for it.
    let deadline = Duration::from_millis(1_000);
    let runtime = Runtime::new(RuntimeConfig {
        limits: Limits {
            fuel: u64::MAX / 4,
            deadline_ms: deadline.as_millis() as u64,
            ..Limits::default()
        },
        max_instances: 4,
    })
    .unwrap();
    let hostile_plugin = load(&runtime, "fixture-hostile");
    let honest_plugin = load(&runtime, "fixture-trivial");
    let hostile_running = AtomicBool::new(true);
    let (started, failure, honest) = thread::scope(|scope| {
        let attacker = scope.spawn(|| {
            let started = Instant::now();
            let failure = attack(&runtime, &hostile_plugin, "loop").unwrap_err();
            hostile_running.store(false, Ordering::SeqCst);
            (started, failure)
        });
        // Honest calls, one after the other, for as long as the hostile
        // one runs: when each started, and how long it took.
        let mut honest = Vec::new();
        while hostile_running.load(Ordering::SeqCst) {
            let at = Instant::now();
            let invocation = runtime
                .invoke(&honest_plugin, Call::new(message_event(Some("hi"), &[])))
                .unwrap();
            assert_eq!(invocation.actions.len(), 1);
            honest.push((at, at.elapsed()));
        }
        let (started, failure) = attacker.join().unwrap();
        (started, failure, honest)
    });
    assert_eq!(
        failure.error,
        CallError::Deadline {
            deadline_ms: deadline.as_millis() as u64
        }
    );
    let ended = started + failure.elapsed;
    // The calls made while the hostile call ran, start to finish.
    let mut overlapping: Vec<Duration> = honest
        .iter()
        .filter(|(at, took)| *at >= started && *at + *took <= ended)
        .map(|(_, took)| *took)
        .collect();
    overlapping.sort();
    let (median, slowest) = match overlapping.as_slice() {
        [] => (Duration::ZERO, Duration::ZERO),
        sorted => (sorted[sorted.len() / 2], sorted[sorted.len() - 1]),
    };
    eprintln!(
        "{} honest calls during a {:?} hostile call: median {median:?}, slowest {slowest:?}",
        overlapping.len(),
        failure.elapsed
    );
    // A trivial call takes a fraction of a millisecond. A runtime that made
    // honest calls wait for the hostile one would complete none while it ran;
    // one that merely slowed them down would show in their latency. The
    // bounds leave room for a loaded machine (measured idle: thousands of
    // calls, a median under 0.1 ms, the slowest a few tens of ms).
    assert!(
        overlapping.len() >= 20,
        "only {} honest calls completed while the hostile call ran ({:?})",
        overlapping.len(),
        failure.elapsed
    );
    assert!(
        median < Duration::from_millis(20),
        "honest calls took {median:?} (median) while the hostile call ran"
    );
    assert!(
        slowest < deadline / 2,
        "an honest call took {slowest:?} while the hostile call ran"
    );
}

#[test]
fn the_circuit_breaker_disables_a_failing_installation_only() {
    let runtime = Runtime::new(RuntimeConfig {
        limits: Limits {
            breaker_failures: 3,
            breaker_cooldown_secs: 3600,
            ..Limits::default()
        },
        max_instances: 4,
    })
    .unwrap();
    let plugin = load(&runtime, "fixture-hostile");
    let call = |installation: &str, attack: &str| {
        runtime.invoke(
            &plugin,
            Call::new(message_event(Some("hi"), &[("attack", attack)])).installation(installation),
        )
    };
    assert!(call("bad", "panic").unwrap_err().breaker.is_none());
    assert!(call("bad", "error").unwrap_err().breaker.is_none());
    let third = call("bad", "panic").unwrap_err();
    assert_eq!(
        third.breaker,
        Some(BreakerTransition::Opened {
            consecutive_failures: 3
        })
    );
    // Now even an honest call on that installation is refused without running.
    let refused = call("bad", "none").unwrap_err();
    assert!(matches!(refused.error, CallError::BreakerOpen { .. }));
    assert_eq!(refused.fuel, 0);
    // Another installation of the same plugin is unaffected.
    assert!(call("good", "none").is_ok());
}

#[test]
fn a_breaker_lets_a_trial_call_through_after_the_cooldown() {
    let runtime = Runtime::new(RuntimeConfig {
        limits: Limits {
            breaker_failures: 1,
            breaker_cooldown_secs: 0,
            ..Limits::default()
        },
        max_instances: 4,
    })
    .unwrap();
    let plugin = load(&runtime, "fixture-hostile");
    let call = |attack: &str| {
        runtime.invoke(
            &plugin,
            Call::new(message_event(Some("hi"), &[("attack", attack)])).installation("i"),
        )
    };
    assert!(call("error").unwrap_err().breaker.is_some());
    let trial = call("none").unwrap();
    assert_eq!(trial.breaker, Some(BreakerTransition::Closed));
}

/// The labels a probe added, in order; any other action fails the test.
///
/// A probe's readings of its clocks and random sources (long numbers and
/// hex) are labels no manifest rule can allow: the runtime refuses them as
/// undeclared, and reports each with its refusal, after the labels it let
/// through. The probes add the labels their manifests allow first, so the
/// two lists in turn are the order the probe added them in.
pub fn labels(invocation: &Invocation) -> Vec<String> {
    let label = |action: &Action| match action {
        Action::AddLabel { label } => label.clone(),
        other => panic!("unexpected {other:?}"),
    };
    let allowed = invocation.actions.iter().map(label);
    let refused = invocation.refused.iter().map(|(action, why)| {
        assert_eq!(*why, Refusal::UndeclaredLabel, "{action:?}");
        label(action)
    });
    allowed.chain(refused).collect()
}

/// The label starting with `prefix`, without it.
pub fn reading<'a>(labels: &'a [String], prefix: &str) -> &'a str {
    labels
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` label in {labels:?}"))
}

/// What the labels from `from` on are readings of: their prefixes, up to
/// the first `:` (the value after it changes from call to call).
pub fn readings_from(labels: &[String], from: usize) -> Vec<&str> {
    labels[from..]
        .iter()
        .map(|l| l.split_once(':').map_or(l.as_str(), |(name, _)| name))
        .collect()
}
