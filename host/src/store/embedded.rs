//! The embedded store: a log, the overlay, and sled.
//!
//! A commit is one group: encoded as one record and appended to the log
//! ([`super::log::SegmentLog`]), then applied to the overlay's active layer,
//! where every read sees it at once. [`Store::flush`] syncs the log, once for
//! every group appended since the last sync (group commit: the committer's
//! flusher calls it). A checkpointer thread writes the overlay back to sled
//! coalesced — when the active layer outgrows its budget, and at least every
//! `checkpoint_interval` — records the log position it covers, and cuts the
//! log before it. Opening replays the log from that position into the
//! overlay: recovery is the checkpoint plus the log's tail.
//!
//! Why not sled alone: one event's effects were ~23 sled inserts (each a
//! copy-on-write node update plus a write to sled's own log), and an atomic
//! batch of them needed a journal of our own written first (sled's batches
//! take a process-wide lock that deadlocked against its flusher), so every
//! batch went to disk twice. Here a group goes to disk once, as one record;
//! records rewritten between checkpoints reach sled once; runs of small
//! records reach it as chunks.
//!
//! A failed sync of the log is fatal to the process: whether the records
//! reached the disk is unknown (a failed fsync cannot be retried), so only
//! a restart, replaying what is there, can vouch for the state. A failed
//! checkpoint is not: the records stay in the overlay and the log, the
//! checkpointer tries again, and commits slow down if it keeps failing.

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::log::{Log, SegmentLog};
use super::merge::Merged;
use super::overlay::{self, Layer, Overlay, Slot};
use super::sled_store::{self, SledTrees, scoped};
use super::{Batch, Entries, Entry, Kind, Op, RecordSink, Store, StoreError, group};
use crate::ids::TenantId;

/// How the embedded store uses memory and disk.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// sled's page cache, in bytes.
    pub cache_bytes: u64,
    /// Bytes of records the overlay's active layer holds before it is
    /// checkpointed; commits wait when twice this is waiting.
    pub overlay_bytes: usize,
    /// Checkpoint at least this often while records are written (bounds
    /// the log's tail, so a restart replays little).
    pub checkpoint_interval: Duration,
    /// Cut the log once a checkpoint holds its records. Off when the log is
    /// shared (cluster mode): another node taking the log over has no
    /// checkpoint of this one's and replays the log from its start.
    pub cut_log: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_bytes: 1 << 30,
            overlay_bytes: 64 << 20,
            checkpoint_interval: Duration::from_secs(10),
            cut_log: true,
        }
    }
}

/// What the store has done since it opened.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StoreStats {
    /// Records appended to the log (one per commit group).
    pub log_appends: u64,
    /// Bytes appended to the log.
    pub log_bytes: u64,
    /// Syncs of the log.
    pub log_syncs: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Time spent writing checkpoints.
    pub checkpoint_seconds: f64,
    /// Records the checkpoints wrote back (after coalescing).
    pub checkpoint_records: u64,
    /// sled inserts and removals the checkpoints made (chunks count once).
    pub checkpoint_writes: u64,
    /// Bytes in the overlay now.
    pub overlay_bytes: u64,
}

#[derive(Default)]
struct Counters {
    log_appends: AtomicU64,
    log_bytes: AtomicU64,
    log_syncs: AtomicU64,
    checkpoints: AtomicU64,
    checkpoint_micros: AtomicU64,
    checkpoint_records: AtomicU64,
    checkpoint_writes: AtomicU64,
}

/// The embedded [`Store`]: a log of commit groups, the overlay, and sled.
pub struct SledStore {
    shared: Arc<Shared>,
    checkpointer: Option<JoinHandle<()>>,
    /// The directory of a temporary store's log, removed with the store.
    _temporary: Option<tempfile::TempDir>,
}

struct Shared {
    /// The store's directory (none for a temporary store).
    dir: Option<std::path::PathBuf>,
    trees: SledTrees,
    log: Box<dyn Log>,
    overlay: Overlay,
    /// Held while a group is appended and applied, so the log's order is
    /// the overlay's and a layer is frozen only between groups.
    writer: Mutex<()>,
    /// Held while a checkpoint is written: one at a time.
    checkpointing: Mutex<()>,
    state: Mutex<Wake>,
    /// Wakes the checkpointer, and the commits waiting for it.
    signal: Condvar,
    config: StoreConfig,
    counters: Counters,
}

