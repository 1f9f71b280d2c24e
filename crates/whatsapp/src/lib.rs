//! The WhatsApp Cloud API, as flowgate speaks it: webhook bodies in
//! ([`signature`] checked first, then [`payload`] parsed), messages out
//! ([`client`]), and a local [`fake`] of the Cloud API's send endpoint for
//! the demo and the tests.
//!
//! Nothing here knows about tenants, contacts or plugins: the host maps a
//! delivery's phone number id to a tenant's channel and its items to
//! contacts.
//!
//! ```
//! use flowgate_whatsapp::{payload, signature};
//!
//! let body = br#"{"object": "whatsapp_business_account", "entry": []}"#;
//! let header = signature::sign(b"app secret", body);
//! signature::verify(b"app secret", body, Some(&header))?;
//! let delivery = payload::parse(body)?;
//! assert!(delivery.items.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod client;
pub mod fake;
pub mod payload;
pub mod signature;
