//! The registry pins what the operator admitted: stored bytes are checked
//! against their hash and the fresh `describe()` against the admitted
//! manifest whenever a component is loaded again (a restart, an eviction).

use std::sync::Arc;

use flowgate::ids::TenantId;
use flowgate::plugin::Purpose;
use flowgate::registry::{self, PluginRecord, Registry, RegistryError};
use flowgate::runtime::{ContentHash, Runtime, RuntimeConfig};
use flowgate::store::{Batch, Kind};

use flowgate_testkit::guests::component;

use super::vault;

/// Admit `name` into a fresh registry in `dir`; returns its hash.
fn admitted(dir: &std::path::Path, name: &str) -> ContentHash {
    let vault = vault(dir);
    let registry = Registry::new(vault.clone(), Arc::new(restarted_runtime()));
    let mut batch = Batch::new();
    let (record, new) = registry
        .admit(&component(name), 1_700_000_000, &mut batch)
        .unwrap();
    assert!(new);
    vault.store.commit(&batch).unwrap();
    record.hash
}

/// What a restarted service has: a runtime with nothing compiled yet.
fn restarted_runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).expect("runtime")
}

#[test]
fn a_component_whose_stored_bytes_were_replaced_is_refused_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let hash = admitted(dir.path(), "lead-score");
    let vault = vault(dir.path());
    // Someone with write access to the store swaps in other bytes under
    // the admitted hash.
    let mut batch = Batch::new();
    batch.put(
        TenantId::SYSTEM,
        Kind::Plugins,
        registry::component_key(&hash),
        component("auto-reply"),
    );
    vault.store.commit(&batch).unwrap();

    let registry = Registry::new(vault, Arc::new(restarted_runtime()));
    match registry.loaded(&hash) {
        Err(RegistryError::Damaged { hash: named, found }) => {
            assert_eq!(named, hash);
            assert_eq!(found, ContentHash::of(&component("auto-reply")));
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(plugin) => panic!(
            "the swapped bytes were loaded as {:?}",
            plugin.map(|p| p.manifest.id.clone())
        ),
    }
}

#[test]
fn a_component_whose_describe_no_longer_matches_the_admitted_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hash = admitted(dir.path(), "lead-score");
    let vault = vault(dir.path());
    let record_at = registry::record_key(&hash);
    let stored = vault
        .store
        .get(&TenantId::SYSTEM, Kind::Plugins, &record_at)
        .unwrap()
        .unwrap();
    let mut record: PluginRecord = serde_json::from_slice(&stored).unwrap();
    // Lead scoring was admitted for profiling, which needs the contact's
    // consent. The same bytes now answer `describe()` with a different
    // purpose (here the record is edited instead: the sandbox fixes every
    // source of difference a guest could use, so no guest can be written
    // to do it).
    let profiling = Purpose::parse("personalize.profiling").unwrap();
    assert!(record.manifest.purposes.contains(&profiling));
    record.manifest.purposes = vec![Purpose::parse("essential.service").unwrap()];
    let mut batch = Batch::new();
    batch.put(
        TenantId::SYSTEM,
        Kind::Plugins,
        record_at,
        serde_json::to_vec(&record).unwrap(),
    );
    vault.store.commit(&batch).unwrap();

    let runtime = Arc::new(restarted_runtime());
    let registry = Registry::new(vault, runtime.clone());
    for attempt in 0..2 {
        match registry.loaded(&hash) {
            Err(error @ RegistryError::ManifestChanged { .. }) => {
                let said = error.to_string();
                assert!(said.contains("purposes"), "attempt {attempt}: {said}");
                assert!(
                    said.contains("essential.service"),
                    "attempt {attempt}: {said}"
                );
            }
            Err(other) => panic!("attempt {attempt} refused for another reason: {other}"),
            Ok(_) => panic!("attempt {attempt}: a manifest that changed was loaded"),
        }
        // Refused components are not left compiled for a later call to
        // find without the check.
        assert!(runtime.cached(&hash).is_none());
    }
}

#[test]
fn an_unchanged_component_loads_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let hash = admitted(dir.path(), "lead-score");
    let registry = Registry::new(vault(dir.path()), Arc::new(restarted_runtime()));
    let plugin = registry.loaded(&hash).unwrap().unwrap();
    assert_eq!(plugin.hash, hash);
    assert_eq!(plugin.manifest.id, "lead-score");
}
