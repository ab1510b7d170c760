//! Python exception types and the mapping from core errors to them.

use pyo3::create_exception;
use pyo3::exceptions::{
    PyBlockingIOError, PyBrokenPipeError, PyConnectionAbortedError, PyMemoryError, PyOSError, PyOverflowError,
    PyTimeoutError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt};

create_exception!(
    bodypipe,
    BodyAborted,
    PyConnectionAbortedError,
    "The body was aborted by its producer (client disconnect, upstream error).\n\n\
     Raised by reads once every byte written before the abort has been read. `str(exc)` and\n\
     `exc.reason` hold the reason the producer gave; `exc.partial` the bytes the raising call\n\
     had consumed (b'' when none)."
);

create_exception!(
    bodypipe,
    IncompleteBody,
    pyo3::exceptions::PyValueError,
    "Raised by `Writer.close()` when fewer bytes were written than the declared `content_length`.\n\n\
     The body is ended all the same, as an abort: readers get the bytes written, then\n\
     `BodyAborted('incomplete body')`. `exc.written` and `exc.expected` hold the two counts."
);

/// `IncompleteBody` for a close after `written` of `expected` declared bytes.
pub(crate) fn incomplete_body(py: Python<'_>, written: u64, expected: u64) -> PyErr {
    let err = IncompleteBody::new_err(format!("body closed after {written} of its {expected} declared bytes"));
    let _ = err.value(py).setattr("written", written);
    let _ = err.value(py).setattr("expected", expected);
    err
}

/// Adds the exception types to the module and gives `BodyAborted` its `reason` property and
/// `partial` default.
pub(crate) fn register(py: Python<'_>, m: &Bound<'_, PyModule>) -> PyResult<()> {
    let ty = py.get_type::<BodyAborted>();
    // A property (rather than an attribute set where we raise) so that `BodyAborted("x").reason`
    // also works when Python code raises it, e.g. a server re-raising a disconnect.
    let ns = pyo3::types::PyDict::new(py);
    py.run(
        c"def reason(self):\n    \"\"\"The reason the producer gave for aborting the body.\"\"\"\n    return str(self.args[0]) if self.args else ''\nreason = property(reason)\n",
        Some(&ns),
        None,
    )?;
    ty.setattr("reason", ns.get_item("reason")?)?;
    // The stub promises `partial: bytes` on every BodyAborted. Reads attach the bytes they
    // consumed (or b''); this class default covers one raised by Python code or an embedder.
    ty.setattr("partial", PyBytes::new(py, b""))?;
    m.add("BodyAborted", ty)?;
    let ty = py.get_type::<IncompleteBody>();
    // Defaults for one raised by Python code; `Writer.close` sets both on the instance.
    ty.setattr("written", 0)?;
    ty.setattr("expected", 0)?;
    m.add("IncompleteBody", ty)?;
    Ok(())
}

/// `BodyAborted(reason)`.
pub(crate) fn body_aborted(reason: &str) -> PyErr {
    BodyAborted::new_err(reason.to_owned())
}

/// A `TimeoutError` whose `partial` attribute holds the bytes the timed-out call had already
/// consumed (`b''` when it consumed none), so a timeout never loses data.
pub(crate) fn timeout(py: Python<'_>, partial: &[u8]) -> PyErr {
    let err = PyTimeoutError::new_err("timed out waiting for body data");
    // Attach `partial`; if even that fails (out of memory) the plain TimeoutError still goes out.
    let _ = err.value(py).setattr("partial", PyBytes::new(py, partial));
    err
}

