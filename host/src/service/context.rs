//! Per-tenant context for processing: the tenant's profile, its flow
//! (enabled installations in order, with their compiled plugins) and its
//! channels. Cached in memory; every API write that changes one of them
//! invalidates the tenant's entry.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::data::DataError;
use crate::ids::{ChannelId, TenantId};
use crate::registry::{Registry, RegistryError};
use crate::runtime::LoadedPlugin;
use crate::tenancy::channels::Channel;
use crate::tenancy::installations::Installation;
use crate::tenancy::tenant::Tenant;

/// An installation ready to run.
pub struct FlowStep {
    pub installation: Installation,
    pub plugin: Arc<LoadedPlugin>,
}

/// What processing needs to know about a tenant.
pub struct TenantContext {
    pub tenant: Tenant,
    pub flow: Vec<FlowStep>,
    pub channels: Vec<Channel>,
}

impl TenantContext {
    /// The channel with this id.
    pub fn channel(&self, id: &ChannelId) -> Option<&Channel> {
        self.channels.iter().find(|c| &c.id == id)
    }
}

/// Why a context could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("tenant {0} does not exist")]
    UnknownTenant(TenantId),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(
        "installation {installation} refers to plugin {plugin}, which cannot be loaded: {error}"
    )]
    Plugin {
        installation: String,
        plugin: String,
        error: Box<RegistryError>,
    },
}

/// The cache.
#[derive(Clone)]
pub struct TenantContexts {
    registry: Registry,
    vault: crate::data::Vault,
    cache: Arc<RwLock<HashMap<TenantId, Arc<TenantContext>>>>,
}

impl TenantContexts {
    pub fn new(vault: crate::data::Vault, registry: Registry) -> TenantContexts {
        TenantContexts {
            registry,
            vault,
            cache: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// The tenant's context, loading it on first use.
    pub fn get(&self, tenant: &TenantId) -> Result<Arc<TenantContext>, ContextError> {
        if let Some(context) = self.cache.read().expect("context cache lock").get(tenant) {
            return Ok(context.clone());
        }
        let profile =
            Tenant::load(&self.vault, tenant)?.ok_or(ContextError::UnknownTenant(*tenant))?;
        let mut flow = Vec::new();
        for installation in Installation::list(&self.vault, tenant)? {
            if !installation.enabled {
                continue;
            }
            let plugin = match self.registry.loaded(&installation.plugin) {
                Ok(Some(plugin)) => plugin,
                Ok(None) => {
                    return Err(ContextError::Plugin {
                        installation: installation.id.to_string(),
                        plugin: installation.plugin.to_string(),
                        error: Box::new(RegistryError::Data(DataError::Decode {
                            kind: "plugins",
                            reason: "not in the registry".into(),
                        })),
                    });
                }
                Err(error) => {
                    return Err(ContextError::Plugin {
                        installation: installation.id.to_string(),
                        plugin: installation.plugin.to_string(),
                        error: Box::new(error),
                    });
                }
            };
            flow.push(FlowStep {
                installation,
                plugin,
            });
        }
        let channels = Channel::list(&self.vault, tenant)?;
        let context = Arc::new(TenantContext {
            tenant: profile,
            flow,
            channels,
        });
        self.cache
            .write()
            .expect("context cache lock")
            .insert(*tenant, context.clone());
        Ok(context)
    }

    /// Forget the tenant's context (after a change).
    pub fn invalidate(&self, tenant: &TenantId) {
        self.cache
            .write()
            .expect("context cache lock")
            .remove(tenant);
    }
}
