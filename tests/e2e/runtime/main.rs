//! The runtime layer: every guest component `cargo xtask build-guests`
//! built, loaded and run in the real wasmtime runtime, without the service.
//!
//! Each guest has a module of component tests named after it;
//! `foreach_guest!` makes this file fail to compile when a guest has none.

mod first_party;
mod polyglot;
mod sandbox;

mod auto_reply;
mod faq_js;
mod fixture_hostile;
mod fixture_trivial;
mod fixture_undeclared_import;
mod fixture_wasi_probe;
mod fixture_wasi_probe_js;
mod fixture_wasi_probe_py;
mod fixture_wasi_stall;
mod greeter;
mod labeller;
mod lead_score;
mod scaffolded;
mod sentiment_py;

/// A module named after the guest: where its component tests are.
macro_rules! assert_test_exists {
    ($guest:ident) => {
        #[expect(unused_imports, reason = "it only has to exist")]
        use self::$guest as _;
    };
}
flowgate_testkit::foreach_guest!(assert_test_exists);
