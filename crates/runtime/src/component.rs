//! Admitting a component: content address, import check, manifest.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use wasmtime::component::Component;

use super::host_state::{HostState, PluginState};
use super::invoke::{CallError, InvokeFailure};
use super::wasi::WasiSetup;
use super::{Runtime, invoke};
use crate::bindings::PluginPre;
use crate::plugin::{Manifest, ManifestError};

/// The blake3 hash of a component's bytes: its identity in the registry and
/// in the runtime's cache.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// Hash these bytes.
    pub fn of(bytes: &[u8]) -> ContentHash {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }

    /// The raw hash.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The raw hash.
    pub fn from_bytes(bytes: [u8; 32]) -> ContentHash {
        ContentHash(bytes)
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&blake3::Hash::from_bytes(self.0).to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

/// Only the spelling [`Display`](fmt::Display) writes (lower case, as
/// every id of the host): a hash in a path names one plugin, in one
/// spelling.
impl FromStr for ContentHash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let refused = || format!("`{s}` is not a 64-character lower-case hex blake3 hash");
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(refused());
        }
        blake3::Hash::from_hex(s)
            .map(|h| ContentHash(*h.as_bytes()))
            .map_err(|_| refused())
    }
}

impl From<ContentHash> for String {
    fn from(hash: ContentHash) -> String {
        hash.to_string()
    }
}

impl TryFrom<String> for ContentHash {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A compiled, checked plugin, ready to instantiate once per event.
pub struct LoadedPlugin {
    /// Content address of the component bytes.
    pub hash: ContentHash,
    /// The validated manifest from `describe()`.
    pub manifest: Manifest,
    /// Size of the component in bytes.
    pub size: usize,
    /// Every import of the component, by name.
    pub imports: Vec<String>,
    /// Whether the component imports WASI (and so gets a deny-all context).
    pub uses_wasi: bool,
    /// Fuel `describe()` used.
    pub describe_fuel: u64,
    pub(super) pre: PluginPre<HostState>,
    /// The same plugin compiled natively, run instead of the component
    /// (benchmarks only: no sandbox).
    #[cfg(feature = "native-plugins")]
    pub(super) native: Option<std::sync::Arc<dyn super::NativePlugin>>,
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("hash", &self.hash)
            .field("id", &self.manifest.id)
            .field("version", &self.manifest.version)
            .finish_non_exhaustive()
    }
}

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a valid component, or it failed to compile.
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// The component imports something the host does not provide.
    #[error(
        "the component imports {} which the host does not provide; plugins may import only \
         flowgate:plugin/{{log,state,types}} and WASI 0.2",
        .imports.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
    )]
    UnsupportedImports { imports: Vec<String> },
    /// The component does not have the `flowgate:plugin` exports.
    #[error("the component does not implement the flowgate:plugin world: {0}")]
    NotAPlugin(String),
    /// `describe()` failed.
    #[error("describe() failed: {0}")]
    Describe(CallError),
    /// The manifest is invalid.
    #[error("invalid manifest: {0}")]
    Manifest(#[from] ManifestError),
}

fn is_supported_import(name: &str) -> bool {
    const FLOWGATE: [&str; 3] = [
        "flowgate:plugin/log@0.1.0",
        "flowgate:plugin/state@0.1.0",
        "flowgate:plugin/types@0.1.0",
    ];
    // The WASI 0.2 packages wasmtime-wasi links (all reaching a deny-all
    // context); wasi:http and others are not offered.
    const WASI: [&str; 6] = [
        "wasi:cli/",
        "wasi:clocks/",
        "wasi:filesystem/",
        "wasi:io/",
        "wasi:random/",
        "wasi:sockets/",
    ];
    FLOWGATE.contains(&name)
        || (WASI.iter().any(|package| name.starts_with(package)) && name.contains("@0.2."))
}

pub(super) fn prepare(
    runtime: &Runtime,
    hash: ContentHash,
    size: usize,
    component: Component,
) -> Result<LoadedPlugin, LoadError> {
    let imports: Vec<String> = component
        .component_type()
        .imports(&runtime.engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let unsupported: Vec<String> = imports
        .iter()
        .filter(|name| !is_supported_import(name))
        .cloned()
        .collect();
    if !unsupported.is_empty() {
        return Err(LoadError::UnsupportedImports {
            imports: unsupported,
        });
    }
    let uses_wasi = imports.iter().any(|name| name.starts_with("wasi:"));
    let instance_pre = runtime
        .linker
        .instantiate_pre(&component)
        .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
    let pre = PluginPre::new(instance_pre).map_err(|e| LoadError::NotAPlugin(format!("{e:#}")))?;

    // describe() sees the Unix epoch and a fixed seed, at admission and at
    // every load: a manifest cannot depend on the time or on chance.
    let wasi = uses_wasi.then(|| WasiSetup::describe(runtime.limits.deadline()));
    let state = HostState::new(&runtime.limits, PluginState::default(), wasi);
    let (described, fuel) = invoke::in_sandbox(runtime, &pre, state, invoke::Describe)
        .map_err(|failure: InvokeFailure| LoadError::Describe(failure.error))?;
    let manifest = Manifest::from_wit(described)?;
    Ok(LoadedPlugin {
        hash,
        manifest,
        size,
        imports,
        uses_wasi,
        describe_fuel: fuel,
        pre,
        #[cfg(feature = "native-plugins")]
        native: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_round_trips_through_hex() {
        let hash = ContentHash::of(b"component bytes");
        let parsed: ContentHash = hash.to_string().parse().unwrap();
        assert_eq!(parsed, hash);
        assert!("not-hex".parse::<ContentHash>().is_err());
        // One spelling: the upper-case one names no plugin.
        assert!(
            hash.to_string()
                .to_uppercase()
                .parse::<ContentHash>()
                .is_err()
        );
        assert!(format!(" {hash}").parse::<ContentHash>().is_err());
    }

    #[test]
    fn only_flowgate_and_wasi_02_imports_are_supported() {
        assert!(is_supported_import("flowgate:plugin/state@0.1.0"));
        assert!(is_supported_import("wasi:cli/stdout@0.2.0"));
        assert!(!is_supported_import("wasi:http/outgoing-handler@0.2.0"));
        assert!(!is_supported_import("wasi:cli/stdout@0.3.0"));
        assert!(!is_supported_import("fixture:undeclared/network"));
        assert!(!is_supported_import("flowgate:plugin/state@9.0.0"));
    }
}
