//! The tenant API: the tenant's settings, installations (enable with grants
//! and config, update, disable, reorder), contacts, consent, API keys and
//! the audit trail. The API key names the tenant; nothing here takes a
//! tenant id from the request, so a key of tenant A cannot name tenant B.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::TenantKey;
use super::error::{ApiJson, ApiPath, ApiQuery, ApiResult, AppError, Attempts};
use crate::audit::{self, AuditDraft, AuditEntry, AuditFilter, Verification, contact_pseudonym};
use crate::compliance::retention::RetentionPolicy;
use crate::data::consent::{ConsentLedger, ConsentRecord, Decision, Source, Subject};
use crate::data::contacts::{Contact, Contacts};
use crate::ids::{ApiKeyId, ContactId, InstallationId};
use crate::plugin::{Capability, DataField, Purpose};
use crate::registry::PluginRecord;
use crate::service::committer::Commit;
use crate::store::{Batch, Kind};
use crate::tenancy::api_keys::{self, ApiKey, Scope};
use crate::tenancy::installations::{Installation, Trigger};
use crate::tenancy::tenant::{Tenant, utc_offset_minutes};

fn audit(
    state: &ApiState,
    key: &TenantKey,
    action: &str,
    details: serde_json::Value,
) -> AuditDraft {
    AuditDraft::new(key.tenant, state.service.clock.now(), key.actor(), action).details(details)
}

async fn commit(state: &ApiState, batch: Batch, audit: Vec<AuditDraft>) -> ApiResult<()> {
    state
        .service
        .committer
        .commit(Commit::new(batch, audit))
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- tenant

/// The tenant's own profile.
#[utoipa::path(get, path = "/v1/tenant", tag = "tenant", security(("api_key" = [])),
    responses((status = 200, body = Tenant), (status = 401, body = super::error::ErrorBody)))]
pub async fn get_tenant(
    key: TenantKey,
    State(state): State<ApiState>,
) -> ApiResult<ApiJson<Tenant>> {
    key.require(Scope::Read)?;
    Tenant::load(&state.service.vault, &key.tenant)?
        .map(ApiJson)
        .ok_or_else(|| AppError::not_found("tenant"))
}

/// Changes to the tenant's settings.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    pub timezone: Option<String>,
    /// Keep full message text (default off).
    pub store_message_content: Option<bool>,
    /// Shorter retention periods (never longer than the maximums).
    pub retention: Option<RetentionPolicy>,
}

/// Change the tenant's settings.
#[utoipa::path(patch, path = "/v1/tenant", tag = "tenant", security(("api_key" = [])),
    request_body = TenantUpdate,
    responses((status = 200, body = Tenant), (status = 400, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody)))]
pub async fn update_tenant(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiJson(update): ApiJson<TenantUpdate>,
) -> ApiResult<ApiJson<Tenant>> {
    key.require(Scope::Admin)?;
    let vault = &state.service.vault;
    let mut tenant =
        Tenant::load(vault, &key.tenant)?.ok_or_else(|| AppError::not_found("tenant"))?;
    if let Some(timezone) = update.timezone {
        utc_offset_minutes(&timezone, 0).map_err(|e| AppError::bad_request(e.to_string()))?;
        tenant.timezone = timezone;
    }
    if let Some(store) = update.store_message_content {
        tenant.store_message_content = store;
    }
    if let Some(retention) = update.retention {
        retention
            .validate()
            .map_err(|e| AppError::bad_request(e.to_string()))?;
        tenant.retention = retention;
    }
    let mut batch = Batch::new();
    tenant.stage(vault, &mut batch)?;
    commit(
        &state,
        batch,
        vec![audit(
            &state,
            &key,
            "tenant.updated",
            serde_json::json!({
                "timezone": tenant.timezone,
                "store_message_content": tenant.store_message_content,
                "retention": tenant.retention,
            }),
        )],
    )
    .await?;
    state.service.contexts.invalidate(&key.tenant);
    Ok(ApiJson(tenant))
}

