//! The operator API: tenants, their WhatsApp channels, and the plugin
//! registry. Every change is audited in the system chain (and, for a
//! tenant's channels, in the tenant's chain too).

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::Operator;
use super::error::{ApiBytes, ApiJson, ApiPath, ApiResult, AppError};
use crate::audit::{Actor, AuditDraft};
use crate::ids::{ChannelId, TenantId};
use crate::registry::{PluginRecord, RegistryError};
use crate::runtime::ContentHash;
use crate::service::committer::Commit;
use crate::store::Batch;
use crate::tenancy::api_keys::{self, Scope};
use crate::tenancy::channels::{Channel, ChannelSummary};
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

pub(super) fn parse_tenant(raw: &str) -> Result<TenantId, AppError> {
    raw.parse().map_err(|_| AppError::not_found("tenant"))
}

/// The failure of a request about `tenant`, as 404 when the tenant is gone
/// by now. The operator's own deletions wait for such requests
/// (`ApiState::tenant_deletions`), but the service's periodic duties delete
/// offboarded tenants when due without asking the API; a request caught by
/// one fails on a shredded key. That is the tenant not existing, not a
/// fault of the service to answer 500 for and log.
fn unless_deleted(state: &ApiState, tenant: &TenantId, error: impl std::fmt::Display) -> AppError {
    match state.service.vault.keys.has_tenant(tenant) {
        Ok(false) => AppError::not_found("tenant"),
        _ => AppError::internal(error),
    }
}

fn operator_audit(
    state: &ApiState,
    tenant: TenantId,
    action: &str,
    details: serde_json::Value,
) -> AuditDraft {
    AuditDraft::new(tenant, state.service.clock.now(), Actor::Operator, action).details(details)
}

/// Create a tenant.
#[utoipa::path(post, path = "/v1/operator/tenants", tag = "operator", security(("operator" = [])),
    request_body = NewTenant,
    responses((status = 201, body = CreatedTenant), (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody)))]
pub async fn create_tenant(
    _: Operator,
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<NewTenant>,
) -> ApiResult<(StatusCode, ApiJson<CreatedTenant>)> {
    let service = &state.service;
    let now = service.clock.now();
    let id = TenantId::generate();
    let timezone = request.timezone.as_deref().unwrap_or("UTC");
    let tenant = Tenant::new(id, &request.name, timezone, now)
        .map_err(|e| AppError::bad_request(e.to_string()))?;
    let keys = service
        .vault
        .keys
        .create_tenant(&id)
        .map_err(AppError::internal)?;
    let admin = api_keys::create(
        &keys,
        "admin (created with the tenant)",
        BTreeSet::from([Scope::Admin]),
        now,
    );
    let mut batch = Batch::new();
    tenant.stage(&service.vault, &mut batch)?;
    api_keys::stage(&service.vault, &mut batch, &id, &admin.record)?;
    service
        .committer
        .commit(Commit::new(
            batch,
            vec![
                operator_audit(
                    &state,
                    id,
                    "tenant.created",
                    serde_json::json!({"timezone": timezone}),
                ),
                operator_audit(
                    &state,
                    id,
                    "api-key.created",
                    serde_json::json!({"key": admin.record.id, "scopes": ["admin"]}),
                ),
                operator_audit(
                    &state,
                    TenantId::SYSTEM,
                    "tenant.created",
                    serde_json::json!({"tenant": id}),
                ),
            ],
        ))
        .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedTenant {
            tenant,
            admin_api_key: admin.token,
        }),
    ))
}

/// List tenants.
#[utoipa::path(get, path = "/v1/operator/tenants", tag = "operator", security(("operator" = [])),
    responses((status = 200, body = Vec<Tenant>), (status = 401, body = super::error::ErrorBody)))]
pub async fn list_tenants(
    _: Operator,
    State(state): State<ApiState>,
) -> ApiResult<ApiJson<Vec<Tenant>>> {
    let _no_deletion = state.tenant_deletions.read().await;
    let vault = &state.service.vault;
    let mut tenants = Vec::new();
    for id in Tenant::list_ids(vault)? {
        if let Some(tenant) = Tenant::load(vault, &id)? {
            tenants.push(tenant);
        }
    }
    Ok(ApiJson(tenants))
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
    let _no_deletion = state.tenant_deletions.read().await;
    let id = parse_tenant(&raw)?;
    Tenant::load(&state.service.vault, &id)?
        .map(ApiJson)
        .ok_or_else(|| AppError::not_found("tenant"))
}

