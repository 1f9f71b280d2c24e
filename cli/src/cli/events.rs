//! Event files for `flowgate plugin run`: either a WhatsApp webhook body
//! (every message and status in it becomes an event) or a small JSON object
//! describing one event directly.

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use flowgate::channel::whatsapp::payload::{self, DeliveryItem, DeliveryState, MessageKind};
use flowgate::view::{ContactData, MessageFacts};

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

/// The direct form of an event file.
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

/// Read events from a file's bytes. `now` overrides the event time (for a
/// webhook body the default is each message's own timestamp, so its window
/// is open).
pub fn parse(bytes: &[u8], now: Option<u64>) -> Result<Vec<EventSpec>> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).context("the event file is not valid JSON")?;
    if value.get("object").is_some() {
        return from_webhook(bytes, now);
    }
    let simple: SimpleEvent = serde_json::from_value(value).context(
        "the event file is neither a WhatsApp webhook body nor a simple event \
         ({\"text\", \"name\", \"labels\", \"now\", …})",
    )?;
    let now = now
        .or(simple.now)
        .or(simple.received_at)
        .unwrap_or_else(unix_now);
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

fn from_webhook(bytes: &[u8], now: Option<u64>) -> Result<Vec<EventSpec>> {
    let delivery = payload::parse(bytes).context("the webhook body is not a WhatsApp delivery")?;
    if delivery.items.is_empty() {
        bail!("the webhook body holds no message and no status");
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

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