/// Plugins available in the registry.
#[utoipa::path(get, path = "/v1/plugins", tag = "tenant", security(("api_key" = [])),
    responses((status = 200, body = Vec<PluginRecord>)))]
pub async fn list_plugins(
    key: TenantKey,
    State(state): State<ApiState>,
) -> ApiResult<ApiJson<Vec<PluginRecord>>> {
    key.require(Scope::Read)?;
    Ok(ApiJson(state.service.registry.list()?))
}

// ---------------------------------------------------------- installations

/// Enable a plugin.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInstallation {
    /// The plugin: a content hash, `id@version`, or an id (its newest version).
    pub plugin: String,
    /// Data fields to grant (fideslang identifiers); each must be declared
    /// by the plugin. Nothing is granted by default.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub grants: BTreeSet<DataField>,
    /// Capabilities to grant; default: every capability the plugin declares.
    pub capabilities: Option<BTreeSet<Capability>>,
    /// Configuration values.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// What runs it; default: inbound messages.
    pub triggers: Option<BTreeSet<Trigger>>,
    /// Position in the flow; default: after the existing ones.
    pub position: Option<u32>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// Change an installation.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallationUpdate {
    #[schema(value_type = Option<Vec<String>>)]
    pub grants: Option<BTreeSet<DataField>>,
    pub capabilities: Option<BTreeSet<Capability>>,
    pub config: Option<BTreeMap<String, String>>,
    pub triggers: Option<BTreeSet<Trigger>>,
    pub position: Option<u32>,
    pub enabled: Option<bool>,
}

/// A new flow order.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowOrder {
    /// Every installation id, in the order they should run.
    #[schema(value_type = Vec<String>)]
    pub order: Vec<InstallationId>,
}

fn resolve_plugin(state: &ApiState, reference: &str) -> ApiResult<PluginRecord> {
    let registry = &state.service.registry;
    let record = if let Ok(hash) = reference.parse() {
        registry.record(&hash)?
    } else if let Some((id, version)) = reference.split_once('@') {
        match registry.version(id, version)? {
            Some(hash) => registry.record(&hash)?,
            None => None,
        }
    } else {
        registry.latest(reference)?
    };
    record.ok_or_else(|| AppError::not_found("plugin"))
}

fn parse_installation(raw: &str) -> Result<InstallationId, AppError> {
    raw.parse().map_err(|_| AppError::not_found("installation"))
}

fn installation_details(installation: &Installation) -> serde_json::Value {
    serde_json::json!({
        "installation": installation.id,
        "plugin": installation.plugin_id,
        "version": installation.plugin_version,
        "grants": installation.grants,
        "capabilities": installation.capabilities,
        "config_keys": installation.config.keys().collect::<Vec<_>>(),
        "enabled": installation.enabled,
        "position": installation.position,
    })
}

/// The tenant's installations, in flow order.
#[utoipa::path(get, path = "/v1/installations", tag = "installations", security(("api_key" = [])),
    responses((status = 200, body = Vec<Installation>)))]
pub async fn list_installations(
    key: TenantKey,
    State(state): State<ApiState>,
) -> ApiResult<ApiJson<Vec<Installation>>> {
    key.require(Scope::Read)?;
    Ok(ApiJson(Installation::list(
        &state.service.vault,
        &key.tenant,
    )?))
}

