//! The plugin registry: components admitted by the operator, stored under
//! the blake3 hash of their bytes.
//!
//! Admission loads the component in the sandbox (which checks its imports,
//! calls `describe()` and validates the manifest); only then is it stored.
//! A plugin id and version name one component forever: uploading different
//! bytes under an existing id and version is refused.
//!
//! What the operator admitted is pinned. The record keeps the manifest that
//! `describe()` returned at admission, under the component's blake3 hash;
//! loading a component again (after a restart, or once evicted) checks the
//! stored bytes against that hash and refuses a component whose fresh
//! `describe()` disagrees with the admitted manifest. Without the pin, a
//! plugin whose `describe()` changed its answer (it read some state the
//! sandbox did not fix, or the host's sandbox changed under it) could be
//! admitted for consent-based purposes and later claim `essential.service`,
//! which runs without consent.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::data::{DataError, Vault};
use crate::ids::TenantId;
use crate::plugin::Manifest;
use crate::runtime::{ContentHash, LoadError, LoadedPlugin, Runtime};
use crate::store::{Batch, Kind};

/// A registry entry (without the component bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginRecord {
    /// blake3 of the component bytes.
    #[schema(value_type = String)]
    pub hash: ContentHash,
    #[schema(value_type = Object)]
    pub manifest: Manifest,
    pub size: usize,
    pub imports: Vec<String>,
    pub uses_wasi: bool,
    pub uploaded_at: u64,
}

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(
        "{id} {version} is already registered with different bytes ({existing}); publish a new version"
    )]
    VersionTaken {
        id: String,
        version: String,
        existing: ContentHash,
    },
    #[error(
        "the stored bytes of plugin {hash} no longer hash to {hash} (they hash to {found}); \
         the registry entry is damaged or was replaced: upload the plugin again"
    )]
    Damaged {
        hash: ContentHash,
        found: ContentHash,
    },
    #[error(
        "plugin {hash} now describes itself differently from the manifest admitted for it \
         ({difference}); it is not run: admit the new behaviour as a new version"
    )]
    ManifestChanged {
        hash: ContentHash,
        difference: String,
    },
    #[error("plugin {0} has stored bytes but no registry record")]
    MissingRecord(ContentHash),
    #[error(transparent)]
    Data(#[from] DataError),
}

/// Where a component's bytes are kept (system tenant, [`Kind::Plugins`]).
pub fn component_key(hash: &ContentHash) -> Vec<u8> {
    [b"c".as_slice(), hash.as_bytes()].concat()
}

/// Where a component's [`PluginRecord`] is kept, beside its bytes.
pub fn record_key(hash: &ContentHash) -> Vec<u8> {
    [b"m".as_slice(), hash.as_bytes()].concat()
}

fn version_key(id: &str, version: &str) -> Vec<u8> {
    [b"v".as_slice(), id.as_bytes(), &[0], version.as_bytes()].concat()
}

/// Registry access over the vault and the runtime.
#[derive(Clone)]
pub struct Registry {
    vault: Vault,
    runtime: Arc<Runtime>,
}

impl Registry {
    pub fn new(vault: Vault, runtime: Arc<Runtime>) -> Registry {
        Registry { vault, runtime }
    }

    /// Check a component and prepare its registry writes. Returns the
    /// record and whether it is new.
    pub fn admit(
        &self,
        bytes: &[u8],
        now: u64,
        batch: &mut Batch,
    ) -> Result<(PluginRecord, bool), RegistryError> {
        let plugin = self.runtime.load(bytes)?;
        let manifest = &plugin.manifest;
        if let Some(existing) = self.version(&manifest.id, &manifest.version)? {
            if existing != plugin.hash {
                return Err(RegistryError::VersionTaken {
                    id: manifest.id.clone(),
                    version: manifest.version.clone(),
                    existing,
                });
            }
            // Uploading the admitted bytes again is answered with what was
            // admitted, unless they now describe themselves differently.
            let record = self
                .record(&plugin.hash)?
                .ok_or(RegistryError::MissingRecord(plugin.hash))?;
            if record.manifest != *manifest {
                self.runtime.evict(&plugin.hash);
                return Err(RegistryError::ManifestChanged {
                    hash: plugin.hash,
                    difference: manifest_difference(&record.manifest, manifest),
                });
            }
            return Ok((record, false));
        }
        let record = PluginRecord {
            hash: plugin.hash,
            manifest: manifest.clone(),
            size: plugin.size,
            imports: plugin.imports.clone(),
            uses_wasi: plugin.uses_wasi,
            uploaded_at: now,
        };
        let system = TenantId::SYSTEM;
        batch.put(
            system,
            Kind::Plugins,
            component_key(&plugin.hash),
            bytes.to_vec(),
        );
        batch.put(
            system,
            Kind::Plugins,
            record_key(&plugin.hash),
            serde_json::to_vec(&record).expect("records serialize"),
        );
        batch.put(
            system,
            Kind::Plugins,
            version_key(&manifest.id, &manifest.version),
            plugin.hash.as_bytes().to_vec(),
        );
        Ok((record, true))
    }

