//! A pool of threads that grows on demand up to a cap and shrinks when idle.
//!
//! The NIF runs Python calls here. A call that waits on a slow request body blocks its thread
//! for as long as the body takes, so a fixed small set of threads (the VM's 10 dirty IO
//! schedulers) would let the eleventh slow upload queue behind the others: this pool starts a
//! thread whenever every thread is busy, up to [`Config::max_threads`], and lets threads beyond
//! [`Config::keep_idle`] exit after [`Config::idle_timeout`] without work.
//!
//! Each thread may hold per-thread state for its whole life ([`Config::thread_state`]; the NIF
//! keeps one Python thread state per thread there), made when the thread starts and again after
//! each task for as long as it is not available yet, dropped on the thread when it exits.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A unit of work.
pub type Task = Box<dyn FnOnce() + Send + 'static>;

/// Per-thread state kept for the thread's life (dropped on the thread, when it exits).
pub type ThreadState = Box<dyn Any>;

/// How a [`Pool`] behaves.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Name of the pool's threads.
    pub name: &'static str,
    /// Cap on live threads (at least 1 is used).
    pub max_threads: usize,
    /// Idle threads that never exit.
    pub keep_idle: usize,
    /// How long a thread beyond `keep_idle` waits for work before it exits.
    pub idle_timeout: Duration,
    /// Stack size of each thread, in bytes.
    pub stack_size: usize,
    /// Makes a thread's state; `None` means "not available yet, ask again after the next task".
    pub thread_state: fn() -> Option<ThreadState>,
}

/// Counters of a pool, at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Live threads.
    pub threads: usize,
    /// Of which idle.
    pub idle: usize,
    /// Tasks waiting for a thread.
    pub queued: usize,
    /// Cap on threads.
    pub max_threads: usize,
}

/// The pool has no thread and could not start one; the task was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpawnError;

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the pool could not start a thread")
    }
}

impl std::error::Error for SpawnError {}

#[derive(Default)]
struct State {
    queue: VecDeque<Task>,
    threads: usize,
    idle: usize,
}

/// A growing and shrinking thread pool; share it as `Arc<Pool>`.
pub struct Pool {
    state: Mutex<State>,
    cv: Condvar,
    cfg: Config,
}

