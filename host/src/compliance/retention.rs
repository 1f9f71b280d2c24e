//! Retention periods per data class.
//!
//! The service's maximums are the product's commitments: message previews
//! 90 days, message metadata 1 year, collected reviews 90 days, consent
//! records 7 years. A tenant may shorten a period, never lengthen it.

use serde::{Deserialize, Serialize};

/// The longest each class may be kept, in days.
pub const MAX_PREVIEW_DAYS: u32 = 90;
pub const MAX_METADATA_DAYS: u32 = 365;
pub const MAX_REVIEW_DAYS: u32 = 90;
pub const MAX_CONSENT_DAYS: u32 = 7 * 365 + 2;

/// A tenant's retention periods, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Message previews and stored message content (at most 90).
    pub message_previews_days: u32,
    /// Message metadata: time, kind, direction, delivery status (at most 365).
    pub message_metadata_days: u32,
    /// Reviews collected by plugins (at most 90).
    pub reviews_days: u32,
    /// Consent records (at most 2557, seven years).
    pub consent_records_days: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            message_previews_days: MAX_PREVIEW_DAYS,
            message_metadata_days: MAX_METADATA_DAYS,
            reviews_days: MAX_REVIEW_DAYS,
            consent_records_days: MAX_CONSENT_DAYS,
        }
    }
}

/// A period longer than the service allows, or zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{class}: {days} days is outside 1..={max}; a tenant may shorten a retention period, not lengthen it"
)]
pub struct RetentionError {
    pub class: &'static str,
    pub days: u32,
    pub max: u32,
}

impl RetentionPolicy {
    /// Check every period against the service's maximums.
    pub fn validate(&self) -> Result<(), RetentionError> {
        let checks = [
            (
                "message_previews_days",
                self.message_previews_days,
                MAX_PREVIEW_DAYS,
            ),
            (
                "message_metadata_days",
                self.message_metadata_days,
                MAX_METADATA_DAYS,
            ),
            ("reviews_days", self.reviews_days, MAX_REVIEW_DAYS),
            (
                "consent_records_days",
                self.consent_records_days,
                MAX_CONSENT_DAYS,
            ),
        ];
        for (class, days, max) in checks {
            if days == 0 || days > max {
                return Err(RetentionError { class, days, max });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_may_shrink_but_not_grow() {
        assert!(RetentionPolicy::default().validate().is_ok());
        let shorter = RetentionPolicy {
            message_previews_days: 7,
            ..RetentionPolicy::default()
        };
        assert!(shorter.validate().is_ok());
        let longer = RetentionPolicy {
            message_metadata_days: 400,
            ..RetentionPolicy::default()
        };
        assert_eq!(
            longer.validate().unwrap_err().class,
            "message_metadata_days"
        );
        let zero = RetentionPolicy {
            reviews_days: 0,
            ..RetentionPolicy::default()
        };
        assert!(zero.validate().is_err());
    }
}

// ------------------------------------------------------------------ sweeping

use crate::crypto::SecretKey;
use crate::data::{DataError, Vault};
use crate::ids::{ContactId, TenantId};
use crate::store::{Batch, Kind};

/// How long deduplication records are kept: WhatsApp retries a webhook for
/// up to 7 days; a month covers that with room.
pub const DEDUP_DAYS: u32 = 30;

/// A data class in the retention index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Class {
    /// A message record's preview and stored content.
    Preview = 1,
    /// A message record itself (metadata).
    Metadata = 2,
    /// The WhatsApp-id index entry of an outbound message (with its record).
    WamidIndex = 3,
    /// Plugin state: what plugins collect about a contact (the "collected
    /// reviews" class), kept 90 days after its last write.
    PluginState = 4,
    /// A consent ledger record.
    Consent = 5,
    /// A webhook deduplication record.
    Dedup = 6,
}

impl Class {
    const ALL: [Class; 6] = [
        Class::Preview,
        Class::Metadata,
        Class::WamidIndex,
        Class::PluginState,
        Class::Consent,
        Class::Dedup,
    ];

    fn days(self, policy: &RetentionPolicy) -> u32 {
        match self {
            Class::Preview => policy.message_previews_days,
            Class::Metadata | Class::WamidIndex => policy.message_metadata_days,
            Class::PluginState => policy.reviews_days,
            Class::Consent => policy.consent_records_days,
            Class::Dedup => DEDUP_DAYS,
        }
    }

    fn kind(self) -> Kind {
        match self {
            Class::Preview | Class::Metadata | Class::WamidIndex => Kind::Messages,
            Class::PluginState => Kind::PluginState,
            Class::Consent => Kind::Consent,
            Class::Dedup => Kind::Dedup,
        }
    }
}

/// The retention index key: class ‖ time written ‖ target key. Ordered by
/// class, then time, so a sweep reads exactly the entries that are due —
/// its cost follows what expires, not the size of the store — and a
/// shortened period applies to data already written.
fn index_key(class: Class, written_at: u64, target: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + target.len());
    key.push(class as u8);
    key.extend_from_slice(&written_at.to_be_bytes());
    key.extend_from_slice(target);
    key
}

/// The contact an index entry's target belongs to, if any: a message
/// (`m` ‖ contact ‖ seq) or a plugin state (contact ‖ installation).
pub fn target_contact(index_key: &[u8]) -> Option<&[u8]> {
    let class = *index_key.first()?;
    let target = index_key.get(9..)?;
    match class {
        c if c == Class::Preview as u8 || c == Class::Metadata as u8 => (target.first()
            == Some(&b'm'))
        .then(|| target.get(1..17))
        .flatten(),
        c if c == Class::PluginState as u8 => target.get(..16),
        _ => None,
    }
}

/// Stage the removal of a retention index entry (its record is erased, or
/// rewritten with a later entry).
pub fn stage_unindex(
    batch: &mut Batch,
    tenant: &TenantId,
    class: Class,
    written_at: u64,
    target: &[u8],
) {
    batch.delete(*tenant, Kind::Expiry, index_key(class, written_at, target));
}

/// Stage the retention index entry of a record written at `written_at`.
pub fn stage_index(
    batch: &mut Batch,
    tenant: &TenantId,
    class: Class,
    written_at: u64,
    target: &[u8],
) {
    batch.put(
        *tenant,
        Kind::Expiry,
        index_key(class, written_at, target),
        Vec::new(),
    );
}

/// What one sweep of one tenant did.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct SweepReport {
    /// Message previews (and stored contents) removed.
    pub previews_cleared: u64,
    /// Message records deleted.
    pub messages_deleted: u64,
    /// Plugin state records deleted.
    pub plugin_states_deleted: u64,
    /// Consent records deleted.
    pub consent_records_deleted: u64,
    /// Deduplication records deleted.
    pub dedup_records_deleted: u64,
    /// Index entries whose record was already gone (erased, rewritten).
    pub stale_entries: u64,
}

