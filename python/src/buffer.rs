//! `bodypipe.PyBuffer`: the file-like reader side of a body.

use crate::aio::{self, aio, Armed, Notifier};
use crate::errors::{self, body_aborted, bytes_like, read_error, seek_error, size_arg, timeout, unsupported};
use crate::wait::{deadline, in_slices};
use ::bodypipe::{ReadError, ReadWithError, Reader, Ready, View};
use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyBufferError, PyMemoryError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyList, PyMemoryView, PyType};
use std::ffi::{c_int, c_void};
use std::io::SeekFrom;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Copies of more than this many bytes are done with the GIL released: below it, releasing and
/// reacquiring the GIL costs more than the copy.
const DETACH_COPY: usize = 256 * 1024;

/// Ring mode with no declared length: `read(n)` allocates its result up front only up to this;
/// beyond it the bytes are gathered as they come.
const PREALLOC_MAX: usize = 64 * 1024 * 1024;

/// Marks a line too long to copy with the GIL held, with its length (see `PyBuffer::line_fast`):
/// the error our line callbacks give the core to leave such a line unread.
#[derive(Debug, Clone, Copy)]
struct LongLine(usize);

/// The reader side of a request body, usable as `wsgi.input`.
///
/// All buffering lives in the core [`Reader`]; this object holds an `Arc` to it (so an embedder
/// can keep its own handle) and translates calls. See `bodypipe.pyi` for the Python-level docs.
#[pyclass(name = "PyBuffer", module = "bodypipe", frozen)]
pub struct PyBuffer {
    reader: Arc<Reader>,
    /// `_test_create` keeps the writer here, so the body neither grows nor aborts while the
    /// object lives (dropping a core `Writer` would abort the body).
    _keep_writer: Mutex<Option<::bodypipe::Writer>>,
}

impl PyBuffer {
    /// Wraps a shared core reader (see [`crate::wrap_reader`]).
    pub fn from_reader(reader: Arc<Reader>) -> Self {
        Self { reader, _keep_writer: Mutex::new(None) }
    }

    /// The shared core reader behind this object.
    pub fn reader(&self) -> &Arc<Reader> {
        &self.reader
    }

    fn op_deadline(&self) -> Option<Instant> {
        deadline(self.reader.read_timeout())
    }

    /// Waits (GIL released, in slices) until `min` bytes are unread or the stream has ended;
    /// returns the unread count. Consumes nothing, so a timeout loses nothing.
    fn wait_for(&self, py: Python<'_>, min: usize, deadline: Option<Instant>) -> PyResult<usize> {
        let r = &*self.reader;
        let avail = r.buffered();
        if avail >= min || r.is_ended() || r.is_closed() {
            return Ok(avail);
        }
        let got = in_slices(py, deadline, |end| match r.wait(min, Some(end)) {
            Ok(Ready::Data(n)) | Ok(Ready::Ended(n)) => Some(n),
            Err(_) => None,
        })?;
        got.ok_or_else(|| timeout(py, b""))
    }

    /// Reads into `buf` until it is full or the stream ends; returns the count. Blocks (GIL
    /// released, in slices) when no data is there. On error returns the count taken so far with it.
    fn fill(&self, py: Python<'_>, buf: &mut [u8], deadline: Option<Instant>) -> Result<usize, (usize, PyErr)> {
        let r = &*self.reader;
        let mut got = 0;
        while got < buf.len() {
            let rest = &mut buf[got..];
            let res = if rest.len().min(r.buffered()) > DETACH_COPY {
                py.detach(|| try_read_pieces(r, rest))
            } else {
                r.try_read(rest)
            };
            let n = match res {
                Ok(n) => n,
                Err(ReadError::WouldBlock) => {
                    // One piece at a time: the copy happens under the cursor lock.
                    let piece = rest.len().min(COPY_PIECE);
                    let rest = &mut rest[..piece];
                    let waited = in_slices(py, deadline, |end| match r.read_deadline(rest, Some(end)) {
                        Err(ReadError::TimedOut) => None,
                        other => Some(other),
                    })
                    .map_err(|e| (got, e))?;
                    match waited {
                        None => return Err((got, timeout(py, b""))),
                        Some(Ok(n)) => n,
                        Some(Err(e)) => return Err((got, read_error(py, e))),
                    }
                }
                Err(e) => return Err((got, read_error(py, e))),
            };
            if n == 0 {
                break; // EOF
            }
            got += n;
        }
        Ok(got)
    }

