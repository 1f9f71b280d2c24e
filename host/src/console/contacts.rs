//! Contacts: found by phone number or BSUID (the console never lists
//! everyone's numbers), then one contact's page — labels, lead score,
//! consent ledger, opt-out, restriction, objections, hand-off — and what
//! every plugin was shown about the contact on its recent calls.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;

use super::web::{Chrome, Posted, Section, Signed, render};
use super::words;
use crate::data::consent::{ConsentRecord, Decision, Source, Subject};
use crate::plugin::Purpose;
use crate::service::consent::{self, ConsentChange};
use crate::service::contacts::{self, ContactOut, Lookup};
use crate::service::error::ServiceError;
use crate::service::{installations, plugins};

#[derive(Template)]
#[template(path = "contacts.html")]
struct SearchPage {
    chrome: Chrome,
    wa_id: String,
    user_id: String,
    error: Option<String>,
}

/// The search form.
pub async fn search(signed: Signed) -> Response {
    render(
        StatusCode::OK,
        &SearchPage {
            chrome: signed.chrome(Some(Section::Contacts), "Contacts"),
            wa_id: String::new(),
            user_id: String::new(),
            error: None,
        },
    )
}

/// Find a contact (a POST, so numbers stay out of URLs and logs).
pub async fn find(posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let lookup = Lookup {
        wa_id: form
            .get("wa_id")
            .map(|n| n.trim_start_matches('+').replace([' ', '-'], "")),
        user_id: form.get("user_id").map(str::to_owned),
    };
    let page = |status, error: String| {
        render(
            status,
            &SearchPage {
                chrome: signed.chrome(Some(Section::Contacts), "Contacts"),
                wa_id: form.raw("wa_id").to_owned(),
                user_id: form.raw("user_id").to_owned(),
                error: Some(error),
            },
        )
    };
    if lookup.wa_id.is_none() && lookup.user_id.is_none() {
        return page(
            StatusCode::BAD_REQUEST,
            "Type a phone number or a BSUID to find a contact.".into(),
        );
    }
    match contacts::lookup(signed.service(), &signed.caller, &lookup).await {
        Ok(contact) => super::web::see_other(&format!("/console/contacts/{}", contact.id)),
        Err(ServiceError::NotFound(_)) => page(
            StatusCode::NOT_FOUND,
            "No contact has this phone number or BSUID. Numbers are matched as WhatsApp \
             sends them: country code and number, without + or spaces."
                .into(),
        ),
        Err(error) => signed.failure(error),
    }
}

pub struct LedgerRow {
    pub at: String,
    pub subject: String,
    pub granted: bool,
    pub source: &'static str,
    pub evidence: bool,
}

pub struct CallRow {
    pub at: String,
    pub plugin: String,
    pub outcome: String,
    pub shown: Vec<String>,
    pub actions: Option<u64>,
    pub fuel: Option<String>,
    pub reason: Option<String>,
}

#[derive(Template)]
#[template(path = "contact.html")]
struct ContactPage {
    chrome: Chrome,
    contact: ContactOut,
    first_seen: String,
    last_seen: String,
    consents: Vec<String>,
    objections: Vec<String>,
    ledger: Vec<LedgerRow>,
    calls: Vec<CallRow>,
    purposes: Vec<String>,
}

fn ledger_row(record: &ConsentRecord) -> LedgerRow {
    LedgerRow {
        at: words::time(record.at),
        subject: match &record.subject {
            Subject::Messaging => "Messages (as STOP and START do)".into(),
            Subject::Purpose(p) => format!("{p} — {}", words::purpose(p)),
        },
        granted: record.decision == Decision::Granted,
        source: match record.source {
            Source::Keyword => "a keyword the contact sent",
            Source::Api => "recorded by your team",
            Source::Import => "imported",
        },
        evidence: record.evidence.is_some(),
    }
}

