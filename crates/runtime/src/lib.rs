//! The sandbox flowgate's plugins run in, and what a plugin is to the host.
//!
//! - [`bindings`]: the `flowgate:plugin` WIT world, generated once; every
//!   other module speaks its types.
//! - [`plugin`]: a plugin's validated manifest and the actions it may ask
//!   for, checked against what it declared.
//! - The crate root: the [`Runtime`] that loads components and runs calls.
//!
//! Nothing here knows about tenants, contacts or storage: the host builds
//! the event a plugin is shown and applies the actions it returns.
//!
//! One wasmtime [`Engine`] with the pooling allocator serves every tenant.
//! Each plugin is compiled once and kept as an [`InstancePre`](wasmtime::component::InstancePre)
//! keyed by the blake3 hash of its bytes ([`LoadedPlugin`]); every event then
//! gets a fresh `Store` and a fresh instance, so guest memory never carries
//! one contact's data into another's event. Every call runs under
//! [`Limits`]: a fuel budget, an epoch deadline, a memory cap, and caps on
//! actions and texts. A trap ends that call only.
//!
//! ```no_run
//! use flowgate_runtime::{Call, Runtime, RuntimeConfig};
//! # fn event() -> flowgate_runtime::bindings::types::Event { unimplemented!() }
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let plugin = runtime.load(&std::fs::read("labeller.wasm")?)?;
//! let invocation = runtime.invoke(&plugin, Call::new(event()))?;
//! println!("{} actions, {} fuel", invocation.actions.len(), invocation.fuel);
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod bindings;
pub mod plugin;

mod breaker;
mod code_cache;
mod component;
mod host_state;
mod invoke;
mod limits;
mod ticker;
mod wait;
mod wasi;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use breaker::{BreakerOpen, BreakerTransition, CircuitBreakers};
pub use code_cache::CodeCacheStats;
pub use component::{ContentHash, LoadError, LoadedPlugin};
pub use host_state::{LogLine, PluginState};
pub use invoke::{Budget, Call, CallError, Invocation, InvokeFailure, ReusedInstance};
pub use limits::Limits;
pub use wasi::Seed;

use host_state::HostState;
use ticker::EpochTicker;

/// How often the epoch advances; deadlines are rounded up to this.
const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Configuration of the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Per-call limits.
    pub limits: Limits,
    /// Instances that may exist at once (pool size). Calls beyond it fail
    /// with a clear error rather than allocate without bound.
    pub max_instances: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            limits: Limits::default(),
            max_instances: 128,
        }
    }
}

/// The plugin sandbox: engine, linker, compiled plugins and breakers.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    limits: Limits,
    plugins: Mutex<HashMap<ContentHash, Arc<LoadedPlugin>>>,
    code_cache: Option<code_cache::CodeCache>,
    breakers: CircuitBreakers,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Build the engine and linker.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        let engine = Engine::new(&engine_config(&config)?)?;
        let mut linker = Linker::new(&engine);
        bindings::Plugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |state: &mut HostState| state,
        )?;
        // WASI is linked for every plugin but reaches only a deny-all context
        // with the call's own clock and randomness; components that do not
        // import it never see it. Its functions are asynchronous, so a
        // guest importing it is called with `call_async` (see `wait`).
        wasi::add_to_linker(&mut linker)?;
        let ticker = EpochTicker::start(engine.clone(), EPOCH_TICK);
        let breakers = CircuitBreakers::new(
            config.limits.breaker_failures,
            Duration::from_secs(config.limits.breaker_cooldown_secs),
        );
        Ok(Runtime {
            engine,
            linker,
            code_cache: None,
            limits: config.limits,
            plugins: Mutex::new(HashMap::new()),
            breakers,
            _ticker: ticker,
        })
    }

    /// The per-call limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The installations' circuit breakers.
    pub fn breakers(&self) -> &CircuitBreakers {
        &self.breakers
    }

    /// Compile and check a component, or return the cached one with the same
    /// content hash. Checks that every import is one the host provides,
    /// calls `describe()` in the sandbox and validates the manifest.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<LoadedPlugin>, LoadError> {
        let hash = ContentHash::of(bytes);
        if let Some(plugin) = self.cached(&hash) {
            return Ok(plugin);
        }
        let component = match &self.code_cache {
            Some(cache) => cache.load(&self.engine, &hash, bytes),
            None => Component::new(&self.engine, bytes),
        }
        .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        let plugin = Arc::new(component::prepare(self, hash, bytes.len(), component)?);
        let mut plugins = self.plugins.lock().expect("plugin cache lock poisoned");
        Ok(plugins.entry(hash).or_insert(plugin).clone())
    }

    /// Keep compiled components in `dir` between runs, and load them from
    /// there (see `code_cache`): without it, every component is compiled
    /// on every load, seconds for a Python or JavaScript plugin.
    pub fn with_code_cache(mut self, dir: std::path::PathBuf) -> Runtime {
        self.code_cache = Some(code_cache::CodeCache::new(dir, &self.engine));
        self
    }

    /// How the compiled-code cache served loads so far (zero without one).
    pub fn code_cache_stats(&self) -> CodeCacheStats {
        self.code_cache
            .as_ref()
            .map_or_else(CodeCacheStats::default, code_cache::CodeCache::stats)
    }

    /// The already-loaded plugin with this content hash.
    pub fn cached(&self, hash: &ContentHash) -> Option<Arc<LoadedPlugin>> {
        let plugins = self.plugins.lock().expect("plugin cache lock poisoned");
        plugins.get(hash).cloned()
    }

    /// Forget a compiled plugin (for example when it is removed from the
    /// registry). Calls already running keep their reference.
    pub fn evict(&self, hash: &ContentHash) {
        self.plugins
            .lock()
            .expect("plugin cache lock poisoned")
            .remove(hash);
    }
}

