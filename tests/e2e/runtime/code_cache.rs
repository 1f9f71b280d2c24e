//! The compiled-code cache: a component compiled once is loaded from disk
//! by the next runtime, and an entry that does not check out is compiled
//! again, never run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use flowgate::runtime::{CodeCacheStats, Runtime, RuntimeConfig};
use flowgate_testkit::guests::component;

fn cached_runtime(dir: &Path) -> Runtime {
    Runtime::new(RuntimeConfig::default())
        .unwrap()
        .with_code_cache(dir.to_owned())
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|list| list.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn a_compiled_component_is_loaded_from_the_cache_by_the_next_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("code");
    let bytes = component("labeller");

    let first = cached_runtime(&cache);
    let compiled = first.load(&bytes).unwrap();
    assert_eq!(
        first.code_cache_stats(),
        CodeCacheStats { hits: 0, misses: 1 }
    );
    let written = entries(&cache);
    assert_eq!(written.len(), 1, "one entry: {written:?}");
    let mode = std::fs::metadata(&written[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "compiled code is its owner's only");

    // A new runtime (a restart) loads it without compiling, and it is the
    // same plugin.
    let second = cached_runtime(&cache);
    let loaded = second.load(&bytes).unwrap();
    assert_eq!(
        second.code_cache_stats(),
        CodeCacheStats { hits: 1, misses: 0 }
    );
    assert_eq!(loaded.manifest, compiled.manifest);
    assert_eq!(loaded.hash, compiled.hash);
}

#[test]
fn a_damaged_or_truncated_entry_is_compiled_again_and_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("code");
    let bytes = component("labeller");
    cached_runtime(&cache).load(&bytes).unwrap();
    let entry = entries(&cache).pop().unwrap();
    let good = std::fs::read(&entry).unwrap();

    // One byte of the machine code changed: never run, compiled again.
    let mut damaged = good.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    std::fs::write(&entry, &damaged).unwrap();
    let runtime = cached_runtime(&cache);
    runtime.load(&bytes).unwrap();
    assert_eq!(
        runtime.code_cache_stats(),
        CodeCacheStats { hits: 0, misses: 1 }
    );
    assert_eq!(
        std::fs::read(&entry).unwrap(),
        good,
        "the entry is rewritten"
    );

    // Cut short: the same.
    std::fs::write(&entry, &good[..good.len() / 3]).unwrap();
    let runtime = cached_runtime(&cache);
    runtime.load(&bytes).unwrap();
    assert_eq!(runtime.code_cache_stats().misses, 1);

    // And the rewritten entry serves the next runtime.
    let runtime = cached_runtime(&cache);
    runtime.load(&bytes).unwrap();
    assert_eq!(runtime.code_cache_stats().hits, 1);
}

#[test]
fn an_entry_is_used_only_for_the_component_it_was_compiled_from() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("code");
    cached_runtime(&cache).load(&component("labeller")).unwrap();
    // Another component finds no entry of its own: it is compiled, and
    // is itself (not the labeller's code under its name).
    let runtime = cached_runtime(&cache);
    let greeter = runtime.load(&component("greeter")).unwrap();
    assert_eq!(
        runtime.code_cache_stats(),
        CodeCacheStats { hits: 0, misses: 1 }
    );
    assert_eq!(greeter.manifest.id, "greeter");
    assert_eq!(entries(&cache).len(), 2);
}
