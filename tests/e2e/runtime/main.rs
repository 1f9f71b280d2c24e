//! The runtime layer: every guest component `cargo xtask build-guests`
//! built, loaded and run in the real wasmtime runtime, without the service.
//!
//! Each guest has a module of component tests named after it.

mod first_party;
mod polyglot;
mod sandbox;

mod auto_reply;
mod faq_js;
mod fixture_hostile;
mod fixture_trivial;
mod fixture_undeclared_import;
mod fixture_wasi_probe;
mod fixture_wasi_probe_py;
mod labeller;
mod lead_score;
mod sentiment_py;

