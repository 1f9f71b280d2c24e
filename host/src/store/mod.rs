//! Storage: a narrow trait over an ordered key-value store, scoped by tenant.
//!
//! Every read and write names a tenant; the implementation prefixes keys
//! with it, so a query that is not scoped to a tenant cannot be written.
//! Records are grouped by [`Kind`]. Values arrive here already sealed (see
//! [`crate::data`]); the store never sees plaintext.
//!
//! [`SledStore`] is the embedded implementation: each commit group is one
//! record appended to a [`log`] (one sync per flush), applied to an
//! in-memory [`overlay`] that serves reads at once, and written back to
//! sled ([`sled_store`]) coalesced by a checkpointer; recovery is the
//! checkpoint plus the log's tail. A distributed backend implements
//! [`Store`] (and [`log::Log`]) without callers changing.

pub mod chunk;
mod embedded;
pub mod group;
pub mod log;
mod merge;
pub mod overlay;
pub mod sled_store;

pub use embedded::{SledStore, StoreConfig, StoreStats};

use crate::ids::TenantId;

/// A kind of record: one tree in the embedded store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Tenant profiles (under [`TenantId::SYSTEM`]: the tenant list).
    Tenants,
    /// Contacts, sealed with their contact key.
    Contacts,
    /// Lookup hashes of phone numbers and BSUIDs → contact id.
    ContactIndex,
    /// The consent ledger.
    Consent,
    /// Plugin state per (installation, contact), sealed with the contact key.
    PluginState,
    /// Message metadata and previews.
    Messages,
    /// Webhook deliveries acknowledged but not yet processed.
    Inbox,
    /// Replies waiting to be sent.
    Outbox,
    /// Deduplication of deliveries by message id.
    Dedup,
    /// Installations of plugins.
    Installations,
    /// WhatsApp channels (phone numbers) of tenants.
    Channels,
    /// API keys (hashes only).
    ApiKeys,
    /// Plugin registry: components by content hash.
    Plugins,
    /// The audit trail.
    Audit,
    /// Expiry times of records, for retention.
    Expiry,
    /// Data-subject requests.
    Requests,
}

impl Kind {
    /// The kind's stable code in log records and overlay keys. Never
    /// reuse or renumber one: records written with it are read back by it.
    pub const fn code(self) -> u8 {
        match self {
            Kind::Tenants => 1,
            Kind::Contacts => 2,
            Kind::ContactIndex => 3,
            Kind::Consent => 4,
            Kind::PluginState => 5,
            Kind::Messages => 6,
            Kind::Inbox => 7,
            Kind::Outbox => 8,
            Kind::Dedup => 9,
            Kind::Installations => 10,
            Kind::Channels => 11,
            Kind::ApiKeys => 12,
            Kind::Plugins => 13,
            Kind::Audit => 14,
            Kind::Expiry => 15,
            Kind::Requests => 16,
        }
    }

    /// The kind with this code.
    pub fn from_code(code: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// For keys this kind keeps in chunks, the length of the prefix (after
    /// the tenant) that groups them: records written in key order under
    /// one prefix and read as a run — audit entries by sequence (`e`), a
    /// contact's messages (`m` ‖ contact), retention-index entries by class
    /// and time. `None`: the key is kept on its own.
    pub fn chunked_prefix(self, key: &[u8]) -> Option<usize> {
        match (self, key.first()) {
            (Kind::Audit, Some(b'e')) => Some(1),
            (Kind::Messages, Some(b'm')) if key.len() > 17 => Some(17),
            (Kind::Expiry, Some(_)) if key.len() > 1 => Some(1),
            _ => None,
        }
    }

    /// The kind with this tree name.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Every kind, for tenant-wide operations (purge, export).
    pub const ALL: [Kind; 16] = [
        Kind::Tenants,
        Kind::Contacts,
        Kind::ContactIndex,
        Kind::Consent,
        Kind::PluginState,
        Kind::Messages,
        Kind::Inbox,
        Kind::Outbox,
        Kind::Dedup,
        Kind::Installations,
        Kind::Channels,
        Kind::ApiKeys,
        Kind::Plugins,
        Kind::Audit,
        Kind::Expiry,
        Kind::Requests,
    ];

    /// The tree name; also part of every sealed record's associated data.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Tenants => "tenants",
            Kind::Contacts => "contacts",
            Kind::ContactIndex => "contact_index",
            Kind::Consent => "consent",
            Kind::PluginState => "plugin_state",
            Kind::Messages => "messages",
            Kind::Inbox => "inbox",
            Kind::Outbox => "outbox",
            Kind::Dedup => "dedup",
            Kind::Installations => "installations",
            Kind::Channels => "channels",
            Kind::ApiKeys => "api_keys",
            Kind::Plugins => "plugins",
            Kind::Audit => "audit",
            Kind::Expiry => "expiry",
            Kind::Requests => "requests",
        }
    }
}

