//! Spin-then-park waiting with a writer that makes no syscall unless somebody is parked.
//!
//! A [`Signal`] pairs a 32-bit epoch word (the futex) with a "somebody may be parked" flag. The
//! side that makes progress publishes it, then calls [`Signal::notify`]; the side that waits
//! checks its condition, registers, re-checks, and only then sleeps on the epoch it read before
//! registering. The two `fence(SeqCst)` calls make the Dekker-style argument work: either the
//! notifier sees the flag, or the waiter's re-check sees the published progress.

use crate::primitive::{fence, spin_hint, AtomicU32, Futex, Ordering, SPIN};
use std::time::Instant;

/// How many times a waiter re-checks its condition, with a pause in between, before it parks.
///
/// A futex hand-off between cores costs 15-20 us on the VMs this runs on, while a spinning reader
/// sees a write in well under 1 us; a PAUSE is ~40 ns on current x86, so this bounds the spin at
/// roughly 10 us, after which parking costs less than the CPU burned by spinning on.
const SPIN_ROUNDS: u32 = 256;

/// A wake-up channel from one side of the pipe to the other.
#[derive(Debug)]
pub(crate) struct Signal {
    epoch: Futex,
    /// "Somebody may be parked": set by a waiter before its re-check, cleared by the notifier
    /// that wakes. A count decremented by the woken thread would stay non-zero for the 3-20 us
    /// a wake-up takes to run here, and every write in that window would make another
    /// `FUTEX_WAKE` (measured: ~1 wake syscall per write while a reader was being woken); the
    /// flag costs one syscall per park, as crossbeam's `SyncWaker` does.
    parked: AtomicU32,
}

impl Signal {
    pub(crate) fn new() -> Self {
        Self { epoch: Futex::new(0), parked: AtomicU32::new(0) }
    }

    /// Wakes every parked waiter; costs no syscall when nobody is registered.
    ///
    /// Call it after publishing the progress (with a Release store) that waiters wait for.
    #[inline]
    pub(crate) fn notify(&self) {
        // ORDERING: this SeqCst fence orders the caller's publishing store before the load of
        // `parked` below; it pairs with the fence in `wait_until`, which orders the waiter's
        // registration before its re-check of the condition. In the single total order of SeqCst
        // fences one of the two comes first, so either we see the registration (and wake), or the
        // waiter's re-check sees our store (and it never sleeps). Without it, the load of
        // `parked` could be satisfied before the publishing store is visible: a lost wake-up.
        fence(Ordering::SeqCst);
        // The plain load first keeps the common case (nobody parked) free of a locked RMW; the
        // swap makes exactly one notifier wake per registration. A waiter that registers after
        // the swap re-checks after its own fence, or finds the epoch bumped below and does not
        // sleep (it loaded the epoch before registering).
        if self.parked.load(Ordering::Relaxed) != 0 && self.parked.swap(0, Ordering::Relaxed) != 0 {
            // ORDERING: the bump only needs to change the word; the futex syscall orders it with
            // the waiter's compare. Release keeps it after the published progress anyway.
            self.epoch.word().fetch_add(1, Ordering::Release);
            self.epoch.wake_all();
        }
    }

    /// Waits until `ready()` holds or `deadline` passes; returns whether `ready()` held.
    ///
    /// `ready` must read the progress with Acquire loads. Spurious futex returns are normal: the
    /// loop re-checks.
    pub(crate) fn wait_until(&self, mut ready: impl FnMut() -> bool, deadline: Option<Instant>) -> bool {
        if ready() {
            return true;
        }
        if SPIN {
            for _ in 0..SPIN_ROUNDS {
                spin_hint();
                if ready() {
                    return true;
                }
            }
        }
        loop {
            // ORDERING: read the epoch before the re-check below. A notify that we miss in the
            // re-check bumps the word after this load (its bump is Release, this load Acquire), so
            // the futex wait compares unequal and returns at once.
            let epoch = self.epoch.word().load(Ordering::Acquire);
            // Left set when we return: at worst one later notify makes a wake syscall nobody
            // needed, which is cheaper than a locked decrement on every wait.
            self.parked.store(1, Ordering::Relaxed);
            // ORDERING: pairs with the fence in `notify` (see there): registration, then re-check.
            fence(Ordering::SeqCst);
            if ready() {
                return true;
            }
            let in_time = self.epoch.wait(epoch, deadline);
            if ready() {
                return true;
            }
            if !in_time || deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
        }
    }
}
