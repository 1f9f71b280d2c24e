//! A plugin's manifest as the host keeps and enforces it.
//!
//! The guest returns a WIT `manifest` from `describe()`; [`Manifest::from_wit`]
//! validates it into this form once, when the plugin is loaded. Everything
//! the host later decides about the plugin (which fields it may see, which
//! actions it may take, whose data it may process) reads from here.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::bindings::types as wit;

/// Longest accepted manifest summary, in characters.
const MAX_SUMMARY_CHARS: usize = 200;
/// Longest accepted identifier (plugin id, purpose, config key).
const MAX_IDENTIFIER_CHARS: usize = 64;
/// Most label rules a manifest may declare.
const MAX_LABEL_RULES: usize = 64;
/// Longest fixed prefix of a label pattern, in characters.
const MAX_LABEL_PREFIX_CHARS: usize = 32;

/// A validated plugin manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Stable identifier (`lead-score`).
    pub id: String,
    /// Semantic version (`1.2.0`).
    pub version: String,
    /// One line for tenants.
    pub summary: String,
    /// Purposes the plugin processes personal data for.
    pub purposes: Vec<Purpose>,
    /// Data fields the plugin asks to see.
    pub fields: Vec<DataField>,
    /// Kinds of action the plugin may emit.
    pub capabilities: Vec<Capability>,
    /// Configuration keys the plugin reads.
    pub config: Vec<ConfigKey>,
    /// The labels the plugin may add or remove. (Absent from records
    /// written before labels were declared: those may write none.)
    #[serde(default)]
    pub labels: Vec<LabelRule>,
}

/// A configuration key declared by a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigKey {
    /// Key name.
    pub name: String,
    /// Meaning and format of the value.
    pub description: String,
    /// Whether a tenant must set it.
    pub required: bool,
    /// Value used when the tenant sets none.
    pub default_value: Option<String>,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("plugin id `{0}` is not lower-case letters, digits and `-` (1 to 64 characters)")]
    BadId(String),
    #[error("version `{0}` is not a semantic version such as 1.2.0")]
    BadVersion(String),
    #[error("summary is longer than {MAX_SUMMARY_CHARS} characters")]
    SummaryTooLong,
    #[error("the manifest declares no purpose; every plugin processes data for at least one")]
    NoPurpose,
    #[error(
        "purpose `{0}` is not a fideslang data use (such as `essential.service` or `marketing.communications`)"
    )]
    BadPurpose(String),
    #[error("data field `{0}` is unknown; known fields: {known}", known = DataField::known_list())]
    UnknownField(String),
    #[error("config key `{0}` is not lower-case letters, digits, `-` and `_`")]
    BadConfigKey(String),
    #[error("config key `{0}` is declared twice")]
    DuplicateConfigKey(String),
    #[error(
        "the manifest declares the `add-label` or `remove-label` capability but no `labels`; \
         declare the labels the plugin may write (exact names or a prefix with a bounded suffix)"
    )]
    NoLabels,
    #[error("the manifest declares {0} label rules; at most {MAX_LABEL_RULES} are accepted")]
    TooManyLabelRules(usize),
    #[error("label rule {rule:?} is refused: {reason}")]
    BadLabelRule { rule: String, reason: &'static str },
}

