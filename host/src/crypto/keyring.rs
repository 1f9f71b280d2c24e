//! The key ring: wrapped tenant and contact keys, kept apart from the data.
//!
//! The ring lives in its own store ([`KeyStore`]; embedded, its own sled
//! database in `<data-dir>/keys`; in cluster mode, a KV bucket every node
//! shares, [`KvKeyStore`](crate::cluster::KvKeyStore)), separate from the records
//! (`<data-dir>/records`). That separation is what makes erasure real:
//! deleting a contact's wrapped key here makes every copy of that contact's
//! records unreadable, including copies of the records directory taken
//! before the erasure and backups (which hold records, not keys).
//!
//! - The operator's **master key** (from a file or the environment) wraps
//!   each tenant key. Rotating it re-wraps tenant keys; no record changes.
//! - A random **tenant key** per tenant; the keys the tenant's data needs are
//!   derived from it ([`TenantKeys`]).
//! - A random **contact key** per contact, wrapped by the tenant's wrapping
//!   key. Erasing the contact deletes it (crypto-shredding).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::contact_keys::ContactKeys;
use super::key_store::{KeySpace, KeyStore, KeyStoreError, WrappedEntry};
use super::sled_key_store::SledKeyStore;
use super::{KeyId, OpenError, SecretKey};
use crate::ids::{ContactId, TenantId};

/// Entries read from the key store at a time, when a whole space or a
/// tenant's contacts are walked.
const SCAN_PAGE: usize = 1024;

/// Why the key ring could not answer.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("key store: {0}")]
    Storage(#[from] KeyStoreError),
    #[error("tenant {0} has no key (unknown or deleted tenant)")]
    NoTenantKey(TenantId),
    #[error(
        "the key of tenant {tenant} was wrapped by master key {wrapped_by}, not by the configured master key {configured}"
    )]
    WrongMasterKey {
        tenant: TenantId,
        wrapped_by: KeyId,
        configured: KeyId,
    },
    #[error("a wrapped key in the key store does not open: {0}")]
    Corrupt(#[from] OpenError),
}

/// The keys one tenant's data uses, all derived from its tenant key.
///
/// Wiped when dropped, every field: the hash keys (`index`, `pseudonyms`,
/// `secrets`) are as secret as the sealing keys — with `index` anyone can
/// test a phone number against the lookup index, with `pseudonyms` link a
/// pseudonym back to its contact — so a freed cache entry (a shredded or
/// evicted tenant) must not leave them in reusable memory.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct TenantKeys {
    /// Seals the tenant's own records (installations, channels, consent proofs…).
    pub records: SecretKey,
    /// Wraps the tenant's contact keys.
    wrapping: SecretKey,
    /// Keys the lookup hashes of phone numbers and BSUIDs.
    pub index: [u8; 32],
    /// Keys the per-installation contact pseudonyms.
    pub pseudonyms: [u8; 32],
    /// Keys the hashes of the tenant's API keys and other secrets compared
    /// but never stored.
    pub secrets: [u8; 32],
}

impl TenantKeys {
    fn derive(root: &SecretKey) -> TenantKeys {
        TenantKeys {
            records: root.derive("flowgate 2026 tenant records"),
            wrapping: root.derive("flowgate 2026 tenant contact-key wrapping"),
            index: root.derive_32("flowgate 2026 tenant lookup index"),
            pseudonyms: root.derive_32("flowgate 2026 tenant pseudonyms"),
            secrets: root.derive_32("flowgate 2026 tenant secret hashes"),
        }
    }

    /// The keyed lookup hash of an identifier (`kind` separates phone
    /// numbers from BSUIDs). One-way: a stored hash does not give back the
    /// number.
    pub fn lookup_hash(&self, kind: &str, identifier: &str) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_keyed(&self.index);
        hasher.update(kind.as_bytes());
        hasher.update(&[0]);
        hasher.update(identifier.as_bytes());
        *hasher.finalize().as_bytes()
    }
}

fn tenant_context(tenant: &TenantId) -> Vec<u8> {
    [b"flowgate/v1/tenant-key/".as_slice(), tenant.as_bytes()].concat()
}

