//! What the Python (componentize-py) and JavaScript (componentize-js)
//! guests share: run through the real runtime under its deny-all WASI
//! context, loaded once per test binary (`flowgate_testkit::guests::polyglot`).
//!
//! xtask builds them only when it could install their tools. A guest it
//! could not build fails its tests, unless `FLOWGATE_ALLOW_SKIPPED_GUESTS` is
//! set: then they say so on the terminal and run nothing.

use flowgate::plugin::Action;
use flowgate::runtime::bindings::types as wit;
use flowgate::runtime::{Call, Invocation, InvokeFailure, LoadedPlugin, PluginState};
use flowgate_testkit::event::message_event;
use flowgate_testkit::guests::{polyglot, shared_runtime};

use crate::faq_js::FAQ;

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
