//! Tenants as the operator manages them: creating one (with its first admin
//! key), reading, offboarding (export, scheduled deletion) and deleting.
//!
//! Every action on an existing tenant holds [`ServiceInner::tenant_deletions`]
//! shared, and every deletion — the operator's, and the ones the service's
//! own maintenance makes when an offboarded tenant is due — holds it
//! exclusively. A deletion shreds the tenant's keys and then purges its
//! records; an action interleaved with it would fail half-way on a shredded
//! key, so none is.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::ServiceInner;
use super::change::Change;
use super::error::{ServiceError, ServiceResult};
use super::maintenance;
use crate::audit::{Actor, AuditDraft, Verification};
use crate::compliance::offboarding::{self, DeletionSummary, ExportError, ExportSummary};
use crate::crypto::spool::{SealedSpool, SpoolChunks};
use crate::ids::TenantId;
use crate::store::Batch;
use crate::tenancy::api_keys::{self, Scope};
use crate::tenancy::tenant::Tenant;

/// A new tenant.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// The business's name.
    pub name: String,
    /// IANA time zone (default `UTC`).
    pub timezone: Option<String>,
}

/// A created tenant and its first API key (shown once).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedTenant {
    pub tenant: Tenant,
    /// An admin API key: store it now, it is not shown again.
    pub admin_api_key: String,
}

/// Offboarding: when the tenant's data will be deleted.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Offboard {
    /// Days until deletion, 0 to 30 (default 30).
    pub days: Option<u64>,
}

/// A tenant id as given in a path: anything that does not parse names no
/// tenant.
pub fn parse_id(raw: &str) -> ServiceResult<TenantId> {
    raw.parse().map_err(|_| ServiceError::NotFound("tenant"))
}

fn by_operator(service: &ServiceInner, tenant: TenantId, action: &str) -> AuditDraft {
    AuditDraft::new(tenant, service.clock.now(), Actor::Operator, action)
}

/// The tenant, which must exist.
fn existing(service: &ServiceInner, id: &TenantId) -> ServiceResult<Tenant> {
    Tenant::load(&service.vault, id)?.ok_or(ServiceError::NotFound("tenant"))
}

/// Create a tenant with its key and a first admin API key.
pub async fn create(service: &ServiceInner, request: NewTenant) -> ServiceResult<CreatedTenant> {
    let now = service.clock.now();
    let id = TenantId::generate();
    let timezone = request.timezone.as_deref().unwrap_or("UTC");
    let tenant = Tenant::new(id, &request.name, timezone, now)
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let keys = service.vault.keys.create_tenant(&id)?;
    let admin = api_keys::create(
        &keys,
        "admin (created with the tenant)",
        BTreeSet::from([Scope::Admin]),
        now,
    );
    let mut batch = Batch::new();
    tenant.stage(&service.vault, &mut batch)?;
    api_keys::stage(&service.vault, &mut batch, &id, &admin.record)?;
    let audit = vec![
        by_operator(service, id, "tenant.created")
            .details(serde_json::json!({"timezone": timezone})),
        by_operator(service, id, "api-key.created")
            .details(serde_json::json!({"key": admin.record.id, "scopes": ["admin"]})),
        by_operator(service, TenantId::SYSTEM, "tenant.created")
            .details(serde_json::json!({"tenant": id})),
    ];
    let created = CreatedTenant {
        tenant,
        admin_api_key: admin.token,
    };
    let (created, _) = service
        .commit_change(Change::new(batch, audit, created))
        .await?;
    Ok(created)
}

/// Every tenant.
pub async fn list(service: &ServiceInner) -> ServiceResult<Vec<Tenant>> {
    let _no_deletion = service.tenant_deletions.read().await;
    let vault = &service.vault;
    let mut tenants = Vec::new();
    for id in Tenant::list_ids(vault)? {
        if let Some(tenant) = Tenant::load(vault, &id)? {
            tenants.push(tenant);
        }
    }
    Ok(tenants)
}