fn contact_context(tenant: &TenantId, contact: &ContactId) -> Vec<u8> {
    [
        b"flowgate/v1/contact-key/".as_slice(),
        tenant.as_bytes(),
        contact.as_bytes(),
    ]
    .concat()
}

fn contact_entry(tenant: &TenantId, contact: &ContactId) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(tenant.as_bytes());
    key[16..].copy_from_slice(contact.as_bytes());
    key
}

/// Contact keys kept unwrapped by default (about 120 bytes each).
pub const DEFAULT_CONTACT_KEY_CACHE: usize = 65_536;

/// The key ring. Cheap to share (`Arc`); tenant keys are cached unwrapped in
/// memory, and the most recently used contact keys ([`ContactKeys`]).
pub struct KeyRing {
    store: Box<dyn KeyStore>,
    master: RwLock<SecretKey>,
    /// Unwrapped tenant keys. Only this ring's own `shred_tenant` empties
    /// an entry: over a store shared by several nodes, a tenant shredded
    /// by another node stays readable here until this ring is dropped.
    cache: RwLock<HashMap<TenantId, Arc<TenantKeys>>>,
    contacts: ContactKeys,
    /// Contact keys created since the last flush.
    dirty: std::sync::atomic::AtomicBool,
}

impl KeyRing {
    /// Open (or create) the embedded key store in `dir` with the operator's
    /// master key.
    pub fn open(dir: &Path, master: SecretKey) -> Result<KeyRing, KeyRingError> {
        Ok(KeyRing::new(Box::new(SledKeyStore::open(dir)?), master))
    }

