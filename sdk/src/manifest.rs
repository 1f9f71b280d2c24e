use std::borrow::Cow;

use crate::wit::flowgate::plugin::types as wit;

/// What a plugin declares about itself: identity, purposes, the data fields
/// it asks for, the actions it may emit and its configuration keys.
///
/// Build one with [`Manifest::builder`]. Declare as little as the plugin
/// needs: tenants grant fields one by one, and a field the plugin did not
/// declare is never shown to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Stable identifier (`lead-score`): lower-case letters, digits and `-`.
    pub id: String,
    /// Semantic version (`1.2.0`).
    pub version: String,
    /// One line a tenant reads before enabling the plugin.
    pub summary: String,
    /// Purposes the plugin processes personal data for (fideslang data uses).
    pub purposes: Vec<Purpose>,
    /// Data fields the plugin asks to see.
    pub fields: Vec<Field>,
    /// Kinds of action the plugin may emit.
    pub capabilities: Vec<Capability>,
    /// Configuration keys the plugin reads from [`Event::config`](crate::Event::config).
    pub config: Vec<ConfigKey>,
}

impl Manifest {
    /// Start a manifest with the plugin's id and version.
    ///
    /// ```
    /// use flowgate_sdk::{Capability, Field, Manifest, Purpose};
    ///
    /// let manifest = Manifest::builder("labeller", "1.0.0")
    ///     .summary("Labels contacts by keywords")
    ///     .purpose(Purpose::ESSENTIAL_SERVICE)
    ///     .field(Field::MessageText)
    ///     .capability(Capability::AddLabel)
    ///     .config("rules", "label rules, one per line", true, None)
    ///     .build();
    /// assert_eq!(manifest.fields, vec![Field::MessageText]);
    /// ```
    pub fn builder(id: impl Into<String>, version: impl Into<String>) -> ManifestBuilder {
        ManifestBuilder {
            manifest: Manifest {
                id: id.into(),
                version: version.into(),
                summary: String::new(),
                purposes: Vec::new(),
                fields: Vec::new(),
                capabilities: Vec::new(),
                config: Vec::new(),
            },
        }
    }
}

/// Builds a [`Manifest`]; see [`Manifest::builder`]. Repeated entries are kept
/// once.
#[derive(Debug, Clone)]
#[must_use]
pub struct ManifestBuilder {
    manifest: Manifest,
}

impl ManifestBuilder {
    /// Set the one-line summary.
    pub fn summary(mut self, summary: impl Into<String>) -> Self {
        self.manifest.summary = summary.into();
        self
    }

    /// Declare a purpose.
    pub fn purpose(mut self, purpose: Purpose) -> Self {
        push_unique(&mut self.manifest.purposes, purpose);
        self
    }

    /// Ask for a data field.
    pub fn field(mut self, field: Field) -> Self {
        push_unique(&mut self.manifest.fields, field);
        self
    }

    /// Declare an action kind the plugin may emit.
    pub fn capability(mut self, capability: Capability) -> Self {
        push_unique(&mut self.manifest.capabilities, capability);
        self
    }

    /// Declare a configuration key.
    pub fn config(
        mut self,
        name: impl Into<String>,
        description: impl Into<String>,
        required: bool,
        default_value: Option<&str>,
    ) -> Self {
        let key = ConfigKey {
            name: name.into(),
            description: description.into(),
            required,
            default_value: default_value.map(str::to_owned),
        };
        self.manifest
            .config
            .retain(|existing| existing.name != key.name);
        self.manifest.config.push(key);
        self
    }

    /// Finish the manifest.
    pub fn build(self) -> Manifest {
        self.manifest
    }
}

fn push_unique<T: PartialEq>(items: &mut Vec<T>, item: T) {
    if !items.contains(&item) {
        items.push(item);
    }
}

/// A configuration key a tenant sets when enabling the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigKey {
    /// Key name (`business-hours`).
    pub name: String,
    /// What the value means and its format.
    pub description: String,
    /// Whether the tenant must set it.
    pub required: bool,
    /// The value used when the tenant sets none.
    pub default_value: Option<String>,
}

/// A purpose of processing, as a fideslang data-use identifier.
///
/// Purposes are hierarchical: a contact who objects to `marketing` objects to
/// `marketing.communications` too. Purposes under `marketing`, `personalize`,
/// `analytics`, `third_party_sharing` and `train_ai_system` rest on the
/// contact's consent ([`Purpose::requires_consent`]): running the plugin for
/// them is itself the processing that needs it, so the host does not call
/// the plugin at all for a contact who has not consented.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Purpose(Cow<'static, str>);

impl Purpose {
    /// Providing the service the contact asked for (answering them).
    pub const ESSENTIAL_SERVICE: Purpose = Purpose(Cow::Borrowed("essential.service"));
    /// Running the business's support operations (routing, labelling).
    pub const ESSENTIAL_SERVICE_OPERATIONS: Purpose =
        Purpose(Cow::Borrowed("essential.service.operations"));
    /// Sales and marketing messages to the contact.
    pub const MARKETING_COMMUNICATIONS: Purpose =
        Purpose(Cow::Borrowed("marketing.communications"));
    /// Building a profile of the contact (lead scoring, segmentation).
    pub const PERSONALIZE_PROFILING: Purpose = Purpose(Cow::Borrowed("personalize.profiling"));
    /// Aggregate reporting.
    pub const ANALYTICS_REPORTING: Purpose = Purpose(Cow::Borrowed("analytics.reporting"));

