//! The consent ledger as the tenant records it: consent given or withdrawn
//! for a purpose, or for messages as a whole (as STOP and START do).

use serde::Deserialize;

use super::ServiceInner;
use super::caller::TenantCaller;
use super::change::Change;
use super::contacts::{ContactOut, parse_id};
use super::error::{ServiceError, ServiceResult};
use crate::audit::contact_pseudonym;
use crate::data::consent::{ConsentLedger, ConsentRecord, ConsentState, Decision, Source, Subject};
use crate::data::contacts::Contacts;
use crate::plugin::Purpose;
use crate::store::Batch;
use crate::tenancy::api_keys::Scope;

/// Record a consent decision.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentChange {
    /// A purpose (fideslang data use); absent means messages as a whole
    /// (the same as STOP / START).
    #[schema(value_type = Option<String>)]
    pub purpose: Option<Purpose>,
    #[schema(value_type = String)]
    pub decision: Decision,
    /// Evidence (a form submission id, a signed document reference); kept
    /// only as a keyed hash.
    pub evidence: Option<String>,
}

/// Record consent given or withdrawn; answers the contact as it is after.
pub async fn record(
    service: &ServiceInner,
    caller: &TenantCaller,
    raw_id: &str,
    change: &ConsentChange,
) -> ServiceResult<ContactOut> {
    caller.require_any(&[Scope::Admin, Scope::Dsr])?;
    let id = &parse_id(raw_id)?;
    let vault = &service.vault;
    let contacts = Contacts::of(vault, caller.tenant)?;
    let ledger = ConsentLedger::of(vault, caller.tenant)?;
    let subject = match &change.purpose {
        Some(purpose) => Subject::Purpose(purpose.clone()),
        None => Subject::Messaging,
    };
    let action = match change.decision {
        Decision::Granted => "consent.granted",
        Decision::Withdrawn => "consent.withdrawn",
    };
    let pseudonym = contact_pseudonym(contacts.tenant_keys(), id);
    let contact = service
        .apply(|| {
            let mut loaded = contacts
                .load(id)?
                .ok_or(ServiceError::NotFound("contact"))?;
            let now = service.clock.now();
            let record = ConsentRecord {
                contact: *id,
                subject: subject.clone(),
                decision: change.decision,
                source: Source::Api,
                evidence: change
                    .evidence
                    .as_deref()
                    .map(|e| ledger.evidence("api-request", e)),
                at: now,
            };
            let mut batch = Batch::new();
            ledger.stage_append(&mut batch, &record)?;
            // The contact's state changed by this one record — not refolded
            // from the ledger, whose older records retention may have
            // deleted (an expired STOP must still stand).
            let mut state = ConsentState {
                opted_out: loaded.contact.opted_out,
                consents: loaded.contact.consents.iter().cloned().collect(),
            };
            state.apply(&record);
            loaded.contact.opted_out = state.opted_out;
            loaded.contact.consents = state.consents.into_iter().collect();
            contacts.stage(&mut batch, &loaded);
            let audit = caller
                .audit(
                    now,
                    action,
                    serde_json::json!({"subject": subject, "source": "api"}),
                )
                .subject(pseudonym.clone());
            Ok(Change::new(batch, vec![audit], loaded.contact))
        })
        .await?;
    Ok(contact.into())
}

/// Record consent for the contact a data subject names (by id, phone
/// number or BSUID), as a data-subject request form does: a `dsr` key
/// records consent without reading contacts.
pub async fn record_for_subject(
    service: &ServiceInner,
    caller: &TenantCaller,
    subject: &crate::compliance::dsr::Subject,
    change: &ConsentChange,
) -> ServiceResult<ContactOut> {
    caller.require_any(&[Scope::Admin, Scope::Dsr])?;
    let id = match (&subject.contact_id, &subject.wa_id, &subject.user_id) {
        (Some(id), _, _) => *id,
        (None, None, None) => {
            return Err(ServiceError::Invalid(
                "name the contact: a phone number, a BSUID or a contact id".into(),
            ));
        }
        (None, wa_id, user_id) => {
            Contacts::of(&service.vault, caller.tenant)?
                .find_and_load(wa_id.as_deref(), user_id.as_deref())?
                .ok_or(ServiceError::NotFound("contact"))?
                .contact
                .id
        }
    };
    record(service, caller, &id.to_string(), change).await
}

/// The contact's consent ledger, oldest first.
pub fn history(
    service: &ServiceInner,
    caller: &TenantCaller,
    raw_id: &str,
) -> ServiceResult<Vec<ConsentRecord>> {
    caller.require(Scope::Read)?;
    let id = &parse_id(raw_id)?;
    let vault = &service.vault;
    let history = ConsentLedger::of(vault, caller.tenant)?.history(id)?;
    if history.is_empty() && Contacts::of(vault, caller.tenant)?.load(id)?.is_none() {
        return Err(ServiceError::NotFound("contact"));
    }
    Ok(history)
}
