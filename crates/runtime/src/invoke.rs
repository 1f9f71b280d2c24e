//! One call into a plugin: a fresh store and instance, the budget, the
//! outcome.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::{Store, Trap};

use super::breaker::{BreakerOpen, BreakerTransition};
use super::host_state::{HostState, LogLine, PluginState};
use super::wasi::{Seed, WasiSetup};
use super::{EPOCH_TICK, LoadedPlugin, Runtime, wait};
use crate::bindings::{Plugin, PluginPre, types as wit};
use crate::plugin::{Action, Refusal};

/// The input of one `handle` call.
#[derive(Debug, Clone)]
pub struct Call {
    /// The installation, whose circuit breaker guards the call. `None` for
    /// calls outside the service (the author CLI).
    pub installation: Option<String>,
    /// The minimised event.
    pub event: wit::Event,
    /// The plugin's state for this (installation, contact).
    pub state: PluginState,
    /// The seed of the call's WASI randomness (guests that import WASI).
    /// `None`: derived from the event's pseudonym, time and trigger, so
    /// calls outside the service are repeatable.
    pub seed: Option<Seed>,
    /// The most this call may use when that is less than the runtime's
    /// per-call limits: what is left of the tenant's budget for the event.
    pub budget: Option<Budget>,
}

/// What a call may use at most, besides the runtime's per-call
/// [`Limits`](super::Limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Fuel (instructions).
    pub fuel: u64,
    /// Wall-clock time.
    pub time: Duration,
}

impl Call {
    /// A call with empty state and no installation.
    pub fn new(event: wit::Event) -> Call {
        Call {
            installation: None,
            event,
            state: PluginState::default(),
            seed: None,
            budget: None,
        }
    }

    /// Seed the call's WASI randomness.
    pub fn seed(mut self, seed: Seed) -> Call {
        self.seed = Some(seed);
        self
    }

    /// Use at most `budget`, if that is less than the per-call limits. A
    /// call stopped by it fails with [`CallError::EventBudget`], which does
    /// not count against the installation's circuit breaker: the plugin
    /// did not misbehave, the plugins before it used the budget.
    pub fn within(mut self, budget: Budget) -> Call {
        self.budget = Some(budget);
        self
    }

    /// Guard the call with this installation's circuit breaker.
    pub fn installation(mut self, id: impl Into<String>) -> Call {
        self.installation = Some(id.into());
        self
    }

    /// Start from this state.
    pub fn state(mut self, state: PluginState) -> Call {
        self.state = state;
        self
    }
}

/// A successful call.
#[derive(Debug)]
pub struct Invocation {
    /// The plugin's id.
    pub plugin: String,
    /// Actions that passed the runtime's checks, in order.
    pub actions: Vec<Action>,
    /// Actions the runtime dropped, with the reason.
    pub refused: Vec<(Action, Refusal)>,
    /// The state after the call (commit its changes to keep them).
    pub state: PluginState,
    /// What the plugin logged (and wrote to WASI stdout/stderr).
    pub logs: Vec<LogLine>,
    /// Log lines over the per-call budget, dropped.
    pub dropped_log_lines: usize,
    /// Fuel (instructions) used.
    pub fuel: u64,
    /// Linear memory the instance held at the end of the call, in bytes
    /// (all its memories; what to compare with [`Limits::memory_bytes`](super::Limits)
    /// when sizing it). 0 for native plugins.
    pub memory_bytes: usize,
    /// Wall-clock time, instantiation included.
    pub elapsed: Duration,
    /// A breaker transition this call caused (a trial call that closed it).
    pub breaker: Option<BreakerTransition>,
}

/// A failed call. The failure is contained: the runtime keeps serving.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}` {error}")]
pub struct InvokeFailure {
    /// The plugin's id.
    pub plugin: String,
    /// What went wrong.
    pub error: CallError,
    /// Fuel used before the failure.
    pub fuel: u64,
    /// Wall-clock time before the failure.
    pub elapsed: Duration,
    /// What the plugin logged before failing.
    pub logs: Vec<LogLine>,
    /// A breaker transition this failure caused.
    pub breaker: Option<BreakerTransition>,
}