    /// The ring over a key store, with the operator's master key.
    pub fn new(store: Box<dyn KeyStore>, master: SecretKey) -> KeyRing {
        KeyRing {
            store,
            master: RwLock::new(master),
            cache: RwLock::new(HashMap::new()),
            contacts: ContactKeys::new(DEFAULT_CONTACT_KEY_CACHE),
            dirty: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Keep at most `capacity` contact keys unwrapped (the operator's
    /// `key_cache_contacts`).
    pub fn with_contact_key_cache(mut self, capacity: usize) -> KeyRing {
        self.contacts = ContactKeys::new(capacity);
        self
    }

    /// (contact keys cached, cache hits, misses) since the ring opened.
    pub fn contact_key_cache_stats(&self) -> (usize, u64, u64) {
        self.contacts.stats()
    }

    /// The configured master key's identifier.
    pub fn master_key_id(&self) -> KeyId {
        self.master.read().expect("master key lock").id()
    }

    /// Create a tenant's key. Idempotent: an existing key is kept.
    pub fn create_tenant(&self, tenant: &TenantId) -> Result<Arc<TenantKeys>, KeyRingError> {
        if self.has_tenant(tenant)? {
            return self.tenant(tenant);
        }
        let root = SecretKey::generate();
        let master = self.master.read().expect("master key lock");
        let mut entry = master.id().0.to_vec();
        entry.extend(master.wrap(&tenant_context(tenant), &root));
        drop(master);
        // Created only if absent: of two creations at once, both read back
        // the one that was written.
        self.store
            .create(KeySpace::Tenants, tenant.as_bytes(), &entry)?;
        // A key that exists only in memory is worthless: make it durable
        // before any record sealed with it can be.
        self.store.flush()?;
        self.tenant(tenant)
    }

    /// A tenant's keys.
    pub fn tenant(&self, tenant: &TenantId) -> Result<Arc<TenantKeys>, KeyRingError> {
        if let Some(keys) = self.cache.read().expect("key cache lock").get(tenant) {
            return Ok(keys.clone());
        }
        let entry = self
            .store
            .get(KeySpace::Tenants, tenant.as_bytes())?
            .ok_or(KeyRingError::NoTenantKey(*tenant))?;
        let root = self.unwrap_tenant(tenant, &entry)?;
        let keys = Arc::new(TenantKeys::derive(&root));
        self.cache
            .write()
            .expect("key cache lock")
            .insert(*tenant, keys.clone());
        Ok(keys)
    }

    fn unwrap_tenant(&self, tenant: &TenantId, entry: &[u8]) -> Result<SecretKey, KeyRingError> {
        let master = self.master.read().expect("master key lock");
        let (id, wrapped) = entry.split_at(8.min(entry.len()));
        let configured = master.id();
        if id != configured.0 {
            let mut wrapped_by = [0u8; 8];
            wrapped_by.copy_from_slice(id);
            return Err(KeyRingError::WrongMasterKey {
                tenant: *tenant,
                wrapped_by: KeyId(wrapped_by),
                configured,
            });
        }
        Ok(master.unwrap_key(&tenant_context(tenant), wrapped)?)
    }

    /// Whether the tenant has a key.
    pub fn has_tenant(&self, tenant: &TenantId) -> Result<bool, KeyRingError> {
        Ok(self
            .store
            .get(KeySpace::Tenants, tenant.as_bytes())?
            .is_some())
    }

    /// Create the key of a new contact. Contact ids are random and fresh,
    /// so there is no existing key to look for. Not flushed: the caller
    /// flushes the ring ([`KeyRing::flush`]) before committing records
    /// sealed with it, so a group of new contacts costs one fsync.
    pub fn create_contact(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
    ) -> Result<SecretKey, KeyRingError> {
        let keys = self.tenant(tenant)?;
        let key = SecretKey::generate();
        let wrapped = keys.wrapping.wrap(&contact_context(tenant, contact), &key);
        let epoch = self.contacts.epoch();
        self.store.put(
            KeySpace::Contacts,
            &contact_entry(tenant, contact),
            &wrapped,
        )?;
        self.dirty.store(true, std::sync::atomic::Ordering::Release);
        self.contacts.keep(epoch, tenant, contact, &key);
        Ok(key)
    }

    /// A contact's key; `None` when the contact was erased (or never existed).
    pub fn contact(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
    ) -> Result<Option<SecretKey>, KeyRingError> {
        let epoch = match self.contacts.get(tenant, contact) {
            Ok(key) => return Ok(Some(key)),
            Err(epoch) => epoch,
        };
        let Some(wrapped) = self
            .store
            .get(KeySpace::Contacts, &contact_entry(tenant, contact))?
        else {
            return Ok(None);
        };
        let keys = self.tenant(tenant)?;
        let key = keys
            .wrapping
            .unwrap_key(&contact_context(tenant, contact), &wrapped)?;
        self.contacts.keep(epoch, tenant, contact, &key);
        Ok(Some(key))
    }

    /// Crypto-shred a contact: delete its key and make that durable. Every
    /// record sealed with it, wherever a copy lives, is unreadable after.
    pub fn shred_contact(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
    ) -> Result<bool, KeyRingError> {
        let deleted = self
            .store
            .delete(KeySpace::Contacts, &contact_entry(tenant, contact));
        // After the delete, whatever it answered (a delete whose answer was
        // lost may have happened): a load from before it that finishes
        // later sees the epoch moved and does not keep what it read.
        self.contacts.forget(tenant, contact);
        let existed = deleted?;
        self.store.flush()?;
        Ok(existed)
    }

    /// Crypto-shred a tenant: delete its key and all its contact keys.
    pub fn shred_tenant(&self, tenant: &TenantId) -> Result<u64, KeyRingError> {
        // Forgotten before (no cached key of a contact already deleted is
        // served while the walk goes on) and after, whatever the walk
        // answers (a key loaded meanwhile is not kept).
        self.contacts.forget_tenant(tenant);
        let shredded = self.shred_tenant_keys(tenant);
        self.contacts.forget_tenant(tenant);
        shredded
    }

    fn shred_tenant_keys(&self, tenant: &TenantId) -> Result<u64, KeyRingError> {
        let mut removed = 0;
        let mut after = None;
        loop {
            let page = self.store.scan(
                KeySpace::Contacts,
                tenant.as_bytes(),
                after.as_deref(),
                SCAN_PAGE,
            )?;
            for (key, _) in &page {
                self.store.delete(KeySpace::Contacts, key)?;
                removed += 1;
            }
            match page.into_iter().last() {
                Some((key, _)) => after = Some(key),
                None => break,
            }
        }
        self.store.delete(KeySpace::Tenants, tenant.as_bytes())?;
        self.cache.write().expect("key cache lock").remove(tenant);
        self.store.flush()?;
        Ok(removed)
    }

    /// Re-wrap every tenant key under `new_master`, then use it. Records are
    /// untouched: they are sealed with tenant and contact keys, which do not
    /// change. Returns how many tenant keys were re-wrapped.
    pub fn rotate_master(&self, new_master: SecretKey) -> Result<usize, KeyRingError> {
        let mut master = self.master.write().expect("master key lock");
        let mut rewrapped = Vec::new();
        for (tenant_bytes, value) in self.tenant_entries()? {
            let tenant =
                TenantId::from_slice(&tenant_bytes).ok_or(KeyRingError::Corrupt(OpenError))?;
            let (id, wrapped) = value.split_at(8.min(value.len()));
            let root = if id == master.id().0 {
                master.unwrap_key(&tenant_context(&tenant), wrapped)?
            } else if id == new_master.id().0 {
                // Already re-wrapped by an interrupted earlier rotation.
                new_master.unwrap_key(&tenant_context(&tenant), wrapped)?
            } else {
                return Err(KeyRingError::Corrupt(OpenError));
            };
            let mut entry = new_master.id().0.to_vec();
            entry.extend(new_master.wrap(&tenant_context(&tenant), &root));
            rewrapped.push((tenant_bytes, entry));
        }
        // One put per tenant; an interrupted rotation is finished by running
        // it again.
        for (tenant, entry) in &rewrapped {
            self.store.put(KeySpace::Tenants, tenant, entry)?;
        }
        self.store.flush()?;
        *master = new_master;
        Ok(rewrapped.len())
    }

    /// Every wrapped tenant key, by tenant id.
    fn tenant_entries(&self) -> Result<Vec<WrappedEntry>, KeyRingError> {
        let mut entries = Vec::new();
        loop {
            let after = entries.last().map(|(key, _): &WrappedEntry| key.as_slice());
            let page = self.store.scan(KeySpace::Tenants, b"", after, SCAN_PAGE)?;
            if page.is_empty() {
                return Ok(entries);
            }
            entries.extend(page);
        }
    }

    /// Make created keys durable (an fsync only when keys were created
    /// since the last flush: this runs before every commit group).
    pub fn flush(&self) -> Result<(), KeyRingError> {
        if self.dirty.swap(false, std::sync::atomic::Ordering::AcqRel)
            && let Err(error) = self.store.flush()
        {
            self.dirty.store(true, std::sync::atomic::Ordering::Release);
            return Err(error.into());
        }
        Ok(())
    }

    /// Number of contact keys held (for metrics and tests).
    pub fn contact_key_count(&self) -> usize {
        self.store.count(KeySpace::Contacts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(dir: &Path) -> KeyRing {
        KeyRing::open(dir, SecretKey::from_bytes([1; 64])).unwrap()
    }

    #[test]
    fn tenant_and_contact_keys_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let tenant = TenantId::generate();
        let contact = ContactId::generate();
        let (index, contact_key) = {
            let ring = ring(dir.path());
            let keys = ring.create_tenant(&tenant).unwrap();
            let ck = ring.create_contact(&tenant, &contact).unwrap();
            ring.flush().unwrap();
            (keys.index, ck)
        };
        let ring = ring(dir.path());
        assert_eq!(ring.tenant(&tenant).unwrap().index, index);
        assert_eq!(ring.contact(&tenant, &contact).unwrap(), Some(contact_key));
    }

    #[test]
    fn a_wrong_master_key_is_reported_not_silently_used() {
        let dir = tempfile::tempdir().unwrap();
        let tenant = TenantId::generate();
        ring(dir.path()).create_tenant(&tenant).unwrap();
        let other = KeyRing::open(dir.path(), SecretKey::from_bytes([2; 64])).unwrap();
        assert!(matches!(
            other.tenant(&tenant),
            Err(KeyRingError::WrongMasterKey { .. })
        ));
    }

    #[test]
    fn rotation_rewraps_tenant_keys_and_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let tenants: Vec<TenantId> = (0..3).map(|_| TenantId::generate()).collect();
        let ring = ring(dir.path());
        let before: Vec<[u8; 32]> = tenants
            .iter()
            .map(|t| ring.create_tenant(t).unwrap().index)
            .collect();
        let new_master = SecretKey::from_bytes([9; 64]);
        assert_eq!(ring.rotate_master(new_master.clone()).unwrap(), 3);
        drop(ring);
        assert!(matches!(
            KeyRing::open(dir.path(), SecretKey::from_bytes([1; 64]))
                .unwrap()
                .tenant(&tenants[0]),
            Err(KeyRingError::WrongMasterKey { .. })
        ));
        let rotated = KeyRing::open(dir.path(), new_master).unwrap();
        for (tenant, index) in tenants.iter().zip(before) {
            assert_eq!(rotated.tenant(tenant).unwrap().index, index);
        }
    }

    #[test]
    fn shredding_removes_keys_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let ring = ring(dir.path());
        let tenant = TenantId::generate();
        ring.create_tenant(&tenant).unwrap();
        let contacts: Vec<ContactId> = (0..3).map(|_| ContactId::generate()).collect();
        for c in &contacts {
            ring.create_contact(&tenant, c).unwrap();
        }
        assert!(ring.shred_contact(&tenant, &contacts[0]).unwrap());
        assert_eq!(ring.contact(&tenant, &contacts[0]).unwrap(), None);
        assert_eq!(ring.shred_tenant(&tenant).unwrap(), 2);
        assert!(matches!(
            ring.tenant(&tenant),
            Err(KeyRingError::NoTenantKey(_))
        ));
        // Cached when they were created, gone from the cache with them.
        for c in &contacts {
            assert_eq!(ring.contact(&tenant, c).unwrap(), None);
        }
    }

    #[test]
    fn contact_keys_in_use_are_served_from_a_bounded_cache() {
        let dir = tempfile::tempdir().unwrap();
        let ring = ring(dir.path()).with_contact_key_cache(2);
        let tenant = TenantId::generate();
        ring.create_tenant(&tenant).unwrap();
        let contacts: Vec<ContactId> = (0..3).map(|_| ContactId::generate()).collect();
        let keys: Vec<SecretKey> = contacts
            .iter()
            .map(|c| ring.create_contact(&tenant, c).unwrap())
            .collect();
        // The newest two are held; the first was evicted and is read back.
        for (contact, key) in contacts.iter().zip(&keys).rev() {
            assert_eq!(ring.contact(&tenant, contact).unwrap().as_ref(), Some(key));
        }
        let (held, hits, misses) = ring.contact_key_cache_stats();
        assert_eq!((held, hits, misses), (2, 2, 1));
    }

    #[test]
    fn tenant_keys_are_wiped_when_dropped() {
        // Compiles only while `TenantKeys` wipes itself on drop.
        fn wiped_on_drop<T: ZeroizeOnDrop>() {}
        wiped_on_drop::<TenantKeys>();
        // What drop runs leaves no byte of any key behind.
        let mut keys = TenantKeys::derive(&SecretKey::from_bytes([5; 64]));
        keys.zeroize();
        let zero = SecretKey::from_bytes([0; 64]);
        assert!(keys.records == zero && keys.wrapping == zero);
        assert_eq!(
            [keys.index, keys.pseudonyms, keys.secrets],
            [[0; 32]; 3],
            "a hash key survived"
        );
    }

    #[test]
    fn lookup_hashes_are_keyed_per_tenant_and_kind() {
        let dir = tempfile::tempdir().unwrap();
        let ring = ring(dir.path());
        let a = ring.create_tenant(&TenantId::generate()).unwrap();
        let b = ring.create_tenant(&TenantId::generate()).unwrap();
        assert_eq!(a.lookup_hash("wa", "123"), a.lookup_hash("wa", "123"));
        assert_ne!(a.lookup_hash("wa", "123"), b.lookup_hash("wa", "123"));
        assert_ne!(a.lookup_hash("wa", "123"), a.lookup_hash("bsuid", "123"));
    }
}
