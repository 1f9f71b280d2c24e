//! Minimised views: what one installation is shown about one contact.
//!
//! A plugin is run for a contact only when the contact's processing is not
//! restricted, the contact objected to none of the plugin's purposes (nor a
//! broader or narrower one), and the contact consented to every purpose of
//! the plugin that rests on consent ([`Purpose::requires_consent`]): running
//! a plugin for such a purpose is itself the processing that needs the
//! consent. A personal field then reaches the plugin only when
//! 1. the plugin's manifest declares it, and
//! 2. the tenant granted it to this installation.
//!
//! [`disclose`] decides; [`build_event`] builds the WIT event from the
//! decision, and the [`Disclosure`] is what the audit trail records.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::channel::whatsapp::payload::{DeliveryState, MessageKind};
use crate::plugin::{DataField, Manifest, Purpose};
use flowgate_runtime::bindings::types as wit;

/// The contact's processing state, derived from the consent ledger and the
/// data-subject requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessingState {
    /// Processing restricted (GDPR art. 18): data kept, not processed.
    pub restricted: bool,
    /// Purposes the contact objected to (GDPR art. 21).
    pub objections: Vec<Purpose>,
    /// Purposes the contact consented to (and did not withdraw).
    pub consents: Vec<Purpose>,
}

impl ProcessingState {
    /// A contact who consented to everything this manifest asks for (the
    /// author CLI's default).
    pub fn consenting_to(manifest: &Manifest) -> ProcessingState {
        ProcessingState {
            consents: manifest.purposes.clone(),
            ..ProcessingState::default()
        }
    }

    fn has_consent_for(&self, purpose: &Purpose) -> bool {
        self.consents.iter().any(|c| purpose.is_within(c))
    }
}

/// Why a field is absent from a view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Withheld {
    /// The manifest does not ask for it.
    NotDeclared,
    /// The tenant did not grant it to the installation.
    NotGranted,
}

/// Why a plugin is not run for a contact at all. The `Display` form says it
/// in plain words, for the audit trail and `flowgate plugin run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum NotProcessed {
    /// The contact's processing is restricted.
    #[error("the contact's processing is restricted")]
    Restricted,
    /// The contact objected to one of the plugin's purposes.
    #[error("the contact objected to `{objection}`, which covers the plugin's purpose `{purpose}`")]
    Objected {
        purpose: Purpose,
        objection: Purpose,
    },
    /// One of the plugin's purposes rests on consent the contact has not
    /// given (or withdrew).
    #[error(
        "the contact has not consented to `{purpose}`, which this plugin's processing rests on"
    )]
    NoConsent { purpose: Purpose },
}

/// The decision for one (installation, contact): what is shown, what is not
/// and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disclosure {
    /// Fields shown to the plugin.
    pub disclosed: BTreeSet<DataField>,
    /// Fields not shown, with the reason.
    pub withheld: Vec<(DataField, Withheld)>,
}

impl Disclosure {
    /// Whether the field is shown.
    pub fn shows(&self, field: DataField) -> bool {
        self.disclosed.contains(&field)
    }
}

/// Decide what an installation may see of a contact.
pub fn disclose(
    manifest: &Manifest,
    grants: &BTreeSet<DataField>,
    processing: &ProcessingState,
) -> Result<Disclosure, NotProcessed> {
    if processing.restricted {
        return Err(NotProcessed::Restricted);
    }
    for purpose in &manifest.purposes {
        if let Some(objection) = processing
            .objections
            .iter()
            // Either way round: an objection to `marketing` covers a
            // `marketing.communications` plugin, and a plugin declaring all
            // of `marketing` cannot promise to leave out the
            // `marketing.communications` the contact objected to.
            .find(|objection| purpose.is_within(objection) || objection.is_within(purpose))
        {
            return Err(NotProcessed::Objected {
                purpose: purpose.clone(),
                objection: objection.clone(),
            });
        }
    }
    // Running the plugin is the processing the consent is for: without it
    // the plugin is not invoked at all, not merely shown less.
    if let Some(purpose) = manifest
        .purposes
        .iter()
        .find(|p| p.requires_consent() && !processing.has_consent_for(p))
    {
        return Err(NotProcessed::NoConsent {
            purpose: purpose.clone(),
        });
    }
    let mut disclosed = BTreeSet::new();
    let mut withheld = Vec::new();
    for field in DataField::ALL {
        let reason = if !manifest.declares(field) {
            Some(Withheld::NotDeclared)
        } else if !grants.contains(&field) {
            Some(Withheld::NotGranted)
        } else {
            None
        };
        match reason {
            Some(reason) => withheld.push((field, reason)),
            None => {
                disclosed.insert(field);
            }
        }
    }
    Ok(Disclosure {
        disclosed,
        withheld,
    })
}