    /// Any other fideslang data use, such as `essential.fraud_detection`.
    pub fn custom(identifier: impl Into<String>) -> Purpose {
        Purpose(Cow::Owned(identifier.into()))
    }

    /// The identifier, such as `essential.service`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the purpose rests on the contact's consent, as the host
    /// decides it: purposes under `analytics`, `marketing`, `personalize`,
    /// `third_party_sharing` and `train_ai_system`.
    ///
    /// ```
    /// use flowgate_sdk::Purpose;
    /// assert!(Purpose::PERSONALIZE_PROFILING.requires_consent());
    /// assert!(!Purpose::ESSENTIAL_SERVICE.requires_consent());
    /// ```
    pub fn requires_consent(&self) -> bool {
        const CONSENT_BASED_ROOTS: [&str; 5] = [
            "analytics",
            "marketing",
            "personalize",
            "third_party_sharing",
            "train_ai_system",
        ];
        let root = self.0.split('.').next().unwrap_or_default();
        CONSENT_BASED_ROOTS.contains(&root)
    }

    /// Whether this purpose is `other` or one of its sub-purposes
    /// (`marketing.communications` is within `marketing`).
    pub fn is_within(&self, other: &Purpose) -> bool {
        self.0 == other.0
            || (self.0.starts_with(other.as_str())
                && self.0.as_bytes().get(other.0.len()) == Some(&b'.'))
    }
}

/// A data field a plugin may ask for, named by its fideslang data category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `user.name`: the WhatsApp profile name ([`Contact::name`](crate::Contact::name)).
    ProfileName,
    /// `user.contact.phone_number`: the WhatsApp id / phone number
    /// ([`Contact::phone_number`](crate::Contact::phone_number)).
    PhoneNumber,
    /// `user.unique_id`: the business-scoped user id
    /// ([`Contact::user_id`](crate::Contact::user_id)).
    UserId,
    /// `user.content.private`: the message text ([`Message::text`](crate::Message::text)).
    MessageText,
    /// `user.behavior.labels`: the contact's labels ([`Contact::labels`](crate::Contact::labels)).
    Labels,
    /// `user.behavior.lead_score`: the contact's lead score
    /// ([`Contact::lead_score`](crate::Contact::lead_score)).
    LeadScore,
}

impl Field {
    /// Every field, in the order of the WIT documentation.
    pub const ALL: [Field; 6] = [
        Field::ProfileName,
        Field::PhoneNumber,
        Field::UserId,
        Field::MessageText,
        Field::Labels,
        Field::LeadScore,
    ];

    /// The fideslang identifier, such as `user.name`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Field::ProfileName => "user.name",
            Field::PhoneNumber => "user.contact.phone_number",
            Field::UserId => "user.unique_id",
            Field::MessageText => "user.content.private",
            Field::Labels => "user.behavior.labels",
            Field::LeadScore => "user.behavior.lead_score",
        }
    }

    /// The field named by a fideslang identifier, if the host knows it.
    pub fn from_identifier(identifier: &str) -> Option<Field> {
        Field::ALL
            .into_iter()
            .find(|field| field.as_str() == identifier)
    }
}

/// A kind of action a plugin may declare and emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// [`Action::Reply`](crate::Action::Reply).
    Reply,
    /// [`Action::AddLabel`](crate::Action::AddLabel).
    AddLabel,
    /// [`Action::RemoveLabel`](crate::Action::RemoveLabel).
    RemoveLabel,
    /// [`Action::SetLeadScore`](crate::Action::SetLeadScore).
    SetLeadScore,
    /// [`Action::HandOff`](crate::Action::HandOff).
    HandOff,
}

impl From<Capability> for wit::Capability {
    fn from(capability: Capability) -> Self {
        match capability {
            Capability::Reply => wit::Capability::Reply,
            Capability::AddLabel => wit::Capability::AddLabel,
            Capability::RemoveLabel => wit::Capability::RemoveLabel,
            Capability::SetLeadScore => wit::Capability::SetLeadScore,
            Capability::HandOff => wit::Capability::HandOff,
        }
    }
}

impl From<Manifest> for wit::Manifest {
    fn from(manifest: Manifest) -> Self {
        wit::Manifest {
            id: manifest.id,
            version: manifest.version,
            summary: manifest.summary,
            purposes: manifest
                .purposes
                .into_iter()
                .map(|p| p.0.into_owned())
                .collect(),
            fields: manifest
                .fields
                .into_iter()
                .map(|f| f.as_str().to_owned())
                .collect(),
            capabilities: manifest.capabilities.into_iter().map(Into::into).collect(),
            config: manifest
                .config
                .into_iter()
                .map(|key| wit::ConfigKey {
                    name: key.name,
                    description: key.description,
                    required: key.required,
                    default_value: key.default_value,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_identifiers_round_trip() {
        for field in Field::ALL {
            assert_eq!(Field::from_identifier(field.as_str()), Some(field));
        }
        assert_eq!(Field::from_identifier("user.contact.email"), None);
    }

    #[test]
    fn builder_keeps_entries_once_and_last_config_wins() {
        let manifest = Manifest::builder("x", "1.0.0")
            .field(Field::Labels)
            .field(Field::Labels)
            .config("k", "first", false, None)
            .config("k", "second", true, Some("v"))
            .build();
        assert_eq!(manifest.fields, vec![Field::Labels]);
        assert_eq!(manifest.config.len(), 1);
        assert_eq!(manifest.config[0].description, "second");
    }
}
