//! The operator API: tenants, their WhatsApp channels, the plugin registry,
//! and the compliance duties (retention, offboarding, backups). Every change
//! is audited in the system chain (and, for a tenant's channels, in the
//! tenant's chain too) by the service functions these handlers call.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::auth::Operator;
use super::error::{ApiBytes, ApiJson, ApiPath, ApiResult, AppError};
use crate::audit::Verification;
use crate::compliance::offboarding::DeletionSummary;
use crate::registry::PluginRecord;
use crate::service::channels::{self, NewChannel};
use crate::service::maintenance::Duties;
use crate::service::operations::{self, BackupCreated};
use crate::service::plugins::{self, Admitted};
use crate::service::tenants::{self, CreatedTenant, NewTenant, Offboard};
use crate::tenancy::channels::ChannelSummary;
use crate::tenancy::tenant::Tenant;

/// Create a tenant.
#[utoipa::path(post, path = "/v1/operator/tenants", tag = "operator", security(("operator" = [])),
    request_body = NewTenant,
    responses((status = 201, body = CreatedTenant), (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody)))]
pub async fn create_tenant(
    _: Operator,
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<NewTenant>,
) -> ApiResult<(StatusCode, ApiJson<CreatedTenant>)> {
    let created = tenants::create(&state.service, request).await?;
    Ok((StatusCode::CREATED, ApiJson(created)))
}

/// List tenants.
#[utoipa::path(get, path = "/v1/operator/tenants", tag = "operator", security(("operator" = [])),
    responses((status = 200, body = Vec<Tenant>), (status = 401, body = super::error::ErrorBody)))]
pub async fn list_tenants(
    _: Operator,
    State(state): State<ApiState>,
) -> ApiResult<ApiJson<Vec<Tenant>>> {
    Ok(ApiJson(tenants::list(&state.service).await?))
}

/// One tenant.
#[utoipa::path(get, path = "/v1/operator/tenants/{tenant_id}", tag = "operator", security(("operator" = [])),
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = Tenant), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_tenant(
    _: Operator,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<ApiJson<Tenant>> {
    let id = tenants::parse_id(&raw)?;
    Ok(ApiJson(tenants::get(&state.service, &id).await?))
}

/// Add a channel to a tenant.
#[utoipa::path(post, path = "/v1/operator/tenants/{tenant_id}/channels", tag = "operator", security(("operator" = [])),
    params(("tenant_id" = String, Path)), request_body = NewChannel,
    responses((status = 201, body = ChannelSummary), (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn create_channel(
    _: Operator,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(request): ApiJson<NewChannel>,
) -> ApiResult<(StatusCode, ApiJson<ChannelSummary>)> {
    let tenant = tenants::parse_id(&raw)?;
    let channel = channels::create(&state.service, &tenant, request).await?;
    Ok((StatusCode::CREATED, ApiJson(channel)))
}

/// A tenant's channels (without secrets).
#[utoipa::path(get, path = "/v1/operator/tenants/{tenant_id}/channels", tag = "operator", security(("operator" = [])),
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = Vec<ChannelSummary>), (status = 404, body = super::error::ErrorBody)))]
pub async fn list_channels(
    _: Operator,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<ApiJson<Vec<ChannelSummary>>> {
    let tenant = tenants::parse_id(&raw)?;
    Ok(ApiJson(channels::list(&state.service, &tenant).await?))
}

/// Remove a channel.
#[utoipa::path(delete, path = "/v1/operator/tenants/{tenant_id}/channels/{channel_id}", tag = "operator", security(("operator" = [])),
    params(("tenant_id" = String, Path), ("channel_id" = String, Path)),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)))]
pub async fn delete_channel(
    _: Operator,
    State(state): State<ApiState>,
    ApiPath((raw_tenant, raw_channel)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let tenant = tenants::parse_id(&raw_tenant)?;
    let id = channels::parse_id(&raw_channel)?;
    channels::delete(&state.service, &tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A WebAssembly component, as raw bytes (documented as a binary string:
/// `Vec<u8>` would document a JSON array of numbers).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct ComponentBytes(pub Vec<u8>);

/// Admit a plugin component to the registry.
#[utoipa::path(post, path = "/v1/operator/plugins", tag = "operator", security(("operator" = [])),
    request_body(description = "The component bytes (either media type)",
        content((ComponentBytes = "application/wasm"), (ComponentBytes = "application/octet-stream"))),
    responses((status = 201, description = "Admitted", body = PluginRecord),
        (status = 200, description = "Already registered with the same bytes", body = PluginRecord),
        (status = 409, description = "Same id and version, different bytes", body = super::error::ErrorBody),
        (status = 413, body = super::error::ErrorBody), (status = 415, body = super::error::ErrorBody),
        (status = 422, description = "Not a valid plugin (reason in the message)", body = super::error::ErrorBody)))]
pub async fn upload_plugin(
    _: Operator,
    State(state): State<ApiState>,
    headers: axum::http::HeaderMap,
    ApiBytes(body): ApiBytes,
) -> ApiResult<(StatusCode, ApiJson<PluginRecord>)> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/wasm")
        && !content_type.starts_with("application/octet-stream")
    {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the component as application/wasm",
        ));
    }
    Ok(match plugins::admit(&state.service, body).await? {
        Admitted::New(record) => (StatusCode::CREATED, ApiJson(record)),
        Admitted::Existing(record) => (StatusCode::OK, ApiJson(record)),
    })
}

