//! `bodypipe.Stats`: a snapshot of a body's counters, the ones `py_buffer:info/1` gives Erlang.

use pyo3::prelude::*;

/// A snapshot of a body's counters, from `PyBuffer.stats()`. Lines that
/// iteration took ahead but has not handed out count as unread, as for `tell()`; the fields mean
/// what those of the core's `bodypipe::Stats` do.
#[pyclass(name = "Stats", module = "bodypipe", frozen, get_all, eq)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Bytes written so far.
    written: u64,
    /// Bytes read so far (the read position).
    position: u64,
    /// Bytes written and not read.
    buffered: u64,
    /// The declared length, or None.
    content_length: Option<u64>,
    /// The high-water mark (ring mode), or None.
    max_buffered: Option<u64>,
    /// The body ended cleanly (`close()`, or the declared length reached).
    eof: bool,
    /// The body was aborted.
    aborted: bool,
    /// The reader side was closed.
    reader_closed: bool,
    /// Wake syscalls made for parked readers.
    reader_wakes: u64,
    /// Wake syscalls made for a writer parked for room.
    writer_wakes: u64,
    /// A blocking read is parked (or about to park) waiting for bytes.
    reader_waiting: bool,
    /// The writer is parked (or about to park) waiting for room.
    writer_waiting: bool,
}

impl Stats {
    /// The core's snapshot, with `ahead` bytes of lines taken ahead counted as unread.
    pub(crate) fn new(s: ::bodypipe::Stats, ahead: u64) -> Self {
        Self {
            written: s.written,
            position: s.position.saturating_sub(ahead),
            buffered: s.buffered + ahead,
            content_length: s.content_length,
            max_buffered: s.max_buffered,
            eof: s.eof,
            aborted: s.aborted,
            reader_closed: s.reader_closed,
            reader_wakes: s.reader_wakes,
            writer_wakes: s.writer_wakes,
            reader_waiting: s.reader_waiting,
            writer_waiting: s.writer_waiting,
        }
    }
}

#[pymethods]
impl Stats {
    fn __repr__(&self) -> String {
        let opt = |v: Option<u64>| v.map_or_else(|| "None".to_owned(), |v| v.to_string());
        format!(
            "bodypipe.Stats(written={}, position={}, buffered={}, content_length={}, max_buffered={}, eof={}, \
             aborted={}, reader_closed={}, reader_wakes={}, writer_wakes={}, reader_waiting={}, writer_waiting={})",
            self.written,
            self.position,
            self.buffered,
            opt(self.content_length),
            opt(self.max_buffered),
            py_bool(self.eof),
            py_bool(self.aborted),
            py_bool(self.reader_closed),
            self.reader_wakes,
            self.writer_wakes,
            py_bool(self.reader_waiting),
            py_bool(self.writer_waiting),
        )
    }
}

/// A bool as Python spells it.
fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}
