//! Plugins: the registry as a tenant chooses from it, the flow (enabled
//! installations in order), and the form that enables or changes an
//! installation — a grant checklist saying in plain words what the plugin
//! will see and why consent matters for its purposes, and a configuration
//! form made from the manifest's config keys.

use std::collections::{BTreeMap, BTreeSet};

use askama::Template;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::web::{Chrome, FormData, Posted, Section, Signed, render};
use super::words;
use crate::plugin::{Capability, DataField};
use crate::registry::PluginRecord;
use crate::service::error::ServiceError;
use crate::service::installations::{self, FlowOrder, InstallationUpdate, NewInstallation};
use crate::service::plugins;
use crate::tenancy::installations::Installation;

pub struct PurposeView {
    pub id: String,
    pub words: String,
    pub needs_consent: bool,
}

pub struct FieldView {
    pub id: &'static str,
    pub name: &'static str,
    pub what: &'static str,
}

pub struct CapabilityView {
    pub id: &'static str,
    pub words: &'static str,
}

pub struct ConfigView {
    pub name: String,
    pub description: String,
    pub required: bool,
    pub default: Option<String>,
}

/// A registry entry as the tenant reads it.
pub struct PluginCard {
    pub hash: String,
    pub id: String,
    pub version: String,
    pub summary: String,
    pub purposes: Vec<PurposeView>,
    pub fields: Vec<FieldView>,
    pub capabilities: Vec<CapabilityView>,
    /// The labels it may add or remove (exact names, or patterns shown as
    /// regular expressions); the host refuses any other.
    pub labels: Vec<String>,
    pub config: Vec<ConfigView>,
    /// Installations of this plugin in the tenant's flow.
    pub installed: usize,
}

impl PluginCard {
    fn new(record: &PluginRecord, installed: usize) -> PluginCard {
        let m = &record.manifest;
        PluginCard {
            hash: record.hash.to_string(),
            id: m.id.clone(),
            version: m.version.clone(),
            summary: m.summary.clone(),
            purposes: m
                .purposes
                .iter()
                .map(|p| PurposeView {
                    id: p.to_string(),
                    words: words::purpose(p),
                    needs_consent: p.requires_consent(),
                })
                .collect(),
            fields: m
                .fields
                .iter()
                .map(|f| {
                    let (name, what) = words::field(*f);
                    FieldView {
                        id: f.as_str(),
                        name,
                        what,
                    }
                })
                .collect(),
            capabilities: m
                .capabilities
                .iter()
                .map(|c| CapabilityView {
                    id: c.as_str(),
                    words: words::capability(*c),
                })
                .collect(),
            labels: m.labels.iter().map(ToString::to_string).collect(),
            config: m
                .config
                .iter()
                .map(|k| ConfigView {
                    name: k.name.clone(),
                    description: k.description.clone(),
                    required: k.required && k.default_value.is_none(),
                    default: k.default_value.clone(),
                })
                .collect(),
            installed,
        }
    }

    /// Why consent matters for this plugin, in plain words.
    fn consent_note(&self) -> String {
        let needing: Vec<&str> = self
            .purposes
            .iter()
            .filter(|p| p.needs_consent)
            .map(|p| p.id.as_str())
            .collect();
        if needing.is_empty() {
            format!(
                "{} works for purposes that do not rest on consent: it runs for every \
                 contact, except those who restricted processing or objected to one of \
                 its purposes.",
                self.id
            )
        } else {
            format!(
                "{} works for {}, which rests on the contact's consent: it sees the fields \
                 above only for contacts who consented. For a contact who did not, every \
                 one of them is withheld. Record consent on a contact's page (or with a \
                 data-subject request).",
                self.id,
                needing.join(" and ")
            )
        }
    }
}

/// One installation in the flow.
pub struct FlowRow {
    pub id: String,
    pub plugin: String,
    pub version: String,
    pub enabled: bool,
    pub grants: Vec<String>,
    pub config_keys: Vec<String>,
    pub first: bool,
    pub last: bool,
}

#[derive(Template)]
#[template(path = "plugins.html")]
struct PluginsPage {
    chrome: Chrome,
    flow: Vec<FlowRow>,
    available: Vec<PluginCard>,
}

/// The flow and the registry.
pub async fn index(signed: Signed) -> Response {
    let service = signed.service();
    let (flow, records) = match installations::list(service, &signed.caller)
        .and_then(|flow| Ok((flow, plugins::available(service, &signed.caller)?)))
    {
        Ok(found) => found,
        Err(error) => return signed.failure(error),
    };
    let count = flow.len();
    let rows = flow
        .iter()
        .enumerate()
        .map(|(index, i)| FlowRow {
            id: i.id.to_string(),
            plugin: i.plugin_id.clone(),
            version: i.plugin_version.clone(),
            enabled: i.enabled,
            grants: i
                .grants
                .iter()
                .map(|g| words::field(*g).0.to_owned())
                .collect(),
            config_keys: i.config.keys().cloned().collect(),
            first: index == 0,
            last: index + 1 == count,
        })
        .collect();
    let available = records
        .iter()
        .map(|r| PluginCard::new(r, flow.iter().filter(|i| i.plugin == r.hash).count()))
        .collect();
    render(
        StatusCode::OK,
        &PluginsPage {
            chrome: signed.chrome(Some(Section::Plugins), "Plugins"),
            flow: rows,
            available,
        },
    )
}

