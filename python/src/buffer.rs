//! `bodypipe.PyBuffer`: the file-like reader side of a body.

use crate::aio::{self, aio, Armed, Notifier};
use crate::arg::ArgBuffer;
use crate::bytes::{join_bytes, DETACH_COPY};
use crate::errors::{self, read_error, seek_error, size_arg, unsupported};
use crate::export::{export_view, SegmentView};
use crate::gather::PyGather;
use crate::readahead;
use ::bodypipe::{ReadError, Reader};
use pyo3::exceptions::{PyMemoryError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyList, PyType};
use std::ffi::c_int;
use std::io::SeekFrom;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The reader side of a request body, usable as `wsgi.input`.
///
/// All buffering lives in the core [`Reader`]; this object holds an `Arc` to it (so an embedder
/// can keep its own handle) and translates calls. See `bodypipe.pyi` for the Python-level docs.
#[pyclass(name = "PyBuffer", module = "bodypipe", frozen, weakref)]
pub struct PyBuffer {
    pub(crate) reader: Arc<Reader>,
    /// Set by `seek(0, SEEK_END)` before the last byte is here: this object is positioned at the
    /// end of the body (its reads see EOF) while the core's read position stays where it was, so
    /// a later `seek` back there loses nothing, in ring mode too. Cleared by any other seek.
    /// (Clients measure a body with `tell()`, `seek(0, 2)`, `tell()`, `seek(back)`.)
    at_end: AtomicBool,
    /// `_test_create` keeps the writer here, so the body neither grows nor aborts while the
    /// object lives (dropping a core `Writer` would abort the body).
    _keep_writer: Mutex<Option<::bodypipe::Writer>>,
    /// This object has taken a run of lines ahead (`readahead.rs`), so its drop must see that
    /// the run does not outlive it.
    pub(crate) took_run: AtomicBool,
    /// Where this object last found its reader's run in the read-ahead table.
    pub(crate) run_hint: readahead::Hint,
    /// `readline()` calls since the last other call that used the cursor (`readahead.rs`).
    pub(crate) readline_streak: AtomicU32,
}

impl PyBuffer {
    /// Wraps a shared core reader (see [`crate::wrap_reader`]).
    pub fn from_reader(reader: Arc<Reader>) -> Self {
        Self {
            reader,
            at_end: AtomicBool::new(false),
            _keep_writer: Mutex::new(None),
            took_run: AtomicBool::new(false),
            run_hint: readahead::Hint::new(0),
            readline_streak: AtomicU32::new(0),
        }
    }

    /// Positioned at the end by `seek(0, SEEK_END)`: every read sees EOF (see `at_end`).
    #[inline]
    pub(crate) fn past_end(&self) -> bool {
        // ORDERING: Relaxed: a flag of this object's own position, set and read by the threads
        // that call its seek and reads; it publishes no data.
        self.at_end.load(Ordering::Relaxed)
    }

    /// Where the body ends: its declared length, or, once it has ended, what was written.
    /// `io.UnsupportedOperation` while that is not known; `BodyAborted` for an aborted body,
    /// which has no end.
    fn end_position(&self, py: Python<'_>) -> PyResult<u64> {
        let r = &*self.reader;
        if let Some(reason) = r.abort_reason() {
            return Err(read_error(py, ReadError::Aborted { reason }));
        }
        match r.content_length() {
            Some(len) => Ok(len),
            None if r.is_ended() => Ok(r.written()),
            None => Err(unsupported(py, "seek from the end: the body's length is not known yet (no Content-Length)")),
        }
    }

    /// The shared core reader behind this object.
    pub fn reader(&self) -> &Arc<Reader> {
        &self.reader
    }
}

