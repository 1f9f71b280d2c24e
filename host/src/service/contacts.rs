//! Contacts as the tenant sees them: found by identifier, read (every read
//! of personal data is audited before it is answered), handed back to the
//! automations after a human took over.

use serde::{Deserialize, Serialize};

use super::ServiceInner;
use super::caller::TenantCaller;
use super::change::Change;
use super::error::{ServiceError, ServiceResult};
use crate::audit::contact_pseudonym;
use crate::data::contacts::{Contact, Contacts};
use crate::ids::ContactId;
use crate::plugin::Purpose;
use crate::store::{Batch, Kind};
use crate::tenancy::api_keys::Scope;

/// A contact as the tenant sees it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContactOut {
    #[schema(value_type = String)]
    pub id: ContactId,
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub profile_name: Option<String>,
    pub labels: Vec<String>,
    pub lead_score: Option<u8>,
    pub lead_reason: Option<String>,
    pub opted_out: bool,
    #[schema(value_type = Vec<String>)]
    pub consents: Vec<Purpose>,
    pub restricted: bool,
    #[schema(value_type = Vec<String>)]
    pub objections: Vec<Purpose>,
    pub handed_off: bool,
    pub first_seen: u64,
    pub last_seen: u64,
    pub last_inbound: Option<u64>,
}

impl From<Contact> for ContactOut {
    fn from(c: Contact) -> Self {
        ContactOut {
            id: c.id,
            wa_id: c.wa_id,
            user_id: c.user_id,
            profile_name: c.profile_name,
            labels: c.labels,
            lead_score: c.lead_score.as_ref().map(|s| s.score),
            lead_reason: c.lead_score.map(|s| s.reason),
            opted_out: c.opted_out,
            consents: c.consents,
            restricted: c.restricted,
            objections: c.objections,
            handed_off: c.handed_off,
            first_seen: c.first_seen,
            last_seen: c.last_seen,
            last_inbound: c.last_inbound,
        }
    }
}

/// A page of contacts.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContactPage {
    pub contacts: Vec<ContactOut>,
    /// Pass as `after` for the next page.
    pub next: Option<String>,
}

/// Find a contact by phone number or BSUID.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
}

/// A contact id as given in a path or a form: anything that does not parse
/// names no contact.
pub fn parse_id(raw: &str) -> ServiceResult<ContactId> {
    raw.parse().map_err(|_| ServiceError::NotFound("contact"))
}

/// A page of contacts, after `after`, at most `limit` (1 to 500; 50 by
/// default).
pub async fn list(
    service: &ServiceInner,
    caller: &TenantCaller,
    after: Option<&str>,
    limit: Option<usize>,
) -> ServiceResult<ContactPage> {
    caller.require(Scope::Read)?;
    let vault = &service.vault;
    let limit = limit.unwrap_or(50).clamp(1, 500);
    let after = after
        .map(|raw| {
            raw.parse::<ContactId>()
                .map_err(|_| ServiceError::Invalid("`after` is not a contact id".into()))
        })
        .transpose()?;
    let contacts = Contacts::of(vault, caller.tenant)?;
    let entries = vault.store.scan(
        &caller.tenant,
        Kind::Contacts,
        b"",
        after.as_ref().map(|a| a.as_bytes().as_slice()),
        limit,
    )?;
    let mut out = Vec::with_capacity(entries.len());
    for (raw_id, _) in &entries {
        if let Some(id) = ContactId::from_slice(raw_id)
            && let Some(loaded) = contacts.load(&id)?
        {
            out.push(ContactOut::from(loaded.contact));
        }
    }
    let next = (entries.len() == limit)
        .then(|| {
            entries
                .last()
                .and_then(|(k, _)| ContactId::from_slice(k))
                .map(|id| id.to_string())
        })
        .flatten();
    let audit = caller.audit(
        service.clock.now(),
        "contact.listed",
        serde_json::json!({"count": out.len()}),
    );
    service.record(vec![audit]).await?;
    Ok(ContactPage {
        contacts: out,
        next,
    })
}

/// Audit a read of `contact` by `caller`, then answer it.
async fn read(
    service: &ServiceInner,
    caller: &TenantCaller,
    contacts: &Contacts<'_>,
    contact: Contact,
) -> ServiceResult<ContactOut> {
    let subject = contact_pseudonym(contacts.tenant_keys(), &contact.id);
    let audit = caller
        .audit(service.clock.now(), "contact.read", serde_json::Value::Null)
        .subject(subject);
    service.record(vec![audit]).await?;
    Ok(contact.into())
}

/// One contact, by id.
pub async fn get(
    service: &ServiceInner,
    caller: &TenantCaller,
    raw_id: &str,
) -> ServiceResult<ContactOut> {
    caller.require(Scope::Read)?;
    let id = &parse_id(raw_id)?;
    let contacts = Contacts::of(&service.vault, caller.tenant)?;
    let loaded = contacts
        .load(id)?
        .ok_or(ServiceError::NotFound("contact"))?;
    read(service, caller, &contacts, loaded.contact).await
}

