//! Contacts: found by WhatsApp id or BSUID, holding only what the service
//! needs.
//!
//! A contact record holds the sealed identifiers, profile name, labels, lead
//! score and reason, consent state (derived from the ledger), restriction
//! and objection flags, first/last seen and the last inbound message time
//! (for the 24-hour window). It is sealed with the contact's own key. The
//! lookup index maps keyed hashes of the identifiers to the contact id: no
//! identifier is stored in the clear.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{DataError, Vault};
use crate::crypto::{SecretKey, TenantKeys};
use crate::ids::{ContactId, TenantId};
use crate::plugin::Purpose;
use crate::store::{Batch, Kind};
use crate::view::{ContactData, ProcessingState};

/// WhatsApp's customer service window.
pub const SERVICE_WINDOW_SECS: u64 = 24 * 60 * 60;

/// A lead score with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadScore {
    pub score: u8,
    pub reason: String,
    /// Which installation set it.
    pub by: String,
    pub at: u64,
}

/// A contact, opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub id: ContactId,
    /// WhatsApp id (phone number, digits only).
    pub wa_id: Option<String>,
    /// Business-scoped user id.
    pub user_id: Option<String>,
    pub profile_name: Option<String>,
    pub labels: Vec<String>,
    pub lead_score: Option<LeadScore>,
    /// Opted out of all messages (STOP), derived from the consent ledger.
    pub opted_out: bool,
    /// Purposes consented to, derived from the consent ledger.
    pub consents: Vec<Purpose>,
    /// Processing restricted (GDPR art. 18).
    pub restricted: bool,
    /// Purposes objected to (GDPR art. 21).
    pub objections: Vec<Purpose>,
    /// A human took over; automatic replies are paused.
    pub handed_off: bool,
    pub first_seen: u64,
    pub last_seen: u64,
    /// When the contact last wrote: opens WhatsApp's 24-hour window.
    pub last_inbound: Option<u64>,
}

impl Contact {
    fn new(id: ContactId, now: u64) -> Contact {
        Contact {
            id,
            wa_id: None,
            user_id: None,
            profile_name: None,
            labels: Vec::new(),
            lead_score: None,
            opted_out: false,
            consents: Vec::new(),
            restricted: false,
            objections: Vec::new(),
            handed_off: false,
            first_seen: now,
            last_seen: now,
            last_inbound: None,
        }
    }

    /// What the view builder needs of the contact's processing state.
    pub fn processing_state(&self) -> ProcessingState {
        ProcessingState {
            restricted: self.restricted,
            objections: self.objections.clone(),
            consents: self.consents.clone(),
        }
    }

    /// The contact's data for building a plugin's view.
    pub fn view_data(&self) -> ContactData {
        ContactData {
            wa_id: self.wa_id.clone(),
            user_id: self.user_id.clone(),
            profile_name: self.profile_name.clone(),
            labels: self.labels.clone(),
            lead_score: self.lead_score.as_ref().map(|s| s.score),
        }
    }

    /// Whether a free-form message may be sent at `now`.
    pub fn service_window_open(&self, now: u64) -> bool {
        self.last_inbound
            .is_some_and(|at| now.saturating_sub(at) < SERVICE_WINDOW_SECS)
    }
}

/// WhatsApp ids are digits; senders and APIs add `+`, spaces or dashes.
pub fn normalize_wa_id(wa_id: &str) -> String {
    wa_id.chars().filter(char::is_ascii_digit).collect()
}

const INDEX_WA_ID: u8 = b'w';
const INDEX_USER_ID: u8 = b'u';

/// A contact with the key that opens it, as loaded for one event.
#[derive(Debug, Clone)]
pub struct LoadedContact {
    pub contact: Contact,
    pub key: SecretKey,
    /// The record as it was stored, to stage index changes.
    previous: Option<Contact>,
    /// Its sealed bytes as read: staging a change expects them unchanged,
    /// so a write computed from a record someone else has since rewritten
    /// (an API change, an erasure) is refused rather than undoing theirs.
    stored: Option<Vec<u8>>,
}

impl LoadedContact {
    /// A contact seen for the first time at `at`, not yet written.
    fn created(id: ContactId, key: SecretKey, at: u64) -> LoadedContact {
        LoadedContact {
            contact: Contact::new(id, at),
            key,
            previous: None,
            stored: None,
        }
    }

