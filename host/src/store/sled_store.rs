//! The checkpoint on sled: where records live once the log's tail has been
//! written back.
//!
//! One tree per [`Kind`], keys prefixed by the tenant's 16-byte id. Keys a
//! kind keeps in chunks ([`Kind::chunked_prefix`]) live in the kind's
//! `<name>.chunks` tree instead, a run of them per value (see
//! [`super::chunk`]). Only the checkpointer writes here (and maintenance
//! run with the service quiet: tenant purges, restores), one key at a time:
//! sled's batches take a process-wide lock that deadlocked against its own
//! flusher under load, and atomicity comes from the log anyway — a
//! checkpoint cut short by a crash is finished by replaying the log from
//! the last completed checkpoint.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;

use super::chunk;
use super::{Kind, StoreError};
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

/// A record as sled holds it: tenant-prefixed key and value.
pub type RawEntry = (Vec<u8>, Vec<u8>);

/// A forward walk over raw entries.
pub type RawIter<'a> = Box<dyn Iterator<Item = Result<RawEntry, StoreError>> + 'a>;

/// The checkpointed records.
pub struct SledTrees {
    db: sled::Db,
    trees: HashMap<Kind, sled::Tree>,
    chunks: HashMap<Kind, sled::Tree>,
    meta: sled::Tree,
    ids: IdBlocks,
}

/// Where the meta tree keeps the log position the checkpoint covers.
const CHECKPOINT_KEY: &[u8] = b"checkpoint-position";

/// Ids handed out from blocks reserved durably in advance.
///
/// sled's own `generate_id` holds sled's global read lock while it may do a
/// blocking flush; with a concurrent batch waiting for the write lock and
/// the flusher waiting for a read lock, that deadlocked the service under
/// test. Reserving a block of 2^32 ids at a time (one durable write per
/// block) keeps ids unique across restarts without taking that lock.
struct IdBlocks {
    next: std::sync::atomic::AtomicU64,
    reserved: std::sync::Mutex<u64>,
}

const ID_BLOCK: u64 = 1 << 32;
const ID_KEY: &[u8] = b"id-reserved-until";

impl IdBlocks {
    fn open(db: &sled::Db, meta: &sled::Tree) -> Result<IdBlocks, StoreError> {
        let start = meta
            .get(ID_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(1);
        let blocks = IdBlocks {
            next: std::sync::atomic::AtomicU64::new(start),
            reserved: std::sync::Mutex::new(start),
        };
        blocks.reserve(start + ID_BLOCK, db, meta)?;
        Ok(blocks)
    }

    fn reserve(&self, until: u64, db: &sled::Db, meta: &sled::Tree) -> Result<(), StoreError> {
        let mut reserved = self.reserved.lock().expect("id lock");
        if *reserved >= until {
            return Ok(());
        }
        meta.insert(ID_KEY, &until.to_be_bytes())?;
        db.flush()?;
        *reserved = until;
        Ok(())
    }

    fn raise(&self, floor: u64, db: &sled::Db, meta: &sled::Tree) -> Result<(), StoreError> {
        self.next
            .fetch_max(floor, std::sync::atomic::Ordering::Relaxed);
        self.reserve(floor + ID_BLOCK, db, meta)
    }

    fn next(&self, db: &sled::Db, meta: &sled::Tree) -> Result<u64, StoreError> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let reserved = *self.reserved.lock().expect("id lock");
        if id >= reserved {
            self.reserve(id + ID_BLOCK, db, meta)?;
        }
        Ok(id)
    }
}

/// A tenant-prefixed key.
pub fn scoped(tenant: &TenantId, key: &[u8]) -> Vec<u8> {
    let mut scoped = Vec::with_capacity(16 + key.len());
    scoped.extend_from_slice(tenant.as_bytes());
    scoped.extend_from_slice(key);
    scoped
}

/// The smallest key greater than every key starting with `prefix`, or
/// `None` when there is none (all bytes 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The chunk group of a raw key: its tenant and the kind's chunked prefix,
/// or `None` for a key kept on its own.
pub fn chunk_group(kind: Kind, raw: &[u8]) -> Option<&[u8]> {
    let key = raw.get(16..)?;
    let length = kind.chunked_prefix(key)?;
    raw.get(..16 + length)
}

