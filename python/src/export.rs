//! The buffer protocol: `memoryview(buf)` and the memoryviews of `views()`. Each export is owned
//! by a `_SegmentView` holding one core [`View`], which keeps its segment alive, so a memoryview
//! stays valid after the `PyBuffer` is gone and while writes go on; nothing is freed on release.

use ::bodypipe::View;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyMemoryView;
use std::ffi::c_int;

/// Exports `owner`'s bytes read-only through `view` (`PyBuffer_FillInfo`: a writable request
/// gets `BufferError`).
///
/// # Safety
/// `view` must be the `Py_buffer` CPython passed to `__getbuffer__`.
unsafe fn export(owner: Bound<'_, SegmentView>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
    let data: &[u8] = &owner.get().view;
    let len = ffi::Py_ssize_t::try_from(data.len())
        .map_err(|_| pyo3::exceptions::PyBufferError::new_err("view too large"))?;
    // SAFETY: `view` comes from CPython (the caller's contract); the bytes are owned by `owner`'s
    // View, and FillInfo takes a new reference to `owner` as `view.obj`, so they outlive the
    // export; the export is read-only, so the cast away from const is never written through.
    let rc = unsafe { ffi::PyBuffer_FillInfo(view, owner.as_ptr(), data.as_ptr().cast_mut().cast(), len, 1, flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(PyErr::fetch(owner.py()))
    }
}

/// Exports `v` through `view`, owned by a new `_SegmentView` (see the module docs).
///
/// # Safety
/// As [`export`].
pub(crate) unsafe fn export_view(py: Python<'_>, v: View, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
    let owner = Bound::new(py, SegmentView { view: v })?;
    // SAFETY: forwarded from the caller.
    unsafe { export(owner, view, flags) }
}

/// The exporter behind each memoryview of a body: owns one core [`View`], which keeps its
/// segment alive, so the memoryview stays valid after the `PyBuffer` is gone and while writes go on.
#[pyclass(name = "_SegmentView", module = "bodypipe", frozen)]
pub struct SegmentView {
    view: View,
}

impl SegmentView {
    pub(crate) fn memoryview(py: Python<'_>, view: View) -> PyResult<Bound<'_, PyMemoryView>> {
        let owner = Bound::new(py, SegmentView { view })?;
        PyMemoryView::from(owner.as_any())
    }
}

#[pymethods]
impl SegmentView {
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        // SAFETY: `view` comes from CPython.
        unsafe { export(slf, view, flags) }
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        // Nothing to free: the format string is static and the View is dropped with `self`.
    }

    fn __len__(&self) -> usize {
        self.view.len()
    }
}
