//! Messaging channels. WhatsApp's Cloud API is the one channel today.

pub mod whatsapp;
