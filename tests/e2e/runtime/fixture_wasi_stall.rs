//! `fixture-wasi-stall`: a `describe()` that waits on WASI.
//!
//! Placeholder so that `foreach_guest!` compiles: the guest's component
//! test (its `describe()` is stopped at the call's deadline when the plugin
//! loads) is still in tests/e2e/sandbox.rs, which the sandbox branch's test
//! port moves into this target.