/// Why a field is absent from a view, including when the plugin is not run
/// at all: the answer to "why can't my plugin see this?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Absence {
    /// The manifest does not ask for it.
    NotDeclared,
    /// The tenant did not grant it to the installation.
    NotGranted,
    /// One of the plugin's purposes needs consent the contact has not
    /// given: the plugin is not run.
    NoConsent { purpose: Purpose },
    /// The contact restricted processing: the plugin is not run.
    Restricted,
    /// The contact objected to a purpose covering the plugin's: the plugin
    /// is not run.
    Objected {
        purpose: Purpose,
        objection: Purpose,
    },
}

impl std::fmt::Display for Absence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Absence::NotDeclared => write!(f, "not declared in the manifest"),
            Absence::NotGranted => write!(f, "not granted by the tenant"),
            Absence::NoConsent { purpose } => write!(
                f,
                "not consented: the contact has not consented to `{purpose}`; the plugin is not run"
            ),
            Absence::Restricted => write!(
                f,
                "restricted: the contact restricted processing, the plugin is not run"
            ),
            Absence::Objected { purpose, objection } => write!(
                f,
                "objected: the contact objected to `{objection}`, covering `{purpose}`; the plugin is not run"
            ),
        }
    }
}

/// One field's fate in a view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldTrace {
    pub field: DataField,
    pub disclosed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub absent: Option<Absence>,
}

/// For every field the host knows, whether the installation would see it
/// and, if not, the first reason in the order the host checks them:
/// declaration, grant, then the contact's restriction, objections and
/// consent (each of which stops the plugin from running at all). Built from
/// [`disclose`], so it cannot disagree with it.
pub fn trace(
    manifest: &Manifest,
    grants: &BTreeSet<DataField>,
    processing: &ProcessingState,
) -> Vec<FieldTrace> {
    let decision = disclose(manifest, grants, processing);
    DataField::ALL
        .into_iter()
        .map(|field| {
            let absent = match &decision {
                Ok(disclosure) => disclosure.withheld.iter().find(|(f, _)| *f == field).map(
                    |(_, why)| match why {
                        Withheld::NotDeclared => Absence::NotDeclared,
                        Withheld::NotGranted => Absence::NotGranted,
                    },
                ),
                Err(_) if !manifest.declares(field) => Some(Absence::NotDeclared),
                Err(_) if !grants.contains(&field) => Some(Absence::NotGranted),
                Err(NotProcessed::Restricted) => Some(Absence::Restricted),
                Err(NotProcessed::Objected { purpose, objection }) => Some(Absence::Objected {
                    purpose: purpose.clone(),
                    objection: objection.clone(),
                }),
                Err(NotProcessed::NoConsent { purpose }) => Some(Absence::NoConsent {
                    purpose: purpose.clone(),
                }),
            };
            FieldTrace {
                field,
                disclosed: absent.is_none(),
                absent,
            }
        })
        .collect()
}

/// A contact's data in the clear, as held in memory while an event is
/// processed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactData {
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub profile_name: Option<String>,
    pub labels: Vec<String>,
    pub lead_score: Option<u8>,
}

/// The message part of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFacts {
    pub kind: MessageKind,
    pub text: Option<String>,
    pub received_at: u64,
    pub service_window_open: bool,
}

