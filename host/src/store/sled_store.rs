//! The embedded store on sled: one tree per [`Kind`], keys prefixed by the
//! tenant's 16-byte id.

use std::collections::HashMap;
use std::path::Path;

use super::{Batch, Entries, Entry, Kind, Store, StoreError};
use crate::ids::TenantId;

/// Open a sled database, waiting up to two seconds for its file lock.
///
/// sled's background threads let go of a dropped database a moment after
/// the last handle is dropped; reopening in that window (a restore, a
/// restart within the process, the tests) would fail with "could not
/// acquire lock". Another live process holding the directory still fails,
/// after the wait.
pub fn open_db(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match config.open() {
            Err(sled::Error::Io(error))
                if error.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

/// sled-backed [`Store`].
///
/// Atomic batches use a journal of our own rather than sled's batches and
/// transactions: those take sled's process-wide write lock, and with two
/// databases in one process (records and keys) or a flush in progress that
/// lock deadlocked (observed in the tests: a transaction waiting for
/// readers, the log flusher waiting behind it, a flush waiting for the log
/// flusher). A batch is written first as one journal record (a single
/// insert, atomic), then applied key by key, then its journal record is
/// removed. sled recovers its log in order, so after a crash either the
/// journal record is there and the batch is replayed on open, or it was
/// removed and every write of the batch came before the removal.
pub struct SledStore {
    db: sled::Db,
    trees: HashMap<Kind, sled::Tree>,
    ids: IdBlocks,
    journal: sled::Tree,
    journal_lock: std::sync::Mutex<()>,
}

/// A batch as a journal record: per op, kind index (u8), flags (u8: 1 =
/// put), key length (u32 LE), key, value length (u32 LE), value.
pub fn encode_journal(ops: &[super::Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        encode_op(op, &mut out);
    }
    out
}

/// Bytes an encoded op takes besides its key and value: kind, flags, two
/// lengths and the tenant prefix of the key.
const OP_OVERHEAD: usize = 1 + 1 + 4 + 16 + 4;

fn encode_op(op: &super::Op, out: &mut Vec<u8>) {
    let kind = Kind::ALL
        .iter()
        .position(|k| *k == op.kind)
        .expect("every kind is listed") as u8;
    out.push(kind);
    out.push(u8::from(op.value.is_some()));
    out.extend_from_slice(&((16 + op.key.len()) as u32).to_le_bytes());
    out.extend_from_slice(op.tenant.as_bytes());
    out.extend_from_slice(&op.key);
    let value = op.value.as_deref().unwrap_or_default();
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

/// Journal records are kept under this size. sled writes a value over a
/// quarter of its 512 KiB segment to a file of its own ("blob"): a group
/// commit's whole batch in one record made every group under load create,
/// write and later delete a file. (A single larger op still gets one.)
const JOURNAL_CHUNK: usize = 64 * 1024;

/// A batch as journal chunks, each a run of encoded ops, preceded by a
/// flag byte: 1 on the last chunk, 0 before it.
fn encode_journal_chunks(ops: &[super::Op]) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut current = vec![0u8];
    for op in ops {
        if current.len() > 1
            && current.len() + OP_OVERHEAD + op.key.len() + op.value.as_ref().map_or(0, Vec::len)
                > JOURNAL_CHUNK
        {
            chunks.push(std::mem::replace(&mut current, vec![0u8]));
        }
        encode_op(op, &mut current);
    }
    current[0] = 1;
    chunks.push(current);
    chunks
}

/// A chunk's key: the batch's id, then the chunk's index.
fn journal_key(id: u64, index: usize) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&id.to_be_bytes());
    key[8..].copy_from_slice(&(index as u32).to_be_bytes());
    key
}

/// A decoded journal write: kind, tenant-prefixed key, value (`None`
/// deletes).
pub type JournalOp = (Kind, Vec<u8>, Option<Vec<u8>>);

