//! The audit trail, newest first, filtered by action, actor, contact and
//! time; and on request the chain's verification.

use askama::Template;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::web::{Chrome, Section, Signed, render};
use super::words;
use crate::audit::{Actor, AuditEntry, AuditFilter};
use crate::service::error::ServiceError;
use crate::service::trail;

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    action: Option<String>,
    actor: Option<String>,
    contact: Option<String>,
    from: Option<String>,
    until: Option<String>,
    before: Option<u64>,
    verify: Option<String>,
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

pub struct EntryRow {
    pub seq: u64,
    pub at: String,
    pub actor: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub subject: Option<String>,
    pub details: Option<String>,
}

fn entry_row(entry: &AuditEntry) -> EntryRow {
    let (actor, actor_id) = match &entry.actor {
        Actor::Operator => ("operator", None),
        Actor::ApiKey(id) => ("API key", Some(id.clone())),
        Actor::Console(id) => ("console", Some(id.clone())),
        Actor::Installation(id) => ("installation", Some(id.clone())),
        Actor::Contact => ("the contact", None),
        Actor::Webhook(id) => ("webhook", Some(id.clone())),
        Actor::System => ("system", None),
    };
    EntryRow {
        seq: entry.seq,
        at: words::time(entry.at),
        actor: actor.to_owned(),
        actor_id,
        action: entry.action.clone(),
        subject: entry.subject.clone(),
        details: (!entry.details.is_null()).then(|| entry.details.to_string()),
    }
}

pub struct Verified {
    pub intact: bool,
    /// The newest entries are gone (the chain ends before its sealed head):
    /// said in its own words, since nothing in the chain itself is broken.
    pub truncated: bool,
    pub entries: u64,
    pub broken_at: Option<u64>,
    pub reason: Option<String>,
}

/// The actor types a filter can name.
pub const ACTORS: [(&str, &str); 7] = [
    ("console", "The console"),
    ("api-key", "An API key"),
    ("installation", "A plugin installation"),
    ("webhook", "WhatsApp (webhooks)"),
    ("contact", "The contact (STOP, START…)"),
    ("system", "The service itself"),
    ("operator", "The operator"),
];

/// Actions to suggest in the filter.
pub const ACTIONS: [&str; 18] = [
    "plugin.",
    "plugin.invoked",
    "plugin.skipped",
    "plugin.failed",
    "action.applied",
    "action.dropped",
    "contact.",
    "contact.read",
    "consent.",
    "dsr.",
    "message.received",
    "installation.",
    "api-key.",
    "auth.",
    "channel.verified",
    "breaker.changed",
    "playground.run",
    "retention.run",
];

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    action: String,
    contact: String,
    from: String,
    until: String,
    actors: Vec<(&'static str, &'static str, bool)>,
    actions: Vec<&'static str>,
    entries: Vec<EntryRow>,
    older: Option<String>,
    verified: Option<Verified>,
    error: Option<String>,
}

/// The trail.
pub async fn index(signed: Signed, Query(query): Query<AuditQuery>) -> Response {
    let service = signed.service();
    let caller = &signed.caller;
    let mut error = None;
    let mut filter = AuditFilter {
        action: given(&query.action).map(str::to_owned),
        actor: given(&query.actor).map(str::to_owned),
        ..AuditFilter::default()
    };
    if let Some(contact) = given(&query.contact) {
        if contact.starts_with("ctc_") {
            match trail::contact_subject(service, caller, contact) {
                Ok(subject) => filter.subject = Some(subject),
                Err(ServiceError::NotFound(_)) => {
                    error = Some("That is not a contact id (ctc_ and 32 hex digits).".to_owned());
                }
                Err(e) => return signed.failure(e),
            }
        } else {
            // A pseudonym copied from an entry.
            filter.subject = Some(contact.to_owned());
        }
    }
    for (value, slot, name) in [
        (&query.from, &mut filter.from, "from"),
        (&query.until, &mut filter.until, "until"),
    ] {
        if let Some(text) = given(value) {
            match words::parse_time(text) {
                Some(at) => *slot = Some(at),
                None => error = Some(format!("`{name}` is not a date such as 2026-11-30.")),
            }
        }
    }
    // `until` names a day: the whole of it.
    if let (Some(until), Some(text)) = (filter.until.as_mut(), given(&query.until))
        && text.len() == 10
    {
        *until += 86_400;
    }
    let page = if error.is_some() {
        None
    } else {
        match trail::recent(service, caller, &filter, query.before) {
            Ok(page) => Some(page),
            Err(e) => return signed.failure(e),
        }
    };
    let verified = if query.verify.is_some() {
        match trail::verify(service, caller) {
            Ok(v) => Some(Verified {
                intact: v.intact,
                truncated: v.truncated,
                entries: v.entries,
                broken_at: v.broken_at,
                reason: v.reason,
            }),
            Err(e) => return signed.failure(e),
        }
    } else {
        None
    };
    let text = |v: &Option<String>| given(v).unwrap_or_default().to_owned();
    let older = page.as_ref().and_then(|p| p.older).map(|before| {
        let pairs = [
            ("action", text(&query.action)),
            ("actor", text(&query.actor)),
            ("contact", text(&query.contact)),
            ("from", text(&query.from)),
            ("until", text(&query.until)),
            ("before", before.to_string()),
        ];
        let query = serde_urlencoded::to_string(
            pairs
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .collect::<Vec<_>>(),
        )
        .unwrap_or_default();
        format!("/console/audit?{query}")
    });
    let actor = text(&query.actor);
    render(
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        &AuditPage {
            chrome: signed.chrome(Some(Section::Audit), "Audit trail"),
            action: text(&query.action),
            contact: text(&query.contact),
            from: text(&query.from),
            until: text(&query.until),
            actors: ACTORS
                .iter()
                .map(|(id, label)| (*id, *label, *id == actor))
                .collect(),
            actions: ACTIONS.to_vec(),
            entries: page
                .map(|p| p.entries.iter().map(entry_row).collect())
                .unwrap_or_default(),
            older,
            verified,
            error,
        },
    )
}