/// One tenant.
pub async fn get(service: &ServiceInner, id: &TenantId) -> ServiceResult<Tenant> {
    let _no_deletion = service.tenant_deletions.read().await;
    existing(service, id)
}

/// Schedule a tenant's deletion (at most 30 days ahead).
pub async fn offboard(
    service: &ServiceInner,
    id: &TenantId,
    request: Offboard,
) -> ServiceResult<Tenant> {
    let _no_deletion = service.tenant_deletions.read().await;
    let days = request.days.unwrap_or(offboarding::DELETION_DAYS);
    if days > offboarding::DELETION_DAYS {
        return Err(ServiceError::Invalid(
            "deletion is promised within 30 days".into(),
        ));
    }
    service
        .apply(|| {
            let mut tenant = existing(service, id)?;
            tenant.deletion_due = Some(service.clock.now() + days * 86_400);
            let mut batch = Batch::new();
            tenant.stage(&service.vault, &mut batch)?;
            let audit = vec![
                by_operator(service, *id, "tenant.offboarding")
                    .details(serde_json::json!({"deletion_due": tenant.deletion_due})),
                by_operator(service, TenantId::SYSTEM, "tenant.offboarding").details(
                    serde_json::json!({"tenant": id, "deletion_due": tenant.deletion_due}),
                ),
            ];
            Ok(Change::new(batch, audit, tenant).reconfiguring(*id))
        })
        .await
}

/// Everything a tenant has, as NDJSON read back in chunks (see
/// [`offboarding::export`]); the export is audited before any of it is
/// handed out.
pub async fn export(
    service: &std::sync::Arc<ServiceInner>,
    id: &TenantId,
) -> ServiceResult<(ExportSummary, SpoolChunks)> {
    let _no_deletion = service.tenant_deletions.read().await;
    // Spooled to disk so that a large tenant does not sit in memory, and
    // sealed there: the export is every contact's number and name, which
    // must not reach the disk in plaintext (see `crypto::spool`). Written
    // whole before the answer starts, so that a failure is answered with
    // an error status rather than a cut-off body, and the deletion lock is
    // not held for as long as a slow client takes to read.
    let (worker, tenant) = (service.clone(), *id);
    let (summary, chunks) = tokio::task::spawn_blocking(move || {
        let mut spool = SealedSpool::create()?;
        let summary = offboarding::export(&worker.vault, &tenant, worker.clock.now(), &mut spool)?;
        Ok::<_, ExportError>((summary, spool.finish()?))
    })
    .await?
    .map_err(|e| match e {
        ExportError::UnknownTenant(_) => ServiceError::NotFound("tenant"),
        other => ServiceError::Export(other),
    })?;
    let audit = by_operator(service, *id, "tenant.exported")
        .details(serde_json::to_value(&summary).unwrap_or_default());
    service.record(vec![audit]).await?;
    Ok((summary, chunks))
}

/// Delete a tenant now: its keys are shredded, its records purged.
pub async fn delete(
    service: &std::sync::Arc<ServiceInner>,
    id: &TenantId,
) -> ServiceResult<DeletionSummary> {
    let _deleting = service.tenant_deletions.write().await;
    if *id == TenantId::SYSTEM {
        return Err(ServiceError::NotFound("tenant"));
    }
    existing(service, id)?;
    let (worker, tenant) = (service.clone(), *id);
    Ok(tokio::task::spawn_blocking(move || {
        maintenance::delete_tenant(&worker, &tenant, Actor::Operator)
    })
    .await??)
}

/// Check a tenant's audit chain (`system`: the operator's own chain).
pub async fn verify_audit(service: &ServiceInner, raw_id: &str) -> ServiceResult<Verification> {
    let _no_deletion = service.tenant_deletions.read().await;
    let id = if raw_id == "system" {
        TenantId::SYSTEM
    } else {
        parse_id(raw_id)?
    };
    if !service.vault.keys.has_tenant(&id)? {
        return Err(ServiceError::NotFound("tenant"));
    }
    Ok(crate::audit::verify(&service.vault, &id)?)
}
