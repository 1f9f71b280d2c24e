//! The playground: an admitted plugin tried on a pasted event, with the
//! grants and consent the tenant chooses, in the service's own sandbox
//! and limits — the same trace as `flowgate plugin run --trace` (see
//! [`crate::trial`]), for tenants deciding what to grant and for flow
//! authors. Nothing is stored: the sample contact is not a contact, its
//! plugin state lives for the one run, and the audit trail records only
//! that the plugin was tried (`playground.run`), never the event.

use std::collections::{BTreeMap, BTreeSet};

use super::ServiceInner;
use super::caller::TenantCaller;
use super::error::{ServiceError, ServiceResult};
use super::plugins;
use crate::plugin::{DataField, Purpose};
use crate::registry::PluginRecord;
use crate::tenancy::api_keys::Scope;
use crate::trial::{self, EventReport, StateByContact, TrialSettings};
use crate::view::{self, ProcessingState};

/// Events one run takes at most (a webhook body may carry many).
pub const MAX_EVENTS: usize = 20;

/// The sample contact's consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleConsent {
    /// Consented to every purpose of the plugin.
    All,
    /// Gave no consent.
    None,
    /// Consented to these purposes only.
    Only(Vec<Purpose>),
}

/// A playground run.
#[derive(Debug, Clone)]
pub struct Trial {
    /// The plugin: a content hash, `id@version`, or an id.
    pub plugin: String,
    /// A WhatsApp webhook body or a simple event (JSON).
    pub event: String,
    pub grants: BTreeSet<DataField>,
    pub consent: SampleConsent,
    pub restricted: bool,
    pub objections: Vec<Purpose>,
    pub config: BTreeMap<String, String>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct TrialOutcome {
    pub plugin: PluginRecord,
    pub reports: Vec<EventReport>,
}

/// Try an admitted plugin on a sample event.
pub async fn run(
    service: &ServiceInner,
    caller: &TenantCaller,
    trial: Trial,
) -> ServiceResult<TrialOutcome> {
    caller.require(Scope::Read)?;
    let record = plugins::resolve(service, &trial.plugin)?;
    let manifest = &record.manifest;
    // A grant of a field the plugin does not ask for is not refused: the
    // trace shows it as not declared, which is the lesson.
    let pairs: Vec<(String, String)> = trial.config.into_iter().collect();
    let config =
        view::resolve_config(manifest, &pairs).map_err(|missing| ServiceError::InvalidConfig {
            key: Some(missing.0.clone()),
            message: missing.to_string(),
        })?;
    let now = service.clock.now();
    let specs = trial::parse(trial.event.as_bytes(), None, now)
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    if specs.len() > MAX_EVENTS {
        return Err(ServiceError::Invalid(format!(
            "the body holds {} events; the playground runs at most {MAX_EVENTS}",
            specs.len()
        )));
    }
    let mut processing = match trial.consent {
        SampleConsent::All => ProcessingState::consenting_to(manifest),
        SampleConsent::None => ProcessingState::default(),
        SampleConsent::Only(purposes) => ProcessingState {
            consents: purposes,
            ..ProcessingState::default()
        },
    };
    processing.restricted = trial.restricted;
    processing.objections = trial.objections;
    let settings = TrialSettings {
        grants: trial.grants,
        processing,
        config,
        trace: true,
        // Sample contacts get pseudonyms of their own, per tenant: never
        // those of real contacts.
        pseudonym_key: blake3::derive_key(
            "flowgate 2026 playground pseudonyms",
            caller.tenant.as_bytes(),
        ),
    };
    let plugin = service
        .registry
        .loaded(&record.hash)
        .map_err(|e| ServiceError::InvalidPlugin(e.to_string()))?
        .ok_or(ServiceError::NotFound("plugin"))?;
    let runtime = service.runtime.clone();
    let count = specs.len();
    let reports = tokio::task::spawn_blocking(move || {
        let mut states = StateByContact::new();
        trial::run(&runtime, &plugin, specs, &settings, &mut states)
    })
    .await?;
    let audit = caller.audit(
        now,
        "playground.run",
        serde_json::json!({
            "plugin": manifest.id,
            "version": manifest.version,
            "events": count,
        }),
    );
    service.record(vec![audit]).await?;
    Ok(TrialOutcome {
        plugin: record,
        reports,
    })
}
