//! WASI for guests that import it (componentize-py, componentize-js, Rust
//! guests built for WASI): deny-all, with a clock and a random source of
//! the call's own.
//!
//! - No files, sockets, environment or arguments; stdout and stderr are
//!   captured into the plugin's log.
//! - **Clocks.** The wall clock starts at the event's time (`event.now`;
//!   the Unix epoch for `describe`) and the monotonic clock at zero. Both
//!   advance only when the guest waits on the monotonic clock (a sleep, a
//!   poll with a timeout), and then by exactly the time waited for. So a
//!   plugin cannot read the host's time, time other tenants' activity by
//!   it, or tell the machine by its clock; and the same event gives the
//!   same readings on every run. A guest busy-waiting for a clock to move
//!   sees it stand still until fuel or the deadline stops it.
//! - **Waits take no real time.** Nothing outside the guest can happen in
//!   this context, so when every wait of the guest is blocked, time jumps to
//!   the earliest instant waited for (see [`super::wait`]). A wait that
//!   would carry the guest's clock past its deadline ends the call there,
//!   as over its deadline: `time.sleep(5)` under a 500 ms deadline fails at
//!   once instead of holding a worker for five seconds.
//! - **Randomness.** `wasi:random/random`, `wasi:random/insecure` and
//!   `wasi:random/insecure-seed` are drawn from one 32-byte [`Seed`] per
//!   call, which the service derives from a tenant secret, the installation
//!   and the event: unpredictable to the plugin, different for every
//!   installation and event, and the same when an event is processed again.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rand_core::TryRng;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx};

use super::host_state::HostState;

/// Bytes of WASI stdout/stderr kept per call. Writing more traps the call:
/// a plugin that floods its output is misbehaving.
const WASI_OUTPUT_BYTES: usize = 64 << 10;

/// The randomness of one call: every WASI random source of the call is
/// derived from it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Seed(pub [u8; 32]);

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A seed is as good as the randomness it gives: not for logs.
        f.write_str("Seed(..)")
    }
}

impl Seed {
    /// What `describe()` gets, at admission and at every load: the same
    /// every time, so a manifest cannot depend on chance.
    pub const DESCRIBE: Seed = Seed(*b"flowgate describe(): fixed seed.");

    /// A generator for one purpose (`secure`, `insecure`, …) of this seed.
    fn stream(&self, purpose: &str) -> SeededRandom {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(b"flowgate wasi random: ");
        hasher.update(purpose.as_bytes());
        SeededRandom(hasher.finalize_xof())
    }
}

/// What a call's WASI context is made of.
#[derive(Debug, Clone, Copy)]
pub(super) struct WasiSetup {
    /// Where the wall clock starts, in seconds since the Unix epoch.
    pub wall_origin: u64,
    pub seed: Seed,
    /// How far the guest's clock may advance by waiting: the call's
    /// deadline.
    pub budget: Duration,
}

impl WasiSetup {
    /// The setup of a `describe()` call: the Unix epoch, the fixed seed.
    pub(super) fn describe(budget: Duration) -> WasiSetup {
        WasiSetup {
            wall_origin: 0,
            seed: Seed::DESCRIBE,
            budget,
        }
    }
}

/// A deterministic random stream (blake3's extendable output, keyed by the
/// call's seed): indistinguishable from random to a guest that does not
/// know the seed.
struct SeededRandom(blake3::OutputReader);

impl TryRng for SeededRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0; 4];
        self.0.fill(&mut bytes);
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0; 8];
        self.0.fill(&mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill(dst);
        Ok(())
    }
}

/// The guest's time: nanoseconds since the call started, advanced only by
/// waits. Shared by the clocks, the pollables the guest waits on, and the
/// loop that drives the call ([`super::wait`]).
pub(super) struct GuestTime {
    state: Mutex<TimeState>,
    budget_ns: u64,
}

#[derive(Default)]
struct TimeState {
    elapsed_ns: u64,
    /// The instants the guest's pending waits are for (with how many waits
    /// are for each): what the guest is blocked on when the call is.
    waiting: BTreeMap<u64, usize>,
}

impl GuestTime {
    pub(super) fn new(budget: Duration) -> GuestTime {
        GuestTime {
            state: Mutex::new(TimeState::default()),
            budget_ns: u64::try_from(budget.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TimeState> {
        // Only this call's thread uses it; a poisoned lock means a host
        // function panicked, and the call is failing anyway.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Nanoseconds of guest time since the call started.
    pub(super) fn elapsed_ns(&self) -> u64 {
        self.lock().elapsed_ns
    }

    /// The earliest instant a pending wait is for.
    pub(super) fn next_wake(&self) -> Option<u64> {
        self.lock().waiting.keys().next().copied()
    }

    /// Let time pass up to `at`, the guest being blocked until then.
    /// Returns false, and leaves the time as it is, when `at` lies past the
    /// call's budget: the guest would wait beyond its deadline.
    pub(super) fn advance_to(&self, at: u64) -> bool {
        if at > self.budget_ns {
            return false;
        }
        let mut state = self.lock();
        state.elapsed_ns = state.elapsed_ns.max(at);
        true
    }

    fn register(&self, at: u64) {
        *self.lock().waiting.entry(at).or_default() += 1;
    }

    fn deregister(&self, at: u64) {
        let mut state = self.lock();
        if let Some(count) = state.waiting.get_mut(&at) {
            *count -= 1;
            if *count == 0 {
                state.waiting.remove(&at);
            }
        }
    }
}

struct WallClock {
    origin: Duration,
    time: Arc<GuestTime>,
}

impl HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        self.origin + Duration::from_nanos(self.time.elapsed_ns())
    }
}

struct MonotonicClock(Arc<GuestTime>);

impl HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.0.elapsed_ns()
    }
}

