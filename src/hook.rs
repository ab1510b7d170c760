//! One-shot callbacks that the other side of the pipe fires, with no lock on its fast path.
//!
//! The firing side checks a flag with a Relaxed load after a SeqCst fence it already pays for
//! (the one in `Signal::notify`), and takes the mutex only when a callback is armed. The arming
//! side stores the callback, sets the flag, fences, and re-checks the condition itself: the
//! Dekker pair guarantees that a callback armed while the other side makes progress fires.

use crate::primitive::{fence, lock, AtomicBool, Mutex, Ordering};

type Callback<T> = Box<dyn FnOnce(T) + Send + 'static>;

/// A slot for at most one pending callback taking a `T`.
pub(crate) struct OneShot<T> {
    armed: AtomicBool,
    slot: Mutex<Option<Callback<T>>>,
}

impl<T> std::fmt::Debug for OneShot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneShot").field("armed", &self.armed.load(Ordering::Relaxed)).finish()
    }
}

impl<T> OneShot<T> {
    pub(crate) fn new() -> Self {
        Self { armed: AtomicBool::new(false), slot: Mutex::new(None) }
    }

    /// Installs `cb` (replacing and dropping a pending one), then fires it at once if `due()`
    /// already says why. `due` must read the progress the firing side publishes.
    pub(crate) fn arm(&self, cb: Callback<T>, due: impl FnOnce() -> Option<T>) {
        self.arm_with(cb, || {}, due);
    }

    /// [`arm`](Self::arm), running `setup` under the slot lock as `cb` is installed: a parameter
    /// that `due` reads (the readable threshold) then always belongs to the installed callback,
    /// even when two threads arm at once.
    pub(crate) fn arm_with(&self, cb: Callback<T>, setup: impl FnOnce(), due: impl FnOnce() -> Option<T>) {
        {
            let mut slot = lock(&self.slot);
            setup();
            *slot = Some(cb);
        }
        self.armed.store(true, Ordering::Relaxed);
        // ORDERING: Dekker pair with `fire_if_armed`'s caller, which publishes its progress, then
        // fences (SeqCst), then loads `armed`. In the total order of the two fences one comes
        // first, so either the firing side sees `armed`, or our `due()` sees its progress; a
        // callback armed while progress is made is never left pending (loom: `on_writable_fires_once`,
        // `on_readable_fires_once`).
        fence(Ordering::SeqCst);
        if let Some(why) = due() {
            self.fire(why);
        }
    }

    /// The firing side, after publishing progress *and* a SeqCst fence: fires the callback if one
    /// is armed and `due()` holds.
    #[inline]
    pub(crate) fn fire_if_armed(&self, due: impl FnOnce() -> Option<T>) {
        if self.armed.load(Ordering::Relaxed) {
            if let Some(why) = due() {
                self.fire(why);
            }
        }
    }

    /// Runs the pending callback, if any, exactly once: whoever takes it under the lock runs it,
    /// outside the lock (it may arm a new one).
    pub(crate) fn fire(&self, why: T) {
        let cb = {
            let mut slot = lock(&self.slot);
            self.armed.store(false, Ordering::Relaxed);
            slot.take()
        };
        if let Some(cb) = cb {
            cb(why);
        }
    }

    /// Drops a pending callback unfired.
    pub(crate) fn disarm(&self) {
        self.armed.store(false, Ordering::Relaxed);
        drop(lock(&self.slot).take());
    }
}
