//! Data-subject requests as a tenant carries them out: each is recorded
//! with its status and times and audited, in the same commit as its
//! effects (see [`crate::compliance::dsr`] for what each right does).

use serde::{Deserialize, Serialize};

use super::ServiceInner;
use super::caller::TenantCaller;
use super::change::Change;
use super::error::{ServiceError, ServiceResult};
use crate::compliance::dsr::{
    self, ContactExport, Dsr, DsrError, Outcome, ProfileExport, Rectification, RequestRecord,
    Subject,
};
use crate::ids::{ContactId, RequestId};
use crate::plugin::Purpose;
use crate::store::Kind;
use crate::tenancy::api_keys::Scope;

impl From<DsrError> for ServiceError {
    fn from(error: DsrError) -> Self {
        match error {
            DsrError::UnknownContact => ServiceError::NotFound("contact"),
            DsrError::NoSubject | DsrError::Invalid(_) => ServiceError::Invalid(error.to_string()),
            DsrError::Data(error) => ServiceError::Data(error),
        }
    }
}

// The requests below that name a contact and say more carry the fields of
// `Subject` themselves instead of `#[serde(flatten)]`ing it: `Subject`
// refuses unknown fields, so the flattened schema was an `allOf` of two
// closed objects that no body could satisfy, and serde does not support
// `deny_unknown_fields` together with `flatten` anyway.

/// A rectification request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RectificationRequest {
    /// The contact's id.
    #[schema(value_type = Option<String>)]
    pub contact_id: Option<ContactId>,
    /// The WhatsApp id (phone number).
    pub wa_id: Option<String>,
    /// The business-scoped user id.
    pub user_id: Option<String>,
    pub changes: Rectification,
}

/// A restriction request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestrictionRequest {
    /// The contact's id.
    #[schema(value_type = Option<String>)]
    pub contact_id: Option<ContactId>,
    /// The WhatsApp id (phone number).
    pub wa_id: Option<String>,
    /// The business-scoped user id.
    pub user_id: Option<String>,
    /// `true` restricts processing; `false` lifts the restriction.
    pub restricted: bool,
}

/// An objection request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectionRequest {
    /// The contact's id.
    #[schema(value_type = Option<String>)]
    pub contact_id: Option<ContactId>,
    /// The WhatsApp id (phone number).
    pub wa_id: Option<String>,
    /// The business-scoped user id.
    pub user_id: Option<String>,
    /// The purpose objected to (fideslang data use); narrower purposes are
    /// covered too.
    #[schema(value_type = String)]
    pub purpose: Purpose,
    /// `true` objects; `false` withdraws the objection.
    pub objecting: bool,
}

/// An access request's answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccessAnswer {
    pub request: RequestRecord,
    pub export: ContactExport,
}

/// A request's record and the contact's profile after it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProfileAnswer {
    pub request: RequestRecord,
    pub profile: ProfileExport,
}

/// The [`Subject`] a request with inlined subject fields names.
macro_rules! subject_of {
    ($body:expr) => {
        Subject {
            contact_id: $body.contact_id,
            wa_id: $body.wa_id.clone(),
            user_id: $body.user_id.clone(),
        }
    };
}

/// Carry out a right: its reads run off the async threads (an access
/// request reads every message of the contact), its outcome is committed,
/// and the contact key is shredded once an erasure's deletions are durable.
async fn carry_out<T: Send + 'static>(
    service: &std::sync::Arc<ServiceInner>,
    caller: &TenantCaller,
    right: impl Fn(&Dsr) -> Result<Outcome<T>, DsrError> + Send + Sync + 'static,
) -> ServiceResult<(RequestRecord, T)> {
    caller.require(Scope::Dsr)?;
    let tenant = caller.tenant;
    let actor = caller.actor();
    service
        .apply_blocking(move |service| {
            let dsr = Dsr {
                vault: &service.vault,
                tenant,
                actor: actor.clone(),
                now: service.clock.now(),
            };
            let outcome = right(&dsr)?;
            let change = Change::new(
                outcome.batch,
                outcome.audit,
                (outcome.request, outcome.result),
            );
            Ok(match outcome.shred {
                Some(contact) => change.shredding(tenant, contact),
                None => change,
            })
        })
        .await
}

/// Access and portability: everything held about the contact, as JSON.
pub async fn access(
    service: &std::sync::Arc<ServiceInner>,
    caller: &TenantCaller,
    subject: Subject,
) -> ServiceResult<AccessAnswer> {
    let (request, export) = carry_out(service, caller, move |dsr| dsr.access(&subject)).await?;
    Ok(AccessAnswer { request, export })
}

