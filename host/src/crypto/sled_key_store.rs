//! The key ring's embedded store: its own sled database, apart from the
//! records (see [`super::keyring`] for why the separation matters).

use std::ops::Bound;
use std::path::Path;

use super::key_store::{KeySpace, KeyStore, KeyStoreError, WrappedEntry};

const TENANT_KEYS: &str = "tenant_keys";
const CONTACT_KEYS: &str = "contact_keys";

/// sled-backed [`KeyStore`]: one tree per [`KeySpace`].
pub struct SledKeyStore {
    db: sled::Db,
    tenants: sled::Tree,
    contacts: sled::Tree,
}

impl SledKeyStore {
    /// Open (or create) the key store in `dir`.
    pub fn open(dir: &Path) -> Result<SledKeyStore, KeyStoreError> {
        let db = crate::store::sled_store::open_db(
            &sled::Config::new().path(dir).cache_capacity(256 << 20),
        )
        .map_err(KeyStoreError::new)?;
        Ok(SledKeyStore {
            tenants: db.open_tree(TENANT_KEYS).map_err(KeyStoreError::new)?,
            contacts: db.open_tree(CONTACT_KEYS).map_err(KeyStoreError::new)?,
            db,
        })
    }

    fn tree(&self, space: KeySpace) -> &sled::Tree {
        match space {
            KeySpace::Tenants => &self.tenants,
            KeySpace::Contacts => &self.contacts,
        }
    }
}

impl KeyStore for SledKeyStore {
    fn get(&self, space: KeySpace, key: &[u8]) -> Result<Option<Vec<u8>>, KeyStoreError> {
        let value = self.tree(space).get(key).map_err(KeyStoreError::new)?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn put(&self, space: KeySpace, key: &[u8], value: &[u8]) -> Result<(), KeyStoreError> {
        // One insert per key, no sled batch: see the record store's journal
        // for why.
        self.tree(space)
            .insert(key, value)
            .map_err(KeyStoreError::new)?;
        Ok(())
    }

    fn create(&self, space: KeySpace, key: &[u8], value: &[u8]) -> Result<bool, KeyStoreError> {
        let swapped = self
            .tree(space)
            .compare_and_swap(key, None as Option<&[u8]>, Some(value))
            .map_err(KeyStoreError::new)?;
        Ok(swapped.is_ok())
    }

    fn delete(&self, space: KeySpace, key: &[u8]) -> Result<bool, KeyStoreError> {
        let removed = self.tree(space).remove(key).map_err(KeyStoreError::new)?;
        Ok(removed.is_some())
    }

    fn scan(
        &self,
        space: KeySpace,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<WrappedEntry>, KeyStoreError> {
        let entries = match after {
            Some(after) => self
                .tree(space)
                .range::<&[u8], _>((Bound::Excluded(after), Bound::Unbounded)),
            None => self.tree(space).range::<&[u8], _>(prefix..),
        };
        entries
            .take_while(|entry| {
                entry
                    .as_ref()
                    .map_or(true, |(key, _)| key.starts_with(prefix))
            })
            .take(limit)
            .map(|entry| {
                let (key, value) = entry.map_err(KeyStoreError::new)?;
                Ok((key.to_vec(), value.to_vec()))
            })
            .collect()
    }

    fn count(&self, space: KeySpace) -> usize {
        self.tree(space).len()
    }

    fn flush(&self) -> Result<(), KeyStoreError> {
        self.db.flush().map_err(KeyStoreError::new)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sled_key_store_keeps_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        crate::crypto::key_store::contract::check(&mut || {
            Box::new(SledKeyStore::open(dir.path()).unwrap())
        });
    }

    #[test]
    fn scans_page_through_a_prefix_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledKeyStore::open(dir.path()).unwrap();
        for key in [b"a1", b"b1", b"b2", b"b3", b"c1"] {
            store.put(KeySpace::Contacts, key, key).unwrap();
        }
        let keys = |after: Option<&[u8]>, limit| -> Vec<Vec<u8>> {
            let page = store.scan(KeySpace::Contacts, b"b", after, limit).unwrap();
            page.into_iter().map(|(key, _)| key).collect()
        };
        assert_eq!(keys(None, 10), [b"b1", b"b2", b"b3"]);
        assert_eq!(keys(None, 2), [b"b1", b"b2"]);
        assert_eq!(keys(Some(b"b2"), 2), [b"b3"]);
        assert!(keys(Some(b"b3"), 2).is_empty());
        assert_eq!(store.count(KeySpace::Contacts), 5);
        assert_eq!(store.count(KeySpace::Tenants), 0);
    }

    #[test]
    fn create_keeps_what_is_there_and_delete_says_what_was() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledKeyStore::open(dir.path()).unwrap();
        assert!(store.create(KeySpace::Tenants, b"t", b"first").unwrap());
        assert!(!store.create(KeySpace::Tenants, b"t", b"second").unwrap());
        assert_eq!(
            store.get(KeySpace::Tenants, b"t").unwrap().as_deref(),
            Some(&b"first"[..])
        );
        assert_eq!(store.get(KeySpace::Contacts, b"t").unwrap(), None);
        assert!(store.delete(KeySpace::Tenants, b"t").unwrap());
        assert!(!store.delete(KeySpace::Tenants, b"t").unwrap());
        store.flush().unwrap();
    }
}