/// `io.UnsupportedOperation(msg)`.
pub(crate) fn unsupported(py: Python<'_>, msg: &str) -> PyErr {
    match py.import("io").and_then(|io| io.getattr("UnsupportedOperation")).and_then(|ty| ty.call1((msg,))) {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

/// Maps an error from a core read to Python.
pub(crate) fn read_error(py: Python<'_>, e: ::bodypipe::ReadError) -> PyErr {
    use ::bodypipe::ReadError as R;
    match e {
        R::Aborted { reason } => {
            let err = body_aborted(&reason);
            // No bytes are known here: `partial` is b'' (as in `timeout`); a caller that consumed
            // some replaces it. Set on the instance so it never depends on the class default.
            let _ = err.value(py).setattr("partial", PyBytes::new(py, b""));
            err
        }
        R::TimedOut => timeout(py, b""),
        R::WouldBlock => PyBlockingIOError::new_err(e.to_string()),
        R::OutOfMemory => PyMemoryError::new_err(e.to_string()),
        // The enum is non-exhaustive: a future read failure is still an I/O failure.
        _ => PyOSError::new_err(e.to_string()),
    }
}

/// Maps a refused seek: `ValueError` for a negative position, `io.UnsupportedOperation` for the
/// rest.
pub(crate) fn seek_error(py: Python<'_>, e: ::bodypipe::SeekError) -> PyErr {
    use ::bodypipe::SeekError as S;
    match e {
        // As `io`: a negative position is a ValueError.
        S::BeforeStart => PyValueError::new_err(e.to_string()),
        // Places a pipe cannot seek to (yet, or any more): `io.UnsupportedOperation`, an
        // `OSError` and a `ValueError`, which clients sizing a body take as "stream it".
        _ => unsupported(py, &e.to_string()),
    }
}

/// Maps a refused write to Python. `Full` is handled by the callers (they wait or return False),
/// so here it can only mean a caller bug; it maps to `BlockingIOError` like a full non-blocking pipe.
pub(crate) fn write_error(e: ::bodypipe::WriteError) -> PyErr {
    use ::bodypipe::WriteError as W;
    match e {
        W::Closed => PyBrokenPipeError::new_err(e.to_string()),
        W::ExceedsContentLength | W::TooLarge => PyValueError::new_err(e.to_string()),
        W::OutOfMemory => PyMemoryError::new_err(e.to_string()),
        W::Full => PyBlockingIOError::new_err(e.to_string()),
        // The enum is non-exhaustive: a future refusal is still a refusal of bad input.
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// Maps a refused configuration to `ValueError`.
pub(crate) fn build_error(e: ::bodypipe::BuildError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Parses an optional non-negative integer argument (see [`crate::options`]): `None` is unset;
/// a negative value is a `ValueError`, a non-integer a `TypeError`; any size above `u64` is
/// legal (a limit no body reaches).
pub(crate) fn opt_size(obj: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<crate::options::Size> {
    use crate::options::Size;
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Size::Unset);
    };
    if !obj.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an integer or None, not '{}'",
            obj.get_type().name()?
        )));
    }
    if let Ok(n) = obj.extract::<u64>() {
        return Ok(Size::Fits(n));
    }
    match obj.extract::<i64>() {
        Ok(_) => Err(PyValueError::new_err(format!("{name} must be non-negative"))),
        Err(_) => Ok(Size::AboveU64),
    }
}

/// Maps options no body can have: `ValueError`, as `bodypipe.pipe` always raised.
pub(crate) fn option_error(e: crate::options::OptionError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Parses an io-style size: `None` or any negative integer means "all" (`None`); objects with
/// `__index__` are accepted as `io` does; anything else is a `TypeError`.
pub(crate) fn size_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    let n: isize = obj.extract::<isize>().map_err(|e| {
        if e.is_instance_of::<PyOverflowError>(obj.py()) {
            e
        } else {
            let ty = obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
            PyTypeError::new_err(format!("argument should be integer or None, not '{ty}'"))
        }
    })?;
    Ok(usize::try_from(n).ok())
}

/// Attaches the bytes consumed before an error as `exc.partial` (`b''` when there are none, so
/// `exc.partial` always exists, as `BodyAborted.partial` and `TimeoutError.partial` promise).
pub(crate) fn with_partial(py: Python<'_>, e: PyErr, partial: &[u8]) -> PyErr {
    // If even that fails (out of memory), the original error still goes out.
    if let Ok(bytes) = crate::bytes::bytes_of(py, partial) {
        let _ = e.value(py).setattr("partial", bytes);
    }
    e
}
