//! Trying a plugin on sample events, exactly as the service would run it:
//! the same minimised view, the same sandbox and limits — and a report of
//! what happened, field by field. `flowgate plugin run --trace` prints it;
//! the console's playground shows it.
//!
//! Events come as a WhatsApp webhook body (each message and status in it
//! is one event, run in order with the plugin's state carried between
//! them) or as a simple JSON event such as
//! `{"text": "how much?", "name": "Ana", "labels": ["vip"]}` ([`parse`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::channel::whatsapp::payload::{self, DeliveryItem, DeliveryState, MessageKind};
use crate::crypto::to_hex;
use crate::plugin::{Action, DataField, Refusal};
use crate::runtime::{Call, CallError, LoadedPlugin, LogLine, PluginState, Runtime};
use crate::view::{
    self, ContactData, Disclosure, EventContext, MessageFacts, ProcessingState, Withheld,
};

/// WhatsApp's customer service window.
pub const SERVICE_WINDOW_SECS: u64 = 24 * 60 * 60;

/// One event to run, before minimisation.
#[derive(Debug, Clone)]
pub struct EventSpec {
    pub contact: ContactData,
    pub message: Option<MessageFacts>,
    pub status: Option<(DeliveryState, u64)>,
    pub now: u64,
    pub timezone: String,
    pub utc_offset_minutes: i32,
}

/// Why sample events could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("the event is not valid JSON: {0}")]
    NotJson(serde_json::Error),
    #[error(
        "the event is neither a WhatsApp webhook body nor a simple event \
         ({{\"text\", \"name\", \"labels\", \"now\", …}}): {0}"
    )]
    NotAnEvent(serde_json::Error),
    #[error("the webhook body is not a WhatsApp delivery: {0}")]
    NotADelivery(String),
    #[error("the webhook body holds no message and no status")]
    Empty,
}

/// The direct form of an event.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimpleEvent {
    #[serde(default)]
    text: Option<String>,
    #[serde(default = "text_kind")]
    kind: MessageKind,
    #[serde(default)]
    status: Option<DeliveryState>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    phone_number: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    lead_score: Option<u8>,
    #[serde(default)]
    received_at: Option<u64>,
    #[serde(default)]
    now: Option<u64>,
    #[serde(default)]
    window_open: Option<bool>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    utc_offset_minutes: Option<i32>,
}

fn text_kind() -> MessageKind {
    MessageKind::Text
}

/// Read events from a file's or a form's bytes. `now` overrides the event
/// time; without it a webhook body's events happen at each message's own
/// timestamp (so its window is open), and a simple event at its `now`,
/// its `received_at`, or `default_now`.
pub fn parse(
    bytes: &[u8],
    now: Option<u64>,
    default_now: u64,
) -> Result<Vec<EventSpec>, EventsError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(EventsError::NotJson)?;
    if value.get("object").is_some() {
        return from_webhook(bytes, now);
    }
    let simple: SimpleEvent = serde_json::from_value(value).map_err(EventsError::NotAnEvent)?;
    let now = now
        .or(simple.now)
        .or(simple.received_at)
        .unwrap_or(default_now);
    let contact = ContactData {
        wa_id: simple.phone_number,
        user_id: simple.user_id,
        profile_name: simple.name,
        labels: simple.labels,
        lead_score: simple.lead_score,
    };
    let (message, status) = match simple.status {
        Some(state) => (None, Some((state, now))),
        None => {
            let received_at = simple.received_at.unwrap_or(now);
            let message = MessageFacts {
                kind: simple.kind,
                text: simple.text,
                received_at,
                service_window_open: simple
                    .window_open
                    .unwrap_or(now.saturating_sub(received_at) < SERVICE_WINDOW_SECS),
            };
            (Some(message), None)
        }
    };
    Ok(vec![EventSpec {
        contact,
        message,
        status,
        now,
        timezone: simple.timezone.unwrap_or_else(|| "UTC".into()),
        utc_offset_minutes: simple.utc_offset_minutes.unwrap_or(0),
    }])
}

