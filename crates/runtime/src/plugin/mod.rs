//! What a plugin is to the host: its validated manifest and the actions it
//! may ask for.

pub mod action;
pub mod manifest;

pub use action::{Action, Refusal};
pub use manifest::{
    Capability, ConfigKey, DataField, LabelAlphabet, LabelPattern, LabelRule, Manifest,
    ManifestError, Purpose,
};