impl SweepReport {
    /// Whether anything was removed.
    pub fn is_empty(&self) -> bool {
        *self == SweepReport::default()
    }

    fn add(&mut self, other: &SweepReport) {
        self.previews_cleared += other.previews_cleared;
        self.messages_deleted += other.messages_deleted;
        self.plugin_states_deleted += other.plugin_states_deleted;
        self.consent_records_deleted += other.consent_records_deleted;
        self.dedup_records_deleted += other.dedup_records_deleted;
        self.stale_entries += other.stale_entries;
    }
}

/// Entries handled per batch, so a large backlog is committed in pieces.
const CHUNK: usize = 1000;

fn contact_key_of(
    vault: &Vault,
    tenant: &TenantId,
    contact: &[u8],
) -> Result<Option<(ContactId, SecretKey)>, DataError> {
    let Some(id) = ContactId::from_slice(contact) else {
        return Ok(None);
    };
    Ok(vault.keys.contact(tenant, &id)?.map(|key| (id, key)))
}

/// Sweep one tenant as of `now`: every record past its class's period under
/// `policy` is removed (or, for previews, cleared). `commit` applies each
/// chunk (through the committer in the service). Returns what was done.
pub fn sweep(
    vault: &Vault,
    tenant: &TenantId,
    policy: &RetentionPolicy,
    now: u64,
    commit: &mut dyn FnMut(Batch) -> Result<(), DataError>,
) -> Result<SweepReport, DataError> {
    let mut total = SweepReport::default();
    for class in Class::ALL {
        let cutoff = now.saturating_sub(u64::from(class.days(policy)) * 86_400);
        loop {
            // Peek at the oldest entry first: when nothing is due (the
            // common case between sweeps) one key is read, not a chunk.
            let oldest = vault
                .store
                .scan(tenant, Kind::Expiry, &[class as u8], None, 1)?;
            if !oldest.first().is_some_and(|(key, _)| due_by(key, cutoff)) {
                break;
            }
            let page = vault
                .store
                .scan(tenant, Kind::Expiry, &[class as u8], None, CHUNK)?;
            let due: Vec<&(Vec<u8>, Vec<u8>)> = page
                .iter()
                .take_while(|(key, _)| due_by(key, cutoff))
                .collect();
            if due.is_empty() {
                break;
            }
            let mut batch = Batch::new();
            let mut report = SweepReport::default();
            let mut keys = ContactKeys::default();
            for (key, _) in &due {
                let written_at = u64::from_be_bytes(key[1..9].try_into().expect("8 bytes"));
                let target = &key[9..];
                batch.delete(*tenant, Kind::Expiry, key.clone());
                expire(
                    vault,
                    tenant,
                    class,
                    written_at,
                    target,
                    &mut keys,
                    &mut batch,
                    &mut report,
                )?;
            }
            commit(batch)?;
            total.add(&report);
            if due.len() < page.len() || page.len() < CHUNK {
                break;
            }
        }
    }
    Ok(total)
}