/// What went wrong in a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CallError {
    #[error("ran out of fuel (budget {budget} instructions)")]
    OutOfFuel { budget: u64 },
    #[error("exceeded its {deadline_ms} ms deadline")]
    Deadline { deadline_ms: u64 },
    #[error("exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { limit_bytes: usize },
    #[error("overflowed its stack")]
    StackOverflow,
    #[error("panicked: {message}")]
    Panicked { message: String },
    #[error("trapped: {message}")]
    Trapped { message: String },
    #[error("reported invalid configuration: {message}")]
    InvalidConfig { message: String },
    #[error("failed: {message}")]
    Failed { message: String },
    #[error("returned {count} actions; at most {limit} are accepted")]
    TooManyActions { count: usize, limit: usize },
    #[error("is disabled by its circuit breaker (retry in {retry_in_secs} s)")]
    BreakerOpen { retry_in_secs: u64 },
    #[error("could not be instantiated: {message}")]
    Instantiate { message: String },
    #[error(
        "was stopped when the tenant's budget for this event ran out ({fuel} fuel, {time_ms} ms were left)"
    )]
    EventBudget { fuel: u64, time_ms: u64 },
}

impl CallError {
    /// A short stable name for metrics and the audit trail.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::OutOfFuel { .. } => "out-of-fuel",
            CallError::Deadline { .. } => "deadline",
            CallError::MemoryLimit { .. } => "memory-limit",
            CallError::StackOverflow => "stack-overflow",
            CallError::Panicked { .. } => "panicked",
            CallError::Trapped { .. } => "trapped",
            CallError::InvalidConfig { .. } => "invalid-config",
            CallError::Failed { .. } => "failed",
            CallError::TooManyActions { .. } => "too-many-actions",
            CallError::BreakerOpen { .. } => "breaker-open",
            CallError::Instantiate { .. } => "instantiate",
            CallError::EventBudget { .. } => "event-budget",
        }
    }

    /// Whether the plugin trapped (as opposed to returning an error).
    pub fn is_trap(&self) -> bool {
        matches!(
            self,
            CallError::OutOfFuel { .. }
                | CallError::Deadline { .. }
                | CallError::MemoryLimit { .. }
                | CallError::StackOverflow
                | CallError::Panicked { .. }
                | CallError::Trapped { .. }
        )
    }
}

impl From<BreakerOpen> for CallError {
    fn from(open: BreakerOpen) -> Self {
        CallError::BreakerOpen {
            retry_in_secs: open.retry_in.as_secs().max(1),
        }
    }
}

/// The raw outcome of running an export against a fresh instance.
pub(super) struct SandboxRun<T> {
    pub result: Result<T, CallError>,
    pub fuel: u64,
    pub elapsed: Duration,
    pub host: HostState,
}

/// What one call may use: the runtime's limits, or less.
#[derive(Debug, Clone, Copy)]
pub(super) struct CallLimits {
    pub fuel: u64,
    pub deadline: Duration,
}

/// An export of the plugin world, called the same way on both paths.
pub(super) trait Export {
    type Output;

    /// For guests that do not import WASI: a plain call.
    fn call(&self, plugin: &Plugin, store: &mut Store<HostState>)
    -> wasmtime::Result<Self::Output>;

    /// For guests that import WASI: a call whose waits are futures.
    fn call_async<'a>(
        &'a self,
        plugin: &'a Plugin,
        store: &'a mut Store<HostState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Output>> + 'a;
}

/// `describe()`.
pub(super) struct Describe;

impl Export for Describe {
    type Output = wit::Manifest;

    fn call(
        &self,
        plugin: &Plugin,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<wit::Manifest> {
        plugin.call_describe(store)
    }

    async fn call_async<'a>(
        &'a self,
        plugin: &'a Plugin,
        store: &'a mut Store<HostState>,
    ) -> wasmtime::Result<wit::Manifest> {
        let (manifest,) = plugin.func_describe().call_async(store, ()).await?;
        Ok(manifest)
    }
}

/// `handle(event)`.
struct Handle<'e>(&'e wit::Event);

impl Export for Handle<'_> {
    type Output = Result<Vec<wit::Action>, wit::PluginError>;

    fn call(
        &self,
        plugin: &Plugin,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Self::Output> {
        plugin.call_handle(store, self.0)
    }

    async fn call_async<'a>(
        &'a self,
        plugin: &'a Plugin,
        store: &'a mut Store<HostState>,
    ) -> wasmtime::Result<Self::Output> {
        let (handled,) = plugin.func_handle().call_async(store, (self.0,)).await?;
        Ok(handled)
    }
}