/// The WASI context of one call.
pub(super) struct WasiSandbox {
    ctx: WasiCtx,
    table: ResourceTable,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    time: Arc<GuestTime>,
}

impl WasiSandbox {
    pub(super) fn new(setup: WasiSetup) -> WasiSandbox {
        let stdout = MemoryOutputPipe::new(WASI_OUTPUT_BYTES);
        let stderr = MemoryOutputPipe::new(WASI_OUTPUT_BYTES);
        let time = Arc::new(GuestTime::new(setup.budget));
        let mut insecure_seed = [0; 16];
        setup
            .seed
            .stream("insecure-seed")
            .0
            .fill(&mut insecure_seed);
        let ctx = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(WallClock {
                origin: Duration::from_secs(setup.wall_origin),
                time: time.clone(),
            })
            .monotonic_clock(MonotonicClock(time.clone()))
            .secure_random(setup.seed.stream("secure"))
            .insecure_random(setup.seed.stream("insecure"))
            .insecure_random_seed(u128::from_le_bytes(insecure_seed))
            .build();
        WasiSandbox {
            ctx,
            table: ResourceTable::new(),
            stdout,
            stderr,
            time,
        }
    }

    pub(super) fn view(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }

    /// The guest's time, for the loop driving the call.
    pub(super) fn time(&self) -> Arc<GuestTime> {
        self.time.clone()
    }

    /// What the guest wrote to stdout and stderr, by stream name.
    pub(super) fn output(&self) -> [(&'static str, Vec<u8>); 2] {
        [
            ("stdout", self.stdout.contents().to_vec()),
            ("stderr", self.stderr.contents().to_vec()),
        ]
    }

    fn clock_view(&mut self) -> ClockView<'_> {
        ClockView {
            time: &self.time,
            table: &mut self.table,
        }
    }
}

/// Link WASI: wasmtime-wasi's asynchronous implementation (every wait is a
/// future the call's driver can stop), with the monotonic clock's waits
/// replaced by waits on the guest's own time.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    // Defined again under the same (generated) name: it replaces the
    // functions wasmtime-wasi linked, whose waits sleep in real time.
    linker.allow_shadowing(true);
    let linked = monotonic_clock::add_to_linker::<HostState, GuestClock>(linker, |state| {
        state.wasi_sandbox().clock_view()
    });
    linker.allow_shadowing(false);
    linked
}

struct GuestClock;

impl HasData for GuestClock {
    type Data<'a> = ClockView<'a>;
}

struct ClockView<'a> {
    time: &'a Arc<GuestTime>,
    table: &'a mut ResourceTable,
}

impl ClockView<'_> {
    fn wait_until(&mut self, at: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let wait = self.table.push(GuestDeadline {
            at,
            time: self.time.clone(),
        })?;
        subscribe(self.table, wait)
    }
}

impl monotonic_clock::Host for ClockView<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(self.time.elapsed_ns())
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(1)
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.wait_until(when)
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let at = self.time.elapsed_ns().saturating_add(duration);
        self.wait_until(at)
    }
}

/// A pollable ready once the guest's time reaches `at`.
struct GuestDeadline {
    at: u64,
    time: Arc<GuestTime>,
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestDeadline {
    async fn ready(&mut self) {
        Wait {
            at: self.at,
            time: &self.time,
            registered: false,
        }
        .await
    }
}

/// One wait on a [`GuestDeadline`]: while pending, its instant is
/// registered with the guest's time, so the driver knows what the guest is
/// blocked on; it deregisters when ready or dropped (a poll that returned
/// because something else was ready, a non-blocking `ready` check).
struct Wait<'a> {
    at: u64,
    time: &'a GuestTime,
    registered: bool,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        // No waker is kept: only the driver moves time, and it polls the
        // call again right after.
        if self.time.elapsed_ns() >= self.at {
            if self.registered {
                self.time.deregister(self.at);
                self.registered = false;
            }
            return Poll::Ready(());
        }
        if !self.registered {
            self.time.register(self.at);
            self.registered = true;
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if self.registered {
            self.time.deregister(self.at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_give_streams_that_differ_by_seed_and_purpose_and_repeat() {
        let bytes = |seed: [u8; 32], purpose: &str| {
            let mut out = [0; 16];
            Seed(seed).stream(purpose).try_fill_bytes(&mut out).unwrap();
            out
        };
        assert_eq!(bytes([1; 32], "secure"), bytes([1; 32], "secure"));
        assert_ne!(bytes([1; 32], "secure"), bytes([2; 32], "secure"));
        assert_ne!(bytes([1; 32], "secure"), bytes([1; 32], "insecure"));
    }

    #[test]
    fn time_jumps_to_the_earliest_wait_and_never_past_the_budget() {
        let time = GuestTime::new(Duration::from_millis(500));
        time.register(300_000_000);
        time.register(100_000_000);
        assert_eq!(time.next_wake(), Some(100_000_000));
        assert!(time.advance_to(100_000_000));
        time.deregister(100_000_000);
        assert_eq!(time.elapsed_ns(), 100_000_000);
        assert_eq!(time.next_wake(), Some(300_000_000));
        // Past the deadline: refused, the clock stays.
        assert!(!time.advance_to(600_000_000));
        assert_eq!(time.elapsed_ns(), 100_000_000);
    }
}
