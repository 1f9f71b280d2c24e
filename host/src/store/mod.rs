//! Storage: a narrow trait over an ordered key-value store, scoped by tenant.
//!
//! Every read and write names a tenant; the implementation prefixes keys
//! with it, so a query that is not scoped to a tenant cannot be written.
//! Records are grouped by [`Kind`] (one sled tree each). Values arrive here
//! already sealed (see [`crate::data`]); the store never sees plaintext.
//!
//! [`SledStore`] is the embedded implementation; a distributed backend can
//! implement [`Store`] without callers changing.

pub(crate) mod sled_store;

pub use sled_store::SledStore;
/// The journal's record format, public for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub use sled_store::{JournalOp, decode_journal, encode_journal};

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
    Backend(#[from] sled::Error),
    /// A journal record (a batch a crash interrupted) does not decode.
    #[error("storage: a journal record does not decode")]
    DamagedJournal,
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
}