/// The registry.
#[utoipa::path(get, path = "/v1/operator/plugins", tag = "operator", security(("operator" = [])),
    responses((status = 200, body = Vec<PluginRecord>)))]
pub async fn list_plugins(
    _: Operator,
    State(state): State<ApiState>,
) -> ApiResult<ApiJson<Vec<PluginRecord>>> {
    Ok(ApiJson(plugins::list(&state.service)?))
}

/// One registry entry.
#[utoipa::path(get, path = "/v1/operator/plugins/{hash}", tag = "operator", security(("operator" = [])),
    params(("hash" = String, Path, description = "blake3 content hash, hex")),
    responses((status = 200, body = PluginRecord), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_plugin(
    _: Operator,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<ApiJson<PluginRecord>> {
    Ok(ApiJson(plugins::get(&state.service, &raw)?))
}

// ------------------------------------------------------------- compliance

/// Run the maintenance duties now (they also run periodically): the
/// retention sweep of every tenant, then the deletion of offboarded tenants
/// whose deletion is due.
#[utoipa::path(post, path = "/v1/operator/retention", tag = "operator", security(("operator" = [])),
    responses((status = 200, body = Duties)))]
pub async fn run_retention(
    _: Operator,
    State(state): State<ApiState>,
) -> ApiResult<ApiJson<Duties>> {
    Ok(ApiJson(operations::run_duties(&state.service).await?))
}

/// Schedule a tenant's deletion (at most 30 days ahead). Export its data
/// meanwhile with `GET …/export`; `DELETE` deletes at once.
#[utoipa::path(post, path = "/v1/operator/tenants/{tenant_id}/offboard", tag = "operator", security(("operator" = [])),
    params(("tenant_id" = String, Path)), request_body = Offboard,
    responses((status = 200, body = Tenant), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn offboard(
    _: Operator,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(request): ApiJson<Offboard>,
) -> ApiResult<ApiJson<Tenant>> {
    let id = tenants::parse_id(&raw)?;
    Ok(ApiJson(
        tenants::offboard(&state.service, &id, request).await?,
    ))
}

/// Everything a tenant has, as NDJSON (one JSON object per line with a
/// `type`: tenant, installation, channel, api-key, contact, audit).
#[utoipa::path(get, path = "/v1/operator/tenants/{tenant_id}/export", tag = "operator", security(("operator" = [])),
    params(("tenant_id" = String, Path)),
    responses((status = 200, description = "NDJSON", body = String, content_type = "application/x-ndjson"),
        (status = 404, body = super::error::ErrorBody)))]
pub async fn export_tenant(
    _: Operator,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<Response> {
    let id = tenants::parse_id(&raw)?;
    let (_, chunks) = tenants::export(&state.service, &id).await?;
    let body = super::blocking_body::blocking_body(chunks, crate::crypto::spool::CHUNK);
    Ok(([("content-type", "application/x-ndjson")], body).into_response())
}

/// Delete a tenant now: its keys are shredded, its records purged.
#[utoipa::path(delete, path = "/v1/operator/tenants/{tenant_id}", tag = "operator", security(("operator" = [])),
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = DeletionSummary), (status = 404, body = super::error::ErrorBody)))]
pub async fn delete_tenant(
    _: Operator,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<ApiJson<DeletionSummary>> {
    let id = tenants::parse_id(&raw)?;
    Ok(ApiJson(tenants::delete(&state.service, &id).await?))
}

/// Check a tenant's audit chain.
#[utoipa::path(get, path = "/v1/operator/tenants/{tenant_id}/audit/verify", tag = "operator", security(("operator" = [])),
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = Verification), (status = 404, body = super::error::ErrorBody)))]
pub async fn verify_tenant_audit(
    _: Operator,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<ApiJson<Verification>> {
    Ok(ApiJson(tenants::verify_audit(&state.service, &raw).await?))
}

/// Write a consistent backup of the records (sealed, without keys) to the
/// configured backup directory.
#[utoipa::path(post, path = "/v1/operator/backups", tag = "operator", security(("operator" = [])),
    responses((status = 201, body = BackupCreated), (status = 500, body = super::error::ErrorBody)))]
pub async fn create_backup(
    _: Operator,
    State(state): State<ApiState>,
) -> ApiResult<(StatusCode, ApiJson<BackupCreated>)> {
    let created = operations::backup(&state.service).await?;
    Ok((StatusCode::CREATED, ApiJson(created)))
}
