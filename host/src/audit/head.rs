//! The sealed head: where a tenant's chain ends, kept outside the chain.
//!
//! A hash chain shows an edited or removed entry by the break it leaves
//! after it, but deleting the *newest* entries leaves a shorter chain that
//! is whole: nothing comes after them to break. So the committer keeps, per
//! tenant, the last sequence number and hash, sealed with the tenant's
//! records key under its own store key (`h`), and writes it in the same
//! atomic commit as the entries it closes: the head and the chain can only
//! disagree when someone changed one without the other. Verification
//! compares the two ([`super::verify`]); the committer goes on after the
//! head, never after what happens to be the last entry, so new entries do
//! not paper over deleted ones (the deletion then shows as a gap).
//!
//! Chains written before heads were kept have none until their next entry;
//! they are recognised by their entries' hash version (every rule-2 entry
//! was committed with a head). Deleting the head with the entries is then
//! seen as a missing head, and when the committer has to go on without a
//! trustworthy head it first chains an `audit.head-lost` entry saying so
//! (see [`resume`]), which verification reports.
//!
//! What a sealed head cannot show: a whole earlier state of the trail put
//! back (an old head with the entries it closed, from a copy of the
//! records). That needs a witness outside the data directory.

use serde::{Deserialize, Serialize};

use super::{AuditDraft, AuditEntry, ENTRY_PREFIX, GENESIS};
use crate::crypto::{SecretKey, from_hex, to_hex};
use crate::data::{DataError, Vault};
use crate::ids::TenantId;
use crate::store::{Batch, Kind};

/// The store key of the sealed head (beside `e` entries and `s` index keys).
const HEAD_KEY: &[u8] = b"h";

/// The action of the entry the committer chains when it goes on without a
/// trustworthy head.
pub const HEAD_LOST: &str = "audit.head-lost";

/// The end of a chain: its last sequence number (0 when empty) and that
/// entry's hash ([`GENESIS`] when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainEnd {
    pub seq: u64,
    pub hash: [u8; 32],
}

impl ChainEnd {
    /// The end of an empty chain.
    pub const EMPTY: ChainEnd = ChainEnd {
        seq: 0,
        hash: GENESIS,
    };
}

/// The head as stored (sealed): hex, like the entries' hashes.
#[derive(Serialize, Deserialize)]
struct StoredHead {
    seq: u64,
    hash: String,
}

/// Stage the head `end` of `tenant`'s chain into the batch that writes the
/// entries up to it.
pub fn stage(
    vault: &Vault,
    batch: &mut Batch,
    records_key: &SecretKey,
    tenant: &TenantId,
    end: ChainEnd,
) {
    let stored = StoredHead {
        seq: end.seq,
        hash: to_hex(&end.hash),
    };
    vault.stage(batch, records_key, tenant, Kind::Audit, HEAD_KEY, &stored);
}

/// What the store holds for a tenant's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    /// No head: a chain from before heads were kept, or a deleted head.
    Missing,
    /// A head that does not open or decode: altered, or moved from
    /// elsewhere.
    Unreadable,
    /// The head.
    At(ChainEnd),
}

/// Read a tenant's sealed head.
pub fn read(vault: &Vault, tenant: &TenantId) -> Result<Sealed, DataError> {
    let keys = vault.keys.tenant(tenant)?;
    let Some(sealed) = vault.store.get(tenant, Kind::Audit, HEAD_KEY)? else {
        return Ok(Sealed::Missing);
    };
    let opened = vault
        .open::<StoredHead>(&keys.records, tenant, Kind::Audit, HEAD_KEY, &sealed)
        .ok()
        .and_then(|head| {
            Some(ChainEnd {
                seq: head.seq,
                hash: from_hex::<32>(&head.hash)?,
            })
        });
    Ok(opened.map_or(Sealed::Unreadable, Sealed::At))
}

/// The newest entry in the store, whatever the head says.
pub fn last_entry(vault: &Vault, tenant: &TenantId) -> Result<Option<AuditEntry>, DataError> {
    let keys = vault.keys.tenant(tenant)?;
    match vault.store.last(tenant, Kind::Audit, ENTRY_PREFIX)? {
        Some((key, sealed)) => Ok(Some(vault.open(
            &keys.records,
            tenant,
            Kind::Audit,
            &key,
            &sealed,
        )?)),
        None => Ok(None),
    }
}

/// The sequence number of the newest entry in the store (0 for none),
/// read from its key without opening it.
pub fn last_seq(vault: &Vault, tenant: &TenantId) -> Result<u64, DataError> {
    Ok(vault
        .store
        .last(tenant, Kind::Audit, ENTRY_PREFIX)?
        .and_then(|(key, _)| <[u8; 8]>::try_from(key.get(1..)?).ok())
        .map_or(0, u64::from_be_bytes))
}

/// Where the committer goes on with a tenant's chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    /// The end to chain the next entry after.
    pub end: ChainEnd,
    /// When the sealed head could not be trusted: the entry to chain first,
    /// saying why, so that verification reports it for good.
    pub notice: Option<AuditDraft>,
}

/// Where `tenant`'s chain goes on: after its sealed head — even when the
/// newest entries are gone, so that their absence stays visible as a gap —
/// or, for a chain from before heads were kept, after its last entry.
/// Without a trustworthy head (missing from a chain that had one, not
/// opening, or behind the last entry) it goes on after the last entry, so
/// no entry is overwritten and the service keeps working, with a notice
/// (`at`: the time of the entry that made the committer look) to chain
/// first.
pub fn resume(vault: &Vault, tenant: &TenantId, at: u64) -> Result<Resume, DataError> {
    let last = last_entry(vault, tenant)?;
    let last_end = match &last {
        Some(entry) => ChainEnd {
            seq: entry.seq,
            hash: from_hex::<32>(&entry.hash).ok_or(DataError::Decode {
                kind: "audit",
                reason: "hash is not hex".into(),
            })?,
        },
        None => ChainEnd::EMPTY,
    };
    let lost = match read(vault, tenant)? {
        Sealed::At(head) if head.seq >= last_end.seq => {
            return Ok(Resume {
                end: head,
                notice: None,
            });
        }
        Sealed::At(head) => serde_json::json!({
            "reason": "the sealed head is behind the last entry (put back from an older copy)",
            "head": head.seq,
        }),
        // Every rule-2 entry was written with a head: a chain ending in
        // one without a head lost it.
        Sealed::Missing if last.as_ref().is_some_and(|e| e.hash_version >= 2) => {
            serde_json::json!({"reason": "the sealed head is missing (deleted)"})
        }
        Sealed::Missing => {
            return Ok(Resume {
                end: last_end,
                notice: None,
            });
        }
        Sealed::Unreadable => {
            serde_json::json!({"reason": "the sealed head does not open (altered or moved)"})
        }
    };
    tracing::error!(%tenant, details = %lost, "the audit chain's sealed head cannot be trusted; going on after its last entry");
    let mut details = lost;
    details["resumed_after"] = last_end.seq.into();
    Ok(Resume {
        end: last_end,
        notice: Some(
            AuditDraft::new(*tenant, at, super::Actor::System, HEAD_LOST).details(details),
        ),
    })
}
