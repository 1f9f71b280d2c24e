//! Data-subject rights: access and portability, rectification, erasure,
//! restriction and objection — for one contact of one tenant.
//!
//! Each right is a function that reads what it needs and returns the writes
//! and audit entries to commit (through the committer, so the request, its
//! effects and its audit entry land together), plus a request record with
//! its status and times.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::audit::{self, Actor, AuditDraft, AuditEntry};
use crate::crypto::TenantKeys;
use crate::data::consent::{ConsentLedger, ConsentRecord};
use crate::data::contacts::{Contacts, LeadScore, LoadedContact};
use crate::data::expiry;
use crate::data::{DataError, Vault, messages, plugin_state};
use crate::ids::{ContactId, InstallationId, RequestId, TenantId};
use crate::plugin::Purpose;
use crate::store::{Batch, Kind};

/// The export's schema identifier; bumped on incompatible changes.
pub const EXPORT_SCHEMA: &str = "flowgate.contact-export/1";

/// Which contact a request is about: its id, or an identifier WhatsApp
/// knows it by.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    #[schema(value_type = Option<String>)]
    pub contact_id: Option<ContactId>,
    /// The WhatsApp id (phone number).
    pub wa_id: Option<String>,
    /// The business-scoped user id.
    pub user_id: Option<String>,
}

/// The kind of a data-subject request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RequestKind {
    Access,
    Rectification,
    Erasure,
    Restriction,
    LiftRestriction,
    Objection,
    WithdrawObjection,
}

/// A data-subject request as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestRecord {
    #[schema(value_type = String)]
    pub id: RequestId,
    /// Order of receipt.
    pub seq: u64,
    pub kind: RequestKind,
    /// The contact (a random id; after erasure it resolves to nothing).
    #[schema(value_type = String)]
    pub contact: ContactId,
    /// `completed`.
    pub status: String,
    pub received_at: u64,
    pub completed_at: Option<u64>,
    /// What was done, without personal data.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// A plugin state value: text when it is UTF-8, always hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StateValue {
    pub text: Option<String>,
    pub hex: String,
}

/// One installation's state about the contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginStateExport {
    #[schema(value_type = String)]
    pub installation: InstallationId,
    /// The plugin of the installation (`null` once it was removed).
    pub plugin: Option<String>,
    pub entries: BTreeMap<String, StateValue>,
}

/// The contact's profile as held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProfileExport {
    #[schema(value_type = String)]
    pub id: ContactId,
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub profile_name: Option<String>,
    pub labels: Vec<String>,
    #[schema(value_type = Option<Object>)]
    pub lead_score: Option<LeadScore>,
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

/// Everything held about one contact (access and portability). Documented
/// in `docs/data-subject-export.md` and in `/openapi.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContactExport {
    /// [`EXPORT_SCHEMA`].
    pub schema: String,
    #[schema(value_type = String)]
    pub tenant: TenantId,
    pub exported_at: u64,
    pub profile: ProfileExport,
    /// Consent given and withdrawn, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub consent_ledger: Vec<ConsentRecord>,
    /// Message metadata, previews and stored content, oldest first.
    pub messages: Vec<messages::MessageRecord>,
    /// What each plugin installation keeps about the contact.
    pub plugin_state: Vec<PluginStateExport>,
    /// The contact's pseudonym in the audit trail.
    pub audit_pseudonym: String,
    /// Audit entries about the contact, oldest first.
    pub audit: Vec<AuditEntry>,
}

/// Why a request could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum DsrError {
    #[error("no contact matches the request")]
    UnknownContact,
    #[error("name the contact by `contact_id`, `wa_id` or `user_id`")]
    NoSubject,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Data(#[from] DataError),
}

/// What a request produced: writes, audit entries, the request record, and
/// whether the contact's key is to be shredded once they are durable.
pub struct Outcome<T> {
    pub batch: Batch,
    pub audit: Vec<AuditDraft>,
    pub request: RequestRecord,
    pub result: T,
    pub shred: Option<ContactId>,
}

/// Context of one request.
pub struct Dsr<'v> {
    pub vault: &'v Vault,
    pub tenant: TenantId,
    pub actor: Actor,
    pub now: u64,
}

