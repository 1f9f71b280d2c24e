//! The consent ledger: append-only records of what a contact agreed to or
//! withdrew, from which the current state is derived.
//!
//! Records are sealed with the tenant's record key, not the contact's: they
//! are the tenant's proof and outlive an erasure, in the minimal form the law
//! allows — a random contact id that no longer resolves to anyone, the
//! purpose, the decision, its source, a keyed hash of the evidence and the
//! time. They are kept 7 years (see [`super::expiry`]).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{DataError, Vault};
use crate::crypto::TenantKeys;
use crate::ids::{ContactId, TenantId};
use crate::plugin::Purpose;
use crate::store::{Batch, Kind};

/// How long consent records are kept: 7 years.
pub const CONSENT_RETENTION_SECS: u64 = 7 * 365 * 24 * 60 * 60 + 2 * 24 * 60 * 60;

/// What a consent record is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "subject", content = "purpose", rename_all = "kebab-case")]
pub enum Subject {
    /// Receiving messages at all (STOP / START).
    Messaging,
    /// Processing for one purpose.
    Purpose(Purpose),
}

/// Granted or withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    Granted,
    Withdrawn,
}

/// Where the decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// A keyword the contact sent (STOP, START…).
    Keyword,
    /// The tenant's API (for example a consent form on the tenant's site).
    Api,
    /// Imported from the tenant's earlier records.
    Import,
}

/// A keyed hash of the evidence (a message id, a form submission id), so the
/// proof can be checked against the original without storing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// What kind of evidence (`whatsapp-message`, `api-request`, …).
    pub kind: String,
    /// blake3 keyed hash of the evidence value, hex.
    pub digest: String,
}

impl Evidence {
    /// Hash an evidence value with the tenant's secret-hash key.
    pub fn of(keys: &TenantKeys, kind: &str, value: &str) -> Evidence {
        let mut hasher = blake3::Hasher::new_keyed(&keys.secrets);
        hasher.update(b"consent-evidence\0");
        hasher.update(kind.as_bytes());
        hasher.update(&[0]);
        hasher.update(value.as_bytes());
        Evidence {
            kind: kind.to_owned(),
            digest: hasher.finalize().to_hex().to_string(),
        }
    }
}

/// One ledger record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub contact: ContactId,
    #[serde(flatten)]
    pub subject: Subject,
    pub decision: Decision,
    pub source: Source,
    pub evidence: Option<Evidence>,
    /// Seconds since the Unix epoch.
    pub at: u64,
}

/// The state derived from a contact's ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsentState {
    pub opted_out: bool,
    pub consents: BTreeSet<Purpose>,
}

impl ConsentState {
    /// The state after `record`: its decision replaces the one before for
    /// its subject.
    pub fn apply(&mut self, record: &ConsentRecord) {
        match (&record.subject, record.decision) {
            (Subject::Messaging, Decision::Withdrawn) => self.opted_out = true,
            (Subject::Messaging, Decision::Granted) => self.opted_out = false,
            (Subject::Purpose(p), Decision::Granted) => {
                self.consents.insert(p.clone());
            }
            (Subject::Purpose(p), Decision::Withdrawn) => {
                self.consents.remove(p);
            }
        }
    }
}

/// Fold records (in ledger order) into a state: the latest decision per
/// subject wins. The current state is kept on the contact and changed one
/// record at a time ([`ConsentState::apply`]), never refolded from the
/// ledger: retention deletes old records, and a STOP whose record expired
/// must still stand.
pub fn derive(records: &[ConsentRecord]) -> ConsentState {
    let mut state = ConsentState::default();
    for record in records {
        state.apply(record);
    }
    state
}

fn ledger_key(contact: &ContactId, seq: u64) -> Vec<u8> {
    let mut key = contact.as_bytes().to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// One tenant's consent ledger.
pub struct ConsentLedger<'v> {
    vault: &'v Vault,
    tenant: TenantId,
    keys: std::sync::Arc<TenantKeys>,
}

