//! Background duties of the running service: the retention sweep and the
//! deletion of offboarded tenants when their 30 days are up. They run
//! periodically and on demand through the operator API (`flowgate
//! retention run`), both through [`super::operations`], which holds the
//! tenant-deletion lock around them.

use super::ServiceInner;
use super::committer::Commit;
use crate::audit::{Actor, AuditDraft};
use crate::compliance::offboarding::{self, DeletionSummary};
use crate::compliance::retention::{self, SweepReport};
use crate::data::DataError;
use crate::ids::TenantId;

/// Sweep every tenant now; audited per tenant (when something was removed)
/// and in the system chain (always).
pub fn run_retention(service: &ServiceInner) -> Result<Vec<(TenantId, SweepReport)>, DataError> {
    let now = service.clock.now();
    let mut commit = |batch| {
        service
            .committer
            .commit_blocking(Commit::new(batch, Vec::new()))
            .map(|_| ())
            .map_err(|e| DataError::NotCommitted(e.into()))
    };
    let reports = retention::sweep_all(&service.vault, now, &mut commit)?;
    let mut audit = Vec::new();
    let mut total = SweepReport::default();
    for (tenant, report) in &reports {
        if !report.is_empty() {
            audit.push(
                AuditDraft::new(*tenant, now, Actor::System, "retention.run")
                    .details(serde_json::to_value(report).unwrap_or_default()),
            );
        }
        total.previews_cleared += report.previews_cleared;
        total.messages_deleted += report.messages_deleted;
        total.plugin_states_deleted += report.plugin_states_deleted;
        total.consent_records_deleted += report.consent_records_deleted;
        total.dedup_records_deleted += report.dedup_records_deleted;
        total.stale_entries += report.stale_entries;
    }
    audit.push(
        AuditDraft::new(TenantId::SYSTEM, now, Actor::System, "retention.run").details(
            serde_json::json!({
                "tenants": reports.len(),
                "totals": total,
            }),
        ),
    );
    commit_audit(service, audit)?;
    Ok(reports)
}

/// Delete one tenant now, auditing it in the system chain.
pub fn delete_tenant(
    service: &ServiceInner,
    tenant: &TenantId,
    actor: Actor,
) -> Result<DeletionSummary, DataError> {
    let summary = offboarding::delete(&service.vault, tenant)?;
    service.contexts.invalidate(tenant);
    commit_audit(
        service,
        vec![
            AuditDraft::new(
                TenantId::SYSTEM,
                service.clock.now(),
                actor,
                "tenant.deleted",
            )
            .details(serde_json::json!({"tenant": tenant, "removed": summary})),
        ],
    )?;
    Ok(summary)
}

fn commit_audit(service: &ServiceInner, audit: Vec<AuditDraft>) -> Result<(), DataError> {
    service
        .committer
        .commit_blocking(Commit::new(crate::store::Batch::new(), audit))
        .map(|_| ())
        .map_err(|e| DataError::NotCommitted(e.into()))
}

/// Everything one maintenance run did.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Duties {
    /// Per tenant, what retention removed.
    pub retention: Vec<TenantSweep>,
    /// Offboarded tenants deleted because their deletion was due.
    #[schema(value_type = Vec<String>)]
    pub deleted_tenants: Vec<TenantId>,
}

/// One tenant's sweep.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TenantSweep {
    #[schema(value_type = String)]
    pub tenant: TenantId,
    pub report: SweepReport,
}

/// Unfinished erasures, retention, then due deletions.
pub fn run_duties(service: &ServiceInner) -> Result<Duties, DataError> {
    crate::compliance::dsr::finish_pending_shreds(&service.vault)?;
    let retention = run_retention(service)?
        .into_iter()
        .map(|(tenant, report)| TenantSweep { tenant, report })
        .collect();
    let mut deleted_tenants = Vec::new();
    for tenant in offboarding::due_for_deletion(&service.vault, service.clock.now())? {
        delete_tenant(service, &tenant, Actor::System)?;
        tracing::info!(%tenant, "deleted an offboarded tenant whose deletion was due");
        deleted_tenants.push(tenant);
    }
    Ok(Duties {
        retention,
        deleted_tenants,
    })
}
