//! Tenant API keys: shown once, stored only as keyed hashes.
//!
//! A key reads `fgk_<key id>_<secret>`. The key id (public, random) finds
//! the tenant and the record; the record holds a blake3 hash of the secret
//! keyed with the tenant's secret-hash key, compared in constant time. The
//! secret itself is never stored.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::crypto::{TenantKeys, from_hex, from_lower_hex, random_bytes, to_hex};
use crate::data::{DataError, Vault};
use crate::ids::{ApiKeyId, TenantId};
use crate::store::{Batch, Kind};

/// What a key may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Everything: installations, keys, consent, contacts, audit.
    Admin,
    /// Data-subject requests (access, export, rectification, erasure,
    /// restriction, objection) and consent.
    Dsr,
    /// Read contacts, installations and the audit trail.
    Read,
}

/// A key's record (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKey {
    #[schema(value_type = String)]
    pub id: ApiKeyId,
    pub name: String,
    pub scopes: BTreeSet<Scope>,
    pub created_at: u64,
    /// Hex keyed hash of the secret.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    #[schema(ignore)]
    pub secret_hash: String,
}

impl Scope {
    /// The scope's name, as the API spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Dsr => "dsr",
            Scope::Read => "read",
        }
    }
}

impl ApiKey {
    /// Whether the key carries `scope` (admin carries every scope).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    /// The record without its hash, for API answers.
    pub fn public(&self) -> ApiKey {
        ApiKey {
            secret_hash: String::new(),
            ..self.clone()
        }
    }
}

fn secret_hash(keys: &TenantKeys, id: &ApiKeyId, secret: &[u8; 32]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_keyed(&keys.secrets);
    hasher.update(b"api-key\0");
    hasher.update(id.as_bytes());
    hasher.update(secret);
    *hasher.finalize().as_bytes()
}

/// A freshly created key: the record to store and the token to show once.
pub struct NewKey {
    pub record: ApiKey,
    pub token: String,
}

/// Create a key for `tenant`.
pub fn create(keys: &TenantKeys, name: &str, scopes: BTreeSet<Scope>, now: u64) -> NewKey {
    let id = ApiKeyId::generate();
    let secret: [u8; 32] = random_bytes();
    let token = format!("fgk_{}_{}", to_hex(id.as_bytes()), to_hex(&secret));
    NewKey {
        record: ApiKey {
            id,
            name: name.to_owned(),
            scopes,
            created_at: now,
            secret_hash: to_hex(&secret_hash(keys, &id, &secret)),
        },
        token,
    }
}

/// Stage a key's record and routing entry.
pub fn stage(
    vault: &Vault,
    batch: &mut Batch,
    tenant: &TenantId,
    key: &ApiKey,
) -> Result<(), DataError> {
    let keys = vault.keys.tenant(tenant)?;
    vault.stage(
        batch,
        &keys.records,
        tenant,
        Kind::ApiKeys,
        key.id.as_bytes(),
        key,
    );
    batch.put(
        TenantId::SYSTEM,
        Kind::ApiKeys,
        key.id.as_bytes().to_vec(),
        tenant.as_bytes().to_vec(),
    );
    Ok(())
}

/// Stage a key's revocation.
pub fn stage_revocation(batch: &mut Batch, tenant: &TenantId, id: &ApiKeyId) {
    batch.delete(*tenant, Kind::ApiKeys, id.as_bytes().to_vec());
    batch.delete(TenantId::SYSTEM, Kind::ApiKeys, id.as_bytes().to_vec());
}

/// A tenant's keys.
pub fn list(vault: &Vault, tenant: &TenantId) -> Result<Vec<ApiKey>, DataError> {
    super::read_all(vault, tenant, Kind::ApiKeys, b"")
}

/// Split a token into key id and secret. A token has one spelling, as an
/// id does (see [`crate::ids`]): the failed-authentication throttle counts
/// per key id, and a second spelling must not name the key a second time.
fn parse(token: &str) -> Option<(ApiKeyId, [u8; 32])> {
    let rest = token.strip_prefix("fgk_")?;
    let (id, secret) = rest.split_once('_')?;
    Some((
        ApiKeyId::from_bytes(from_lower_hex::<16>(id)?),
        from_lower_hex::<32>(secret)?,
    ))
}

/// The key id a token names, whether or not its secret is right (or even
/// well-formed).
pub fn key_id_of(token: &str) -> Option<ApiKeyId> {
    let (id, _) = token.strip_prefix("fgk_")?.split_once('_')?;
    Some(ApiKeyId::from_bytes(from_lower_hex::<16>(id)?))
}

/// Check a bearer token: the tenant and key it belongs to, or `None`.
pub fn authenticate(vault: &Vault, token: &str) -> Result<Option<(TenantId, ApiKey)>, DataError> {
    let Some((id, secret)) = parse(token) else {
        return Ok(None);
    };
    let Some(tenant) = vault
        .store
        .get(&TenantId::SYSTEM, Kind::ApiKeys, id.as_bytes())?
        .and_then(|t| TenantId::from_slice(&t))
    else {
        return Ok(None);
    };
    if !vault.keys.has_tenant(&tenant)? {
        return Ok(None);
    }
    let keys = vault.keys.tenant(&tenant)?;
    let Some(record): Option<ApiKey> =
        vault.read(&keys.records, &tenant, Kind::ApiKeys, id.as_bytes())?
    else {
        return Ok(None);
    };
    let expected = from_hex::<32>(&record.secret_hash).unwrap_or([0; 32]);
    let presented = secret_hash(&keys, &id, &secret);
    if bool::from(presented.ct_eq(&expected)) {
        Ok(Some((tenant, record)))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_authenticate_only_with_the_right_secret() {
        let dir = tempfile::tempdir().unwrap();
        let vault = crate::data::test_vault(dir.path());
        let tenant = TenantId::generate();
        let keys = vault.keys.create_tenant(&tenant).unwrap();
        let new = create(&keys, "ci", BTreeSet::from([Scope::Read]), 1);
        let mut batch = Batch::new();
        stage(&vault, &mut batch, &tenant, &new.record).unwrap();
        vault.store.commit(&batch).unwrap();

        let (found_tenant, key) = authenticate(&vault, &new.token).unwrap().unwrap();
        assert_eq!(found_tenant, tenant);
        assert!(key.allows(Scope::Read));
        assert!(!key.allows(Scope::Dsr));

        let mut forged = new.token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == '0' { '1' } else { '0' });
        assert!(authenticate(&vault, &forged).unwrap().is_none());
        assert!(authenticate(&vault, "fgk_nothex_x").unwrap().is_none());
        assert!(authenticate(&vault, "Bearer something").unwrap().is_none());
        // The secret is nowhere in the stored record.
        let stored = vault
            .store
            .get(&tenant, Kind::ApiKeys, new.record.id.as_bytes())
            .unwrap()
            .unwrap();
        let secret_hex = new.token.rsplit('_').next().unwrap();
        assert!(!String::from_utf8_lossy(&stored).contains(secret_hex));
    }
}