/// Rectify stored fields.
pub async fn rectify(
    service: &std::sync::Arc<ServiceInner>,
    caller: &TenantCaller,
    body: RectificationRequest,
) -> ServiceResult<ProfileAnswer> {
    let (request, profile) = carry_out(service, caller, move |dsr| {
        dsr.rectify(&subject_of!(body), &body.changes)
    })
    .await?;
    Ok(ProfileAnswer { request, profile })
}

/// Erase the contact: every record, then its key.
pub async fn erase(
    service: &std::sync::Arc<ServiceInner>,
    caller: &TenantCaller,
    subject: Subject,
) -> ServiceResult<RequestRecord> {
    let (request, ()) = carry_out(service, caller, move |dsr| dsr.erase(&subject)).await?;
    Ok(request)
}

/// Restrict processing (data kept, not processed), or lift the restriction.
pub async fn restrict(
    service: &std::sync::Arc<ServiceInner>,
    caller: &TenantCaller,
    body: RestrictionRequest,
) -> ServiceResult<ProfileAnswer> {
    let (request, profile) = carry_out(service, caller, move |dsr| {
        dsr.restrict(&subject_of!(body), body.restricted)
    })
    .await?;
    Ok(ProfileAnswer { request, profile })
}

/// Object to a purpose (plugins with that purpose stop running for the
/// contact), or withdraw the objection.
pub async fn object(
    service: &std::sync::Arc<ServiceInner>,
    caller: &TenantCaller,
    body: ObjectionRequest,
) -> ServiceResult<ProfileAnswer> {
    let (request, profile) = carry_out(service, caller, move |dsr| {
        dsr.object(&subject_of!(body), &body.purpose, body.objecting)
    })
    .await?;
    Ok(ProfileAnswer { request, profile })
}

/// Business days a tenant has to answer a data-subject request.
pub const ANSWER_WITHIN_BUSINESS_DAYS: u32 = 10;

/// When a request received at `received_at` must be answered: ten business
/// days (Monday to Friday, counted in UTC) later, at the same time of day.
/// Public holidays differ by country and are not counted out: the deadline
/// errs early, never late.
pub fn deadline(received_at: u64) -> u64 {
    const DAY: u64 = 24 * 60 * 60;
    let mut at = received_at;
    let mut left = ANSWER_WITHIN_BUSINESS_DAYS;
    while left > 0 {
        at += DAY;
        // 1970-01-01 was a Thursday: day 0 is weekday 3 counting Monday as 0.
        let weekday = (at / DAY + 3) % 7;
        if weekday < 5 {
            left -= 1;
        }
    }
    at
}

/// The tenant's data-subject requests.
pub fn list(service: &ServiceInner, caller: &TenantCaller) -> ServiceResult<Vec<RequestRecord>> {
    caller.require_any(&[Scope::Read, Scope::Dsr])?;
    Ok(dsr::requests(&service.vault, &caller.tenant)?)
}

/// One data-subject request, by its id as given in a path.
pub fn get(
    service: &ServiceInner,
    caller: &TenantCaller,
    raw_id: &str,
) -> ServiceResult<RequestRecord> {
    caller.require_any(&[Scope::Read, Scope::Dsr])?;
    let id: RequestId = raw_id
        .parse()
        .map_err(|_| ServiceError::NotFound("request"))?;
    let keys = service.vault.keys.tenant(&caller.tenant)?;
    service
        .vault
        .read(&keys.records, &caller.tenant, Kind::Requests, id.as_bytes())?
        .ok_or(ServiceError::NotFound("request"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_ten_business_days_later() {
        // Monday 2025-06-09 10:00 UTC → Monday 2025-06-23 10:00 UTC.
        assert_eq!(deadline(1_749_463_200), 1_749_463_200 + 14 * 86_400);
        // Saturday 2025-06-14 10:00 → Friday 2025-06-27 10:00: the weekend
        // it arrived on does not count.
        let saturday = 1_749_463_200 + 5 * 86_400;
        assert_eq!(deadline(saturday), saturday + 13 * 86_400);
        // Friday 2025-06-13 → Friday 2025-06-27.
        let friday = 1_749_463_200 + 4 * 86_400;
        assert_eq!(deadline(friday), friday + 14 * 86_400);
    }
}
