//! The tenant's audit trail: reading it with filters, verifying its chain.

use super::ServiceInner;
use super::caller::TenantCaller;
use super::error::ServiceResult;
use crate::audit::{self, AuditEntry, AuditFilter, Verification};
use crate::tenancy::api_keys::Scope;

/// Entries matching `filter`, oldest first.
pub fn query(
    service: &ServiceInner,
    caller: &TenantCaller,
    filter: &AuditFilter,
) -> ServiceResult<Vec<AuditEntry>> {
    caller.require(Scope::Read)?;
    Ok(audit::query(&service.vault, &caller.tenant, filter)?)
}

/// Check the tenant's hash chain.
pub fn verify(service: &ServiceInner, caller: &TenantCaller) -> ServiceResult<Verification> {
    caller.require(Scope::Read)?;
    Ok(audit::verify(&service.vault, &caller.tenant)?)
}