pub struct GrantRow {
    pub id: &'static str,
    pub name: &'static str,
    pub what: &'static str,
    pub checked: bool,
}

pub struct CapabilityRow {
    pub id: &'static str,
    pub words: &'static str,
    pub checked: bool,
}

pub struct ConfigRow {
    pub name: String,
    pub description: String,
    pub required: bool,
    pub default: Option<String>,
    pub value: String,
    pub multiline: bool,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "installation_form.html")]
struct InstallationForm {
    chrome: Chrome,
    heading: String,
    action: String,
    submit: &'static str,
    plugin: PluginCard,
    consent_note: String,
    grants: Vec<GrantRow>,
    capabilities: Vec<CapabilityRow>,
    config: Vec<ConfigRow>,
    error: Option<String>,
}

/// What the form shows: the plugin's fields and capabilities, ticked as
/// `grants` and `capabilities` say, and its config keys with `values`.
fn form_page(
    signed: &Signed,
    record: &PluginRecord,
    editing: Option<&str>,
    grants: &BTreeSet<DataField>,
    capabilities: &BTreeSet<Capability>,
    values: &BTreeMap<String, String>,
    error: Option<ServiceError>,
) -> Response {
    let card = PluginCard::new(record, 0);
    let (mut general, mut by_key) = (None, None);
    let status = match &error {
        None => StatusCode::OK,
        Some(ServiceError::InvalidConfig {
            key: Some(key),
            message,
        }) => {
            by_key = Some((key.clone(), message.clone()));
            StatusCode::BAD_REQUEST
        }
        Some(error) => {
            let (status, message) = super::web::describe(error);
            general = Some(message);
            status
        }
    };
    let manifest = &record.manifest;
    let page = InstallationForm {
        chrome: signed.chrome(
            Some(Section::Plugins),
            format!("{} {}", manifest.id, manifest.version),
        ),
        heading: match editing {
            Some(_) => format!("Change {} {}", manifest.id, manifest.version),
            None => format!("Enable {} {}", manifest.id, manifest.version),
        },
        action: match editing {
            Some(id) => format!("/console/installations/{id}"),
            None => "/console/installations".into(),
        },
        submit: if editing.is_some() {
            "Save changes"
        } else {
            "Enable plugin"
        },
        consent_note: card.consent_note(),
        grants: manifest
            .fields
            .iter()
            .map(|f| {
                let (name, what) = words::field(*f);
                GrantRow {
                    id: f.as_str(),
                    name,
                    what,
                    checked: grants.contains(f),
                }
            })
            .collect(),
        capabilities: manifest
            .capabilities
            .iter()
            .map(|c| CapabilityRow {
                id: c.as_str(),
                words: words::capability(*c),
                checked: capabilities.contains(c),
            })
            .collect(),
        config: manifest
            .config
            .iter()
            .map(|k| {
                let value = values.get(&k.name).cloned().unwrap_or_default();
                let long = |text: &str| {
                    text.len() > 60
                        || text.contains('\n')
                        || text.trim_start().starts_with(['[', '{'])
                };
                ConfigRow {
                    multiline: long(&value)
                        || k.default_value.as_deref().is_some_and(long)
                        || k.description.contains("JSON"),
                    name: k.name.clone(),
                    description: k.description.clone(),
                    required: k.required && k.default_value.is_none(),
                    default: k.default_value.clone(),
                    error: by_key
                        .as_ref()
                        .filter(|(key, _)| key == &k.name)
                        .map(|(_, message)| message.clone()),
                    value,
                }
            })
            .collect(),
        plugin: card,
        error: general,
    };
    render(status, &page)
}

#[derive(Deserialize)]
pub struct Choose {
    plugin: String,
}

fn find_record(signed: &Signed, hash: &str) -> Result<PluginRecord, ServiceError> {
    plugins::available(signed.service(), &signed.caller)?
        .into_iter()
        .find(|r| r.hash.to_string() == hash)
        .ok_or(ServiceError::NotFound("plugin"))
}

/// The form enabling a plugin: nothing granted, every capability ticked.
pub async fn enable_form(signed: Signed, Query(choose): Query<Choose>) -> Response {
    let record = match find_record(&signed, &choose.plugin) {
        Ok(record) => record,
        Err(error) => return signed.failure(error),
    };
    let capabilities = record.manifest.capabilities.iter().copied().collect();
    form_page(
        &signed,
        &record,
        None,
        &BTreeSet::new(),
        &capabilities,
        &BTreeMap::new(),
        None,
    )
}

