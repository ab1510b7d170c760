//! Spin-then-park waiting on a threshold, with a notifier that makes no syscall unless a parked
//! waiter's threshold is met.
//!
//! A [`Signal`] pairs a 32-bit epoch word (the futex) with `want`: the smallest position some
//! parked waiter waits for (a write position for readers, a read position for the writer). The
//! side that makes progress publishes it, then calls [`Signal::notify`] with its new position,
//! which wakes only if that meets `want`; the side that waits checks its condition, registers its
//! threshold, re-checks, and only then sleeps on the epoch it read before registering. The two
//! `fence(SeqCst)` calls make the Dekker-style argument work: either the notifier sees the
//! registered threshold, or the waiter's re-check sees the published progress.
//!
//! So a reader blocked in `read(65536)` while 64-byte writes trickle in registers
//! `read_pos + 65536` and is woken once, by the write that reaches it, not by each write: the
//! writes below it cost a fence and one load each, no syscall and no wake-up.

use crate::primitive::{fence, spin_hint, AtomicU64, Futex, Ordering, SPIN};
use std::time::Instant;

/// How many times a waiter re-checks its condition, with a pause in between, before it parks.
///
/// A futex hand-off between cores costs 15-20 us on the VMs this runs on, while a spinning reader
/// sees a write in well under 1 us; a PAUSE is ~40 ns on current x86, so this bounds the spin at
/// roughly 10 us, after which parking costs less than the CPU burned by spinning on.
const SPIN_ROUNDS: u32 = 256;

/// `want` when no waiter is registered.
const NOBODY: u64 = u64::MAX;

/// The largest threshold a waiter registers: "only the end (or a rewind) can help me", which is
/// what [`Signal::notify_all`] delivers. No position reaches it in practice (bodies are far
/// smaller than 2^64 bytes), and one that did would only cause a spurious wake-up.
pub(crate) const END_ONLY: u64 = u64::MAX - 1;

/// What a waiter's condition says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// It holds: stop waiting.
    Done,
    /// It does not hold yet, and cannot before the notifier's position reaches this (at most
    /// [`END_ONLY`]; a threshold is a promise not to need a wake-up below it).
    Until(u64),
}

/// A wake-up channel from one side of the pipe to the other.
#[derive(Debug)]
pub(crate) struct Signal {
    epoch: Futex,
    /// The smallest threshold registered by a waiter since the last wake, `NOBODY` if none.
    /// Waiters lower it (`fetch_min`) before their re-check; the notifier that wakes swaps it back
    /// to `NOBODY` and wakes everyone parked, and those not yet satisfied register again. Like the
    /// one-flag design it replaces (crossbeam's `SyncWaker` style), it costs one syscall per park
    /// rather than one per write while a woken waiter is still on its way; a registration left
    /// behind by a waiter whose re-check succeeded costs at most one later, unneeded wake.
    want: AtomicU64,
    /// Wake syscalls made (`Stats::reader_wakes`/`writer_wakes`): the figure the threshold
    /// design exists to keep low, counted on the cold path only.
    wakes: AtomicU64,
}

impl Signal {
    pub(crate) fn new() -> Self {
        Self { epoch: Futex::new(0), want: AtomicU64::new(NOBODY), wakes: AtomicU64::new(0) }
    }

    /// Wake syscalls made so far.
    pub(crate) fn wakes(&self) -> u64 {
        self.wakes.load(Ordering::Relaxed)
    }

    /// A waiter is registered (parked, about to park, or left its registration behind after its
    /// re-check succeeded).
    pub(crate) fn has_waiter(&self) -> bool {
        // ORDERING: Relaxed: a snapshot for statistics; nothing is read on the strength of it.
        self.want.load(Ordering::Relaxed) != NOBODY
    }

