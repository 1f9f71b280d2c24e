//! A tenant's flow: enabling a plugin with grants and configuration,
//! changing, reordering and removing installations.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::ServiceInner;
use super::caller::TenantCaller;
use super::change::Change;
use super::context::ContextError;
use super::error::{ServiceError, ServiceResult};
use super::plugins;
use crate::ids::InstallationId;
use crate::plugin::{Capability, DataField, LabelRule};
use crate::registry::PluginRecord;
use crate::store::Batch;
use crate::tenancy::api_keys::Scope;
use crate::tenancy::installations::{Installation, InstallationError, Trigger};

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
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
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

/// An installation as the tenant sees it: the stored installation and, from
/// its plugin's admitted manifest, the labels the plugin may write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InstallationView {
    #[serde(flatten)]
    pub installation: Installation,
    /// The labels the plugin may add or remove (exact names, or a prefix
    /// and a bounded suffix): every other label it writes is dropped.
    pub labels: Vec<LabelRule>,
}

impl std::ops::Deref for InstallationView {
    type Target = Installation;
    fn deref(&self) -> &Installation {
        &self.installation
    }
}

/// The view of an installation, with its plugin's registry record.
fn view(
    service: &ServiceInner,
    installation: Installation,
    record: Option<&PluginRecord>,
) -> ServiceResult<InstallationView> {
    let labels = match record {
        Some(record) => record.manifest.labels.clone(),
        None => service
            .registry
            .record(&installation.plugin)?
            .map(|record| record.manifest.labels)
            .unwrap_or_default(),
    };
    Ok(InstallationView {
        installation,
        labels,
    })
}

fn views(
    service: &ServiceInner,
    installations: Vec<Installation>,
) -> ServiceResult<Vec<InstallationView>> {
    installations
        .into_iter()
        .map(|installation| view(service, installation, None))
        .collect()
}

/// An installation id as given in a path or a form: anything that does not
/// parse names no installation.
fn parse_id(raw: &str) -> ServiceResult<InstallationId> {
    raw.parse()
        .map_err(|_| ServiceError::NotFound("installation"))
}

