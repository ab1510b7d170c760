//! Building `bytes` results: allocated once at their final size, filled in place, with every
//! large copy (and zero-fill) made with the GIL released.

use ::bodypipe::View;
use pyo3::exceptions::PyMemoryError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Copies of more than this many bytes are done with the GIL released. Releasing and taking back
/// an uncontended GIL costs well under a microsecond, a 32 KiB copy a few: below this the release
/// is not worth it. Above it, it is what lets a writer thread's copy into the pipe and a reader
/// thread's copy out of it run at once: with both held under the GIL (at 256 KiB, the old value)
/// a Python writer and reader of 64 KiB chunks took turns, 16 writes then 16 reads around a full
/// 1 MiB ring, every copy serialised (0.40x a finished `BytesIO`; 0.63x with this value).
pub(crate) const DETACH_COPY: usize = 32 * 1024;

/// A region of a `bytes` object under construction, handed to a GIL-released closure.
#[derive(Clone, Copy)]
pub(crate) struct RawRegion(*mut u8, usize);

// SAFETY: the region belongs to a `bytes` object that no other code can reach yet (see
// `new_bytes`), so writing it from another thread while we wait is not a data race.
unsafe impl Send for RawRegion {}

impl RawRegion {
    /// Zero-fills the region.
    ///
    /// # Safety
    /// The region must be valid for writes of `self.1` bytes and not accessed concurrently.
    pub(crate) unsafe fn zero(self) {
        // SAFETY: per the contract above.
        unsafe { std::ptr::write_bytes(self.0, 0, self.1) }
    }

    /// Copies `part` to offset `at` of the region.
    ///
    /// # Safety
    /// The region must be valid for writes of `self.1` bytes and not accessed concurrently;
    /// `at + part.len() <= self.1`, and `part` must not overlap the region.
    pub(crate) unsafe fn copy_at(self, at: usize, part: &[u8]) {
        debug_assert!(at + part.len() <= self.1);
        // SAFETY: per the contract above.
        unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), self.0.add(at), part.len()) };
    }

    /// Copies `parts` one after the other to the start of the region; returns the count.
    ///
    /// # Safety
    /// The region must be valid for writes of `self.1` bytes and not accessed concurrently, and
    /// the parts must total at most `self.1` bytes and not overlap it.
    pub(crate) unsafe fn copy_parts(self, parts: &[&[u8]]) -> usize {
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
pub(crate) fn uninit_bytes(py: Python<'_>, len: usize) -> PyResult<(Bound<'_, PyAny>, RawRegion)> {
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
pub(crate) fn join_bytes<'py>(py: Python<'py>, parts: &[&[u8]]) -> PyResult<Bound<'py, PyBytes>> {
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
pub(crate) fn bytes_of<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    if data.len() > DETACH_COPY {
        join_bytes(py, &[data])
    } else {
        Ok(PyBytes::new(py, data))
    }
}

/// Like `PyBytes::new_with`: allocates a `bytes` of `len` and lets `init` fill it in place (the
/// result object is the only buffer), but zero-fills a large one with the GIL released.
pub(crate) fn new_bytes<'py, F>(py: Python<'py>, len: usize, init: F) -> PyResult<Bound<'py, PyBytes>>
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

/// One `bytes` holding the bytes of `views` (a range the core reserved for this call), copied
/// once, with the GIL released when large. `b''` for no views.
pub(crate) fn bytes_from_views<'py>(py: Python<'py>, views: &[View]) -> PyResult<Bound<'py, PyBytes>> {
    let parts: Vec<&[u8]> = views.iter().map(|v| &**v).collect();
    join_bytes(py, &parts)
}

/// Copies `views` to the start of `dst` (which holds at least their total), with the GIL
/// released when large; returns the count.
pub(crate) fn copy_views(py: Python<'_>, views: &[View], dst: &mut [u8]) -> usize {
    let total: usize = views.iter().map(|v| v.len()).sum();
    let mut copy = move || {
        let mut at = 0;
        for v in views {
            dst[at..at + v.len()].copy_from_slice(v);
            at += v.len();
        }
        at
    };
    if total > DETACH_COPY {
        py.detach(copy)
    } else {
        copy()
    }
}