impl Pool {
    /// A pool with no thread yet; threads start with the first tasks.
    pub fn new(cfg: Config) -> Arc<Self> {
        let cfg = Config { max_threads: cfg.max_threads.max(1), ..cfg };
        Arc::new(Self { state: Mutex::new(State::default()), cv: Condvar::new(), cfg })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Current counters.
    pub fn counters(&self) -> Counters {
        let s = self.lock();
        Counters { threads: s.threads, idle: s.idle, queued: s.queue.len(), max_threads: self.cfg.max_threads }
    }

    /// Queues `task`, starting a thread if there are fewer idle threads than queued tasks and
    /// the cap allows. Fails only if no thread exists and none can be started (then the task is
    /// not queued); a failed start with other threads alive leaves the task to them.
    pub fn submit(self: &Arc<Self>, task: Task) -> Result<(), SpawnError> {
        let mut s = self.lock();
        s.queue.push_back(task);
        if s.idle < s.queue.len() && s.threads < self.cfg.max_threads {
            s.threads += 1;
            let me = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name(self.cfg.name.into())
                .stack_size(self.cfg.stack_size)
                .spawn(move || me.worker());
            if spawned.is_err() {
                s.threads -= 1;
                if s.threads == 0 {
                    s.queue.pop_back();
                    return Err(SpawnError);
                }
            }
        }
        drop(s);
        self.cv.notify_one();
        Ok(())
    }

    fn worker(&self) {
        let mut state = (self.cfg.thread_state)();
        let mut s = self.lock();
        loop {
            if let Some(task) = s.queue.pop_front() {
                drop(s);
                task();
                if state.is_none() {
                    state = (self.cfg.thread_state)();
                }
                s = self.lock();
                continue;
            }
            s.idle += 1;
            let (guard, timeout) = self.cv.wait_timeout(s, self.cfg.idle_timeout).unwrap_or_else(|e| e.into_inner());
            s = guard;
            s.idle -= 1;
            if timeout.timed_out() && s.queue.is_empty() && s.idle >= self.cfg.keep_idle {
                s.threads -= 1;
                drop(s);
                drop(state);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::channel;
    use std::time::Instant;

    fn no_state() -> Option<ThreadState> {
        None
    }

    fn config(max_threads: usize, keep_idle: usize, idle_timeout: Duration) -> Config {
        Config {
            name: "bodypipe-test-pool",
            max_threads,
            keep_idle,
            idle_timeout,
            stack_size: 256 << 10,
            thread_state: no_state,
        }
    }

    /// Waits (without asserting how long it takes) until `cond` holds; fails after a minute.
    fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(Instant::now() < deadline, "never happened: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A gate tasks wait at until it is opened.
    struct Gate(Mutex<bool>, Condvar);

    impl Gate {
        fn new() -> Arc<Self> {
            Arc::new(Gate(Mutex::new(false), Condvar::new()))
        }
        fn wait(&self) {
            let mut open = self.0.lock().unwrap();
            while !*open {
                open = self.1.wait(open).unwrap();
            }
        }
        fn open(&self) {
            *self.0.lock().unwrap() = true;
            self.1.notify_all();
        }
    }

    #[test]
    fn every_task_runs_once() {
        let pool = Pool::new(config(4, 0, Duration::from_secs(60)));
        let (tx, rx) = channel();
        for i in 0..1000usize {
            let tx = tx.clone();
            pool.submit(Box::new(move || tx.send(i).unwrap())).unwrap();
        }
        let mut got: Vec<usize> = (0..1000).map(|_| rx.recv().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        assert!(pool.counters().threads <= 4);
    }

    #[test]
    fn grows_to_the_cap_while_tasks_block_and_queues_the_rest() {
        let pool = Pool::new(config(3, 0, Duration::from_secs(60)));
        let gate = Gate::new();
        let (started_tx, started) = channel();
        let (done_tx, done) = channel();
        for i in 0..5usize {
            let (gate, started_tx, done_tx) = (gate.clone(), started_tx.clone(), done_tx.clone());
            pool.submit(Box::new(move || {
                started_tx.send(i).unwrap();
                gate.wait();
                done_tx.send(i).unwrap();
            }))
            .unwrap();
        }
        for _ in 0..3 {
            started.recv().unwrap();
        }
        // Three tasks hold the three threads; the cap keeps the other two queued.
        let c = pool.counters();
        assert_eq!((c.threads, c.idle, c.queued, c.max_threads), (3, 0, 2, 3));
        gate.open();
        let mut finished: Vec<usize> = (0..5).map(|_| done.recv().unwrap()).collect();
        finished.sort_unstable();
        assert_eq!(finished, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn idle_threads_beyond_keep_idle_exit() {
        let pool = Pool::new(config(4, 1, Duration::from_millis(20)));
        let gate = Gate::new();
        let (started_tx, started) = channel();
        for _ in 0..4 {
            let (gate, started_tx) = (gate.clone(), started_tx.clone());
            pool.submit(Box::new(move || {
                started_tx.send(()).unwrap();
                gate.wait();
            }))
            .unwrap();
        }
        for _ in 0..4 {
            started.recv().unwrap();
        }
        assert_eq!(pool.counters().threads, 4);
        gate.open();
        eventually("the pool shrinks to keep_idle", || pool.counters().threads == 1);
        // The one kept thread still serves tasks.
        let (tx, rx) = channel();
        pool.submit(Box::new(move || tx.send("ran").unwrap())).unwrap();
        assert_eq!(rx.recv().unwrap(), "ran");
    }

    static MADE: AtomicUsize = AtomicUsize::new(0);
    static DROPPED: AtomicUsize = AtomicUsize::new(0);
    static ASKED: AtomicUsize = AtomicUsize::new(0);

    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPPED.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Not available for the first two asks (as Python before it is initialized), then made.
    fn late_state() -> Option<ThreadState> {
        if ASKED.fetch_add(1, Ordering::SeqCst) < 2 {
            return None;
        }
        MADE.fetch_add(1, Ordering::SeqCst);
        Some(Box::new(Counted))
    }

    #[test]
    fn thread_state_is_made_once_available_and_dropped_when_the_thread_exits() {
        let cfg = Config { thread_state: late_state, ..config(1, 0, Duration::from_millis(20)) };
        let pool = Pool::new(cfg);
        for _ in 0..3 {
            let (tx, rx) = channel();
            pool.submit(Box::new(move || tx.send(()).unwrap())).unwrap();
            rx.recv().unwrap();
        }
        eventually("the thread exits", || pool.counters().threads == 0);
        assert_eq!(ASKED.load(Ordering::SeqCst), 3, "asked at start, then after each task until made");
        assert_eq!(MADE.load(Ordering::SeqCst), 1);
        assert_eq!(DROPPED.load(Ordering::SeqCst), 1, "dropped when its thread ends");
    }
}