fn owned_bound(bound: Bound<&[u8]>) -> Bound<Vec<u8>> {
    match bound {
        Bound::Included(b) => Bound::Included(b.to_vec()),
        Bound::Excluded(b) => Bound::Excluded(b.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl SledTrees {
    /// Open (or create) the trees in `dir`, caching up to `cache_bytes` of
    /// pages in memory.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<SledTrees, StoreError> {
        let db = open_db(
            &sled::Config::new()
                .path(dir)
                // Durability comes from the log; sled's own log is flushed
                // at the end of each checkpoint and at least this often.
                .flush_every_ms(Some(1000))
                .cache_capacity(cache_bytes),
        )?;
        SledTrees::from_db(db)
    }

    /// Trees in a temporary directory (tests, benchmarks).
    pub fn temporary() -> Result<SledTrees, StoreError> {
        SledTrees::from_db(sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: sled::Db) -> Result<SledTrees, StoreError> {
        let mut trees = HashMap::new();
        let mut chunks = HashMap::new();
        for kind in Kind::ALL {
            trees.insert(kind, db.open_tree(kind.name())?);
            chunks.insert(kind, db.open_tree(format!("{}.chunks", kind.name()))?);
        }
        let meta = db.open_tree("meta")?;
        let ids = IdBlocks::open(&db, &meta)?;
        Ok(SledTrees {
            db,
            trees,
            chunks,
            meta,
            ids,
        })
    }

    fn tree(&self, kind: Kind) -> &sled::Tree {
        &self.trees[&kind]
    }

    fn chunk_tree(&self, kind: Kind) -> &sled::Tree {
        &self.chunks[&kind]
    }

    /// The log position the checkpoint covers (0 before the first).
    pub fn checkpoint_position(&self) -> Result<u64, StoreError> {
        Ok(self
            .meta
            .get(CHECKPOINT_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// Record that the checkpoint covers the log up to `position`, after
    /// every write of it; durable with the next [`SledTrees::flush`], which
    /// makes the writes before it durable too (sled recovers its log in
    /// order).
    pub fn set_checkpoint_position(&self, position: u64) -> Result<(), StoreError> {
        self.meta.insert(CHECKPOINT_KEY, &position.to_be_bytes())?;
        Ok(())
    }

    /// Make every write durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// A number never returned before (monotonic).
    pub fn next_id(&self) -> Result<u64, StoreError> {
        self.ids.next(&self.db, &self.meta)
    }

    /// Hand out ids from `floor` up from now on, if they are below it. A
    /// cluster node's trees are a cache that starts empty at each takeover,
    /// so the ids the previous owners handed out are not known here: the
    /// node claims a range above all of theirs (see `crate::node`).
    pub fn ids_from(&self, floor: u64) -> Result<(), StoreError> {
        self.ids.raise(floor, &self.db, &self.meta)
    }

    /// Size on disk, in bytes.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Read one record by raw key.
    pub fn get(&self, kind: Kind, raw: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(group) = chunk_group(kind, raw) else {
            return Ok(self.tree(kind).get(raw)?.map(|v| v.to_vec()));
        };
        let Some((chunk_key, bytes)) = self
            .chunk_tree(kind)
            .range(group..=raw)
            .next_back()
            .transpose()?
        else {
            return Ok(None);
        };
        if !chunk_key.starts_with(group) {
            return Ok(None);
        }
        let records = decode_chunk(&chunk_key, &bytes)?;
        let suffix = &raw[group.len()..];
        Ok(records
            .binary_search_by(|(k, _)| k.as_slice().cmp(suffix))
            .ok()
            .map(|i| records[i].1.clone()))
    }

    /// Records in `(start, end)`, ascending by raw key.
    pub fn range<'a>(&'a self, kind: Kind, start: Bound<&[u8]>, end: Bound<&[u8]>) -> RawIter<'a> {
        let plain = self
            .tree(kind)
            .range::<Vec<u8>, _>((owned_bound(start), owned_bound(end)))
            .map(|item| {
                item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(StoreError::from)
            });
        let chunked = ChunkWalk::new(self.chunk_tree(kind), start, end);
        Box::new(super::merge::Merged::new(vec![
            Box::new(plain) as RawIter<'a>,
            Box::new(chunked),
        ]))
    }

    /// The record with the greatest raw key starting with `prefix`.
    pub fn last(&self, kind: Kind, prefix: &[u8]) -> Result<Option<RawEntry>, StoreError> {
        let plain = self
            .tree(kind)
            .scan_prefix(prefix)
            .next_back()
            .transpose()?
            .map(|(k, v)| (k.to_vec(), v.to_vec()));
        let chunked = self.last_chunked(kind, prefix)?;
        Ok(match (plain, chunked) {
            (Some(a), Some(b)) => Some(if a.0 >= b.0 { a } else { b }),
            (a, b) => a.or(b),
        })
    }

    fn last_chunked(&self, kind: Kind, prefix: &[u8]) -> Result<Option<RawEntry>, StoreError> {
        let tree = self.chunk_tree(kind);
        let upper = match prefix_end(prefix) {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        // A chunk starting before `prefix` may still hold keys under it.
        for item in tree.range::<Vec<u8>, _>((Bound::Unbounded, upper)).rev() {
            let (chunk_key, bytes) = item?;
            let records = decode_chunk(&chunk_key, &bytes)?;
            let Some(group) = records
                .first()
                .and_then(|(first, _)| chunk_key.len().checked_sub(first.len()))
                .map(|length| &chunk_key[..length])
            else {
                continue;
            };
            for (suffix, value) in records.iter().rev() {
                let key = [group, suffix.as_slice()].concat();
                if key.starts_with(prefix) {
                    return Ok(Some((key, value.clone())));
                }
                if key.as_slice() < prefix {
                    return Ok(None);
                }
            }
            if chunk_key.as_ref() < prefix {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// Write a checkpoint's records: `entries` sorted by raw key (`None`
    /// deletes). Chunked keys are written back a run per chunk.
    pub fn write(
        &self,
        kind: Kind,
        entries: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> Result<WriteCounts, StoreError> {
        let mut counts = WriteCounts::default();
        let tree = self.tree(kind);
        let mut index = 0;
        while index < entries.len() {
            let (raw, value) = &entries[index];
            let Some(group) = chunk_group(kind, raw) else {
                match value {
                    Some(value) => tree.insert(raw.as_slice(), value.as_slice())?,
                    None => tree.remove(raw.as_slice())?,
                };
                counts.writes += 1;
                index += 1;
                continue;
            };
            let run = entries[index..]
                .iter()
                .take_while(|(k, _)| k.starts_with(group) && k.len() > group.len())
                .count()
                .max(1);
            counts.add(self.write_group(kind, group, &entries[index..index + run])?);
            index += run;
        }
        Ok(counts)
    }

    /// Apply sorted changes to the chunks of one group.
    fn write_group(
        &self,
        kind: Kind,
        group: &[u8],
        changes: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> Result<WriteCounts, StoreError> {
        let tree = self.chunk_tree(kind);
        let group_end = prefix_end(group);
        let in_group = |key: &[u8]| key.starts_with(group);
        let mut counts = WriteCounts::default();
        let mut index = 0;
        while index < changes.len() {
            let first = changes[index].0.as_slice();
            // The chunk covering `first`: the last one at or before it, or
            // (for a key before every chunk) the group's first chunk.
            let covering = match tree.range(group..=first).next_back().transpose()? {
                Some((key, bytes)) if in_group(&key) => Some((key, bytes)),
                _ => tree
                    .range::<Vec<u8>, _>((
                        Bound::Included(first.to_vec()),
                        group_end.clone().map_or(Bound::Unbounded, Bound::Excluded),
                    ))
                    .next()
                    .transpose()?,
            };
            let next = match &covering {
                Some((key, _)) => tree
                    .range::<&[u8], _>((Bound::Excluded(key.as_ref()), Bound::Unbounded))
                    .keys()
                    .next()
                    .transpose()?
                    .filter(|k| in_group(k)),
                None => None,
            };
            let end = index
                + changes[index..]
                    .iter()
                    .take_while(|(k, _)| next.as_ref().is_none_or(|n| k.as_slice() < n.as_ref()))
                    .count();
            let suffixed: Vec<(Vec<u8>, Option<Vec<u8>>)> = changes[index..end]
                .iter()
                .map(|(k, v)| (k[group.len()..].to_vec(), v.clone()))
                .collect();
            index = end;
            let (old_key, records) = match covering {
                Some((key, bytes)) => {
                    let records = decode_chunk(&key, &bytes)?;
                    counts.reads += 1;
                    // Appending past a full enough last chunk: start a new
                    // one rather than rewrite this one.
                    let appends = next.is_none()
                        && chunk::size(&records) >= chunk::EXTEND_BELOW
                        && records
                            .last()
                            .is_some_and(|(last, _)| suffixed[0].0 > *last);
                    if appends {
                        (None, Vec::new())
                    } else {
                        (Some(key), records)
                    }
                }
                None => (None, Vec::new()),
            };
            let merged = chunk::merge(records, &suffixed);
            let pieces = chunk::split(merged);
            let new_first = pieces.first().map(|p| [group, p[0].0.as_slice()].concat());
            if let Some(old) = &old_key
                && new_first.as_deref() != Some(old.as_ref())
            {
                tree.remove(old)?;
                counts.writes += 1;
            }
            for piece in pieces {
                let key = [group, piece[0].0.as_slice()].concat();
                tree.insert(key, chunk::encode(&piece))?;
                counts.writes += 1;
            }
        }
        Ok(counts)
    }

    /// Delete every record of a tenant, directly (the caller has
    /// checkpointed first, so no log record can bring them back); returns
    /// how many records were deleted.
    pub fn purge_tenant(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        let mut removed = 0;
        for kind in Kind::ALL {
            for (tree, chunked) in [(self.tree(kind), false), (self.chunk_tree(kind), true)] {
                loop {
                    // In steps, so a large tenant does not sit in memory.
                    let page: Vec<(sled::IVec, sled::IVec)> = tree
                        .scan_prefix(tenant.as_bytes())
                        .take(10_000)
                        .collect::<Result<_, _>>()?;
                    if page.is_empty() {
                        break;
                    }
                    for (key, value) in &page {
                        removed += if chunked {
                            decode_chunk(key, value)?.len() as u64
                        } else {
                            1
                        };
                        tree.remove(key)?;
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Delete every record of every tenant (before a restore).
    pub fn clear_all(&self) -> Result<(), StoreError> {
        for kind in Kind::ALL {
            self.tree(kind).clear()?;
            self.chunk_tree(kind).clear()?;
        }
        Ok(())
    }

    /// Number of records of a kind across all tenants (tests, benches).
    pub fn count(&self, kind: Kind) -> Result<usize, StoreError> {
        let mut count = self.tree(kind).len();
        for item in self.chunk_tree(kind).iter() {
            let (key, bytes) = item?;
            count += decode_chunk(&key, &bytes)?.len();
        }
        Ok(count)
    }
}

/// How much a checkpoint wrote: sled inserts and removals, and chunks read
/// to be rewritten.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCounts {
    pub writes: u64,
    pub reads: u64,
}

impl WriteCounts {
    pub fn add(&mut self, other: WriteCounts) {
        self.writes += other.writes;
        self.reads += other.reads;
    }
}

fn decode_chunk(key: &[u8], bytes: &[u8]) -> Result<chunk::Records, StoreError> {
    chunk::decode(bytes).ok_or_else(|| StoreError::Damaged {
        what: format!("the chunk at {}", flowgate_hex::to_hex(key)),
    })
}

/// A forward walk over the records in the chunks of a range.
struct ChunkWalk {
    chunks: sled::Iter,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    pending: std::vec::IntoIter<RawEntry>,
    done: bool,
}

impl ChunkWalk {
    fn new(tree: &sled::Tree, start: Bound<&[u8]>, end: Bound<&[u8]>) -> ChunkWalk {
        // The chunk holding `start` may begin before it.
        let from = match start {
            Bound::Included(s) | Bound::Excluded(s) => tree
                .range(..=s)
                .keys()
                .next_back()
                .and_then(Result::ok)
                .map_or(Bound::Included(s.to_vec()), |k| Bound::Included(k.to_vec())),
            Bound::Unbounded => Bound::Unbounded,
        };
        ChunkWalk {
            chunks: tree.range::<Vec<u8>, _>((from, owned_bound(end))),
            start: owned_bound(start),
            end: owned_bound(end),
            pending: Vec::new().into_iter(),
            done: false,
        }
    }
}

fn as_ref_bound(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(b) => Bound::Included(b.as_slice()),
        Bound::Excluded(b) => Bound::Excluded(b.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl Iterator for ChunkWalk {
    type Item = Result<RawEntry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.pending.next() {
                return Some(Ok(entry));
            }
            if self.done {
                return None;
            }
            let (chunk_key, bytes) = match self.chunks.next()? {
                Ok(item) => item,
                Err(error) => {
                    self.done = true;
                    return Some(Err(error.into()));
                }
            };
            let records = match decode_chunk(&chunk_key, &bytes) {
                Ok(records) => records,
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            };
            // A chunk's key is its group prefix followed by its first
            // record's suffix; every record of it shares the group prefix.
            let Some(group) = records
                .first()
                .and_then(|(first, _)| chunk_key.len().checked_sub(first.len()))
                .map(|length| chunk_key[..length].to_vec())
            else {
                continue;
            };
            let (start, end) = (as_ref_bound(&self.start), as_ref_bound(&self.end));
            let entries: Vec<RawEntry> = records
                .into_iter()
                .map(|(suffix, value)| ([group.as_slice(), &suffix].concat(), value))
                .filter(|(key, _)| chunk::within(key, start, end))
                .collect();
            self.pending = entries.into_iter();
        }
    }
}