    /// The component registered under `id` and `version`.
    pub fn version(&self, id: &str, version: &str) -> Result<Option<ContentHash>, DataError> {
        Ok(self
            .vault
            .store
            .get(&TenantId::SYSTEM, Kind::Plugins, &version_key(id, version))?
            .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
            .map(ContentHash::from_bytes))
    }

    /// The newest version of a plugin id (by semantic version).
    pub fn latest(&self, id: &str) -> Result<Option<PluginRecord>, DataError> {
        let mut best: Option<PluginRecord> = None;
        for record in self.list()? {
            if record.manifest.id == id
                && best.as_ref().is_none_or(|b| {
                    version_order(&record.manifest.version) > version_order(&b.manifest.version)
                })
            {
                best = Some(record);
            }
        }
        Ok(best)
    }

    /// A registry record.
    pub fn record(&self, hash: &ContentHash) -> Result<Option<PluginRecord>, DataError> {
        match self
            .vault
            .store
            .get(&TenantId::SYSTEM, Kind::Plugins, &record_key(hash))?
        {
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| DataError::Decode {
                        kind: "plugins",
                        reason: e.to_string(),
                    })
            }
            None => Ok(None),
        }
    }

    /// Every registered plugin, by hash.
    pub fn list(&self) -> Result<Vec<PluginRecord>, DataError> {
        let mut records = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.vault.store.scan(
                &TenantId::SYSTEM,
                Kind::Plugins,
                b"m",
                after.as_deref(),
                256,
            )?;
            if page.is_empty() {
                return Ok(records);
            }
            for (_, bytes) in &page {
                records.push(
                    serde_json::from_slice(bytes).map_err(|e| DataError::Decode {
                        kind: "plugins",
                        reason: e.to_string(),
                    })?,
                );
            }
            after = page.last().map(|(k, _)| k.clone());
        }
    }

    /// The loaded (compiled) plugin for a hash: from the runtime's cache, or
    /// read from the registry, checked against what was admitted (see the
    /// module's comment) and compiled.
    pub fn loaded(&self, hash: &ContentHash) -> Result<Option<Arc<LoadedPlugin>>, RegistryError> {
        if let Some(plugin) = self.runtime.cached(hash) {
            return Ok(Some(plugin));
        }
        let Some(bytes) = self
            .vault
            .store
            .get(&TenantId::SYSTEM, Kind::Plugins, &component_key(hash))
            .map_err(DataError::from)?
        else {
            return Ok(None);
        };
        // Checked before compiling: the runtime would otherwise cache other
        // bytes under their own hash and hand them out for this one.
        let found = ContentHash::of(&bytes);
        if found != *hash {
            return Err(RegistryError::Damaged { hash: *hash, found });
        }
        let admitted = self
            .record(hash)?
            .ok_or(RegistryError::MissingRecord(*hash))?;
        let plugin = self.runtime.load(&bytes)?;
        if plugin.manifest != admitted.manifest {
            // Not kept compiled: a later call must not find it cached and
            // skip this check.
            self.runtime.evict(hash);
            return Err(RegistryError::ManifestChanged {
                hash: *hash,
                difference: manifest_difference(&admitted.manifest, &plugin.manifest),
            });
        }
        Ok(Some(plugin))
    }
}

/// Names the manifest fields that differ, admitted value first, for the
/// operator reading the refusal.
fn manifest_difference(admitted: &Manifest, now: &Manifest) -> String {
    let admitted = serde_json::to_value(admitted).expect("manifests serialize");
    let now = serde_json::to_value(now).expect("manifests serialize");
    let (Some(admitted), Some(now)) = (admitted.as_object(), now.as_object()) else {
        return "the manifest changed".to_owned();
    };
    let mut fields: Vec<&String> = admitted.keys().chain(now.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter(|field| admitted.get(*field) != now.get(*field))
        .map(|field| {
            let show =
                |v: Option<&serde_json::Value>| v.map_or("absent".to_owned(), |v| v.to_string());
            format!(
                "{field}: admitted {}, now {}",
                show(admitted.get(field)),
                show(now.get(field))
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Semantic versions compared numerically (`1.10.0` after `1.9.0`).
fn version_order(version: &str) -> (u64, u64, u64, bool) {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let mut parts = core.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let (a, b, c) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    // A release sorts after its pre-releases.
    (a, b, c, !version.contains('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically_and_releases_after_prereleases() {
        assert!(version_order("1.10.0") > version_order("1.9.0"));
        assert!(version_order("2.0.0") > version_order("2.0.0-rc.1"));
    }
}
