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
use crate::tenancy::installations::{Installation, Trigger};

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
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let mut batch = Batch::new();
    installation.stage(&service.vault, &caller.tenant, &mut batch)?;
    let audit = caller.audit(service.clock.now(), action, details(&installation));
    Ok(Change::new(batch, vec![audit], installation).reconfiguring(caller.tenant))
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

/// Enable a plugin with grants and configuration.
pub async fn create(
    service: &ServiceInner,
    caller: &TenantCaller,
    request: NewInstallation,
) -> ServiceResult<InstallationView> {
    caller.require(Scope::Admin)?;
    let record = plugins::resolve(service, &request.plugin)?;
    let installation = service
        .apply(|| {
            let existing = Installation::list(&service.vault, &caller.tenant)?;
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
