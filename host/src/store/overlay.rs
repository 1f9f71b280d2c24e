//! The state the log holds and the checkpoint does not yet: every record
//! written since the last checkpoint, newest value per key (a delete is a
//! tombstone that hides the checkpoint's value).
//!
//! A record rewritten ten times between checkpoints (a contact with ten
//! events, an inbox item written and removed) is written to sled once, or
//! not at all. Two layers: the *active* one takes new writes; when it grows
//! past its budget it is *frozen* (between two commit groups, so a group is
//! never split) and the checkpointer writes it to sled while a new active
//! layer takes writes. Reads look at the active layer, then the frozen one,
//! then sled. Keys are `kind code ‖ tenant ‖ key`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crossbeam_skiplist::SkipMap;

use super::Kind;
use crate::ids::TenantId;

/// A value as a layer holds it: `None` is a tombstone.
pub type Slot = Option<Vec<u8>>;

/// One layer of writes.
#[derive(Default)]
pub struct Layer {
    map: SkipMap<Vec<u8>, Slot>,
    /// Approximate bytes held (keys, values, per-entry overhead).
    bytes: AtomicUsize,
    /// The log position after the last group applied here.
    end: AtomicU64,
}

/// Per-entry overhead counted against the budget (skip-list node, lengths).
const ENTRY_OVERHEAD: usize = 96;

impl Layer {
    /// The slot of a key, if this layer wrote it.
    pub fn get(&self, key: &[u8]) -> Option<Slot> {
        self.map.get(key).map(|entry| entry.value().clone())
    }

    /// Entries in `(start, end)`, ascending.
    pub fn range<'a>(
        &'a self,
        start: std::ops::Bound<Vec<u8>>,
        end: std::ops::Bound<Vec<u8>>,
    ) -> impl DoubleEndedIterator<Item = (Vec<u8>, Slot)> + 'a {
        self.map
            .range((start, end))
            .map(|entry| (entry.key().clone(), entry.value().clone()))
    }

    /// Every entry, ascending (the checkpointer's walk).
    pub fn iter(&self) -> impl Iterator<Item = (Vec<u8>, Slot)> + '_ {
        self.map
            .iter()
            .map(|entry| (entry.key().clone(), entry.value().clone()))
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the layer holds nothing.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The log position after the last group applied here.
    pub fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    fn write(&self, key: Vec<u8>, slot: Slot) {
        let size = ENTRY_OVERHEAD + key.len() + slot.as_ref().map_or(0, Vec::len);
        // A rewritten key's old value is freed; counting it anyway keeps
        // the arithmetic lock-free and errs towards checkpointing early.
        self.bytes.fetch_add(size, Ordering::Relaxed);
        self.map.insert(key, slot);
    }
}

/// The two layers.
#[derive(Default)]
pub struct Overlay {
    layers: RwLock<Layers>,
}

#[derive(Default, Clone)]
struct Layers {
    active: Arc<Layer>,
    frozen: Option<Arc<Layer>>,
}

/// The layers as they are at one moment, newest first.
pub struct Snapshot {
    pub active: Arc<Layer>,
    pub frozen: Option<Arc<Layer>>,
}

impl Snapshot {
    /// The newest slot of a key, if a layer wrote it.
    pub fn get(&self, key: &[u8]) -> Option<Slot> {
        self.active
            .get(key)
            .or_else(|| self.frozen.as_ref().and_then(|f| f.get(key)))
    }
}

/// The overlay key of a record.
pub fn key(kind: Kind, tenant: &TenantId, key: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(17 + key.len());
    raw.push(kind.code());
    raw.extend_from_slice(tenant.as_bytes());
    raw.extend_from_slice(key);
    raw
}

impl Overlay {
    /// The layers now.
    pub fn snapshot(&self) -> Snapshot {
        let layers = self.layers.read().expect("overlay lock").clone();
        Snapshot {
            active: layers.active,
            frozen: layers.frozen,
        }
    }

    /// Apply a group's writes (the caller serialises groups) and note the
    /// log position after it.
    pub fn apply(&self, writes: impl IntoIterator<Item = (Vec<u8>, Slot)>, end: u64) {
        let active = self.layers.read().expect("overlay lock").active.clone();
        for (key, slot) in writes {
            active.write(key, slot);
        }
        active.end.store(end, Ordering::Release);
    }

    /// Bytes in the active layer.
    pub fn active_bytes(&self) -> usize {
        self.layers.read().expect("overlay lock").active.bytes()
    }

    /// Whether a frozen layer is being checkpointed.
    pub fn has_frozen(&self) -> bool {
        self.layers.read().expect("overlay lock").frozen.is_some()
    }

    /// Freeze the active layer for a checkpoint, unless one is frozen
    /// already or it is empty. Call between groups.
    pub fn freeze(&self) -> Option<Arc<Layer>> {
        let mut layers = self.layers.write().expect("overlay lock");
        if layers.frozen.is_some() || layers.active.is_empty() {
            return None;
        }
        let end = layers.active.end();
        let fresh = Arc::new(Layer::default());
        fresh.end.store(end, Ordering::Release);
        let frozen = std::mem::replace(&mut layers.active, fresh);
        layers.frozen = Some(frozen.clone());
        Some(frozen)
    }

    /// The frozen layer is in sled: reads no longer need it.
    pub fn release_frozen(&self) {
        self.layers.write().expect("overlay lock").frozen = None;
    }

    /// Drop every entry of the layers (after a clear or a purge that went
    /// to sled directly, with the layers checkpointed before).
    pub fn retain(&self, keep: impl Fn(&[u8]) -> bool) {
        let layers = self.layers.read().expect("overlay lock").clone();
        for layer in std::iter::once(&layers.active).chain(layers.frozen.as_ref()) {
            for entry in layer.map.iter() {
                if !keep(entry.key()) {
                    entry.remove();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_the_newest_layer_and_freezing_keeps_every_write_readable() {
        let overlay = Overlay::default();
        overlay.apply([(b"a".to_vec(), Some(b"1".to_vec()))], 10);
        let frozen = overlay.freeze().unwrap();
        assert_eq!(frozen.end(), 10);
        assert!(overlay.freeze().is_none(), "one frozen layer at a time");
        overlay.apply(
            [(b"a".to_vec(), None), (b"b".to_vec(), Some(b"2".to_vec()))],
            20,
        );
        let now = overlay.snapshot();
        assert_eq!(
            now.get(b"a"),
            Some(None),
            "the tombstone hides the older value"
        );
        assert_eq!(now.get(b"b"), Some(Some(b"2".to_vec())));
        assert_eq!(now.get(b"c"), None);
        assert_eq!(now.active.end(), 20);
        overlay.release_frozen();
        assert!(overlay.snapshot().frozen.is_none());
        assert!(overlay.freeze().is_some());
    }
}
