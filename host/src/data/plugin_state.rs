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

/// The state map as stored: values base64-free as byte arrays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateMap(pub BTreeMap<String, Vec<u8>>);

/// One installation's state entries.
pub type Entries = BTreeMap<String, Vec<u8>>;

fn state_key(installation: &InstallationId, contact: &ContactId) -> Vec<u8> {
    [installation.as_bytes().as_slice(), contact.as_bytes()].concat()
}

/// Load the state of an installation for a contact (empty when none).
pub fn load(
    vault: &Vault,
    tenant: &TenantId,
    installation: &InstallationId,
    contact: &ContactId,
    contact_key: &SecretKey,
) -> Result<BTreeMap<String, Vec<u8>>, DataError> {
    let map: Option<StateMap> = vault.read(
        contact_key,
        tenant,
        Kind::PluginState,
        &state_key(installation, contact),
    )?;
    Ok(map.unwrap_or_default().0)
}

/// Stage the state after a call; an empty map deletes the record.
pub fn stage(
    vault: &Vault,
    batch: &mut Batch,
    tenant: &TenantId,
    installation: &InstallationId,
    contact: &ContactId,
    contact_key: &SecretKey,
    entries: BTreeMap<String, Vec<u8>>,
) {
    let key = state_key(installation, contact);
    if entries.is_empty() {
        batch.delete(*tenant, Kind::PluginState, key);
    } else {
        vault.stage(
            batch,
            contact_key,
            tenant,
            Kind::PluginState,
            &key,
            &StateMap(entries),
        );
    }
}

/// Every installation's state for one contact (for export and erasure):
/// (installation, entries). Installations are found by scanning, so state of
/// an installation since removed is still exported and erased.
pub fn all_for_contact(
    vault: &Vault,
    tenant: &TenantId,
    contact: &ContactId,
    contact_key: &SecretKey,
) -> Result<Vec<(InstallationId, Entries)>, DataError> {
    let mut found = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = vault
            .store
            .scan(tenant, Kind::PluginState, b"", after.as_deref(), 512)?;
        if page.is_empty() {
            break;
        }
        for (key, sealed) in &page {
            if key.len() == 32 && &key[16..] == contact.as_bytes() {
                let installation = InstallationId::from_slice(&key[..16]).expect("16 bytes");
                let map: StateMap =
                    vault.open(contact_key, tenant, Kind::PluginState, key, sealed)?;
                found.push((installation, map.0));
            }
        }
        after = page.last().map(|(k, _)| k.clone());
    }
    Ok(found)
}
