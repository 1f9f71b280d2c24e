//! The sandbox contains misbehaving plugins: every hostile behaviour ends as
//! a clearly reported error for that call, and the runtime keeps serving.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use flowgate::plugin::{Action, Capability, Refusal};
use flowgate::runtime::{
    BreakerTransition, Call, CallError, Invocation, InvokeFailure, Limits, LoadError, LoadedPlugin,
    Runtime, RuntimeConfig, Seed,
};

use crate::support::{NOW, component, load, message_event, shared_runtime};

fn hostile() -> (&'static Runtime, Arc<LoadedPlugin>) {
    let runtime = shared_runtime();
    (runtime, load(runtime, "fixture-hostile"))
}

fn attack(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    attack: &str,
) -> Result<Invocation, InvokeFailure> {
    runtime.invoke(
        plugin,
        Call::new(message_event(Some("hi"), &[("attack", attack)])),
    )
}

fn assert_still_serving(runtime: &Runtime, plugin: &LoadedPlugin) {
    let honest = attack(runtime, plugin, "none").expect("an honest call after a hostile one");
    assert_eq!(
        honest.actions,
        vec![Action::AddLabel {
            label: "survived".into()
        }]
    );
}

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
    // The fixture does not declare `reply`; that is checked first.
    assert_eq!(
        refusal,
        &Refusal::Undeclared {
            capability: Capability::Reply
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
            capability: Capability::Reply
        }
    );
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
fn an_undeclared_import_is_refused_at_load_naming_the_import() {
    let runtime = shared_runtime();
    let error = runtime
        .load(&component("fixture-undeclared-import"))
        .unwrap_err();
    match &error {
        LoadError::UnsupportedImports { imports } => {
            assert_eq!(imports, &vec!["fixture:undeclared/network".to_string()])
        }
        other => panic!("expected unsupported imports, got {other}"),
    }
    assert!(error.to_string().contains("`fixture:undeclared/network`"));
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
    let runtime = shared_runtime();
    let hostile_plugin = load(runtime, "fixture-hostile");
    let honest_plugin = load(runtime, "fixture-trivial");
    thread::scope(|scope| {
        let attacker = scope.spawn(|| {
            for _ in 0..3 {
                attack(runtime, &hostile_plugin, "loop").unwrap_err();
            }
        });
        for _ in 0..200 {
            let invocation = runtime
                .invoke(&honest_plugin, Call::new(message_event(Some("hi"), &[])))
                .unwrap();
            assert_eq!(invocation.actions.len(), 1);
        }
        attacker.join().unwrap();
    });
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

#[test]
fn loading_the_same_bytes_twice_reuses_the_compiled_plugin() {
    let runtime = shared_runtime();
    let a = load(runtime, "fixture-trivial");
    let b = load(runtime, "fixture-trivial");
    assert!(Arc::ptr_eq(&a, &b));
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

#[test]
fn a_describe_that_waits_is_stopped_at_its_deadline_when_the_plugin_loads() {
    let runtime = shared_runtime();
    let started = std::time::Instant::now();
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
    assert!(
        failure.elapsed < Duration::from_millis(runtime.limits().deadline_ms + 500),
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