impl Manifest {
    /// Validate a manifest returned by a guest's `describe()`.
    pub fn from_wit(manifest: wit::Manifest) -> Result<Manifest, ManifestError> {
        if !is_identifier(&manifest.id, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
        }) {
            return Err(ManifestError::BadId(manifest.id));
        }
        if !is_semver(&manifest.version) {
            return Err(ManifestError::BadVersion(manifest.version));
        }
        if manifest.summary.chars().count() > MAX_SUMMARY_CHARS {
            return Err(ManifestError::SummaryTooLong);
        }
        if manifest.purposes.is_empty() {
            return Err(ManifestError::NoPurpose);
        }
        let mut purposes = Vec::new();
        for purpose in manifest.purposes {
            let purpose = Purpose::parse(&purpose)?;
            if !purposes.contains(&purpose) {
                purposes.push(purpose);
            }
        }
        let mut fields = Vec::new();
        for field in manifest.fields {
            let field = DataField::from_identifier(&field)
                .ok_or_else(|| ManifestError::UnknownField(field.clone()))?;
            if !fields.contains(&field) {
                fields.push(field);
            }
        }
        let mut capabilities = Vec::new();
        for capability in manifest.capabilities.into_iter().map(Capability::from) {
            if !capabilities.contains(&capability) {
                capabilities.push(capability);
            }
        }
        let mut config: Vec<ConfigKey> = Vec::new();
        for key in manifest.config {
            if !is_identifier(&key.name, |c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
            }) {
                return Err(ManifestError::BadConfigKey(key.name));
            }
            if config.iter().any(|existing| existing.name == key.name) {
                return Err(ManifestError::DuplicateConfigKey(key.name));
            }
            config.push(ConfigKey {
                name: key.name,
                description: key.description,
                required: key.required,
                default_value: key.default_value,
            });
        }
        if manifest.labels.len() > MAX_LABEL_RULES {
            return Err(ManifestError::TooManyLabelRules(manifest.labels.len()));
        }
        let mut labels = Vec::new();
        for rule in manifest.labels.into_iter().map(LabelRule::from) {
            rule.validate()?;
            if !labels.contains(&rule) {
                labels.push(rule);
            }
        }
        if labels.is_empty()
            && capabilities
                .iter()
                .any(|c| matches!(c, Capability::AddLabel | Capability::RemoveLabel))
        {
            return Err(ManifestError::NoLabels);
        }
        Ok(Manifest {
            id: manifest.id,
            version: manifest.version,
            summary: manifest.summary,
            purposes,
            fields,
            capabilities,
            config,
            labels,
        })
    }

    /// Whether the manifest lets the plugin add or remove this label.
    pub fn allows_label(&self, label: &str) -> bool {
        self.labels.iter().any(|rule| rule.matches(label))
    }

    /// Whether the manifest declares this capability.
    pub fn allows(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    /// Whether the manifest asks for this field.
    pub fn declares(&self, field: DataField) -> bool {
        self.fields.contains(&field)
    }
}

fn is_identifier(s: &str, allowed: impl Fn(char) -> bool) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && s.chars().count() <= MAX_IDENTIFIER_CHARS
        && chars.all(allowed)
}

/// `MAJOR.MINOR.PATCH` with an optional `-prerelease` or `+build` suffix.
fn is_semver(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 9 && p.chars().all(|c| c.is_ascii_digit()))
        && version.len() <= MAX_IDENTIFIER_CHARS
}

/// A purpose of processing: a fideslang data-use identifier such as
/// `essential.service` or `marketing.communications`.
///
/// Purposes form a hierarchy by their dotted segments: an objection to
/// `marketing` covers `marketing.communications`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Purpose(String);

/// The top-level fideslang data uses.
const PURPOSE_ROOTS: [&str; 8] = [
    "analytics",
    "collect",
    "essential",
    "functional",
    "marketing",
    "personalize",
    "third_party_sharing",
    "train_ai_system",
];

/// Data uses that rest on the contact's consent rather than on the contract
/// or a legitimate interest (GDPR art. 6(1)(a)): without the contact's
/// consent a plugin declaring one is not run for that contact at all.
/// `essential`, `functional` and `collect` need none.
const CONSENT_BASED_ROOTS: [&str; 5] = [
    "analytics",
    "marketing",
    "personalize",
    "third_party_sharing",
    "train_ai_system",
];

impl Purpose {
    /// Parse and check a data-use identifier.
    pub fn parse(identifier: &str) -> Result<Purpose, ManifestError> {
        let bad = || ManifestError::BadPurpose(identifier.to_owned());
        if identifier.len() > MAX_IDENTIFIER_CHARS * 2 {
            return Err(bad());
        }
        let mut segments = identifier.split('.');
        let root = segments.next().unwrap_or_default();
        if !PURPOSE_ROOTS.contains(&root) {
            return Err(bad());
        }
        let well_formed = segments.all(|segment| {
            !segment.is_empty()
                && segment
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
        if !well_formed {
            return Err(bad());
        }
        Ok(Purpose(identifier.to_owned()))
    }

    /// The identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this purpose is `other` or one of its sub-purposes.
    pub fn is_within(&self, other: &Purpose) -> bool {
        self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'.'))
    }

