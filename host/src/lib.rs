//! flowgate: a privacy-first, multi-tenant host for WhatsApp automation
//! plugins written as WebAssembly components.
//!
//! Where a request goes:
//! - [`channel`]: WhatsApp Cloud API webhooks in, messages out.
//! - [`view`]: the minimised, consent-checked view a plugin is shown.
//! - [`runtime`]: the sandbox plugins run in.
//! - [`plugin`]: what a plugin is to the host (manifest, actions).

pub mod channel;
pub mod plugin;
pub mod runtime;
pub mod view;