impl<'v> Dsr<'v> {
    fn contacts(&self) -> Result<Contacts<'v>, DsrError> {
        Ok(Contacts::of(self.vault, self.tenant)?)
    }

    fn find(&self, subject: &Subject) -> Result<LoadedContact, DsrError> {
        let contacts = self.contacts()?;
        let found = match (&subject.contact_id, &subject.wa_id, &subject.user_id) {
            (Some(id), _, _) => contacts.load(id)?,
            (None, None, None) => return Err(DsrError::NoSubject),
            (None, wa_id, user_id) => {
                contacts.find_and_load(wa_id.as_deref(), user_id.as_deref())?
            }
        };
        found.ok_or(DsrError::UnknownContact)
    }

    fn pseudonym(&self, contact: &ContactId) -> Result<String, DsrError> {
        let keys = self.tenant_keys()?;
        Ok(audit::contact_pseudonym(&keys, contact))
    }

    // The key ring's and the store's errors reach `DsrError` as the data
    // errors they are (its `Data` variant), as the API maps them.
    fn tenant_keys(&self) -> Result<Arc<TenantKeys>, DataError> {
        Ok(self.vault.keys.tenant(&self.tenant)?)
    }

    fn finish<T>(
        &self,
        mut batch: Batch,
        kind: RequestKind,
        contact: ContactId,
        details: serde_json::Value,
        result: T,
        shred: bool,
    ) -> Result<Outcome<T>, DsrError> {
        let request = RequestRecord {
            id: RequestId::generate(),
            seq: self.vault.store.next_id().map_err(DataError::Store)?,
            kind,
            contact,
            status: "completed".into(),
            received_at: self.now,
            completed_at: Some(self.now),
            details: details.clone(),
        };
        let keys = self.tenant_keys()?;
        self.vault.stage(
            &mut batch,
            &keys.records,
            &self.tenant,
            Kind::Requests,
            request.id.as_bytes(),
            &request,
        );
        let action = format!(
            "dsr.{}",
            serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        );
        let draft = AuditDraft::new(self.tenant, self.now, self.actor.clone(), &action)
            .subject(self.pseudonym(&contact)?)
            .details(serde_json::json!({"request": request.id, "result": details}));
        Ok(Outcome {
            batch,
            audit: vec![draft],
            request,
            result,
            shred: shred.then_some(contact),
        })
    }

    /// Access and portability: everything held about the contact.
    pub fn access(&self, subject: &Subject) -> Result<Outcome<ContactExport>, DsrError> {
        let loaded = self.find(subject)?;
        let export = self.export(&loaded)?;
        let details = serde_json::json!({
            "messages": export.messages.len(),
            "consent_records": export.consent_ledger.len(),
            "plugin_states": export.plugin_state.len(),
            "audit_entries": export.audit.len(),
        });
        self.finish(
            Batch::new(),
            RequestKind::Access,
            loaded.contact.id,
            details,
            export,
            false,
        )
    }

    /// Build the export of a loaded contact.
    pub fn export(&self, loaded: &LoadedContact) -> Result<ContactExport, DsrError> {
        let c = &loaded.contact;
        let ledger = ConsentLedger::of(self.vault, self.tenant)?;
        let installations =
            crate::tenancy::installations::Installation::list(self.vault, &self.tenant)?;
        let states = plugin_state::all_for_contact(self.vault, &self.tenant, &c.id, &loaded.key)?
            .into_iter()
            .map(|(installation, state)| PluginStateExport {
                plugin: installations
                    .iter()
                    .find(|i| i.id == installation)
                    .map(|i| i.plugin_id.clone()),
                installation,
                entries: state
                    .entries
                    .into_iter()
                    .map(|(k, v)| {
                        // Text only when it reads as text: plugins often
                        // keep binary counters, which are valid UTF-8 but
                        // meaningless as characters.
                        let text = String::from_utf8(v.clone())
                            .ok()
                            .filter(|t| !t.chars().any(|c| c.is_control() && !c.is_whitespace()));
                        let value = StateValue {
                            text,
                            hex: crate::crypto::to_hex(&v),
                        };
                        (k, value)
                    })
                    .collect(),
            })
            .collect();
        let pseudonym = self.pseudonym(&c.id)?;
        Ok(ContactExport {
            schema: EXPORT_SCHEMA.into(),
            tenant: self.tenant,
            exported_at: self.now,
            profile: ProfileExport {
                id: c.id,
                wa_id: c.wa_id.clone(),
                user_id: c.user_id.clone(),
                profile_name: c.profile_name.clone(),
                labels: c.labels.clone(),
                lead_score: c.lead_score.clone(),
                opted_out: c.opted_out,
                consents: c.consents.clone(),
                restricted: c.restricted,
                objections: c.objections.clone(),
                handed_off: c.handed_off,
                first_seen: c.first_seen,
                last_seen: c.last_seen,
                last_inbound: c.last_inbound,
            },
            consent_ledger: ledger.history(&c.id)?,
            messages: messages::for_contact(self.vault, &self.tenant, &c.id, &loaded.key)?,
            plugin_state: states,
            audit: audit::about(self.vault, &self.tenant, &pseudonym)?,
            audit_pseudonym: pseudonym,
        })
    }

    /// Rectification of the stored fields.
    pub fn rectify(
        &self,
        subject: &Subject,
        changes: &Rectification,
    ) -> Result<Outcome<ProfileExport>, DsrError> {
        let mut loaded = self.find(subject)?;
        let contacts = self.contacts()?;
        let mut changed = Vec::new();
        if let Some(name) = &changes.profile_name {
            loaded.contact.profile_name = name.clone().filter(|n| !n.trim().is_empty());
            changed.push("profile_name");
        }
        if let Some(labels) = &changes.labels {
            if labels
                .iter()
                .any(|l| l.trim().is_empty() || l.chars().count() > 64)
            {
                return Err(DsrError::Invalid(
                    "labels must be 1 to 64 characters".into(),
                ));
            }
            loaded.contact.labels = labels.clone();
            changed.push("labels");
        }
        if changes.clear_lead_score {
            loaded.contact.lead_score = None;
            changed.push("lead_score");
        }
        if let Some(wa_id) = &changes.wa_id {
            let normalized = crate::data::contacts::normalize_wa_id(wa_id);
            if normalized.is_empty() {
                return Err(DsrError::Invalid("wa_id must contain digits".into()));
            }
            if contacts
                .find(Some(&normalized), None)?
                .is_some_and(|other| other != loaded.contact.id)
            {
                return Err(DsrError::Invalid("another contact has this wa_id".into()));
            }
            loaded.contact.wa_id = Some(normalized);
            changed.push("wa_id");
        }
        if changed.is_empty() {
            return Err(DsrError::Invalid("nothing to rectify".into()));
        }
        let mut batch = Batch::new();
        contacts.stage(&mut batch, &loaded);
        let export = self.export(&loaded)?.profile;
        self.finish(
            batch,
            RequestKind::Rectification,
            loaded.contact.id,
            serde_json::json!({"fields": changed}),
            export,
            false,
        )
    }

    /// Erasure: every record about the contact goes, then its key is
    /// shredded (by the caller, once the deletions are durable), so copies
    /// elsewhere become unreadable. Consent records stay as the tenant's
    /// minimal proof: a random contact id that now resolves to no one, the
    /// purpose, the decision, a keyed hash of the evidence and the time.
    pub fn erase(&self, subject: &Subject) -> Result<Outcome<()>, DsrError> {
        let loaded = match (self.find(subject), subject.contact_id) {
            (Ok(loaded), _) => loaded,
            // Asked again for a contact already erased (a retry after a
            // lost answer or a crash): the same answer, and the key
            // shredded if it was not yet.
            (Err(DsrError::UnknownContact), Some(id)) => {
                let earlier = requests(self.vault, &self.tenant)?
                    .into_iter()
                    .rev()
                    .find(|r| r.kind == RequestKind::Erasure && r.contact == id)
                    .ok_or(DsrError::UnknownContact)?;
                return Ok(Outcome {
                    batch: Batch::new(),
                    audit: Vec::new(),
                    request: earlier,
                    result: (),
                    shred: Some(id),
                });
            }
            (Err(error), _) => return Err(error),
        };
        let id = loaded.contact.id;
        let key = &loaded.key;
        let contacts = self.contacts()?;
        let mut batch = Batch::new();
        contacts.stage_removal(&mut batch, &loaded);
        // Messages, with their retention index entries (which name the
        // contact and the times it wrote).
        let message_prefix = [b"m".as_slice(), id.as_bytes()].concat();
        let mut removed_messages = 0;
        for (record_key, sealed) in
            scan_all(self.vault, &self.tenant, Kind::Messages, &message_prefix)?
        {
            let record: messages::MessageRecord =
                self.vault
                    .open(key, &self.tenant, Kind::Messages, &record_key, &sealed)?;
            for (class, at, target) in messages::index_entries(&id, &record) {
                expiry::stage_unindex(&mut batch, &self.tenant, class, at, &target);
            }
            batch.delete(self.tenant, Kind::Messages, record_key);
            removed_messages += 1;
        }
        let mut removed_states = 0;
        for (installation, map) in
            plugin_state::all_for_contact(self.vault, &self.tenant, &id, key)?
        {
            let (at, target) = plugin_state::index_entry(&installation, &id, &map);
            expiry::stage_unindex(
                &mut batch,
                &self.tenant,
                expiry::Class::PluginState,
                at,
                &target,
            );
            batch.delete(self.tenant, Kind::PluginState, target);
            removed_states += 1;
        }
        // Replies still queued for the contact.
        let mut removed_replies = 0;
        for (key, _) in scan_all(self.vault, &TenantId::SYSTEM, Kind::Outbox, b"")? {
            if key.get(8..24) == Some(self.tenant.as_bytes().as_slice())
                && key.get(24..40) == Some(id.as_bytes().as_slice())
            {
                // And a status webhook's confirmation of it, if any
                // (keyed by the reply's sequence, see `service::outbox`).
                batch.delete(self.tenant, Kind::Outbox, key[..8].to_vec());
                batch.delete(TenantId::SYSTEM, Kind::Outbox, key);
                removed_replies += 1;
            }
        }
        // Deliveries acknowledged but not yet processed (inbox keys are
        // `shard ‖ seq ‖ tenant ‖ contact`, see `service::inbox`): they
        // would otherwise bring the contact back when processed.
        let mut removed_deliveries = 0;
        for (key, _) in scan_all(self.vault, &TenantId::SYSTEM, Kind::Inbox, b"")? {
            if key.get(9..25) == Some(self.tenant.as_bytes().as_slice())
                && key.get(25..41) == Some(id.as_bytes().as_slice())
            {
                batch.delete(TenantId::SYSTEM, Kind::Inbox, key);
                removed_deliveries += 1;
            }
        }
        // The key is shredded once this is durable; until then this
        // marker says it must be, so a crash in between cannot leave it.
        batch.put(
            TenantId::SYSTEM,
            Kind::Requests,
            pending_shred_key(&self.tenant, &id),
            Vec::new(),
        );
        let details = serde_json::json!({
            "messages": removed_messages,
            "plugin_states": removed_states,
            "queued_replies": removed_replies,
            "queued_deliveries": removed_deliveries,
            "consent_records_kept": ConsentLedger::of(self.vault, self.tenant)?.history(&id)?.len(),
        });
        self.finish(batch, RequestKind::Erasure, id, details, (), true)
    }

    /// Restriction (kept, not processed) and its lifting.
    pub fn restrict(
        &self,
        subject: &Subject,
        restricted: bool,
    ) -> Result<Outcome<ProfileExport>, DsrError> {
        let mut loaded = self.find(subject)?;
        loaded.contact.restricted = restricted;
        let mut batch = Batch::new();
        self.contacts()?.stage(&mut batch, &loaded);
        let kind = if restricted {
            RequestKind::Restriction
        } else {
            RequestKind::LiftRestriction
        };
        let export = self.export(&loaded)?.profile;
        self.finish(
            batch,
            kind,
            loaded.contact.id,
            serde_json::json!({"restricted": restricted}),
            export,
            false,
        )
    }

    /// Objection to a purpose (and its withdrawal): plugins with that
    /// purpose, or a narrower one, stop running for the contact.
    pub fn object(
        &self,
        subject: &Subject,
        purpose: &Purpose,
        objecting: bool,
    ) -> Result<Outcome<ProfileExport>, DsrError> {
        let mut loaded = self.find(subject)?;
        let objections = &mut loaded.contact.objections;
        if objecting {
            if !objections.contains(purpose) {
                objections.push(purpose.clone());
            }
        } else {
            objections.retain(|p| p != purpose);
        }
        let mut batch = Batch::new();
        self.contacts()?.stage(&mut batch, &loaded);
        let kind = if objecting {
            RequestKind::Objection
        } else {
            RequestKind::WithdrawObjection
        };
        let export = self.export(&loaded)?.profile;
        self.finish(
            batch,
            kind,
            loaded.contact.id,
            serde_json::json!({"purpose": purpose}),
            export,
            false,
        )
    }
}