fn from_webhook(bytes: &[u8], now: Option<u64>) -> Result<Vec<EventSpec>, EventsError> {
    let delivery = payload::parse(bytes).map_err(|e| EventsError::NotADelivery(e.to_string()))?;
    if delivery.items.is_empty() {
        return Err(EventsError::Empty);
    }
    Ok(delivery
        .items
        .into_iter()
        .map(|item| match item {
            DeliveryItem::Message(message) => {
                let now = now.unwrap_or(message.timestamp);
                EventSpec {
                    contact: ContactData {
                        wa_id: message.from.wa_id,
                        user_id: message.from.user_id,
                        profile_name: message.from.profile_name,
                        labels: Vec::new(),
                        lead_score: None,
                    },
                    message: Some(MessageFacts {
                        kind: message.kind,
                        text: message.text,
                        received_at: message.timestamp,
                        service_window_open: now.saturating_sub(message.timestamp)
                            < SERVICE_WINDOW_SECS,
                    }),
                    status: None,
                    now,
                    timezone: "UTC".into(),
                    utc_offset_minutes: 0,
                }
            }
            DeliveryItem::Status(status) => EventSpec {
                contact: ContactData {
                    wa_id: status.recipient.wa_id,
                    user_id: status.recipient.user_id,
                    ..ContactData::default()
                },
                message: None,
                status: Some((status.status, status.timestamp)),
                now: now.unwrap_or(status.timestamp),
                timezone: "UTC".into(),
                utc_offset_minutes: 0,
            },
        })
        .collect())
}

/// Plugin state per contact pseudonym, as the service keeps it per
/// (installation, contact).
pub type StateByContact = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// How the events are run: what is granted, the contact's consent state,
/// the plugin's configuration (resolved, see [`view::resolve_config`]).
#[derive(Debug, Clone)]
pub struct TrialSettings {
    pub grants: BTreeSet<DataField>,
    pub processing: ProcessingState,
    pub config: Vec<(String, String)>,
    /// Explain every field (see [`TracedField`]).
    pub trace: bool,
    /// Keys the sample contacts' pseudonyms (stable across runs with the
    /// same key, unrelated to any service's).
    pub pseudonym_key: [u8; 32],
}

/// What one event did.
#[derive(Debug, Clone, Serialize)]
pub struct EventReport {
    pub event: usize,
    pub pseudonym: String,
    /// Whether the plugin was called at all (see `not_processed`).
    pub invoked: bool,
    pub disclosed: Vec<DataField>,
    pub withheld: Vec<(DataField, Withheld)>,
    /// Why the plugin was not run at all (restricted, objected, no
    /// consent to a purpose that rests on it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_processed: Option<String>,
    pub actions: Vec<Action>,
    pub refused: Vec<(Action, Refusal)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<CallError>,
    pub state_changes: BTreeMap<String, Option<String>>,
    pub logs: Vec<LogLine>,
    pub fuel: u64,
    pub elapsed_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<Vec<TracedField>>,
}

/// One field in a trace: the decision, and the value the plugin was shown.
#[derive(Debug, Clone, Serialize)]
pub struct TracedField {
    #[serde(flatten)]
    pub field: view::FieldTrace,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// Text shortened to `max` characters, quoted.
pub fn preview(text: &str, max: usize) -> String {
    let mut shown: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        shown.push('…');
    }
    format!("{shown:?}")
}

/// How a state value reads for a human: text when it is text, a number when
/// it is the SDK's 8-byte integer, hex otherwise.
pub fn show_value(value: &[u8]) -> String {
    if value.len() == 8 {
        let n = u64::from_le_bytes(value.try_into().expect("8 bytes"));
        return format!("{n} (u64)");
    }
    match std::str::from_utf8(value) {
        Ok(text) if text.chars().all(|c| !c.is_control()) => format!("{text:?}"),
        _ => format!("0x{}", to_hex(value)),
    }
}

/// The value of a disclosed field, as the plugin saw it (`None` when the
/// event has no value for it).
fn field_value(field: DataField, contact: &ContactData, text: Option<&str>) -> Option<String> {
    match field {
        DataField::ProfileName => contact.profile_name.as_deref().map(|v| preview(v, 60)),
        DataField::PhoneNumber => contact.wa_id.as_deref().map(|v| preview(v, 60)),
        DataField::UserId => contact.user_id.as_deref().map(|v| preview(v, 60)),
        DataField::MessageText => text.map(|v| preview(v, 60)),
        DataField::Labels => Some(format!("{:?}", contact.labels)),
        DataField::LeadScore => contact.lead_score.map(|s| s.to_string()),
    }
}

