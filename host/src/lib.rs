//! flowgate: a privacy-first, multi-tenant host for WhatsApp automation
//! plugins written as WebAssembly components.
//!
//! Where a request goes: [`api`] (HTTP routes) → [`service`] (the durable
//! inbox, the committer, the workers running each tenant's flow, the
//! outbox) → the pieces below.
//! - [`channel`]: WhatsApp Cloud API webhooks in, messages out.
//! - [`view`]: the minimised, consent-checked view a plugin is shown.
//! - [`runtime`] (the `flowgate-runtime` crate): the sandbox plugins run
//!   in; with [`plugin`], what a plugin is to the host (manifest, actions),
//!   and [`runtime::bindings`], the `flowgate:plugin` WIT world's types.
//! - [`data`]: tenant data (contacts, consent, plugin state), sealed with
//!   keys from [`crypto`] and kept in a [`store`].
//! - [`tenancy`]: tenants, channels, installations, API keys; [`registry`]:
//!   admitted plugins; [`audit`]: the hash-chained trail.
//! - [`console`]: the tenant console at `/console`, a second face over
//!   [`service`] beside [`api`].
//! - [`admission`]: rate limits and the failed-authentication throttle
//!   both faces apply before doing any work for a request.
//! - [`trial`]: a plugin tried on sample events (the author CLI's
//!   `plugin run`, the console's playground).
//! - [`server`]: `flowgate serve` as a library call (used by the demo and
//!   the tests).
//! - [`cluster`]: cluster mode's foundation on NATS JetStream (leases,
//!   partitions, the replicated log); not served yet.

pub mod admission;
pub mod api;
pub mod audit;
pub mod channel;
pub mod clock;
pub mod cluster;
pub mod compliance;
pub mod config;
pub mod console;
pub mod crypto;
pub mod data;
pub mod ids;
pub mod node;
pub mod registry;
pub mod server;
pub mod service;
pub mod store;
pub mod tenancy;
pub mod trial;
pub mod view;

// The plugin runtime, the plugin model and the WIT bindings are one crate
// below the host; re-exported to keep callers' paths
// (`flowgate::runtime::Runtime`, `flowgate::plugin::Manifest`,
// `flowgate::runtime::bindings::types`).
pub use flowgate_runtime as runtime;
pub use flowgate_runtime::plugin;

/// The test that keeps the modules above free of import cycles.
#[cfg(test)]
mod module_graph;