/// A new WhatsApp channel of a tenant.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChannel {
    /// WhatsApp's phone number id.
    pub phone_number_id: String,
    /// The Meta app secret (signs webhooks).
    pub app_secret: String,
    /// The verify token for the webhook handshake.
    pub verify_token: String,
    /// A Cloud API access token for sending.
    pub access_token: String,
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
    let _no_deletion = state.tenant_deletions.read().await;
    let service = &state.service;
    let tenant = parse_tenant(&raw)?;
    if Tenant::load(&service.vault, &tenant)?.is_none() {
        return Err(AppError::not_found("tenant"));
    }
    let phone_number_id = request.phone_number_id.trim();
    if phone_number_id.is_empty()
        || phone_number_id.len() > 64
        || !phone_number_id.chars().all(|c| c.is_ascii_digit())
    {
        return Err(AppError::bad_request(
            "phone_number_id must be WhatsApp's numeric id",
        ));
    }
    for (name, value) in [
        ("app_secret", &request.app_secret),
        ("verify_token", &request.verify_token),
        ("access_token", &request.access_token),
    ] {
        if value.trim().len() < 8 || value.len() > 4096 {
            return Err(AppError::bad_request(format!(
                "{name} must be 8 to 4096 characters"
            )));
        }
    }
    if Channel::owner_of_phone(&service.vault, phone_number_id)?.is_some() {
        return Err(AppError::conflict(
            "this phone number id already has a channel",
        ));
    }
    let channel = Channel {
        id: ChannelId::generate(),
        tenant,
        phone_number_id: phone_number_id.to_owned(),
        app_secret: request.app_secret,
        verify_token: request.verify_token,
        access_token: request.access_token,
        created_at: service.clock.now(),
    };
    let mut batch = Batch::new();
    channel.stage(&service.vault, &mut batch)?;
    service
        .committer
        .commit(Commit::new(
            batch,
            vec![operator_audit(
                &state,
                tenant,
                "channel.created",
                serde_json::json!({"channel": channel.id}),
            )],
        ))
        .await
        .map_err(|e| unless_deleted(&state, &tenant, e))?;
    service.contexts.invalidate(&tenant);
    Ok((StatusCode::CREATED, ApiJson(channel.summary())))
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
    let _no_deletion = state.tenant_deletions.read().await;
    let tenant = parse_tenant(&raw)?;
    let vault = &state.service.vault;
    if Tenant::load(vault, &tenant)?.is_none() {
        return Err(AppError::not_found("tenant"));
    }
    Ok(ApiJson(
        Channel::list(vault, &tenant)?
            .iter()
            .map(Channel::summary)
            .collect(),
    ))
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
    let _no_deletion = state.tenant_deletions.read().await;
    let service = &state.service;
    let tenant = parse_tenant(&raw_tenant)?;
    let id: ChannelId = raw_channel
        .parse()
        .map_err(|_| AppError::not_found("channel"))?;
    let channel = Channel::load_for(&service.vault, &tenant, &id)?
        .ok_or_else(|| AppError::not_found("channel"))?;
    let mut batch = Batch::new();
    channel.stage_removal(&mut batch);
    service
        .committer
        .commit(Commit::new(
            batch,
            vec![operator_audit(
                &state,
                tenant,
                "channel.deleted",
                serde_json::json!({"channel": id}),
            )],
        ))
        .await
        .map_err(|e| unless_deleted(&state, &tenant, e))?;
    service.contexts.invalidate(&tenant);
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
    let service = state.service.clone();
    let now = service.clock.now();
    // Compiling a component takes CPU time: off the async threads.
    let admitted = tokio::task::spawn_blocking(move || {
        let mut batch = Batch::new();
        service
            .registry
            .admit(&body, now, &mut batch)
            .map(|(record, new)| (record, new, batch))
    })
    .await
    .map_err(AppError::internal)?;
    let (record, new, batch) = match admitted {
        Ok(admitted) => admitted,
        Err(RegistryError::Load(error)) => {
            return Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_plugin",
                error.to_string(),
            ));
        }
        Err(error @ RegistryError::VersionTaken { .. }) => {
            return Err(AppError::conflict(error.to_string()));
        }
        Err(RegistryError::Data(error)) => return Err(error.into()),
    };
    if !new {
        return Ok((StatusCode::OK, ApiJson(record)));
    }
    state
        .service
        .committer
        .commit(Commit::new(
            batch,
            vec![operator_audit(&state, TenantId::SYSTEM, "plugin.registered", serde_json::json!({
                "hash": record.hash, "id": record.manifest.id, "version": record.manifest.version,
            }))],
        ))
        .await?;
    Ok((StatusCode::CREATED, ApiJson(record)))
}

