//! The one place that chooses between `std` and `loom` primitives.
//!
//! Everything else in the crate imports its atomics, `Arc`, `Mutex`, `UnsafeCell` and the futex from
//! here, so the loom models in `loom_tests/` exercise exactly the code that ships, with no
//! `cfg(bodypipe_loom)` anywhere else (the crossbeam-utils pattern).
//!
//! The switch is a rustc cfg (`RUSTFLAGS="--cfg bodypipe_loom"`, see `make test-loom`), not a
//! Cargo feature: features unify across a dependency graph, so any crate (or one
//! `--all-features` run) turning a `loom` feature on would make every pipe in the program loom
//! code, which panics outside a loom model.

#[cfg(not(bodypipe_loom))]
mod futex;

#[cfg(not(bodypipe_loom))]
mod imp {
    pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
    pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

    /// A `std` cell with loom's closure API, so access sites read the same under both.
    #[derive(Debug, Default)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        /// Runs `f` with a shared pointer to the contents.
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Runs `f` with an exclusive pointer to the contents.
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }

    /// A hint for a busy-wait loop.
    #[inline]
    pub(crate) fn spin_hint() {
        std::hint::spin_loop();
    }

    /// Whether spinning before parking is worthwhile (never under loom, where it only multiplies
    /// the explored interleavings without modelling anything new).
    pub(crate) const SPIN: bool = true;

    /// Locks a mutex, ignoring poisoning: every critical section in this crate leaves its data
    /// consistent before anything in it can panic, so a poisoned lock carries no broken invariant.
    pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) use super::futex::Futex;
}

#[cfg(bodypipe_loom)]
mod imp {
    pub(crate) use loom::cell::UnsafeCell;
    pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
    pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
    use std::time::Instant;

    #[inline]
    pub(crate) fn spin_hint() {
        loom::thread::yield_now();
    }

    pub(crate) const SPIN: bool = false;

    pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A futex modelled so that a lost wake-up is a loom deadlock.
    ///
    /// loom has no futex. `wait` locks, compares the word with the expected value and only then
    /// blocks on a condvar; `wake_all` locks and notifies. Because the model really blocks, a
    /// waiter that nobody wakes is reported by loom as a deadlock. A `yield_now` stand-in would
    /// hide exactly the bug the models exist to find.
    #[derive(Debug)]
    pub(crate) struct Futex {
        word: AtomicU32,
        lock: Mutex<()>,
        cond: loom::sync::Condvar,
    }

    impl Futex {
        pub(crate) fn new(value: u32) -> Self {
            Self { word: AtomicU32::new(value), lock: Mutex::new(()), cond: loom::sync::Condvar::new() }
        }

        pub(crate) fn word(&self) -> &AtomicU32 {
            &self.word
        }

        /// Blocks while the word equals `expected`, until woken. Deadlines are modelled as no
        /// deadline: the models never rely on a timeout to make progress.
        pub(crate) fn wait(&self, expected: u32, _deadline: Option<Instant>) -> bool {
            let guard = lock(&self.lock);
            if self.word.load(Ordering::Relaxed) == expected {
                drop(self.cond.wait(guard));
            }
            true
        }

        pub(crate) fn wake_all(&self) {
            let _guard = lock(&self.lock);
            self.cond.notify_all();
        }
    }
}

pub(crate) use imp::*;