impl<'v> ConsentLedger<'v> {
    /// The ledger of `tenant`.
    pub fn of(vault: &'v Vault, tenant: TenantId) -> Result<ConsentLedger<'v>, DataError> {
        Ok(ConsentLedger {
            keys: vault.keys.tenant(&tenant)?,
            vault,
            tenant,
        })
    }

    /// Stage an appended record. Keys are the contact id and a store-wide
    /// monotonic sequence number, so records are never overwritten and read
    /// back in order.
    pub fn stage_append(&self, batch: &mut Batch, record: &ConsentRecord) -> Result<(), DataError> {
        let seq = self.vault.store.next_id()?;
        let key = ledger_key(&record.contact, seq);
        self.vault.stage(
            batch,
            &self.keys.records,
            &self.tenant,
            Kind::Consent,
            &key,
            record,
        );
        super::expiry::stage_index(
            batch,
            &self.tenant,
            super::expiry::Class::Consent,
            record.at,
            &key,
        );
        Ok(())
    }

    /// A contact's records, oldest first.
    pub fn history(&self, contact: &ContactId) -> Result<Vec<ConsentRecord>, DataError> {
        let mut records = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.vault.store.scan(
                &self.tenant,
                Kind::Consent,
                contact.as_bytes(),
                after.as_deref(),
                256,
            )?;
            if page.is_empty() {
                break;
            }
            for (key, sealed) in &page {
                records.push(self.vault.open(
                    &self.keys.records,
                    &self.tenant,
                    Kind::Consent,
                    key,
                    sealed,
                )?);
            }
            after = page.last().map(|(k, _)| k.clone());
        }
        Ok(records)
    }

    /// Evidence hashed with this tenant's key.
    pub fn evidence(&self, kind: &str, value: &str) -> Evidence {
        Evidence::of(&self.keys, kind, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(subject: Subject, decision: Decision) -> ConsentRecord {
        ConsentRecord {
            contact: ContactId::from_bytes([1; 16]),
            subject,
            decision,
            source: Source::Keyword,
            evidence: None,
            at: 0,
        }
    }

    #[test]
    fn the_latest_decision_per_subject_wins() {
        let profiling = Purpose::parse("personalize.profiling").unwrap();
        let marketing = Purpose::parse("marketing.communications").unwrap();
        let records = vec![
            record(Subject::Messaging, Decision::Withdrawn),
            record(Subject::Purpose(profiling.clone()), Decision::Granted),
            record(Subject::Purpose(marketing.clone()), Decision::Granted),
            record(Subject::Messaging, Decision::Granted),
            record(Subject::Purpose(marketing), Decision::Withdrawn),
        ];
        let state = derive(&records);
        assert!(!state.opted_out);
        assert_eq!(state.consents, BTreeSet::from([profiling]));
        assert!(derive(&records[..1]).opted_out);
    }

    #[test]
    fn ledger_is_append_only_and_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let vault = crate::data::test_vault(dir.path());
        let tenant = TenantId::generate();
        vault.keys.create_tenant(&tenant).unwrap();
        let ledger = ConsentLedger::of(&vault, tenant).unwrap();
        let contact = ContactId::generate();
        for decision in [Decision::Withdrawn, Decision::Granted, Decision::Withdrawn] {
            let mut batch = Batch::new();
            let mut r = record(Subject::Messaging, decision);
            r.contact = contact;
            r.evidence = Some(ledger.evidence("whatsapp-message", "wamid.X"));
            ledger.stage_append(&mut batch, &r).unwrap();
            vault.store.commit(&batch).unwrap();
        }
        let history = ledger.history(&contact).unwrap();
        let decisions: Vec<Decision> = history.iter().map(|r| r.decision).collect();
        assert_eq!(
            decisions,
            vec![Decision::Withdrawn, Decision::Granted, Decision::Withdrawn]
        );
        assert!(derive(&history).opted_out);
        assert!(
            !history[0]
                .evidence
                .as_ref()
                .unwrap()
                .digest
                .contains("wamid")
        );
        assert!(ledger.history(&ContactId::generate()).unwrap().is_empty());
    }
}
