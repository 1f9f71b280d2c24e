//! `fixture-trivial`, the benchmarks' smallest plugin.

use std::sync::Arc;

use flowgate_testkit::guests::{load, shared_runtime};

#[test]
fn loading_the_same_bytes_twice_reuses_the_compiled_plugin() {
    let runtime = shared_runtime();
    let a = load(runtime, "fixture-trivial");
    let b = load(runtime, "fixture-trivial");
    assert!(Arc::ptr_eq(&a, &b));
}
