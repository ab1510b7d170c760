//! `bodypipe.PyBuffer`: the file-like reader side of a body.

use crate::aio::{self, aio, Armed, Notifier};
use crate::bytes::{bytes_from_views, bytes_of, copy_views, join_bytes, new_bytes, uninit_bytes, DETACH_COPY};
use crate::errors::{
    self, body_aborted, bytes_like, read_error, seek_error, size_arg, timeout, unsupported, BodyAborted,
};
use crate::gather::{Gather, PyGather};
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

/// Marks a line too long to copy with the GIL held, with its length (see `PyBuffer::line_fast`).
#[derive(Debug, Clone, Copy)]
struct LongLine(usize);

/// The reader side of a request body, usable as `wsgi.input`.
///
/// All buffering lives in the core [`Reader`]; this object holds an `Arc` to it (so an embedder
/// can keep its own handle) and translates calls. See `bodypipe.pyi` for the Python-level docs.
#[pyclass(name = "PyBuffer", module = "bodypipe", frozen, weakref)]
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

    /// One consuming step, as one contiguous slice of the stream: `max` bytes (with `whole`; fewer
    /// only once the stream has ended) or at least one (without), into a new `bytes`. `b''` at
    /// EOF; `BodyAborted` once an aborted body is drained; `None` (nothing consumed) while the
    /// bytes are not there, or another reader thread took them first.
    ///
    /// Up to `DETACH_COPY` the copy is made under the cursor lock with the GIL held (cheaper than
    /// releasing it); beyond that the core reserves the range under the lock and hands it over
    /// as views, copied with the GIL released while other threads read on.
    fn take_bytes<'py>(&self, py: Python<'py>, max: usize, whole: bool) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let r = &*self.reader;
        let size = r.buffered().min(max);
        let ended = || r.is_ended() || r.is_closed();
        if size == 0 || size > DETACH_COPY {
            // (Also for nothing there: the core tells EOF, abort and "not yet" apart.)
            let min = if whole { max } else { 1 };
            return match r.try_read_views(min, max) {
                Ok(views) => bytes_from_views(py, &views).map(Some),
                Err(ReadError::WouldBlock) => Ok(None),
                Err(e) => Err(read_error(py, e)),
            };
        }
        if whole && size < max && !ended() {
            return Ok(None);
        }
        let mut got = None;
        let bytes = new_bytes(py, size, |buf| {
            // `size == max` with `whole`: all of it or nothing; else what is there (at the end,
            // what is left), at most `size`.
            let res = if whole && size == max { r.try_read_full(buf) } else { r.try_read(buf) };
            match res {
                Ok(n) => got = Some(n),
                Err(ReadError::WouldBlock) => {}
                Err(e) => return Err(read_error(py, e)),
            }
            Ok(())
        })?;
        match got {
            None => Ok(None),
            Some(n) if n == size => Ok(Some(bytes)),
            Some(n) => bytes_of(py, &bytes.as_bytes()[..n]).map(Some),
        }
    }

    /// `read(n)` for a known `n > 0`: exactly `n` bytes unless the stream ends first, taken in
    /// one step once they are all there, so a timeout loses nothing and the result is one
    /// contiguous slice whatever other threads read. In ring mode no more than the high-water
    /// mark can ever be buffered: a larger `n` is gathered as it arrives (see `gather`).
    fn read_exact<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
        let r = &*self.reader;
        let deadline = self.op_deadline();
        if r.max_buffered().is_some_and(|m| n > m) {
            return self.gather(py, Some(n), deadline);
        }
        loop {
            self.wait_for(py, n, deadline)?;
            if let Some(bytes) = self.take_bytes(py, n, true)? {
                if !bytes.as_bytes().is_empty() && bytes.as_bytes().len() < n {
                    return self.unless_aborted(py, bytes);
                }
                return Ok(bytes);
            }
            // Another reader thread took some of the bytes first: wait for `n` again.
        }
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

    /// `BodyAborted` (with `partial = b''`) if the body was aborted and every byte before the
    /// abort is consumed: for the calls that consume nothing (`peek`, `at_eof`), which must not
    /// look like a clean end either.
    fn raise_if_drained_abort(&self, py: Python<'_>) -> PyResult<()> {
        let r = &*self.reader;
        match r.abort_reason() {
            // The abort is final: nothing can be written after it, so 0 unread stays 0.
            Some(reason) if r.buffered() == 0 => Err(read_error(py, ReadError::Aborted { reason })),
            _ => Ok(()),
        }
    }

    /// `read()` / `read(-1)`: everything up to EOF, as one contiguous slice.
    fn read_all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let r = &*self.reader;
        let deadline = self.op_deadline();
        if r.max_buffered().is_some() {
            // Ring mode: the writer is held back until we read, so gather as it comes, in memory
            // that follows the bytes (never the declared length).
            return self.gather(py, None, deadline);
        }
        // Unbounded: the pipe itself holds the body until it ends (consuming nothing, so a
        // timeout loses nothing); then one step takes it all. Memory is the body, twice at most.
        loop {
            self.wait_for(py, usize::MAX, deadline)?;
            if let Some(bytes) = self.take_bytes(py, usize::MAX, false)? {
                if bytes.as_bytes().is_empty() {
                    return Ok(bytes);
                }
                return self.unless_aborted(py, bytes);
            }
        }
    }

    /// Ring mode, `read()` or `read(n)` beyond the high-water mark: reads as data comes (the
    /// writer waits for us to make room) until EOF or `cap` bytes, gathering in pieces that grow
    /// with the bytes (see `gather.rs`) copied once into the result. A step that finds the whole
    /// result there (the body complete, or `cap` reached, in the first step) is copied straight
    /// into the result instead. Every large copy is GIL-released. Errors carry the bytes gathered
    /// as `partial`.
    ///
    /// The one read that is not a single step: other reader threads may take bytes between its
    /// steps (it cannot hold them off while it waits for the network).
    fn gather<'py>(
        &self,
        py: Python<'py>,
        cap: Option<usize>,
        deadline: Option<Instant>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let r = &*self.reader;
        let mut out = Gather::default();
        loop {
            let want = cap.map_or(usize::MAX, |c| c - out.len());
            if want == 0 {
                return out.into_bytes(py);
            }
            if let Err(e) = self.wait_for(py, 1, deadline) {
                return Err(out.attach(py, e));
            }
            let views = match r.try_read_views(1, want) {
                Ok(views) => views,
                Err(ReadError::WouldBlock) => continue,
                Err(e) => return Err(out.attach(py, read_error(py, e))),
            };
            if views.is_empty() {
                return out.into_bytes(py);
            }
            let n: usize = views.iter().map(|v| v.len()).sum();
            if out.is_empty() && (n == want || r.at_eof()) {
                return bytes_from_views(py, &views);
            }
            if let Err(e) = out.push(py, &views) {
                // Consumed but not kept: `partial` gets what was gathered before, with the
                // MemoryError (these bytes are lost, as memory for them was not there).
                return Err(out.attach(py, e));
            }
        }
    }

    /// `read1`/`read_nonblock` core: up to `n` (None: all) of the bytes there now, in one
    /// step. With `block`, first waits for at least one byte.
    fn read_some<'py>(&self, py: Python<'py>, n: Option<usize>, block: bool) -> PyResult<Bound<'py, PyBytes>> {
        let r = &*self.reader;
        if n == Some(0) {
            return Ok(PyBytes::new(py, b""));
        }
        let deadline = self.op_deadline();
        loop {
            let avail = if block { self.wait_for(py, 1, deadline)? } else { r.buffered() };
            if avail == 0 && !block && !r.is_ended() && !r.is_closed() {
                return Ok(PyBytes::new(py, b""));
            }
            match self.take_bytes(py, n.unwrap_or(usize::MAX), false)? {
                Some(bytes) => return Ok(bytes),
                // Another reader thread took the bytes between our check and our read.
                None if !block => return Ok(PyBytes::new(py, b"")),
                None => {}
            }
        }
    }

    /// `readinto` core: at least one byte into `target` (0 only at EOF), in one step.
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
        let deadline = self.op_deadline();
        let n = loop {
            let res = if len.min(r.buffered()) > DETACH_COPY {
                // Reserved under the cursor, copied with the GIL released.
                r.try_read_views(1, len).map(|views| copy_views(py, &views, &mut *dst))
            } else {
                // At most DETACH_COPY with the GIL held, however much arrived since the check.
                r.try_read(&mut dst[..len.min(DETACH_COPY)])
            };
            match res {
                Ok(n) => break n,
                Err(ReadError::WouldBlock) => {
                    self.wait_for(py, 1, deadline)?;
                }
                Err(e) => return Err(read_error(py, e)),
            }
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
    /// without waiting; `None` while the line is incomplete (nothing consumed then). After an
    /// abort, a last line without its newline is no line: `BodyAborted`, with its bytes (now
    /// consumed) as `partial`.
    fn try_line<'py>(&self, py: Python<'py>, limit: Option<usize>) -> PyResult<Option<Bound<'py, PyBytes>>> {
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
        // One segment of exactly the data (sized from bytes that are there, not from a claim),
        // so `memoryview(buf)` of it is zero-copy.
        let (mut w, r) = ::bodypipe::Builder::new()
            .content_length(len as u64)
            .max_size(len as u64)
            .segment_size(len.max(1))
            .build()
            .map_err(errors::build_error)?;
        if len > DETACH_COPY { py.detach(|| w.write(bytes)) } else { w.write(bytes) }.map_err(errors::write_error)?;
        // The whole declared length was just written: this close is complete.
        let _complete = w.close();
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
        if avail == 0 {
            // The end: `b''` at EOF, but an aborted body must not look complete.
            self.raise_if_drained_abort(py)?;
        }
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

    /// Async support: exactly `size` bytes in one step if they are all there now (fewer only at
    /// the end of the stream; `b''` at EOF); `None` otherwise, consuming nothing. Raises
    /// `BodyAborted` once the data before an abort is read.
    fn _try_read_exact<'py>(&self, py: Python<'py>, size: usize) -> PyResult<Option<Bound<'py, PyBytes>>> {
        if size == 0 {
            return Ok(Some(PyBytes::new(py, b"")));
        }
        self.take_bytes(py, size, true)
    }

    /// Async support (ring mode `aread()`): one non-blocking step of a gathered read into `g`:
    /// True if bytes were added, False at EOF, None when a read would wait. After an abort,
    /// `BodyAborted` with everything gathered as `partial` (`g` is then empty).
    fn _try_gather(&self, py: Python<'_>, g: &Bound<'_, PyGather>) -> PyResult<Option<bool>> {
        let g = g.get();
        let mut gathered = g.take();
        let step = match self.reader.try_read_views(1, usize::MAX) {
            Ok(views) if views.is_empty() => Ok(Some(false)),
            Ok(views) => gathered.push(py, &views).map(|()| Some(true)),
            Err(ReadError::WouldBlock) => Ok(None),
            Err(e) => Err(read_error(py, e)),
        };
        match step {
            Ok(got) => {
                g.put(gathered);
                Ok(got)
            }
            Err(e) => Err(gathered.attach(py, e)),
        }
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

    /// True once the body has ended cleanly (EOF, or `close()`) and every byte has been read;
    /// after an abort, `BodyAborted` once every byte before it has been read (so a polling loop
    /// `while not buf.at_eof(): ...` never ends early with a truncated body).
    fn at_eof(&self, py: Python<'_>) -> PyResult<bool> {
        if self.reader.at_eof() {
            return Ok(true);
        }
        self.raise_if_drained_abort(py)?;
        Ok(false)
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
    #[pyo3(signature = (sub, start=None, end=None))]
    fn find(&self, py: Python<'_>, sub: &Bound<'_, PyAny>, start: Option<isize>, end: Option<isize>) -> PyResult<i64> {
        // `None` bounds as in `bytes.find`: the start, the end.
        let start = start.unwrap_or(0);
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

    /// Sets the timeout (seconds; `None`: block forever) for blocking reads. As
    /// `socket.settimeout`, a value that is not a finite number of seconds is refused rather than
    /// quietly read as "no timeout": `None` says that.
    fn settimeout(&self, value: Option<f64>) -> PyResult<()> {
        let t = match value {
            None => None,
            Some(s) if s.is_nan() => return Err(PyValueError::new_err("Invalid value NaN (not a number)")),
            Some(s) if s < 0.0 => return Err(PyValueError::new_err("Timeout value out of range")),
            Some(s) if s.is_infinite() => {
                return Err(PyOverflowError::new_err("timeout must be a finite number of seconds (None: no timeout)"))
            }
            Some(s) => Some(
                Duration::try_from_secs_f64(s)
                    .map_err(|_| PyOverflowError::new_err("timeout is too large (None: no timeout)"))?,
            ),
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
