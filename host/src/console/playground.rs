//! The playground: pick an admitted plugin, paste a WhatsApp webhook body
//! or a simple event, choose grants and consent, and see what the plugin
//! was shown (each field disclosed or withheld, and why), what it answered,
//! what the host refused, the fuel and the time — the same trace as
//! `flowgate plugin run --trace`.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::web::{Chrome, FormData, Posted, Section, Signed, render};
use super::words;
use crate::plugin::{DataField, Purpose};
use crate::registry::PluginRecord;
use crate::service::error::ServiceError;
use crate::service::playground::{self, SampleConsent, Trial};
use crate::service::plugins;
use crate::trial::EventReport;

/// The event the form starts with.
const SAMPLE_EVENT: &str = r#"{
  "text": "Hi! How much is the blue one, and is it in stock?",
  "name": "Ana Souza",
  "phone_number": "5511987654321",
  "labels": ["returning"]
}"#;

pub struct Choice {
    pub hash: String,
    pub label: String,
    pub selected: bool,
}

pub struct Tick {
    pub id: String,
    pub label: String,
    pub checked: bool,
}

pub struct ConfigRow {
    pub name: String,
    pub description: String,
    pub default: Option<String>,
    pub value: String,
}

pub struct TraceRow {
    pub field: String,
    pub name: String,
    pub disclosed: bool,
    pub detail: String,
}

pub struct EventView {
    pub index: usize,
    pub pseudonym: String,
    pub not_run: Option<String>,
    pub trace: Vec<TraceRow>,
    pub actions: Vec<String>,
    pub refused: Vec<(String, String)>,
    pub error: Option<String>,
    pub state: Vec<String>,
    pub logs: Vec<String>,
    pub fuel: String,
    pub millis: String,
}

fn event_view(report: &EventReport) -> EventView {
    EventView {
        index: report.event,
        pseudonym: report.pseudonym.clone(),
        not_run: report.not_processed.clone(),
        trace: report
            .trace
            .iter()
            .flatten()
            .map(|t| TraceRow {
                field: t.field.field.as_str().to_owned(),
                name: words::field(t.field.field).0.to_owned(),
                disclosed: t.field.disclosed,
                detail: match (&t.why, &t.value) {
                    (Some(why), _) => why.clone(),
                    (None, Some(value)) => value.clone(),
                    (None, None) => "(no value in this event)".into(),
                },
            })
            .collect(),
        actions: report.actions.iter().map(|a| a.to_string()).collect(),
        refused: report
            .refused
            .iter()
            .map(|(a, why)| (a.redacted().to_string(), why.to_string()))
            .collect(),
        error: report.error.as_ref().map(|e| e.to_string()),
        state: report
            .state_changes
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k} = {v}"),
                None => format!("{k} deleted"),
            })
            .collect(),
        logs: report
            .logs
            .iter()
            .map(|l| format!("[{}] {}", l.level, l.message))
            .collect(),
        fuel: words::count(report.fuel),
        millis: format!("{:.3}", report.elapsed_ms),
    }
}

