//! `fixture-trivial`, the benchmarks' smallest plugin.

use std::sync::Arc;

use flowgate::plugin::Action;
use flowgate::runtime::Call;
use flowgate_testkit::event::message_event;
use flowgate_testkit::guests::{load, shared_runtime};

#[test]
fn trivial_labels_every_message_seen() {
    let runtime = shared_runtime();
    let plugin = load(runtime, "fixture-trivial");
    for text in [Some("hi"), None] {
        let invocation = runtime
            .invoke(&plugin, Call::new(message_event(text, &[])))
            .unwrap();
        assert_eq!(
            invocation.actions,
            [Action::AddLabel {
                label: "seen".into()
            }]
        );
    }
}

#[test]
fn loading_the_same_bytes_twice_reuses_the_compiled_plugin() {
    let runtime = shared_runtime();
    let a = load(runtime, "fixture-trivial");
    let b = load(runtime, "fixture-trivial");
    assert!(Arc::ptr_eq(&a, &b));
}
