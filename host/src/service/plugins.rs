//! The plugin registry as tenants and the operator use it: finding a plugin
//! by reference, listing what is admitted, and admitting a component.

use super::ServiceInner;
use super::caller::TenantCaller;
use super::change::Change;
use super::error::{ServiceError, ServiceResult};
use crate::audit::{Actor, AuditDraft};
use crate::ids::TenantId;
use crate::registry::{PluginRecord, RegistryError};
use crate::runtime::ContentHash;
use crate::store::Batch;
use crate::tenancy::api_keys::Scope;

/// The plugin a reference names: a content hash, `id@version`, or an id
/// (its newest version).
pub fn resolve(service: &ServiceInner, reference: &str) -> ServiceResult<PluginRecord> {
    let registry = &service.registry;
    let record = if let Ok(hash) = reference.parse() {
        registry.record(&hash)?
    } else if let Some((id, version)) = reference.split_once('@') {
        match registry.version(id, version)? {
            Some(hash) => registry.record(&hash)?,
            None => None,
        }
    } else {
        registry.latest(reference)?
    };
    record.ok_or(ServiceError::NotFound("plugin"))
}

/// Every admitted plugin (for a tenant choosing what to enable).
pub fn available(
    service: &ServiceInner,
    caller: &TenantCaller,
) -> ServiceResult<Vec<PluginRecord>> {
    caller.require(Scope::Read)?;
    Ok(service.registry.list()?)
}

/// Every admitted plugin (for the operator).
pub fn list(service: &ServiceInner) -> ServiceResult<Vec<PluginRecord>> {
    Ok(service.registry.list()?)
}

/// One registry entry, by its content hash as given in a path.
pub fn get(service: &ServiceInner, raw_hash: &str) -> ServiceResult<PluginRecord> {
    let hash: ContentHash = raw_hash
        .parse()
        .map_err(|_| ServiceError::NotFound("plugin"))?;
    service
        .registry
        .record(&hash)?
        .ok_or(ServiceError::NotFound("plugin"))
}

/// How an admission ended.
pub enum Admitted {
    /// Newly registered.
    New(PluginRecord),
    /// The same bytes were registered before.
    Existing(PluginRecord),
}

/// Admit a component to the registry: it is loaded in the sandbox (imports
/// checked, `describe()` called, the manifest validated) before anything is
/// stored. Compiling takes CPU seconds, so it runs on a blocking thread.
pub async fn admit(
    service: &ServiceInner,
    bytes: impl AsRef<[u8]> + Send + 'static,
) -> ServiceResult<Admitted> {
    let registry = service.registry.clone();
    let now = service.clock.now();
    let admitted = tokio::task::spawn_blocking(move || {
        let mut batch = Batch::new();
        registry
            .admit(bytes.as_ref(), now, &mut batch)
            .map(|(record, new)| (record, new, batch))
    })
    .await?;
    let (record, new, batch) = match admitted {
        Ok(admitted) => admitted,
        Err(RegistryError::Load(error)) => {
            return Err(ServiceError::InvalidPlugin(error.to_string()));
        }
        Err(
            error @ (RegistryError::VersionTaken { .. } | RegistryError::ManifestChanged { .. }),
        ) => {
            return Err(ServiceError::Conflict(error.to_string()));
        }
        Err(RegistryError::Data(error)) => return Err(error.into()),
        Err(error @ (RegistryError::Damaged { .. } | RegistryError::MissingRecord(_))) => {
            return Err(ServiceError::Registry(error));
        }
    };
    if !new {
        return Ok(Admitted::Existing(record));
    }
    let audit = AuditDraft::new(TenantId::SYSTEM, now, Actor::Operator, "plugin.registered")
        .details(serde_json::json!({
            "hash": record.hash, "id": record.manifest.id, "version": record.manifest.version,
        }));
    let (record, _) = service
        .commit_change(Change::new(batch, vec![audit], record))
        .await?;
    Ok(Admitted::New(record))
}