    /// Allocates a `bytes` of `size` and fills it straight from the pipe (no intermediate
    /// buffer). A short fill (EOF first) is trimmed with one copy. Errors carry the bytes taken:
    /// a `TimeoutError` gets them as `partial`; any other error (abort, signal) as `partial` too,
    /// so no data is silently lost.
    fn read_into_new<'py>(
        &self,
        py: Python<'py>,
        size: usize,
        deadline: Option<Instant>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut got = 0usize;
        let mut failure: Option<PyErr> = None;
        let bytes = new_bytes(py, size, |buf| {
            match self.fill(py, buf, deadline) {
                Ok(n) => got = n,
                Err((n, e)) => {
                    got = n;
                    failure = Some(e);
                }
            }
            Ok(())
        })?;
        let data = bytes.as_bytes();
        if let Some(e) = failure {
            return Err(with_partial(py, e, &data[..got]));
        }
        if got == size {
            Ok(bytes)
        } else {
            bytes_of(py, &data[..got])
        }
    }

    /// `read(n)` for a known `n > 0`: exactly `n` bytes unless EOF comes first.
    fn read_exact<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
        let r = &*self.reader;
        let deadline = self.op_deadline();
        // First wait without consuming anything, so the result can be allocated at its final
        // size and a timeout loses nothing. In ring mode no more than the high-water mark may
        // ever be buffered, so wait for that much and fill the rest as it comes.
        let want = r.max_buffered().map_or(n, |m| n.min(m));
        let avail = self.wait_for(py, want, deadline)?;
        let ended = r.is_ended() || r.is_closed();
        let size = if avail >= n || ended {
            n.min(avail)
        } else {
            // Ring mode and `n` beyond the high-water mark: allocate what can still come. With
            // no declared length, a huge `n` (`read(2**40)`) must not be allocated up front.
            match r.content_length() {
                Some(cl) => n.min(usize::try_from(cl.saturating_sub(r.position())).unwrap_or(usize::MAX)),
                None if n > PREALLOC_MAX => return self.gather(py, Some(n), deadline),
                None => n,
            }
        };
        if size == 0 {
            return self.end_of_stream(py);
        }
        let bytes = self.read_into_new(py, size, deadline)?;
        if bytes.as_bytes().len() < n {
            return self.unless_aborted(py, bytes);
        }
        Ok(bytes)
    }

    /// A read that asked for more than it got (`read(n)` short, `read()`) must not pass off a
    /// truncated body as complete: if the stream was aborted, raise `BodyAborted` carrying the
    /// bytes as `partial` instead of returning them.
    fn unless_aborted<'py>(&self, py: Python<'py>, bytes: Bound<'py, PyBytes>) -> PyResult<Bound<'py, PyBytes>> {
        let r = &*self.reader;
        match r.abort_reason() {
            Some(reason) if r.buffered() == 0 => {
                let e = body_aborted(&reason);
                Err(with_partial(py, e, bytes.as_bytes()))
            }
            _ => Ok(bytes),
        }
    }

    /// What a read returns once nothing is left: `b''` at EOF (or while nothing is there, for
    /// non-blocking reads), `BodyAborted` after an abort. Asks the core rather than re-deriving
    /// its rules; the one-byte probe can only take a byte that raced in, which is then returned.
    fn end_of_stream<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let mut probe = [0u8; 1];
        match self.reader.try_read(&mut probe) {
            Ok(n) => Ok(PyBytes::new(py, &probe[..n])),
            Err(ReadError::WouldBlock) => Ok(PyBytes::new(py, b"")),
            Err(e) => Err(read_error(py, e)),
        }
    }

    /// `read()` / `read(-1)`: everything up to EOF.
    fn read_all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let r = &*self.reader;
        let deadline = self.op_deadline();
        if let Some(cl) = r.content_length() {
            // The size is known: one allocation, filled as data arrives.
            let rem = usize::try_from(cl.saturating_sub(r.position())).unwrap_or(usize::MAX);
            if rem == 0 {
                return self.end_of_stream(py);
            }
            if r.max_buffered().is_some() {
                let bytes = self.read_into_new(py, rem, deadline)?;
                return self.unless_aborted(py, bytes);
            }
            return self.read_exact(py, rem);
        }
        if r.max_buffered().is_none() {
            // Unbounded: the pipe itself holds the body until it ends; then copy once.
            let avail = self.wait_for(py, usize::MAX, deadline)?;
            if avail == 0 {
                return self.end_of_stream(py);
            }
            let bytes = self.read_into_new(py, avail, deadline)?;
            return self.unless_aborted(py, bytes);
        }
        // Ring mode with unknown length: the writer is held back until we read, so drain as we go.
        self.gather(py, None, deadline)
    }

    /// Ring mode, total unknown: reads as data comes (the writer waits for us to make room)
    /// until EOF or `cap` bytes, gathering into a Vec copied once into the result. Used when the
    /// final size is unknown and could be far larger than what will arrive. This can be the whole
    /// body, so every large step (growing the Vec, filling it, the final copy) is GIL-released.
    fn gather<'py>(
        &self,
        py: Python<'py>,
        cap: Option<usize>,
        deadline: Option<Instant>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut out: Vec<u8> = Vec::new();
        loop {
            let want = cap.map_or(usize::MAX, |c| c - out.len());
            if want == 0 {
                return bytes_of(py, &out);
            }
            let avail = match self.wait_for(py, 1, deadline) {
                Ok(a) => a.min(want),
                Err(e) => return Err(with_partial(py, e, &out)),
            };
            if avail == 0 {
                return match self.end_of_stream(py) {
                    Ok(_) => bytes_of(py, &out),
                    Err(e) => Err(with_partial(py, e, &out)),
                };
            }
            let old = out.len();
            let grow = |out: &mut Vec<u8>| out.try_reserve(avail).map(|()| out.resize(old + avail, 0));
            // Zero-filling a large piece, or a reallocation that may move a large Vec, is as
            // costly as a large copy.
            let large = avail > DETACH_COPY || (old > DETACH_COPY && out.capacity() - old < avail);
            let grown = if large { py.detach(|| grow(&mut out)) } else { grow(&mut out) };
            if grown.is_err() {
                return Err(with_partial(py, PyMemoryError::new_err("out of memory reading the body"), &out));
            }
            match self.fill_present(py, &mut out[old..]) {
                Ok(n) => out.truncate(old + n),
                Err(e) => {
                    out.truncate(old);
                    return Err(with_partial(py, e, &out));
                }
            }
        }
    }

    /// Copies what is there now into `buf` without blocking (GIL released for large copies).
    /// Returns 0 when nothing is there (EOF or another thread took it).
    fn fill_present(&self, py: Python<'_>, buf: &mut [u8]) -> PyResult<usize> {
        let r = &*self.reader;
        let res = if buf.len() > DETACH_COPY { py.detach(|| try_read_pieces(r, buf)) } else { r.try_read(buf) };
        match res {
            Ok(n) => Ok(n),
            Err(ReadError::WouldBlock) => Ok(0),
            Err(e) => Err(read_error(py, e)),
        }
    }

    /// `read1`/`read_nonblock` core: up to `n` (None: all) of the bytes there now, in one
    /// allocation. With `block`, first waits for at least one byte.
    fn read_some<'py>(&self, py: Python<'py>, n: Option<usize>, block: bool) -> PyResult<Bound<'py, PyBytes>> {
        let r = &*self.reader;
        if n == Some(0) {
            return Ok(PyBytes::new(py, b""));
        }
        let deadline = self.op_deadline();
        loop {
            let avail = if block { self.wait_for(py, 1, deadline)? } else { r.buffered() };
            let size = n.map_or(avail, |n| n.min(avail));
            if size == 0 {
                if !block && !r.is_ended() && !r.is_closed() {
                    return Ok(PyBytes::new(py, b""));
                }
                return self.end_of_stream(py);
            }
            let mut got = 0;
            let bytes = new_bytes(py, size, |buf| {
                got = self.fill_present(py, buf)?;
                Ok(())
            })?;
            if got == size {
                return Ok(bytes);
            }
            if got > 0 {
                return bytes_of(py, &bytes.as_bytes()[..got]);
            }
            // Another reader thread took the bytes between our check and our read.
            if !block {
                return Ok(PyBytes::new(py, b""));
            }
        }
    }

    /// `readinto` core: at least one byte into `target` (0 only at EOF).
    fn readinto_impl(&self, py: Python<'_>, target: &Bound<'_, PyAny>) -> PyResult<usize> {
        let pybuf = PyUntypedBuffer::get(target)?;
        if pybuf.readonly() {
            return Err(PyTypeError::new_err("readinto() argument must be a writable bytes-like object"));
        }
        if !pybuf.is_c_contiguous() {
            return Err(PyBufferError::new_err("readinto() argument must be C-contiguous"));
        }
        let len = pybuf.len_bytes();
        if len == 0 {
            return Ok(0);
        }
        // SAFETY: the export is held (`pybuf`) until we return, so the memory stays valid and
        // unresized (bytearray refuses to resize while exported); it is writable and contiguous,
        // checked above, and `len` is its size in bytes.
        let dst = unsafe { std::slice::from_raw_parts_mut(pybuf.buf_ptr().cast::<u8>(), len) };
        let r = &*self.reader;
        let res =
            if len.min(r.buffered()) > DETACH_COPY { py.detach(|| try_read_pieces(r, dst)) } else { r.try_read(dst) };
        let n = match res {
            Ok(n) => n,
            Err(ReadError::WouldBlock) => {
                let deadline = self.op_deadline();
                // At most one piece: the copy happens under the cursor lock (readinto may be short).
                let piece = dst.len().min(COPY_PIECE);
                let dst = &mut dst[..piece];
                let waited = in_slices(py, deadline, |end| match r.read_deadline(dst, Some(end)) {
                    Err(ReadError::TimedOut) => None,
                    other => Some(other),
                })?;
                match waited {
                    None => return Err(timeout(py, b"")),
                    Some(res) => res.map_err(|e| read_error(py, e))?,
                }
            }
            Err(e) => return Err(read_error(py, e)),
        };
        drop(pybuf);
        Ok(n)
    }

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
        let probe = py.detach(|| r.try_read_until_with(b'\n', limit, |line| Err::<(), _>(LongLine(line.len()))));
        let len = match long_line_or(py, probe)? {
            Ok(None) => return Ok(Ok(None)),
            Ok(Some(())) => return Ok(Err(LongLine(0))), // not produced by that callback
            Err(LongLine(len)) if len > DETACH_COPY => len,
            Err(short) => return Ok(Err(short)),
        };
        let (obj, region) = uninit_bytes(py, len)?;
        let res = py.detach(move || {
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
        });
        match long_line_or(py, res)? {
            // SAFETY: created by PyBytes_FromStringAndSize; all `len` bytes were just written.
            Ok(Some(())) => Ok(Ok(Some(unsafe { obj.cast_into_unchecked::<PyBytes>() }))),
            Ok(None) => Ok(Ok(None)),
            Err(long) => Ok(Err(long)),
        }
    }

    /// A complete line (up to `limit` bytes; the rest at EOF; `b''` at EOF) if there is one now,
    /// without waiting; `None` while the line is incomplete (nothing consumed then).
    fn try_line<'py>(&self, py: Python<'py>, limit: Option<usize>) -> PyResult<Option<Bound<'py, PyBytes>>> {
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

    /// One line (up to `limit` bytes); `b''` at EOF.
    fn readline_impl<'py>(&self, py: Python<'py>, limit: Option<usize>) -> PyResult<Bound<'py, PyBytes>> {
        if limit == Some(0) {
            return Ok(PyBytes::new(py, b""));
        }
        if let Some(line) = self.try_line(py, limit)? {
            return Ok(line);
        }
        let r = &*self.reader;
        let mut out = Vec::new();
        // No complete line yet: wait for it. `read_line_deadline` consumes nothing until the line is
        // complete (or the limit/EOF is reached), so a timeout usually loses nothing; in ring mode
        // a line longer than the high-water mark is consumed as it arrives (it could never
        // complete in place), and what was taken is then handed back as `partial`.
        let deadline = self.op_deadline();
        let waited = in_slices(py, deadline, |end| match r.read_line_deadline(&mut out, limit, Some(end)) {
            Err(ReadError::TimedOut) => None,
            other => Some(other),
        });
        match waited {
            Err(e) => Err(with_partial(py, e, &out)),
            Ok(None) => Err(timeout(py, &out)),
            Ok(Some(Ok(_))) => bytes_of(py, &out),
            Ok(Some(Err(e))) => Err(with_partial(py, read_error(py, e), &out)),
        }
    }
}