impl Drop for PyBuffer {
    fn drop(&mut self) {
        // A run holds the reader, which must not outlive the wrappers (its drop tells the writer
        // nobody reads any more): the wrapper that took one gives it back (another wrapper's
        // later run is that one's to give back). Only then is the GIL needed here.
        // ORDERING: Relaxed: set and read with the GIL held (`take_run`, and the deallocation of
        // a Python object); it publishes nothing.
        if self.took_run.load(Ordering::Relaxed) {
            let _ = Python::try_attach(|py| readahead::release(py, &self.reader, &self.run_hint));
        }
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

#[pymethods]
impl PyBuffer {
    /// A buffer already holding `data` and at EOF.
    #[classmethod]
    fn from_bytes(_cls: &Bound<'_, PyType>, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Self> {
        let src = ArgBuffer::get(data, "from_bytes()")?;
        let bytes = src.as_slice();
        let len = bytes.len();
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
            Some(d) => ArgBuffer::get(d, "_test_create()")?.to_vec()?,
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
        self.settle(py)?;
        if self.past_end() {
            return Ok(PyBytes::new(py, b""));
        }
        match size_arg(size)? {
            None => self.read_all(py),
            Some(0) => Ok(PyBytes::new(py, b"")),
            Some(n) => self.read_exact(py, n),
        }
    }

    /// Everything up to EOF.
    fn readall<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.settle(py)?;
        if self.past_end() {
            return Ok(PyBytes::new(py, b""));
        }
        self.read_all(py)
    }

    /// Up to `size` bytes, returning as soon as at least one is there (`b''` only at EOF).
    #[pyo3(signature = (size=None))]
    fn read1<'py>(&self, py: Python<'py>, size: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyBytes>> {
        self.settle(py)?;
        if self.past_end() {
            return Ok(PyBytes::new(py, b""));
        }
        let n = size_arg(size)?;
        self.read_some(py, n, true)
    }

    /// Up to `size` of the bytes there now; never blocks (`b''` when none).
    #[pyo3(signature = (size=None))]
    fn read_nonblock<'py>(&self, py: Python<'py>, size: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyBytes>> {
        self.settle(py)?;
        if self.past_end() {
            return Ok(PyBytes::new(py, b""));
        }
        let n = size_arg(size)?;
        self.read_some(py, n, false)
    }

    /// Reads into a writable bytes-like object; at least one byte unless at EOF (0).
    fn readinto(&self, py: Python<'_>, b: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.settle(py)?;
        if self.past_end() {
            return Ok(0);
        }
        self.readinto_impl(py, b)
    }

    /// Same as `readinto` (which already returns after one underlying read).
    fn readinto1(&self, py: Python<'_>, b: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.settle(py)?;
        if self.past_end() {
            return Ok(0);
        }
        self.readinto_impl(py, b)
    }

    /// One line including `b'\n'`, at most `size` bytes; `b''` at EOF.
    #[pyo3(signature = (size=None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyBytes>> {
        if self.past_end() {
            return Ok(PyBytes::new(py, b""));
        }
        let limit = size_arg(size)?;
        if limit != Some(0) {
            if let Some(line) = self.readline_from_run(py, limit) {
                return Ok(line);
            }
        }
        self.readline_impl(py, limit)
    }

    /// All remaining lines; stops once their total reaches `hint` (when positive).
    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyList>> {
        if self.past_end() {
            return Ok(PyList::empty(py));
        }
        let hint = size_arg(hint)?.filter(|&h| h > 0);
        let mut lines: Vec<Bound<'py, PyBytes>> = Vec::new();
        let mut total = 0usize;
        loop {
            let line = match self.iter_line(py) {
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
        if self.past_end() {
            return Ok(None);
        }
        // A line from a run is never empty: skip the emptiness check (two C calls under abi3).
        if let Some(line) = self.line_from_run(py, None) {
            return Ok(Some(line));
        }
        let line = self.iter_line(py)?;
        Ok((!line.as_bytes().is_empty()).then_some(line))
    }

    /// Up to `size` unread bytes without consuming them; waits for at least one unless at EOF.
    /// `size <= 0` returns everything there now (as `io.BufferedReader.peek`).
    #[pyo3(signature = (size=0))]
    fn peek<'py>(&self, py: Python<'py>, size: isize) -> PyResult<Bound<'py, PyBytes>> {
        self.settle(py)?;
        if self.past_end() {
            return Ok(PyBytes::new(py, b""));
        }
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
        self.settle(py)?;
        if self.past_end() {
            return Ok(Some(PyBytes::new(py, b"")));
        }
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
        self.settle(py)?;
        if self.past_end() {
            return Ok(Some(PyBytes::new(py, b"")));
        }
        if size == 0 {
            return Ok(Some(PyBytes::new(py, b"")));
        }
        self.take_bytes(py, size, true)
    }

