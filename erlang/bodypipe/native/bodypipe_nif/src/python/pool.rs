//! Threads of our own for Python calls.
//!
//! A Python call that waits on a slow request body blocks its thread for as long as the body
//! takes. On dirty IO schedulers (10 by default) the eleventh such call would queue behind the
//! others; so calls run here instead, on a pool that grows on demand up to [`max_threads`]
//! (default 1024, `BODYPIPE_PY_MAX_THREADS` to change) and shrinks after a minute idle. The
//! calling Erlang process waits in `receive`, not in a NIF, so schedulers stay free and no VM flag
//! (`+SDio`) is needed.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// A unit of work.
pub type Task = Box<dyn FnOnce() + Send + 'static>;

/// Stack size of pool threads: Python's own default for its threads on Linux.
const STACK_SIZE: usize = 8 << 20;
/// Idle threads beyond [`KEEP_IDLE`] exit after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle threads kept forever.
const KEEP_IDLE: usize = 2;
/// Default cap on threads.
const DEFAULT_MAX_THREADS: usize = 1024;

#[derive(Default)]
struct State {
    queue: VecDeque<Task>,
    threads: usize,
    idle: usize,
}

struct Pool {
    state: Mutex<State>,
    cv: Condvar,
    max_threads: usize,
}

/// Counters for `py:info/0`.
#[derive(Debug, Clone, Copy)]
pub struct Counters {
    /// Live pool threads.
    pub threads: usize,
    /// Of which idle.
    pub idle: usize,
    /// Tasks waiting for a thread.
    pub queued: usize,
    /// Cap on threads.
    pub max_threads: usize,
}

/// The pool could not start any thread.
#[derive(Debug)]
pub struct SpawnError;

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(State::default()),
        cv: Condvar::new(),
        max_threads: std::env::var("BODYPIPE_PY_MAX_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_MAX_THREADS),
    })
}

fn lock(p: &Pool) -> MutexGuard<'_, State> {
    p.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Current counters.
pub fn counters() -> Counters {
    let p = pool();
    let s = lock(p);
    Counters { threads: s.threads, idle: s.idle, queued: s.queue.len(), max_threads: p.max_threads }
}

/// Queues `task`, starting a thread if every thread is busy. Fails only if no thread exists and
/// none can be started (then the task is not queued).
pub fn submit(task: Task) -> Result<(), SpawnError> {
    let p = pool();
    let mut s = lock(p);
    s.queue.push_back(task);
    if s.idle < s.queue.len() && s.threads < p.max_threads {
        s.threads += 1;
        let spawned = std::thread::Builder::new().name("bodypipe-py".into()).stack_size(STACK_SIZE).spawn(worker);
        if spawned.is_err() {
            s.threads -= 1;
            if s.threads == 0 {
                s.queue.pop_back();
                return Err(SpawnError);
            }
        }
    }
    drop(s);
    p.cv.notify_one();
    Ok(())
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
        // SAFETY: the interpreter is initialized and this thread holds no GIL (a fresh thread):
        // Ensure creates this thread's state and takes the GIL; SaveThread releases the GIL and
        // keeps the state, which later `PyGILState_Ensure` calls on this thread find and reuse.
        unsafe {
            let gstate = pyo3::ffi::PyGILState_Ensure();
            let saved = pyo3::ffi::PyEval_SaveThread();
            Some(Self { gstate, saved })
        }
    }
}

impl Drop for PersistentThreadState {
    fn drop(&mut self) {
        // SAFETY: on the thread that created it, with no GIL held (every task's attach has been
        // released): take the GIL back with the saved state, then undo the first Ensure, which
        // deletes the thread state.
        unsafe {
            pyo3::ffi::PyEval_RestoreThread(self.saved);
            pyo3::ffi::PyGILState_Release(self.gstate);
        }
    }
}

fn worker() {
    // The first pool thread starts before the interpreter exists (its first task initializes
    // it), so a thread without a state tries again after each task.
    let mut python = PersistentThreadState::new();
    let p = pool();
    let mut s = lock(p);
    loop {
        if let Some(task) = s.queue.pop_front() {
            drop(s);
            task();
            if python.is_none() {
                python = PersistentThreadState::new();
            }
            s = lock(p);
            continue;
        }
        s.idle += 1;
        let (guard, timeout) = p.cv.wait_timeout(s, IDLE_TIMEOUT).unwrap_or_else(|e| e.into_inner());
        s = guard;
        s.idle -= 1;
        if timeout.timed_out() && s.queue.is_empty() && s.idle >= KEEP_IDLE {
            s.threads -= 1;
            drop(s);
            drop(python);
            return;
        }
    }
}