    /// Progress reached `pos` (published with a Release store before this call): wakes the parked
    /// waiters if one of them waits for `pos` or less. Costs no syscall otherwise.
    #[inline]
    pub(crate) fn notify(&self, pos: u64) {
        // ORDERING: this SeqCst fence orders the caller's publishing store before the load of
        // `want` below; it pairs with the fence in `wait_until`, which orders the waiter's
        // registration before its re-check of the condition. In the single total order of SeqCst
        // fences one of the two comes first, so either we see the registered threshold (and wake
        // if `pos` meets it), or the waiter's re-check sees our store (and it never sleeps).
        // Without it, the load of `want` could be satisfied before the publishing store is
        // visible: a lost wake-up (loom: `wait_min_woken_at_threshold`, `bytes_in_order`).
        fence(Ordering::SeqCst);
        // ORDERING: Relaxed: the fence above orders it. A value older than the registration the
        // fence argument guarantees is impossible (coherence), a newer one is either lower (more
        // waiters) or `NOBODY` after another notifier took the registrations and woke them.
        if self.want.load(Ordering::Relaxed) <= pos {
            self.wake_registered();
        }
    }

    /// Wakes every parked waiter whatever its threshold (the end of the stream, the reader
    /// closing, a backward seek). Costs no syscall when nobody is registered.
    #[inline]
    pub(crate) fn notify_all(&self) {
        // ORDERING: as in `notify`.
        fence(Ordering::SeqCst);
        if self.want.load(Ordering::Relaxed) != NOBODY {
            self.wake_registered();
        }
    }

    /// Takes every registration and wakes whoever made them.
    #[cold]
    fn wake_registered(&self) {
        // The swap makes exactly one notifier wake per set of registrations; whoever takes a
        // registration (even one whose threshold is above its position: registered after our
        // load) must wake, since its waiter may already sleep. A waiter that registers after the
        // swap re-checks after its own fence, or finds the epoch bumped below and does not sleep
        // (it loaded the epoch before registering).
        if self.want.swap(NOBODY, Ordering::Relaxed) != NOBODY {
            // ORDERING: the bump only needs to change the word; the futex syscall orders it with
            // the waiter's compare. Release keeps it after the published progress anyway.
            self.epoch.word().fetch_add(1, Ordering::Release);
            self.epoch.wake_all();
            // Statistics only: orders nothing.
            self.wakes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until `check()` says [`Check::Done`] or `deadline` passes; returns whether it did.
    ///
    /// `check` must read the progress with Acquire loads, and its [`Check::Until`] threshold must
    /// be one the notifier's `notify(pos)` (or a `notify_all`) will reach before the condition can
    /// hold. Spurious futex returns are normal: the loop re-checks.
    pub(crate) fn wait_until(&self, mut check: impl FnMut() -> Check, deadline: Option<Instant>) -> bool {
        let Check::Until(mut target) = check() else { return true };
        if SPIN {
            for _ in 0..SPIN_ROUNDS {
                spin_hint();
                match check() {
                    Check::Done => return true,
                    Check::Until(t) => target = t,
                }
            }
        }
        loop {
            // ORDERING: read the epoch before the re-check below. A notify that we miss in the
            // re-check bumps the word after this load (its bump is Release, this load Acquire), so
            // the futex wait compares unequal and returns at once.
            let epoch = self.epoch.word().load(Ordering::Acquire);
            // Left registered when we return: at worst one later notify makes a wake syscall
            // nobody needed, which is cheaper than a locked clean-up on every wait.
            self.want.fetch_min(target.min(END_ONLY), Ordering::Relaxed);
            // ORDERING: pairs with the fence in `notify` (see there): registration, then re-check.
            fence(Ordering::SeqCst);
            match check() {
                Check::Done => return true,
                // The threshold dropped since we registered (a backward seek): register the lower
                // one before sleeping, or a write between the two could pass us by.
                Check::Until(t) if t < target => {
                    target = t;
                    continue;
                }
                Check::Until(_) => {}
            }
            let in_time = self.epoch.wait(epoch, deadline);
            match check() {
                Check::Done => return true,
                Check::Until(t) => target = t,
            }
            if !in_time || deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
        }
    }
}