    /// Whether processing for this purpose needs the contact's consent.
    pub fn requires_consent(&self) -> bool {
        let root = self.0.split('.').next().unwrap_or_default();
        CONSENT_BASED_ROOTS.contains(&root)
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Purpose {
    type Error = ManifestError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Purpose::parse(&value)
    }
}

impl From<Purpose> for String {
    fn from(purpose: Purpose) -> String {
        purpose.0
    }
}

/// A personal data field a plugin may be shown, named by its fideslang data
/// category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DataField {
    /// `user.name`: the WhatsApp profile name.
    ProfileName,
    /// `user.contact.phone_number`: the WhatsApp id / phone number.
    PhoneNumber,
    /// `user.unique_id`: the business-scoped user id (BSUID).
    UserId,
    /// `user.content.private`: the message text.
    MessageText,
    /// `user.behavior.labels`: the contact's labels.
    Labels,
    /// `user.behavior.lead_score`: the contact's lead score.
    LeadScore,
}

impl DataField {
    /// Every field the host knows.
    pub const ALL: [DataField; 6] = [
        DataField::ProfileName,
        DataField::PhoneNumber,
        DataField::UserId,
        DataField::MessageText,
        DataField::Labels,
        DataField::LeadScore,
    ];

    /// The fideslang identifier.
    pub const fn as_str(self) -> &'static str {
        match self {
            DataField::ProfileName => "user.name",
            DataField::PhoneNumber => "user.contact.phone_number",
            DataField::UserId => "user.unique_id",
            DataField::MessageText => "user.content.private",
            DataField::Labels => "user.behavior.labels",
            DataField::LeadScore => "user.behavior.lead_score",
        }
    }

    /// The field with this identifier.
    pub fn from_identifier(identifier: &str) -> Option<DataField> {
        DataField::ALL
            .into_iter()
            .find(|f| f.as_str() == identifier)
    }

    fn known_list() -> String {
        DataField::ALL.map(DataField::as_str).join(", ")
    }
}

impl fmt::Display for DataField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for DataField {
    type Error = ManifestError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        DataField::from_identifier(&value).ok_or(ManifestError::UnknownField(value))
    }
}

impl From<DataField> for String {
    fn from(field: DataField) -> String {
        field.as_str().to_owned()
    }
}

/// A label, or a small family of labels, a plugin may add or remove.
///
/// Labels are shared by every installation granted them and outlive a
/// withdrawn consent, so what a plugin may write into them is declared,
/// shown to the tenant, and enforced: exact names, or a fixed prefix with a
/// short suffix from an alphabet that never mixes letters and digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LabelRule {
    /// Exactly this label.
    Exact(String),
    /// A prefix and a bounded suffix.
    Pattern(LabelPattern),
}

/// Labels made of a fixed prefix and a suffix of 1 to `max_length`
/// characters of `alphabet`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LabelPattern {
    pub prefix: String,
    pub alphabet: LabelAlphabet,
    pub max_length: u8,
}

/// The characters a label pattern's suffix is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LabelAlphabet {
    /// `0`-`9`, at most 4: enough for a tier or a count, too few for a
    /// phone number.
    Digits,
    /// `a`-`z` and `A`-`Z`.
    Letters,
    /// `a`-`z`, `-` and `_`.
    Words,
}

impl LabelAlphabet {
    fn contains(self, c: char) -> bool {
        match self {
            LabelAlphabet::Digits => c.is_ascii_digit(),
            LabelAlphabet::Letters => c.is_ascii_alphabetic(),
            LabelAlphabet::Words => c.is_ascii_lowercase() || c == '-' || c == '_',
        }
    }

    /// The longest suffix a pattern of this alphabet may declare.
    fn max_length(self) -> u8 {
        match self {
            LabelAlphabet::Digits => 4,
            LabelAlphabet::Letters | LabelAlphabet::Words => 32,
        }
    }

    fn class(self) -> &'static str {
        match self {
            LabelAlphabet::Digits => "[0-9]",
            LabelAlphabet::Letters => "[a-zA-Z]",
            LabelAlphabet::Words => "[a-z_-]",
        }
    }
}

