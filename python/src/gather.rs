//! Gathering a result whose size is not known when the read starts (ring mode `read()`, and
//! `read(n)` beyond the high-water mark), in memory that follows the bytes that arrived.
//!
//! A declared `Content-Length` is the client's claim: a result is never allocated from it. The
//! bytes are copied, as they arrive, into pieces that grow with what was gathered (4 KiB, then
//! as large as everything gathered so far, up to 8 MiB per piece), so the pieces hold at most
//! twice the bytes received plus 4 KiB. At the end they are copied into one `bytes` of the exact
//! size, each piece freed as soon as it is copied: the peak is the result plus one piece, not
//! twice the body (a `Vec` grown to the body and then copied would be).

use crate::bytes::{uninit_bytes, DETACH_COPY};
use ::bodypipe::View;
use pyo3::exceptions::PyMemoryError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// The first piece; later ones are as large as what was gathered before them.
const FIRST_PIECE: usize = 4 << 10;
/// Pieces stop growing here, so the final copy's peak is the result plus at most this much
/// (plus one step larger than it, in ring mode with a very large high-water mark).
const MAX_PIECE: usize = 8 << 20;

/// Pieces at least this large give their pages back before they are freed (see `release`).
const RELEASE_MIN: usize = 64 << 10;

/// Frees a piece that has been copied, its pages given back to the OS first.
///
/// Freeing alone may not: an allocator keeps freed memory in its heap (glibc returns only the top
/// of the heap, and pieces come from the heap once its mmap threshold has risen past them), and
/// then the final copy's peak would be the pieces plus the result, twice the body.
fn release(piece: Vec<u8>) {
    #[cfg(target_os = "linux")]
    if piece.capacity() >= RELEASE_MIN {
        // SAFETY: sysconf only reads a system constant.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1);
        let at = piece.as_ptr() as usize;
        let (start, end) = (at.div_ceil(page) * page, (at + piece.capacity()) / page * page);
        if end > start {
            // SAFETY: [start, end) is whole pages inside the piece's allocation, which we own and
            // free right below without reading it again; MADV_DONTNEED on this private anonymous
            // memory only drops the pages (a later touch, e.g. by the allocator, sees zeros).
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }
    drop(piece);
}

/// Bytes gathered so far, in order.
#[derive(Default)]
pub(crate) struct Gather {
    pieces: Vec<Vec<u8>>,
    len: usize,
}

impl Gather {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends the bytes of `views` (copied with the GIL released when large). On
    /// `MemoryError` nothing is appended.
    pub(crate) fn push(&mut self, py: Python<'_>, views: &[View]) -> PyResult<()> {
        let n: usize = views.iter().map(|v| v.len()).sum();
        let spare = self.pieces.last().map_or(0, |p| p.capacity() - p.len());
        if spare < n {
            let size = (n - spare).max(self.len.clamp(FIRST_PIECE, MAX_PIECE));
            let mut piece = Vec::new();
            piece.try_reserve_exact(size).map_err(|_| PyMemoryError::new_err("out of memory reading the body"))?;
            self.pieces.push(piece);
        }
        // The bytes go to the spare room of the last full-capacity piece, then to the new one.
        let first = self.pieces.len().saturating_sub(2);
        let pieces = &mut self.pieces[first..];
        let mut copy = move || {
            let mut i = 0;
            for v in views {
                let mut src: &[u8] = v;
                while !src.is_empty() {
                    let p = &mut pieces[i];
                    let take = src.len().min(p.capacity() - p.len());
                    p.extend_from_slice(&src[..take]);
                    src = &src[take..];
                    if p.len() == p.capacity() && i + 1 < pieces.len() {
                        i += 1;
                    }
                }
            }
        };
        if n > DETACH_COPY {
            py.detach(copy);
        } else {
            copy();
        }
        self.len += n;
        Ok(())
    }

    /// Everything gathered as one `bytes`, each piece freed once copied (GIL released when large).
    pub(crate) fn into_bytes(self, py: Python<'_>) -> PyResult<Bound<'_, PyBytes>> {
        let (obj, region) = uninit_bytes(py, self.len)?;
        let large = self.len > DETACH_COPY;
        let pieces = self.pieces;
        let fill = move || {
            let mut at = 0;
            for piece in pieces {
                // SAFETY: `obj` is referenced only by this function until it returns, so
                // nothing else touches its buffer (even with the GIL released); the pieces
                // total `len` bytes and are our own memory, so they do not overlap it.
                unsafe { region.copy_at(at, &piece) };
                at += piece.len();
                release(piece);
            }
        };
        if large {
            py.detach(fill);
        } else {
            fill();
        }
        // SAFETY: created by PyBytes_FromStringAndSize in `uninit_bytes`; every byte is written.
        Ok(unsafe { obj.cast_into_unchecked::<PyBytes>() })
    }

    /// `e` with what was gathered attached as `partial` (consumed bytes are never dropped).
    pub(crate) fn attach(self, py: Python<'_>, e: PyErr) -> PyErr {
        if let Ok(bytes) = self.into_bytes(py) {
            let _ = e.value(py).setattr("partial", bytes);
        }
        e
    }
}

/// `bodypipe._aio._Gather`: a [`Gather`] that an async `aread()` in ring mode fills one
/// non-blocking step at a time (`PyBuffer._try_gather`) between waits on the event loop, so it
/// gathers in the same memory-following pieces as the blocking `read()`, never twice the body.
#[pyclass(name = "_Gather", module = "bodypipe", frozen)]
pub(crate) struct PyGather {
    /// Locked only with the GIL held and never across a GIL release: a step takes the gather
    /// out, fills it (maybe with the GIL released) and puts it back.
    inner: std::sync::Mutex<Gather>,
}

impl PyGather {
    /// Takes the bytes gathered so far out of the object (it is then empty).
    pub(crate) fn take(&self) -> Gather {
        std::mem::take(&mut *self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Puts a gather taken with [`take`](Self::take) back.
    pub(crate) fn put(&self, g: Gather) {
        *self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = g;
    }
}

#[pymethods]
impl PyGather {
    #[new]
    fn new() -> Self {
        Self { inner: std::sync::Mutex::new(Gather::default()) }
    }

    /// Everything gathered, as one `bytes` (the object is empty afterwards).
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.take().into_bytes(py)
    }

    fn __len__(&self) -> usize {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }
}
