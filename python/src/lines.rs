//! The line engine of `PyBuffer`: `readline`, iteration and `readlines`. A short line is scanned
//! and copied with the GIL held, straight from segment memory; a long one with the GIL released.

use crate::buffer::PyBuffer;
use crate::bytes::{bytes_of, uninit_bytes, DETACH_COPY};
use crate::errors::{read_error, timeout, with_partial, BodyAborted};
use crate::gather::Gather;
use crate::wait::in_slices;
use ::bodypipe::{ReadError, ReadWithError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Marks a line too long to copy with the GIL held, with its length (see `PyBuffer::line_fast`).
#[derive(Debug, Clone, Copy)]
struct LongLine(usize);

impl PyBuffer {
    /// The fast path for lines, GIL held: one cursor lock, one scan, and the line copied once,
    /// straight from segment memory into the new `bytes` (the core hands it over in place).
    /// `Err(LongLine)`: the line is longer than `DETACH_COPY` and was left unread, to be scanned
    /// and copied with the GIL released instead. `Ok(None)`: no complete line yet (nothing
    /// consumed).
    #[allow(clippy::type_complexity)]
    fn line_fast<'py>(
        &self,
        py: Python<'py>,
        limit: Option<usize>,
    ) -> PyResult<Result<Option<Bound<'py, PyBytes>>, LongLine>> {
        // The scan, too, is as long as the line: with the GIL held it goes no further than a
        // line that is still short enough to copy here. Up to that cap the result is the same
        // as without it (a newline or the end of the data comes first), and a line that reaches
        // the cap is long either way.
        let cap = limit.map_or(DETACH_COPY + 1, |l| l.min(DETACH_COPY + 1));
        let res = self.reader.try_read_until_with(b'\n', Some(cap), |line| {
            if line.len() > DETACH_COPY {
                Err(LongLine(line.len()))
            } else {
                Ok(PyBytes::new(py, line))
            }
        });
        long_line_or(py, res)
    }

    /// A long line, scanned and copied once, from segment memory into the result, with the GIL
    /// released; `Ok(Ok(None))` while it is incomplete. `Ok(Err(LongLine(n)))`: the line there
    /// is no longer a long one of the length first found (another reader thread took bytes
    /// meanwhile); nothing was consumed and the caller starts over.
    #[allow(clippy::type_complexity)]
    fn line_detached<'py>(
        &self,
        py: Python<'py>,
        limit: Option<usize>,
    ) -> PyResult<Result<Option<Bound<'py, PyBytes>>, LongLine>> {
        let r = &*self.reader;
        // First find its length (an `Err` from the callback consumes nothing), so the result can
        // be allocated before the line is read and it is copied straight into it.
        let probe =
            self.detached(py, || r.try_read_until_with(b'\n', limit, |line| Err::<(), _>(LongLine(line.len()))))?;
        let len = match long_line_or(py, probe)? {
            Ok(None) => return Ok(Ok(None)),
            Ok(Some(())) => return Ok(Err(LongLine(0))), // not produced by that callback
            Err(LongLine(len)) if len > DETACH_COPY => len,
            Err(short) => return Ok(Err(short)),
        };
        let (obj, region) = uninit_bytes(py, len)?;
        let res = self.detached(py, move || {
            r.try_read_until_with(b'\n', limit, |line| {
                if line.len() != len {
                    // Left unread (an `Err` consumes nothing).
                    return Err(LongLine(line.len()));
                }
                // SAFETY: `obj` is referenced only by this function until it returns, so nothing
                // else touches its buffer while the GIL is released; `line` is `len` bytes of
                // segment memory, which does not overlap it.
                unsafe { region.copy_parts(&[line]) };
                Ok(())
            })
        })?;
        match long_line_or(py, res)? {
            // SAFETY: created by PyBytes_FromStringAndSize; all `len` bytes were just written.
            Ok(Some(())) => Ok(Ok(Some(unsafe { obj.cast_into_unchecked::<PyBytes>() }))),
            Ok(None) => Ok(Ok(None)),
            Err(long) => Ok(Err(long)),
        }
    }

    /// A complete line (up to `limit` bytes; the rest at EOF; `b''` at EOF) if there is one now,
    /// without waiting; `None` while the line is incomplete (nothing consumed then). After an
    /// abort, a last line without its newline is no line: `BodyAborted`, with its bytes (now
    /// consumed) as `partial`.
    pub(crate) fn try_line<'py>(&self, py: Python<'py>, limit: Option<usize>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        if let Some(line) = self.line_from_run(py, limit) {
            return Ok(Some(line));
        }
        self.try_line_from_cursor(py, limit)
    }

    /// `try_line` for a caller that has just found no run of lines to serve from.
    fn try_line_from_cursor<'py>(
        &self,
        py: Python<'py>,
        limit: Option<usize>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        match self.try_line_inner(py, limit) {
            Err(e) if e.is_instance_of::<BodyAborted>(py) => Err(self.with_rest(py, e)),
            other => other,
        }
    }

    /// `e` with the unread bytes, consumed now, as `partial` (an aborted body's incomplete line).
    fn with_rest(&self, py: Python<'_>, e: PyErr) -> PyErr {
        let mut rest = Gather::default();
        while let Ok(views) = self.reader.try_read_views(1, usize::MAX) {
            if views.is_empty() || rest.push(py, &views).is_err() {
                break;
            }
        }
        if rest.is_empty() {
            return e;
        }
        rest.attach(py, e)
    }

    fn try_line_inner<'py>(&self, py: Python<'py>, limit: Option<usize>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        loop {
            if let Ok(line) = self.line_fast(py, limit)? {
                return Ok(line);
            }
            match self.line_detached(py, limit)? {
                Ok(line) => return Ok(line),
                // The line changed under us (another reader thread): scan again.
                Err(LongLine(_)) => continue,
            }
        }
    }

    /// The next line for iteration (`__next__`, `readlines`): from this reader's run of lines
    /// taken ahead, taking a new run when there is none (see `readahead.rs`); else as
    /// `readline()`.
    pub(crate) fn iter_line<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        if let Some(line) = self.line_from_run(py, None) {
            return Ok(line);
        }
        self.iter_line_slow(py)
    }

    /// `iter_line` without a run: take one, else read as `readline()` does.
    #[cold]
    fn iter_line_slow<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        if self.take_run(py) {
            if let Some(line) = self.line_from_run(py, None) {
                return Ok(line);
            }
        }
        self.readline_impl(py, None)
    }

    /// One line (up to `limit` bytes); `b''` at EOF. For callers that have just found no run of
    /// lines to serve from (`readline`, and iteration without a run), so it reads the cursor.
    pub(crate) fn readline_impl<'py>(&self, py: Python<'py>, limit: Option<usize>) -> PyResult<Bound<'py, PyBytes>> {
        if limit == Some(0) {
            return Ok(PyBytes::new(py, b""));
        }
        if let Some(line) = self.try_line_from_cursor(py, limit)? {
            return Ok(line);
        }
        let r = &*self.reader;
        let mut out = Vec::new();
        // No complete line yet: wait for it. `read_line_deadline` consumes nothing until the line is
        // complete (or the limit/EOF is reached), so a timeout usually loses nothing; in ring mode
        // a line longer than the high-water mark is consumed as it arrives (it could never
        // complete in place), and what was taken is then handed back as `partial`.
        let deadline = self.op_deadline();
        let waited = self.around_detached(py, |py| {
            Ok(in_slices(py, deadline, |end| match r.read_line_deadline(&mut out, limit, Some(end)) {
                Err(ReadError::TimedOut) => None,
                other => Some(other),
            }))
        })?;
        match waited {
            Err(e) => Err(with_partial(py, e, &out)),
            Ok(None) => Err(timeout(py, &out)),
            Ok(Some(Ok(_))) => bytes_of(py, &out),
            Ok(Some(Err(e))) => Err(with_partial(py, read_error(py, e), &out)),
        }
    }
}

/// Sorts a core line read whose callback may have refused the line as `LongLine`.
fn long_line_or<T>(
    py: Python<'_>,
    res: Result<Option<T>, ReadWithError<LongLine>>,
) -> PyResult<Result<Option<T>, LongLine>> {
    match res {
        Ok(line) => Ok(Ok(line)),
        Err(ReadWithError::Callback(long)) => Ok(Err(long)),
        Err(ReadWithError::Read(e)) => Err(read_error(py, e)),
    }
}