/// The registry.
#[utoipa::path(get, path = "/v1/operator/plugins", tag = "operator", security(("operator" = [])),
    responses((status = 200, body = Vec<PluginRecord>)))]
pub async fn list_plugins(
    _: Operator,
    State(state): State<ApiState>,
) -> ApiResult<ApiJson<Vec<PluginRecord>>> {
    Ok(ApiJson(state.service.registry.list()?))
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
    let hash: ContentHash = raw.parse().map_err(|_| AppError::not_found("plugin"))?;
    state
        .service
        .registry
        .record(&hash)?
        .map(ApiJson)
        .ok_or_else(|| AppError::not_found("plugin"))
}

// ------------------------------------------------------------- compliance

/// Run the maintenance duties now (they also run periodically): the
/// retention sweep of every tenant, then the deletion of offboarded tenants
/// whose deletion is due.
#[utoipa::path(post, path = "/v1/operator/retention", tag = "operator", security(("operator" = [])),
    responses((status = 200, body = crate::service::maintenance::Duties)))]
pub async fn run_retention(
    _: Operator,
    State(state): State<ApiState>,
) -> ApiResult<ApiJson<crate::service::maintenance::Duties>> {
    let _deleting = state.tenant_deletions.write().await;
    let service = state.service.clone();
    let duties =
        tokio::task::spawn_blocking(move || crate::service::maintenance::run_duties(&service))
            .await
            .map_err(AppError::internal)??;
    Ok(ApiJson(duties))
}

/// Offboarding: when the tenant's data will be deleted.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Offboard {
    /// Days until deletion, 0 to 30 (default 30).
    pub days: Option<u64>,
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
    let _no_deletion = state.tenant_deletions.read().await;
    let service = &state.service;
    let id = parse_tenant(&raw)?;
    let days = request
        .days
        .unwrap_or(crate::compliance::offboarding::DELETION_DAYS);
    if days > crate::compliance::offboarding::DELETION_DAYS {
        return Err(AppError::bad_request("deletion is promised within 30 days"));
    }
    let mut tenant =
        Tenant::load(&service.vault, &id)?.ok_or_else(|| AppError::not_found("tenant"))?;
    tenant.deletion_due = Some(service.clock.now() + days * 86_400);
    let mut batch = Batch::new();
    tenant.stage(&service.vault, &mut batch)?;
    service
        .committer
        .commit(Commit::new(
            batch,
            vec![
                operator_audit(
                    &state,
                    id,
                    "tenant.offboarding",
                    serde_json::json!({"deletion_due": tenant.deletion_due}),
                ),
                operator_audit(
                    &state,
                    TenantId::SYSTEM,
                    "tenant.offboarding",
                    serde_json::json!({"tenant": id, "deletion_due": tenant.deletion_due}),
                ),
            ],
        ))
        .await
        .map_err(|e| unless_deleted(&state, &id, e))?;
    service.contexts.invalidate(&id);
    Ok(ApiJson(tenant))
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
) -> ApiResult<axum::response::Response> {
    let _no_deletion = state.tenant_deletions.read().await;
    use axum::response::IntoResponse;
    let id = parse_tenant(&raw)?;
    let service = state.service.clone();
    // Written to a temporary file and streamed, so a large tenant does not
    // sit in memory.
    let file = tempfile::tempfile().map_err(AppError::internal)?;
    let reader = file.try_clone().map_err(AppError::internal)?;
    let summary = tokio::task::spawn_blocking(move || {
        let mut out = std::io::BufWriter::new(file);
        crate::compliance::offboarding::export(&service.vault, &id, service.clock.now(), &mut out)
    })
    .await
    .map_err(AppError::internal)?
    .map_err(|e| match e {
        crate::compliance::offboarding::ExportError::UnknownTenant(_) => {
            AppError::not_found("tenant")
        }
        other => unless_deleted(&state, &id, other),
    })?;
    state
        .service
        .committer
        .commit(Commit::new(
            Batch::new(),
            vec![operator_audit(
                &state,
                id,
                "tenant.exported",
                serde_json::to_value(&summary).unwrap_or_default(),
            )],
        ))
        .await
        .map_err(|e| unless_deleted(&state, &id, e))?;
    let mut reader = tokio::fs::File::from_std(reader);
    use tokio::io::AsyncSeekExt;
    reader
        .seek(std::io::SeekFrom::Start(0))
        .await
        .map_err(AppError::internal)?;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(reader));
    Ok(([("content-type", "application/x-ndjson")], body).into_response())
}