/// Changes to a contact's stored fields.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rectification {
    /// A corrected profile name (`null` removes it).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub profile_name: Option<Option<String>>,
    /// The labels as they should be.
    pub labels: Option<Vec<String>>,
    /// Remove the lead score and its reason.
    #[serde(default)]
    pub clear_lead_score: bool,
    /// A corrected WhatsApp id.
    pub wa_id: Option<String>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

fn scan_all(
    vault: &Vault,
    tenant: &TenantId,
    kind: Kind,
    prefix: &[u8],
) -> Result<crate::store::Entries, DataError> {
    let mut all = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = vault
            .store
            .scan(tenant, kind, prefix, after.as_deref(), 1024)?;
        if page.is_empty() {
            return Ok(all);
        }
        after = page.last().map(|(k, _)| k.clone());
        all.extend(page);
    }
}

/// The system record that a contact's key is still to be shredded.
fn pending_shred_key(tenant: &TenantId, contact: &ContactId) -> Vec<u8> {
    [tenant.as_bytes().as_slice(), contact.as_bytes()].concat()
}

/// Contacts whose erasure is committed and whose key may not be shredded
/// yet (a crash came in between): (tenant, contact).
pub fn pending_shreds(vault: &Vault) -> Result<Vec<(TenantId, ContactId)>, DataError> {
    Ok(scan_all(vault, &TenantId::SYSTEM, Kind::Requests, b"")?
        .into_iter()
        .filter_map(|(key, _)| {
            Some((
                TenantId::from_slice(key.get(..16)?)?,
                ContactId::from_slice(key.get(16..32)?)?,
            ))
        })
        .collect())
}