/// Enable a plugin with grants and configuration.
#[utoipa::path(post, path = "/v1/installations", tag = "installations", security(("api_key" = [])),
    request_body = NewInstallation,
    responses((status = 201, body = Installation), (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn create_installation(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<NewInstallation>,
) -> ApiResult<(StatusCode, ApiJson<Installation>)> {
    key.require(Scope::Admin)?;
    let vault = &state.service.vault;
    let record = resolve_plugin(&state, &request.plugin)?;
    let existing = Installation::list(vault, &key.tenant)?;
    let now = state.service.clock.now();
    let installation = Installation {
        id: InstallationId::generate(),
        plugin: record.hash,
        plugin_id: record.manifest.id.clone(),
        plugin_version: record.manifest.version.clone(),
        grants: request.grants,
        capabilities: request
            .capabilities
            .unwrap_or_else(|| record.manifest.capabilities.iter().copied().collect()),
        config: request.config,
        triggers: request
            .triggers
            .unwrap_or_else(|| BTreeSet::from([Trigger::MessageReceived])),
        position: request
            .position
            .unwrap_or_else(|| existing.iter().map(|i| i.position + 1).max().unwrap_or(0)),
        enabled: request.enabled.unwrap_or(true),
        created_at: now,
        updated_at: now,
    };
    installation
        .validate(&record.manifest)
        .map_err(|e| AppError::bad_request(e.to_string()))?;
    let mut batch = Batch::new();
    installation.stage(vault, &key.tenant, &mut batch)?;
    commit(
        &state,
        batch,
        vec![audit(
            &state,
            &key,
            "installation.created",
            installation_details(&installation),
        )],
    )
    .await?;
    state.service.contexts.invalidate(&key.tenant);
    Ok((StatusCode::CREATED, ApiJson(installation)))
}

/// One installation.
#[utoipa::path(get, path = "/v1/installations/{installation_id}", tag = "installations", security(("api_key" = [])),
    params(("installation_id" = String, Path)),
    responses((status = 200, body = Installation), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_installation(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<ApiJson<Installation>> {
    key.require(Scope::Read)?;
    let id = parse_installation(&raw)?;
    Installation::load(&state.service.vault, &key.tenant, &id)?
        .map(ApiJson)
        .ok_or_else(|| AppError::not_found("installation"))
}

/// Change grants, configuration, triggers, position or enabled state.
#[utoipa::path(patch, path = "/v1/installations/{installation_id}", tag = "installations", security(("api_key" = [])),
    params(("installation_id" = String, Path)), request_body = InstallationUpdate,
    responses((status = 200, body = Installation), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn update_installation(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(update): ApiJson<InstallationUpdate>,
) -> ApiResult<ApiJson<Installation>> {
    key.require(Scope::Admin)?;
    let vault = &state.service.vault;
    let id = parse_installation(&raw)?;
    let mut installation = Installation::load(vault, &key.tenant, &id)?
        .ok_or_else(|| AppError::not_found("installation"))?;
    let record = state
        .service
        .registry
        .record(&installation.plugin)?
        .ok_or_else(|| {
            AppError::internal("an installation refers to a plugin missing from the registry")
        })?;
    if let Some(grants) = update.grants {
        installation.grants = grants;
    }
    if let Some(capabilities) = update.capabilities {
        installation.capabilities = capabilities;
    }
    if let Some(config) = update.config {
        installation.config = config;
    }
    if let Some(triggers) = update.triggers {
        installation.triggers = triggers;
    }
    if let Some(position) = update.position {
        installation.position = position;
    }
    if let Some(enabled) = update.enabled {
        installation.enabled = enabled;
    }
    installation.updated_at = state.service.clock.now();
    installation
        .validate(&record.manifest)
        .map_err(|e| AppError::bad_request(e.to_string()))?;
    let mut batch = Batch::new();
    installation.stage(vault, &key.tenant, &mut batch)?;
    commit(
        &state,
        batch,
        vec![audit(
            &state,
            &key,
            "installation.updated",
            installation_details(&installation),
        )],
    )
    .await?;
    state.service.contexts.invalidate(&key.tenant);
    Ok(ApiJson(installation))
}

/// Remove an installation. Its plugin state stays with the contacts until
/// they are erased or their data expires.
#[utoipa::path(delete, path = "/v1/installations/{installation_id}", tag = "installations", security(("api_key" = [])),
    params(("installation_id" = String, Path)),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)))]
pub async fn delete_installation(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<StatusCode> {
    key.require(Scope::Admin)?;
    let id = parse_installation(&raw)?;
    if Installation::load(&state.service.vault, &key.tenant, &id)?.is_none() {
        return Err(AppError::not_found("installation"));
    }
    let mut batch = Batch::new();
    batch.delete(key.tenant, Kind::Installations, id.as_bytes().to_vec());
    commit(
        &state,
        batch,
        vec![audit(
            &state,
            &key,
            "installation.deleted",
            serde_json::json!({"installation": id}),
        )],
    )
    .await?;
    state.service.contexts.invalidate(&key.tenant);
    Ok(StatusCode::NO_CONTENT)
}

/// Set the order of the whole flow.
#[utoipa::path(put, path = "/v1/installations/order", tag = "installations", security(("api_key" = [])),
    request_body = FlowOrder,
    responses((status = 200, body = Vec<Installation>), (status = 400, body = super::error::ErrorBody)))]