/// Instantiate `pre` in a fresh store under `limits` and call `export`.
///
/// Guest code is stopped by fuel and the epoch deadline. A guest that
/// imports WASI is called asynchronously and driven by [`wait::drive`], so
/// that no host function it waits in (a sleep, a poll) outlives the
/// deadline either: every call ends within its deadline and an epoch tick,
/// whatever the guest imports.
pub(super) fn run_in_sandbox<E: Export>(
    runtime: &Runtime,
    pre: &PluginPre<HostState>,
    host: HostState,
    limits: CallLimits,
    export: E,
) -> SandboxRun<E::Output> {
    let started = Instant::now();
    let time = host.wasi.as_ref().map(|wasi| wasi.time());
    let mut store = Store::new(&runtime.engine, host);
    store.limiter(|host| host as &mut dyn wasmtime::ResourceLimiter);
    let ticks = limits.deadline.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64 + 1;
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();
    let result = match store.set_fuel(limits.fuel) {
        Err(e) => Err(CallError::Instantiate {
            message: format!("{e:#}"),
        }),
        Ok(()) => match &time {
            None => pre
                .instantiate(&mut store)
                .map_err(|e| classify(e, store.data(), runtime, limits, true))
                .and_then(|plugin| {
                    export
                        .call(&plugin, &mut store)
                        .map_err(|e| classify(e, store.data(), runtime, limits, false))
                }),
            Some(time) => {
                let call = async {
                    let plugin = pre
                        .instantiate_async(&mut store)
                        .await
                        .map_err(|e| (e, true))?;
                    export
                        .call_async(&plugin, &mut store)
                        .await
                        .map_err(|e| (e, false))
                };
                match wait::drive(call, started + limits.deadline, time) {
                    Some(Ok(output)) => Ok(output),
                    Some(Err((e, instantiating))) => {
                        Err(classify(e, store.data(), runtime, limits, instantiating))
                    }
                    None => Err(CallError::Deadline {
                        deadline_ms: limits.deadline.as_millis() as u64,
                    }),
                }
            }
        },
    };
    let fuel = limits.fuel - store.get_fuel().unwrap_or(0);
    let elapsed = started.elapsed();
    let mut host = store.into_data();
    host.collect_wasi_output();
    SandboxRun {
        result,
        fuel,
        elapsed,
        host,
    }
}

/// Like [`run_in_sandbox`] for calls that need no validation (`describe`).
pub(super) fn in_sandbox<E: Export>(
    runtime: &Runtime,
    pre: &PluginPre<HostState>,
    host: HostState,
    export: E,
) -> Result<(E::Output, u64), InvokeFailure> {
    let run = run_in_sandbox(runtime, pre, host, runtime.call_limits(), export);
    match run.result {
        Ok(value) => Ok((value, run.fuel)),
        Err(error) => Err(InvokeFailure {
            plugin: "(loading)".into(),
            error,
            fuel: run.fuel,
            elapsed: run.elapsed,
            logs: run.host.logs,
            breaker: None,
        }),
    }
}

/// Turn a wasmtime error into what the author and the tenant need to know.
fn classify(
    error: wasmtime::Error,
    host: &HostState,
    runtime: &Runtime,
    limits: CallLimits,
    instantiating: bool,
) -> CallError {
    let trap = error.downcast_ref::<Trap>().copied();
    if host.memory_limit_hit {
        return CallError::MemoryLimit {
            limit_bytes: runtime.limits.memory_bytes,
        };
    }
    match trap {
        Some(Trap::OutOfFuel) => CallError::OutOfFuel {
            budget: limits.fuel,
        },
        Some(Trap::Interrupt) => CallError::Deadline {
            deadline_ms: limits.deadline.as_millis() as u64,
        },
        Some(Trap::StackOverflow) => CallError::StackOverflow,
        Some(Trap::UnreachableCodeReached) => match panic_message(host) {
            Some(message) => CallError::Panicked { message },
            None => CallError::Trapped {
                message: Trap::UnreachableCodeReached.to_string(),
            },
        },
        Some(other) => CallError::Trapped {
            message: other.to_string(),
        },
        None if instantiating => CallError::Instantiate {
            message: format!("{error:#}"),
        },
        None => CallError::Trapped {
            message: format!("{error:#}"),
        },
    }
}