/// One contact.
pub async fn show(signed: Signed, Path(id): Path<String>) -> Response {
    let service = signed.service();
    let caller = &signed.caller;
    let contact = match contacts::get(service, caller, &id).await {
        Ok(contact) => contact,
        Err(error) => return signed.failure(error),
    };
    let gathered = (|| {
        let ledger = consent::history(service, caller, &id)?;
        let calls = contacts::plugin_calls(service, caller, &id, 25)?;
        let flow = installations::list(service, caller)?;
        let registry = plugins::available(service, caller)?;
        Ok::<_, ServiceError>((ledger, calls, flow, registry))
    })();
    let (ledger, calls, flow, registry) = match gathered {
        Ok(found) => found,
        Err(error) => return signed.failure(error),
    };
    let names: BTreeMap<String, String> = flow
        .iter()
        .map(|i| (i.id.to_string(), i.plugin_id.clone()))
        .collect();
    // Purposes a consent can be recorded for: those of the plugins in the
    // flow, and any the contact already has a record for.
    let mut purposes: Vec<Purpose> = flow
        .iter()
        .filter_map(|i| registry.iter().find(|r| r.hash == i.plugin))
        .flat_map(|r| r.manifest.purposes.iter().cloned())
        .chain(contact.consents.iter().cloned())
        .collect();
    purposes.sort();
    purposes.dedup();
    let page = ContactPage {
        chrome: signed.chrome(Some(Section::Contacts), "Contact"),
        first_seen: words::time(contact.first_seen),
        last_seen: words::time(contact.last_seen),
        consents: contact.consents.iter().map(|p| p.to_string()).collect(),
        objections: contact.objections.iter().map(|p| p.to_string()).collect(),
        ledger: ledger.iter().rev().map(ledger_row).collect(),
        calls: calls
            .into_iter()
            .map(|call| CallRow {
                at: words::time(call.at),
                plugin: call
                    .plugin
                    .or_else(|| names.get(&call.installation).cloned())
                    .unwrap_or_else(|| call.installation.clone()),
                outcome: call.outcome,
                shown: call
                    .disclosed
                    .iter()
                    .map(|f| words::field_name(f))
                    .collect(),
                actions: call.actions,
                fuel: call.fuel.map(words::count),
                reason: call.reason,
            })
            .collect(),
        purposes: purposes.iter().map(|p| p.to_string()).collect(),
        contact,
    };
    render(StatusCode::OK, &page)
}

/// Record consent given or withdrawn.
pub async fn consent(Path(id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let change = match consent_change(&form) {
        Ok(change) => change,
        Err(error) => return signed.failure(error),
    };
    match consent::record(signed.service(), &signed.caller, &id, &change).await {
        Ok(_) => signed.done(
            &format!("/console/contacts/{id}"),
            "The consent decision is recorded in the contact's ledger.",
        ),
        Err(error) => signed.failure(error),
    }
}

/// A consent decision as a form sends it: `purpose` (empty or `messaging`
/// for messages as a whole), `decision`, `evidence`.
pub fn consent_change(form: &super::web::FormData) -> Result<ConsentChange, ServiceError> {
    let purpose = match form.get("purpose") {
        None | Some("messaging") => None,
        Some(purpose) => Some(
            Purpose::parse(purpose)
                .map_err(|e| ServiceError::Invalid(format!("that is not a purpose: {e}")))?,
        ),
    };
    let decision = match form.get("decision") {
        Some("granted") => Decision::Granted,
        Some("withdrawn") => Decision::Withdrawn,
        _ => {
            return Err(ServiceError::Invalid(
                "choose whether consent was given or withdrawn".into(),
            ));
        }
    };
    Ok(ConsentChange {
        purpose,
        decision,
        evidence: form.get("evidence").map(str::to_owned),
    })
}

/// Hand a contact back to the automations.
pub async fn hand_back(Path(id): Path<String>, posted: Posted) -> Response {
    let signed = posted.signed;
    match contacts::hand_back(signed.service(), &signed.caller, &id).await {
        Ok(_) => signed.done(
            &format!("/console/contacts/{id}"),
            "The contact is handed back: plugins may reply again.",
        ),
        Err(error) => signed.failure(error),
    }
}