/// Everything about an event that is not the contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventContext {
    /// The contact's pseudonym for this installation.
    pub pseudonym: String,
    pub message: Option<MessageFacts>,
    pub status: Option<(DeliveryState, u64)>,
    /// The installation's resolved configuration.
    pub config: Vec<(String, String)>,
    pub now: u64,
    pub timezone: String,
    pub utc_offset_minutes: i32,
}

/// Build the WIT event with exactly the disclosed fields.
pub fn build_event(
    disclosure: &Disclosure,
    contact: &ContactData,
    context: EventContext,
) -> wit::Event {
    let show = |field| disclosure.shows(field);
    wit::Event {
        trigger: if context.message.is_some() {
            wit::Trigger::MessageReceived
        } else {
            wit::Trigger::StatusUpdate
        },
        contact: wit::ContactView {
            pseudonym: context.pseudonym,
            name: contact
                .profile_name
                .clone()
                .filter(|_| show(DataField::ProfileName)),
            phone_number: contact
                .wa_id
                .clone()
                .filter(|_| show(DataField::PhoneNumber)),
            user_id: contact.user_id.clone().filter(|_| show(DataField::UserId)),
            labels: show(DataField::Labels).then(|| contact.labels.clone()),
            lead_score: contact.lead_score.filter(|_| show(DataField::LeadScore)),
        },
        message: context.message.map(|m| wit::MessageView {
            kind: wit_kind(m.kind),
            text: m.text.filter(|_| show(DataField::MessageText)),
            received_at: m.received_at,
            service_window_open: m.service_window_open,
        }),
        status: context.status.map(|(state, at)| wit::StatusView {
            status: match state {
                DeliveryState::Sent => wit::DeliveryStatus::Sent,
                DeliveryState::Delivered => wit::DeliveryStatus::Delivered,
                DeliveryState::Read => wit::DeliveryStatus::Read,
                DeliveryState::Failed => wit::DeliveryStatus::Failed,
            },
            at,
        }),
        config: context.config,
        now: context.now,
        timezone: context.timezone,
        utc_offset_minutes: context.utc_offset_minutes,
    }
}

fn wit_kind(kind: MessageKind) -> wit::MessageKind {
    match kind {
        MessageKind::Text => wit::MessageKind::Text,
        MessageKind::Interactive => wit::MessageKind::Interactive,
        MessageKind::Button => wit::MessageKind::Button,
        MessageKind::Image => wit::MessageKind::Image,
        MessageKind::Video => wit::MessageKind::Video,
        MessageKind::Audio => wit::MessageKind::Audio,
        MessageKind::Document => wit::MessageKind::Document,
        MessageKind::Sticker => wit::MessageKind::Sticker,
        MessageKind::Location => wit::MessageKind::Location,
        MessageKind::Contacts => wit::MessageKind::Contacts,
        MessageKind::Reaction => wit::MessageKind::Reaction,
        MessageKind::System => wit::MessageKind::System,
        MessageKind::Unsupported => wit::MessageKind::Unsupported,
    }
}

/// A required configuration key has no value and no default.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("required config key `{0}` has no value")]
pub struct MissingConfig(pub String);

/// The installation's configuration as the plugin sees it: every declared
/// key with the tenant's value or the default. Keys the manifest does not
/// declare are not passed on.
pub fn resolve_config(
    manifest: &Manifest,
    values: &[(String, String)],
) -> Result<Vec<(String, String)>, MissingConfig> {
    let mut resolved = Vec::with_capacity(manifest.config.len());
    for key in &manifest.config {
        let value = values
            .iter()
            .rev()
            .find(|(name, _)| name == &key.name)
            .map(|(_, v)| v.clone())
            .or_else(|| key.default_value.clone());
        match value {
            Some(value) => resolved.push((key.name.clone(), value)),
            None if key.required => return Err(MissingConfig(key.name.clone())),
            None => {}
        }
    }
    Ok(resolved)
}

