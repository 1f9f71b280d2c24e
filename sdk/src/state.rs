//! A small key-value store scoped to (installation, contact).
//!
//! Every event runs in a fresh instance, so this is the only memory a plugin
//! has between events. The host encrypts it, exports it with the contact's
//! data and erases it with the contact. Writes made during a call are kept
//! only when the call succeeds.
//!
//! ```
//! use flowgate_sdk::state;
//!
//! let seen = state::get_u64("messages").unwrap_or(0) + 1;
//! state::set_u64("messages", seen).expect("state quota");
//! assert_eq!(state::get_u64("messages"), Some(seen));
//! ```
//!
//! Natively (in unit tests) the store is an in-memory map per thread; see
//! [`crate::harness`] to inspect or reset it.

use std::fmt;

/// Why the host refused a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The key or value is larger than the host allows.
    TooLarge(String),
    /// The installation stores the maximum number of keys for this contact.
    QuotaExceeded(String),
    /// The store could not be reached; try again on a later event.
    Unavailable(String),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::TooLarge(limit) => write!(f, "state entry too large ({limit})"),
            StateError::QuotaExceeded(limit) => write!(f, "state quota exceeded ({limit})"),
            StateError::Unavailable(why) => write!(f, "state unavailable: {why}"),
        }
    }
}

impl std::error::Error for StateError {}

/// Read a value; `None` when never set or deleted.
pub fn get(key: &str) -> Option<Vec<u8>> {
    backend::get(key)
}

/// Write a value, replacing any earlier one.
pub fn set(key: &str, value: &[u8]) -> Result<(), StateError> {
    backend::set(key, value)
}

/// Delete a key; deleting a missing key is not an error.
pub fn delete(key: &str) {
    backend::delete(key)
}

/// Read a UTF-8 string value; `None` when absent or not UTF-8.
pub fn get_string(key: &str) -> Option<String> {
    String::from_utf8(get(key)?).ok()
}

/// Write a string value.
pub fn set_string(key: &str, value: &str) -> Result<(), StateError> {
    set(key, value.as_bytes())
}

/// Read a `u64` written by [`set_u64`]; `None` when absent or malformed.
pub fn get_u64(key: &str) -> Option<u64> {
    let bytes: [u8; 8] = get(key)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Write a `u64` (8 bytes, little-endian).
pub fn set_u64(key: &str, value: u64) -> Result<(), StateError> {
    set(key, &value.to_le_bytes())
}

#[cfg(target_arch = "wasm32")]
mod backend {
    use super::StateError;
    use crate::wit::flowgate::plugin::state as host;

    pub fn get(key: &str) -> Option<Vec<u8>> {
        host::get(key)
    }

    pub fn set(key: &str, value: &[u8]) -> Result<(), StateError> {
        host::set(key, value).map_err(|error| match error {
            host::StateError::TooLarge(limit) => StateError::TooLarge(limit),
            host::StateError::QuotaExceeded(limit) => StateError::QuotaExceeded(limit),
            host::StateError::Unavailable(why) => StateError::Unavailable(why),
        })
    }

    pub fn delete(key: &str) {
        host::delete(key)
    }
}

/// Natively there is no host: state lives in a per-thread map, which is what
/// `cargo test` runs each test against (tests run on their own threads).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod backend {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::StateError;

    /// The host's defaults, so native tests hit the same limits as the service.
    pub(crate) const MAX_KEY_BYTES: usize = 128;
    pub(crate) const MAX_VALUE_BYTES: usize = 4096;
    pub(crate) const MAX_KEYS: usize = 32;

    thread_local! {
        pub(crate) static STATE: RefCell<BTreeMap<String, Vec<u8>>> = const { RefCell::new(BTreeMap::new()) };
    }

    pub fn get(key: &str) -> Option<Vec<u8>> {
        STATE.with(|state| state.borrow().get(key).cloned())
    }

    pub fn set(key: &str, value: &[u8]) -> Result<(), StateError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(StateError::TooLarge(format!(
                "keys up to {MAX_KEY_BYTES} bytes"
            )));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(StateError::TooLarge(format!(
                "values up to {MAX_VALUE_BYTES} bytes"
            )));
        }
        STATE.with(|state| {
            let mut state = state.borrow_mut();
            if !state.contains_key(key) && state.len() >= MAX_KEYS {
                return Err(StateError::QuotaExceeded(format!(
                    "{MAX_KEYS} keys per contact"
                )));
            }
            state.insert(key.to_owned(), value.to_vec());
            Ok(())
        })
    }

    pub fn delete(key: &str) {
        STATE.with(|state| state.borrow_mut().remove(key));
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn native_backend_enforces_host_limits() {
        assert!(matches!(
            set(&"k".repeat(200), b"v"),
            Err(StateError::TooLarge(_))
        ));
        assert!(matches!(set("k", &[0; 5000]), Err(StateError::TooLarge(_))));
        for i in 0..backend::MAX_KEYS {
            set(&format!("key-{i}"), b"v").unwrap();
        }
        assert!(matches!(
            set("one-more", b"v"),
            Err(StateError::QuotaExceeded(_))
        ));
        // Overwriting an existing key is not a new key.
        set("key-0", b"w").unwrap();
        assert_eq!(get_string("key-0").as_deref(), Some("w"));
    }

    #[test]
    fn typed_helpers_round_trip_and_reject_malformed() {
        set_u64("n", 42).unwrap();
        assert_eq!(get_u64("n"), Some(42));
        set("n", b"abc").unwrap();
        assert_eq!(get_u64("n"), None);
        delete("n");
        assert_eq!(get("n"), None);
    }
}
