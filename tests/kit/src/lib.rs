//! What flowgate's end-to-end tests, benchmarks and demo share, written
//! once: the guest components `cargo xtask build-guests` built
//! ([`guests`], with [`foreach_guest!`] listing every guest of the
//! repository), events for calling a plugin directly ([`event`]),
//! real-shaped WhatsApp webhooks ([`webhook`]), typed API clients
//! ([`api`]), the one tenant setup ([`setup`]), a service in this process
//! with the fake Cloud API ([`service`]) or the real binary as a process
//! ([`process`]), looking for plaintext on the disk ([`disk`]), and a real
//! NATS JetStream cluster for cluster mode ([`nats`]).
//!
//! ```no_run
//! use flowgate_testkit::setup::{Install, TenantSpec};
//! use flowgate_testkit::service::TestService;
//! use flowgate_testkit::{now, webhook};
//! use serde_json::json;
//!
//! # async fn demo() {
//! let service = TestService::start().await;
//! let shop = service
//!     .tenant_with(&TenantSpec::new("Shop", "1001").install(
//!         Install::new("auto-reply").config(json!({"faq": r#"[{"keywords": ["price"], "reply": "9.99"}]"#})),
//!     ))
//!     .await;
//! let body = webhook::text_message("1001", "wamid.1", "16505551234", "Ana", "price?", now());
//! service.deliver(&shop, &body).await;
//! service.settle().await;
//! assert_eq!(service.fake.sent()[0].text, "9.99");
//! # }
//! ```

pub mod api;
pub mod disk;
mod error;
pub mod event;
pub mod guests;
pub mod metrics;
pub mod nats;
pub mod process;
pub mod service;
pub mod setup;
pub mod status_gate;
pub mod webhook;

pub use error::Error;

/// Now, in seconds since the Unix epoch (the system clock).
pub fn now() -> u64 {
    flowgate::clock::Clock::system().now()
}
