//! Per-tenant context for processing: the tenant's profile, its flow
//! (enabled installations in order, with their compiled plugins) and its
//! channels. Cached in memory; every change to one of them invalidates the
//! tenant's entry (through [`crate::service::change`], the one place
//! changes are committed).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
    #[error("installation {installation} refers to plugin {plugin}, which is not in the registry")]
    MissingPlugin {
        installation: String,
        plugin: String,
    },
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
    /// Counts invalidations. A context is built outside the lock (building
    /// may compile plugins for seconds); it is cached only if no
    /// invalidation ran meanwhile, and built again otherwise — else a
    /// context read before a change (a revoked grant, a disabled
    /// installation) could be cached after the change's invalidation and
    /// stay in force until the next one.
    generation: Arc<AtomicU64>,
}

impl TenantContexts {
    pub fn new(vault: crate::data::Vault, registry: Registry) -> TenantContexts {
        TenantContexts {
            registry,
            vault,
            cache: Arc::new(RwLock::new(HashMap::new())),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The tenant's context, loading it on first use.
    pub fn get(&self, tenant: &TenantId) -> Result<Arc<TenantContext>, ContextError> {
        self.get_built(tenant, || {})
    }

    /// [`TenantContexts::get`], calling `built` between a build and the
    /// check that decides whether to cache it: the window a concurrent
    /// change can fall into, which tests widen at will.
    fn get_built(
        &self,
        tenant: &TenantId,
        mut built: impl FnMut(),
    ) -> Result<Arc<TenantContext>, ContextError> {
        loop {
            if let Some(context) = self.cache.read().expect("context cache lock").get(tenant) {
                return Ok(context.clone());
            }
            let generation = self.generation.load(Ordering::Acquire);
            let context = Arc::new(self.build(tenant)?);
            built();
            let mut cache = self.cache.write().expect("context cache lock");
            if self.generation.load(Ordering::Acquire) == generation {
                cache.insert(*tenant, context.clone());
                return Ok(context);
            }
        }
    }

    fn build(&self, tenant: &TenantId) -> Result<TenantContext, ContextError> {
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
                    return Err(ContextError::MissingPlugin {
                        installation: installation.id.to_string(),
                        plugin: installation.plugin.to_string(),
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
        Ok(TenantContext {
            tenant: profile,
            flow,
            channels,
        })
    }

    /// Forget the tenant's context (after a change is committed).
    pub fn invalidate(&self, tenant: &TenantId) {
        let mut cache = self.cache.write().expect("context cache lock");
        self.generation.fetch_add(1, Ordering::AcqRel);
        cache.remove(tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_vault;
    use crate::runtime::{Runtime, RuntimeConfig};
    use crate::store::Batch;

    fn save(vault: &crate::data::Vault, tenant: &Tenant) {
        let mut batch = Batch::new();
        tenant.stage(vault, &mut batch).unwrap();
        vault.store.commit(&batch).unwrap();
    }

    /// A change committed (and invalidated) after a context was built from
    /// the state before it, but before that context is cached, must not be
    /// lost: the stale context is thrown away and built again. Without the
    /// generation check the stale one is cached and served until the next
    /// change — for a revoked grant or a disabled installation, a plugin
    /// keeps running with what the tenant took away.
    #[test]
    fn a_change_committed_while_a_context_is_built_is_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let vault = test_vault(dir.path());
        let runtime = Arc::new(Runtime::new(RuntimeConfig::default()).unwrap());
        let contexts = TenantContexts::new(vault.clone(), Registry::new(vault.clone(), runtime));
        let id = TenantId::generate();
        vault.keys.create_tenant(&id).unwrap();
        let mut tenant = Tenant::new(id, "Before", "Europe/Berlin", 1_700_000_000).unwrap();
        save(&vault, &tenant);

        let mut builds = 0;
        let served = contexts
            .get_built(&id, || {
                builds += 1;
                if builds == 1 {
                    // The change lands in the window, as `service::change`
                    // makes it: commit, then invalidate.
                    tenant.name = "After".to_owned();
                    save(&vault, &tenant);
                    contexts.invalidate(&id);
                }
            })
            .unwrap();
        assert_eq!(builds, 2, "the stale context must be built again");
        assert_eq!(served.tenant.name, "After");
        assert_eq!(contexts.get(&id).unwrap().tenant.name, "After");
    }
}
