//! Data-subject requests (tenant API key with the `dsr` scope). Each
//! request is recorded with its status and times and audited, in the same
//! commit as its effects.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::TenantKey;
use super::error::{ApiJson, ApiPath, ApiResult, AppError, Attempts};
use crate::compliance::dsr::{
    ContactExport, Dsr, DsrError, Outcome, ProfileExport, Rectification, RequestRecord, Subject,
};
use crate::ids::{ContactId, RequestId};
use crate::plugin::Purpose;
use crate::service::committer::Commit;
use crate::tenancy::api_keys::Scope;

impl From<DsrError> for AppError {
    fn from(error: DsrError) -> Self {
        match error {
            DsrError::UnknownContact => AppError::not_found("contact"),
            DsrError::NoSubject | DsrError::Invalid(_) => AppError::bad_request(error.to_string()),
            DsrError::Data(error) => AppError::internal(error),
        }
    }
}

/// Run a request off the async threads, commit its outcome, shred the
/// contact key if it asked for that once the deletions are durable. A
/// request is carried out again, from its reads, when an event for the same
/// contact was committed between them and its own commit (see
/// [`Attempts`]).
async fn carry_out<T: Send + 'static>(
    state: &ApiState,
    key: &TenantKey,
    request: impl Fn(&Dsr) -> Result<Outcome<T>, DsrError> + Send + Sync + 'static,
) -> ApiResult<(RequestRecord, T)> {
    if !key.key.allows(Scope::Dsr) {
        key.require(Scope::Dsr)?;
    }
    let request = Arc::new(request);
    let tenant = key.tenant;
    let mut attempts = Attempts::new();
    loop {
        let service = state.service.clone();
        let actor = key.actor();
        let attempt = request.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let dsr = Dsr {
                vault: &service.vault,
                tenant,
                actor,
                now: service.clock.now(),
            };
            attempt(&dsr)
        })
        .await
        .map_err(AppError::internal)??;
        let committed = state
            .service
            .committer
            .commit(Commit::new(outcome.batch, outcome.audit))
            .await
            .map_err(AppError::from);
        if attempts.again(&committed) {
            continue;
        }
        committed?;
        if let Some(contact) = outcome.shred {
            state.service.vault.keys.shred_contact(&tenant, &contact)?;
        }
        return Ok((outcome.request, outcome.result));
    }
}

/// An access request's answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccessAnswer {
    pub request: RequestRecord,
    pub export: ContactExport,
}

/// Access and portability: everything held about the contact, as JSON.
#[utoipa::path(post, path = "/v1/dsr/access", tag = "data-subject requests", security(("api_key" = [])),
    request_body = Subject,
    responses((status = 200, body = AccessAnswer), (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn access(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiJson(subject): ApiJson<Subject>,
) -> ApiResult<ApiJson<AccessAnswer>> {
    let (request, export) = carry_out(&state, &key, move |dsr| dsr.access(&subject)).await?;
    Ok(ApiJson(AccessAnswer { request, export }))
}

// The requests below that name a contact and say more carry the fields of
// `Subject` themselves instead of `#[serde(flatten)]`ing it: `Subject`
// refuses unknown fields, so the flattened schema was an `allOf` of two
// closed objects that no body could satisfy, and serde does not support
// `deny_unknown_fields` together with `flatten` anyway.

/// Build the [`Subject`] of a request from its inlined fields.
macro_rules! subject_of {
    ($body:expr) => {
        Subject {
            contact_id: $body.contact_id,
            wa_id: $body.wa_id.clone(),
            user_id: $body.user_id.clone(),
        }
    };
}

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

/// A request's record and the contact's profile after it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProfileAnswer {
    pub request: RequestRecord,
    pub profile: ProfileExport,
}

/// Rectify stored fields.
#[utoipa::path(post, path = "/v1/dsr/rectification", tag = "data-subject requests", security(("api_key" = [])),
    request_body = RectificationRequest,
    responses((status = 200, body = ProfileAnswer), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn rectification(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<RectificationRequest>,
) -> ApiResult<ApiJson<ProfileAnswer>> {
    let (request, profile) = carry_out(&state, &key, move |dsr| {
        dsr.rectify(&subject_of!(body), &body.changes)
    })
    .await?;
    Ok(ApiJson(ProfileAnswer { request, profile }))
}

/// Erase the contact: every record, then its key.
#[utoipa::path(post, path = "/v1/dsr/erasure", tag = "data-subject requests", security(("api_key" = [])),
    request_body = Subject,
    responses((status = 200, body = RequestRecord), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn erasure(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiJson(subject): ApiJson<Subject>,
) -> ApiResult<ApiJson<RequestRecord>> {
    let (request, ()) = carry_out(&state, &key, move |dsr| dsr.erase(&subject)).await?;
    Ok(ApiJson(request))
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

/// Restrict processing (data kept, not processed: no plugin runs, no
/// message is sent), or lift the restriction.
#[utoipa::path(post, path = "/v1/dsr/restriction", tag = "data-subject requests", security(("api_key" = [])),
    request_body = RestrictionRequest,
    responses((status = 200, body = ProfileAnswer), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn restriction(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<RestrictionRequest>,
) -> ApiResult<ApiJson<ProfileAnswer>> {
    let (request, profile) = carry_out(&state, &key, move |dsr| {
        dsr.restrict(&subject_of!(body), body.restricted)
    })
    .await?;
    Ok(ApiJson(ProfileAnswer { request, profile }))
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

/// Object to a purpose: plugins with that purpose stop running for the
/// contact.
#[utoipa::path(post, path = "/v1/dsr/objection", tag = "data-subject requests", security(("api_key" = [])),
    request_body = ObjectionRequest,
    responses((status = 200, body = ProfileAnswer), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn objection(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<ObjectionRequest>,
) -> ApiResult<ApiJson<ProfileAnswer>> {
    let (request, profile) = carry_out(&state, &key, move |dsr| {
        dsr.object(&subject_of!(body), &body.purpose, body.objecting)
    })
    .await?;
    Ok(ApiJson(ProfileAnswer { request, profile }))
}

/// The tenant's data-subject requests.
#[utoipa::path(get, path = "/v1/dsr", tag = "data-subject requests", security(("api_key" = [])),
    responses((status = 200, body = Vec<RequestRecord>)))]
pub async fn list(
    key: TenantKey,
    State(state): State<ApiState>,
) -> ApiResult<ApiJson<Vec<RequestRecord>>> {
    if !key.key.allows(Scope::Dsr) {
        key.require(Scope::Read)?;
    }
    Ok(ApiJson(crate::compliance::dsr::requests(
        &state.service.vault,
        &key.tenant,
    )?))
}

/// One data-subject request.
#[utoipa::path(get, path = "/v1/dsr/{request_id}", tag = "data-subject requests", security(("api_key" = [])),
    params(("request_id" = String, Path)),
    responses((status = 200, body = RequestRecord), (status = 404, body = super::error::ErrorBody)))]
pub async fn get(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<ApiJson<RequestRecord>> {
    if !key.key.allows(Scope::Dsr) {
        key.require(Scope::Read)?;
    }
    let id: RequestId = raw.parse().map_err(|_| AppError::not_found("request"))?;
    let keys = state.service.vault.keys.tenant(&key.tenant)?;
    state
        .service
        .vault
        .read(
            &keys.records,
            &key.tenant,
            crate::store::Kind::Requests,
            id.as_bytes(),
        )?
        .map(ApiJson)
        .ok_or_else(|| AppError::not_found("request"))
}
