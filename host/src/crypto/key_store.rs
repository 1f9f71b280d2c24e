//! Where the key ring keeps its wrapped keys: a small trait, so the ring
//! does not know which store holds them.
//!
//! What the ring needs is what a replicated key-value store gives: values
//! (wrapped keys, never a plain one) put, created and deleted by key, read
//! by key or by key prefix, and a durability point. The embedded
//! implementation is [`SledKeyStore`](super::sled_key_store::SledKeyStore);
//! in cluster mode the ring is replicated through a key-value bucket, with
//! these same operations ([`KvKeyStore`](crate::cluster::KvKeyStore)).
//!
//! A write is durable only after [`KeyStore::flush`] returned: the ring
//! flushes before any record sealed with a new key can be committed, and
//! after every deletion (a shredded key must stay shredded).

/// The two spaces of wrapped keys: each is its own tree (or bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeySpace {
    /// Tenant keys, by tenant id (16 bytes), wrapped by the master key and
    /// prefixed by that key's id (8 bytes).
    Tenants,
    /// Contact keys, by tenant id ‖ contact id (32 bytes), wrapped by the
    /// tenant's wrapping key.
    Contacts,
}

/// The store behind the key ring failed. Says which operation, never which
/// key.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The store's own error (the embedded store's database).
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    /// A store kept by a remote service (cluster mode's key bucket) did not
    /// answer, or refused, and retrying within its deadline did not help.
    #[error("key service: {what}")]
    Remote {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl KeyStoreError {
    /// A backend's error.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> KeyStoreError {
        KeyStoreError::Backend(Box::new(error))
    }

    /// A remote store's failure at `what` (an operation, not a key).
    pub fn remote(
        what: impl Into<String>,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> KeyStoreError {
        KeyStoreError::Remote {
            what: what.into(),
            source: Box::new(error),
        }
    }
}

/// The behaviour every [`KeyStore`] keeps, run by each implementation's
/// tests.
pub mod contract;

/// A wrapped key as stored: its key and its value.
pub type WrappedEntry = (Vec<u8>, Vec<u8>);

/// The storage of wrapped keys.
pub trait KeyStore: Send + Sync {
    /// The value under `key`, if any.
    fn get(&self, space: KeySpace, key: &[u8]) -> Result<Option<Vec<u8>>, KeyStoreError>;

    /// Write `value` under `key`, replacing what was there.
    fn put(&self, space: KeySpace, key: &[u8], value: &[u8]) -> Result<(), KeyStoreError>;

    /// Write `value` under `key` only if nothing is there; returns whether
    /// it was written. Two writers creating the same key at once must not
    /// both succeed: the loser reads back the winner's value.
    fn create(&self, space: KeySpace, key: &[u8], value: &[u8]) -> Result<bool, KeyStoreError>;

    /// Delete what is under `key`; returns whether something was.
    fn delete(&self, space: KeySpace, key: &[u8]) -> Result<bool, KeyStoreError>;

    /// Entries whose key starts with `prefix`, in key order, starting after
    /// `after` (exclusive) when given, at most `limit`.
    fn scan(
        &self,
        space: KeySpace,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<WrappedEntry>, KeyStoreError>;

    /// Number of entries in a space (for metrics and tests).
    fn count(&self, space: KeySpace) -> usize;

    /// Make every write so far durable.
    fn flush(&self) -> Result<(), KeyStoreError>;
}
