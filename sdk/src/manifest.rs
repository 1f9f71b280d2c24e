use std::borrow::Cow;

use crate::wit::flowgate::plugin::types as wit;

/// What a plugin declares about itself: identity, purposes, the data fields
/// it asks for, the actions it may emit, its configuration keys and the
/// labels it may write.
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
    /// The labels the plugin may add or remove; see [`ManifestBuilder::label`].
    pub labels: Vec<LabelRule>,
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
                labels: Vec::new(),
            },
        }
    }

    /// Whether the manifest lets the plugin add or remove this label.
    pub fn allows_label(&self, label: &str) -> bool {
        self.labels.iter().any(|rule| rule.matches(label))
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

    /// Declare a label the plugin may add or remove, exactly as written.
    ///
    /// Labels are shared by every installation granted them and outlive a
    /// withdrawn consent, so the host lets a plugin write only the labels it
    /// declares (the tenant sees them before enabling it) and drops any
    /// other. A plugin with [`Capability::AddLabel`] or
    /// [`Capability::RemoveLabel`] must declare at least one label or
    /// pattern.
    ///
    /// ```
    /// use flowgate_sdk::{Capability, LabelAlphabet, Manifest};
    ///
    /// let manifest = Manifest::builder("triage", "1.0.0")
    ///     .capability(Capability::AddLabel)
    ///     .label("urgent")
    ///     .label_pattern("tier-", LabelAlphabet::Digits, 1)
    ///     .build();
    /// assert!(manifest.allows_label("urgent"));
    /// assert!(manifest.allows_label("tier-2"));
    /// assert!(!manifest.allows_label("15550001111"));
    /// ```
    pub fn label(mut self, label: impl Into<String>) -> Self {
        push_unique(&mut self.manifest.labels, LabelRule::Exact(label.into()));
        self
    }

    /// Declare a family of labels: `prefix` followed by 1 to `max_length`
    /// characters of `alphabet` (at most 4 digits, or 32 letters or word
    /// characters). The prefix may be empty.
    pub fn label_pattern(
        mut self,
        prefix: impl Into<String>,
        alphabet: LabelAlphabet,
        max_length: u8,
    ) -> Self {
        push_unique(
            &mut self.manifest.labels,
            LabelRule::Pattern {
                prefix: prefix.into(),
                alphabet,
                max_length,
            },
        );
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

/// A label, or a family of labels, a plugin may add or remove; see
/// [`ManifestBuilder::label`] and [`ManifestBuilder::label_pattern`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LabelRule {
    /// Exactly this label (1 to 64 characters).
    Exact(String),
    /// `prefix` followed by 1 to `max_length` characters of `alphabet`.
    Pattern {
        /// The fixed start, possibly empty (at most 32 characters).
        prefix: String,
        /// The characters of the suffix.
        alphabet: LabelAlphabet,
        /// The longest suffix: 1 to 4 digits, or 1 to 32 otherwise.
        max_length: u8,
    },
}

impl LabelRule {
    /// Whether `label` is this label, or one of this family (as the host
    /// decides it).
    pub fn matches(&self, label: &str) -> bool {
        match self {
            LabelRule::Exact(exact) => exact == label,
            LabelRule::Pattern {
                prefix,
                alphabet,
                max_length,
            } => label.strip_prefix(prefix.as_str()).is_some_and(|suffix| {
                !suffix.is_empty()
                    && suffix.len() <= usize::from(*max_length)
                    && suffix.chars().all(|c| alphabet.contains(c))
            }),
        }
    }
}

/// The characters a label pattern's suffix is made of. None mixes letters
/// and digits, and digits are at most four: a pattern cannot hold a phone
/// number or a pseudonym as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelAlphabet {
    /// `0` to `9` (a suffix of at most 4).
    Digits,
    /// `a` to `z` and `A` to `Z`.
    Letters,
    /// `a` to `z`, `-` and `_`: lower-case words.
    Words,
}

impl LabelAlphabet {
    /// Whether the alphabet has this character.
    pub fn contains(self, c: char) -> bool {
        match self {
            LabelAlphabet::Digits => c.is_ascii_digit(),
            LabelAlphabet::Letters => c.is_ascii_alphabetic(),
            LabelAlphabet::Words => c.is_ascii_lowercase() || c == '-' || c == '_',
        }
    }
}

impl From<LabelRule> for wit::LabelRule {
    fn from(rule: LabelRule) -> Self {
        match rule {
            LabelRule::Exact(label) => wit::LabelRule::Exact(label),
            LabelRule::Pattern {
                prefix,
                alphabet,
                max_length,
            } => wit::LabelRule::Pattern(wit::LabelPattern {
                prefix,
                alphabet: match alphabet {
                    LabelAlphabet::Digits => wit::LabelAlphabet::Digits,
                    LabelAlphabet::Letters => wit::LabelAlphabet::Letters,
                    LabelAlphabet::Words => wit::LabelAlphabet::Words,
                },
                max_length,
            }),
        }
    }
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
            labels: manifest.labels.into_iter().map(Into::into).collect(),
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
    fn label_rules_match_as_the_host_matches_them() {
        let manifest = Manifest::builder("x", "1.0.0")
            .label("pricing")
            .label("pricing")
            .label_pattern("tier-", LabelAlphabet::Digits, 1)
            .label_pattern("topic:", LabelAlphabet::Words, 32)
            .build();
        assert_eq!(manifest.labels.len(), 3);
        for allowed in ["pricing", "tier-3", "topic:order-status"] {
            assert!(manifest.allows_label(allowed), "{allowed}");
        }
        for refused in [
            "16505551234",
            "ps_9322f2285a94",
            "tier-10",
            "tier-",
            "order-status",
            "topic:",
            "topic:Sheena",
            "topic:16505551234",
            "",
        ] {
            assert!(!manifest.allows_label(refused), "{refused}");
        }
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
