//! The retention sweep: every record past its class's period is removed
//! (or, for previews, cleared), tenant by tenant.
//!
//! The periods and the expiry index the sweep reads live with the data they
//! govern, in [`crate::data::expiry`]: the record kinds stage their index
//! entries there, below this module.

use crate::crypto::SecretKey;
use crate::data::expiry::{self, Class};
use crate::data::{DataError, Vault};
use crate::ids::{ContactId, TenantId};
use crate::store::{Batch, Kind};

// The periods and the index moved to `data::expiry`; re-exported to keep
// callers' paths (`flowgate::compliance::retention::RetentionPolicy`).
pub use crate::data::expiry::{
    DEDUP_DAYS, MAX_CONSENT_DAYS, MAX_METADATA_DAYS, MAX_PREVIEW_DAYS, MAX_REVIEW_DAYS,
    RetentionError, RetentionPolicy, stage_index,
};

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
            let prefix = expiry::class_prefix(class);
            let oldest = vault.store.scan(tenant, Kind::Expiry, &prefix, None, 1)?;
            if !oldest
                .first()
                .is_some_and(|(key, _)| expiry::due_by(key, cutoff))
            {
                break;
            }
            let page = vault
                .store
                .scan(tenant, Kind::Expiry, &prefix, None, CHUNK)?;
            let due: Vec<&(Vec<u8>, Vec<u8>)> = page
                .iter()
                .take_while(|(key, _)| expiry::due_by(key, cutoff))
                .collect();
            if due.is_empty() {
                break;
            }
            let mut batch = Batch::new();
            let mut report = SweepReport::default();
            let mut keys = ContactKeys::default();
            for (key, _) in &due {
                let (written_at, target) = expiry::parse_entry(key).expect("a due entry parses");
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

/// Sweep every tenant under its own policy, committing each chunk through
/// `commit`; returns each tenant's report, empty ones included. Auditing the
/// run is the caller's (`service::maintenance`).
pub fn sweep_all(
    vault: &Vault,
    now: u64,
    commit: &mut dyn FnMut(Batch) -> Result<(), DataError>,
) -> Result<Vec<(TenantId, SweepReport)>, DataError> {
    let mut reports = Vec::new();
    for tenant in crate::tenancy::tenant::Tenant::list_ids(vault)? {
        let Some(profile) = crate::tenancy::tenant::Tenant::load(vault, &tenant)? else {
            continue;
        };
        let report = sweep(vault, &tenant, &profile.retention, now, commit)?;
        reports.push((tenant, report));
    }
    Ok(reports)
}