/// A region of a `bytes` object under construction, handed to a GIL-released closure.
#[derive(Clone, Copy)]
struct RawRegion(*mut u8, usize);

// SAFETY: the region belongs to a `bytes` object that no other code can reach yet (see
// `new_bytes`), so writing it from another thread while we wait is not a data race.
unsafe impl Send for RawRegion {}

impl RawRegion {
    /// Zero-fills the region.
    ///
    /// # Safety
    /// The region must be valid for writes of `self.1` bytes and not accessed concurrently.
    unsafe fn zero(self) {
        // SAFETY: per the contract above.
        unsafe { std::ptr::write_bytes(self.0, 0, self.1) }
    }

    /// Copies `parts` one after the other to the start of the region; returns the count.
    ///
    /// # Safety
    /// The region must be valid for writes of `self.1` bytes and not accessed concurrently, and
    /// the parts must total at most `self.1` bytes and not overlap it.
    unsafe fn copy_parts(self, parts: &[&[u8]]) -> usize {
        let mut at = 0;
        for part in parts {
            debug_assert!(at + part.len() <= self.1);
            // SAFETY: per the contract above, `at + part.len()` stays inside the region.
            unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), self.0.add(at), part.len()) };
            at += part.len();
        }
        at
    }
}

/// A new `bytes` object of `len` bytes whose contents are *uninitialised*: the caller must
/// write all of them (through the region, never a `&[u8]` of it) before the object is used.
fn uninit_bytes(py: Python<'_>, len: usize) -> PyResult<(Bound<'_, PyAny>, RawRegion)> {
    let ssize = ffi::Py_ssize_t::try_from(len).map_err(|_| PyMemoryError::new_err("read size too large"))?;
    // SAFETY: a NULL source asks CPython for an uninitialised bytes object of `len` bytes; the
    // GIL is held; a NULL result is turned into the pending Python error (MemoryError).
    let obj = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyBytes_FromStringAndSize(std::ptr::null(), ssize))? };
    // SAFETY: `obj` is a bytes object, just created; its buffer is `len` bytes plus a NUL.
    let ptr = unsafe { ffi::PyBytes_AsString(obj.as_ptr()) }.cast::<u8>();
    if ptr.is_null() {
        return Err(PyErr::fetch(py));
    }
    Ok((obj, RawRegion(ptr, len)))
}

