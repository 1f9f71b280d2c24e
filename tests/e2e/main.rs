//! End-to-end tests: real components built by `cargo xtask build-guests`,
//! running in the real runtime, the real binary, and (from the service
//! issues on) the real service over HTTP.

mod support;

mod api_fuzz;
mod authoring;
mod cli;
mod compliance;
mod crash;
mod data;
mod plugins;
mod polyglot;
mod privacy;
mod sandbox;
mod service;