/// Delete a tenant now: its keys are shredded, its records purged.
#[utoipa::path(delete, path = "/v1/operator/tenants/{tenant_id}", tag = "operator", security(("operator" = [])),
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = crate::compliance::offboarding::DeletionSummary), (status = 404, body = super::error::ErrorBody)))]
pub async fn delete_tenant(
    _: Operator,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<ApiJson<crate::compliance::offboarding::DeletionSummary>> {
    let _deleting = state.tenant_deletions.write().await;
    let id = parse_tenant(&raw)?;
    if id == TenantId::SYSTEM || Tenant::load(&state.service.vault, &id)?.is_none() {
        return Err(AppError::not_found("tenant"));
    }
    let service = state.service.clone();
    let summary = tokio::task::spawn_blocking(move || {
        crate::service::maintenance::delete_tenant(&service, &id, Actor::Operator)
    })
    .await
    .map_err(AppError::internal)?
    .map_err(|e| unless_deleted(&state, &id, e))?;
    Ok(ApiJson(summary))
}

/// Check a tenant's audit chain.
#[utoipa::path(get, path = "/v1/operator/tenants/{tenant_id}/audit/verify", tag = "operator", security(("operator" = [])),
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = crate::audit::Verification), (status = 404, body = super::error::ErrorBody)))]
pub async fn verify_tenant_audit(
    _: Operator,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<ApiJson<crate::audit::Verification>> {
    let _no_deletion = state.tenant_deletions.read().await;
    let id = if raw == "system" {
        TenantId::SYSTEM
    } else {
        parse_tenant(&raw)?
    };
    if !state.service.vault.keys.has_tenant(&id)? {
        return Err(AppError::not_found("tenant"));
    }
    crate::audit::verify(&state.service.vault, &id)
        .map(ApiJson)
        .map_err(|e| unless_deleted(&state, &id, e))
}

/// A backup written by the service.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupCreated {
    /// Path of the file on the service's machine.
    pub path: String,
    pub summary: crate::compliance::backup::BackupSummary,
}

/// Write a consistent backup of the records (sealed, without keys) to the
/// configured backup directory.
#[utoipa::path(post, path = "/v1/operator/backups", tag = "operator", security(("operator" = [])),
    responses((status = 201, body = BackupCreated), (status = 500, body = super::error::ErrorBody)))]
pub async fn create_backup(
    _: Operator,
    State(state): State<ApiState>,
) -> ApiResult<(StatusCode, ApiJson<BackupCreated>)> {
    let service = state.service.clone();
    let dir = service.config.backup_dir.clone();
    std::fs::create_dir_all(&dir).map_err(AppError::internal)?;
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
            let _ = sender.send(crate::compliance::backup::create(store.as_ref(), &target));
        }))
        .await?;
    let summary = receiver
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)?;
    service
        .committer
        .commit(Commit::new(
            Batch::new(),
            vec![operator_audit(
                &state,
                TenantId::SYSTEM,
                "backup.created",
                serde_json::json!({"records": summary.records, "checksum": summary.checksum}),
            )],
        ))
        .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(BackupCreated {
            path: path.display().to_string(),
            summary,
        }),
    ))
}
