//! Compiled code kept on disk between runs.
//!
//! Compiling a component is the slow part of loading it (a Python or
//! JavaScript plugin takes seconds; a restart used to recompile every
//! plugin). The compiled code of each component is written to a directory,
//! keyed by the component's blake3 hash and a fingerprint of the engine
//! (wasmtime's version and every setting that changes the code), so a
//! different build or configuration never picks up code it did not make.
//!
//! An entry is never trusted blindly: it is the blake3 hash of the code
//! followed by the code, and is read into memory and checked against that
//! hash before wasmtime deserialises it (which checks its own header, the
//! version and the configuration again). A missing, stale, truncated or
//! corrupt entry is compiled afresh and written again. Failing to write an
//! entry only costs the next run a compile.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::ContentHash;

/// Where compiled components are kept, for one engine.
pub(crate) struct CodeCache {
    dir: PathBuf,
    /// The engine's fingerprint, as hex: part of every entry's name.
    fingerprint: String,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// How the cache served loads so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodeCacheStats {
    /// Components loaded from compiled code on disk.
    pub hits: u64,
    /// Components compiled (no entry, or one that did not check out).
    pub misses: u64,
}

impl CodeCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> CodeCache {
        // `precompile_compatibility_hash` covers wasmtime's version and the
        // settings that make code incompatible; the standard hasher's fixed
        // keys make it the same in every process of one build.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        CodeCache {
            dir,
            fingerprint: format!("{:016x}", hasher.finish()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> CodeCacheStats {
        CodeCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// The entry of a component: `<blake3 of the component>-<engine>.cwasm`.
    pub(crate) fn path(&self, hash: &ContentHash) -> PathBuf {
        self.dir.join(format!("{hash}-{}.cwasm", self.fingerprint))
    }

    /// The component with this hash, from its entry, or compiled from
    /// `bytes` (and its entry written).
    pub(crate) fn load(
        &self,
        engine: &Engine,
        hash: &ContentHash,
        bytes: &[u8],
    ) -> wasmtime::Result<Component> {
        let path = self.path(hash);
        if let Some(component) = read(engine, &path) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(component);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let component = Component::new(engine, bytes)?;
        if let Ok(code) = component.serialize() {
            // A failed write costs the next run a compile, nothing else.
            let _ = write(&self.dir, &path, &code);
        }
        Ok(component)
    }
}

/// The component in the entry at `path`, if there is one and it checks
/// out.
fn read(engine: &Engine, path: &Path) -> Option<Component> {
    let entry = std::fs::read(path).ok()?;
    let (sum, code) = entry.split_at_checked(32)?;
    if blake3::hash(code).as_bytes() != sum {
        return None;
    }
    // SAFETY: `deserialize` runs the machine code it is given. These bytes
    // are exactly what `Component::serialize` wrote for this engine's
    // fingerprint in a directory only this service's user may write (the
    // data directory, or the user's own cache), and the hash above shows
    // they are unchanged since; wasmtime checks the version and settings
    // in its header again.
    unsafe { Component::deserialize(engine, code) }.ok()
}

/// Write an entry atomically (a temporary file renamed over it), readable
/// by its owner only.
fn write(dir: &Path, path: &Path, code: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let partial = path.with_extension(format!("partial.{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&partial)?;
    file.write_all(blake3::hash(code).as_bytes())?;
    file.write_all(code)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)
}
