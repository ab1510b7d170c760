//! Python binding of [`bodypipe`]: a file-like `wsgi.input` object (`bodypipe.PyBuffer`) over the
//! core byte pipe, and a `Writer` that a Python server uses to feed it.
//!
//! This crate is a thin translation layer: every buffering decision lives in the core. The binding
//! extracts arguments, releases the GIL for every wait and every large copy, waits in short slices
//! so Ctrl-C is honoured, and maps core errors to Python exceptions.
//!
//! # Use from an embedder (the Erlang NIF)
//!
//! The crate is also an `rlib` so a program that embeds CPython can register the module and hand
//! readers to Python without going through `import` machinery of its own:
//!
//! ```text
//! use bodypipe_python::bodypipe_module;
//! // Before the interpreter starts:
//! pyo3::append_to_inittab!(bodypipe_module);   // or bodypipe_python::append_to_inittab()
//! // Later, with the GIL held, for a body whose Writer the embedder keeps:
//! let (writer, reader) = bodypipe::pipe();
//! let obj: Py<bodypipe_python::PyBuffer> = bodypipe_python::wrap_reader(py, Arc::new(reader))?;
//! ```
//!
//! The shared handle is `Arc<bodypipe::Reader>`: the embedder keeps its own clone (to close it or
//! inspect it) while Python reads through the `PyBuffer`. Build the embedder without
//! `PYO3_BUILD_EXTENSION_MODULE` set (maturin sets it for the wheel) so its cdylib links libpython.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod aio;
mod arg;
#[cfg(feature = "bench")]
mod bench;
mod buffer;
mod bytes;
mod errors;
mod export;
mod gather;
mod lines;
pub mod options;
mod read;
mod readahead;
pub mod slot;
mod stats;
mod wait;
mod writer;

use pyo3::prelude::*;
use pyo3::types::PyTuple;

pub use buffer::PyBuffer;
pub use errors::{BodyAborted, IncompleteBody};
pub use export::SegmentView;
pub use writer::Writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Wraps a shared core reader into a new Python `bodypipe.PyBuffer`.
///
/// The caller keeps any other clones of the `Arc` (e.g. to `close()` it when the client hangs up);
/// the Python object reads through the same cursor.
///
/// Line iteration in Python takes runs of lines (up to 4 KiB) ahead of the cursor and gives back
/// what it did not serve before any other Python call reads (see `readahead.rs`): while a run is
/// out, Rust sees the cursor past it. Rust code that consumes from the same cursor meanwhile makes
/// the run impossible to give back, and the Python calls that would need that raise
/// `RuntimeError` (nothing is lost or repeated); counters, `close` and waits are unaffected.
///
/// The first call imports the `bodypipe` module if nothing has yet, so a `PyBuffer` handed to
/// code that never imports it is still an `io.RawIOBase` (the registration runs at import).
pub fn wrap_reader(py: Python<'_>, reader: Arc<::bodypipe::Reader>) -> PyResult<Py<PyBuffer>> {
    static MODULE_IMPORTED: AtomicBool = AtomicBool::new(false);
    // ORDERING: Relaxed: the flag only saves a `sys.modules` lookup; a thread that sees it late
    // imports again, which is idempotent, and the GIL orders the import itself.
    if !MODULE_IMPORTED.load(Ordering::Relaxed) {
        py.import("bodypipe")?;
        MODULE_IMPORTED.store(true, Ordering::Relaxed);
    }
    Py::new(py, PyBuffer::from_reader(reader))
}

/// Registers the `bodypipe` module as a built-in module of an embedded interpreter.
///
/// Must be called before the interpreter is initialised (it panics otherwise, as pyo3's
/// `append_to_inittab!` does).
pub fn append_to_inittab() {
    pyo3::append_to_inittab!(bodypipe_module);
}

/// `bodypipe.pipe(content_length=None, *, max_buffered=None, max_size=None, segment_size=None)
/// -> (Writer, PyBuffer)`.
///
/// Creates a body: `content_length` makes a fixed-length body (EOF once that many bytes are
/// written), `max_buffered` turns on ring mode (writes wait while that many bytes are unread),
/// `max_size` caps the total body size (default: the core's, 1 GiB), `segment_size` (tuning and
/// tests) fixes the size of every storage segment.
#[pyfunction]
#[pyo3(signature = (content_length=None, *, max_buffered=None, max_size=None, segment_size=None))]
fn pipe<'py>(
    py: Python<'py>,
    content_length: Option<&Bound<'py, PyAny>>,
    max_buffered: Option<&Bound<'py, PyAny>>,
    max_size: Option<&Bound<'py, PyAny>>,
    segment_size: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let opts = options::BodyOptions {
        content_length: errors::opt_size(content_length, "content_length")?,
        max_buffered: errors::opt_size(max_buffered, "max_buffered")?,
        max_size: errors::opt_size(max_size, "max_size")?,
        segment_size: errors::opt_size(segment_size, "segment_size")?,
    };
    let (w, r) = opts.build().map_err(errors::option_error)?;
    let r = Arc::new(r);
    let writer = Bound::new(py, Writer::with_reader(w, Arc::downgrade(&r)))?;
    let reader = Bound::new(py, PyBuffer::from_reader(r))?;
    PyTuple::new(py, [writer.into_any(), reader.into_any()])
}

/// The `bodypipe` Python module. Exported so embedders can `append_to_inittab!` it.
#[pymodule(name = "bodypipe")]
pub fn bodypipe_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(pipe, m)?)?;
    #[cfg(feature = "bench")]
    m.add_function(wrap_pyfunction!(bench::bench_feed, m)?)?;
    m.add_class::<PyBuffer>()?;
    m.add_class::<Writer>()?;
    m.add_class::<stats::Stats>()?;
    m.add_class::<aio::Notifier>()?;
    m.add_class::<aio::Armed>()?;
    errors::register(py, m)?;
    // Code that checks `isinstance(f, io.RawIOBase)` (or `io.IOBase`) accepts a PyBuffer; it is a
    // virtual subclass so none of RawIOBase's Python-level methods shadow ours.
    let io = py.import("io")?;
    io.getattr("RawIOBase")?.call_method1("register", (m.getattr("PyBuffer")?,))?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
