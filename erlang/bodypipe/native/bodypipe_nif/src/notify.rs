//! The notify thread: one dedicated thread of ours that runs queued jobs with an `OwnedEnv`.
//!
//! `OwnedEnv::send_and_clear` panics on any thread the VM manages (dirty schedulers included),
//! and hooks such as the core's `on_writable` run on whichever thread frees room (often a Python
//! reader thread the VM may manage). So whatever must send a message, or must wait where a
//! normal scheduler may not (an abort behind a large write's lock), is posted here as a job.
//! The thread knows nothing of what its jobs do; it is `bodypipe_threads::jobs::JobThread`.

use bodypipe_threads::jobs::{JobThread, NoThread};
use rustler::OwnedEnv;

/// A job for the notify thread: runs on it, with its process-independent environment.
pub type Job = bodypipe_threads::jobs::Job<OwnedEnv>;

static THREAD: JobThread<OwnedEnv> = JobThread::new("bodypipe-notify", OwnedEnv::new);

/// Starts the thread if needed; called before a hook is installed so that a hook never has to
/// start a thread itself.
pub fn ensure_started() -> Result<(), NoThread> {
    THREAD.ensure_started()
}

/// Queues `job`. Never blocks and never touches the VM: safe on any thread. Gives the job back
/// if there is no thread to run it.
pub fn post(job: Job) -> Result<(), Job> {
    THREAD.post(job)
}
