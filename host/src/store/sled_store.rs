//! The embedded store on sled: one tree per [`Kind`], keys prefixed by the
//! tenant's 16-byte id.

use std::collections::HashMap;
use std::path::Path;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{Batch, Entries, Entry, Kind, Store, StoreError};
use crate::ids::TenantId;

/// sled-backed [`Store`].
pub struct SledStore {
    db: sled::Db,
    trees: HashMap<Kind, sled::Tree>,
}

fn scoped(tenant: &TenantId, key: &[u8]) -> Vec<u8> {
    let mut scoped = Vec::with_capacity(16 + key.len());
    scoped.extend_from_slice(tenant.as_bytes());
    scoped.extend_from_slice(key);
    scoped
}

impl SledStore {
    /// Open (or create) the store in `dir` with the default cache (1 GiB).
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        SledStore::open_with_cache(dir, 1 << 30)
    }

    /// Open (or create) the store in `dir`, caching up to `cache_bytes` of
    /// pages in memory. Lookups that miss the cache read and decode a page:
    /// size it to the working set (measured: ~1 KiB per contact).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            // The write-ahead log is flushed by `flush()` (group commit by
            // the callers) and at least this often.
            .flush_every_ms(Some(200))
            .cache_capacity(cache_bytes)
            .open()?;
        SledStore::from_db(db)
    }

    /// A store in a temporary directory (tests, benchmarks).
    pub fn temporary() -> Result<SledStore, StoreError> {
        SledStore::from_db(sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: sled::Db) -> Result<SledStore, StoreError> {
        let mut trees = HashMap::new();
        for kind in Kind::ALL {
            trees.insert(kind, db.open_tree(kind.name())?);
        }
        Ok(SledStore { db, trees })
    }

    fn tree(&self, kind: Kind) -> &sled::Tree {
        &self.trees[&kind]
    }

    /// Size on disk, in bytes.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

impl Store for SledStore {
    fn get(
        &self,
        tenant: &TenantId,
        kind: Kind,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree(kind)
            .get(scoped(tenant, key))?
            .map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        tenant: &TenantId,
        kind: Kind,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        let start = scoped(tenant, prefix);
        let iter = match after {
            Some(after) => {
                let mut from = scoped(tenant, after);
                // The smallest key greater than `after`.
                from.push(0);
                self.tree(kind).range(from.max(start.clone())..)
            }
            None => self.tree(kind).range(start.clone()..),
        };
        let mut entries = Vec::new();
        for item in iter {
            let (key, value) = item?;
            if !key.starts_with(&start) || entries.len() >= limit {
                break;
            }
            entries.push((key[16..].to_vec(), value.to_vec()));
        }
        Ok(entries)
    }

    fn last(
        &self,
        tenant: &TenantId,
        kind: Kind,
        prefix: &[u8],
    ) -> Result<Option<Entry>, StoreError> {
        let start = scoped(tenant, prefix);
        let found = self
            .tree(kind)
            .scan_prefix(&start)
            .next_back()
            .transpose()?;
        Ok(found.map(|(k, v)| (k[16..].to_vec(), v.to_vec())))
    }

    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let ops = batch.ops();
        if ops.is_empty() {
            return Ok(());
        }
        // One write is atomic by itself. A sled batch or transaction seals
        // the log buffer (one write system call each), so single writes
        // skip it; callers group many events into one batch.
        if let [op] = ops {
            let tree = self.tree(op.kind);
            let key = scoped(&op.tenant, &op.key);
            match &op.value {
                Some(value) => tree.insert(key, value.as_slice())?,
                None => tree.remove(key)?,
            };
            return Ok(());
        }
        // Writes to a single tree need no transaction: a sled batch is atomic.
        let first = ops[0].kind;
        if ops.iter().all(|op| op.kind == first) {
            let mut writes = sled::Batch::default();
            for op in ops {
                let key = scoped(&op.tenant, &op.key);
                match &op.value {
                    Some(value) => writes.insert(key, value.as_slice()),
                    None => writes.remove(key),
                }
            }
            return Ok(self.tree(first).apply_batch(writes)?);
        }
        let mut kinds: Vec<Kind> = ops.iter().map(|op| op.kind).collect();
        kinds.sort();
        kinds.dedup();
        let trees: Vec<&sled::Tree> = kinds.iter().map(|k| self.tree(*k)).collect();
        let result = trees.as_slice().transaction(|views| {
            for op in ops {
                let index = kinds.binary_search(&op.kind).expect("kind listed");
                let key = scoped(&op.tenant, &op.key);
                match &op.value {
                    Some(value) => {
                        views[index].insert(key, value.as_slice())?;
                    }
                    None => {
                        views[index].remove(key)?;
                    }
                }
            }
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Storage(error)) => Err(error.into()),
            Err(TransactionError::Abort(())) => Err(StoreError::Aborted("batch".into())),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    fn purge_tenant(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        let mut removed = 0;
        for kind in Kind::ALL {
            let tree = self.tree(kind);
            loop {
                // Delete in chunks so a large tenant does not build one huge
                // batch in memory.
                let keys: Vec<sled::IVec> = tree
                    .scan_prefix(tenant.as_bytes())
                    .keys()
                    .take(10_000)
                    .collect::<Result<_, _>>()?;
                if keys.is_empty() {
                    break;
                }
                let mut batch = sled::Batch::default();
                for key in &keys {
                    batch.remove(key.clone());
                }
                tree.apply_batch(batch)?;
                removed += keys.len() as u64;
            }
        }
        self.db.flush()?;
        Ok(removed)
    }

    fn count(&self, kind: Kind) -> usize {
        self.tree(kind).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_scans_never_cross_tenants() {
        let store = SledStore::temporary().unwrap();
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let mut batch = Batch::new();
        batch.put(a, Kind::Contacts, b"k1".to_vec(), b"a1".to_vec());
        batch.put(a, Kind::Contacts, b"k2".to_vec(), b"a2".to_vec());
        batch.put(b, Kind::Contacts, b"k1".to_vec(), b"b1".to_vec());
        store.commit(&batch).unwrap();
        assert_eq!(
            store.get(&a, Kind::Contacts, b"k1").unwrap(),
            Some(b"a1".to_vec())
        );
        assert_eq!(store.get(&b, Kind::Contacts, b"k2").unwrap(), None);
        let scanned = store.scan(&b, Kind::Contacts, b"", None, 100).unwrap();
        assert_eq!(scanned, vec![(b"k1".to_vec(), b"b1".to_vec())]);
        assert_eq!(store.purge_tenant(&a).unwrap(), 2);
        assert_eq!(
            store.get(&b, Kind::Contacts, b"k1").unwrap(),
            Some(b"b1".to_vec())
        );
    }

    #[test]
    fn scans_page_and_last_finds_the_greatest_key() {
        let store = SledStore::temporary().unwrap();
        let t = TenantId::generate();
        let mut batch = Batch::new();
        for i in 0u8..10 {
            batch.put(t, Kind::Audit, vec![b'p', i], vec![i]);
        }
        batch.put(t, Kind::Audit, b"q".to_vec(), vec![99]);
        store.commit(&batch).unwrap();
        let first = store.scan(&t, Kind::Audit, b"p", None, 4).unwrap();
        assert_eq!(first.len(), 4);
        let rest = store
            .scan(&t, Kind::Audit, b"p", Some(&first[3].0), 100)
            .unwrap();
        assert_eq!(rest.len(), 6);
        assert_eq!(rest[0].0, vec![b'p', 4]);
        assert_eq!(
            store.last(&t, Kind::Audit, b"p").unwrap().unwrap().1,
            vec![9]
        );
    }

    #[test]
    fn batches_across_kinds_are_atomic() {
        let store = SledStore::temporary().unwrap();
        let t = TenantId::generate();
        let mut batch = Batch::new();
        batch.put(t, Kind::Inbox, b"1".to_vec(), b"delivery".to_vec());
        store.commit(&batch).unwrap();
        let mut batch = Batch::new();
        batch.delete(t, Kind::Inbox, b"1".to_vec());
        batch.put(t, Kind::Outbox, b"1".to_vec(), b"reply".to_vec());
        batch.put(t, Kind::Contacts, b"c".to_vec(), b"contact".to_vec());
        store.commit(&batch).unwrap();
        assert_eq!(store.get(&t, Kind::Inbox, b"1").unwrap(), None);
        assert_eq!(
            store.get(&t, Kind::Outbox, b"1").unwrap(),
            Some(b"reply".to_vec())
        );
        assert!(store.next_id().unwrap() < store.next_id().unwrap());
    }
}
