//! `bodypipe.Writer`: the producer side, for a Python server feeding a reader thread.

use crate::aio::{self, aio, Armed, Notifier};
use crate::arg::ArgBuffer;
use crate::bytes::DETACH_COPY;
use crate::errors::{incomplete_body, write_error};
use crate::readahead;
use crate::slot::WriterSlot;
use crate::wait::in_slices;
use ::bodypipe::{WaitWritableError, WriteError};
use pyo3::exceptions::{PyBrokenPipeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyType;
use std::sync::Weak;
use std::time::Instant;

/// The producer half of a body created by `bodypipe.pipe()`.
///
/// The core writer is single-owner (`Send`, not `Sync`), so it sits in the writer slot the
/// Erlang NIF uses too ([`WriterSlot`]); empty once closed or aborted. The slot is only ever
/// waited for with the GIL released, so a thread blocked in a ring-mode `write` cannot stall
/// other Python threads.
#[pyclass(module = "bodypipe", frozen)]
pub struct Writer {
    inner: WriterSlot,
    /// The reader of the same pipe, weakly (a strong reference would keep the reader open, and
    /// the body buffered, after the application dropped it), for `reader_closed` once this
    /// writer is closed: a reader that is gone is closed.
    reader: Weak<::bodypipe::Reader>,
}

type Slot = Option<::bodypipe::Writer>;

/// What one attempt to write produced.
enum Attempt {
    Done,
    Full,
    Failed(WriteError),
    WriterClosed,
}

impl Writer {
    /// Wraps a core writer.
    pub fn new(w: ::bodypipe::Writer) -> Self {
        Self { inner: WriterSlot::new(w), reader: Weak::new() }
    }

    /// Wraps a core writer whose reader is `reader`, so `reader_closed` stays true to the reader
    /// after this writer is closed.
    pub fn with_reader(w: ::bodypipe::Writer, reader: Weak<::bodypipe::Reader>) -> Self {
        Self { inner: WriterSlot::new(w), reader }
    }

    /// Takes the core writer out: this object is then closed for writing (`None` if it was).
    /// Only the benchmark feeder (`bench` feature) hands a body to a Rust thread this way.
    #[cfg(feature = "bench")]
    pub(crate) fn take_core(&self, py: Python<'_>) -> Option<::bodypipe::Writer> {
        self.take(py)
    }

    /// Takes the core writer out of the slot (closing it for writing), waiting for the lock with
    /// the GIL released if another thread holds it.
    fn take(&self, py: Python<'_>) -> Option<::bodypipe::Writer> {
        match self.inner.try_take() {
            Ok(w) => w,
            Err(_busy) => py.detach(|| self.inner.take()),
        }
    }

    /// Runs `f` on the slot with the lock held: taken at once when free, else waited for with
    /// the GIL released (never wait on a lock while holding the GIL). `detach` forces the GIL
    /// off for `f` too (for large copies).
    fn with<R: Send>(&self, py: Python<'_>, detach: bool, f: impl FnOnce(&mut Slot) -> R + Send) -> R {
        if !detach {
            if let Ok(mut g) = self.inner.try_lock() {
                return f(&mut g);
            }
        }
        py.detach(|| f(&mut self.inner.lock()))
    }

    fn attempt(&self, py: Python<'_>, data: &[u8]) -> Attempt {
        self.with(py, data.len() > DETACH_COPY, |slot| match slot {
            None => Attempt::WriterClosed,
            Some(w) => match w.write(data) {
                Ok(()) => Attempt::Done,
                Err(WriteError::Full) => Attempt::Full,
                Err(e) => Attempt::Failed(e),
            },
        })
    }

    fn write_impl(&self, py: Python<'_>, data: &Bound<'_, PyAny>, wait: bool) -> PyResult<Option<usize>> {
        let src = ArgBuffer::get(data, "write()")?;
        let bytes = src.as_slice();
        let len = bytes.len();
        loop {
            match self.attempt(py, bytes) {
                Attempt::Done => return Ok(Some(len)),
                Attempt::WriterClosed => return Err(PyValueError::new_err("write to a closed Writer")),
                Attempt::Failed(e) => return Err(write_error(e)),
                Attempt::Full if !wait => return Ok(None),
                Attempt::Full => self.wait_room(py)?,
            }
        }
    }

    /// Ring mode: waits (GIL released, in slices) until the reader makes room.
    fn wait_room(&self, py: Python<'_>) -> PyResult<()> {
        let outcome = in_slices(py, None, |end| {
            let slice = end.saturating_duration_since(Instant::now());
            match self.inner.lock().as_ref() {
                None => Some(Err(PyValueError::new_err("write to a closed Writer"))),
                Some(w) => match w.wait_writable(Some(slice)) {
                    Ok(()) => Some(Ok(())),
                    Err(WaitWritableError::TimedOut) => None,
                    Err(WaitWritableError::ReaderClosed) => {
                        Some(Err(PyBrokenPipeError::new_err("the reader side of the body is closed")))
                    }
                    // The enum is non-exhaustive; retrying the write reports the real state.
                    Err(_) => Some(Ok(())),
                },
            }
        })?;
        outcome.unwrap_or(Ok(()))
    }
}

#[pymethods]
impl Writer {
    /// `await writer.awrite(data)`: appends `data` whole, waiting without blocking the event loop
    /// while the buffer is at its high-water mark; returns its length. Raises as `write` does.
    fn awrite<'py>(slf: &Bound<'py, Self>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        aio(slf.py())?.awrite.bind(slf.py()).call1((slf, data))
    }

    /// `await writer.wait_writable()`: returns once a write would be admitted (at once outside
    /// ring mode; in ring mode, woken when unread bytes fall below half of `max_buffered`).
    /// Raises `BrokenPipeError` once the reader side has closed, `ValueError` once this writer is.
    fn wait_writable<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        aio(slf.py())?.wait_writable.bind(slf.py()).call1((slf,))
    }

    /// Async support: `try_write` returning the length written, or None when full.
    fn _try_write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
        self.write_impl(py, data, false)
    }

    /// Async support: whether a write would be admitted now.
    fn _has_room(&self, py: Python<'_>) -> PyResult<bool> {
        self.with(py, false, |slot| match slot.as_ref() {
            None => Err(PyValueError::new_err("write to a closed Writer")),
            Some(w) if w.is_reader_closed() => Err(PyBrokenPipeError::new_err("the reader side of the body is closed")),
            Some(w) => Ok(w.has_room()),
        })
    }

    /// Async support: wake wait `wid` of `notifier` when writing makes sense again.
    fn _arm_writable(&self, py: Python<'_>, notifier: &Bound<'_, Notifier>, wid: u64) -> PyResult<Armed> {
        let notifier = notifier.get();
        self.with(py, false, |slot| match slot.as_ref() {
            None => Err(PyValueError::new_err("write to a closed Writer")),
            Some(w) => Ok(aio::arm_writable(w, notifier, wid)),
        })
    }

    /// Async support: forget a wait armed by `_arm_writable` (a no-op once it fired, or once
    /// the writer is closed, which drops every pending one).
    fn _disarm_writable(&self, py: Python<'_>, armed: &Bound<'_, Armed>) {
        let sub = armed.get().0;
        self.with(py, false, |slot| {
            if let Some(w) = slot.as_ref() {
                w.cancel_writable(sub);
            }
        });
    }

    /// Appends `data` (any bytes-like object) whole; returns its length. In ring mode waits, GIL
    /// released, while the buffer is at its high-water mark.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        Ok(self.write_impl(py, data, true)?.unwrap_or(0))
    }

    /// Like `write` but never waits: returns False (storing nothing) when the buffer is full.
    fn try_write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.write_impl(py, data, false)?.is_some())
    }

    /// Ends the body normally (EOF after the data written). Closing twice is fine. Short of a
    /// declared `content_length`, the body ends as an abort (readers get `BodyAborted`) and this
    /// raises `IncompleteBody`, so the producer knows it ended a body early.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(w) = self.take(py) {
            if let Err(::bodypipe::CloseError::Incomplete { written, expected }) = w.close() {
                return Err(incomplete_body(py, written, expected));
            }
        }
        Ok(())
    }

    /// Ends the body with an error: readers get the data written so far, then `BodyAborted(reason)`.
    /// A no-op once closed or aborted.
    #[pyo3(signature = (reason="aborted"))]
    fn abort(&self, py: Python<'_>, reason: &str) {
        if let Some(w) = self.take(py) {
            w.abort(reason);
        }
    }

    /// True once `close()` or `abort()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Bytes written so far (0 once closed: the count lives in the closed writer).
    #[getter]
    fn written(&self, py: Python<'_>) -> u64 {
        self.with(py, false, |s| s.as_ref().map_or(0, |w| w.written()))
    }

    /// Bytes written but not yet read (0 once closed).
    #[getter]
    fn buffered(&self, py: Python<'_>) -> u64 {
        match self.with(py, false, |s| s.as_ref().map(|w| w.buffered())) {
            // Lines that iteration took ahead are consumed for the core but unread for Python.
            Some(n) => n + self.reader.upgrade().map_or(0, |r| readahead::unserved(py, &r, None)),
            None => 0,
        }
    }

    /// True once the reader side has closed: further writes raise `BrokenPipeError`. Still
    /// answered after this writer is closed (from the reader, or True once it is gone).
    #[getter]
    fn reader_closed(&self, py: Python<'_>) -> bool {
        let open = self.with(py, false, |s| s.as_ref().map(|w| w.is_reader_closed()));
        open.unwrap_or_else(|| self.reader.upgrade().is_none_or(|r| r.is_closed()))
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Closes the body, or aborts it (reason: the exception) if the block raised.
    #[pyo3(signature = (exc_type=None, exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyType>>,
        exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        match exc_type {
            None => self.close(py)?,
            Some(t) => {
                let name = t.name().map(|n| n.to_string()).unwrap_or_else(|_| "exception".into());
                let msg = exc.and_then(|e| e.str().ok()).map(|s| s.to_string()).unwrap_or_default();
                let reason = if msg.is_empty() { name } else { format!("{name}: {msg}") };
                self.abort(py, &reason);
            }
        }
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        self.with(py, false, |s| match s {
            None => "<bodypipe.Writer closed>".to_owned(),
            Some(w) => format!("<bodypipe.Writer written={} buffered={}>", w.written(), w.buffered()),
        })
    }
}