#[derive(Default)]
struct Wake {
    stop: bool,
    requested: bool,
}

/// Abort the process: the store can no longer promise what it promised.
fn fatal(what: &str, error: &dyn std::fmt::Display) -> ! {
    tracing::error!(%error, "{what}; stopping so a restart recovers from the log");
    eprintln!("flowgate: {what}: {error}; aborting so a restart recovers from the log");
    std::process::abort()
}

impl SledStore {
    /// Open (or create) the store in `dir` (`dir/db`: sled, `dir/log`: the
    /// log) with the default configuration.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        SledStore::open_with(dir, StoreConfig::default())
    }

    /// Open with a sled page cache of `cache_bytes`.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<SledStore, StoreError> {
        SledStore::open_with(
            dir,
            StoreConfig {
                cache_bytes,
                ..StoreConfig::default()
            },
        )
    }

    /// Open (or create) the store in `dir`, replaying the log's tail.
    pub fn open_with(dir: &Path, config: StoreConfig) -> Result<SledStore, StoreError> {
        let trees = SledTrees::open(&dir.join("db"), config.cache_bytes)?;
        let log = SegmentLog::open(&dir.join("log"))?;
        SledStore::start(Some(dir), trees, Box::new(log), config)
    }

    /// A store in a temporary directory (tests, benchmarks).
    pub fn temporary() -> Result<SledStore, StoreError> {
        let dir = tempfile::tempdir().map_err(StoreError::Export)?;
        let trees = SledTrees::temporary()?;
        let log = SegmentLog::open(&dir.path().join("log"))?;
        let mut store = SledStore::start(None, trees, Box::new(log), StoreConfig::default())?;
        store._temporary = Some(dir);
        Ok(store)
    }

    /// The store over `trees` and `log` (a [`super::log::SledLog`] for the
    /// comparison in the store benchmark).
    pub fn start(
        dir: Option<&Path>,
        trees: SledTrees,
        log: Box<dyn Log>,
        config: StoreConfig,
    ) -> Result<SledStore, StoreError> {
        let shared = Arc::new(Shared {
            dir: dir.map(Path::to_owned),
            trees,
            log,
            overlay: Overlay::default(),
            writer: Mutex::new(()),
            checkpointing: Mutex::new(()),
            state: Mutex::new(Wake::default()),
            signal: Condvar::new(),
            config,
            counters: Counters::default(),
        });
        shared.recover()?;
        let thread_shared = shared.clone();
        let checkpointer = std::thread::Builder::new()
            .name("flowgate-checkpointer".into())
            .spawn(move || thread_shared.run_checkpointer())
            .map_err(StoreError::Export)?;
        Ok(SledStore {
            shared,
            checkpointer: Some(checkpointer),
            _temporary: None,
        })
    }

    /// Size on disk of the checkpoint, in bytes.
    pub fn size_on_disk(&self) -> u64 {
        self.shared.trees.size_on_disk()
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        self.shared.state.lock().expect("store state").stop = true;
        self.shared.signal.notify_all();
        if let Some(thread) = self.checkpointer.take() {
            let _ = thread.join();
        }
    }
}

/// Writes a group makes, as overlay entries.
fn overlay_writes(ops: &[Op]) -> impl Iterator<Item = (Vec<u8>, Slot)> + '_ {
    ops.iter()
        .map(|op| (overlay::key(op.kind, &op.tenant, &op.key), op.value.clone()))
}

impl Shared {
    /// Replay the log from the checkpoint's position into the overlay.
    fn recover(&self) -> Result<(), StoreError> {
        let from = self.trees.checkpoint_position()?;
        let mut replayed = 0u64;
        self.log.replay(from, &mut |position, record| {
            let ops = group::decode(record).ok_or_else(|| super::log::LogError::Damaged {
                position,
                reason: "a group does not decode".into(),
            })?;
            self.overlay.apply(overlay_writes(&ops), 0);
            replayed += 1;
            Ok(())
        })?;
        self.overlay.apply(std::iter::empty(), self.log.end());
        if replayed > 0 {
            tracing::info!(groups = replayed, "replayed the log's tail");
        }
        Ok(())
    }