/// Whether an index entry was written at or before `cutoff`.
fn due_by(index_key: &[u8], cutoff: u64) -> bool {
    index_key
        .get(1..9)
        .map(|t| u64::from_be_bytes(t.try_into().expect("8 bytes")))
        .is_some_and(|written| written <= cutoff)
}

/// Contact keys unwrapped during one chunk: a contact's messages expire
/// together, so each key is unwrapped once per chunk, not once per record.
#[derive(Default)]
struct ContactKeys(std::collections::HashMap<Vec<u8>, Option<SecretKey>>);

impl ContactKeys {
    fn get(
        &mut self,
        vault: &Vault,
        tenant: &TenantId,
        contact: &[u8],
    ) -> Result<Option<SecretKey>, DataError> {
        if let Some(key) = self.0.get(contact) {
            return Ok(key.clone());
        }
        let key = contact_key_of(vault, tenant, contact)?.map(|(_, key)| key);
        self.0.insert(contact.to_vec(), key.clone());
        Ok(key)
    }
}

#[allow(clippy::too_many_arguments)]
fn expire(
    vault: &Vault,
    tenant: &TenantId,
    class: Class,
    written_at: u64,
    target: &[u8],
    keys: &mut ContactKeys,
    batch: &mut Batch,
    report: &mut SweepReport,
) -> Result<(), DataError> {
    let kind = class.kind();
    // Records read and resealed below are looked up once, by the read.
    let sealed = matches!(class, Class::Preview | Class::PluginState);
    if !sealed && vault.store.get(tenant, kind, target)?.is_none() {
        report.stale_entries += 1;
        return Ok(());
    }
    match class {
        Class::Preview => {
            // Message keys: `m` ‖ contact ‖ seq.
            let Some(contact_key) = keys.get(vault, tenant, &target[1..17.min(target.len())])?
            else {
                report.stale_entries += 1;
                return Ok(());
            };
            let mut record: crate::data::messages::MessageRecord =
                match vault.read(&contact_key, tenant, kind, target)? {
                    Some(record) => record,
                    None => {
                        report.stale_entries += 1;
                        return Ok(());
                    }
                };
            if record.preview.is_some() || record.content.is_some() {
                record.preview = None;
                record.content = None;
                vault.stage(batch, &contact_key, tenant, kind, target, &record);
                report.previews_cleared += 1;
            }
        }
        Class::Metadata => {
            batch.delete(*tenant, kind, target.to_vec());
            report.messages_deleted += 1;
        }
        Class::WamidIndex => batch.delete(*tenant, kind, target.to_vec()),
        Class::PluginState => {
            // Keys: contact ‖ installation. Deleted only if not rewritten
            // since this entry (a later write has its own entry).
            let Some(contact_key) = keys.get(vault, tenant, &target[..16.min(target.len())])?
            else {
                report.stale_entries += 1;
                return Ok(());
            };
            let state: Option<crate::data::plugin_state::StateMap> =
                vault.read(&contact_key, tenant, kind, target)?;
            if state.is_some_and(|s| s.written_at <= written_at) {
                batch.delete(*tenant, kind, target.to_vec());
                report.plugin_states_deleted += 1;
            } else {
                report.stale_entries += 1;
            }
        }
        Class::Consent => {
            batch.delete(*tenant, kind, target.to_vec());
            report.consent_records_deleted += 1;
        }
        Class::Dedup => {
            batch.delete(*tenant, kind, target.to_vec());
            report.dedup_records_deleted += 1;
        }
    }
    Ok(())
}

/// Sweep every tenant; returns the reports of tenants where something was
/// removed. Each tenant's run is audited by `audit`.
pub fn sweep_all(
    vault: &Vault,
    now: u64,
    commit: &mut dyn FnMut(Batch) -> Result<(), DataError>,
) -> Result<Vec<(TenantId, SweepReport)>, DataError> {
    let mut reports = Vec::new();
    let mut total = SweepReport::default();
    for tenant in crate::tenancy::tenant::Tenant::list_ids(vault)? {
        let Some(profile) = crate::tenancy::tenant::Tenant::load(vault, &tenant)? else {
            continue;
        };
        let report = sweep(vault, &tenant, &profile.retention, now, commit)?;
        total.add(&report);
        reports.push((tenant, report));
    }
    Ok(reports)
}
