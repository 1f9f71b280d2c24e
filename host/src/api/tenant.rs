//! The tenant API: the tenant's settings, installations (enable with grants
//! and config, update, disable, reorder), contacts, consent, API keys and
//! the audit trail. Each handler extracts, calls one function of the
//! service layer (which checks the key's scopes) and answers.
//!
//! The API key names the tenant; nothing here takes a tenant id from the
//! request, so a key of tenant A cannot name tenant B.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::ApiState;
use super::error::{ApiJson, ApiPath, ApiQuery, ApiResult};
use crate::audit::{AuditEntry, AuditFilter, Verification};
use crate::data::consent::ConsentRecord;
use crate::registry::PluginRecord;
use crate::service::caller::TenantCaller;
use crate::service::consent::{self, ConsentChange};
use crate::service::contacts::{self, ContactOut, ContactPage, Lookup};
use crate::service::installations::{
    self, FlowOrder, InstallationUpdate, InstallationView, NewInstallation,
};
use crate::service::keys::{self, CreatedApiKey, NewApiKey};
use crate::service::settings::{self, TenantUpdate};
use crate::service::{plugins, trail};
use crate::tenancy::api_keys::ApiKey;
use crate::tenancy::tenant::Tenant;

// ---------------------------------------------------------------- tenant

/// The tenant's own profile.
#[utoipa::path(get, path = "/v1/tenant", tag = "tenant", security(("api_key" = [])),
    responses((status = 200, body = Tenant), (status = 401, body = super::error::ErrorBody)))]
pub async fn get_tenant(
    caller: TenantCaller,
    State(state): State<ApiState>,
) -> ApiResult<ApiJson<Tenant>> {
    Ok(ApiJson(settings::profile(&state.service, &caller)?))
}

/// Change the tenant's settings.
#[utoipa::path(patch, path = "/v1/tenant", tag = "tenant", security(("api_key" = [])),
    request_body = TenantUpdate,
    responses((status = 200, body = Tenant), (status = 400, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody)))]
pub async fn update_tenant(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiJson(update): ApiJson<TenantUpdate>,
) -> ApiResult<ApiJson<Tenant>> {
    Ok(ApiJson(
        settings::update(&state.service, &caller, update).await?,
    ))
}

/// Plugins available in the registry.
#[utoipa::path(get, path = "/v1/plugins", tag = "tenant", security(("api_key" = [])),
    responses((status = 200, body = Vec<PluginRecord>)))]
pub async fn list_plugins(
    caller: TenantCaller,
    State(state): State<ApiState>,
) -> ApiResult<ApiJson<Vec<PluginRecord>>> {
    Ok(ApiJson(plugins::available(&state.service, &caller)?))
}

// ---------------------------------------------------------- installations

/// The tenant's installations, in flow order.
#[utoipa::path(get, path = "/v1/installations", tag = "installations", security(("api_key" = [])),
    responses((status = 200, body = Vec<InstallationView>)))]
pub async fn list_installations(
    caller: TenantCaller,
    State(state): State<ApiState>,
) -> ApiResult<ApiJson<Vec<InstallationView>>> {
    Ok(ApiJson(installations::list(&state.service, &caller)?))
}

/// Enable a plugin with grants and configuration.
#[utoipa::path(post, path = "/v1/installations", tag = "installations", security(("api_key" = [])),
    request_body = NewInstallation,
    responses((status = 201, body = InstallationView), (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "`quota_exceeded`: the tenant has as many installations as it may", body = super::error::ErrorBody)))]
pub async fn create_installation(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<NewInstallation>,
) -> ApiResult<(StatusCode, ApiJson<InstallationView>)> {
    let installation = installations::create(&state.service, &caller, request).await?;
    Ok((StatusCode::CREATED, ApiJson(installation)))
}

/// One installation.
#[utoipa::path(get, path = "/v1/installations/{installation_id}", tag = "installations", security(("api_key" = [])),
    params(("installation_id" = String, Path)),
    responses((status = 200, body = InstallationView), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_installation(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<ApiJson<InstallationView>> {
    Ok(ApiJson(installations::get(&state.service, &caller, &raw)?))
}

/// Change grants, configuration, triggers, position or enabled state.
#[utoipa::path(patch, path = "/v1/installations/{installation_id}", tag = "installations", security(("api_key" = [])),
    params(("installation_id" = String, Path)), request_body = InstallationUpdate,
    responses((status = 200, body = InstallationView), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn update_installation(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(update): ApiJson<InstallationUpdate>,
) -> ApiResult<ApiJson<InstallationView>> {
    Ok(ApiJson(
        installations::update(&state.service, &caller, &raw, update).await?,
    ))
}

/// Remove an installation. Its plugin state stays with the contacts until
/// they are erased or their data expires.
#[utoipa::path(delete, path = "/v1/installations/{installation_id}", tag = "installations", security(("api_key" = [])),
    params(("installation_id" = String, Path)),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)))]
pub async fn delete_installation(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<StatusCode> {
    installations::delete(&state.service, &caller, &raw).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set the order of the whole flow.
#[utoipa::path(put, path = "/v1/installations/order", tag = "installations", security(("api_key" = [])),
    request_body = FlowOrder,
    responses((status = 200, body = Vec<InstallationView>), (status = 400, body = super::error::ErrorBody)))]