    fn append(&self, batch: &Batch) -> Result<(), StoreError> {
        let record = group::encode(batch.ops());
        self.log.append(&record)?;
        self.counters.log_appends.fetch_add(1, Ordering::Relaxed);
        self.counters
            .log_bytes
            .fetch_add(record.len() as u64, Ordering::Relaxed);
        self.overlay
            .apply(overlay_writes(batch.ops()), self.log.end());
        Ok(())
    }

    /// Write the frozen layer, if any, back to sled, then cut the log.
    fn write_frozen(&self) -> Result<(), StoreError> {
        let Some(frozen) = self.overlay.snapshot().frozen else {
            return Ok(());
        };
        // A data directory removed under a running store (tests that drop
        // their temporary directory first) must not get half a checkpoint:
        // sled hangs flushing into a directory that is gone.
        if let Some(dir) = &self.dir
            && !dir.exists()
        {
            return Err(StoreError::Damaged {
                what: format!("the data directory {}, which is gone,", dir.display()),
            });
        }
        let started = Instant::now();
        // Only what is durable in the log may reach sled: a checkpoint cut
        // short by a crash is finished by replay, which needs the records.
        self.log.sync()?;
        let (records, writes) = self.write_layer(&frozen)?;
        self.trees.set_checkpoint_position(frozen.end())?;
        self.trees.flush()?;
        if self.config.cut_log {
            self.log.truncate(frozen.end())?;
        }
        self.overlay.release_frozen();
        let counters = &self.counters;
        counters.checkpoints.fetch_add(1, Ordering::Relaxed);
        counters
            .checkpoint_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        counters
            .checkpoint_records
            .fetch_add(records, Ordering::Relaxed);
        counters
            .checkpoint_writes
            .fetch_add(writes, Ordering::Relaxed);
        self.signal.notify_all();
        Ok(())
    }

    /// Write a layer's entries to sled, kind by kind; returns (records,
    /// sled writes).
    fn write_layer(&self, layer: &Layer) -> Result<(u64, u64), StoreError> {
        let mut records = 0;
        let mut writes = 0;
        let mut entries = layer.iter().peekable();
        while let Some((first, _)) = entries.peek() {
            let code = first[0];
            let kind = Kind::from_code(code).ok_or_else(|| StoreError::Damaged {
                what: format!("an overlay key of kind code {code}"),
            })?;
            let mut run = Vec::new();
            while let Some((key, _)) = entries.peek() {
                if key[0] != code {
                    break;
                }
                let (key, slot) = entries.next().expect("peeked");
                run.push((key[1..].to_vec(), slot));
            }
            records += run.len() as u64;
            writes += self.trees.write(kind, &run)?.writes;
        }
        Ok((records, writes))
    }

    /// Freeze the active layer between two groups.
    fn freeze(&self) -> bool {
        let _writer = self.writer.lock().expect("store writer");
        self.overlay.freeze().is_some()
    }

    /// Write everything in the overlay to sled now.
    fn checkpoint_now(&self) -> Result<(), StoreError> {
        let _one = self.checkpointing.lock().expect("checkpoint lock");
        self.write_frozen()?;
        if self.freeze() {
            self.write_frozen()?;
        }
        Ok(())
    }