/// A plugin compiled into the host, run without the sandbox. Only with the
/// `native-plugins` feature, which exists so benchmarks can measure what the
/// sandbox costs inside the whole pipeline; the service never enables it.
#[cfg(feature = "native-plugins")]
pub trait NativePlugin: Send + Sync {
    /// Handle an event; `state` holds the (installation, contact) entries
    /// and is updated in place.
    fn handle(
        &self,
        event: bindings::types::Event,
        state: &mut std::collections::BTreeMap<String, Vec<u8>>,
    ) -> Result<Vec<bindings::types::Action>, bindings::types::PluginError>;
}

#[cfg(feature = "native-plugins")]
impl Runtime {
    /// Run `native` instead of the component with this hash (which must be
    /// loaded). Returns whether it was.
    pub fn use_native(&self, hash: &ContentHash, native: Arc<dyn NativePlugin>) -> bool {
        let mut plugins = self.plugins.lock().expect("plugin cache lock poisoned");
        let Some(existing) = plugins.get(hash) else {
            return false;
        };
        let replaced = LoadedPlugin {
            hash: existing.hash,
            manifest: existing.manifest.clone(),
            size: existing.size,
            imports: existing.imports.clone(),
            uses_wasi: existing.uses_wasi,
            describe_fuel: existing.describe_fuel,
            pre: existing.pre.clone(),
            native: Some(native),
        };
        plugins.insert(*hash, Arc::new(replaced));
        true
    }
}

fn engine_config(config: &RuntimeConfig) -> anyhow::Result<Config> {
    let limits = &config.limits;
    let mut pool = PoolingAllocationConfig::default();
    let instances = config.max_instances.max(1);
    pool.total_component_instances(instances)
        // wit-component wraps a guest in a few core instances (the module,
        // shims, fix-ups): 3 for our Rust guests, 4 for componentize-js.
        // componentize-py links CPython from 14 (libc, libpython and
        // extension modules, each its own core module), so 16 per instance
        // keeps `max_instances` a count of plugin instances of any kind.
        .total_core_instances(instances * 16)
        .total_memories(instances * 2)
        .total_tables(instances * 4)
        .total_stacks(instances)
        .max_memory_size(limits.memory_bytes)
        .table_elements(limits.table_elements)
        .max_tables_per_module(4)
        // Reset reused memory with memset over the pages actually touched
        // (PAGEMAP_SCAN, Linux >= 6.7) instead of madvise and page faults:
        // measured here, 18.3 µs -> 6.9 µs per fresh trivial instance.
        .pagemap_scan(Enabled::Auto)
        // Guests are linked with a 256 KiB stack (.cargo/config.toml), so
        // stack, data and the first heap pages fit in this window.
        .linear_memory_keep_resident(512 << 10)
        .table_keep_resident(4096);
    let mut engine = Config::new();
    engine
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(512 << 10)
        // Explicit bounds checks instead of guard pages. With guard pages
        // every fresh instance whose guest grows its memory (Rust's allocator
        // does on its first allocation) costs two mprotect calls and a TLB
        // shootdown: measured here 11.5 µs -> 6.9 µs per fresh trivial
        // instance, for ~4% slower guest code.
        .signals_based_traps(false)
        .memory_guard_size(0)
        .memory_reservation(limits.memory_bytes as u64)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    Ok(engine)
}