pub async fn reorder_installations(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiJson(order): ApiJson<FlowOrder>,
) -> ApiResult<ApiJson<Vec<Installation>>> {
    key.require(Scope::Admin)?;
    let vault = &state.service.vault;
    let mut installations = Installation::list(vault, &key.tenant)?;
    let given: BTreeSet<InstallationId> = order.order.iter().copied().collect();
    let existing: BTreeSet<InstallationId> = installations.iter().map(|i| i.id).collect();
    if given != existing || given.len() != order.order.len() {
        return Err(AppError::bad_request(
            "`order` must list every installation exactly once",
        ));
    }
    let mut batch = Batch::new();
    for installation in &mut installations {
        installation.position = order
            .order
            .iter()
            .position(|id| id == &installation.id)
            .expect("listed") as u32;
        installation.stage(vault, &key.tenant, &mut batch)?;
    }
    installations.sort_by_key(|i| i.position);
    commit(
        &state,
        batch,
        vec![audit(
            &state,
            &key,
            "installation.reordered",
            serde_json::json!({"order": order.order}),
        )],
    )
    .await?;
    state.service.contexts.invalidate(&key.tenant);
    Ok(ApiJson(installations))
}

// --------------------------------------------------------------- contacts

/// A contact as the tenant sees it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContactOut {
    #[schema(value_type = String)]
    pub id: ContactId,
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub profile_name: Option<String>,
    pub labels: Vec<String>,
    pub lead_score: Option<u8>,
    pub lead_reason: Option<String>,
    pub opted_out: bool,
    #[schema(value_type = Vec<String>)]
    pub consents: Vec<Purpose>,
    pub restricted: bool,
    #[schema(value_type = Vec<String>)]
    pub objections: Vec<Purpose>,
    pub handed_off: bool,
    pub first_seen: u64,
    pub last_seen: u64,
    pub last_inbound: Option<u64>,
}

impl From<Contact> for ContactOut {
    fn from(c: Contact) -> Self {
        ContactOut {
            id: c.id,
            wa_id: c.wa_id,
            user_id: c.user_id,
            profile_name: c.profile_name,
            labels: c.labels,
            lead_score: c.lead_score.as_ref().map(|s| s.score),
            lead_reason: c.lead_score.map(|s| s.reason),
            opted_out: c.opted_out,
            consents: c.consents,
            restricted: c.restricted,
            objections: c.objections,
            handed_off: c.handed_off,
            first_seen: c.first_seen,
            last_seen: c.last_seen,
            last_inbound: c.last_inbound,
        }
    }
}

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

/// A page of contacts.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContactPage {
    pub contacts: Vec<ContactOut>,
    /// Pass as `after` for the next page.
    pub next: Option<String>,
}

pub(super) fn parse_contact(raw: &str) -> Result<ContactId, AppError> {
    raw.parse().map_err(|_| AppError::not_found("contact"))
}

/// List contacts.
#[utoipa::path(get, path = "/v1/contacts", tag = "contacts", security(("api_key" = [])),
    params(Page),
    responses((status = 200, body = ContactPage), (status = 403, body = super::error::ErrorBody)))]