    fn run_checkpointer(&self) {
        let interval = self.config.checkpoint_interval;
        let mut last = Instant::now();
        loop {
            let stop = {
                let mut state = self.state.lock().expect("store state");
                let deadline = last + interval;
                while !state.stop && !state.requested {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    state = self
                        .signal
                        .wait_timeout(state, deadline - now)
                        .expect("store state")
                        .0;
                }
                state.requested = false;
                state.stop
            };
            // No checkpoint on the way out: a graceful shutdown asks for
            // one while its data directory surely exists (see
            // `server::serve`); anything else is a crash to sled, and the
            // log's tail is replayed on the next start.
            let result = if stop {
                return;
            } else {
                let _one = self.checkpointing.lock().expect("checkpoint lock");
                let due = last.elapsed() >= interval
                    || self.overlay.active_bytes() >= self.config.overlay_bytes;
                self.write_frozen().and_then(|()| {
                    if due && self.freeze() {
                        self.write_frozen()
                    } else {
                        Ok(())
                    }
                })
            };
            match result {
                Ok(()) => last = Instant::now(),
                Err(error) => {
                    tracing::error!(%error, "writing a checkpoint failed; retrying in a second");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// After a group: freeze the active layer when it is over its budget,
    /// and wait (without the writer lock) while a checkpoint is behind.
    fn after_group(&self, writer: std::sync::MutexGuard<'_, ()>) {
        let budget = self.config.overlay_bytes;
        let active = self.overlay.active_bytes();
        if active < budget {
            return;
        }
        if self.overlay.freeze().is_some() {
            drop(writer);
            self.request_checkpoint();
            return;
        }
        drop(writer);
        if active >= budget * 2 {
            let mut state = self.state.lock().expect("store state");
            while !state.stop && self.overlay.has_frozen() {
                state = self.signal.wait(state).expect("store state");
            }
        }
    }

    fn request_checkpoint(&self) {
        self.state.lock().expect("store state").requested = true;
        self.signal.notify_all();
    }

    /// Entries of `kind` in `(start, end)` (tenant-prefixed keys): the
    /// overlay's layers over sled, tombstones included.
    fn merged<'a>(
        &'a self,
        snapshot: &'a overlay::Snapshot,
        kind: Kind,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Merged<'a, Slot> {
        let code = kind.code();
        let to_overlay = |bound: Bound<&[u8]>, above: bool| match bound {
            Bound::Included(b) => Bound::Included([&[code], b].concat()),
            Bound::Excluded(b) => Bound::Excluded([&[code], b].concat()),
            Bound::Unbounded if above => Bound::Excluded(vec![code + 1]),
            Bound::Unbounded => Bound::Included(vec![code]),
        };
        let (low, high) = (to_overlay(start, false), to_overlay(end, true));
        let layer = |layer: &'a Layer| {
            Box::new(
                layer
                    .range(low.clone(), high.clone())
                    .map(|(k, slot)| Ok((k[1..].to_vec(), slot))),
            ) as Box<dyn Iterator<Item = Result<(Vec<u8>, Slot), StoreError>> + 'a>
        };
        let mut sources = vec![layer(&snapshot.active)];
        if let Some(frozen) = &snapshot.frozen {
            sources.push(layer(frozen));
        }
        sources.push(Box::new(
            self.trees
                .range(kind, start, end)
                .map(|item| item.map(|(k, v)| (k, Some(v)))),
        ));
        Merged::new(sources)
    }

    /// The greatest live key under `prefix` (tenant-prefixed).
    fn last(&self, kind: Kind, prefix: &[u8]) -> Result<Option<Entry>, StoreError> {
        let snapshot = self.overlay.snapshot();
        let code = kind.code();
        let low = Bound::Included([&[code], prefix].concat());
        let high = match sled_store::prefix_end(prefix) {
            Some(end) => Bound::Excluded([&[code], end.as_slice()].concat()),
            None => Bound::Excluded(vec![code + 1]),
        };
        // The greatest key any source has under the prefix.
        let mut top = self.trees.last(kind, prefix)?.map(|(key, _)| key);
        for layer in std::iter::once(&snapshot.active).chain(snapshot.frozen.as_ref()) {
            if let Some((key, _)) = layer.range(low.clone(), high.clone()).next_back() {
                let key = key[1..].to_vec();
                if top.as_ref().is_none_or(|t| key > *t) {
                    top = Some(key);
                }
            }
        }
        let Some(top) = top else {
            return Ok(None);
        };
        let newest = match snapshot.get(&[&[code], top.as_slice()].concat()) {
            Some(slot) => slot,
            None => self.trees.get(kind, &top)?,
        };
        if let Some(value) = newest {
            return Ok(Some((top[16..].to_vec(), value)));
        }
        // The greatest key was deleted: walk the prefix for the last live
        // one (rare: the only caller's keys, audit entries, are never
        // deleted one by one).
        let end = sled_store::prefix_end(prefix);
        let upper = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let last = self
            .merged(&snapshot, kind, Bound::Included(prefix), upper)
            .filter_map(live)
            .last()
            .transpose()?;
        Ok(last.map(|(key, value)| (key[16..].to_vec(), value)))
    }
}

fn live(item: Result<(Vec<u8>, Slot), StoreError>) -> Option<Result<Entry, StoreError>> {
    match item {
        Ok((key, Some(value))) => Some(Ok((key, value))),
        Ok((_, None)) => None,
        Err(error) => Some(Err(error)),
    }
}

impl Store for SledStore {
    fn get(
        &self,
        tenant: &TenantId,
        kind: Kind,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let snapshot = self.shared.overlay.snapshot();
        if let Some(slot) = snapshot.get(&overlay::key(kind, tenant, key)) {
            return Ok(slot);
        }
        self.shared.trees.get(kind, &scoped(tenant, key))
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
        let from = match after {
            Some(after) => {
                let after = scoped(tenant, after);
                if after >= start {
                    Bound::Excluded(after)
                } else {
                    Bound::Included(start.clone())
                }
            }
            None => Bound::Included(start.clone()),
        };
        let end = sled_store::prefix_end(&start);
        let upper = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let snapshot = self.shared.overlay.snapshot();
        let from_ref = match &from {
            Bound::Included(b) => Bound::Included(b.as_slice()),
            Bound::Excluded(b) => Bound::Excluded(b.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut entries = Vec::new();
        for item in self
            .shared
            .merged(&snapshot, kind, from_ref, upper)
            .filter_map(live)
        {
            if entries.len() >= limit {
                break;
            }
            let (key, value) = item?;
            entries.push((key[16..].to_vec(), value));
        }
        Ok(entries)
    }

    fn last(
        &self,
        tenant: &TenantId,
        kind: Kind,
        prefix: &[u8],
    ) -> Result<Option<Entry>, StoreError> {
        self.shared.last(kind, &scoped(tenant, prefix))
    }

    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let writer = self.shared.writer.lock().expect("store writer");
        for expected in batch.expectations() {
            if self.get(&expected.tenant, expected.kind, &expected.key)? != expected.value {
                return Err(StoreError::Conflict);
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.shared.append(batch)?;
        self.shared.after_group(writer);
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        if let Err(error) = self.shared.log.sync() {
            fatal("syncing the log failed", &error);
        }
        self.shared
            .counters
            .log_syncs
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        self.shared.trees.next_id()
    }

    fn purge_tenant(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        // Everything logged so far goes to sled, and the log is cut: the
        // purge can then work on sled alone, and no replay brings back what
        // it removed.
        self.shared.checkpoint_now()?;
        let mut removed = self.shared.trees.purge_tenant(tenant)?;
        // Whatever was written for the tenant meanwhile (work in flight
        // when its keys were shredded) is deleted through the log.
        let mut batch = Batch::new();
        let snapshot = self.shared.overlay.snapshot();
        for kind in Kind::ALL {
            let start = tenant.as_bytes().to_vec();
            let end = sled_store::prefix_end(&start);
            let upper = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
            for item in self
                .shared
                .merged(&snapshot, kind, Bound::Included(&start), upper)
                .filter_map(live)
            {
                let (key, _) = item?;
                batch.delete(*tenant, kind, key[16..].to_vec());
                removed += 1;
            }
        }
        drop(snapshot);
        self.commit(&batch)?;
        self.shared.checkpoint_now()?;
        Ok(removed)
    }

    fn count(&self, kind: Kind) -> usize {
        let snapshot = self.shared.overlay.snapshot();
        self.shared
            .merged(&snapshot, kind, Bound::Unbounded, Bound::Unbounded)
            .filter_map(live)
            .count()
    }

    fn export_raw(&self, sink: &mut RecordSink<'_>) -> Result<u64, StoreError> {
        let snapshot = self.shared.overlay.snapshot();
        let mut count = 0;
        for kind in Kind::ALL {
            for item in self
                .shared
                .merged(&snapshot, kind, Bound::Unbounded, Bound::Unbounded)
                .filter_map(live)
            {
                let (key, value) = item?;
                sink(kind, &key, &value).map_err(StoreError::Export)?;
                count += 1;
            }
        }
        Ok(count)
    }

    fn clear_all(&self) -> Result<(), StoreError> {
        self.shared.checkpoint_now()?;
        self.shared.trees.clear_all()?;
        self.shared.trees.flush()?;
        Ok(())
    }

    fn import_raw(&self, kind: Kind, raw_key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let (tenant, key) = split_raw(raw_key)?;
        let mut batch = Batch::new();
        batch.put(tenant, kind, key.to_vec(), value.to_vec());
        self.commit(&batch)
    }

    fn raw_keys(&self, kind: Kind) -> Result<Vec<Vec<u8>>, StoreError> {
        let snapshot = self.shared.overlay.snapshot();
        self.shared
            .merged(&snapshot, kind, Bound::Unbounded, Bound::Unbounded)
            .filter_map(live)
            .map(|item| item.map(|(key, _)| key))
            .collect()
    }

    fn delete_raw(&self, kind: Kind, raw_key: &[u8]) -> Result<(), StoreError> {
        let (tenant, key) = split_raw(raw_key)?;
        let mut batch = Batch::new();
        batch.delete(tenant, kind, key.to_vec());
        self.commit(&batch)
    }

    fn checkpoint(&self) -> Result<(), StoreError> {
        self.shared.checkpoint_now()
    }

    fn stats(&self) -> StoreStats {
        let c = &self.shared.counters;
        let snapshot = self.shared.overlay.snapshot();
        StoreStats {
            log_appends: c.log_appends.load(Ordering::Relaxed),
            log_bytes: c.log_bytes.load(Ordering::Relaxed),
            log_syncs: c.log_syncs.load(Ordering::Relaxed),
            checkpoints: c.checkpoints.load(Ordering::Relaxed),
            checkpoint_seconds: c.checkpoint_micros.load(Ordering::Relaxed) as f64 / 1e6,
            checkpoint_records: c.checkpoint_records.load(Ordering::Relaxed),
            checkpoint_writes: c.checkpoint_writes.load(Ordering::Relaxed),
            overlay_bytes: (snapshot.active.bytes()
                + snapshot.frozen.as_ref().map_or(0, |f| f.bytes()))
                as u64,
        }
    }
}

fn split_raw(raw_key: &[u8]) -> Result<(TenantId, &[u8]), StoreError> {
    let tenant = raw_key
        .get(..16)
        .and_then(TenantId::from_slice)
        .ok_or_else(|| StoreError::Damaged {
            what: "a raw key without a tenant".into(),
        })?;
    Ok((tenant, &raw_key[16..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(batch: &mut Batch, tenant: TenantId, kind: Kind, key: &[u8], value: &[u8]) {
        batch.put(tenant, kind, key.to_vec(), value.to_vec());
    }

    fn store_in(dir: &Path) -> SledStore {
        SledStore::open_with(
            dir,
            StoreConfig {
                cache_bytes: 16 << 20,
                overlay_bytes: 64 << 20,
                // Only the tests' own calls checkpoint.
                checkpoint_interval: Duration::from_secs(3600),
                cut_log: true,
            },
        )
        .unwrap()
    }

    /// Leave the store as a crash would: no final checkpoint (dropping a
    /// store writes none).
    fn crash(store: SledStore) {
        drop(store);
    }

    #[test]
    fn reads_and_scans_never_cross_tenants() {
        let store = SledStore::temporary().unwrap();
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let mut batch = Batch::new();
        put(&mut batch, a, Kind::Contacts, b"k1", b"a1");
        put(&mut batch, a, Kind::Contacts, b"k2", b"a2");
        put(&mut batch, b, Kind::Contacts, b"k1", b"b1");
        store.commit(&batch).unwrap();
        for checkpointed in [false, true] {
            assert_eq!(
                store.get(&a, Kind::Contacts, b"k1").unwrap(),
                Some(b"a1".to_vec()),
                "checkpointed: {checkpointed}"
            );
            assert_eq!(store.get(&b, Kind::Contacts, b"k2").unwrap(), None);
            let scanned = store.scan(&b, Kind::Contacts, b"", None, 100).unwrap();
            assert_eq!(scanned, vec![(b"k1".to_vec(), b"b1".to_vec())]);
            store.checkpoint().unwrap();
        }
        assert_eq!(store.purge_tenant(&a).unwrap(), 2);
        assert_eq!(store.get(&a, Kind::Contacts, b"k1").unwrap(), None);
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
        put(&mut first, t, Kind::Contacts, b"c", b"v1");
        store.commit(&first).unwrap();
        let mut stale = Batch::new();
        stale.expect(t, Kind::Contacts, b"c".to_vec(), Some(b"v1".to_vec()));
        put(&mut stale, t, Kind::Contacts, b"c", b"stale");
        put(&mut stale, t, Kind::Messages, b"m", b"side");
        let mut other = Batch::new();
        put(&mut other, t, Kind::Contacts, b"c", b"v2");
        store.commit(&other).unwrap();
        assert!(matches!(store.commit(&stale), Err(StoreError::Conflict)));
        assert_eq!(
            store.get(&t, Kind::Contacts, b"c").unwrap(),
            Some(b"v2".to_vec())
        );
        assert_eq!(store.get(&t, Kind::Messages, b"m").unwrap(), None);
        let mut fresh = Batch::new();
        fresh.expect(t, Kind::Contacts, b"new".to_vec(), None);
        fresh.expect(t, Kind::Contacts, b"c".to_vec(), Some(b"v2".to_vec()));
        put(&mut fresh, t, Kind::Contacts, b"new", b"n");
        store.commit(&fresh).unwrap();
        assert!(matches!(store.commit(&fresh), Err(StoreError::Conflict)));
    }

    #[test]
    fn scans_merge_the_overlay_over_the_checkpoint_and_tombstones_hide() {
        let store = SledStore::temporary().unwrap();
        let t = TenantId::generate();
        let mut batch = Batch::new();
        for i in 0u8..10 {
            put(&mut batch, t, Kind::Installations, &[b'p', i], &[i]);
        }
        put(&mut batch, t, Kind::Installations, b"q", &[99]);
        store.commit(&batch).unwrap();
        store.checkpoint().unwrap();
        // Newer writes over the checkpoint: one changed, one deleted, one
        // added between two checkpointed keys.
        let mut batch = Batch::new();
        put(&mut batch, t, Kind::Installations, &[b'p', 2], &[20]);
        batch.delete(t, Kind::Installations, vec![b'p', 3]);
        put(&mut batch, t, Kind::Installations, &[b'p', 4, 0], &[40]);
        store.commit(&batch).unwrap();
        let first = store.scan(&t, Kind::Installations, b"p", None, 4).unwrap();
        let keys: Vec<Vec<u8>> = first.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(
            keys,
            vec![vec![b'p', 0], vec![b'p', 1], vec![b'p', 2], vec![b'p', 4]]
        );
        assert_eq!(first[2].1, vec![20]);
        let rest = store
            .scan(&t, Kind::Installations, b"p", Some(&first[3].0), 100)
            .unwrap();
        assert_eq!(rest[0], (vec![b'p', 4, 0], vec![40]));
        assert_eq!(rest.len(), 6);
        assert_eq!(
            store
                .last(&t, Kind::Installations, b"p")
                .unwrap()
                .unwrap()
                .1,
            vec![9]
        );
        let mut batch = Batch::new();
        batch.delete(t, Kind::Installations, vec![b'p', 9]);
        store.commit(&batch).unwrap();
        assert_eq!(
            store
                .last(&t, Kind::Installations, b"p")
                .unwrap()
                .unwrap()
                .1,
            vec![8],
            "the greatest key deleted: the one before it"
        );
    }

    #[test]
    fn committed_groups_survive_a_crash_and_a_checkpoint_cuts_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let t = TenantId::generate();
        {
            let store = store_in(dir.path());
            let mut batch = Batch::new();
            put(&mut batch, t, Kind::Contacts, b"before", b"1");
            store.commit(&batch).unwrap();
            store.checkpoint().unwrap();
            let mut batch = Batch::new();
            put(&mut batch, t, Kind::Contacts, b"after", b"2");
            batch.delete(t, Kind::Contacts, b"before".to_vec());
            store.commit(&batch).unwrap();
            store.flush().unwrap();
            crash(store);
        }
        let store = store_in(dir.path());
        assert_eq!(store.get(&t, Kind::Contacts, b"before").unwrap(), None);
        assert_eq!(
            store.get(&t, Kind::Contacts, b"after").unwrap(),
            Some(b"2".to_vec())
        );
        store.checkpoint().unwrap();
        let stats = store.stats();
        assert_eq!(stats.checkpoints, 1);
        assert_eq!(stats.overlay_bytes, 0);
        drop(store);
        let store = store_in(dir.path());
        assert_eq!(
            store.get(&t, Kind::Contacts, b"after").unwrap(),
            Some(b"2".to_vec())
        );
    }

    #[test]
    fn a_group_torn_by_a_crash_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let t = TenantId::generate();
        {
            let store = store_in(dir.path());
            let mut whole = Batch::new();
            put(&mut whole, t, Kind::Contacts, b"a", b"1");
            put(&mut whole, t, Kind::Outbox, b"a", b"1");
            store.commit(&whole).unwrap();
            let mut torn = Batch::new();
            put(&mut torn, t, Kind::Contacts, b"b", b"2");
            put(&mut torn, t, Kind::Outbox, b"b", b"2");
            store.commit(&torn).unwrap();
            store.flush().unwrap();
            crash(store);
        }
        // The crash cut the last record short.
        let log = dir.path().join("log").join(format!("{:020}.seg", 0));
        let len = std::fs::metadata(&log).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(len - 2)
            .unwrap();
        let store = store_in(dir.path());
        assert!(store.get(&t, Kind::Contacts, b"a").unwrap().is_some());
        assert!(store.get(&t, Kind::Outbox, b"a").unwrap().is_some());
        assert_eq!(store.get(&t, Kind::Contacts, b"b").unwrap(), None);
        assert_eq!(store.get(&t, Kind::Outbox, b"b").unwrap(), None);
    }

    #[test]
    fn records_rewritten_between_checkpoints_reach_sled_once() {
        let store = SledStore::temporary().unwrap();
        let t = TenantId::generate();
        for i in 0u8..10 {
            let mut batch = Batch::new();
            put(&mut batch, t, Kind::Contacts, b"busy", &[i]);
            // Written and removed before the checkpoint: never reaches it.
            put(&mut batch, TenantId::SYSTEM, Kind::Inbox, &[i], b"item");
            store.commit(&batch).unwrap();
            let mut done = Batch::new();
            done.delete(TenantId::SYSTEM, Kind::Inbox, vec![i]);
            store.commit(&done).unwrap();
        }
        store.checkpoint().unwrap();
        let stats = store.stats();
        assert_eq!(stats.log_appends, 20);
        assert_eq!(
            stats.checkpoint_records, 11,
            "the contact once, ten inbox tombstones"
        );
        assert_eq!(
            store.get(&t, Kind::Contacts, b"busy").unwrap(),
            Some(vec![9])
        );
        assert!(
            store
                .scan(&TenantId::SYSTEM, Kind::Inbox, b"", None, 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn runs_of_small_records_are_written_as_chunks_and_read_back_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let t = TenantId::generate();
        let entry = |seq: u64| [b"e".as_slice(), &seq.to_be_bytes()].concat();
        let store = store_in(dir.path());
        for first in (1..=2000u64).step_by(100) {
            let mut batch = Batch::new();
            for seq in first..first + 100 {
                put(
                    &mut batch,
                    t,
                    Kind::Audit,
                    &entry(seq),
                    &seq.to_le_bytes().repeat(40),
                );
            }
            store.commit(&batch).unwrap();
        }
        store.checkpoint().unwrap();
        let stats = store.stats();
        assert_eq!(stats.checkpoint_records, 2000);
        assert!(
            stats.checkpoint_writes < 200,
            "{} sled writes for 2000 records",
            stats.checkpoint_writes
        );
        // More entries extend the run; one is rewritten.
        let mut batch = Batch::new();
        put(&mut batch, t, Kind::Audit, &entry(2001), b"last");
        put(&mut batch, t, Kind::Audit, &entry(7), b"seven");
        store.commit(&batch).unwrap();
        drop(store);
        let store = store_in(dir.path());
        store.checkpoint().unwrap();
        assert_eq!(
            store.get(&t, Kind::Audit, &entry(7)).unwrap(),
            Some(b"seven".to_vec())
        );
        assert_eq!(
            store.get(&t, Kind::Audit, &entry(1500)).unwrap(),
            Some(1500u64.to_le_bytes().repeat(40))
        );
        assert_eq!(store.get(&t, Kind::Audit, &entry(5000)).unwrap(), None);
        assert_eq!(
            store.last(&t, Kind::Audit, b"e").unwrap().unwrap(),
            (entry(2001), b"last".to_vec())
        );
        let page = store
            .scan(&t, Kind::Audit, b"e", Some(&entry(998)), 5)
            .unwrap();
        let seqs: Vec<Vec<u8>> = page.into_iter().map(|(k, _)| k).collect();
        assert_eq!(seqs, (999..1004).map(entry).collect::<Vec<_>>());
        assert_eq!(store.count(Kind::Audit), 2001);
        // Deleting from a chunk rewrites it.
        let mut batch = Batch::new();
        for seq in 1..=1000 {
            batch.delete(t, Kind::Audit, entry(seq));
        }
        store.commit(&batch).unwrap();
        store.checkpoint().unwrap();
        assert_eq!(store.count(Kind::Audit), 1001);
        assert_eq!(
            store.scan(&t, Kind::Audit, b"e", None, 1).unwrap()[0].0,
            entry(1001)
        );
    }
}