    /// Whether the contact was created by this event.
    pub fn is_new(&self) -> bool {
        self.previous.is_none()
    }

    /// Whether the contact differs from its record as loaded.
    pub fn is_changed(&self) -> bool {
        self.previous.as_ref() != Some(&self.contact)
    }
}

/// A contact named by an acknowledged delivery: its id and the key the
/// delivery is sealed with (see [`Contacts::admit`]).
#[derive(Debug, Clone)]
pub struct Admitted {
    pub id: ContactId,
    pub key: SecretKey,
    /// Created for this delivery (its key is new).
    pub created: bool,
}

/// A loaded contact updated by an inbound message: identifiers linked,
/// profile name and seen times.
fn touched(
    mut loaded: LoadedContact,
    wa_id: Option<&str>,
    user_id: Option<&str>,
    profile_name: Option<&str>,
    at: u64,
) -> LoadedContact {
    let contact = &mut loaded.contact;
    if let Some(wa_id) = wa_id.map(normalize_wa_id).filter(|w| !w.is_empty()) {
        contact.wa_id = Some(wa_id);
    }
    if let Some(user_id) = user_id.filter(|u| !u.is_empty()) {
        contact.user_id = Some(user_id.to_owned());
    }
    if let Some(name) = profile_name.filter(|n| !n.trim().is_empty()) {
        contact.profile_name = Some(name.to_owned());
    }
    contact.last_seen = contact.last_seen.max(at);
    contact.last_inbound = Some(contact.last_inbound.unwrap_or(0).max(at));
    loaded
}

/// One tenant's contacts.
pub struct Contacts<'v> {
    vault: &'v Vault,
    tenant: TenantId,
    keys: Arc<TenantKeys>,
}

