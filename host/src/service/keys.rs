//! Tenant API keys: authenticating a bearer token, creating keys (the token
//! is shown once), listing them without secrets, revoking them.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::ServiceInner;
use super::caller::{Face, TenantCaller};
use super::change::Change;
use super::error::{ServiceError, ServiceResult};
use super::failed_auth;
use crate::admission::address::ClientAddress;
use crate::ids::{ApiKeyId, TenantId};
use crate::store::{Batch, Kind};
use crate::tenancy::api_keys::{self, ApiKey, Scope};

/// A new API key.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    pub name: String,
    pub scopes: BTreeSet<Scope>,
}

/// A created key: the token is shown once.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    pub key: ApiKey,
    /// The bearer token; store it now, it is not shown again.
    pub token: String,
}

/// The caller a token authenticates, through `face`; `None` for a token
/// that names no live key or carries the wrong secret.
pub fn authenticate(
    service: &ServiceInner,
    token: &str,
    face: Face,
) -> ServiceResult<Option<TenantCaller>> {
    Ok(
        api_keys::authenticate(&service.vault, token)?.map(|(tenant, key)| TenantCaller {
            tenant,
            key,
            face,
        }),
    )
}

/// The caller a console session stands for, read again on each request so
/// that a revoked key, or one whose tenant is gone, ends the session at
/// once: `None` when the key no longer exists.
pub fn session_caller(
    service: &ServiceInner,
    tenant: &TenantId,
    key: &ApiKeyId,
) -> ServiceResult<Option<TenantCaller>> {
    let vault = &service.vault;
    if !vault.keys.has_tenant(tenant)? {
        return Ok(None);
    }
    let keys = vault.keys.tenant(tenant)?;
    let record: Option<ApiKey> =
        vault.read(&keys.records, tenant, Kind::ApiKeys, key.as_bytes())?;
    Ok(record.map(|key| TenantCaller {
        tenant: *tenant,
        key: key.public(),
        face: Face::Console,
    }))
}

/// Sign in to the console with an API key's token, from `address`: the
/// caller, with the sign-in audited; `None` (the failure counted as for
/// the API, [`failed_auth::record`]) when the token names no live key or
/// carries the wrong secret.
pub async fn sign_in(
    service: &ServiceInner,
    token: &str,
    address: &ClientAddress,
) -> ServiceResult<Option<TenantCaller>> {
    match authenticate(service, token.trim(), Face::Console)? {
        Some(caller) => {
            let audit = caller.audit(
                service.clock.now(),
                "auth.signed-in",
                serde_json::Value::Null,
            );
            service.record(vec![audit]).await?;
            Ok(Some(caller))
        }
        None => {
            failed_auth::record(service, Face::Console, address, token.trim()).await;
            Ok(None)
        }
    }
}

/// Sign out of the console (audited).
pub async fn sign_out(service: &ServiceInner, caller: &TenantCaller) -> ServiceResult<()> {
    let audit = caller.audit(
        service.clock.now(),
        "auth.signed-out",
        serde_json::Value::Null,
    );
    service.record(vec![audit]).await
}

/// Create an API key; its token is in the answer and nowhere else.
pub async fn create(
    service: &ServiceInner,
    caller: &TenantCaller,
    request: NewApiKey,
) -> ServiceResult<CreatedApiKey> {
    caller.require(Scope::Admin)?;
    let name = request.name.trim();
    if request.scopes.is_empty() || name.is_empty() || request.name.len() > 100 {
        return Err(ServiceError::Invalid(
            "a key needs a name (1 to 100 characters) and at least one scope".into(),
        ));
    }
    let vault = &service.vault;
    let keys = vault.keys.tenant(&caller.tenant)?;
    let created = api_keys::create(&keys, name, request.scopes, service.clock.now());
    let mut batch = Batch::new();
    api_keys::stage(vault, &mut batch, &caller.tenant, &created.record)?;
    let audit = caller.audit(
        service.clock.now(),
        "api-key.created",
        serde_json::json!({"key": created.record.id, "scopes": created.record.scopes}),
    );
    let answer = CreatedApiKey {
        key: created.record.public(),
        token: created.token,
    };
    let (answer, _) = service
        .commit_change(Change::new(batch, vec![audit], answer))
        .await?;
    Ok(answer)
}

/// The tenant's keys, without secrets.
pub fn list(service: &ServiceInner, caller: &TenantCaller) -> ServiceResult<Vec<ApiKey>> {
    caller.require(Scope::Admin)?;
    Ok(api_keys::list(&service.vault, &caller.tenant)?
        .iter()
        .map(ApiKey::public)
        .collect())
}

/// Revoke a key, by its id as given in a path.
pub async fn revoke(
    service: &ServiceInner,
    caller: &TenantCaller,
    raw_id: &str,
) -> ServiceResult<()> {
    caller.require(Scope::Admin)?;
    let id: ApiKeyId = raw_id
        .parse()
        .map_err(|_| ServiceError::NotFound("API key"))?;
    service
        .apply(|| {
            if !api_keys::list(&service.vault, &caller.tenant)?
                .iter()
                .any(|k| k.id == id)
            {
                return Err(ServiceError::NotFound("API key"));
            }
            let mut batch = Batch::new();
            api_keys::stage_revocation(&mut batch, &caller.tenant, &id);
            let audit = caller.audit(
                service.clock.now(),
                "api-key.revoked",
                serde_json::json!({"key": id}),
            );
            Ok(Change::new(batch, vec![audit], ()))
        })
        .await
}
