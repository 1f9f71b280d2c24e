//! The smallest useful guest: labels every message `seen`. Benchmarks use it
//! to measure the host's own per-event cost.

use flowgate_sdk::{Action, Capability, Event, Manifest, Plugin, PluginError, Purpose};

pub struct Trivial;

impl Plugin for Trivial {
    fn manifest() -> Manifest {
        Manifest::builder("fixture-trivial", "0.1.0")
            .summary("Labels every message `seen`")
            .purpose(Purpose::ESSENTIAL_SERVICE_OPERATIONS)
            .capability(Capability::AddLabel)
            .label("seen")
            .build()
    }

    fn handle(_event: Event) -> Result<Vec<Action>, PluginError> {
        Ok(vec![Action::add_label("seen")])
    }
}

flowgate_sdk::export!(Trivial);
