//! Plugin state: the `state` import's key-value map, one record per
//! (installation, contact), sealed with the contact's key so it is exported
//! and erased with the contact. Quotas are enforced by the runtime while the
//! guest writes (see `runtime::Limits`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{DataError, Vault};
use crate::crypto::SecretKey;
use crate::ids::{ContactId, InstallationId, TenantId};
use crate::store::{Batch, Kind};

/// The state map as stored, with when it was last written (retention
/// counts from there).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateMap {
    pub entries: BTreeMap<String, Vec<u8>>,
    #[serde(default)]
    pub written_at: u64,
}

/// One installation's state entries.
pub type Entries = BTreeMap<String, Vec<u8>>;

/// Contact first, so one contact's state across installations is one
/// prefix (export and erasure read only that contact's records).
fn state_key(installation: &InstallationId, contact: &ContactId) -> Vec<u8> {
    [contact.as_bytes().as_slice(), installation.as_bytes()].concat()
}

/// Load the state of an installation for a contact (empty when none).
pub fn load(
    vault: &Vault,
    tenant: &TenantId,
    installation: &InstallationId,
    contact: &ContactId,
    contact_key: &SecretKey,
) -> Result<Entries, DataError> {
    Ok(load_state(vault, tenant, installation, contact, contact_key)?.entries)
}

/// Load the state with when it was last written (empty, written at 0,
/// when none).
pub fn load_state(
    vault: &Vault,
    tenant: &TenantId,
    installation: &InstallationId,
    contact: &ContactId,
    contact_key: &SecretKey,
) -> Result<StateMap, DataError> {
    let map: Option<StateMap> = vault.read(
        contact_key,
        tenant,
        Kind::PluginState,
        &state_key(installation, contact),
    )?;
    Ok(map.unwrap_or_default())
}

/// Whose state: tenant, installation, contact and the contact's key.
#[derive(Clone, Copy)]
pub struct Slot<'a> {
    pub tenant: &'a TenantId,
    pub installation: &'a InstallationId,
    pub contact: &'a ContactId,
    pub contact_key: &'a SecretKey,
}

/// Stage a new state at `now`; an empty map deletes the record.
pub fn stage(vault: &Vault, batch: &mut Batch, slot: Slot<'_>, entries: Entries, now: u64) {
    restage(vault, batch, slot, entries, 0, now);
}

/// Stage the state after a call at `now`; an empty map deletes the record.
/// `previous` is when the record was last written (0: it did not exist):
/// its retention index entry is replaced, so a record has one entry, found
/// again by an erasure, however often it is written.
pub fn restage(
    vault: &Vault,
    batch: &mut Batch,
    slot: Slot<'_>,
    entries: Entries,
    previous: u64,
    now: u64,
) {
    let key = state_key(slot.installation, slot.contact);
    if previous != 0 && previous != now {
        crate::data::expiry::stage_unindex(
            batch,
            slot.tenant,
            crate::data::expiry::Class::PluginState,
            previous,
            &key,
        );
    }
    if entries.is_empty() {
        batch.delete(*slot.tenant, Kind::PluginState, key);
    } else {
        let map = StateMap {
            entries,
            written_at: now,
        };
        vault.stage(
            batch,
            slot.contact_key,
            slot.tenant,
            Kind::PluginState,
            &key,
            &map,
        );
        super::expiry::stage_index(
            batch,
            slot.tenant,
            super::expiry::Class::PluginState,
            now,
            &key,
        );
    }
}

/// The retention index entry of a stored state: (time, target key).
pub fn index_entry(
    installation: &InstallationId,
    contact: &ContactId,
    map: &StateMap,
) -> (u64, Vec<u8>) {
    (map.written_at, state_key(installation, contact))
}

/// Every installation's state for one contact (for export and erasure):
/// (installation, state), including installations since removed.
pub fn all_for_contact(
    vault: &Vault,
    tenant: &TenantId,
    contact: &ContactId,
    contact_key: &SecretKey,
) -> Result<Vec<(InstallationId, StateMap)>, DataError> {
    let mut found = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = vault.store.scan(
            tenant,
            Kind::PluginState,
            contact.as_bytes(),
            after.as_deref(),
            512,
        )?;
        if page.is_empty() {
            break;
        }
        for (key, sealed) in &page {
            let installation = InstallationId::from_slice(&key[16..]).ok_or(DataError::Decode {
                kind: "plugin_state",
                reason: "malformed key".into(),
            })?;
            let map: StateMap = vault.open(contact_key, tenant, Kind::PluginState, key, sealed)?;
            found.push((installation, map));
        }
        after = page.last().map(|(k, _)| k.clone());
    }
    Ok(found)
}
