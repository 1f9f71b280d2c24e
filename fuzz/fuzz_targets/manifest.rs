//! Manifest and action validation.
//!
//! Structured input (`arbitrary`): a WIT manifest as a guest's `describe()`
//! returns it, actions as its `handle()` returns them, an installation's
//! configuration, and free JSON text for the manifest's and actions' JSON
//! forms (registry records, the audit trail). Strings are either arbitrary or
//! assembled from the pieces valid values are made of, so validation is
//! reached past its first check.
//!
//! Properties: nothing panics; whatever validation accepts satisfies the
//! limits the WIT contract documents (identifiers, semantic versions,
//! summary length, purposes, fields, config keys; reply ≤ 4096 characters,
//! labels ≤ 64, notes and reasons ≤ 1024, scores ≤ 100, capability
//! declared); a refusal names a limit that really is exceeded; validated
//! values survive their JSON round trip.

#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::{Arbitrary, Unstructured};
use flowgate::ids::InstallationId;
use flowgate::plugin::action::{MAX_LABEL_CHARS, MAX_NOTE_CHARS, MAX_REPLY_CHARS};
use flowgate::plugin::{Action, Capability, DataField, Manifest, Purpose, Refusal};
use flowgate::runtime::ContentHash;
use flowgate::runtime::bindings::types as wit;
use flowgate::tenancy::installations::{Installation, Trigger};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

/// A string: arbitrary, or built from the pieces of valid values.
#[derive(Arbitrary, Debug)]
enum Text {
    Free(String),
    /// Pieces joined by a separator (`-`, `.`, `_`, or none).
    Pieces(Vec<Piece>, u8),
    /// One character repeated, to reach the length limits.
    Repeat(char, u16),
}

#[derive(Arbitrary, Debug)]
enum Piece {
    Word(u8),
    Number(u16),
    Free(String),
}

const WORDS: &[&str] = &[
    "lead",
    "score",
    "essential",
    "service",
    "marketing",
    "communications",
    "personalize",
    "profiling",
    "analytics",
    "reporting",
    "collect",
    "functional",
    "third_party_sharing",
    "train_ai_system",
    "user",
    "name",
    "contact",
    "phone_number",
    "unique_id",
    "content",
    "private",
    "behavior",
    "labels",
    "lead_score",
    "rules",
    "business-hours",
    "a",
    "0",
    "",
    " ",
    "é",
    "\u{1F44D}",
];