/// flowgate-sdk's panic hook logs the panic message with a `panic` field
/// just before the guest aborts.
fn panic_message(host: &HostState) -> Option<String> {
    host.logs
        .iter()
        .rev()
        .find(|line| line.fields.iter().any(|(k, _)| k == "panic"))
        .map(|line| line.message.clone())
}

impl Runtime {
    /// Run one event through a plugin in a fresh instance.
    ///
    /// Returns the actions that pass the runtime's checks (declared
    /// capability, sizes) and those it refused; an error, trap or breaker
    /// refusal comes back as an [`InvokeFailure`] naming the plugin.
    pub fn invoke(&self, plugin: &LoadedPlugin, call: Call) -> Result<Invocation, InvokeFailure> {
        let Call {
            installation,
            event,
            state,
            seed,
            budget,
        } = call;
        let fail = |error: CallError, fuel, elapsed, logs, breaker| InvokeFailure {
            plugin: plugin.manifest.id.clone(),
            error,
            fuel,
            elapsed,
            logs,
            breaker,
        };
        if let Some(id) = &installation
            && let Err(open) = self.breakers.admit(id, Instant::now())
        {
            return Err(fail(open.into(), 0, Duration::ZERO, Vec::new(), None));
        }

        #[cfg(feature = "native-plugins")]
        if let Some(native) = &plugin.native {
            let started = Instant::now();
            let mut entries = state.entries().clone();
            let result = native.handle(event, &mut entries);
            let elapsed = started.elapsed();
            return match result {
                Ok(actions) => {
                    let (actions, refused) = check_actions(plugin, actions);
                    Ok(Invocation {
                        plugin: plugin.manifest.id.clone(),
                        actions,
                        refused,
                        state: state.with_result(entries),
                        logs: Vec::new(),
                        dropped_log_lines: 0,
                        fuel: 0,
                        memory_bytes: 0,
                        elapsed,
                        breaker: None,
                    })
                }
                Err(error) => Err(fail(
                    CallError::Failed {
                        message: format!("{error:?}"),
                    },
                    0,
                    elapsed,
                    Vec::new(),
                    None,
                )),
            };
        }
        let own = self.call_limits();
        let limits = match budget {
            Some(budget) => CallLimits {
                fuel: own.fuel.min(budget.fuel),
                deadline: own.deadline.min(budget.time),
            },
            None => own,
        };
        let wasi = plugin.uses_wasi.then(|| WasiSetup {
            wall_origin: event.now,
            seed: seed.unwrap_or_else(|| default_seed(&event)),
            budget: limits.deadline,
        });
        let host = HostState::new(&self.limits, state, wasi);
        let run = run_in_sandbox(self, &plugin.pre, host, limits, Handle(&event));
        let outcome = match run.result {
            Ok(Ok(actions)) if actions.len() > self.limits.max_actions => {
                Err(CallError::TooManyActions {
                    count: actions.len(),
                    limit: self.limits.max_actions,
                })
            }
            Ok(Ok(actions)) => Ok(actions),
            Ok(Err(wit::PluginError::InvalidConfig(message))) => {
                Err(CallError::InvalidConfig { message })
            }
            Ok(Err(wit::PluginError::Failed(message))) => Err(CallError::Failed { message }),
            // Stopped by a budget smaller than the plugin's own limits: the
            // tenant's, not the plugin's doing.
            Err(CallError::OutOfFuel { .. }) if limits.fuel < own.fuel => Err(event_budget(limits)),
            Err(CallError::Deadline { .. }) if limits.deadline < own.deadline => {
                Err(event_budget(limits))
            }
            Err(error) => Err(error),
        };
        let breaker = installation.as_deref().and_then(|id| match &outcome {
            Err(CallError::EventBudget { .. }) => {
                self.breakers.release(id, Instant::now());
                None
            }
            _ => self.breakers.record(id, outcome.is_ok(), Instant::now()),
        });
        let host = run.host;
        match outcome {
            Ok(wit_actions) => {
                let (actions, refused) = check_actions(plugin, wit_actions);
                Ok(Invocation {
                    plugin: plugin.manifest.id.clone(),
                    actions,
                    refused,
                    state: host.state,
                    logs: host.logs,
                    dropped_log_lines: host.dropped_log_lines,
                    fuel: run.fuel,
                    memory_bytes: host.memory_bytes,
                    elapsed: run.elapsed,
                    breaker,
                })
            }
            Err(error) => Err(fail(error, run.fuel, run.elapsed, host.logs, breaker)),
        }
    }
}

