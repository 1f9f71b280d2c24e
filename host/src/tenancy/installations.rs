//! Installations: a plugin enabled by a tenant, with the fields and
//! capabilities the tenant granted, its configuration and its place in the
//! tenant's flow.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::data::{DataError, Vault};
use crate::ids::{InstallationId, TenantId};
use crate::plugin::{Capability, DataField, Manifest};
use crate::runtime::ContentHash;
use crate::store::{Batch, Kind};

/// What runs an installation.
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
pub enum Trigger {
    /// An inbound message.
    MessageReceived,
    /// A delivery status of an outbound message.
    StatusUpdate,
}

/// An installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Installation {
    #[schema(value_type = String)]
    pub id: InstallationId,
    /// Content hash of the plugin component.
    #[schema(value_type = String)]
    pub plugin: ContentHash,
    /// The plugin's manifest id and version, for humans.
    pub plugin_id: String,
    pub plugin_version: String,
    /// Data fields granted (a subset of what the manifest declares).
    #[schema(value_type = Vec<String>)]
    pub grants: BTreeSet<DataField>,
    /// Capabilities granted (a subset of what the manifest declares).
    pub capabilities: BTreeSet<Capability>,
    /// Configuration values by key.
    pub config: BTreeMap<String, String>,
    /// Events that run it.
    pub triggers: BTreeSet<Trigger>,
    /// Position in the tenant's flow: lower runs first.
    pub position: u32,
    pub enabled: bool,
    pub created_at: u64,
    pub updated_at: u64,
}

/// Why an installation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallationError {
    #[error("field `{0}` is not declared by the plugin, so it cannot be granted")]
    UndeclaredField(DataField),
    #[error("capability `{0}` is not declared by the plugin, so it cannot be granted")]
    UndeclaredCapability(Capability),
    #[error("config key `{0}` is not declared by the plugin")]
    UnknownConfigKey(String),
    #[error("required config key `{0}` has no value")]
    MissingConfig(String),
    #[error("config value of `{0}` is longer than 64 KiB")]
    ConfigTooLarge(String),
}

/// Longest config value accepted.
const MAX_CONFIG_VALUE: usize = 64 << 10;

impl Installation {
    /// Check grants and configuration against the plugin's manifest.
    pub fn validate(&self, manifest: &Manifest) -> Result<(), InstallationError> {
        if let Some(field) = self.grants.iter().find(|f| !manifest.declares(**f)) {
            return Err(InstallationError::UndeclaredField(*field));
        }
        if let Some(capability) = self.capabilities.iter().find(|c| !manifest.allows(**c)) {
            return Err(InstallationError::UndeclaredCapability(*capability));
        }
        for (key, value) in &self.config {
            if !manifest.config.iter().any(|k| &k.name == key) {
                return Err(InstallationError::UnknownConfigKey(key.clone()));
            }
            if value.len() > MAX_CONFIG_VALUE {
                return Err(InstallationError::ConfigTooLarge(key.clone()));
            }
        }
        for key in manifest
            .config
            .iter()
            .filter(|k| k.required && k.default_value.is_none())
        {
            if !self.config.contains_key(&key.name) {
                return Err(InstallationError::MissingConfig(key.name.clone()));
            }
        }
        Ok(())
    }

    /// The configuration as (key, value) pairs.
    pub fn config_pairs(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Stage the installation.
    pub fn stage(
        &self,
        vault: &Vault,
        tenant: &TenantId,
        batch: &mut Batch,
    ) -> Result<(), DataError> {
        let keys = vault.keys.tenant(tenant)?;
        vault.stage(
            batch,
            &keys.records,
            tenant,
            Kind::Installations,
            self.id.as_bytes(),
            self,
        );
        Ok(())
    }

    /// Stage the installation's removal.
    pub fn stage_removal(&self, tenant: &TenantId, batch: &mut Batch) {
        batch.delete(*tenant, Kind::Installations, self.id.as_bytes().to_vec());
    }

    /// A tenant's installations in flow order.
    pub fn list(vault: &Vault, tenant: &TenantId) -> Result<Vec<Installation>, DataError> {
        let mut all: Vec<Installation> = super::read_all(vault, tenant, Kind::Installations, b"")?;
        all.sort_by_key(|i| (i.position, i.created_at));
        Ok(all)
    }

    /// One installation.
    pub fn load(
        vault: &Vault,
        tenant: &TenantId,
        id: &InstallationId,
    ) -> Result<Option<Installation>, DataError> {
        let keys = vault.keys.tenant(tenant)?;
        vault.read(&keys.records, tenant, Kind::Installations, id.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{ConfigKey, Purpose};

    fn manifest() -> Manifest {
        Manifest {
            id: "p".into(),
            version: "1.0.0".into(),
            summary: String::new(),
            purposes: vec![Purpose::parse("essential.service").unwrap()],
            fields: vec![DataField::MessageText],
            capabilities: vec![Capability::Reply],
            config: vec![ConfigKey {
                name: "faq".into(),
                description: String::new(),
                required: true,
                default_value: None,
            }],
            labels: vec![],
        }
    }

    fn installation() -> Installation {
        Installation {
            id: InstallationId::generate(),
            plugin: ContentHash::of(b"x"),
            plugin_id: "p".into(),
            plugin_version: "1.0.0".into(),
            grants: BTreeSet::from([DataField::MessageText]),
            capabilities: BTreeSet::from([Capability::Reply]),
            config: BTreeMap::from([("faq".into(), "[]".into())]),
            triggers: BTreeSet::from([Trigger::MessageReceived]),
            position: 0,
            enabled: true,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn grants_and_config_must_fit_the_manifest() {
        assert_eq!(installation().validate(&manifest()), Ok(()));
        let mut i = installation();
        i.grants.insert(DataField::PhoneNumber);
        assert_eq!(
            i.validate(&manifest()),
            Err(InstallationError::UndeclaredField(DataField::PhoneNumber))
        );
        let mut i = installation();
        i.capabilities.insert(Capability::HandOff);
        assert!(matches!(
            i.validate(&manifest()),
            Err(InstallationError::UndeclaredCapability(_))
        ));
        let mut i = installation();
        i.config.insert("colour".into(), "red".into());
        assert!(matches!(
            i.validate(&manifest()),
            Err(InstallationError::UnknownConfigKey(_))
        ));
        let mut i = installation();
        i.config.clear();
        assert!(matches!(
            i.validate(&manifest()),
            Err(InstallationError::MissingConfig(_))
        ));
    }
}