impl Text {
    fn build(&self) -> String {
        match self {
            Text::Free(s) => s.clone(),
            Text::Pieces(pieces, separator) => {
                let separator = ["-", ".", "_", ""][usize::from(*separator) % 4];
                pieces
                    .iter()
                    .map(|piece| match piece {
                        Piece::Word(i) => WORDS[usize::from(*i) % WORDS.len()].to_owned(),
                        Piece::Number(n) => n.to_string(),
                        Piece::Free(s) => s.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(separator)
            }
            // Up to a little past 4 × 4096, so both the byte shortcut and the
            // character count of the length checks are reached.
            Text::Repeat(c, n) => std::iter::repeat_n(*c, usize::from(*n) % 17_000).collect(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum FieldName {
    Known(u8),
    Other(Text),
}

#[derive(Arbitrary, Debug)]
struct WitConfigKey {
    name: Text,
    description: Text,
    required: bool,
    default_value: Option<Text>,
}

#[derive(Arbitrary, Debug)]
struct WitManifest {
    id: Text,
    version: Text,
    summary: Text,
    purposes: Vec<Text>,
    fields: Vec<FieldName>,
    capabilities: Vec<u8>,
    config: Vec<WitConfigKey>,
}

#[derive(Arbitrary, Debug)]
enum WitAction {
    Reply(Text),
    AddLabel(Text),
    RemoveLabel(Text),
    SetLeadScore(u8, Text),
    HandOff(Text),
}

#[derive(Arbitrary, Debug)]
struct Input {
    manifest: WitManifest,
    /// Capabilities of a manifest built directly (not validated), so actions
    /// are checked against every capability set, not only valid manifests'.
    direct_capabilities: Vec<u8>,
    actions: Vec<WitAction>,
    /// An installation's configuration values.
    config: Vec<(Text, Text)>,
    /// Free text for the JSON forms.
    json: String,
}

const CAPABILITIES: [wit::Capability; 5] = [
    wit::Capability::Reply,
    wit::Capability::AddLabel,
    wit::Capability::RemoveLabel,
    wit::Capability::SetLeadScore,
    wit::Capability::HandOff,
];

fn capability(i: u8) -> wit::Capability {
    CAPABILITIES[usize::from(i) % CAPABILITIES.len()]
}

fn to_wit(input: &WitManifest) -> wit::Manifest {
    wit::Manifest {
        id: input.id.build(),
        version: input.version.build(),
        summary: input.summary.build(),
        purposes: input.purposes.iter().map(Text::build).collect(),
        fields: input
            .fields
            .iter()
            .map(|f| match f {
                FieldName::Known(i) => DataField::ALL[usize::from(*i) % DataField::ALL.len()]
                    .as_str()
                    .to_owned(),
                FieldName::Other(text) => text.build(),
            })
            .collect(),
        capabilities: input.capabilities.iter().map(|c| capability(*c)).collect(),
        config: input
            .config
            .iter()
            .map(|k| wit::ConfigKey {
                name: k.name.build(),
                description: k.description.build(),
                required: k.required,
                default_value: k.default_value.as_ref().map(Text::build),
            })
            .collect(),
    }
}

fn to_wit_action(action: &WitAction) -> wit::Action {
    match action {
        WitAction::Reply(t) => wit::Action::Reply(t.build()),
        WitAction::AddLabel(t) => wit::Action::AddLabel(t.build()),
        WitAction::RemoveLabel(t) => wit::Action::RemoveLabel(t.build()),
        WitAction::SetLeadScore(score, reason) => wit::Action::SetLeadScore(wit::LeadScore {
            score: *score,
            reason: reason.build(),
        }),
        WitAction::HandOff(t) => wit::Action::HandOff(t.build()),
    }
}

/// The seed form: a manifest as JSON (the WIT record's fields, capabilities
/// by their WIT names), actions in their JSON form, configuration values.
/// Inputs starting with `{` are read this way, so the committed seeds are
/// readable manifests that libFuzzer mutates as text.
#[derive(Deserialize)]
struct JsonSeed {
    manifest: JsonManifest,
    #[serde(default)]
    actions: Vec<Action>,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct JsonManifest {
    id: String,
    version: String,
    summary: String,
    purposes: Vec<String>,
    fields: Vec<String>,
    capabilities: Vec<Capability>,
    config: Vec<JsonConfigKey>,
}

#[derive(Deserialize)]
struct JsonConfigKey {
    name: String,
    description: String,
    required: bool,
    default_value: Option<String>,
}

fuzz_target!(|data: &[u8]| {
    if data.first() == Some(&b'{') {
        json_seed(data);
    } else if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        structured(input);
    }
});

fn json_seed(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        check_json_forms(text);
    }
    let Ok(seed) = serde_json::from_slice::<JsonSeed>(data) else {
        return;
    };
    let raw = wit::Manifest {
        id: seed.manifest.id,
        version: seed.manifest.version,
        summary: seed.manifest.summary,
        purposes: seed.manifest.purposes,
        fields: seed.manifest.fields,
        capabilities: seed
            .manifest
            .capabilities
            .iter()
            .map(|c| match c {
                Capability::Reply => wit::Capability::Reply,
                Capability::AddLabel => wit::Capability::AddLabel,
                Capability::RemoveLabel => wit::Capability::RemoveLabel,
                Capability::SetLeadScore => wit::Capability::SetLeadScore,
                Capability::HandOff => wit::Capability::HandOff,
            })
            .collect(),
        config: seed
            .manifest
            .config
            .into_iter()
            .map(|k| wit::ConfigKey {
                name: k.name,
                description: k.description,
                required: k.required,
                default_value: k.default_value,
            })
            .collect(),
    };
    let Ok(manifest) = Manifest::from_wit(raw.clone()) else {
        return;
    };
    check_manifest(&raw, &manifest);
    for action in seed.actions.iter().take(16) {
        check_action(action, &manifest);
    }
    check_installation(&manifest, seed.config);
}

fn structured(input: Input) {
    let raw = to_wit(&input.manifest);
    let validated = Manifest::from_wit(raw.clone());
    if let Ok(manifest) = &validated {
        check_manifest(&raw, manifest);
    }

    let direct = Manifest {
        id: "direct".into(),
        version: "1.0.0".into(),
        summary: String::new(),
        purposes: vec![Purpose::parse("essential.service").expect("a valid purpose")],
        fields: vec![],
        capabilities: input
            .direct_capabilities
            .iter()
            .map(|c| Capability::from(capability(*c)))
            .collect(),
        config: vec![],
    };
    for action in input.actions.iter().take(16) {
        let action = Action::from(to_wit_action(action));
        check_action(&action, &direct);
        if let Ok(manifest) = &validated {
            check_action(&action, manifest);
        }
    }

    if let Ok(manifest) = &validated {
        let config = input
            .config
            .iter()
            .take(8)
            .map(|(k, v)| (k.build(), v.build()))
            .collect();
        check_installation(manifest, config);
    }

    check_json_forms(&input.json);
}

/// What `Manifest::from_wit` accepted must meet the WIT contract.
fn check_manifest(raw: &wit::Manifest, manifest: &Manifest) {
    let id_chars: Vec<char> = manifest.id.chars().collect();
    assert!(
        (1..=64).contains(&id_chars.len()),
        "id length: {:?}",
        manifest.id
    );
    assert!(
        id_chars
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'),
        "id characters: {:?}",
        manifest.id
    );
    assert!(
        manifest.version.len() <= 64,
        "version length: {:?}",
        manifest.version
    );
    let core = manifest
        .version
        .split(['-', '+'])
        .next()
        .unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    assert!(
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        "not a semantic version: {:?}",
        manifest.version
    );
    assert!(
        manifest.summary.chars().count() <= 200,
        "summary of {} characters",
        manifest.summary.chars().count()
    );

    assert!(!manifest.purposes.is_empty(), "no purpose");
    assert_eq!(
        manifest.purposes.iter().collect::<BTreeSet<_>>().len(),
        manifest.purposes.len(),
        "duplicate purposes"
    );
    assert_eq!(
        manifest
            .purposes
            .iter()
            .map(|p| p.as_str())
            .collect::<BTreeSet<_>>(),
        raw.purposes
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        "purposes are the declared ones, deduplicated"
    );
    for purpose in &manifest.purposes {
        assert_eq!(Purpose::parse(purpose.as_str()).as_ref(), Ok(purpose));
        assert!(purpose.is_within(purpose));
        check_purpose_segments(purpose.as_str());
        for other in &manifest.purposes {
            if purpose.is_within(other) {
                assert!(
                    purpose.as_str() == other.as_str()
                        || purpose
                            .as_str()
                            .strip_prefix(other.as_str())
                            .is_some_and(|rest| rest.starts_with('.')),
                    "{purpose} is within {other} but not under it"
                );
            }
        }
    }

    assert_eq!(
        manifest.fields.iter().collect::<BTreeSet<_>>().len(),
        manifest.fields.len(),
        "duplicate fields"
    );
    assert_eq!(
        manifest
            .fields
            .iter()
            .map(|f| f.as_str())
            .collect::<BTreeSet<_>>(),
        raw.fields
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        "fields are the declared ones, deduplicated"
    );
    assert_eq!(
        manifest.capabilities.iter().collect::<BTreeSet<_>>().len(),
        manifest.capabilities.len(),
        "duplicate capabilities"
    );
    assert_eq!(
        manifest.capabilities.iter().collect::<BTreeSet<_>>(),
        raw.capabilities
            .iter()
            .map(|c| Capability::from(*c))
            .collect::<BTreeSet<_>>()
            .iter()
            .collect::<BTreeSet<_>>(),
        "capabilities are the declared ones"
    );

    let mut names = BTreeSet::new();
    for key in &manifest.config {
        let chars: Vec<char> = key.name.chars().collect();
        assert!(
            (1..=64).contains(&chars.len())
                && chars.iter().all(|c| c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || *c == '-'
                    || *c == '_'),
            "config key {:?}",
            key.name
        );
        assert!(
            names.insert(key.name.as_str()),
            "config key {:?} twice",
            key.name
        );
    }
    assert_eq!(manifest.config.len(), raw.config.len());

    // The registry keeps manifests as JSON.
    let json = serde_json::to_vec(manifest).expect("manifests serialize");
    let back: Manifest = serde_json::from_slice(&json).expect("a manifest's JSON reads back");
    assert_eq!(&back, manifest, "manifest JSON round trip");
}

/// A purpose is a known fideslang root and non-empty segments of
/// `[a-z0-9_]`.
fn check_purpose_segments(purpose: &str) {
    let mut segments = purpose.split('.');
    let root = segments.next().unwrap_or_default();
    assert!(
        [
            "analytics",
            "collect",
            "essential",
            "functional",
            "marketing",
            "personalize",
            "third_party_sharing",
            "train_ai_system",
        ]
        .contains(&root),
        "purpose root {root:?}"
    );
    for segment in segments {
        assert!(
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "purpose segment {segment:?} of {purpose:?}"
        );
    }
}

/// An accepted action is within the documented limits; a refused one names
/// a limit it really breaks.
fn check_action(action: &Action, manifest: &Manifest) {
    let result = action.check(manifest);
    let _ = action.redacted();
    let _ = action.to_string();
    match &result {
        Ok(()) => {
            assert!(
                manifest.allows(action.capability()),
                "undeclared {} accepted",
                action.capability()
            );
            match action {
                Action::Reply { text } => {
                    assert!(!text.trim().is_empty(), "empty reply accepted");
                    assert!(
                        text.chars().count() <= MAX_REPLY_CHARS,
                        "reply of {} characters accepted",
                        text.chars().count()
                    );
                }
                Action::AddLabel { label } | Action::RemoveLabel { label } => {
                    assert!(!label.trim().is_empty(), "empty label accepted");
                    assert!(
                        label.chars().count() <= MAX_LABEL_CHARS,
                        "label of {} characters accepted",
                        label.chars().count()
                    );
                }
                Action::SetLeadScore { score, reason } => {
                    assert!(*score <= 100, "score {score} accepted");
                    assert!(reason.chars().count() <= MAX_NOTE_CHARS);
                }
                Action::HandOff { note } => {
                    assert!(note.chars().count() <= MAX_NOTE_CHARS);
                }
            }
        }
        Err(Refusal::Undeclared { capability }) => {
            assert_eq!(*capability, action.capability());
            assert!(!manifest.allows(*capability));
        }
        Err(Refusal::Empty { .. }) => {
            let text = match action {
                Action::Reply { text } => text,
                Action::AddLabel { label } | Action::RemoveLabel { label } => label,
                other => panic!("{other:?} refused as empty"),
            };
            assert!(text.trim().is_empty(), "{text:?} refused as empty");
        }
        Err(Refusal::TooLong { chars, limit, .. }) => {
            let text = match action {
                Action::Reply { text } => text,
                Action::AddLabel { label } | Action::RemoveLabel { label } => label,
                Action::SetLeadScore { reason, .. } => reason,
                Action::HandOff { note } => note,
            };
            assert!(
                text.chars().count() > *limit && *chars > *limit,
                "{} characters refused as over {limit}",
                text.chars().count()
            );
        }
        Err(Refusal::ScoreOutOfRange { score }) => assert!(*score > 100),
        Err(other) => panic!("the runtime check gave a flow-level refusal: {other:?}"),
    }
    // Actions and refusals are recorded as JSON.
    let json = serde_json::to_vec(action).expect("actions serialize");
    let back: Action = serde_json::from_slice(&json).expect("an action's JSON reads back");
    assert_eq!(&back, action, "action JSON round trip");
    if let Err(refusal) = &result {
        let json = serde_json::to_vec(refusal).expect("refusals serialize");
        let back: Refusal = serde_json::from_slice(&json).expect("a refusal's JSON reads back");
        assert_eq!(&back, refusal, "refusal JSON round trip");
    }
}

/// An installation that validates against the manifest resolves to a
/// configuration with every required key and only declared keys.
fn check_installation(manifest: &Manifest, config: BTreeMap<String, String>) {
    let installation = Installation {
        id: InstallationId::from_bytes([1; 16]),
        plugin: ContentHash::from_bytes([2; 32]),
        plugin_id: manifest.id.clone(),
        plugin_version: manifest.version.clone(),
        grants: manifest.fields.iter().copied().collect(),
        capabilities: manifest.capabilities.iter().copied().collect(),
        config,
        triggers: BTreeSet::from([Trigger::MessageReceived]),
        position: 0,
        enabled: true,
        created_at: 0,
        updated_at: 0,
    };
    if installation.validate(manifest).is_err() {
        return;
    }
    let resolved = flowgate::view::resolve_config(manifest, &installation.config_pairs())
        .expect("a valid installation's configuration resolves");
    for (name, value) in &resolved {
        let key = manifest
            .config
            .iter()
            .find(|k| &k.name == name)
            .expect("only declared keys are passed on");
        assert!(
            installation.config.get(name) == Some(value)
                || (!installation.config.contains_key(name)
                    && key.default_value.as_ref() == Some(value)),
            "config {name:?} resolved to neither the tenant's value nor the default"
        );
    }
    for key in manifest.config.iter().filter(|k| k.required) {
        assert!(
            resolved.iter().any(|(name, _)| name == &key.name),
            "required key {:?} missing",
            key.name
        );
    }
}

/// The JSON forms never panic; what they accept is as valid as what the
/// parsers accept.
fn check_json_forms(json: &str) {
    if let Ok(purpose) = serde_json::from_str::<Purpose>(json) {
        assert_eq!(Purpose::parse(purpose.as_str()).as_ref(), Ok(&purpose));
        let _ = purpose.requires_consent();
    }
    if let Ok(field) = serde_json::from_str::<DataField>(json) {
        assert_eq!(DataField::from_identifier(field.as_str()), Some(field));
    }
    if let Ok(manifest) = serde_json::from_str::<Manifest>(json) {
        for purpose in &manifest.purposes {
            check_purpose_segments(purpose.as_str());
        }
    }
    let _ = serde_json::from_str::<Capability>(json);
    if let Ok(action) = serde_json::from_str::<Action>(json) {
        let _ = action.check(&Manifest {
            id: "json".into(),
            version: "1.0.0".into(),
            summary: String::new(),
            purposes: vec![],
            fields: vec![],
            capabilities: vec![Capability::Reply, Capability::AddLabel],
            config: vec![],
        });
    }
    let _ = serde_json::from_str::<Refusal>(json);
}
