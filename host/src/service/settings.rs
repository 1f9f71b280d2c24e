//! A tenant's own settings: time zone, message storage, retention.

use serde::Deserialize;

use super::ServiceInner;
use super::caller::TenantCaller;
use super::change::Change;
use super::error::{ServiceError, ServiceResult};
use crate::compliance::retention::RetentionPolicy;
use crate::store::Batch;
use crate::tenancy::api_keys::Scope;
use crate::tenancy::tenant::{Tenant, utc_offset_minutes};

/// Changes to the tenant's settings.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    pub timezone: Option<String>,
    /// Keep full message text (default off).
    pub store_message_content: Option<bool>,
    /// Shorter retention periods (never longer than the maximums).
    pub retention: Option<RetentionPolicy>,
}

/// The caller's tenant profile.
pub fn profile(service: &ServiceInner, caller: &TenantCaller) -> ServiceResult<Tenant> {
    caller.require(Scope::Read)?;
    Tenant::load(&service.vault, &caller.tenant)?.ok_or(ServiceError::NotFound("tenant"))
}

/// Change the tenant's settings.
pub async fn update(
    service: &ServiceInner,
    caller: &TenantCaller,
    update: TenantUpdate,
) -> ServiceResult<Tenant> {
    caller.require(Scope::Admin)?;
    if let Some(timezone) = &update.timezone {
        utc_offset_minutes(timezone, 0).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    }
    if let Some(retention) = &update.retention {
        retention
            .validate()
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    }
    service
        .apply(|| {
            let vault = &service.vault;
            let mut tenant =
                Tenant::load(vault, &caller.tenant)?.ok_or(ServiceError::NotFound("tenant"))?;
            if let Some(timezone) = &update.timezone {
                tenant.timezone = timezone.clone();
            }
            if let Some(store) = update.store_message_content {
                tenant.store_message_content = store;
            }
            if let Some(retention) = &update.retention {
                tenant.retention = *retention;
            }
            let mut batch = Batch::new();
            tenant.stage(vault, &mut batch)?;
            let audit = caller.audit(
                service.clock.now(),
                "tenant.updated",
                serde_json::json!({
                    "timezone": tenant.timezone,
                    "store_message_content": tenant.store_message_content,
                    "retention": tenant.retention,
                }),
            );
            Ok(Change::new(batch, vec![audit], tenant).reconfiguring(caller.tenant))
        })
        .await
}
