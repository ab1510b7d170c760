//! The state of one `py_buffer` that outlives any one Erlang reference to it.
//!
//! The resource ([`crate::buffer::BufferRes`]), the owner registry ([`crate::owners`]) and the
//! jobs the notify thread runs all hold it. It imports nothing from this crate, so each of them
//! can depend on it without depending on each other.
//!
//! The core's `Writer` is single-producer (`Send`, not `Sync`), so it sits in the writer slot
//! both bindings share (`bodypipe_python::slot::WriterSlot`): writes from several Erlang
//! processes are serialized there, and `close`/`abort` take it out. Readers (Python) hold only
//! an `Arc<Reader>` and are never blocked by that slot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bodypipe_python::slot::WriterSlot;

use bodypipe::{Reader, Writer};
use rustler::LocalPid;

/// Locks `m`, taking the data of a poisoned lock as it is: no panic in here leaves it half done.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a NIF may wait for the writer lock. Normal schedulers must not: the lock can be held
/// by a large write on a dirty scheduler, so on contention they hand the call to a dirty variant.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// `try_lock`; report [`Busy`] if another process holds the writer.
    Never,
    /// Block until the writer is free (dirty schedulers, destructors, the notify thread).
    Block,
}

/// The writer lock is held by someone else; redo the call on a dirty scheduler.
pub use bodypipe_python::slot::Busy;

/// State shared by the resource, the owner registry and queued jobs.
pub struct Shared {
    /// The writer slot the Python `Writer` uses too (`bodypipe_python::slot`).
    writer: WriterSlot,
    reader: Arc<Reader>,
    /// Processes waiting for `{py_buffer, Buf, writable | closed}`.
    waiters: Mutex<Vec<LocalPid>>,
    /// Bumped each time a writable hook is installed, so that a replaced hook, dropped unfired,
    /// can tell it was replaced (and stay silent) from the writer ending (and say `closed`).
    hook_gen: AtomicU64,
    /// The pending writable hook's core subscription: a new `notify_writable` cancels it (the
    /// core keeps any number of subscriptions; this buffer wants one, the latest).
    hook_sub: Mutex<Option<bodypipe::Subscription>>,
}

impl Shared {
    /// The state of a new buffer with both ends open.
    pub fn new(writer: Writer, reader: Reader) -> Self {
        Self {
            writer: WriterSlot::new(writer),
            reader: Arc::new(reader),
            waiters: Mutex::new(Vec::new()),
            hook_gen: AtomicU64::new(0),
            hook_sub: Mutex::new(None),
        }
    }

    /// The reader side (for Python and for `info`).
    pub fn reader(&self) -> &Arc<Reader> {
        &self.reader
    }

    /// Whether the writer has been taken out (closed or aborted).
    pub fn writer_closed(&self) -> bool {
        self.writer.is_closed()
    }

    /// The writer slot (`None` once closed or aborted); with [`Wait::Never`], `Err(Busy)` when
    /// another process holds it.
    pub fn lock_writer(&self, wait: Wait) -> Result<MutexGuard<'_, Option<Writer>>, Busy> {
        match wait {
            Wait::Block => Ok(self.writer.lock()),
            Wait::Never => self.writer.try_lock(),
        }
    }

    /// Takes the writer out, so that it can be closed or aborted outside the lock (dropping its
    /// pending hook may release the last reference to the resource, whose destructor locks).
    pub fn take_writer(&self, wait: Wait) -> Result<Option<Writer>, Busy> {
        match wait {
            Wait::Block => Ok(self.writer.take()),
            Wait::Never => self.writer.try_take(),
        }
    }

    /// Aborts the stream with `reason` unless it is already closed or aborted.
    pub fn abort_with(&self, reason: &str, wait: Wait) -> Result<(), Busy> {
        if let Some(w) = self.take_writer(wait)? {
            w.abort(reason);
        }
        Ok(())
    }

    /// Aborts the stream with `reason` unless it is already closed or aborted (may block).
    pub fn abort(&self, reason: &str) {
        let _ = self.abort_with(reason, Wait::Block);
    }

    /// Adds `pid` to the processes waiting for a writable/closed message.
    pub fn add_waiter(&self, pid: LocalPid) {
        lock(&self.waiters).push(pid);
    }

    /// Whether any process waits for a writable/closed message.
    pub fn has_waiters(&self) -> bool {
        !lock(&self.waiters).is_empty()
    }

    /// Removes and returns the processes waiting for a writable/closed message.
    pub fn take_waiters(&self) -> Vec<LocalPid> {
        std::mem::take(&mut *lock(&self.waiters))
    }

    /// A new writable-hook generation (the current one after this call).
    pub fn next_hook_gen(&self) -> u64 {
        self.hook_gen.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The generation of the most recently installed writable hook.
    pub fn hook_gen(&self) -> u64 {
        self.hook_gen.load(Ordering::Acquire)
    }

    /// Swaps the pending writable hook's subscription for `sub`; returns the old one.
    pub fn replace_hook_sub(&self, sub: Option<bodypipe::Subscription>) -> Option<bodypipe::Subscription> {
        std::mem::replace(&mut *lock(&self.hook_sub), sub)
    }
}