pub async fn list_contacts(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<ApiJson<ContactPage>> {
    key.require(Scope::Read)?;
    let vault = &state.service.vault;
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    let after = match &page.after {
        Some(raw) => Some(
            parse_contact(raw).map_err(|_| AppError::bad_request("`after` is not a contact id"))?,
        ),
        None => None,
    };
    let contacts = Contacts::of(vault, key.tenant)?;
    let entries = vault.store.scan(
        &key.tenant,
        Kind::Contacts,
        b"",
        after.as_ref().map(|a| a.as_bytes().as_slice()),
        limit,
    )?;
    let mut out = Vec::with_capacity(entries.len());
    for (raw_id, _) in &entries {
        if let Some(id) = ContactId::from_slice(raw_id)
            && let Some(loaded) = contacts.load(&id)?
        {
            out.push(ContactOut::from(loaded.contact));
        }
    }
    let next = (entries.len() == limit)
        .then(|| {
            entries
                .last()
                .and_then(|(k, _)| ContactId::from_slice(k))
                .map(|id| id.to_string())
        })
        .flatten();
    commit(
        &state,
        Batch::new(),
        vec![audit(
            &state,
            &key,
            "contact.listed",
            serde_json::json!({"count": out.len()}),
        )],
    )
    .await?;
    Ok(ApiJson(ContactPage {
        contacts: out,
        next,
    }))
}

/// One contact.
#[utoipa::path(get, path = "/v1/contacts/{contact_id}", tag = "contacts", security(("api_key" = [])),
    params(("contact_id" = String, Path)),
    responses((status = 200, body = ContactOut), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_contact(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<ApiJson<ContactOut>> {
    key.require(Scope::Read)?;
    let id = parse_contact(&raw)?;
    let vault = &state.service.vault;
    let contacts = Contacts::of(vault, key.tenant)?;
    let loaded = contacts
        .load(&id)?
        .ok_or_else(|| AppError::not_found("contact"))?;
    let subject = contact_pseudonym(contacts.tenant_keys(), &id);
    commit(
        &state,
        Batch::new(),
        vec![audit(&state, &key, "contact.read", serde_json::Value::Null).subject(subject)],
    )
    .await?;
    Ok(ApiJson(loaded.contact.into()))
}

/// Hand a contact back to the automations after a human took over: a
/// plugin's `hand-off` action stops every plugin reply to the contact until
/// this is called.
#[utoipa::path(post, path = "/v1/contacts/{contact_id}/hand-back", tag = "contacts", security(("api_key" = [])),
    params(("contact_id" = String, Path)),
    responses((status = 200, body = ContactOut), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn hand_back_contact(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<ApiJson<ContactOut>> {
    key.require(Scope::Admin)?;
    let id = parse_contact(&raw)?;
    let contacts = Contacts::of(&state.service.vault, key.tenant)?;
    let mut attempts = Attempts::new();
    loop {
        let mut loaded = contacts
            .load(&id)?
            .ok_or_else(|| AppError::not_found("contact"))?;
        if !loaded.contact.handed_off {
            return Ok(ApiJson(loaded.contact.into()));
        }
        loaded.contact.handed_off = false;
        let mut batch = Batch::new();
        contacts.stage(&mut batch, &loaded);
        let subject = contact_pseudonym(contacts.tenant_keys(), &id);
        let committed = commit(
            &state,
            batch,
            vec![
                audit(&state, &key, "contact.handed-back", serde_json::Value::Null)
                    .subject(subject),
            ],
        )
        .await;
        if !attempts.again(&committed) {
            committed?;
            return Ok(ApiJson(loaded.contact.into()));
        }
    }
}

/// Find a contact by phone number or BSUID. A POST, so identifiers stay out
/// of URLs and access logs.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
}

/// Find a contact.
#[utoipa::path(post, path = "/v1/contacts/lookup", tag = "contacts", security(("api_key" = [])),
    request_body = Lookup,
    responses((status = 200, body = ContactOut), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn lookup_contact(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiJson(lookup): ApiJson<Lookup>,
) -> ApiResult<ApiJson<ContactOut>> {
    key.require(Scope::Read)?;
    if lookup.wa_id.is_none() && lookup.user_id.is_none() {
        return Err(AppError::bad_request("give `wa_id` or `user_id`"));
    }
    let contacts = Contacts::of(&state.service.vault, key.tenant)?;
    let loaded = contacts
        .find_and_load(lookup.wa_id.as_deref(), lookup.user_id.as_deref())?
        .ok_or_else(|| AppError::not_found("contact"))?;
    let subject = contact_pseudonym(contacts.tenant_keys(), &loaded.contact.id);
    commit(
        &state,
        Batch::new(),
        vec![audit(&state, &key, "contact.read", serde_json::Value::Null).subject(subject)],
    )
    .await?;
    Ok(ApiJson(loaded.contact.into()))
}

// ---------------------------------------------------------------- consent

/// Record a consent decision.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentChange {
    /// A purpose (fideslang data use); absent means messages as a whole
    /// (the same as STOP / START).
    #[schema(value_type = Option<String>)]
    pub purpose: Option<Purpose>,
    #[schema(value_type = String)]
    pub decision: Decision,
    /// Evidence (a form submission id, a signed document reference); kept
    /// only as a keyed hash.
    pub evidence: Option<String>,
}

/// Record consent given or withdrawn.
#[utoipa::path(post, path = "/v1/contacts/{contact_id}/consent", tag = "consent", security(("api_key" = [])),
    params(("contact_id" = String, Path)), request_body = ConsentChange,
    responses((status = 201, body = ContactOut), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn record_consent(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(change): ApiJson<ConsentChange>,
) -> ApiResult<(StatusCode, ApiJson<ContactOut>)> {
    if !key.key.allows(Scope::Dsr) {
        key.require(Scope::Admin)?;
    }
    let id = parse_contact(&raw)?;
    let vault = &state.service.vault;
    let contacts = Contacts::of(vault, key.tenant)?;
    let ledger = ConsentLedger::of(vault, key.tenant)?;
    let subject = match &change.purpose {
        Some(purpose) => Subject::Purpose(purpose.clone()),
        None => Subject::Messaging,
    };
    let action = match change.decision {
        Decision::Granted => "consent.granted",
        Decision::Withdrawn => "consent.withdrawn",
    };
    let pseudonym = contact_pseudonym(contacts.tenant_keys(), &id);
    let mut attempts = Attempts::new();
    loop {
        let mut loaded = contacts
            .load(&id)?
            .ok_or_else(|| AppError::not_found("contact"))?;
        let now = state.service.clock.now();
        let record = ConsentRecord {
            contact: id,
            subject: subject.clone(),
            decision: change.decision,
            source: Source::Api,
            evidence: change
                .evidence
                .as_deref()
                .map(|e| ledger.evidence("api-request", e)),
            at: now,
        };
        let mut batch = Batch::new();
        ledger.stage_append(&mut batch, &record)?;
        let mut history = ledger.history(&id)?;
        history.push(record);
        let derived = crate::data::consent::derive(&history);
        loaded.contact.opted_out = derived.opted_out;
        loaded.contact.consents = derived.consents.into_iter().collect();
        contacts.stage(&mut batch, &loaded);
        let committed = commit(
            &state,
            batch,
            vec![
                audit(
                    &state,
                    &key,
                    action,
                    serde_json::json!({"subject": subject, "source": "api"}),
                )
                .subject(pseudonym.clone()),
            ],
        )
        .await;
        if !attempts.again(&committed) {
            committed?;
            return Ok((StatusCode::CREATED, ApiJson(loaded.contact.into())));
        }
    }
}

/// The contact's consent ledger.
#[utoipa::path(get, path = "/v1/contacts/{contact_id}/consent", tag = "consent", security(("api_key" = [])),
    params(("contact_id" = String, Path)),
    responses((status = 200, body = Vec<Object>), (status = 404, body = super::error::ErrorBody)))]
pub async fn consent_history(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<ApiJson<Vec<ConsentRecord>>> {
    key.require(Scope::Read)?;
    let id = parse_contact(&raw)?;
    let vault = &state.service.vault;
    let ledger = ConsentLedger::of(vault, key.tenant)?;
    let history = ledger.history(&id)?;
    if history.is_empty() && Contacts::of(vault, key.tenant)?.load(&id)?.is_none() {
        return Err(AppError::not_found("contact"));
    }
    Ok(ApiJson(history))
}

// --------------------------------------------------------------- API keys

/// A new API key.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    pub name: String,
    pub scopes: BTreeSet<Scope>,
}

/// A created key: the token is shown once.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    pub key: ApiKey,
    /// The bearer token; store it now, it is not shown again.
    pub token: String,
}

/// Create an API key.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", security(("api_key" = [])),
    request_body = NewApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 400, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody)))]