/// One `bytes` holding `parts` concatenated, copied once: with the GIL released when that is
/// more than `DETACH_COPY` bytes (a gathered body, a long line, a peek of the whole body).
fn join_bytes<'py>(py: Python<'py>, parts: &[&[u8]]) -> PyResult<Bound<'py, PyBytes>> {
    let len = parts.iter().try_fold(0usize, |n, p| n.checked_add(p.len()));
    let len = len.ok_or_else(|| PyMemoryError::new_err("read size too large"))?;
    let (obj, region) = uninit_bytes(py, len)?;
    if len > DETACH_COPY {
        // SAFETY: `obj` is referenced only by this function until it returns, so nothing else
        // reads or writes its buffer while the GIL is released; the parts total `len` bytes and
        // are borrowed from elsewhere, so they do not overlap it.
        py.detach(move || unsafe { region.copy_parts(parts) });
    } else {
        // SAFETY: as above.
        unsafe { region.copy_parts(parts) };
    }
    // SAFETY: created by PyBytes_FromStringAndSize in `uninit_bytes`; every byte is now written.
    Ok(unsafe { obj.cast_into_unchecked::<PyBytes>() })
}

/// `PyBytes::new`, but a large copy is made with the GIL released (see [`join_bytes`]).
fn bytes_of<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    if data.len() > DETACH_COPY {
        join_bytes(py, &[data])
    } else {
        Ok(PyBytes::new(py, data))
    }
}

/// Like `PyBytes::new_with`: allocates a `bytes` of `len` and lets `init` fill it in place (the
/// result object is the only buffer), but zero-fills a large one with the GIL released.
fn new_bytes<'py, F>(py: Python<'py>, len: usize, init: F) -> PyResult<Bound<'py, PyBytes>>
where
    F: FnOnce(&mut [u8]) -> PyResult<()>,
{
    let (obj, region) = uninit_bytes(py, len)?;
    if len > DETACH_COPY {
        // SAFETY: `obj` is referenced only by this function until it returns, so nothing else
        // reads or writes its buffer while the GIL is released.
        py.detach(move || unsafe { region.zero() });
    } else {
        // SAFETY: as above.
        unsafe { region.zero() };
    }
    // SAFETY: the buffer is `len` initialised bytes owned by `obj`, which outlives this borrow;
    // no other reference to it exists (see above), so the unique borrow is sound.
    init(unsafe { std::slice::from_raw_parts_mut(region.0, len) })?;
    // SAFETY: created by PyBytes_FromStringAndSize above.
    Ok(unsafe { obj.cast_into_unchecked::<PyBytes>() })
}

/// Largest copy made under one hold of the core's cursor lock by a GIL-released read. Another
/// thread's fast path (GIL held) may have to wait for that lock, so each hold is kept short
/// (~0.1 ms) instead of lasting as long as a 100 MiB copy.
const COPY_PIECE: usize = 1024 * 1024;