fn event_budget(limits: CallLimits) -> CallError {
    CallError::EventBudget {
        fuel: limits.fuel,
        time_ms: limits.deadline.as_millis() as u64,
    }
}

/// The seed of a call given none: from what tells events apart (the
/// contact's pseudonym, the time, the trigger and message), so that the
/// author CLI gives the same answer for the same event file.
fn default_seed(event: &wit::Event) -> Seed {
    let mut hasher = blake3::Hasher::new_derive_key("flowgate 2026 default call seed");
    hasher.update(event.contact.pseudonym.as_bytes());
    hasher.update(&event.now.to_le_bytes());
    hasher.update(&[event.trigger as u8]);
    if let Some(message) = &event.message {
        hasher.update(&message.received_at.to_le_bytes());
        hasher.update(message.text.as_deref().unwrap_or_default().as_bytes());
    }
    if let Some(status) = &event.status {
        hasher.update(&[status.status as u8]);
        hasher.update(&status.at.to_le_bytes());
    }
    Seed(*hasher.finalize().as_bytes())
}

/// Split a call's actions into those that pass the runtime's checks and
/// those refused, with the reason.
fn check_actions(
    plugin: &LoadedPlugin,
    wit_actions: Vec<wit::Action>,
) -> (Vec<Action>, Vec<(Action, Refusal)>) {
    let mut actions = Vec::with_capacity(wit_actions.len());
    let mut refused = Vec::new();
    for action in wit_actions.into_iter().map(Action::from) {
        match action.check(&plugin.manifest) {
            Ok(()) => actions.push(action),
            Err(refusal) => refused.push((action, refusal)),
        }
    }
    (actions, refused)
}

/// An instance kept across calls. The service never does this (guest memory
/// would carry one contact's data into another's event); it exists so the
/// benchmarks can measure what fresh-per-event isolation costs against it.
#[doc(hidden)]
pub struct ReusedInstance {
    store: Store<HostState>,
    plugin: Plugin,
    fuel: u64,
}

impl ReusedInstance {
    /// Call `handle` on the kept instance with a refilled fuel budget.
    pub fn handle(&mut self, event: &wit::Event) -> wasmtime::Result<Vec<wit::Action>> {
        self.store.set_fuel(self.fuel)?;
        self.store.set_epoch_deadline(u64::MAX / 2);
        let handled = match self.store.data().wasi.as_ref().map(|wasi| wasi.time()) {
            None => self.plugin.call_handle(&mut self.store, event)?,
            Some(time) => {
                let export = Handle(event);
                let call = export.call_async(&self.plugin, &mut self.store);
                wait::drive(call, far_future(), &time)
                    .ok_or_else(|| wasmtime::format_err!("waited past its deadline"))??
            }
        };
        match handled {
            Ok(actions) => Ok(actions),
            Err(error) => wasmtime::bail!("plugin error: {error:?}"),
        }
    }
}

/// A deadline that does not come (the benchmarks' kept instances).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

impl Runtime {
    /// See [`ReusedInstance`]: for benchmarks only.
    #[doc(hidden)]
    pub fn reused_instance(&self, plugin: &LoadedPlugin) -> wasmtime::Result<ReusedInstance> {
        // Its clock may advance by waits for an hour: kept instances run
        // many calls.
        let wasi = plugin.uses_wasi.then(|| WasiSetup {
            wall_origin: 0,
            seed: Seed::DESCRIBE,
            budget: Duration::from_secs(3600),
        });
        let host = HostState::new(&self.limits, PluginState::default(), wasi);
        let time = host.wasi.as_ref().map(|wasi| wasi.time());
        let mut store = Store::new(&self.engine, host);
        store.limiter(|host| host as &mut dyn wasmtime::ResourceLimiter);
        store.set_fuel(self.limits.fuel)?;
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = match time {
            None => plugin.pre.instantiate(&mut store)?,
            Some(time) => wait::drive(
                plugin.pre.instantiate_async(&mut store),
                far_future(),
                &time,
            )
            .ok_or_else(|| wasmtime::format_err!("instantiation waited past its deadline"))??,
        };
        Ok(ReusedInstance {
            store,
            plugin: instance,
            fuel: self.limits.fuel,
        })
    }

    /// The limits of a call without a smaller budget.
    pub(super) fn call_limits(&self) -> CallLimits {
        CallLimits {
            fuel: self.limits.fuel,
            deadline: self.limits.deadline(),
        }
    }
}