pub async fn create_api_key(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<NewApiKey>,
) -> ApiResult<(StatusCode, ApiJson<CreatedApiKey>)> {
    key.require(Scope::Admin)?;
    if request.scopes.is_empty() || request.name.trim().is_empty() || request.name.len() > 100 {
        return Err(AppError::bad_request(
            "a key needs a name (1 to 100 characters) and at least one scope",
        ));
    }
    let vault = &state.service.vault;
    let keys = vault.keys.tenant(&key.tenant).map_err(AppError::internal)?;
    let created = api_keys::create(
        &keys,
        request.name.trim(),
        request.scopes,
        state.service.clock.now(),
    );
    let mut batch = Batch::new();
    api_keys::stage(vault, &mut batch, &key.tenant, &created.record)?;
    commit(
        &state,
        batch,
        vec![audit(
            &state,
            &key,
            "api-key.created",
            serde_json::json!({"key": created.record.id, "scopes": created.record.scopes}),
        )],
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedApiKey {
            key: created.record.public(),
            token: created.token,
        }),
    ))
}

/// List API keys (without secrets).
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", security(("api_key" = [])),
    responses((status = 200, body = Vec<ApiKey>)))]
pub async fn list_api_keys(
    key: TenantKey,
    State(state): State<ApiState>,
) -> ApiResult<ApiJson<Vec<ApiKey>>> {
    key.require(Scope::Admin)?;
    Ok(ApiJson(
        api_keys::list(&state.service.vault, &key.tenant)?
            .iter()
            .map(ApiKey::public)
            .collect(),
    ))
}

