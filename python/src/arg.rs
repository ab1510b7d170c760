//! Bytes-like arguments: the one place that borrows a caller's buffer (`bytes`, `bytearray`,
//! `memoryview`, `array`, numpy, ...) for `write`, `readinto`, `from_bytes` and `find`.

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyBufferError, PyMemoryError, PyTypeError};
use pyo3::prelude::*;

/// A C-contiguous buffer export held for as long as this value lives, so the memory stays valid
/// and unresized (a `bytearray` refuses to resize while exported).
pub(crate) struct ArgBuffer {
    buf: PyUntypedBuffer,
}

impl ArgBuffer {
    /// Borrows `obj` read-only. `what` names the call in the error (`"write()"`).
    pub(crate) fn get(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Self> {
        let buf = PyUntypedBuffer::get(obj)?;
        if !buf.is_c_contiguous() {
            return Err(PyBufferError::new_err(format!("{what} argument must be C-contiguous")));
        }
        Ok(Self { buf })
    }

    /// Borrows `obj` for writing into (`readinto`): a read-only buffer is a `TypeError`, as in
    /// `io.RawIOBase.readinto`.
    pub(crate) fn get_writable(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Self> {
        let this = Self::get(obj, what)?;
        if this.buf.readonly() {
            return Err(PyTypeError::new_err(format!("{what} argument must be a writable bytes-like object")));
        }
        Ok(this)
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len_bytes()
    }

    /// The bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: the export is held by `self.buf` for the lifetime of the borrow; it is
        // C-contiguous (checked in `get`) and `len_bytes` long.
        unsafe { std::slice::from_raw_parts(self.buf.buf_ptr().cast::<u8>(), self.buf.len_bytes()) }
    }

    /// The bytes, writable. Only for a buffer from [`get_writable`](Self::get_writable).
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        debug_assert!(!self.buf.readonly());
        // SAFETY: as in `as_slice`, and the export is writable (checked in `get_writable`); the
        // unique borrow of `self` makes this the only slice of it we hand out.
        unsafe { std::slice::from_raw_parts_mut(self.buf.buf_ptr().cast::<u8>(), self.buf.len_bytes()) }
    }

    /// A copy of the bytes, with a `MemoryError` (not an abort) when there is no memory for it.
    pub(crate) fn to_vec(&self) -> PyResult<Vec<u8>> {
        let bytes = self.as_slice();
        let mut out = Vec::new();
        out.try_reserve_exact(bytes.len()).map_err(|_| PyMemoryError::new_err("out of memory copying the argument"))?;
        out.extend_from_slice(bytes);
        Ok(out)
    }
}