#[derive(Template)]
#[template(path = "playground.html")]
struct PlaygroundPage {
    chrome: Chrome,
    plugins: Vec<Choice>,
    chosen: Option<String>,
    summary: String,
    event: String,
    grants: Vec<Tick>,
    consent: String,
    consents: Vec<Tick>,
    objections: Vec<Tick>,
    restricted: bool,
    config: Vec<ConfigRow>,
    results: Vec<EventView>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct Pick {
    plugin: Option<String>,
}

/// What the form holds.
struct Inputs {
    event: String,
    grants: Vec<String>,
    consent: String,
    consents: Vec<String>,
    objections: Vec<String>,
    restricted: bool,
    config: BTreeMap<String, String>,
}

fn page(
    signed: &Signed,
    status: StatusCode,
    registry: &[PluginRecord],
    chosen: Option<&PluginRecord>,
    inputs: &Inputs,
    results: Vec<EventView>,
    error: Option<String>,
) -> Response {
    let purposes: Vec<Purpose> = chosen
        .map(|r| r.manifest.purposes.clone())
        .unwrap_or_default();
    let tick = |ids: &[String], purpose: &Purpose| Tick {
        id: purpose.to_string(),
        label: format!("{purpose} — {}", words::purpose(purpose)),
        checked: ids.iter().any(|i| i == purpose.as_str()),
    };
    render(
        status,
        &PlaygroundPage {
            chrome: signed.chrome(Some(Section::Playground), "Playground"),
            plugins: registry
                .iter()
                .map(|r| Choice {
                    hash: r.hash.to_string(),
                    label: format!("{} {}", r.manifest.id, r.manifest.version),
                    selected: chosen.is_some_and(|c| c.hash == r.hash),
                })
                .collect(),
            chosen: chosen.map(|r| r.hash.to_string()),
            summary: chosen
                .map(|r| r.manifest.summary.clone())
                .unwrap_or_default(),
            event: inputs.event.clone(),
            grants: chosen
                .map(|r| {
                    r.manifest
                        .fields
                        .iter()
                        .map(|f| Tick {
                            id: f.as_str().to_owned(),
                            label: format!("{} ({})", words::field(*f).0, f.as_str()),
                            checked: inputs.grants.iter().any(|g| g == f.as_str()),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            consent: inputs.consent.clone(),
            consents: purposes.iter().map(|p| tick(&inputs.consents, p)).collect(),
            objections: purposes
                .iter()
                .map(|p| tick(&inputs.objections, p))
                .collect(),
            restricted: inputs.restricted,
            config: chosen
                .map(|r| {
                    r.manifest
                        .config
                        .iter()
                        .map(|k| ConfigRow {
                            name: k.name.clone(),
                            description: k.description.clone(),
                            default: k.default_value.clone(),
                            value: inputs.config.get(&k.name).cloned().unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            results,
            error,
        },
    )
}

/// The form, for the plugin picked (or the first).
pub async fn form(signed: Signed, Query(pick): Query<Pick>) -> Response {
    let registry = match plugins::available(signed.service(), &signed.caller) {
        Ok(registry) => registry,
        Err(error) => return signed.failure(error),
    };
    let chosen = pick
        .plugin
        .as_deref()
        .and_then(|hash| registry.iter().find(|r| r.hash.to_string() == hash))
        .or(registry.first());
    let inputs = Inputs {
        event: SAMPLE_EVENT.into(),
        // Start with everything the plugin asks for granted: the question
        // is usually what it does with it.
        grants: chosen
            .map(|r| {
                r.manifest
                    .fields
                    .iter()
                    .map(|f| f.as_str().to_owned())
                    .collect()
            })
            .unwrap_or_default(),
        consent: "all".into(),
        consents: Vec::new(),
        objections: Vec::new(),
        restricted: false,
        config: BTreeMap::new(),
    };
    page(
        &signed,
        StatusCode::OK,
        &registry,
        chosen,
        &inputs,
        Vec::new(),
        None,
    )
}

fn inputs(form: &FormData, chosen: Option<&PluginRecord>) -> Inputs {
    Inputs {
        event: form.raw("event").to_owned(),
        grants: form.all("grant").into_iter().map(str::to_owned).collect(),
        consent: form.get("consent").unwrap_or("all").to_owned(),
        consents: form
            .all("consents")
            .into_iter()
            .map(str::to_owned)
            .collect(),
        objections: form.all("object").into_iter().map(str::to_owned).collect(),
        restricted: form.flag("restricted"),
        config: chosen
            .map(|r| {
                r.manifest
                    .config
                    .iter()
                    .filter_map(|k| {
                        let value = form.raw(&format!("config.{}", k.name));
                        (!value.trim().is_empty())
                            .then(|| (k.name.clone(), value.replace("\r\n", "\n")))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Run the plugin on the event.
pub async fn run(posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let registry = match plugins::available(signed.service(), &signed.caller) {
        Ok(registry) => registry,
        Err(error) => return signed.failure(error),
    };
    let hash = form.get("plugin").unwrap_or_default();
    let Some(chosen) = registry.iter().find(|r| r.hash.to_string() == hash) else {
        return signed.failure(ServiceError::NotFound("plugin"));
    };
    let inputs = inputs(&form, Some(chosen));
    let purposes = |ids: &[String]| -> Vec<Purpose> {
        ids.iter().filter_map(|p| Purpose::parse(p).ok()).collect()
    };
    let trial = Trial {
        plugin: hash.to_owned(),
        event: inputs.event.clone(),
        grants: inputs
            .grants
            .iter()
            .filter_map(|g| DataField::from_identifier(g))
            .collect(),
        consent: match inputs.consent.as_str() {
            "none" => SampleConsent::None,
            "some" => SampleConsent::Only(purposes(&inputs.consents)),
            _ => SampleConsent::All,
        },
        restricted: inputs.restricted,
        objections: purposes(&inputs.objections),
        config: inputs.config.clone(),
    };
    match playground::run(signed.service(), &signed.caller, trial).await {
        Ok(outcome) => page(
            &signed,
            StatusCode::OK,
            &registry,
            Some(chosen),
            &inputs,
            outcome.reports.iter().map(event_view).collect(),
            None,
        ),
        Err(error @ (ServiceError::Invalid(_) | ServiceError::InvalidConfig { .. })) => {
            let message = super::web::describe(&error).1;
            page(
                &signed,
                StatusCode::BAD_REQUEST,
                &registry,
                Some(chosen),
                &inputs,
                Vec::new(),
                Some(message),
            )
        }
        Err(error) => signed.failure(error),
    }
}
