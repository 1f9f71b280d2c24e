//! The WhatsApp Cloud API: webhook bodies in, messages out.

pub mod payload;