/// One contact, by phone number or BSUID.
pub async fn lookup(
    service: &ServiceInner,
    caller: &TenantCaller,
    lookup: &Lookup,
) -> ServiceResult<ContactOut> {
    caller.require(Scope::Read)?;
    if lookup.wa_id.is_none() && lookup.user_id.is_none() {
        return Err(ServiceError::Invalid("give `wa_id` or `user_id`".into()));
    }
    let contacts = Contacts::of(&service.vault, caller.tenant)?;
    let loaded = contacts
        .find_and_load(lookup.wa_id.as_deref(), lookup.user_id.as_deref())?
        .ok_or(ServiceError::NotFound("contact"))?;
    read(service, caller, &contacts, loaded.contact).await
}

/// Hand a contact back to the automations after a human took over: a
/// plugin's `hand-off` action stops every plugin reply to the contact until
/// this is called. Handing back a contact not handed off changes nothing.
pub async fn hand_back(
    service: &ServiceInner,
    caller: &TenantCaller,
    raw_id: &str,
) -> ServiceResult<ContactOut> {
    caller.require(Scope::Admin)?;
    let id = &parse_id(raw_id)?;
    let contacts = Contacts::of(&service.vault, caller.tenant)?;
    let contact = service
        .apply(|| {
            let mut loaded = contacts
                .load(id)?
                .ok_or(ServiceError::NotFound("contact"))?;
            if !loaded.contact.handed_off {
                return Ok(Change::audit_only(Vec::new(), loaded.contact));
            }
            loaded.contact.handed_off = false;
            let mut batch = Batch::new();
            contacts.stage(&mut batch, &loaded);
            let audit = caller
                .audit(
                    service.clock.now(),
                    "contact.handed-back",
                    serde_json::Value::Null,
                )
                .subject(contact_pseudonym(contacts.tenant_keys(), id));
            Ok(Change::new(batch, vec![audit], loaded.contact))
        })
        .await?;
    Ok(contact.into())
}

/// One call of a plugin about a contact, as the audit trail recorded it:
/// which fields the installation was shown, or why it was not run.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginCall {
    /// The audit entry's sequence number.
    pub seq: u64,
    pub at: u64,
    /// The installation that was called (or skipped).
    pub installation: String,
    /// `invoked`, `failed` or `skipped`.
    pub outcome: String,
    pub plugin: Option<String>,
    pub version: Option<String>,
    /// The data fields the plugin was shown (fideslang identifiers).
    pub disclosed: Vec<String>,
    /// Actions it answered with (applied and refused).
    pub actions: Option<u64>,
    pub fuel: Option<u64>,
    /// Why it failed or was skipped.
    pub reason: Option<String>,
}

impl PluginCall {
    fn from_entry(entry: &crate::audit::AuditEntry) -> Option<PluginCall> {
        let outcome = entry.action.strip_prefix("plugin.")?;
        if !matches!(outcome, "invoked" | "failed" | "skipped") {
            return None;
        }
        let crate::audit::Actor::Installation(installation) = &entry.actor else {
            return None;
        };
        let details = &entry.details;
        let text = |key: &str| details.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let reason = match outcome {
            "failed" => text("error"),
            // `{"reason": "no-consent", "purpose": …, "why": …}`; entries
            // written before the reason was flattened into the details
            // nest it: `{"reason": {"reason": "restricted"}}`.
            "skipped" => details.get("reason").map(|reason| match reason {
                serde_json::Value::String(code) => code.clone(),
                serde_json::Value::Object(map) => map
                    .get("reason")
                    .and_then(|r| r.as_str())
                    .unwrap_or("skipped")
                    .to_owned(),
                other => other.to_string(),
            }),
            _ => None,
        };
        Some(PluginCall {
            seq: entry.seq,
            at: entry.at,
            installation: installation.clone(),
            outcome: outcome.to_owned(),
            plugin: text("plugin"),
            version: text("version"),
            disclosed: details
                .get("disclosed")
                .and_then(|d| d.as_array())
                .map(|fields| {
                    fields
                        .iter()
                        .filter_map(|f| f.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            actions: details.get("actions").and_then(|v| v.as_u64()),
            fuel: details.get("fuel").and_then(|v| v.as_u64()),
            reason,
        })
    }
}

/// What each plugin was shown about a contact on its most recent calls
/// (at most `limit`, newest first), read from the audit trail's
/// `plugin.invoked`, `plugin.failed` and `plugin.skipped` entries about
/// the contact. The trail holds field names only, never their values.
pub fn plugin_calls(
    service: &ServiceInner,
    caller: &TenantCaller,
    raw_id: &str,
    limit: usize,
) -> ServiceResult<Vec<PluginCall>> {
    caller.require(Scope::Read)?;
    let id = parse_id(raw_id)?;
    let keys = service.vault.keys.tenant(&caller.tenant)?;
    let subject = contact_pseudonym(&keys, &id);
    let entries = crate::audit::about(&service.vault, &caller.tenant, &subject)?;
    Ok(entries
        .iter()
        .rev()
        .filter_map(PluginCall::from_entry)
        .take(limit)
        .collect())
}