impl LabelRule {
    /// Whether `label` is this label, or one of this family.
    pub fn matches(&self, label: &str) -> bool {
        match self {
            LabelRule::Exact(exact) => exact == label,
            LabelRule::Pattern(pattern) => {
                label
                    .strip_prefix(pattern.prefix.as_str())
                    .is_some_and(|suffix| {
                        !suffix.is_empty()
                            && suffix.len() <= usize::from(pattern.max_length)
                            && suffix.chars().all(|c| pattern.alphabet.contains(c))
                    })
            }
        }
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let refuse = |reason| {
            Err(ManifestError::BadLabelRule {
                rule: self.to_string(),
                reason,
            })
        };
        let plain = |text: &str| text.trim() == text && !text.chars().any(char::is_control);
        match self {
            LabelRule::Exact(label) => {
                if label.is_empty() || label.chars().count() > super::action::MAX_LABEL_CHARS {
                    return refuse("a label is 1 to 64 characters");
                }
                if !plain(label) {
                    return refuse("a label has no surrounding spaces or control characters");
                }
            }
            LabelRule::Pattern(pattern) => {
                if pattern.prefix.chars().count() > MAX_LABEL_PREFIX_CHARS
                    || !plain(&pattern.prefix)
                {
                    return refuse(
                        "a prefix is at most 32 characters, without surrounding spaces or control characters",
                    );
                }
                if pattern.max_length == 0 || pattern.max_length > pattern.alphabet.max_length() {
                    return refuse(
                        "a suffix is 1 to 4 digits, or 1 to 32 letters or word characters",
                    );
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for LabelRule {
    /// `pricing`, or the pattern as a regular expression: `tier-[0-9]{1}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelRule::Exact(label) => f.write_str(label),
            LabelRule::Pattern(pattern) => {
                write!(f, "{}{}", pattern.prefix, pattern.alphabet.class())?;
                match pattern.max_length {
                    1 => Ok(()),
                    n => write!(f, "{{1,{n}}}"),
                }
            }
        }
    }
}

impl From<wit::LabelRule> for LabelRule {
    fn from(rule: wit::LabelRule) -> Self {
        match rule {
            wit::LabelRule::Exact(label) => LabelRule::Exact(label),
            wit::LabelRule::Pattern(pattern) => LabelRule::Pattern(LabelPattern {
                prefix: pattern.prefix,
                alphabet: match pattern.alphabet {
                    wit::LabelAlphabet::Digits => LabelAlphabet::Digits,
                    wit::LabelAlphabet::Letters => LabelAlphabet::Letters,
                    wit::LabelAlphabet::Words => LabelAlphabet::Words,
                },
                max_length: pattern.max_length,
            }),
        }
    }
}

/// A kind of action.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Send a text reply.
    Reply,
    /// Add a label.
    AddLabel,
    /// Remove a label.
    RemoveLabel,
    /// Set the lead score.
    SetLeadScore,
    /// Hand off to a human.
    HandOff,
}

impl Capability {
    /// The WIT name, as used in manifests and the audit trail.
    pub const fn as_str(self) -> &'static str {
        match self {
            Capability::Reply => "reply",
            Capability::AddLabel => "add-label",
            Capability::RemoveLabel => "remove-label",
            Capability::SetLeadScore => "set-lead-score",
            Capability::HandOff => "hand-off",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<wit::Capability> for Capability {
    fn from(capability: wit::Capability) -> Self {
        match capability {
            wit::Capability::Reply => Capability::Reply,
            wit::Capability::AddLabel => Capability::AddLabel,
            wit::Capability::RemoveLabel => Capability::RemoveLabel,
            wit::Capability::SetLeadScore => Capability::SetLeadScore,
            wit::Capability::HandOff => Capability::HandOff,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wit_manifest() -> wit::Manifest {
        wit::Manifest {
            id: "lead-score".into(),
            version: "1.0.0".into(),
            summary: "Scores leads".into(),
            purposes: vec![
                "personalize.profiling".into(),
                "personalize.profiling".into(),
            ],
            fields: vec!["user.content.private".into(), "user.behavior.labels".into()],
            capabilities: vec![wit::Capability::SetLeadScore, wit::Capability::SetLeadScore],
            config: vec![],
            labels: vec![],
        }
    }

    fn pattern(prefix: &str, alphabet: wit::LabelAlphabet, max_length: u8) -> wit::LabelRule {
        wit::LabelRule::Pattern(wit::LabelPattern {
            prefix: prefix.into(),
            alphabet,
            max_length,
        })
    }

    #[test]
    fn valid_manifest_is_deduplicated() {
        let manifest = Manifest::from_wit(wit_manifest()).unwrap();
        assert_eq!(manifest.purposes.len(), 1);
        assert_eq!(manifest.capabilities, vec![Capability::SetLeadScore]);
        assert_eq!(
            manifest.fields,
            vec![DataField::MessageText, DataField::Labels]
        );
    }

    #[test]
    fn bad_manifests_are_refused_with_the_reason() {
        type Mutation = fn(&mut wit::Manifest);
        let cases: Vec<(Mutation, &str)> = vec![
            (|m| m.id = "Lead Score".into(), "plugin id"),
            (|m| m.id = String::new(), "plugin id"),
            (|m| m.version = "1.0".into(), "semantic version"),
            (|m| m.summary = "s".repeat(201), "summary"),
            (|m| m.purposes.clear(), "no purpose"),
            (
                |m| m.purposes = vec!["selling".into()],
                "fideslang data use",
            ),
            (
                |m| m.purposes = vec!["marketing..x".into()],
                "fideslang data use",
            ),
            (
                |m| m.fields = vec!["user.contact.email".into()],
                "known fields",
            ),
            (
                |m| {
                    m.config = vec![
                        wit::ConfigKey {
                            name: "a".into(),
                            description: String::new(),
                            required: false,
                            default_value: None,
                        };
                        2
                    ]
                },
                "declared twice",
            ),
            (
                |m| m.capabilities.push(wit::Capability::AddLabel),
                "no `labels`",
            ),
            (
                |m| m.labels = vec![wit::LabelRule::Exact(" vip".into())],
                "surrounding spaces",
            ),
            (
                |m| m.labels = vec![wit::LabelRule::Exact("l".repeat(65))],
                "1 to 64 characters",
            ),
            (
                |m| m.labels = vec![pattern("phone-", wit::LabelAlphabet::Digits, 11)],
                "1 to 4 digits",
            ),
            (
                |m| m.labels = vec![pattern("x", wit::LabelAlphabet::Words, 0)],
                "1 to 4 digits",
            ),
            (
                |m| m.labels = vec![wit::LabelRule::Exact("a".into()); 65],
                "at most 64",
            ),
        ];
        for (mutate, expected) in cases {
            let mut manifest = wit_manifest();
            mutate(&mut manifest);
            let error = Manifest::from_wit(manifest).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "`{error}` should mention `{expected}`"
            );
        }
    }

    #[test]
    fn labels_match_exactly_or_by_prefix_and_bounded_suffix() {
        let mut m = wit_manifest();
        m.capabilities.push(wit::Capability::AddLabel);
        m.labels = vec![
            wit::LabelRule::Exact("pricing".into()),
            pattern("tier-", wit::LabelAlphabet::Digits, 1),
            pattern("topic:", wit::LabelAlphabet::Words, 32),
        ];
        let manifest = Manifest::from_wit(m).unwrap();
        for allowed in ["pricing", "tier-3", "topic:order-status", "topic:vip"] {
            assert!(manifest.allows_label(allowed), "{allowed}");
        }
        for refused in [
            "16505551234",
            "ps_9322f2285a94b2096bc1949e77323f19",
            "tier-10",
            "tier-",
            "Sheena",
            "",
            "tier-x",
            "vip",
            "topic:",
            "topic:preço",
            "topic:Sheena",
            "topic:16505551234",
            &format!("topic:{}", "a".repeat(33)),
        ] {
            assert!(!manifest.allows_label(refused), "{refused}");
        }
        let shown: Vec<String> = manifest.labels.iter().map(|r| r.to_string()).collect();
        assert_eq!(shown, ["pricing", "tier-[0-9]", "topic:[a-z_-]{1,32}"]);
    }

    #[test]
    fn purposes_nest_by_segment_not_by_prefix() {
        let p = |s: &str| Purpose::parse(s).unwrap();
        assert!(p("marketing.communications").is_within(&p("marketing")));
        assert!(p("marketing").is_within(&p("marketing")));
        assert!(!p("marketing").is_within(&p("marketing.communications")));
        assert!(!p("essential.service_x").is_within(&p("essential.service")));
        for consent_based in [
            "analytics",
            "analytics.reporting",
            "marketing.communications",
            "personalize.profiling",
            "third_party_sharing",
            "train_ai_system",
        ] {
            assert!(p(consent_based).requires_consent(), "{consent_based}");
        }
        for not_consent_based in ["essential.service", "functional", "collect"] {
            assert!(
                !p(not_consent_based).requires_consent(),
                "{not_consent_based}"
            );
        }
    }
}