    /// Async support (ring mode `aread()`): one non-blocking step of a gathered read into `g`:
    /// True if bytes were added, False at EOF, None when a read would wait. After an abort,
    /// `BodyAborted` with everything gathered as `partial` (`g` is then empty).
    fn _try_gather(&self, py: Python<'_>, g: &Bound<'_, PyGather>) -> PyResult<Option<bool>> {
        self.settle(py)?;
        if self.past_end() {
            return Ok(Some(false));
        }
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
        if self.past_end() {
            return Ok(PyBytes::new(py, b"").into_any());
        }
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
    fn _arm(&self, py: Python<'_>, notifier: &Bound<'_, Notifier>, wid: u64, min: usize) -> PyResult<Armed> {
        // The threshold counts from the core's read position, which must be this object's.
        self.settle(py)?;
        Ok(aio::arm(&self.reader, notifier.get(), wid, min))
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

    /// Upload progress: bytes the writer has put into the body so far, wherever the reader
    /// stands (a virtual `seek(0, SEEK_END)` moves `tell()` but not this).
    fn _written(&self) -> u64 {
        self.reader.written()
    }

    /// Async support: the high-water mark (ring mode) or None.
    fn _max_buffered(&self) -> Option<usize> {
        self.reader.max_buffered()
    }

    /// Bytes that can be read now without blocking.
    fn readable_amount(&self, py: Python<'_>) -> usize {
        if self.past_end() {
            return 0;
        }
        // The run's unserved lines are unread (and count as such) without being given back.
        self.reader.buffered() + self.unserved(py) as usize
    }

    /// A snapshot of the body's counters (`bodypipe.Stats`).
    fn stats(&self, py: Python<'_>) -> crate::stats::Stats {
        crate::stats::Stats::new(self.reader.stats(), self.unserved(py))
    }

    /// True once the body has ended cleanly (EOF, or `close()`) and every byte has been read;
    /// after an abort, `BodyAborted` once every byte before it has been read (so a polling loop
    /// `while not buf.at_eof(): ...` never ends early with a truncated body).
    fn at_eof(&self, py: Python<'_>) -> PyResult<bool> {
        self.settle(py)?;
        if self.past_end() {
            return Ok(true);
        }
        if self.reader.at_eof() {
            return Ok(true);
        }
        self.raise_if_drained_abort(py)?;
        Ok(false)
    }

    /// Moves the read position within the written data (ring mode: the retained window); returns
    /// the new absolute position. `seek(0, SEEK_END)` of a body of known length goes to its end
    /// even before the bytes are all here (reads there see EOF) without consuming anything, so
    /// measuring the body (`tell`, `seek(0, 2)`, `tell`, `seek(back)`) loses nothing; with no
    /// known length it raises `io.UnsupportedOperation`, which clients take as "stream it".
    #[pyo3(signature = (offset, whence=0))]
    fn seek(&self, py: Python<'_>, offset: i64, whence: i64) -> PyResult<u64> {
        self.settle(py)?;
        let from_end = |end: u64| -> PyResult<SeekFrom> {
            let to = i128::from(end) + i128::from(offset);
            u64::try_from(to)
                .map(SeekFrom::Start)
                .map_err(|_| PyValueError::new_err(format!("negative seek position {to}")))
        };
        let to = match whence {
            0 => SeekFrom::Start(
                u64::try_from(offset).map_err(|_| PyValueError::new_err(format!("negative seek position {offset}")))?,
            ),
            1 if self.past_end() => {
                let end = self.end_position(py)?;
                if offset == 0 {
                    return Ok(end);
                }
                from_end(end)?
            }
            1 => SeekFrom::Current(offset),
            2 => {
                let end = self.end_position(py)?;
                let r = &*self.reader;
                // Not there yet, or (ring mode) there but freed once read past: stand at the end
                // without moving the core's cursor, so the seek back finds every byte.
                if offset == 0 && r.position() < end && (r.written() < end || r.max_buffered().is_some()) {
                    self.at_end.store(true, Ordering::Relaxed);
                    return Ok(end);
                }
                from_end(end)?
            }
            w => return Err(PyValueError::new_err(format!("invalid whence ({w}, should be 0, 1 or 2)"))),
        };
        let pos = self.reader.seek(to).map_err(|e| seek_error(py, e))?;
        self.at_end.store(false, Ordering::Relaxed);
        Ok(pos)
    }

    /// The read position (the body's end after `seek(0, SEEK_END)`).
    fn tell(&self, py: Python<'_>) -> PyResult<u64> {
        if self.past_end() {
            return self.end_position(py);
        }
        // Where the lines served so far end, without giving the run back (`for line in buf:
        // buf.tell()` stays one cursor hold per run).
        Ok(self.reader.position().saturating_sub(self.unserved(py)))
    }

    /// Offset of `sub` (bytes-like or an int byte) in the unread bytes present now, searched in
    /// `[start, end)` relative to the read position (negative: from the end, as `bytes.find`);
    /// -1 if absent. Never blocks.
    #[pyo3(signature = (sub, start=None, end=None))]
    fn find(&self, py: Python<'_>, sub: &Bound<'_, PyAny>, start: Option<isize>, end: Option<isize>) -> PyResult<i64> {
        self.settle(py)?;
        if self.past_end() {
            return Ok(-1);
        }
        // `None` bounds as in `bytes.find`: the start, the end.
        let start = start.unwrap_or(0);
        let needle: Vec<u8> = if sub.is_instance_of::<PyInt>() {
            let b: u8 = sub.extract().map_err(|_| PyValueError::new_err("byte must be in range(0, 256)"))?;
            vec![b]
        } else {
            ArgBuffer::get(sub, "find()")
                .and_then(|b| b.to_vec())
                .map_err(|_| PyTypeError::new_err("argument should be a bytes-like object or int"))?
        };
        let avail = self.reader.buffered();
        let start = resolve_bound(start, avail);
        let end = end.map(|e| resolve_bound(e, avail));
        let r = &*self.reader;
        let found = if avail > DETACH_COPY {
            self.detached(py, || r.find(&needle, start, end))?
        } else {
            r.find(&needle, start, end)
        };
        Ok(found.map_or(-1, |i| i64::try_from(i).unwrap_or(i64::MAX)))
    }

    /// One zero-copy memoryview per segment of the unread bytes present now.
    fn views<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.settle(py)?;
        if self.past_end() {
            return Ok(PyList::empty(py));
        }
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

    fn __repr__(&self, py: Python<'_>) -> String {
        let r = &*self.reader;
        let ahead = self.unserved(py);
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
            r.position().saturating_sub(ahead),
            r.buffered() as u64 + ahead,
            r.written(),
            cl,
            state,
            if r.is_closed() { " closed" } else { "" }
        )
    }

    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.settle(py)?;
        let r = &*this.reader;
        // A coalescing copy of many megabytes is done with the GIL released; at the end (after
        // `seek(0, SEEK_END)`) there is nothing unread to view.
        let v = if this.past_end() {
            Ok(::bodypipe::View::default())
        } else if r.buffered() > DETACH_COPY {
            this.detached(py, || r.view())?
        } else {
            r.view()
        }
        .map_err(|_| PyMemoryError::new_err("out of memory coalescing the body for a memoryview"))?;
        // The export's owner holds the View, not this object: CPython releases through
        // `view.obj`, so the bytes live exactly as long as the memoryview does.
        // SAFETY: `view` comes from CPython.
        unsafe { export_view(py, v, view, flags) }
    }
}
