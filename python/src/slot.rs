//! The writer slot both bindings keep a body's producer in: the Python `Writer` and the Erlang
//! `py_buffer`. The core's [`Writer`] is single-producer (`Send`, not `Sync`), while any Python
//! thread or Erlang process may write, close or abort: the slot serialises them behind a mutex,
//! and `close`/`abort` take the writer out, leaving the slot empty (closed).
//!
//! Neither binding may block a thread that must not wait (a Python thread holding the GIL, an
//! Erlang normal scheduler) on that mutex, which a large write can hold for milliseconds: each
//! tries [`WriterSlot::try_lock`] first and, on [`Busy`], waits its own way (GIL released, or a
//! dirty scheduler) with [`WriterSlot::lock`].

use ::bodypipe::Writer;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

/// One body's writer, shared by every thread or process that may write to it.
///
/// ```
/// use bodypipe_python::slot::WriterSlot;
///
/// let (w, r) = bodypipe::pipe();
/// let slot = WriterSlot::new(w);
/// slot.try_lock().ok().and_then(|mut g| g.as_mut().map(|w| w.write(b"hi"))).transpose()?;
/// assert_eq!(r.buffered(), 2);
/// let w = slot.take().expect("still open");
/// assert!(slot.is_closed() && slot.take().is_none());
/// w.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct WriterSlot {
    writer: Mutex<Option<Writer>>,
    /// Set once the writer has been taken out, for queries that must not wait for the lock.
    closed: AtomicBool,
}

/// Another thread holds the writer (a write in progress): wait elsewhere and retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl WriterSlot {
    /// A slot holding `writer`.
    pub fn new(writer: Writer) -> Self {
        Self { writer: Mutex::new(Some(writer)), closed: AtomicBool::new(false) }
    }

    /// The writer (`None` once taken out), if no other thread holds it; never waits.
    pub fn try_lock(&self) -> Result<MutexGuard<'_, Option<Writer>>, Busy> {
        match self.writer.try_lock() {
            Ok(g) => Ok(g),
            // The core updates its state atomically per call, so a panic elsewhere while the
            // lock was held left nothing half-done worth refusing service for.
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => Err(Busy),
        }
    }

    /// The writer (`None` once taken out), waiting for another thread to finish with it.
    pub fn lock(&self) -> MutexGuard<'_, Option<Writer>> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the writer out (waiting for the lock), so it can be closed or aborted outside it;
    /// the slot is closed from then on. `None` if it was already.
    pub fn take(&self) -> Option<Writer> {
        let w = self.lock().take();
        self.mark_closed();
        w
    }

    /// [`take`](Self::take) without waiting: `Err(Busy)` while another thread holds the writer.
    pub fn try_take(&self) -> Result<Option<Writer>, Busy> {
        let w = self.try_lock()?.take();
        self.mark_closed();
        Ok(w)
    }

    /// Whether the writer has been taken out (closed or aborted); never waits.
    pub fn is_closed(&self) -> bool {
        // ORDERING: Acquire pairs with the Release in `mark_closed`: whoever sees the slot
        // closed also sees what the closing thread did before (it took the writer out).
        self.closed.load(Ordering::Acquire)
    }

    fn mark_closed(&self) {
        // ORDERING: Release, see `is_closed`.
        self.closed.store(true, Ordering::Release);
    }
}