/// A contact's pseudonym for one installation: a blake3 keyed hash, so the
/// same contact looks unrelated across installations and tenants, and the
/// pseudonym reveals nothing without the tenant's key.
pub fn pseudonym(key: &[u8; 32], installation: &str, contact: &[u8]) -> String {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(&(installation.len() as u64).to_le_bytes());
    hasher.update(installation.as_bytes());
    hasher.update(contact);
    let hash = hasher.finalize();
    format!("ps_{}", &hash.to_hex()[..32])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::Capability;

    fn manifest(purposes: &[&str], fields: &[DataField]) -> Manifest {
        Manifest {
            id: "p".into(),
            version: "1.0.0".into(),
            summary: String::new(),
            purposes: purposes
                .iter()
                .map(|p| Purpose::parse(p).unwrap())
                .collect(),
            fields: fields.to_vec(),
            capabilities: vec![Capability::AddLabel],
            config: vec![],
            labels: vec![],
        }
    }

    fn purpose(p: &str) -> Purpose {
        Purpose::parse(p).unwrap()
    }

    /// Every combination of declared fields x grants x consent x restriction
    /// x objection yields exactly the expected field set.
    #[test]
    fn every_combination_yields_the_exact_field_set() {
        let fields = DataField::ALL;
        let purposes_cases: [&[&str]; 3] = [
            &["essential.service"],
            &["personalize.profiling"],
            &["essential.service", "marketing.communications"],
        ];
        let mut checked = 0;
        for purposes in purposes_cases {
            for declared_mask in 0u32..(1 << fields.len()) {
                // Grants are checked per field against the declaration, so
                // three grant patterns per declaration cover the cases:
                // none, all, and every other field.
                for grant_pattern in 0..3 {
                    for consent in [false, true] {
                        for restricted in [false, true] {
                            for objection in [None, Some("marketing"), Some("essential")] {
                                let declared: Vec<DataField> = fields
                                    .iter()
                                    .enumerate()
                                    .filter(|(i, _)| declared_mask & (1 << i) != 0)
                                    .map(|(_, f)| *f)
                                    .collect();
                                let grants: BTreeSet<DataField> = fields
                                    .iter()
                                    .enumerate()
                                    .filter(|(i, _)| match grant_pattern {
                                        0 => false,
                                        1 => true,
                                        _ => i % 2 == 0,
                                    })
                                    .map(|(_, f)| *f)
                                    .collect();
                                let m = manifest(purposes, &declared);
                                let state = ProcessingState {
                                    restricted,
                                    objections: objection.map(purpose).into_iter().collect(),
                                    consents: if consent { m.purposes.clone() } else { vec![] },
                                };
                                let result = disclose(&m, &grants, &state);

                                // The expectation, written independently of `disclose`.
                                let objected = objection.is_some_and(|o| {
                                    purposes
                                        .iter()
                                        .any(|p| *p == o || p.starts_with(&format!("{o}.")))
                                });
                                let needs_consent = purposes.iter().any(|p| {
                                    p.starts_with("personalize") || p.starts_with("marketing")
                                });
                                if restricted {
                                    assert_eq!(result, Err(NotProcessed::Restricted));
                                } else if objected {
                                    assert!(matches!(result, Err(NotProcessed::Objected { .. })));
                                } else if needs_consent && !consent {
                                    // Not run at all: running it is the
                                    // processing that needs the consent.
                                    assert!(
                                        matches!(result, Err(NotProcessed::NoConsent { .. })),
                                        "{result:?}"
                                    );
                                } else {
                                    let expected: BTreeSet<DataField> = declared
                                        .iter()
                                        .copied()
                                        .filter(|f| grants.contains(f))
                                        .collect();
                                    let disclosure = result.unwrap();
                                    assert_eq!(disclosure.disclosed, expected);
                                    assert_eq!(
                                        disclosure.withheld.len() + disclosure.disclosed.len(),
                                        fields.len(),
                                        "every field is either shown or withheld with a reason"
                                    );
                                }
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 3 * 64 * 3 * 2 * 2 * 3);
    }

    #[test]
    fn withheld_reasons_name_the_first_failing_condition() {
        let m = manifest(
            &["personalize.profiling"],
            &[DataField::ProfileName, DataField::Labels],
        );
        let grants = BTreeSet::from([DataField::ProfileName]);
        let d = disclose(&m, &grants, &ProcessingState::consenting_to(&m)).unwrap();
        let reason = |f| {
            d.withheld
                .iter()
                .find(|(x, _)| *x == f)
                .map(|(_, r)| r.clone())
        };
        assert_eq!(reason(DataField::PhoneNumber), Some(Withheld::NotDeclared));
        assert_eq!(reason(DataField::Labels), Some(Withheld::NotGranted));
        assert_eq!(reason(DataField::ProfileName), None);
    }

    #[test]
    fn a_plugin_whose_purpose_needs_consent_is_not_run_without_it() {
        let m = manifest(
            &["essential.service", "personalize.profiling"],
            &[DataField::MessageText],
        );
        let grants = BTreeSet::from([DataField::MessageText]);
        let refused = disclose(&m, &grants, &ProcessingState::default());
        assert_eq!(
            refused,
            Err(NotProcessed::NoConsent {
                purpose: purpose("personalize.profiling")
            })
        );
        assert_eq!(
            refused.unwrap_err().to_string(),
            "the contact has not consented to `personalize.profiling`, \
             which this plugin's processing rests on"
        );
        // Consent to another consent-based purpose does not cover it.
        let elsewhere = ProcessingState {
            consents: vec![purpose("marketing")],
            ..Default::default()
        };
        assert!(matches!(
            disclose(&m, &grants, &elsewhere),
            Err(NotProcessed::NoConsent { .. })
        ));
        // A withdrawn consent is not in `consents`: the same as none.
        let consenting = ProcessingState::consenting_to(&m);
        assert!(
            disclose(&m, &grants, &consenting)
                .unwrap()
                .shows(DataField::MessageText)
        );
    }

    #[test]
    fn trace_names_the_first_reason_for_every_absent_field() {
        let m = manifest(
            &["personalize.profiling"],
            &[
                DataField::ProfileName,
                DataField::MessageText,
                DataField::Labels,
            ],
        );
        let grants: BTreeSet<DataField> = [DataField::ProfileName, DataField::MessageText]
            .into_iter()
            .collect();
        let of = |processing: &ProcessingState, field: DataField| {
            trace(&m, &grants, processing)
                .into_iter()
                .find(|t| t.field == field)
                .unwrap()
        };
        let consenting = ProcessingState::consenting_to(&m);
        assert!(of(&consenting, DataField::ProfileName).disclosed);
        assert_eq!(
            of(&consenting, DataField::PhoneNumber).absent,
            Some(Absence::NotDeclared)
        );
        assert_eq!(
            of(&consenting, DataField::Labels).absent,
            Some(Absence::NotGranted)
        );
        assert_eq!(
            of(&ProcessingState::default(), DataField::MessageText).absent,
            Some(Absence::NoConsent {
                purpose: purpose("personalize.profiling")
            })
        );
        let restricted = ProcessingState {
            restricted: true,
            ..consenting.clone()
        };
        assert_eq!(
            of(&restricted, DataField::MessageText).absent,
            Some(Absence::Restricted)
        );
        // A field never declared stays "not declared" even when restricted:
        // the first reason, as the host checks them.
        assert_eq!(
            of(&restricted, DataField::PhoneNumber).absent,
            Some(Absence::NotDeclared)
        );
        let objecting = ProcessingState {
            objections: vec![purpose("personalize")],
            ..consenting
        };
        assert_eq!(
            of(&objecting, DataField::ProfileName).absent,
            Some(Absence::Objected {
                purpose: purpose("personalize.profiling"),
                objection: purpose("personalize"),
            })
        );
        // The trace and the disclosure agree on every field.
        let disclosure = disclose(&m, &grants, &ProcessingState::consenting_to(&m)).unwrap();
        for t in trace(&m, &grants, &ProcessingState::consenting_to(&m)) {
            assert_eq!(t.disclosed, disclosure.shows(t.field));
        }
    }

    #[test]
    fn an_objection_stops_plugins_with_a_broader_or_narrower_purpose() {
        let objecting = ProcessingState {
            objections: vec![purpose("marketing.communications")],
            consents: vec![purpose("marketing")],
            ..Default::default()
        };
        let grants: BTreeSet<DataField> = [DataField::MessageText].into_iter().collect();
        for declared in [
            "marketing",
            "marketing.communications",
            "marketing.communications.email",
        ] {
            let m = manifest(&[declared], &[DataField::MessageText]);
            assert!(
                matches!(
                    disclose(&m, &grants, &objecting),
                    Err(NotProcessed::Objected { .. })
                ),
                "{declared}"
            );
        }
        let unrelated = manifest(&["marketing.advertising"], &[DataField::MessageText]);
        assert!(disclose(&unrelated, &grants, &objecting).is_ok());
    }

    #[test]
    fn consent_to_a_broader_purpose_covers_a_narrower_one() {
        let m = manifest(&["marketing.communications"], &[DataField::ProfileName]);
        let state = ProcessingState {
            consents: vec![purpose("marketing")],
            ..Default::default()
        };
        let d = disclose(&m, &BTreeSet::from([DataField::ProfileName]), &state).unwrap();
        assert!(d.shows(DataField::ProfileName));
    }

    #[test]
    fn built_event_carries_only_disclosed_fields() {
        let m = manifest(
            &["essential.service"],
            &[DataField::MessageText, DataField::Labels],
        );
        let grants = BTreeSet::from([
            DataField::MessageText,
            DataField::Labels,
            DataField::PhoneNumber,
        ]);
        let d = disclose(&m, &grants, &ProcessingState::default()).unwrap();
        let contact = ContactData {
            wa_id: Some("16505551234".into()),
            user_id: Some("US.1".into()),
            profile_name: Some("Sheena".into()),
            labels: vec!["vip".into()],
            lead_score: Some(40),
        };
        let event = build_event(
            &d,
            &contact,
            EventContext {
                pseudonym: "ps_x".into(),
                message: Some(MessageFacts {
                    kind: MessageKind::Text,
                    text: Some("hello".into()),
                    received_at: 1,
                    service_window_open: true,
                }),
                status: None,
                config: vec![],
                now: 2,
                timezone: "UTC".into(),
                utc_offset_minutes: 0,
            },
        );
        assert_eq!(event.contact.name, None);
        assert_eq!(event.contact.phone_number, None, "granted but not declared");
        assert_eq!(event.contact.user_id, None);
        assert_eq!(event.contact.lead_score, None);
        assert_eq!(event.contact.labels, Some(vec!["vip".to_string()]));
        assert_eq!(event.message.unwrap().text.as_deref(), Some("hello"));
    }

    #[test]
    fn config_resolution_fills_defaults_and_reports_missing_required_keys() {
        let mut m = manifest(&["essential.service"], &[]);
        m.config = vec![
            crate::plugin::ConfigKey {
                name: "greeting".into(),
                description: String::new(),
                required: false,
                default_value: Some("hi".into()),
            },
            crate::plugin::ConfigKey {
                name: "rules".into(),
                description: String::new(),
                required: true,
                default_value: None,
            },
        ];
        assert_eq!(resolve_config(&m, &[]), Err(MissingConfig("rules".into())));
        let resolved = resolve_config(
            &m,
            &[
                ("rules".into(), "r".into()),
                ("undeclared".into(), "x".into()),
            ],
        )
        .unwrap();
        assert_eq!(
            resolved,
            vec![
                ("greeting".into(), "hi".into()),
                ("rules".into(), "r".into())
            ]
        );
    }

    #[test]
    fn pseudonyms_differ_per_installation_and_key() {
        let a = pseudonym(&[1; 32], "inst-a", b"contact");
        assert_eq!(a, pseudonym(&[1; 32], "inst-a", b"contact"));
        assert_ne!(a, pseudonym(&[1; 32], "inst-b", b"contact"));
        assert_ne!(a, pseudonym(&[2; 32], "inst-a", b"contact"));
        assert!(!a.contains("contact"));
    }
}