/// A storage failure. Callers treat it as "try again later": nothing was
/// half-written (batches are atomic).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded store failed.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// The log of commit groups failed.
    #[error(transparent)]
    Log(#[from] log::LogError),
    /// A record the store wrote does not decode.
    #[error("{what} is damaged")]
    Damaged { what: String },
    /// The sink an export was writing to failed.
    #[error("storage: writing: {0}")]
    Export(#[source] std::io::Error),
    /// A record the batch expected (see [`Batch::expect`]) had changed;
    /// nothing of the batch was written.
    #[error("a record changed since it was read; nothing was written")]
    Conflict,
}

/// One write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub tenant: TenantId,
    pub kind: Kind,
    pub key: Vec<u8>,
    /// `None` deletes.
    pub value: Option<Vec<u8>>,
}

/// A precondition of a batch: the record at `key` holds exactly `value`
/// (`None`: is absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub tenant: TenantId,
    pub kind: Kind,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// Writes applied atomically: all or none — and, when the batch carries
/// expectations, only if every one of them still holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
    expected: Vec<Expectation>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Write `value` at `key`.
    pub fn put(&mut self, tenant: TenantId, kind: Kind, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        self.ops.push(Op {
            tenant,
            kind,
            key: key.into(),
            value: Some(value),
        });
    }

    /// Delete `key`.
    pub fn delete(&mut self, tenant: TenantId, kind: Kind, key: impl Into<Vec<u8>>) {
        self.ops.push(Op {
            tenant,
            kind,
            key: key.into(),
            value: None,
        });
    }

    /// Apply only if the record at `key` still holds `value` (`None`: is
    /// still absent). This is how a read-modify-write stays correct with
    /// several writers: a record is sealed with a fresh nonce on every
    /// write, so its stored bytes change whenever anyone rewrites it.
    pub fn expect(
        &mut self,
        tenant: TenantId,
        kind: Kind,
        key: impl Into<Vec<u8>>,
        value: Option<Vec<u8>>,
    ) {
        self.expected.push(Expectation {
            tenant,
            kind,
            key: key.into(),
            value,
        });
    }

    /// Append another batch's writes and expectations.
    pub fn extend(&mut self, other: Batch) {
        self.ops.extend(other.ops);
        self.expected.extend(other.expected);
    }

    /// The preconditions, in the order they were added.
    pub fn expectations(&self) -> &[Expectation] {
        &self.expected
    }

    /// Remove and return the preconditions (a caller that checked them
    /// itself, as the committer does for each request of a group).
    pub fn take_expectations(&mut self) -> Vec<Expectation> {
        std::mem::take(&mut self.expected)
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The writes, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
}

/// A record as stored: key (without the tenant prefix) and value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A page of a prefix scan.
pub type Entries = Vec<Entry>;

/// Receives records of an export: kind, raw key, value.
pub type RecordSink<'a> = dyn FnMut(Kind, &[u8], &[u8]) -> std::io::Result<()> + 'a;

/// The storage interface every backend implements.
pub trait Store: Send + Sync + 'static {
    /// Read one record.
    fn get(&self, tenant: &TenantId, kind: Kind, key: &[u8])
    -> Result<Option<Vec<u8>>, StoreError>;

    /// Records whose key starts with `prefix`, in key order, starting after
    /// `after` (exclusive) when given, at most `limit`.
    fn scan(
        &self,
        tenant: &TenantId,
        kind: Kind,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError>;

    /// The record with the greatest key under `prefix`.
    fn last(
        &self,
        tenant: &TenantId,
        kind: Kind,
        prefix: &[u8],
    ) -> Result<Option<Entry>, StoreError>;

    /// Apply a batch atomically; [`StoreError::Conflict`] (and nothing
    /// written) when one of its expectations does not hold.
    fn commit(&self, batch: &Batch) -> Result<(), StoreError>;

    /// Make every committed batch durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// A number never returned before by this store (monotonic).
    fn next_id(&self) -> Result<u64, StoreError>;

    /// Delete every record of a tenant; returns how many were deleted.
    fn purge_tenant(&self, tenant: &TenantId) -> Result<u64, StoreError>;

    /// Number of records of a kind across all tenants (for metrics).
    fn count(&self, kind: Kind) -> usize;

    /// Every record as stored (tenant-prefixed key, sealed value), kind by
    /// kind, for backups. Call it where no write can interleave (the
    /// committer's exclusive section) to get a consistent snapshot.
    fn export_raw(&self, sink: &mut RecordSink<'_>) -> Result<u64, StoreError>;

    /// Delete every record of every tenant (before a restore).
    fn clear_all(&self) -> Result<(), StoreError>;

    /// Write one record as exported by [`Store::export_raw`].
    fn import_raw(&self, kind: Kind, raw_key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Every raw key of a kind, across tenants (for restore's clean-up).
    fn raw_keys(&self, kind: Kind) -> Result<Vec<Vec<u8>>, StoreError>;

    /// Delete one record by its raw key.
    fn delete_raw(&self, kind: Kind, raw_key: &[u8]) -> Result<(), StoreError>;

    /// Write everything committed so far back to the store's checkpoint
    /// and cut the log (tests, benchmarks, a clean shutdown).
    fn checkpoint(&self) -> Result<(), StoreError>;

    /// What the store has done since it opened, for metrics.
    fn stats(&self) -> StoreStats;
}
