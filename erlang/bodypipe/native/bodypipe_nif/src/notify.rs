//! Delivery of `{py_buffer, Buf, writable | closed}` messages.
//!
//! `Writer::on_writable` runs its hook on whichever thread frees room in the ring: usually a
//! Python reader thread, which may be a thread the VM manages. `OwnedEnv::send_and_clear` panics
//! on any VM-managed thread, so hooks only push a [`Notice`] into a channel and one dedicated
//! sender thread of ours turns notices into messages.
//!
//! The same thread also runs aborts that a normal scheduler must not wait for (see
//! [`post_abort`]): it is ours, so blocking on a writer lock there stalls no scheduler.

use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock};

use rustler::{Encoder, LocalPid, OwnedEnv, ResourceArc};

use crate::atoms;
use crate::buffer::{BufferRes, Shared};

/// What a waiting process is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Unread bytes fell below half of `max_buffered` (or the buffer is unbounded).
    Writable,
    /// The buffer can take no more writes: the reader hung up, or it was closed or aborted.
    Closed,
}

/// One notification: every process waiting on `buf` gets `{py_buffer, Buf, Kind}`.
pub struct Notice {
    /// The buffer; its waiter list says whom to tell.
    pub buf: ResourceArc<BufferRes>,
    /// What to tell them.
    pub kind: Kind,
}

/// Error returned when the sender thread could not be started.
#[derive(Debug)]
pub struct NoSenderThread;

/// What the sender thread is asked to do.
enum Job {
    Send(Notice),
    /// Abort a stream, waiting for its writer lock if a large write holds it.
    Abort(Arc<Shared>, &'static str),
}

static SENDER: OnceLock<Mutex<Option<Sender<Job>>>> = OnceLock::new();

fn sender() -> Result<Sender<Job>, NoSenderThread> {
    let cell = SENDER.get_or_init(|| Mutex::new(None));
    let mut guard = cell.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tx) = guard.as_ref() {
        return Ok(tx.clone());
    }
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new().name("bodypipe-notify".into()).spawn(move || run(rx)).map_err(|_| NoSenderThread)?;
    *guard = Some(tx.clone());
    Ok(tx)
}

/// Starts the sender thread if needed; called before a hook is installed so that a hook never
/// has to start a thread itself.
pub fn ensure_started() -> Result<(), NoSenderThread> {
    sender().map(|_| ())
}

/// Queues a notice. Never blocks and never touches the VM: safe on any thread.
pub fn post(notice: Notice) {
    if let Ok(tx) = sender() {
        // The receiver lives for the life of the library; a failed send only means the
        // process is shutting down.
        let _ = tx.send(Job::Send(notice));
    }
}

/// Has the sender thread abort `shared` with `reason`, for a caller that must not wait for the
/// writer lock. Gives `shared` back if there is no sender thread, so the caller can still abort.
pub fn post_abort(shared: Arc<Shared>, reason: &'static str) -> Result<(), Arc<Shared>> {
    let Ok(tx) = sender() else {
        return Err(shared);
    };
    tx.send(Job::Abort(shared.clone(), reason)).map_err(|_| shared)
}

fn run(rx: mpsc::Receiver<Job>) {
    let mut env = OwnedEnv::new();
    for job in rx {
        let notice = match job {
            Job::Send(notice) => notice,
            Job::Abort(shared, reason) => {
                shared.abort(reason);
                continue;
            }
        };
        let pids: Vec<LocalPid> = notice.buf.take_waiters();
        let kind = match notice.kind {
            Kind::Writable => atoms::writable(),
            Kind::Closed => atoms::closed(),
        };
        for pid in pids {
            let buf = notice.buf.clone();
            // A dead recipient is not an error worth reporting.
            let _ = env.send_and_clear(&pid, |e| (atoms::py_buffer(), buf, kind).encode(e));
        }
        // `notice.buf` is released here, on this (non-VM) thread.
    }
}