/// Decode a journal record; `None` when it is damaged.
pub fn decode_journal(mut bytes: &[u8]) -> Option<Vec<JournalOp>> {
    let mut ops = Vec::new();
    let take = |n: usize, bytes: &mut &[u8]| -> Option<Vec<u8>> {
        if bytes.len() < n {
            return None;
        }
        let (head, tail) = bytes.split_at(n);
        *bytes = tail;
        Some(head.to_vec())
    };
    while !bytes.is_empty() {
        let header = take(2, &mut bytes)?;
        let kind = *Kind::ALL.get(header[0] as usize)?;
        let key_len = u32::from_le_bytes(take(4, &mut bytes)?.try_into().ok()?) as usize;
        let key = take(key_len, &mut bytes)?;
        let value_len = u32::from_le_bytes(take(4, &mut bytes)?.try_into().ok()?) as usize;
        let value = take(value_len, &mut bytes)?;
        ops.push((kind, key, (header[1] == 1).then_some(value)));
    }
    Some(ops)
}

/// Ids handed out from blocks reserved durably in advance.
///
/// sled's own `generate_id` holds sled's global read lock while it may do a
/// blocking flush; with a concurrent batch waiting for the write lock and
/// the flusher waiting for a read lock, that deadlocked the service under
/// test. Reserving a block of 2^32 ids at a time (one durable write per
/// block) keeps ids unique across restarts without taking that lock.
struct IdBlocks {
    meta: sled::Tree,
    next: std::sync::atomic::AtomicU64,
    reserved: std::sync::Mutex<u64>,
}

const ID_BLOCK: u64 = 1 << 32;
const ID_KEY: &[u8] = b"id-reserved-until";

