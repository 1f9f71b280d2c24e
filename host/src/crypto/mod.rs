//! Encryption at rest: AES-SIV keys, sealing, key wrapping, and the derived
//! keys for lookup hashes and pseudonyms.
//!
//! Three key levels (see [`keyring`]): the operator's master key wraps one
//! random key per tenant, which wraps one random key per contact. Every
//! record is sealed with AES-SIV under a random nonce and with associated
//! data naming its tenant, kind and key, so a ciphertext copied to another
//! place does not open. Identifiers used for lookups (phone numbers, BSUIDs)
//! are stored only as keyed hashes.

pub mod contact_keys;
pub mod key_store;
pub mod keyring;
pub mod sled_key_store;
pub mod spool;

use std::fmt;

use aes_siv::aead::KeyInit;
use aes_siv::siv::Aes256Siv;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub use key_store::{KeySpace, KeyStore, KeyStoreError};
pub use keyring::{KeyRing, KeyRingError, TenantKeys};
pub use sled_key_store::SledKeyStore;
// Hex lives in its own crate, below every crate that writes bytes as text;
// re-exported here to keep callers' paths (`flowgate::crypto::to_hex`).
pub use flowgate_hex::{decode_hex, from_hex, from_lower_hex, to_hex};

/// AES-256-SIV takes a 512-bit key (two AES-256 keys: MAC and CTR).
pub const KEY_LEN: usize = 64;
const NONCE_LEN: usize = 16;
/// What sealing adds to a plaintext: the nonce and the synthetic IV.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + 16;

/// A sealed value or wrapped key did not open: wrong key, wrong associated
/// data (moved to another tenant, kind or record), or tampered bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ciphertext does not open with this key and context")]
pub struct OpenError;

/// A 512-bit secret key. Zeroed on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretKey([u8; KEY_LEN]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.id())
    }
}

/// A short public identifier of a key (a hash of it), to record which key
/// wrapped what without revealing the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Random bytes from a cryptographically secure generator: the thread's
/// ChaCha generator, seeded from the operating system and reseeded
/// periodically. Sealing draws a nonce per record, and a system call per
/// nonce was measured as a visible share of a contact upsert.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use rand::RngCore;
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> SecretKey {
        SecretKey(random_bytes())
    }

    /// A key from raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> SecretKey {
        SecretKey(bytes)
    }

    /// The raw bytes (for writing a generated key to its file).
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Its public identifier.
    pub fn id(&self) -> KeyId {
        let hash = blake3::derive_key("flowgate 2026 key id", &self.0);
        let mut id = [0u8; 8];
        id.copy_from_slice(&hash[..8]);
        KeyId(id)
    }

    fn cipher(&self) -> Aes256Siv {
        Aes256Siv::new_from_slice(&self.0).expect("a 64-byte key fits AES-256-SIV")
    }

    /// Seal `plaintext` under a random nonce, bound to `context` (associated
    /// data). Output: nonce ‖ SIV ‖ ciphertext.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = random_bytes();
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&nonce);
        let sealed = self
            .cipher()
            .encrypt([context, &nonce[..]], plaintext)
            .expect("two headers are within AES-SIV's limit");
        out.extend_from_slice(&sealed);
        out
    }

    /// Open what [`SecretKey::seal`] sealed with the same `context`.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher()
            .decrypt([context, nonce], ciphertext)
            .map_err(|_| OpenError)
    }

    /// Wrap another key. Deterministic (SIV's key-wrap mode): key material
    /// is random, so no nonce is needed.
    pub fn wrap(&self, context: &[u8], key: &SecretKey) -> Vec<u8> {
        self.cipher()
            .encrypt([context], &key.0)
            .expect("one header is within AES-SIV's limit")
    }

    /// Unwrap a key wrapped with the same `context`.
    pub fn unwrap_key(&self, context: &[u8], wrapped: &[u8]) -> Result<SecretKey, OpenError> {
        let mut plain = self
            .cipher()
            .decrypt([context], wrapped)
            .map_err(|_| OpenError)?;
        let bytes: [u8; KEY_LEN] = plain.as_slice().try_into().map_err(|_| OpenError)?;
        plain.zeroize();
        Ok(SecretKey(bytes))
    }

    /// A 256-bit subkey for `purpose` (blake3 key derivation).
    pub fn derive_32(&self, purpose: &str) -> [u8; 32] {
        blake3::derive_key(purpose, &self.0)
    }

    /// A 512-bit subkey for `purpose`.
    pub fn derive(&self, purpose: &str) -> SecretKey {
        let mut hasher = blake3::Hasher::new_derive_key(purpose);
        hasher.update(&self.0);
        let mut bytes = [0u8; KEY_LEN];
        hasher.finalize_xof().fill(&mut bytes);
        SecretKey(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_context() {
        let key = SecretKey::generate();
        let sealed = key.seal(b"tenant-a/contacts/1", b"Sheena Nelson");
        assert_eq!(
            key.open(b"tenant-a/contacts/1", &sealed).unwrap(),
            b"Sheena Nelson"
        );
        assert_eq!(key.open(b"tenant-b/contacts/1", &sealed), Err(OpenError));
        assert_eq!(
            SecretKey::generate().open(b"tenant-a/contacts/1", &sealed),
            Err(OpenError)
        );
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(b"tenant-a/contacts/1", &tampered), Err(OpenError));
        assert_eq!(key.open(b"x", &sealed[..10]), Err(OpenError));
    }

    #[test]
    fn sealing_the_same_value_twice_differs() {
        let key = SecretKey::generate();
        assert_ne!(key.seal(b"c", b"same"), key.seal(b"c", b"same"));
        assert!(
            !key.seal(b"c", b"16505551234")
                .windows(11)
                .any(|w| w == b"16505551234")
        );
    }

    #[test]
    fn wrapped_keys_unwrap_only_in_their_context() {
        let outer = SecretKey::generate();
        let inner = SecretKey::generate();
        let wrapped = outer.wrap(b"tenant-a", &inner);
        assert_eq!(outer.unwrap_key(b"tenant-a", &wrapped).unwrap(), inner);
        assert!(outer.unwrap_key(b"tenant-b", &wrapped).is_err());
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_are_stable() {
        let key = SecretKey::generate();
        assert_eq!(key.derive("a"), key.derive("a"));
        assert_ne!(key.derive("a"), key.derive("b"));
        assert_ne!(key.derive_32("a"), key.derive_32("b"));
    }

    #[test]
    fn debug_never_prints_the_key() {
        let key = SecretKey::from_bytes([7; KEY_LEN]);
        assert!(!format!("{key:?}").contains("0707070707"));
    }
}