/// Revoke an API key.
#[utoipa::path(delete, path = "/v1/api-keys/{key_id}", tag = "api-keys", security(("api_key" = [])),
    params(("key_id" = String, Path)),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)))]
pub async fn revoke_api_key(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<StatusCode> {
    key.require(Scope::Admin)?;
    let id: ApiKeyId = raw.parse().map_err(|_| AppError::not_found("API key"))?;
    if !api_keys::list(&state.service.vault, &key.tenant)?
        .iter()
        .any(|k| k.id == id)
    {
        return Err(AppError::not_found("API key"));
    }
    let mut batch = Batch::new();
    api_keys::stage_revocation(&mut batch, &key.tenant, &id);
    commit(
        &state,
        batch,
        vec![audit(
            &state,
            &key,
            "api-key.revoked",
            serde_json::json!({"key": id}),
        )],
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ audit

/// Read the audit trail.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("api_key" = [])),
    params(AuditFilter),
    responses((status = 200, body = Vec<AuditEntry>)))]
pub async fn query_audit(
    key: TenantKey,
    State(state): State<ApiState>,
    ApiQuery(filter): ApiQuery<AuditFilter>,
) -> ApiResult<ApiJson<Vec<AuditEntry>>> {
    key.require(Scope::Read)?;
    Ok(ApiJson(audit::query(
        &state.service.vault,
        &key.tenant,
        &filter,
    )?))
}

/// Check the audit trail's hash chain.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", security(("api_key" = [])),
    responses((status = 200, body = Verification)))]
pub async fn verify_audit(
    key: TenantKey,
    State(state): State<ApiState>,
) -> ApiResult<ApiJson<Verification>> {
    key.require(Scope::Read)?;
    Ok(ApiJson(audit::verify(&state.service.vault, &key.tenant)?))
}