impl IdBlocks {
    fn open(db: &sled::Db) -> Result<IdBlocks, StoreError> {
        let meta = db.open_tree("meta")?;
        let start = meta
            .get(ID_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(1);
        let blocks = IdBlocks {
            meta,
            next: std::sync::atomic::AtomicU64::new(start),
            reserved: std::sync::Mutex::new(start),
        };
        blocks.reserve(start + ID_BLOCK, db)?;
        Ok(blocks)
    }

    fn reserve(&self, until: u64, db: &sled::Db) -> Result<(), StoreError> {
        let mut reserved = self.reserved.lock().expect("id lock");
        if *reserved >= until {
            return Ok(());
        }
        self.meta.insert(ID_KEY, &until.to_be_bytes())?;
        db.flush()?;
        *reserved = until;
        Ok(())
    }

    fn next(&self, db: &sled::Db) -> Result<u64, StoreError> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let reserved = *self.reserved.lock().expect("id lock");
        if id >= reserved {
            self.reserve(id + ID_BLOCK, db)?;
        }
        Ok(id)
    }
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
        let db = open_db(
            &sled::Config::new()
                .path(dir)
                // The write-ahead log is flushed by `flush()` (group commit
                // by the callers) and at least this often.
                .flush_every_ms(Some(200))
                .cache_capacity(cache_bytes),
        )?;
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
        let ids = IdBlocks::open(&db)?;
        let journal = db.open_tree("journal")?;
        let store = SledStore {
            db,
            trees,
            ids,
            journal,
            journal_lock: std::sync::Mutex::new(()),
        };
        store.replay_journal()?;
        Ok(store)
    }

    fn tree(&self, kind: Kind) -> &sled::Tree {
        &self.trees[&kind]
    }

    fn apply_op(&self, kind: Kind, raw_key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        let tree = self.tree(kind);
        match value {
            Some(value) => tree.insert(raw_key, value)?,
            None => tree.remove(raw_key)?,
        };
        Ok(())
    }

    /// Finish batches a crash interrupted (their writes are idempotent);
    /// drop a batch whose journal was cut off before its last chunk (none
    /// of its writes had been applied).
    fn replay_journal(&self) -> Result<(), StoreError> {
        let damaged = || StoreError::DamagedJournal;
        let mut batch_id: Option<Vec<u8>> = None;
        let mut pending: Vec<JournalOp> = Vec::new();
        for entry in self.journal.iter() {
            let (key, record) = entry?;
            let complete = match key.len() {
                // A whole batch in one record (written by earlier versions).
                8 => {
                    for (kind, raw, value) in decode_journal(&record).ok_or_else(damaged)? {
                        self.apply_op(kind, &raw, value.as_deref())?;
                    }
                    continue;
                }
                12 => {
                    if batch_id.as_deref() != Some(&key[..8]) {
                        // The previous batch never got its last chunk.
                        pending.clear();
                        batch_id = Some(key[..8].to_vec());
                    }
                    let (last, body) = record.split_first().ok_or_else(damaged)?;
                    pending.extend(decode_journal(body).ok_or_else(damaged)?);
                    *last == 1
                }
                _ => return Err(damaged()),
            };
            if complete {
                for (kind, raw, value) in pending.drain(..) {
                    self.apply_op(kind, &raw, value.as_deref())?;
                }
            }
        }
        self.journal.clear()?;
        self.db.flush()?;
        Ok(())
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
        // Expectations are checked and the batch applied under one lock, so
        // no other commit of this store lands in between.
        let held = if batch.expectations().is_empty() {
            None
        } else {
            let serial = self.journal_lock.lock().expect("journal lock");
            for expected in batch.expectations() {
                let current = self.get(&expected.tenant, expected.kind, &expected.key)?;
                if current != expected.value {
                    return Err(StoreError::Conflict);
                }
            }
            Some(serial)
        };
        match ops {
            [] => Ok(()),
            // One write is atomic by itself.
            [op] => self.apply_op(op.kind, &scoped(&op.tenant, &op.key), op.value.as_deref()),
            _ => {
                let _serial =
                    held.unwrap_or_else(|| self.journal_lock.lock().expect("journal lock"));
                let id = self.ids.next(&self.db)?;
                let chunks = encode_journal_chunks(ops);
                for (index, chunk) in chunks.iter().enumerate() {
                    self.journal
                        .insert(journal_key(id, index), chunk.as_slice())?;
                }
                for op in ops {
                    self.apply_op(op.kind, &scoped(&op.tenant, &op.key), op.value.as_deref())?;
                }
                for index in 0..chunks.len() {
                    self.journal.remove(journal_key(id, index))?;
                }
                Ok(())
            }
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        self.ids.next(&self.db)
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
                for key in &keys {
                    tree.remove(key)?;
                }
                removed += keys.len() as u64;
            }
        }
        self.db.flush()?;
        Ok(removed)
    }

    fn count(&self, kind: Kind) -> usize {
        self.tree(kind).len()
    }

    fn export_raw(&self, sink: &mut super::RecordSink<'_>) -> Result<u64, StoreError> {
        let mut count = 0;
        for kind in Kind::ALL {
            for item in self.tree(kind).iter() {
                let (key, value) = item?;
                sink(kind, &key, &value).map_err(StoreError::Export)?;
                count += 1;
            }
        }
        Ok(count)
    }

    fn clear_all(&self) -> Result<(), StoreError> {
        for kind in Kind::ALL {
            self.tree(kind).clear()?;
        }
        self.db.flush()?;
        Ok(())
    }

    fn import_raw(&self, kind: Kind, raw_key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree(kind).insert(raw_key, value)?;
        Ok(())
    }

    fn raw_keys(&self, kind: Kind) -> Result<Vec<Vec<u8>>, StoreError> {
        self.tree(kind)
            .iter()
            .keys()
            .map(|k| k.map(|k| k.to_vec()).map_err(StoreError::from))
            .collect()
    }

    fn delete_raw(&self, kind: Kind, raw_key: &[u8]) -> Result<(), StoreError> {
        self.tree(kind).remove(raw_key)?;
        Ok(())
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
    fn a_batch_whose_expectation_fails_writes_nothing() {
        let store = SledStore::temporary().unwrap();
        let t = TenantId::generate();
        let mut first = Batch::new();
        first.put(t, Kind::Contacts, b"c".to_vec(), b"v1".to_vec());
        store.commit(&first).unwrap();

        // Read "v1", someone rewrites it, then the stale write arrives.
        let mut stale = Batch::new();
        stale.expect(t, Kind::Contacts, b"c".to_vec(), Some(b"v1".to_vec()));
        stale.put(t, Kind::Contacts, b"c".to_vec(), b"stale".to_vec());
        stale.put(t, Kind::Messages, b"m".to_vec(), b"side".to_vec());
        let mut other = Batch::new();
        other.put(t, Kind::Contacts, b"c".to_vec(), b"v2".to_vec());
        store.commit(&other).unwrap();
        assert!(matches!(store.commit(&stale), Err(StoreError::Conflict)));
        assert_eq!(
            store.get(&t, Kind::Contacts, b"c").unwrap(),
            Some(b"v2".to_vec())
        );
        assert_eq!(store.get(&t, Kind::Messages, b"m").unwrap(), None);

        // Expecting absence, and expecting what is there, both apply.
        let mut fresh = Batch::new();
        fresh.expect(t, Kind::Contacts, b"new".to_vec(), None);
        fresh.expect(t, Kind::Contacts, b"c".to_vec(), Some(b"v2".to_vec()));
        fresh.put(t, Kind::Contacts, b"new".to_vec(), b"n".to_vec());
        store.commit(&fresh).unwrap();
        assert_eq!(
            store.get(&t, Kind::Contacts, b"new").unwrap(),
            Some(b"n".to_vec())
        );
        assert!(matches!(store.commit(&fresh), Err(StoreError::Conflict)));
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

    #[test]
    fn an_interrupted_batch_is_completed_on_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let t = TenantId::generate();
        {
            let store = SledStore::open(dir.path()).unwrap();
            let mut batch = Batch::new();
            batch.put(t, Kind::Inbox, b"a".to_vec(), b"1".to_vec());
            batch.delete(t, Kind::Outbox, b"gone".to_vec());
            batch.put(t, Kind::Contacts, b"c".to_vec(), b"2".to_vec());
            // As if the process died right after journaling the batch.
            store
                .journal
                .insert(7u64.to_be_bytes(), encode_journal(batch.ops()))
                .unwrap();
            store
                .tree(Kind::Outbox)
                .insert(scoped(&t, b"gone"), b"x".as_slice())
                .unwrap();
            store.db.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            store.get(&t, Kind::Inbox, b"a").unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(
            store.get(&t, Kind::Contacts, b"c").unwrap(),
            Some(b"2".to_vec())
        );
        assert_eq!(store.get(&t, Kind::Outbox, b"gone").unwrap(), None);
        assert_eq!(store.journal.len(), 0);
    }

    #[test]
    fn a_large_batch_is_journaled_in_chunks_and_replayed_only_when_whole() {
        let dir = tempfile::tempdir().unwrap();
        let t = TenantId::generate();
        let mut batch = Batch::new();
        for i in 0u32..100 {
            batch.put(t, Kind::Messages, i.to_be_bytes().to_vec(), vec![7; 2000]);
        }
        let chunks = encode_journal_chunks(batch.ops());
        assert!(chunks.len() >= 3, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.len() <= JOURNAL_CHUNK));
        assert_eq!(chunks.iter().filter(|c| c[0] == 1).count(), 1);
        assert_eq!(chunks.last().unwrap()[0], 1);
        let mut cut = Batch::new();
        cut.put(t, Kind::Contacts, b"cut".to_vec(), b"never".to_vec());
        {
            let store = SledStore::open(dir.path()).unwrap();
            // Batch 5 was journaled whole; batch 6 lost its last chunk.
            for (index, chunk) in chunks.iter().enumerate() {
                store
                    .journal
                    .insert(journal_key(5, index), chunk.as_slice())
                    .unwrap();
            }
            let mut partial = encode_journal_chunks(cut.ops()).remove(0);
            partial[0] = 0;
            store.journal.insert(journal_key(6, 0), partial).unwrap();
            store.db.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.count(Kind::Messages), 100);
        assert_eq!(store.get(&t, Kind::Contacts, b"cut").unwrap(), None);
        assert_eq!(store.journal.len(), 0);
        // And a committed large batch leaves no journal behind.
        store.commit(&batch).unwrap();
        assert_eq!(store.journal.len(), 0);
    }

    #[test]
    fn ids_stay_unique_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let store = SledStore::open(dir.path()).unwrap();
            (0..10).map(|_| store.next_id().unwrap()).max().unwrap()
        };
        let store = SledStore::open(dir.path()).unwrap();
        assert!(store.next_id().unwrap() > first);
    }
}
