//! Threads of our own for Python calls: the pool of `bodypipe-threads`, configured for Python.
//!
//! A Python call that waits on a slow request body blocks its thread for as long as the body
//! takes. On dirty IO schedulers (10 by default) the eleventh such call would queue behind the
//! others; so calls run on a pool that grows on demand up to `BODYPIPE_PY_MAX_THREADS` (default
//! 1024) and shrinks after a minute idle. The calling Erlang process waits in `receive`, not in
//! a NIF, so schedulers stay free and no VM flag (`+SDio`) is needed.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bodypipe_threads::pool::{Config, Pool, ThreadState};
pub use bodypipe_threads::pool::{Counters, SpawnError, Task};

/// Stack size of pool threads: Python's own default for its threads on Linux.
const STACK_SIZE: usize = 8 << 20;
/// Idle threads beyond [`KEEP_IDLE`] exit after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle threads kept forever.
const KEEP_IDLE: usize = 2;
/// Default cap on threads.
const DEFAULT_MAX_THREADS: usize = 1024;

fn pool() -> &'static Arc<Pool> {
    static POOL: OnceLock<Arc<Pool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let max_threads = std::env::var("BODYPIPE_PY_MAX_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_MAX_THREADS);
        Pool::new(Config {
            name: "bodypipe-py",
            max_threads,
            keep_idle: KEEP_IDLE,
            idle_timeout: IDLE_TIMEOUT,
            stack_size: STACK_SIZE,
            thread_state: persistent_thread_state,
        })
    })
}

/// Current counters (for `py:info/0`).
pub fn counters() -> Counters {
    pool().counters()
}

/// Queues `task`, starting a thread if every thread is busy. Fails only if no thread exists and
/// none can be started (then the task is not queued).
pub fn submit(task: Task) -> Result<(), SpawnError> {
    pool().submit(task)
}

/// The pool's per-thread state: one Python thread state, once the interpreter exists (the first
/// pool thread starts before it does: its first task initializes it, and the pool asks again
/// after each task).
fn persistent_thread_state() -> Option<ThreadState> {
    PersistentThreadState::new().map(|s| Box::new(s) as ThreadState)
}

/// A Python thread state that lives as long as its pool thread.
///
/// Without one, every `Python::attach` on a pool thread creates a thread state and deletes it
/// again on release (`PyGILState_Ensure` from scratch), and with it CPython's frame stack: an
/// `mmap` and an `munmap` per call, and the `munmap`'s TLB shootdown interrupts every other CPU
/// (measured under `make load`: ~3,000 of each per second, 3% of the VM's time in the shootdown
/// alone). Holding one `PyGILState_Ensure` for the thread's life makes each later attach a plain
/// GIL acquire of the existing state.
struct PersistentThreadState {
    gstate: pyo3::ffi::PyGILState_STATE,
    saved: *mut pyo3::ffi::PyThreadState,
}

impl PersistentThreadState {
    /// `None` before the interpreter is initialized (calls then attach the usual way).
    fn new() -> Option<Self> {
        // SAFETY: a plain query of interpreter state, valid from any thread.
        if unsafe { pyo3::ffi::Py_IsInitialized() } == 0 {
            return None;
        }
        // SAFETY: the interpreter is initialized and this thread holds no GIL (a pool thread
        // between tasks): Ensure creates this thread's state and takes the GIL; SaveThread
        // releases the GIL and keeps the state, which later `PyGILState_Ensure` calls on this
        // thread find and reuse.
        unsafe {
            let gstate = pyo3::ffi::PyGILState_Ensure();
            let saved = pyo3::ffi::PyEval_SaveThread();
            Some(Self { gstate, saved })
        }
    }
}

impl Drop for PersistentThreadState {
    fn drop(&mut self) {
        // SAFETY: the pool drops a thread's state on that thread, when it exits, with no GIL
        // held (every task's attach has been released): take the GIL back with the saved state,
        // then undo the first Ensure, which deletes the thread state.
        unsafe {
            pyo3::ffi::PyEval_RestoreThread(self.saved);
            pyo3::ffi::PyGILState_Release(self.gstate);
        }
    }
}
