//! flowgate: a privacy-first, multi-tenant host for WhatsApp automation
//! plugins written as WebAssembly components.
//!
//! Where a request goes:
//! - [`channel`]: WhatsApp Cloud API webhooks in, messages out.
//! - [`view`]: the minimised, consent-checked view a plugin is shown.
//! - [`runtime`]: the sandbox plugins run in.
//! - [`plugin`]: what a plugin is to the host (manifest, actions).
//! - [`data`]: tenant data (contacts, consent, plugin state), sealed with
//!   keys from [`crypto`] and kept in a [`store`].

pub mod channel;
pub mod crypto;
pub mod data;
pub mod ids;
pub mod plugin;
pub mod runtime;
pub mod store;
pub mod view;
