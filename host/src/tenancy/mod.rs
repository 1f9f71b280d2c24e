//! Tenants and what they configure: channels, installations, API keys.
//!
//! Each record is sealed with its tenant's record key. The few routing
//! entries the service needs before it knows the tenant (which tenant owns a
//! webhook channel or an API key) live under [`TenantId::SYSTEM`] and hold
//! only random ids.

pub mod api_keys;
pub mod channels;
pub mod installations;
pub mod tenant;

use crate::data::{DataError, Vault};
use crate::ids::TenantId;
use crate::store::Kind;

/// Read every record of a kind for one tenant (small collections:
/// installations, channels, keys).
pub(crate) fn read_all<T: serde::de::DeserializeOwned>(
    vault: &Vault,
    tenant: &TenantId,
    kind: Kind,
    prefix: &[u8],
) -> Result<Vec<T>, DataError> {
    let keys = vault.keys.tenant(tenant)?;
    let mut records = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = vault
            .store
            .scan(tenant, kind, prefix, after.as_deref(), 256)?;
        if page.is_empty() {
            return Ok(records);
        }
        for (key, sealed) in &page {
            records.push(vault.open(&keys.records, tenant, kind, key, sealed)?);
        }
        after = page.last().map(|(k, _)| k.clone());
    }
}
