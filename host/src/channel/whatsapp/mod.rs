//! The WhatsApp Cloud API: webhook bodies in, messages out.

pub mod client;
pub mod fake;
pub mod payload;
pub mod signature;
