//! Messaging channels. WhatsApp's Cloud API is the one channel today.

// The WhatsApp channel is its own crate, below the host; re-exported to keep
// callers' paths (`flowgate::channel::whatsapp::payload`).
pub use flowgate_whatsapp as whatsapp;
