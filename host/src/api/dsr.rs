//! Data-subject requests (tenant API key with the `dsr` scope). Each
//! request is recorded with its status and times and audited, in the same
//! commit as its effects (see [`crate::service::requests`]).

use axum::extract::State;

use super::ApiState;
use super::error::{ApiJson, ApiPath, ApiResult};
use crate::compliance::dsr::{RequestRecord, Subject};
use crate::service::caller::TenantCaller;
use crate::service::requests::{
    self, AccessAnswer, ObjectionRequest, ProfileAnswer, RectificationRequest, RestrictionRequest,
};

/// Access and portability: everything held about the contact, as JSON.
#[utoipa::path(post, path = "/v1/dsr/access", tag = "data-subject requests", security(("api_key" = [])),
    request_body = Subject,
    responses((status = 200, body = AccessAnswer), (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn access(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiJson(subject): ApiJson<Subject>,
) -> ApiResult<ApiJson<AccessAnswer>> {
    Ok(ApiJson(
        requests::access(&state.service, &caller, subject).await?,
    ))
}

/// Rectify stored fields.
#[utoipa::path(post, path = "/v1/dsr/rectification", tag = "data-subject requests", security(("api_key" = [])),
    request_body = RectificationRequest,
    responses((status = 200, body = ProfileAnswer), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn rectification(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<RectificationRequest>,
) -> ApiResult<ApiJson<ProfileAnswer>> {
    Ok(ApiJson(
        requests::rectify(&state.service, &caller, body).await?,
    ))
}

/// Erase the contact: every record, then its key.
#[utoipa::path(post, path = "/v1/dsr/erasure", tag = "data-subject requests", security(("api_key" = [])),
    request_body = Subject,
    responses((status = 200, body = RequestRecord), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn erasure(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiJson(subject): ApiJson<Subject>,
) -> ApiResult<ApiJson<RequestRecord>> {
    Ok(ApiJson(
        requests::erase(&state.service, &caller, subject).await?,
    ))
}

/// Restrict processing (data kept, not processed: no plugin runs, no
/// message is sent), or lift the restriction.
#[utoipa::path(post, path = "/v1/dsr/restriction", tag = "data-subject requests", security(("api_key" = [])),
    request_body = RestrictionRequest,
    responses((status = 200, body = ProfileAnswer), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn restriction(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<RestrictionRequest>,
) -> ApiResult<ApiJson<ProfileAnswer>> {
    Ok(ApiJson(
        requests::restrict(&state.service, &caller, body).await?,
    ))
}

/// Object to a purpose: plugins with that purpose stop running for the
/// contact.
#[utoipa::path(post, path = "/v1/dsr/objection", tag = "data-subject requests", security(("api_key" = [])),
    request_body = ObjectionRequest,
    responses((status = 200, body = ProfileAnswer), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn objection(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<ObjectionRequest>,
) -> ApiResult<ApiJson<ProfileAnswer>> {
    Ok(ApiJson(
        requests::object(&state.service, &caller, body).await?,
    ))
}

/// The tenant's data-subject requests.
#[utoipa::path(get, path = "/v1/dsr", tag = "data-subject requests", security(("api_key" = [])),
    responses((status = 200, body = Vec<RequestRecord>)))]
pub async fn list(
    caller: TenantCaller,
    State(state): State<ApiState>,
) -> ApiResult<ApiJson<Vec<RequestRecord>>> {
    Ok(ApiJson(requests::list(&state.service, &caller)?))
}

/// One data-subject request.
#[utoipa::path(get, path = "/v1/dsr/{request_id}", tag = "data-subject requests", security(("api_key" = [])),
    params(("request_id" = String, Path)),
    responses((status = 200, body = RequestRecord), (status = 404, body = super::error::ErrorBody)))]
pub async fn get(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<ApiJson<RequestRecord>> {
    Ok(ApiJson(requests::get(&state.service, &caller, &raw)?))
}
