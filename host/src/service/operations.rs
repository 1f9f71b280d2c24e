//! What the operator runs the service with: readiness, the maintenance
//! duties on demand, and backups.

use serde::{Deserialize, Serialize};

use super::ServiceInner;
use super::error::{ServiceError, ServiceResult};
use super::maintenance::{self, Duties};
use crate::audit::{Actor, AuditDraft};
use crate::compliance::backup::{self, BackupSummary};
use crate::ids::TenantId;

/// Whether the service can take work: not shutting down, and its store
/// answers a read. `Err` says why not.
pub fn readiness(service: &ServiceInner) -> ServiceResult<()> {
    if service.stopping() {
        return Err(ServiceError::Unavailable("shutting down".into()));
    }
    service
        .vault
        .store
        .get(
            &TenantId::SYSTEM,
            crate::store::Kind::Tenants,
            b"readiness-probe",
        )
        .map_err(|e| ServiceError::Unavailable(format!("store unavailable: {e}")))?;
    Ok(())
}

/// Run the maintenance duties now (they also run periodically): the
/// retention sweep of every tenant, then the deletion of offboarded
/// tenants whose deletion is due.
pub async fn run_duties(service: &std::sync::Arc<ServiceInner>) -> ServiceResult<Duties> {
    let _deleting = service.tenant_deletions.write().await;
    let worker = service.clone();
    Ok(tokio::task::spawn_blocking(move || maintenance::run_duties(&worker)).await??)
}

/// A backup written by the service.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupCreated {
    /// Path of the file on the service's machine.
    pub path: String,
    pub summary: BackupSummary,
}

/// Write a consistent backup of the records (sealed, without keys) to the
/// configured backup directory: taken on the committer's thread between
/// two groups, so no write interleaves.
pub async fn backup(service: &ServiceInner) -> ServiceResult<BackupCreated> {
    let dir = service.config.backup_dir.clone();
    std::fs::create_dir_all(&dir).map_err(backup::BackupError::from)?;
    let path = dir.join(format!(
        "flowgate-{}-{}.fgb",
        service.clock.now(),
        crate::crypto::to_hex(&crate::crypto::random_bytes::<4>())
    ));
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let store = service.vault.store.clone();
    let target = path.clone();
    service
        .committer
        .exclusive(Box::new(move || {
            let _ = sender.send(backup::create(store.as_ref(), &target));
        }))
        .await?;
    let summary = receiver
        .await
        .map_err(|_| ServiceError::Unavailable("the backup did not finish".into()))??;
    let audit = AuditDraft::new(
        TenantId::SYSTEM,
        service.clock.now(),
        Actor::Operator,
        "backup.created",
    )
    .details(serde_json::json!({"records": summary.records, "checksum": summary.checksum}));
    service.record(vec![audit]).await?;
    Ok(BackupCreated {
        path: path.display().to_string(),
        summary,
    })
}

/// Run the duties every `interval` until `shutdown`.
pub async fn run_periodically(
    service: std::sync::Arc<ServiceInner>,
    interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(error) = run_duties(&service).await {
            tracing::error!(%error, "retention or scheduled deletion failed; retried next run");
        }
    }
}

/// Every `interval` until `shutdown`: give back the rate limiters' and
/// throttles' memory of what is over, and write the failed-authentication
/// counts whose period has passed; at shutdown, write every count left.
pub async fn run_upkeep(
    service: std::sync::Arc<ServiceInner>,
    interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => break,
        }
        service.admission.upkeep(std::time::Instant::now());
        super::failed_auth::flush(&service, false).await;
    }
    super::failed_auth::flush(&service, true).await;
}