pub async fn reorder_installations(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiJson(order): ApiJson<FlowOrder>,
) -> ApiResult<ApiJson<Vec<InstallationView>>> {
    Ok(ApiJson(
        installations::reorder(&state.service, &caller, order).await?,
    ))
}

// --------------------------------------------------------------- contacts

/// Paging of a contact list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
// Named explicitly: utoipa infers "query" only from axum's own `Query`, not
// from the `ApiQuery` wrapper the handler uses.
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Contacts after this id.
    pub after: Option<String>,
    /// At most this many (default 50, at most 500).
    pub limit: Option<usize>,
}

/// List contacts.
#[utoipa::path(get, path = "/v1/contacts", tag = "contacts", security(("api_key" = [])),
    params(Page),
    responses((status = 200, body = ContactPage), (status = 403, body = super::error::ErrorBody)))]
pub async fn list_contacts(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<ApiJson<ContactPage>> {
    let page = contacts::list(&state.service, &caller, page.after.as_deref(), page.limit).await?;
    Ok(ApiJson(page))
}

/// One contact.
#[utoipa::path(get, path = "/v1/contacts/{contact_id}", tag = "contacts", security(("api_key" = [])),
    params(("contact_id" = String, Path)),
    responses((status = 200, body = ContactOut), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_contact(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<ApiJson<ContactOut>> {
    Ok(ApiJson(contacts::get(&state.service, &caller, &raw).await?))
}

/// Hand a contact back to the automations after a human took over: a
/// plugin's `hand-off` action stops every plugin reply to the contact until
/// this is called.
#[utoipa::path(post, path = "/v1/contacts/{contact_id}/hand-back", tag = "contacts", security(("api_key" = [])),
    params(("contact_id" = String, Path)),
    responses((status = 200, body = ContactOut), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn hand_back_contact(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<ApiJson<ContactOut>> {
    Ok(ApiJson(
        contacts::hand_back(&state.service, &caller, &raw).await?,
    ))
}

/// Find a contact by phone number or BSUID. A POST, so identifiers stay out
/// of URLs and access logs.
#[utoipa::path(post, path = "/v1/contacts/lookup", tag = "contacts", security(("api_key" = [])),
    request_body = Lookup,
    responses((status = 200, body = ContactOut), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn lookup_contact(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiJson(lookup): ApiJson<Lookup>,
) -> ApiResult<ApiJson<ContactOut>> {
    Ok(ApiJson(
        contacts::lookup(&state.service, &caller, &lookup).await?,
    ))
}

// ---------------------------------------------------------------- consent

/// Record consent given or withdrawn.
#[utoipa::path(post, path = "/v1/contacts/{contact_id}/consent", tag = "consent", security(("api_key" = [])),
    params(("contact_id" = String, Path)), request_body = ConsentChange,
    responses((status = 201, body = ContactOut), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn record_consent(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(change): ApiJson<ConsentChange>,
) -> ApiResult<(StatusCode, ApiJson<ContactOut>)> {
    let contact = consent::record(&state.service, &caller, &raw, &change).await?;
    Ok((StatusCode::CREATED, ApiJson(contact)))
}

/// The contact's consent ledger.
#[utoipa::path(get, path = "/v1/contacts/{contact_id}/consent", tag = "consent", security(("api_key" = [])),
    params(("contact_id" = String, Path)),
    responses((status = 200, body = Vec<Object>), (status = 404, body = super::error::ErrorBody)))]
pub async fn consent_history(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<ApiJson<Vec<ConsentRecord>>> {
    Ok(ApiJson(consent::history(&state.service, &caller, &raw)?))
}

// --------------------------------------------------------------- API keys

/// Create an API key.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", security(("api_key" = [])),
    request_body = NewApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 400, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody)))]
pub async fn create_api_key(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<NewApiKey>,
) -> ApiResult<(StatusCode, ApiJson<CreatedApiKey>)> {
    let created = keys::create(&state.service, &caller, request).await?;
    Ok((StatusCode::CREATED, ApiJson(created)))
}

/// List API keys (without secrets).
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", security(("api_key" = [])),
    responses((status = 200, body = Vec<ApiKey>)))]
pub async fn list_api_keys(
    caller: TenantCaller,
    State(state): State<ApiState>,
) -> ApiResult<ApiJson<Vec<ApiKey>>> {
    Ok(ApiJson(keys::list(&state.service, &caller)?))
}

/// Revoke an API key.
#[utoipa::path(delete, path = "/v1/api-keys/{key_id}", tag = "api-keys", security(("api_key" = [])),
    params(("key_id" = String, Path)),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)))]
pub async fn revoke_api_key(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<StatusCode> {
    keys::revoke(&state.service, &caller, &raw).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ audit

/// Read the audit trail.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("api_key" = [])),
    params(AuditFilter),
    responses((status = 200, body = Vec<AuditEntry>)))]
pub async fn query_audit(
    caller: TenantCaller,
    State(state): State<ApiState>,
    ApiQuery(filter): ApiQuery<AuditFilter>,
) -> ApiResult<ApiJson<Vec<AuditEntry>>> {
    Ok(ApiJson(trail::query(&state.service, &caller, &filter)?))
}

/// Check the audit trail's hash chain.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", security(("api_key" = [])),
    responses((status = 200, body = Verification)))]
pub async fn verify_audit(
    caller: TenantCaller,
    State(state): State<ApiState>,
) -> ApiResult<ApiJson<Verification>> {
    Ok(ApiJson(trail::verify(&state.service, &caller)?))
}