impl<'v> Contacts<'v> {
    /// The contacts of `tenant`.
    pub fn of(vault: &'v Vault, tenant: TenantId) -> Result<Contacts<'v>, DataError> {
        let keys = vault.keys.tenant(&tenant)?;
        Ok(Contacts {
            vault,
            tenant,
            keys,
        })
    }

    fn index_key(&self, kind: u8, identifier: &str) -> Vec<u8> {
        let label = if kind == INDEX_WA_ID {
            "wa_id"
        } else {
            "user_id"
        };
        let mut key = vec![kind];
        key.extend_from_slice(&self.keys.lookup_hash(label, identifier));
        key
    }

    fn lookup(&self, kind: u8, identifier: &str) -> Result<Option<ContactId>, DataError> {
        let key = self.index_key(kind, identifier);
        Ok(self
            .vault
            .store
            .get(&self.tenant, Kind::ContactIndex, &key)?
            .and_then(|id| ContactId::from_slice(&id)))
    }

    /// Find a contact by WhatsApp id or BSUID (either may be absent).
    pub fn find(
        &self,
        wa_id: Option<&str>,
        user_id: Option<&str>,
    ) -> Result<Option<ContactId>, DataError> {
        if let Some(wa_id) = wa_id.map(normalize_wa_id).filter(|w| !w.is_empty())
            && let Some(id) = self.lookup(INDEX_WA_ID, &wa_id)?
        {
            return Ok(Some(id));
        }
        match user_id {
            Some(user_id) if !user_id.is_empty() => self.lookup(INDEX_USER_ID, user_id),
            _ => Ok(None),
        }
    }

    /// Load a contact and its key; `None` when unknown or erased.
    pub fn load(&self, id: &ContactId) -> Result<Option<LoadedContact>, DataError> {
        match self.vault.keys.contact(&self.tenant, id)? {
            Some(key) => self.load_with(id, &key),
            None => Ok(None),
        }
    }

    /// Find and load by identifiers.
    pub fn find_and_load(
        &self,
        wa_id: Option<&str>,
        user_id: Option<&str>,
    ) -> Result<Option<LoadedContact>, DataError> {
        match self.find(wa_id, user_id)? {
            Some(id) => self.load(&id),
            None => Ok(None),
        }
    }

    /// The contact behind an inbound message: found by its identifiers (and
    /// linked to whichever identifier it lacked), or created. Updates the
    /// profile name and the seen times; nothing is written until the caller
    /// commits what [`Contacts::stage`] staged.
    pub fn resolve_inbound(
        &self,
        wa_id: Option<&str>,
        user_id: Option<&str>,
        profile_name: Option<&str>,
        at: u64,
    ) -> Result<LoadedContact, DataError> {
        let normalized = wa_id.map(normalize_wa_id).filter(|w| !w.is_empty());
        let user = user_id.filter(|u| !u.is_empty());
        let loaded = match self.find_and_load(normalized.as_deref(), user)? {
            Some(loaded) => loaded,
            None => {
                let id = ContactId::generate();
                let key = self.vault.keys.create_contact(&self.tenant, &id)?;
                LoadedContact::created(id, key, at)
            }
        };
        Ok(touched(loaded, wa_id, user_id, profile_name, at))
    }

    /// The contact an acknowledged delivery named (see [`Contacts::admit`]),
    /// loaded with the key the delivery was sealed with, or created with
    /// that id when this is its first event; updated as
    /// [`Contacts::resolve_inbound`] does.
    pub fn resolve_admitted(
        &self,
        admitted: &Admitted,
        wa_id: Option<&str>,
        user_id: Option<&str>,
        profile_name: Option<&str>,
        at: u64,
    ) -> Result<LoadedContact, DataError> {
        let loaded = match self.load_with(&admitted.id, &admitted.key)? {
            Some(loaded) => loaded,
            None => LoadedContact::created(admitted.id, admitted.key.clone(), at),
        };
        Ok(touched(loaded, wa_id, user_id, profile_name, at))
    }

    /// The contact a delivery is about, for its acknowledgement: found by
    /// its identifiers or created — its id and key, and, staged into
    /// `batch`, the index entries that make the next delivery find it.
    /// Those are written on condition that the identifiers are still as
    /// read, so two deliveries racing for one new number cannot make two
    /// contacts (the loser's commit is refused and it looks again). The
    /// record itself is written by the contact's first event. `create`:
    /// false finds only (delivery statuses are about known contacts).
    pub fn admit(
        &self,
        batch: &mut Batch,
        wa_id: Option<&str>,
        user_id: Option<&str>,
        create: bool,
    ) -> Result<Option<Admitted>, DataError> {
        let identifiers = [
            (
                INDEX_WA_ID,
                wa_id.map(normalize_wa_id).filter(|w| !w.is_empty()),
            ),
            (
                INDEX_USER_ID,
                user_id.filter(|u| !u.is_empty()).map(str::to_owned),
            ),
        ];
        let mut found = Vec::with_capacity(2);
        for (kind, identifier) in &identifiers {
            let Some(identifier) = identifier else {
                continue;
            };
            let key = self.index_key(*kind, identifier);
            let stored = self
                .vault
                .store
                .get(&self.tenant, Kind::ContactIndex, &key)?;
            found.push((key, stored));
        }
        // The phone number's contact first, then the BSUID's, if its key
        // is still there (an erased contact's entries are gone with it).
        let mut existing = None;
        for (_, stored) in &found {
            if let Some(id) = stored.as_deref().and_then(ContactId::from_slice)
                && let Some(key) = self.vault.keys.contact(&self.tenant, &id)?
            {
                existing = Some(Admitted {
                    id,
                    key,
                    created: false,
                });
                break;
            }
        }
        let admitted = match existing {
            Some(admitted) => admitted,
            None if create => {
                let id = ContactId::generate();
                let key = self.vault.keys.create_contact(&self.tenant, &id)?;
                Admitted {
                    id,
                    key,
                    created: true,
                }
            }
            None => return Ok(None),
        };
        for (key, stored) in found {
            if stored.as_deref() != Some(admitted.id.as_bytes().as_slice()) {
                batch.expect(self.tenant, Kind::ContactIndex, key.clone(), stored);
                batch.put(
                    self.tenant,
                    Kind::ContactIndex,
                    key,
                    admitted.id.as_bytes().to_vec(),
                );
            }
        }
        Ok(Some(admitted))
    }

    /// Load a contact's record with a key already at hand.
    fn load_with(
        &self,
        id: &ContactId,
        key: &SecretKey,
    ) -> Result<Option<LoadedContact>, DataError> {
        let Some(stored) = self
            .vault
            .store
            .get(&self.tenant, Kind::Contacts, id.as_bytes())?
        else {
            return Ok(None);
        };
        let contact: Contact =
            self.vault
                .open(key, &self.tenant, Kind::Contacts, id.as_bytes(), &stored)?;
        Ok(Some(LoadedContact {
            previous: Some(contact.clone()),
            contact,
            key: key.clone(),
            stored: Some(stored),
        }))
    }

    /// Make `batch` apply only if the contact's record is still as it was
    /// loaded (see [`Batch::expect`]; a new contact's must still be
    /// absent), without writing it: for writes about the contact that
    /// leave its record alone (an erasure in between must not find them
    /// written back).
    pub fn expect_unchanged(&self, batch: &mut Batch, loaded: &LoadedContact) {
        batch.expect(
            self.tenant,
            Kind::Contacts,
            loaded.contact.id.as_bytes().to_vec(),
            loaded.stored.clone(),
        );
    }

    /// Stage the contact's record and any index change into `batch`, on
    /// condition that the record is still as it was loaded.
    pub fn stage(&self, batch: &mut Batch, loaded: &LoadedContact) {
        let contact = &loaded.contact;
        let previous = loaded.previous.as_ref();
        let id = contact.id.as_bytes();
        self.expect_unchanged(batch, loaded);
        self.vault.stage(
            batch,
            &loaded.key,
            &self.tenant,
            Kind::Contacts,
            id,
            contact,
        );
        let identifiers = [
            (
                INDEX_WA_ID,
                contact.wa_id.as_deref(),
                previous.and_then(|p| p.wa_id.as_deref()),
            ),
            (
                INDEX_USER_ID,
                contact.user_id.as_deref(),
                previous.and_then(|p| p.user_id.as_deref()),
            ),
        ];
        for (kind, now, before) in identifiers {
            if now == before {
                continue;
            }
            if let Some(before) = before {
                batch.delete(
                    self.tenant,
                    Kind::ContactIndex,
                    self.index_key(kind, before),
                );
            }
            if let Some(now) = now {
                batch.put(
                    self.tenant,
                    Kind::ContactIndex,
                    self.index_key(kind, now),
                    id.to_vec(),
                );
            }
        }
    }

    /// Change a contact's WhatsApp id (WhatsApp's `user_changed_number`).
    pub fn change_number(&self, loaded: &mut LoadedContact, new_wa_id: &str) {
        let normalized = normalize_wa_id(new_wa_id);
        if !normalized.is_empty() {
            loaded.contact.wa_id = Some(normalized);
        }
    }

    /// Stage the removal of a contact's record and index entries (erasure),
    /// on condition that the record is still as it was loaded: an event
    /// processed meanwhile may have written data the caller's scan missed.
    pub fn stage_removal(&self, batch: &mut Batch, loaded: &LoadedContact) {
        let contact = &loaded.contact;
        self.expect_unchanged(batch, loaded);
        batch.delete(self.tenant, Kind::Contacts, contact.id.as_bytes().to_vec());
        if let Some(wa_id) = &contact.wa_id {
            batch.delete(
                self.tenant,
                Kind::ContactIndex,
                self.index_key(INDEX_WA_ID, wa_id),
            );
        }
        if let Some(user_id) = &contact.user_id {
            batch.delete(
                self.tenant,
                Kind::ContactIndex,
                self.index_key(INDEX_USER_ID, user_id),
            );
        }
    }

    /// The tenant's keys (pseudonyms, hashes).
    pub fn tenant_keys(&self) -> &TenantKeys {
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_vault as vault;

    #[test]
    fn contacts_are_found_by_phone_or_bsuid_and_linked() {
        let dir = tempfile::tempdir().unwrap();
        let vault = vault(dir.path());
        let tenant = TenantId::generate();
        vault.keys.create_tenant(&tenant).unwrap();
        let contacts = Contacts::of(&vault, tenant).unwrap();

        // First seen with a BSUID only.
        let first = contacts
            .resolve_inbound(None, Some("BR.1502576394655843"), Some("Rafa"), 100)
            .unwrap();
        assert!(first.is_new());
        let mut batch = Batch::new();
        contacts.stage(&mut batch, &first);
        vault.store.commit(&batch).unwrap();

        // Later with both: the same contact, now findable by phone too.
        let second = contacts
            .resolve_inbound(
                Some("+55 11 99999-0000"),
                Some("BR.1502576394655843"),
                None,
                200,
            )
            .unwrap();
        assert_eq!(second.contact.id, first.contact.id);
        assert_eq!(second.contact.profile_name.as_deref(), Some("Rafa"));
        let mut batch = Batch::new();
        contacts.stage(&mut batch, &second);
        vault.store.commit(&batch).unwrap();
        assert_eq!(
            contacts.find(Some("5511999990000"), None).unwrap(),
            Some(first.contact.id)
        );
        let loaded = contacts.load(&first.contact.id).unwrap().unwrap();
        assert_eq!(loaded.contact.last_inbound, Some(200));
        assert_eq!(loaded.contact.first_seen, 100);
    }

    #[test]
    fn a_changed_number_moves_the_index_entry() {
        let dir = tempfile::tempdir().unwrap();
        let vault = vault(dir.path());
        let tenant = TenantId::generate();
        vault.keys.create_tenant(&tenant).unwrap();
        let contacts = Contacts::of(&vault, tenant).unwrap();
        let loaded = contacts
            .resolve_inbound(Some("111"), None, None, 1)
            .unwrap();
        let mut batch = Batch::new();
        contacts.stage(&mut batch, &loaded);
        vault.store.commit(&batch).unwrap();

        let mut loaded = contacts.find_and_load(Some("111"), None).unwrap().unwrap();
        contacts.change_number(&mut loaded, "222");
        let mut batch = Batch::new();
        contacts.stage(&mut batch, &loaded);
        vault.store.commit(&batch).unwrap();
        assert_eq!(contacts.find(Some("111"), None).unwrap(), None);
        assert_eq!(
            contacts.find(Some("222"), None).unwrap(),
            Some(loaded.contact.id)
        );
    }

    #[test]
    fn a_write_computed_from_a_contact_changed_since_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let vault = vault(dir.path());
        let tenant = TenantId::generate();
        vault.keys.create_tenant(&tenant).unwrap();
        let contacts = Contacts::of(&vault, tenant).unwrap();
        let created = contacts
            .resolve_inbound(Some("111"), None, None, 1)
            .unwrap();
        let mut batch = Batch::new();
        contacts.stage(&mut batch, &created);
        vault.store.commit(&batch).unwrap();

        // A worker and an API call load the same record.
        let worker = contacts.load(&created.contact.id).unwrap().unwrap();
        let mut api = contacts.load(&created.contact.id).unwrap().unwrap();
        assert!(!worker.is_changed());
        api.contact.restricted = true;
        assert!(api.is_changed());
        let mut batch = Batch::new();
        contacts.stage(&mut batch, &api);
        vault.store.commit(&batch).unwrap();

        // The worker's write, and a write that only expects the record
        // unchanged, are both refused: the restriction stands.
        let mut stale = Batch::new();
        contacts.stage(&mut stale, &worker);
        assert!(matches!(
            vault.store.commit(&stale),
            Err(crate::store::StoreError::Conflict)
        ));
        let mut beside = Batch::new();
        contacts.expect_unchanged(&mut beside, &worker);
        beside.put(tenant, Kind::Messages, b"m".to_vec(), b"x".to_vec());
        assert!(vault.store.commit(&beside).is_err());
        let now = contacts.load(&created.contact.id).unwrap().unwrap();
        assert!(now.contact.restricted);
        assert_eq!(
            vault.store.get(&tenant, Kind::Messages, b"m").unwrap(),
            None
        );
    }

    #[test]
    fn the_window_is_open_for_24_hours_after_the_last_inbound_message() {
        let mut contact = Contact::new(ContactId::generate(), 0);
        assert!(!contact.service_window_open(10));
        contact.last_inbound = Some(1000);
        assert!(contact.service_window_open(1000 + SERVICE_WINDOW_SECS - 1));
        assert!(!contact.service_window_open(1000 + SERVICE_WINDOW_SECS));
    }
}
