//! Driving a call into a WASI guest so that nothing it waits for outlives
//! its deadline.
//!
//! Epoch interruption stops guest code, but not a host function that
//! blocks: with wasmtime-wasi's synchronous bindings a guest calling
//! `time.sleep(5)` (a monotonic-clock subscription and `poll`) held the
//! call, and the worker thread every tenant shares, for the full five
//! seconds, however short its deadline. So WASI guests are called
//! asynchronously (`call_async`, on a fiber) and every host function they
//! reach is a future; [`drive`] polls the call on the calling thread and
//! does what a real clock would, without one:
//! - when the guest is blocked on waits on its own clock, time jumps to the
//!   earliest of them ([`GuestTime`]), unless that lies past the deadline,
//!   which ends the call;
//! - when it is blocked on anything else, the thread parks until woken or
//!   until the deadline, which ends the call.
//!
//! Ending the call drops its future: wasmtime unwinds the guest's fiber, and
//! the store, fresh for this call, is dropped with it.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Instant;

use super::wasi::GuestTime;

/// Wakes the thread parked in [`drive`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Run `call` to completion on this thread, or give up at `deadline` (real
/// time) or when the guest waits past its time budget. `None` means the
/// call was stopped; its future has been dropped.
pub(super) fn drive<F: Future>(call: F, deadline: Instant, time: &GuestTime) -> Option<F::Output> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut call = pin!(call);
    // Host functions that need a tokio context find one: the caller's, or
    // wasmtime-wasi's own.
    wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| {
        loop {
            if let Poll::Ready(output) = call.as_mut().poll(&mut cx) {
                return Some(output);
            }
            if let Some(at) = time.next_wake() {
                if !time.advance_to(at) {
                    return None;
                }
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            std::thread::park_timeout(deadline - now);
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_call_blocked_on_something_else_ends_at_the_deadline() {
        let time = GuestTime::new(Duration::from_secs(60));
        let started = Instant::now();
        let ended = drive(
            std::future::pending::<()>(),
            started + Duration::from_millis(50),
            &time,
        );
        assert!(ended.is_none());
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(50), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }

    #[test]
    fn a_call_that_finishes_returns_its_output() {
        let time = GuestTime::new(Duration::from_secs(1));
        let output = drive(async { 7 }, Instant::now() + Duration::from_secs(5), &time);
        assert_eq!(output, Some(7));
    }
}
