//! The read engine of `PyBuffer`: every consuming read (`read`, `read1`, `readinto`, ...) in
//! one contiguous step of the core, waiting with the GIL released; large copies GIL-released too.

use crate::arg::ArgBuffer;
use crate::buffer::PyBuffer;
use crate::bytes::{bytes_from_views, bytes_of, copy_views, new_bytes, DETACH_COPY};
use crate::errors::{body_aborted, read_error, timeout, with_partial};
use crate::gather::Gather;
use crate::wait::{deadline, in_slices};
use ::bodypipe::{ReadError, Ready};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::time::Instant;

/// Reads up to this size are copied out under the cursor lock into a zero-filled `bytes` (the
/// views' bookkeeping costs more than zeroing that much); larger ones go through views into an
/// uninitialised one, since zero-filling 64 KiB costs about half the copy itself (measured: the
/// `read(65536)` rows of `make bench`).
const ZERO_FILL_MAX: usize = 4096;

impl PyBuffer {
    pub(crate) fn op_deadline(&self) -> Option<Instant> {
        deadline(self.reader.read_timeout())
    }

    /// Waits (GIL released, in slices) until `min` bytes are unread or the stream has ended;
    /// returns the unread count. Consumes nothing, so a timeout loses nothing.
    pub(crate) fn wait_for(&self, py: Python<'_>, min: usize, deadline: Option<Instant>) -> PyResult<usize> {
        let r = &*self.reader;
        let avail = r.buffered();
        if avail >= min || r.is_ended() || r.is_closed() {
            return Ok(avail);
        }
        // Counted as a use of the cursor: the read that follows starts where the wait began.
        let got = self.around_detached(py, |py| {
            in_slices(py, deadline, |end| match r.wait(min, Some(end)) {
                Ok(Ready::Data(n)) | Ok(Ready::Ended(n)) => Some(n),
                Err(_) => None,
            })
        })?;
        got.ok_or_else(|| timeout(py, b""))
    }

    /// One consuming step, as one contiguous slice of the stream: `max` bytes (with `whole`; fewer
    /// only once the stream has ended) or at least one (without), into a new `bytes`. `b''` at
    /// EOF; `BodyAborted` once an aborted body is drained; `None` (nothing consumed) while the
    /// bytes are not there, or another reader thread took them first.
    ///
    /// Up to `ZERO_FILL_MAX` the copy is made under the cursor lock into a zero-filled `bytes`;
    /// beyond that the core reserves the range under the lock and hands it over as views, copied
    /// once into the uninitialised result (with the GIL released beyond `DETACH_COPY`, while
    /// other threads read on).
    pub(crate) fn take_bytes<'py>(
        &self,
        py: Python<'py>,
        max: usize,
        whole: bool,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let r = &*self.reader;
        let size = r.buffered().min(max);
        let ended = || r.is_ended() || r.is_closed();
        if size == 0 || size > ZERO_FILL_MAX {
            // (Also for nothing there: the core tells EOF, abort and "not yet" apart.) The views
            // are copied straight into the new `bytes`, GIL-released beyond `DETACH_COPY`.
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
    pub(crate) fn read_exact<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
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
    pub(crate) fn raise_if_drained_abort(&self, py: Python<'_>) -> PyResult<()> {
        let r = &*self.reader;
        match r.abort_reason() {
            // The abort is final: nothing can be written after it, so 0 unread stays 0.
            Some(reason) if r.buffered() == 0 => Err(read_error(py, ReadError::Aborted { reason })),
            _ => Ok(()),
        }
    }

    /// `read()` / `read(-1)`: everything up to EOF, as one contiguous slice.
    pub(crate) fn read_all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
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
    pub(crate) fn read_some<'py>(
        &self,
        py: Python<'py>,
        n: Option<usize>,
        block: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
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
    pub(crate) fn readinto_impl(&self, py: Python<'_>, target: &Bound<'_, PyAny>) -> PyResult<usize> {
        let mut arg = ArgBuffer::get_writable(target, "readinto()")?;
        let len = arg.len();
        if len == 0 {
            return Ok(0);
        }
        let dst = arg.as_mut_slice();
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
        drop(arg);
        Ok(n)
    }
}
