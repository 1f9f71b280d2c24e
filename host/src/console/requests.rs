//! Data-subject requests: access and export (a JSON download),
//! rectification, erasure (after a confirmation step), restriction,
//! objection and consent, each for the contact a phone number, BSUID or
//! contact id names; and every request so far with its deadline (ten
//! business days) and status.

use askama::Template;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use super::web::{Chrome, FormData, Posted, Section, Signed, render};
use super::words;
use crate::compliance::dsr::{Rectification, RequestKind, RequestRecord, Subject};
use crate::ids::ContactId;
use crate::plugin::Purpose;
use crate::service::consent;
use crate::service::error::ServiceError;
use crate::service::requests::{self, ObjectionRequest, RectificationRequest, RestrictionRequest};
use crate::service::{installations, plugins};
use crate::tenancy::api_keys::Scope;

pub struct RequestRow {
    pub id: String,
    pub kind: &'static str,
    pub contact: String,
    pub received: String,
    pub deadline: String,
    pub status: String,
    pub on_time: bool,
}

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    chrome: Chrome,
    rows: Vec<RequestRow>,
    purposes: Vec<String>,
    error: Option<String>,
}

fn kind(kind: RequestKind) -> &'static str {
    match kind {
        RequestKind::Access => "Access and export",
        RequestKind::Rectification => "Rectification",
        RequestKind::Erasure => "Erasure",
        RequestKind::Restriction => "Restriction",
        RequestKind::LiftRestriction => "Restriction lifted",
        RequestKind::Objection => "Objection",
        RequestKind::WithdrawObjection => "Objection withdrawn",
    }
}

fn row(record: &RequestRecord) -> RequestRow {
    let deadline = requests::deadline(record.received_at);
    let (status, on_time) = match record.completed_at {
        Some(at) => (
            format!("{} on {}", record.status, words::time(at)),
            at <= deadline,
        ),
        None => (record.status.clone(), true),
    };
    RequestRow {
        id: record.id.to_string(),
        kind: kind(record.kind),
        contact: record.contact.to_string(),
        received: words::time(record.received_at),
        deadline: words::date(deadline),
        status,
        on_time,
    }
}

/// The purposes of the plugins in the flow (for objection and consent).
fn flow_purposes(signed: &Signed) -> Vec<String> {
    let service = signed.service();
    let caller = &signed.caller;
    // A `dsr` key cannot read the flow: it types the purpose instead.
    if !caller.key.allows(Scope::Read) {
        return Vec::new();
    }
    let (Ok(flow), Ok(registry)) = (
        installations::list(service, caller),
        plugins::available(service, caller),
    ) else {
        return Vec::new();
    };
    let mut purposes: Vec<String> = flow
        .iter()
        .filter_map(|i| registry.iter().find(|r| r.hash == i.plugin))
        .flat_map(|r| r.manifest.purposes.iter().map(|p| p.to_string()))
        .collect();
    purposes.sort();
    purposes.dedup();
    purposes
}

fn page(signed: &Signed, status: StatusCode, error: Option<String>) -> Response {
    let records = match requests::list(signed.service(), &signed.caller) {
        Ok(records) => records,
        Err(error) => return signed.failure(error),
    };
    render(
        status,
        &RequestsPage {
            chrome: signed.chrome(Some(Section::Requests), "Data-subject requests"),
            rows: records.iter().rev().map(row).collect(),
            purposes: flow_purposes(signed),
            error,
        },
    )
}

/// Every request, and the forms to make one.
pub async fn index(signed: Signed) -> Response {
    page(&signed, StatusCode::OK, None)
}

/// The contact a form's `subject` names: a contact id (`ctc_…`), a BSUID
/// (letters, a dot, digits: `BR.1502576394655843`) or a phone number.
pub fn subject(form: &FormData) -> Result<Subject, ServiceError> {
    let Some(text) = form.get("subject") else {
        return Err(ServiceError::Invalid(
            "name the contact: a phone number, a BSUID or a contact id".into(),
        ));
    };
    if text.starts_with("ctc_") {
        let id: ContactId = text
            .parse()
            .map_err(|e| ServiceError::Invalid(format!("{e}")))?;
        return Ok(Subject {
            contact_id: Some(id),
            ..Subject::default()
        });
    }
    let number: String = text
        .trim_start_matches('+')
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
        .collect();
    if !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()) {
        return Ok(Subject {
            wa_id: Some(number),
            ..Subject::default()
        });
    }
    Ok(Subject {
        user_id: Some(text.to_owned()),
        ..Subject::default()
    })
}

/// Where to go after a form: back to the page that sent it when it says
/// so (a contact's page), else the requests page.
fn back(form: &FormData) -> String {
    match form.get("back") {
        Some(path)
            if path.starts_with("/console/")
                && !path.contains("//")
                && !path.contains('\\')
                && path.is_ascii() =>
        {
            path.to_owned()
        }
        _ => "/console/requests".to_owned(),
    }
}

/// A refusal shown on the requests page (or the contact's page), where the
/// form can be sent again.
fn refused(signed: &Signed, form: &FormData, error: ServiceError) -> Response {
    if back(form) != "/console/requests" {
        return signed.failure(error);
    }
    let message = match &error {
        ServiceError::NotFound("contact") => {
            "No contact has this phone number, BSUID or contact id. Numbers are matched as \
             WhatsApp sends them: country code and number."
                .to_owned()
        }
        _ => super::web::describe(&error).1,
    };
    let status = super::web::describe(&error).0;
    page(signed, status, Some(message))
}

