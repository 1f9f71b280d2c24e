//! The tenant's audit trail: reading it with filters, verifying its chain.

use super::ServiceInner;
use super::caller::TenantCaller;
use super::contacts::parse_id;
use super::error::ServiceResult;
use crate::audit::{self, AuditEntry, AuditFilter, RecentPage, Verification};
use crate::tenancy::api_keys::Scope;

/// Entries a newest-first page holds at most.
pub const RECENT_PAGE: usize = 100;

/// Entries a newest-first page looks at before it answers with what it
/// found so far (and where to go on).
pub const RECENT_BUDGET: u64 = 20_000;

/// Entries matching `filter`, oldest first.
pub fn query(
    service: &ServiceInner,
    caller: &TenantCaller,
    filter: &AuditFilter,
) -> ServiceResult<Vec<AuditEntry>> {
    caller.require(Scope::Read)?;
    Ok(audit::query(&service.vault, &caller.tenant, filter)?)
}

/// Entries matching `filter`, newest first, from before sequence `before`
/// when given (see [`audit::query_recent`]): what a person reading the
/// trail wants to see first.
pub fn recent(
    service: &ServiceInner,
    caller: &TenantCaller,
    filter: &AuditFilter,
    before: Option<u64>,
) -> ServiceResult<RecentPage> {
    caller.require(Scope::Read)?;
    Ok(audit::query_recent(
        &service.vault,
        &caller.tenant,
        filter,
        before,
        RECENT_PAGE,
        RECENT_BUDGET,
    )?)
}

/// The pseudonym that names a contact (by its id) in the trail: entries
/// about a contact carry it, never the contact's id or number. Works for
/// erased contacts too, whose entries stay.
pub fn contact_subject(
    service: &ServiceInner,
    caller: &TenantCaller,
    raw_contact_id: &str,
) -> ServiceResult<String> {
    caller.require(Scope::Read)?;
    let id = parse_id(raw_contact_id)?;
    let keys = service.vault.keys.tenant(&caller.tenant)?;
    Ok(audit::contact_pseudonym(&keys, &id))
}

/// Check the tenant's hash chain.
pub fn verify(service: &ServiceInner, caller: &TenantCaller) -> ServiceResult<Verification> {
    caller.require(Scope::Read)?;
    Ok(audit::verify(&service.vault, &caller.tenant)?)
}