fn details(installation: &Installation) -> serde_json::Value {
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

/// Stage an installation checked against its plugin's manifest, with its
/// audit entry, as a change of the tenant's flow.
fn staged(
    service: &ServiceInner,
    caller: &TenantCaller,
    installation: Installation,
    record: &PluginRecord,
    action: &str,
) -> ServiceResult<Change<Installation>> {
    installation
        .validate(&record.manifest)
        .map_err(|error| match &error {
            InstallationError::UnknownConfigKey(key)
            | InstallationError::MissingConfig(key)
            | InstallationError::ConfigTooLarge(key) => ServiceError::InvalidConfig {
                key: Some(key.clone()),
                message: error.to_string(),
            },
            _ => ServiceError::Invalid(error.to_string()),
        })?;
    let mut batch = Batch::new();
    installation.stage(&service.vault, &caller.tenant, &mut batch)?;
    let audit = caller.audit(service.clock.now(), action, details(&installation));
    Ok(Change::new(batch, vec![audit], installation).reconfiguring(caller.tenant))
}

/// Try a configuration on the plugin before it is stored: the plugin is run
/// once on an event that shows it nothing personal (no text, no name, no
/// number), with this configuration. Plugins read their configuration
/// first (as the SDK's guide asks), so one whose values are wrong answers
/// `invalid-config` with its own message — refused here, where the tenant
/// can correct it, instead of failing on every message later. Any other
/// outcome of the trial (actions, a failure unrelated to configuration) is
/// not the configuration's fault and passes.
async fn try_config(
    service: &ServiceInner,
    record: &PluginRecord,
    config: &BTreeMap<String, String>,
) -> ServiceResult<()> {
    use crate::runtime::bindings::types as wit;
    use crate::runtime::{Call, CallError};

    let manifest = &record.manifest;
    let pairs: Vec<(String, String)> = config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let resolved = match crate::view::resolve_config(manifest, &pairs) {
        Ok(resolved) => resolved,
        // Reported by `Installation::validate`, with the key named.
        Err(_) => return Ok(()),
    };
    let Some(plugin) = service
        .registry
        .loaded(&record.hash)
        .map_err(|e| ServiceError::InvalidPlugin(e.to_string()))?
    else {
        return Err(ServiceError::NotFound("plugin"));
    };
    let now = service.clock.now();
    let event = wit::Event {
        trigger: wit::Trigger::MessageReceived,
        contact: wit::ContactView {
            pseudonym: "ps_configuration-check".into(),
            name: None,
            phone_number: None,
            user_id: None,
            labels: None,
            lead_score: None,
        },
        message: Some(wit::MessageView {
            kind: wit::MessageKind::Text,
            text: None,
            received_at: now,
            service_window_open: true,
        }),
        status: None,
        config: resolved,
        now,
        timezone: "UTC".into(),
        utc_offset_minutes: 0,
    };
    let runtime = service.runtime.clone();
    let outcome =
        tokio::task::spawn_blocking(move || runtime.invoke(&plugin, Call::new(event))).await?;
    match outcome {
        Err(failure) => match failure.error {
            CallError::InvalidConfig { message } => Err(ServiceError::InvalidConfig {
                // The plugin's message names the key when it can (the
                // SDK's guide: "`rules` rule 3: …").
                key: manifest
                    .config
                    .iter()
                    .find(|k| message.contains(&format!("`{}`", k.name)))
                    .map(|k| k.name.clone()),
                message: format!("{} refused this configuration: {message}", manifest.id),
            }),
            _ => Ok(()),
        },
        Ok(_) => Ok(()),
    }
}

/// The tenant's installations, in flow order.
pub fn list(service: &ServiceInner, caller: &TenantCaller) -> ServiceResult<Vec<InstallationView>> {
    caller.require(Scope::Read)?;
    views(service, Installation::list(&service.vault, &caller.tenant)?)
}

/// One installation.
pub fn get(
    service: &ServiceInner,
    caller: &TenantCaller,
    raw_id: &str,
) -> ServiceResult<InstallationView> {
    caller.require(Scope::Read)?;
    let id = parse_id(raw_id)?;
    let installation = Installation::load(&service.vault, &caller.tenant, &id)?
        .ok_or(ServiceError::NotFound("installation"))?;
    view(service, installation, None)
}

/// Enable a plugin with grants and configuration. A tenant has at most
/// `tenant_limits.max_installations` installations: each one multiplies the
/// fuel and time its events may take on the shared workers.
pub async fn create(
    service: &ServiceInner,
    caller: &TenantCaller,
    request: NewInstallation,
) -> ServiceResult<InstallationView> {
    caller.require(Scope::Admin)?;
    let record = plugins::resolve(service, &request.plugin)?;
    try_config(service, &record, &request.config).await?;
    let installation = service
        .apply(|| {
            let existing = Installation::list(&service.vault, &caller.tenant)?;
            let limit = service.config.tenant_limits.max_installations;
            if existing.len() >= limit {
                return Err(ServiceError::QuotaExceeded(format!(
                    "a tenant may have at most {limit} installations; remove one before \
                     enabling another"
                )));
            }
            let now = service.clock.now();
            let installation = Installation {
                id: InstallationId::generate(),
                plugin: record.hash,
                plugin_id: record.manifest.id.clone(),
                plugin_version: record.manifest.version.clone(),
                grants: request.grants.clone(),
                capabilities: request
                    .capabilities
                    .clone()
                    .unwrap_or_else(|| record.manifest.capabilities.iter().copied().collect()),
                config: request.config.clone(),
                triggers: request
                    .triggers
                    .clone()
                    .unwrap_or_else(|| BTreeSet::from([Trigger::MessageReceived])),
                position: request
                    .position
                    .unwrap_or_else(|| existing.iter().map(|i| i.position + 1).max().unwrap_or(0)),
                enabled: request.enabled.unwrap_or(true),
                created_at: now,
                updated_at: now,
            };
            staged(
                service,
                caller,
                installation,
                &record,
                "installation.created",
            )
        })
        .await?;
    view(service, installation, Some(&record))
}

/// Change grants, configuration, triggers, position or enabled state.
pub async fn update(
    service: &ServiceInner,
    caller: &TenantCaller,
    raw_id: &str,
    update: InstallationUpdate,
) -> ServiceResult<InstallationView> {
    caller.require(Scope::Admin)?;
    let id = &parse_id(raw_id)?;
    if let Some(config) = &update.config {
        let installation = Installation::load(&service.vault, &caller.tenant, id)?
            .ok_or(ServiceError::NotFound("installation"))?;
        if let Some(record) = service.registry.record(&installation.plugin)? {
            try_config(service, &record, config).await?;
        }
    }
    let installation = service
        .apply(|| {
            let mut installation = Installation::load(&service.vault, &caller.tenant, id)?
                .ok_or(ServiceError::NotFound("installation"))?;
            let record = service
                .registry
                .record(&installation.plugin)?
                .ok_or_else(|| ContextError::MissingPlugin {
                    installation: installation.id.to_string(),
                    plugin: installation.plugin.to_string(),
                })?;
            let update = &update;
            if let Some(grants) = &update.grants {
                installation.grants = grants.clone();
            }
            if let Some(capabilities) = &update.capabilities {
                installation.capabilities = capabilities.clone();
            }
            if let Some(config) = &update.config {
                installation.config = config.clone();
            }
            if let Some(triggers) = &update.triggers {
                installation.triggers = triggers.clone();
            }
            if let Some(position) = update.position {
                installation.position = position;
            }
            if let Some(enabled) = update.enabled {
                installation.enabled = enabled;
            }
            installation.updated_at = service.clock.now();
            staged(
                service,
                caller,
                installation,
                &record,
                "installation.updated",
            )
        })
        .await?;
    view(service, installation, None)
}

/// Remove an installation. Its plugin state stays with the contacts until
/// they are erased or their data expires.
pub async fn delete(
    service: &ServiceInner,
    caller: &TenantCaller,
    raw_id: &str,
) -> ServiceResult<()> {
    caller.require(Scope::Admin)?;
    let id = &parse_id(raw_id)?;
    service
        .apply(|| {
            let installation = Installation::load(&service.vault, &caller.tenant, id)?
                .ok_or(ServiceError::NotFound("installation"))?;
            let mut batch = Batch::new();
            installation.stage_removal(&caller.tenant, &mut batch);
            let audit = caller.audit(
                service.clock.now(),
                "installation.deleted",
                serde_json::json!({"installation": id}),
            );
            Ok(Change::new(batch, vec![audit], ()).reconfiguring(caller.tenant))
        })
        .await
}

/// Set the order of the whole flow.
pub async fn reorder(
    service: &ServiceInner,
    caller: &TenantCaller,
    order: FlowOrder,
) -> ServiceResult<Vec<InstallationView>> {
    caller.require(Scope::Admin)?;
    let installations = service
        .apply(|| {
            let vault = &service.vault;
            let mut installations = Installation::list(vault, &caller.tenant)?;
            let given: BTreeSet<InstallationId> = order.order.iter().copied().collect();
            let existing: BTreeSet<InstallationId> = installations.iter().map(|i| i.id).collect();
            if given != existing || given.len() != order.order.len() {
                return Err(ServiceError::Invalid(
                    "`order` must list every installation exactly once".into(),
                ));
            }
            let mut batch = Batch::new();
            for installation in &mut installations {
                installation.position = order
                    .order
                    .iter()
                    .position(|id| id == &installation.id)
                    .expect("listed") as u32;
                installation.stage(vault, &caller.tenant, &mut batch)?;
            }
            installations.sort_by_key(|i| i.position);
            let audit = caller.audit(
                service.clock.now(),
                "installation.reordered",
                serde_json::json!({"order": order.order}),
            );
            Ok(Change::new(batch, vec![audit], installations).reconfiguring(caller.tenant))
        })
        .await?;
    views(service, installations)
}
