//! One dedicated thread that runs queued jobs, in order, against a context it owns.
//!
//! The NIF needs this for work that must not run where it is asked for: `enif_send` from a
//! process-independent env panics on a thread the VM manages, and a normal scheduler must not
//! wait for a lock a dirty scheduler may hold for milliseconds. Such work is posted here as a
//! closure; the thread makes its context (the NIF's: an `OwnedEnv`) once, on itself, so the
//! context never crosses threads and need not be `Send`. The thread knows nothing of what the
//! jobs do.

use std::sync::mpsc::{self, Sender};
use std::sync::Mutex;

/// A unit of work for a [`JobThread`] with context `C`.
pub type Job<C> = Box<dyn FnOnce(&mut C) + Send + 'static>;

/// The job thread could not be started (thread creation failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoThread;

impl std::fmt::Display for NoThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the job thread could not be started")
    }
}

impl std::error::Error for NoThread {}

/// A lazily started thread that runs [`Job`]s one after another; usable as a `static`.
pub struct JobThread<C> {
    name: &'static str,
    make_context: fn() -> C,
    tx: Mutex<Option<Sender<Job<C>>>>,
}

impl<C: 'static> JobThread<C> {
    /// A job thread named `name` (not started yet) whose context `make_context` makes, on the
    /// thread itself, when it starts.
    pub const fn new(name: &'static str, make_context: fn() -> C) -> Self {
        Self { name, make_context, tx: Mutex::new(None) }
    }

    fn sender(&self) -> Result<Sender<Job<C>>, NoThread> {
        let mut guard = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = guard.as_ref() {
            return Ok(tx.clone());
        }
        let (tx, rx) = mpsc::channel::<Job<C>>();
        let make_context = self.make_context;
        std::thread::Builder::new()
            .name(self.name.into())
            .spawn(move || {
                let mut cx = make_context();
                for job in rx {
                    job(&mut cx);
                }
            })
            .map_err(|_| NoThread)?;
        *guard = Some(tx.clone());
        Ok(tx)
    }

    /// Starts the thread if it is not running, so that later [`post`](Self::post) calls (for
    /// instance from a hook that must not start threads) only queue.
    pub fn ensure_started(&self) -> Result<(), NoThread> {
        self.sender().map(|_| ())
    }

    /// Queues `job` (starting the thread first if needed). Never waits for the thread. Gives
    /// the job back if there is no thread to run it, so the caller can run it some other way.
    pub fn post(&self, job: Job<C>) -> Result<(), Job<C>> {
        match self.sender() {
            Ok(tx) => tx.send(job).map_err(|e| e.0),
            Err(NoThread) => Err(job),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::channel;
    use std::thread::ThreadId;

    /// A context that records the thread it was made on.
    struct Cx {
        made_on: ThreadId,
        seen: Vec<u32>,
    }

    fn make_cx() -> Cx {
        MADE.fetch_add(1, Ordering::SeqCst);
        Cx { made_on: std::thread::current().id(), seen: Vec::new() }
    }

    static MADE: AtomicUsize = AtomicUsize::new(0);
    static THREAD: JobThread<Cx> = JobThread::new("bodypipe-test-jobs", make_cx);

    #[test]
    fn jobs_run_in_order_on_one_thread_with_a_context_made_there() {
        let (tx, rx) = channel();
        for i in 0..100u32 {
            let tx = tx.clone();
            let posted = THREAD.post(Box::new(move |cx: &mut Cx| {
                cx.seen.push(i);
                let here = std::thread::current();
                tx.send((i, here.id(), cx.made_on, here.name().map(str::to_owned), cx.seen.clone())).unwrap();
            }));
            assert!(posted.is_ok());
        }
        let mut ids = Vec::new();
        for expected in 0..100u32 {
            let (i, ran_on, made_on, name, seen) = rx.recv().unwrap();
            assert_eq!(i, expected, "jobs run in the order they were posted");
            assert_eq!(ran_on, made_on, "the context is made on the job thread");
            assert_eq!(name.as_deref(), Some("bodypipe-test-jobs"));
            assert_eq!(seen.last(), Some(&i), "one context carries over from job to job");
            ids.push(ran_on);
        }
        assert!(ids.iter().all(|id| *id == ids[0]), "one thread runs every job");
        assert_ne!(ids[0], std::thread::current().id());
        assert!(THREAD.ensure_started().is_ok());
        assert_eq!(MADE.load(Ordering::SeqCst), 1, "the context is made once, when the thread starts");
    }

    #[test]
    fn a_job_may_post_another() {
        static CHAIN: JobThread<()> = JobThread::new("bodypipe-test-chain", || ());
        let (tx, rx) = channel();
        let posted = CHAIN.post(Box::new(move |_: &mut ()| {
            let again = CHAIN.post(Box::new(move |_: &mut ()| tx.send("second").unwrap()));
            assert!(again.is_ok());
        }));
        assert!(posted.is_ok());
        assert_eq!(rx.recv().unwrap(), "second");
    }
}