/// Finish every erasure a crash interrupted between its commit and its
/// shredding; returns how many.
pub fn finish_pending_shreds(vault: &Vault) -> Result<usize, DataError> {
    let pending = pending_shreds(vault)?;
    for (tenant, contact) in &pending {
        finish_shred(vault, tenant, contact)?;
    }
    Ok(pending.len())
}

/// Shred a contact's key, then forget that it was pending.
pub fn finish_shred(
    vault: &Vault,
    tenant: &TenantId,
    contact: &ContactId,
) -> Result<(), DataError> {
    vault.keys.shred_contact(tenant, contact)?;
    let mut batch = Batch::new();
    batch.delete(
        TenantId::SYSTEM,
        Kind::Requests,
        pending_shred_key(tenant, contact),
    );
    vault.store.commit(&batch)?;
    Ok(())
}

/// Read a tenant's request records, oldest id first.
pub fn requests(vault: &Vault, tenant: &TenantId) -> Result<Vec<RequestRecord>, DataError> {
    let mut records: Vec<RequestRecord> =
        crate::tenancy::read_all(vault, tenant, Kind::Requests, b"")?;
    records.sort_by_key(|r| r.seq);
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_erasure_cut_off_before_its_key_is_shredded_is_finished_and_answers_again() {
        let dir = tempfile::tempdir().unwrap();
        let vault = crate::data::test_vault(dir.path());
        let tenant = TenantId::generate();
        vault.keys.create_tenant(&tenant).unwrap();
        let contacts = Contacts::of(&vault, tenant).unwrap();
        let loaded = contacts
            .resolve_inbound(Some("4915100000001"), None, Some("Ana"), 1)
            .unwrap();
        let id = loaded.contact.id;
        let mut batch = Batch::new();
        contacts.stage(&mut batch, &loaded);
        vault.store.commit(&batch).unwrap();
        let dsr = Dsr {
            vault: &vault,
            tenant,
            actor: Actor::System,
            now: 10,
        };
        let subject = Subject {
            contact_id: Some(id),
            ..Subject::default()
        };
        let outcome = dsr.erase(&subject).unwrap();
        assert_eq!(outcome.shred, Some(id));
        // The erasure's writes land; the process dies before the key goes.
        vault.store.commit(&outcome.batch).unwrap();
        assert!(vault.keys.contact(&tenant, &id).unwrap().is_some());
        assert_eq!(pending_shreds(&vault).unwrap(), vec![(tenant, id)]);
        // Asked again: the same request, not "no such contact".
        let again = dsr.erase(&subject).unwrap();
        assert_eq!(again.request.id, outcome.request.id);
        assert!(again.batch.is_empty());
        // The next start (or maintenance run) finishes it.
        assert_eq!(finish_pending_shreds(&vault).unwrap(), 1);
        assert!(vault.keys.contact(&tenant, &id).unwrap().is_none());
        assert!(pending_shreds(&vault).unwrap().is_empty());
    }
}