/// Run every event in order, the plugin's state carried between them (and
/// kept in `states`, by contact pseudonym).
pub fn run(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    specs: Vec<EventSpec>,
    settings: &TrialSettings,
    states: &mut StateByContact,
) -> Vec<EventReport> {
    specs
        .into_iter()
        .enumerate()
        .map(|(index, spec)| run_one(runtime, plugin, index + 1, spec, settings, states))
        .collect()
}

/// Run one event.
pub fn run_one(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    index: usize,
    spec: EventSpec,
    settings: &TrialSettings,
    states: &mut StateByContact,
) -> EventReport {
    let contact_key = spec
        .contact
        .wa_id
        .clone()
        .or_else(|| spec.contact.user_id.clone())
        .unwrap_or_default();
    let pseudonym = view::pseudonym(
        &settings.pseudonym_key,
        &plugin.manifest.id,
        contact_key.as_bytes(),
    );
    let mut report = EventReport {
        event: index,
        pseudonym: pseudonym.clone(),
        invoked: false,
        disclosed: Vec::new(),
        withheld: Vec::new(),
        not_processed: None,
        actions: Vec::new(),
        refused: Vec::new(),
        error: None,
        state_changes: BTreeMap::new(),
        logs: Vec::new(),
        fuel: 0,
        elapsed_ms: 0.0,
        trace: None,
    };
    let grants = &settings.grants;
    let processing = &settings.processing;
    if settings.trace {
        let text = spec.message.as_ref().and_then(|m| m.text.as_deref());
        report.trace = Some(
            view::trace(&plugin.manifest, grants, processing)
                .into_iter()
                .map(|field| TracedField {
                    value: field
                        .disclosed
                        .then(|| field_value(field.field, &spec.contact, text))
                        .flatten(),
                    why: field.absent.as_ref().map(|a| a.to_string()),
                    field,
                })
                .collect(),
        );
    }
    let disclosure: Disclosure = match view::disclose(&plugin.manifest, grants, processing) {
        Ok(disclosure) => disclosure,
        Err(reason) => {
            report.not_processed = Some(reason.to_string());
            return report;
        }
    };
    report.invoked = true;
    report.disclosed = disclosure.disclosed.iter().copied().collect();
    report.withheld = disclosure.withheld.clone();
    let event = view::build_event(
        &disclosure,
        &spec.contact,
        EventContext {
            pseudonym,
            message: spec.message,
            status: spec.status,
            config: settings.config.clone(),
            now: spec.now,
            timezone: spec.timezone,
            utc_offset_minutes: spec.utc_offset_minutes,
        },
    );
    let state = states.entry(report.pseudonym.clone()).or_default();
    let call = Call::new(event).state(PluginState::new(state.clone()));
    match runtime.invoke(plugin, call) {
        Ok(invocation) => {
            report.state_changes = invocation
                .state
                .changes()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_deref().map(show_value)))
                .collect();
            *state = invocation.state.merged();
            report.actions = invocation.actions;
            report.refused = invocation.refused;
            report.logs = invocation.logs;
            report.fuel = invocation.fuel;
            report.elapsed_ms = invocation.elapsed.as_secs_f64() * 1000.0;
        }
        Err(failure) => {
            report.logs = failure.logs;
            report.fuel = failure.fuel;
            report.elapsed_ms = failure.elapsed.as_secs_f64() * 1000.0;
            report.error = Some(failure.error);
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_events_and_webhook_bodies_become_events() {
        let simple = parse(
            br#"{"text": "how much?", "name": "Ana", "now": 100}"#,
            None,
            5,
        )
        .unwrap();
        assert_eq!(simple.len(), 1);
        assert_eq!(simple[0].now, 100);
        assert_eq!(simple[0].contact.profile_name.as_deref(), Some("Ana"));
        let message = simple[0].message.as_ref().unwrap();
        assert_eq!(message.text.as_deref(), Some("how much?"));
        assert!(message.service_window_open);

        assert!(matches!(parse(b"{", None, 5), Err(EventsError::NotJson(_))));
        assert!(matches!(
            parse(br#"{"txet": "typo"}"#, None, 5),
            Err(EventsError::NotAnEvent(_))
        ));
    }

    #[test]
    fn state_values_are_shown_readably() {
        assert_eq!(show_value(&7u64.to_le_bytes()), "7 (u64)");
        assert_eq!(show_value(b"hello"), "\"hello\"");
        assert_eq!(show_value(&[0, 159]), "0x009f");
    }
}
