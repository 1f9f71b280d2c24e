//! A plugin whose `describe()` waits ten seconds on a WASI monotonic-clock
//! subscription before answering: admitting or loading it must fail within
//! the call's deadline, not hold the thread for ten seconds.

wit_bindgen::generate!({
    world: "fixture:wasi-stall/stall",
    // The WASI 0.2.0 package is the probe's (see its wit/deps/README.md).
    path: ["../../../wit", "../wasi-probe/wit/deps/wasi-cli@0.2.0.wasm", "wit"],
    generate_all,
});

use flowgate::plugin::types::{Capability, LabelRule};
use wasi::clocks::monotonic_clock;

struct Stall;

impl Guest for Stall {
    fn describe() -> Manifest {
        monotonic_clock::subscribe_duration(10_000_000_000).block();
        Manifest {
            id: "fixture-wasi-stall".into(),
            version: "0.1.0".into(),
            summary: "Waits ten seconds in describe() (test fixture)".into(),
            purposes: vec!["essential.service.operations".into()],
            fields: vec![],
            capabilities: vec![Capability::AddLabel],
            config: vec![],
            labels: vec![LabelRule::Exact("stalled".into())],
        }
    }

    fn handle(_event: Event) -> Result<Vec<Action>, PluginError> {
        Ok(vec![])
    }
}

export!(Stall);