/// Grants, capabilities and configuration as the form sent them; values
/// left blank are not set (the plugin's default applies).
fn read_form(
    form: &FormData,
    record: &PluginRecord,
) -> (
    BTreeSet<DataField>,
    BTreeSet<Capability>,
    BTreeMap<String, String>,
) {
    let grants = form
        .all("grant")
        .into_iter()
        .filter_map(DataField::from_identifier)
        .collect();
    let capabilities = form
        .all("capability")
        .into_iter()
        .filter_map(words::capability_named)
        .collect();
    let config = record
        .manifest
        .config
        .iter()
        .filter_map(|k| {
            let value = form.raw(&format!("config.{}", k.name));
            (!value.trim().is_empty()).then(|| (k.name.clone(), value.replace("\r\n", "\n")))
        })
        .collect();
    (grants, capabilities, config)
}

/// Whether a refusal belongs on the form (the tenant can correct it there).
fn belongs_on_form(error: &ServiceError) -> bool {
    matches!(
        error,
        ServiceError::InvalidConfig { .. } | ServiceError::Invalid(_)
    )
}

/// Enable a plugin.
pub async fn create(posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let hash = form.raw("plugin").to_owned();
    let record = match find_record(&signed, &hash) {
        Ok(record) => record,
        Err(error) => return signed.failure(error),
    };
    let (grants, capabilities, config) = read_form(&form, &record);
    let request = NewInstallation {
        plugin: hash,
        grants: grants.clone(),
        capabilities: Some(capabilities.clone()),
        config: config.clone(),
        triggers: None,
        position: None,
        enabled: None,
    };
    match installations::create(signed.service(), &signed.caller, request).await {
        Ok(installation) => signed.done(
            "/console/plugins",
            format!(
                "{} {} is enabled and runs last in your flow.",
                installation.plugin_id, installation.plugin_version
            ),
        ),
        Err(error) if belongs_on_form(&error) => form_page(
            &signed,
            &record,
            None,
            &grants,
            &capabilities,
            &config,
            Some(error),
        ),
        Err(error) => signed.failure(error),
    }
}

fn installation_and_record(
    signed: &Signed,
    id: &str,
) -> Result<(Installation, PluginRecord), ServiceError> {
    let installation = installations::get(signed.service(), &signed.caller, id)?.installation;
    let record = find_record(signed, &installation.plugin.to_string())?;
    Ok((installation, record))
}

/// The form changing an installation.
pub async fn edit_form(signed: Signed, Path(id): Path<String>) -> Response {
    match installation_and_record(&signed, &id) {
        Ok((installation, record)) => form_page(
            &signed,
            &record,
            Some(&id),
            &installation.grants,
            &installation.capabilities,
            &installation.config,
            None,
        ),
        Err(error) => signed.failure(error),
    }
}

/// Change grants, capabilities and configuration.
pub async fn update(Path(id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let (_, record) = match installation_and_record(&signed, &id) {
        Ok(found) => found,
        Err(error) => return signed.failure(error),
    };
    let (grants, capabilities, config) = read_form(&form, &record);
    let update = InstallationUpdate {
        grants: Some(grants.clone()),
        capabilities: Some(capabilities.clone()),
        config: Some(config.clone()),
        ..InstallationUpdate::default()
    };
    match installations::update(signed.service(), &signed.caller, &id, update).await {
        Ok(installation) => signed.done(
            "/console/plugins",
            format!("{} is saved.", installation.plugin_id),
        ),
        Err(error) if belongs_on_form(&error) => form_page(
            &signed,
            &record,
            Some(&id),
            &grants,
            &capabilities,
            &config,
            Some(error),
        ),
        Err(error) => signed.failure(error),
    }
}

/// Enable or disable an installation.
pub async fn set_enabled(Path(id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let enabled = form.get("enabled") == Some("true");
    let update = InstallationUpdate {
        enabled: Some(enabled),
        ..InstallationUpdate::default()
    };
    match installations::update(signed.service(), &signed.caller, &id, update).await {
        Ok(installation) => signed.done(
            "/console/plugins",
            if enabled {
                format!("{} runs again.", installation.plugin_id)
            } else {
                format!(
                    "{} is disabled: it no longer runs. Its settings are kept.",
                    installation.plugin_id
                )
            },
        ),
        Err(error) => signed.failure(error),
    }
}

/// Move an installation one place earlier or later in the flow.
pub async fn move_step(Path(id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let service = signed.service();
    let flow = match installations::list(service, &signed.caller) {
        Ok(flow) => flow,
        Err(error) => return signed.failure(error),
    };
    let mut order: Vec<_> = flow.iter().map(|i| i.id).collect();
    let Some(at) = order.iter().position(|i| i.to_string() == id) else {
        return signed.failure(ServiceError::NotFound("installation"));
    };
    let to = match form.get("direction") {
        Some("up") if at > 0 => at - 1,
        Some("down") if at + 1 < order.len() => at + 1,
        _ => return signed.done("/console/plugins", "The flow is unchanged."),
    };
    order.swap(at, to);
    match installations::reorder(service, &signed.caller, FlowOrder { order }).await {
        Ok(_) => signed.done("/console/plugins", "The flow's order is saved."),
        Err(error) => signed.failure(error),
    }
}