/// Access and portability: the contact's export, downloaded.
pub async fn access(posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let subject = match subject(&form) {
        Ok(subject) => subject,
        Err(error) => return refused(&signed, &form, error),
    };
    match requests::access(signed.service(), &signed.caller, subject).await {
        Ok(answer) => {
            let json = match serde_json::to_vec_pretty(&answer.export) {
                Ok(json) => json,
                Err(error) => {
                    tracing::error!(%error, "serialising an export failed");
                    return signed.failure(ServiceError::Unavailable(
                        "the export could not be written; try again".into(),
                    ));
                }
            };
            let name = format!(
                "attachment; filename=\"contact-export-{}.json\"",
                answer.request.id
            );
            (
                StatusCode::OK,
                [
                    (CONTENT_TYPE, "application/json".to_owned()),
                    (CONTENT_DISPOSITION, name),
                ],
                json,
            )
                .into_response()
        }
        Err(error) => refused(&signed, &form, error),
    }
}

/// Rectify stored fields.
pub async fn rectification(posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let subject = match subject(&form) {
        Ok(subject) => subject,
        Err(error) => return refused(&signed, &form, error),
    };
    let changes = Rectification {
        profile_name: if form.flag("remove_profile_name") {
            Some(None)
        } else {
            form.get("profile_name").map(|n| Some(n.to_owned()))
        },
        labels: if form.flag("remove_labels") {
            Some(Vec::new())
        } else {
            form.get("labels").map(|labels| {
                labels
                    .split(',')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
        },
        clear_lead_score: form.flag("clear_lead_score"),
        wa_id: form.get("wa_id").map(str::to_owned),
    };
    let body = RectificationRequest {
        contact_id: subject.contact_id,
        wa_id: subject.wa_id,
        user_id: subject.user_id,
        changes,
    };
    match requests::rectify(signed.service(), &signed.caller, body).await {
        Ok(_) => signed.done(&back(&form), "The contact's data is rectified."),
        Err(error) => refused(&signed, &form, error),
    }
}

#[derive(Template)]
#[template(path = "erasure_confirm.html")]
struct ConfirmErasure {
    chrome: Chrome,
    subject: String,
    back: String,
}

/// Erase a contact: the first post asks for confirmation, the second
/// (with `confirm=yes`) erases.
pub async fn erasure(posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let subject = match subject(&form) {
        Ok(subject) => subject,
        Err(error) => return refused(&signed, &form, error),
    };
    if form.get("confirm") != Some("yes") {
        if !signed.caller.key.allows(Scope::Dsr) {
            return refused(
                &signed,
                &form,
                ServiceError::Forbidden("this API key lacks the `dsr` scope".into()),
            );
        }
        return render(
            StatusCode::OK,
            &ConfirmErasure {
                chrome: signed.chrome(Some(Section::Requests), "Confirm erasure"),
                subject: form.get("subject").unwrap_or_default().to_owned(),
                back: back(&form),
            },
        );
    }
    match requests::erase(signed.service(), &signed.caller, subject).await {
        Ok(request) => signed.done(
            "/console/requests",
            format!(
                "The contact is erased: every record about them is deleted and their key \
                 destroyed (request {}).",
                request.id
            ),
        ),
        Err(error) => {
            let form = FormData(vec![]);
            refused(&signed, &form, error)
        }
    }
}

/// Restrict processing, or lift the restriction.
pub async fn restriction(posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let subject = match subject(&form) {
        Ok(subject) => subject,
        Err(error) => return refused(&signed, &form, error),
    };
    let restricted = form.get("restricted") != Some("false");
    let body = RestrictionRequest {
        contact_id: subject.contact_id,
        wa_id: subject.wa_id,
        user_id: subject.user_id,
        restricted,
    };
    match requests::restrict(signed.service(), &signed.caller, body).await {
        Ok(_) => signed.done(
            &back(&form),
            if restricted {
                "Processing is restricted: the data is kept, no plugin runs for the contact."
            } else {
                "The restriction is lifted: plugins run for the contact again."
            },
        ),
        Err(error) => refused(&signed, &form, error),
    }
}

/// Object to a purpose, or withdraw the objection.
pub async fn objection(posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let subject = match subject(&form) {
        Ok(subject) => subject,
        Err(error) => return refused(&signed, &form, error),
    };
    let purpose = match form.get("purpose").map(Purpose::parse) {
        Some(Ok(purpose)) => purpose,
        Some(Err(e)) => {
            return refused(
                &signed,
                &form,
                ServiceError::Invalid(format!("that is not a purpose: {e}")),
            );
        }
        None => {
            return refused(
                &signed,
                &form,
                ServiceError::Invalid("name the purpose objected to".into()),
            );
        }
    };
    let objecting = form.get("objecting") != Some("false");
    let body = ObjectionRequest {
        contact_id: subject.contact_id,
        wa_id: subject.wa_id,
        user_id: subject.user_id,
        purpose: purpose.clone(),
        objecting,
    };
    match requests::object(signed.service(), &signed.caller, body).await {
        Ok(_) => signed.done(
            &back(&form),
            if objecting {
                format!("The objection to {purpose} is recorded: plugins with it no longer run for the contact.")
            } else {
                format!("The objection to {purpose} is withdrawn.")
            },
        ),
        Err(error) => refused(&signed, &form, error),
    }
}

/// Record consent for the contact a subject names.
pub async fn consent(posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let change = match super::contacts::consent_change(&form) {
        Ok(change) => change,
        Err(error) => return refused(&signed, &form, error),
    };
    let subject = match subject(&form) {
        Ok(subject) => subject,
        Err(error) => return refused(&signed, &form, error),
    };
    match consent::record_for_subject(signed.service(), &signed.caller, &subject, &change).await {
        Ok(_) => signed.done(
            &back(&form),
            "The consent decision is recorded in the contact's ledger.",
        ),
        Err(error) => refused(&signed, &form, error),
    }
}