/// `try_read` in pieces of at most [`COPY_PIECE`]; stops at the first short piece. Errors only
/// if nothing was read (a later call reports the same state again).
fn try_read_pieces(r: &Reader, buf: &mut [u8]) -> Result<usize, ReadError> {
    let mut total = 0;
    for piece in buf.chunks_mut(COPY_PIECE) {
        match r.try_read(piece) {
            Ok(n) => {
                total += n;
                if n < piece.len() {
                    break;
                }
            }
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(total)
}

/// Attaches the bytes consumed before an error as `exc.partial` (`b''` when there are none, so
/// `exc.partial` always exists, as `BodyAborted.partial` and `TimeoutError.partial` promise).
fn with_partial(py: Python<'_>, e: PyErr, partial: &[u8]) -> PyErr {
    // If even that fails (out of memory), the original error still goes out.
    if let Ok(bytes) = bytes_of(py, partial) {
        let _ = e.value(py).setattr("partial", bytes);
    }
    e
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

/// Resolves a `find` bound: negative counts from the end of the unread bytes, as `bytes.find`.
fn resolve_bound(v: isize, avail: usize) -> u64 {
    if v < 0 {
        avail.saturating_sub(v.unsigned_abs()) as u64
    } else {
        v as u64
    }
}

/// Fills a `Py_buffer` for read-only 1-D bytes owned by `owner`.
///
/// # Safety
/// `view` must be a valid `Py_buffer` pointer; `data` must stay valid as long as `owner` lives.
unsafe fn fill_readonly_view(
    view: *mut ffi::Py_buffer,
    flags: c_int,
    data: &[u8],
    owner: Bound<'_, PyAny>,
) -> PyResult<()> {
    if view.is_null() {
        return Err(PyBufferError::new_err("Py_buffer is null"));
    }
    if (flags & ffi::PyBUF_WRITABLE) == ffi::PyBUF_WRITABLE {
        return Err(PyBufferError::new_err("the body is read-only"));
    }
    let len = isize::try_from(data.len()).map_err(|_| PyBufferError::new_err("view too large"))?;
    // SAFETY: the caller guarantees `view` is valid; every field is set below.
    unsafe {
        (*view).obj = owner.into_ptr();
        (*view).buf = data.as_ptr() as *mut c_void;
        (*view).len = len;
        (*view).readonly = 1;
        (*view).itemsize = 1;
        // A static "B": nothing to free in releasebuffer. CPython never writes through `format`.
        (*view).format = if (flags & ffi::PyBUF_FORMAT) == ffi::PyBUF_FORMAT {
            c"B".as_ptr() as *mut _
        } else {
            std::ptr::null_mut()
        };
        (*view).ndim = 1;
        // shape and strides point into the Py_buffer itself, which lives as long as the export.
        (*view).shape = if (flags & ffi::PyBUF_ND) == ffi::PyBUF_ND { &mut (*view).len } else { std::ptr::null_mut() };
        (*view).strides = if (flags & ffi::PyBUF_STRIDES) == ffi::PyBUF_STRIDES {
            &mut (*view).itemsize
        } else {
            std::ptr::null_mut()
        };
        (*view).suboffsets = std::ptr::null_mut();
        (*view).internal = std::ptr::null_mut();
    }
    Ok(())
}

/// The exporter behind each memoryview of a body: owns one core [`View`], which keeps its
/// segment alive, so the memoryview stays valid after the `PyBuffer` is gone and while writes go on.
#[pyclass(name = "_SegmentView", module = "bodypipe", frozen)]
pub struct SegmentView {
    view: View,
}

impl SegmentView {
    fn memoryview(py: Python<'_>, view: View) -> PyResult<Bound<'_, PyMemoryView>> {
        let owner = Bound::new(py, SegmentView { view })?;
        PyMemoryView::from(owner.as_any())
    }
}

#[pymethods]
impl SegmentView {
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        let data: &[u8] = &slf.get().view;
        let (ptr, len) = (data.as_ptr(), data.len());
        // SAFETY: `view` comes from CPython; the bytes are owned by `slf.view`, which lives at
        // least as long as the export holds `slf` (set as `view.obj`).
        unsafe { fill_readonly_view(view, flags, std::slice::from_raw_parts(ptr, len), slf.into_any()) }
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        // Nothing to free: the format string is static and the View is dropped with `self`.
    }

    fn __len__(&self) -> usize {
        self.view.len()
    }
}

#[pymethods]
impl PyBuffer {
    /// A buffer already holding `data` and at EOF.
    #[classmethod]
    fn from_bytes(_cls: &Bound<'_, PyType>, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Self> {
        let src = PyUntypedBuffer::get(data)?;
        if !src.is_c_contiguous() {
            return Err(PyBufferError::new_err("from_bytes() argument must be C-contiguous"));
        }
        let len = src.len_bytes();
        // SAFETY: the export is held by `src` until the end of this function; contiguous, `len` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(src.buf_ptr().cast::<u8>(), len) };
        let (mut w, r) = ::bodypipe::Builder::new()
            .content_length(len as u64)
            .max_size(len as u64)
            .build()
            .map_err(errors::build_error)?;
        if len > DETACH_COPY { py.detach(|| w.write(bytes)) } else { w.write(bytes) }.map_err(errors::write_error)?;
        w.close();
        drop(src);
        Ok(Self::from_reader(Arc::new(r)))
    }

    /// Compatibility with the reference's tests: a buffer holding `data`, not at EOF, whose
    /// writer is kept inside (so it never grows and never aborts); `close()` ends it.
    #[classmethod]
    #[pyo3(signature = (data=None, content_length=-1))]
    fn _test_create(_cls: &Bound<'_, PyType>, data: Option<&Bound<'_, PyAny>>, content_length: i64) -> PyResult<Self> {
        let bytes: Vec<u8> = match data {
            None => Vec::new(),
            Some(d) => bytes_like(d)?,
        };
        let mut b = ::bodypipe::Builder::new();
        if content_length >= 0 {
            b = b.content_length(content_length as u64);
        }
        let (mut w, r) = b.build().map_err(errors::build_error)?;
        w.write(&bytes).map_err(errors::write_error)?;
        let this = Self::from_reader(Arc::new(r));
        *this._keep_writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
        Ok(this)
    }

    /// `read(size=-1)`: `None`/negative: everything up to EOF; `n`: exactly `n` bytes unless EOF
    /// comes first; `0`: `b''` at once.
    #[pyo3(signature = (size=None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyBytes>> {
        match size_arg(size)? {
            None => self.read_all(py),
            Some(0) => Ok(PyBytes::new(py, b"")),
            Some(n) => self.read_exact(py, n),
        }
    }

    /// Everything up to EOF.
    fn readall<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.read_all(py)
    }

    /// Up to `size` bytes, returning as soon as at least one is there (`b''` only at EOF).
    #[pyo3(signature = (size=None))]
    fn read1<'py>(&self, py: Python<'py>, size: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyBytes>> {
        let n = size_arg(size)?;
        self.read_some(py, n, true)
    }

    /// Up to `size` of the bytes there now; never blocks (`b''` when none).
    #[pyo3(signature = (size=None))]
    fn read_nonblock<'py>(&self, py: Python<'py>, size: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyBytes>> {
        let n = size_arg(size)?;
        self.read_some(py, n, false)
    }

    /// Reads into a writable bytes-like object; at least one byte unless at EOF (0).
    fn readinto(&self, py: Python<'_>, b: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.readinto_impl(py, b)
    }

    /// Same as `readinto` (which already returns after one underlying read).
    fn readinto1(&self, py: Python<'_>, b: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.readinto_impl(py, b)
    }

    /// One line including `b'\n'`, at most `size` bytes; `b''` at EOF.
    #[pyo3(signature = (size=None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyBytes>> {
        let limit = size_arg(size)?;
        self.readline_impl(py, limit)
    }

    /// All remaining lines; stops once their total reaches `hint` (when positive).
    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyList>> {
        let hint = size_arg(hint)?.filter(|&h| h > 0);
        let mut lines: Vec<Bound<'py, PyBytes>> = Vec::new();
        let mut total = 0usize;
        loop {
            let line = match self.readline_impl(py, None) {
                Ok(line) => line,
                // The lines read so far are consumed: like `read()`, a failed call hands them
                // back on `partial` (before any part of the line it was reading) instead of
                // dropping them with the list.
                Err(e) => {
                    let tail = e.value(py).getattr("partial").ok();
                    let tail = tail.as_ref().and_then(|t| t.cast::<PyBytes>().ok());
                    let mut parts: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
                    parts.extend(tail.map(|t| t.as_bytes()));
                    if let Ok(partial) = join_bytes(py, &parts) {
                        let _ = e.value(py).setattr("partial", partial);
                    }
                    return Err(e);
                }
            };
            let n = line.as_bytes().len();
            if n == 0 {
                break;
            }
            lines.push(line);
            total += n;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        PyList::new(py, lines)
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.readline_impl(py, None)?;
        Ok((!line.as_bytes().is_empty()).then_some(line))
    }

    /// Up to `size` unread bytes without consuming them; waits for at least one unless at EOF.
    /// `size <= 0` returns everything there now (as `io.BufferedReader.peek`).
    #[pyo3(signature = (size=0))]
    fn peek<'py>(&self, py: Python<'py>, size: isize) -> PyResult<Bound<'py, PyBytes>> {
        let deadline = self.op_deadline();
        let avail = self.wait_for(py, 1, deadline)?;
        let want = if size <= 0 { avail } else { avail.min(size as usize) };
        // The views pin the bytes (the core never reuses a viewed segment), so they are copied
        // once, straight into the result, with the GIL released when that is large.
        let views = self.reader.views();
        let mut parts: Vec<&[u8]> = Vec::with_capacity(views.len());
        let mut left = want;
        for v in &views {
            if left == 0 {
                break;
            }
            let take = left.min(v.len());
            parts.push(&v[..take]);
            left -= take;
        }
        join_bytes(py, &parts)
    }

    /// `await buf.aread(n=-1)`: up to `n` bytes, as soon as at least one is there (`b''` only at
    /// EOF); `None`/negative: everything up to EOF. Never blocks the event loop.
    #[pyo3(signature = (n=None))]
    fn aread<'py>(slf: &Bound<'py, Self>, n: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
        let n = size_arg(n)?;
        aio(slf.py())?.aread.bind(slf.py()).call1((slf, n))
    }

    /// `await buf.areadline(size=-1)`: one line including `b'\n'`, at most `size` bytes.
    #[pyo3(signature = (size=None))]
    fn areadline<'py>(slf: &Bound<'py, Self>, size: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
        let limit = size_arg(size)?;
        aio(slf.py())?.areadline.bind(slf.py()).call1((slf, limit))
    }

    /// `await buf.areadexactly(n)`: exactly `n` bytes; `asyncio.IncompleteReadError` at an
    /// earlier EOF.
    fn areadexactly<'py>(slf: &Bound<'py, Self>, n: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        // An integer too large for a size is an OverflowError, as in `size_arg` and `io`.
        let n: isize = n.extract().map_err(|e: PyErr| {
            if e.is_instance_of::<PyOverflowError>(py) {
                return e;
            }
            let ty = n.get_type().name().map(|t| t.to_string()).unwrap_or_else(|_| "?".into());
            PyTypeError::new_err(format!("readexactly size must be an integer, not '{ty}'"))
        })?;
        if n < 0 {
            return Err(PyValueError::new_err("readexactly size can not be less than zero"));
        }
        aio(py)?.areadexactly.bind(py).call1((slf, n))
    }

    fn __aiter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __anext__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        aio(slf.py())?.anext.bind(slf.py()).call1((slf,))
    }

    /// Async support: up to `size` (None: all) bytes there now; `b''` at the end; `None` when a
    /// read would wait. Raises `BodyAborted` once the data before an abort is read.
    #[pyo3(signature = (size))]
    fn _try_read1<'py>(&self, py: Python<'py>, size: Option<usize>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        if size == Some(0) {
            return Ok(Some(PyBytes::new(py, b"")));
        }
        // Loaded before the read: an empty read after the end was seen is a true end (the end is
        // published after the last write).
        let ended = self.reader.is_ended() || self.reader.is_closed();
        let data = self.read_some(py, size, false)?;
        Ok((!data.as_bytes().is_empty() || ended).then_some(data))
    }

    /// Async support: a line (as `readline(size)`) if complete now, as `bytes`; else the number
    /// of unread bytes to wait for (an `int`); in ring mode, for a line longer than
    /// `max_buffered`, a 1-tuple with the part consumed now (the caller continues the line).
    #[pyo3(signature = (limit))]
    fn _try_readline<'py>(&self, py: Python<'py>, limit: Option<usize>) -> PyResult<Bound<'py, PyAny>> {
        let r = &*self.reader;
        // The scan below covers at least the bytes written by now, so once one more is written
        // (or the stream ends) it is worth scanning again.
        let written = r.written();
        if let Some(line) = self.try_line(py, limit)? {
            return Ok(line.into_any());
        }
        if let Some(cap) = r.max_buffered() {
            let avail = r.buffered();
            if avail >= cap {
                // The writer cannot add a byte until we consume: take what is there.
                let take = limit.map_or(avail, |l| l.min(avail));
                if let Some(part) = self.try_line(py, Some(take))? {
                    let b = part.as_bytes();
                    let done = b.is_empty()
                        || b.ends_with(
                            b"
",
                        )
                        || Some(b.len()) == limit;
                    return if done { Ok(part.into_any()) } else { Ok((part,).into_pyobject(py)?.into_any()) };
                }
            }
        }
        let unread_then = usize::try_from(written.saturating_sub(r.position())).unwrap_or(usize::MAX);
        Ok(unread_then.saturating_add(1).into_pyobject(py)?.into_any())
    }

    /// Async support: wake wait `wid` of `notifier` once `min` bytes are unread or the stream
    /// has ended (at once if so already); returns the handle `_disarm` takes.
    fn _arm(&self, notifier: &Bound<'_, Notifier>, wid: u64, min: usize) -> Armed {
        aio::arm(&self.reader, notifier.get(), wid, min)
    }

    /// Async support: forget a wait armed by `_arm` (a no-op once it has fired).
    fn _disarm(&self, armed: &Bound<'_, Armed>) {
        aio::disarm(&self.reader, armed.get());
    }

    /// Async support (tests): how many async reads are parked on this body's reader, through
    /// any wrapper of it.
    fn _parked(&self) -> usize {
        self.reader.armed_readable()
    }

    /// Async support: the writer ended the stream, or the reader was closed.
    fn _ended(&self) -> bool {
        self.reader.is_ended() || self.reader.is_closed()
    }

    /// Async support: the high-water mark (ring mode) or None.
    fn _max_buffered(&self) -> Option<usize> {
        self.reader.max_buffered()
    }

    /// Bytes that can be read now without blocking.
    fn readable_amount(&self) -> usize {
        self.reader.buffered()
    }

    /// True once the body has ended (EOF, abort, or `close()`) and every byte has been read.
    fn at_eof(&self) -> bool {
        self.reader.at_eof()
    }

    /// Moves the read position within the written data; returns the new absolute position.
    #[pyo3(signature = (offset, whence=0))]
    fn seek(&self, offset: i64, whence: i64) -> PyResult<u64> {
        let to = match whence {
            0 => SeekFrom::Start(
                u64::try_from(offset).map_err(|_| PyValueError::new_err(format!("negative seek position {offset}")))?,
            ),
            1 => SeekFrom::Current(offset),
            2 => SeekFrom::End(offset),
            w => return Err(PyValueError::new_err(format!("invalid whence ({w}, should be 0, 1 or 2)"))),
        };
        self.reader.seek(to).map_err(seek_error)
    }

    /// The read position.
    fn tell(&self) -> u64 {
        self.reader.position()
    }

    /// Offset of `sub` (bytes-like or an int byte) in the unread bytes present now, searched in
    /// `[start, end)` relative to the read position (negative: from the end, as `bytes.find`);
    /// -1 if absent. Never blocks.
    #[pyo3(signature = (sub, start=0, end=None))]
    fn find(&self, py: Python<'_>, sub: &Bound<'_, PyAny>, start: isize, end: Option<isize>) -> PyResult<i64> {
        let needle: Vec<u8> = if sub.is_instance_of::<PyInt>() {
            let b: u8 = sub.extract().map_err(|_| PyValueError::new_err("byte must be in range(0, 256)"))?;
            vec![b]
        } else {
            bytes_like(sub).map_err(|_| PyTypeError::new_err("argument should be a bytes-like object or int"))?
        };
        let avail = self.reader.buffered();
        let start = resolve_bound(start, avail);
        let end = end.map(|e| resolve_bound(e, avail));
        let r = &*self.reader;
        let found =
            if avail > DETACH_COPY { py.detach(|| r.find(&needle, start, end)) } else { r.find(&needle, start, end) };
        Ok(found.map_or(-1, |i| i64::try_from(i).unwrap_or(i64::MAX)))
    }

    /// One zero-copy memoryview per segment of the unread bytes present now.
    fn views<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for v in self.reader.views() {
            list.append(SegmentView::memoryview(py, v)?)?;
        }
        Ok(list)
    }

    /// Sets the timeout (seconds; `None`: block forever) for blocking reads.
    fn settimeout(&self, value: Option<f64>) -> PyResult<()> {
        let t = match value {
            None => None,
            Some(s) if s.is_nan() => return Err(PyValueError::new_err("Invalid value NaN (not a number)")),
            Some(s) if s < 0.0 => return Err(PyValueError::new_err("Timeout value out of range")),
            // An enormous timeout is as good as none.
            Some(s) => Duration::try_from_secs_f64(s).ok(),
        };
        self.reader.set_read_timeout(t);
        Ok(())
    }

    /// The timeout in seconds, or `None`.
    fn gettimeout(&self) -> Option<f64> {
        self.reader.read_timeout().map(|d| d.as_secs_f64())
    }

    /// Always True.
    fn readable(&self) -> bool {
        true
    }

    /// Always False: bodies are written through a `Writer`.
    fn writable(&self) -> bool {
        false
    }

    /// True: seeking within the written (and, in ring mode, retained) data is supported.
    fn seekable(&self) -> bool {
        true
    }

    /// False.
    fn isatty(&self) -> bool {
        false
    }

    /// No-op.
    fn flush(&self) {}

    /// Raises `io.UnsupportedOperation`: there is no file descriptor.
    fn fileno(&self, py: Python<'_>) -> PyResult<i64> {
        Err(unsupported(py, "PyBuffer has no file descriptor"))
    }

    /// Raises `io.UnsupportedOperation`: a body is read-only (as `io.RawIOBase` on a file opened
    /// `rb`). Present so code written against `IO[bytes]` fails clearly, not with AttributeError.
    #[pyo3(signature = (size=None, /))]
    fn truncate(&self, py: Python<'_>, size: Option<&Bound<'_, PyAny>>) -> PyResult<i64> {
        let _ = size;
        Err(unsupported(py, "truncate: PyBuffer is read-only"))
    }

    /// Raises `io.UnsupportedOperation`: bodies are written through a `Writer`.
    #[pyo3(signature = (b, /))]
    fn write(&self, py: Python<'_>, b: &Bound<'_, PyAny>) -> PyResult<i64> {
        let _ = b;
        Err(unsupported(py, "write: PyBuffer is read-only (write through its Writer)"))
    }

    /// Raises `io.UnsupportedOperation`, as `write` does.
    #[pyo3(signature = (lines, /))]
    fn writelines(&self, py: Python<'_>, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        let _ = lines;
        Err(unsupported(py, "writelines: PyBuffer is read-only (write through its Writer)"))
    }

    /// `"rb"`, the mode of a file a body can stand in for.
    #[getter]
    fn mode(&self) -> &'static str {
        "rb"
    }

    /// The reader hangs up: reads never block again, the writer's next write fails.
    fn close(&self) {
        self.reader.close();
    }

    /// True after `close()` (not after the writer's EOF).
    #[getter]
    fn closed(&self) -> bool {
        self.reader.is_closed()
    }

    /// The declared content length, or None.
    #[getter]
    fn content_length(&self) -> Option<u64> {
        self.reader.content_length()
    }

    fn __len__(&self) -> usize {
        self.reader.buffered()
    }

    fn __bool__(&self) -> bool {
        true
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) {
        self.reader.close();
    }

    fn __repr__(&self) -> String {
        let r = &*self.reader;
        let cl = r.content_length().map_or_else(|| "None".to_owned(), |c| c.to_string());
        let state = if let Some(reason) = r.abort_reason() {
            format!("aborted({reason:?})")
        } else if r.is_ended() {
            "complete".to_owned()
        } else {
            "streaming".to_owned()
        };
        format!(
            "<bodypipe.PyBuffer pos={} available={} written={} content_length={} {}{}>",
            r.position(),
            r.buffered(),
            r.written(),
            cl,
            state,
            if r.is_closed() { " closed" } else { "" }
        )
    }

    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        let py = slf.py();
        let r = &*slf.get().reader;
        // A coalescing copy of many megabytes is done with the GIL released.
        let v = if r.buffered() > DETACH_COPY { py.detach(|| r.view()) } else { r.view() }
            .map_err(|_| PyMemoryError::new_err("out of memory coalescing the body for a memoryview"))?;
        // The export's owner is a SegmentView holding the View, not this object: CPython releases
        // through `view.obj`, so the bytes live exactly as long as the memoryview does, even after
        // this PyBuffer is gone, and nothing needs freeing here.
        let owner = Bound::new(py, SegmentView { view: v })?;
        let data: &[u8] = &owner.get().view;
        let (ptr, len) = (data.as_ptr(), data.len());
        // SAFETY: `view` comes from CPython; the bytes are owned by `owner`, which the export keeps.
        unsafe { fill_readonly_view(view, flags, std::slice::from_raw_parts(ptr, len), owner.into_any()) }
    }
}
