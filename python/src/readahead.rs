//! Line read-ahead: iteration (and `readline()` from its eighth call in a row) takes a run of
//! complete lines in one hold of the core cursor (`Reader::take_lines`) and hands them out one
//! per call without touching the cursor again (no lock, no atomic read-modify-write per line: the
//! cursor lock was the largest cost of a short line after the `bytes` itself).
//!
//! Everything else must still see the body as if the lines had been read one by one, so:
//! - the run belongs to the core reader, not to one `PyBuffer`: it lives in one table for the
//!   process, keyed by the reader, because several `PyBuffer`s may wrap one reader (the NIF wraps
//!   it anew each time a `py_buffer` is passed to Python), and any of them serves its lines;
//! - every method that touches the cursor other than the line reads first [`settle`]s: gives the
//!   unserved rest of its reader's run back to the core (`Reader::give_back`, a seek back);
//! - no run is taken while a method of any wrapper of that reader uses the cursor with the GIL
//!   released ([`PyBuffer::detached`]): such a call started from the position before the run.
//!
//! The table is guarded by the GIL: every access holds a `Python` token and calls nothing that
//! could run Python code. Free-threaded builds (no GIL) take no runs at all. Each `PyBuffer`
//! remembers where its reader's run was last found ([`Hint`]), so finding it stays one check
//! however many bodies are being iterated at once (a server iterating a thousand request bodies
//! in turn was 136 ns a line slower with a search of the table: 292 against 156).
//!
//! Rust code holding another clone of the reader (see [`crate::wrap_reader`]) sees the cursor
//! past a run while one is out; if it consumes from the cursor meanwhile, the run can no longer
//! be given back, and the methods that need that raise `RuntimeError` rather than lose or repeat
//! bytes (the lines of the run are still served by the line reads).

use crate::buffer::PyBuffer;
use ::bodypipe::{LineRun, Reader};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Where in the table a reader's run was last found: tried first, checked, and updated when
/// the run has moved (a `swap_remove` of another run) or was not there.
pub(crate) type Hint = AtomicUsize;

/// The most bytes of lines one run takes: large enough that taking a run (the cursor lock, and
/// `memrchr` finding the run's last line, whose cache misses the per-line search then does not
/// take) vanishes per line, small enough that the run stays in L1 and one given back after a few
/// lines scanned little in vain. Measured on 60-byte lines (`make bench`'s line row): 4 KiB
/// 0.79-0.82x `BytesIO`, 16 KiB 0.83-0.86x, 64 KiB no better.
const RUN_MAX: usize = 16384;

/// The `readline()` calls in a row (with no other call that uses the cursor between them) after
/// which `readline` takes runs as iteration does: a `readline()` loop is then nearly as cheap
/// as iteration, while a parser that reads a few header lines and then the rest with `read(n)`
/// takes no run that its next read would give back. Measured: a `readline()` loop over 60-byte
/// lines 0.78x -> 0.92-1.0x BytesIO; a multipart-like body (4 header lines, then 64 KiB in 8 KiB
/// reads, per part) 5% slower with a streak of 3, unchanged with 8.
const READLINE_STREAK: u32 = 8;

/// A run of lines taken from `reader`, of which the first `used` bytes have been served.
struct Run {
    reader: Arc<Reader>,
    run: LineRun,
    used: usize,
}

#[derive(Default)]
struct Table {
    runs: Vec<Run>,
    /// Readers (by address) with calls using the cursor with the GIL released, and how many.
    detached: Vec<(usize, usize)>,
}

impl Table {
    fn run_of(&self, reader: &Arc<Reader>, hint: Option<&Hint>) -> Option<usize> {
        // ORDERING: Relaxed: the hint is only ever touched with the GIL held, like the table,
        // and is checked before use; a stale value costs a search, never a wrong answer.
        let h = hint.map_or(usize::MAX, |h| h.load(Ordering::Relaxed));
        if self.runs.get(h).is_some_and(|r| Arc::ptr_eq(&r.reader, reader)) {
            return Some(h);
        }
        let found = self.runs.iter().position(|r| Arc::ptr_eq(&r.reader, reader))?;
        if let Some(h) = hint {
            // ORDERING: Relaxed: as above.
            h.store(found, Ordering::Relaxed);
        }
        Some(found)
    }

    fn is_detached(&self, reader: &Arc<Reader>) -> bool {
        let key = Arc::as_ptr(reader) as usize;
        self.detached.iter().any(|&(k, n)| k == key && n > 0)
    }
}

#[cfg(not(Py_GIL_DISABLED))]
mod guard {
    use super::Table;
    use pyo3::Python;
    use std::cell::RefCell;

    /// The table, shared by every thread but only ever touched with the GIL held.
    struct GilGuarded(RefCell<Table>);

    // SAFETY: the cell is reached only through `with_table`, which requires a `Python` token, so
    // only the one thread holding the GIL touches it, and the closures it runs never release the
    // GIL or run Python code (which could let another thread in); `RefCell` catches re-entry.
    unsafe impl Sync for GilGuarded {}

    static TABLE: GilGuarded = GilGuarded(RefCell::new(Table { runs: Vec::new(), detached: Vec::new() }));

    /// Runs `f` on the table; `None` only on re-entry (which nothing in this module does).
    #[inline]
    pub(super) fn with_table<R>(_py: Python<'_>, f: impl FnOnce(&mut Table) -> R) -> Option<R> {
        let mut t = TABLE.0.try_borrow_mut().ok()?;
        Some(f(&mut t))
    }

    /// Runs may be taken.
    pub(super) const ENABLED: bool = true;
}

#[cfg(Py_GIL_DISABLED)]
mod guard {
    use super::Table;
    use pyo3::Python;

    /// Without a GIL the table would need a lock per line, which is the cost runs avoid: no run
    /// is ever taken, so the table stays empty and every line read goes to the core.
    pub(super) fn with_table<R>(_py: Python<'_>, _f: impl FnOnce(&mut Table) -> R) -> Option<R> {
        None
    }

    pub(super) const ENABLED: bool = false;
}

use guard::{with_table, ENABLED};

/// The length of the line at the start of `rest` (a run's unserved part, which ends in `\n`),
/// at most `limit` bytes.
#[inline]
fn line_len(rest: &[u8], limit: Option<usize>) -> usize {
    let reach = limit.map_or(rest.len(), |l| l.min(rest.len()));
    // glibc's memchr, not the `memchr` crate's: for a line of tens of bytes its setup is what
    // costs, and glibc's is the cheaper (measured: about 3 ns a line less).
    // SAFETY: `rest[..reach]` is valid for `reach` bytes; memchr reads no further.
    let at = unsafe { libc::memchr(rest.as_ptr().cast(), i32::from(b'\n'), reach) };
    if at.is_null() {
        reach
    } else {
        // Inside `rest[..reach]`, as memchr returns a pointer into what it searched.
        at as usize - rest.as_ptr() as usize + 1
    }
}

/// The bytes of `reader`'s run not served yet (counted as read by the core, not by Python).
/// `hint` is the asking wrapper's, if a wrapper asks.
pub(crate) fn unserved(py: Python<'_>, reader: &Arc<Reader>, hint: Option<&Hint>) -> u64 {
    if !ENABLED {
        return 0;
    }
    with_table(py, |t| t.run_of(reader, hint).map_or(0, |i| (t.runs[i].run.len() - t.runs[i].used) as u64)).unwrap_or(0)
}

/// Gives the unserved rest of `reader`'s run, if it has one, back to the core, so the cursor is
/// where the lines read so far end.
fn settle(py: Python<'_>, reader: &Arc<Reader>, hint: Option<&Hint>) -> PyResult<()> {
    if !ENABLED {
        return Ok(());
    }
    let given = with_table(py, |t| {
        let Some(i) = t.run_of(reader, hint) else { return true };
        let r = &t.runs[i];
        if !r.reader.give_back(&r.run, r.used) {
            return false;
        }
        t.runs.swap_remove(i);
        true
    });
    match given {
        Some(true) => Ok(()),
        _ => Err(PyRuntimeError::new_err(
            "bodypipe: lines read ahead by iteration cannot be given back: the reader's cursor was moved \
             by a reader outside Python meanwhile (read the remaining lines first)",
        )),
    }
}

/// `settle` for a wrapper that goes away: if the run cannot be given back, it is dropped all
/// the same, so it does not keep the reader alive (its lines were consumed by the core already).
pub(crate) fn release(py: Python<'_>, reader: &Arc<Reader>, hint: &Hint) {
    if !ENABLED || settle(py, reader, Some(hint)).is_ok() {
        return;
    }
    with_table(py, |t| {
        if let Some(i) = t.run_of(reader, Some(hint)) {
            t.runs.swap_remove(i);
        }
    });
}

impl PyBuffer {
    /// The next line (at most `limit` bytes) from this reader's run, if it has one.
    #[inline]
    pub(crate) fn line_from_run<'py>(&self, py: Python<'py>, limit: Option<usize>) -> Option<Bound<'py, PyBytes>> {
        if !ENABLED {
            return None;
        }
        with_table(py, |t| {
            let i = t.run_of(&self.reader, Some(&self.run_hint))?;
            let r = &mut t.runs[i];
            let rest = &r.run[r.used..];
            let n = line_len(rest, limit);
            // No Python code runs in here: `bytes` are not tracked by the garbage collector.
            let line = PyBytes::new(py, &rest[..n]);
            r.used += n;
            if r.used == r.run.len() {
                // All served: the core cursor is already past it.
                t.runs.swap_remove(i);
            }
            Some(line)
        })
        .flatten()
    }

    /// Takes a run of lines for this reader if none is out and no call is using its cursor with
    /// the GIL released; true if one was taken.
    pub(crate) fn take_run(&self, py: Python<'_>) -> bool {
        if !ENABLED {
            return false;
        }
        with_table(py, |t| {
            if t.is_detached(&self.reader) || t.run_of(&self.reader, Some(&self.run_hint)).is_some() {
                return false;
            }
            match self.reader.take_lines(b'\n', RUN_MAX) {
                Some(run) => {
                    // ORDERING: Relaxed: see `Table::run_of`.
                    self.run_hint.store(t.runs.len(), Ordering::Relaxed);
                    t.runs.push(Run { reader: self.reader.clone(), run, used: 0 });
                    // ORDERING: Relaxed: read by this object's drop (see `PyBuffer::took_run`).
                    self.took_run.store(true, Ordering::Relaxed);
                    true
                }
                None => false,
            }
        })
        .unwrap_or(false)
    }

    /// Runs `f` (which uses the cursor) with the GIL released, after settling this reader's run,
    /// and with no new run taken on it until `f` is done.
    pub(crate) fn detached<T: Send>(&self, py: Python<'_>, f: impl FnOnce() -> T + Send) -> PyResult<T> {
        self.around_detached(py, |py| Ok(py.detach(f)))
    }

    /// `body` (which releases the GIL around uses of the cursor, perhaps several times) with this
    /// reader's run settled first and no new run taken on it until `body` returns.
    pub(crate) fn around_detached<T>(
        &self,
        py: Python<'_>,
        body: impl FnOnce(Python<'_>) -> PyResult<T>,
    ) -> PyResult<T> {
        self.settle(py)?;
        if !ENABLED {
            return body(py);
        }
        let key = Arc::as_ptr(&self.reader) as usize;
        with_table(py, |t| match t.detached.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => t.detached.push((key, 1)),
        });
        let out = body(py);
        with_table(py, |t| {
            if let Some(i) = t.detached.iter().position(|(k, _)| *k == key) {
                t.detached[i].1 -= 1;
                if t.detached[i].1 == 0 {
                    t.detached.swap_remove(i);
                }
            }
        });
        out
    }

    /// A line for `readline(limit)` from this reader's run, taking a run first if this call
    /// ends a streak of [`READLINE_STREAK`] readlines; `None`: read it from the cursor.
    pub(crate) fn readline_from_run<'py>(&self, py: Python<'py>, limit: Option<usize>) -> Option<Bound<'py, PyBytes>> {
        if let Some(line) = self.line_from_run(py, limit) {
            return Some(line);
        }
        // ORDERING: Relaxed: a count of this object's own calls, kept with the GIL held (no
        // read-modify-write needed); it publishes nothing, and a stale value only moves when a
        // run is taken.
        let streak = self.readline_streak.load(Ordering::Relaxed).saturating_add(1);
        if streak < READLINE_STREAK {
            self.readline_streak.store(streak, Ordering::Relaxed);
            return None;
        }
        if self.take_run(py) {
            self.readline_streak.store(streak, Ordering::Relaxed);
            return self.line_from_run(py, limit);
        }
        // No complete line within reach (lines longer than a run, or none there yet): try again
        // only after another streak, so long lines do not pay the search for a run every time.
        self.readline_streak.store(0, Ordering::Relaxed);
        None
    }

    /// Settles this object's reader before a call that uses the cursor (see the module docs),
    /// which also ends a streak of `readline()` calls.
    #[inline]
    pub(crate) fn settle(&self, py: Python<'_>) -> PyResult<()> {
        // ORDERING: Relaxed: see `readline_from_run`.
        self.readline_streak.store(0, Ordering::Relaxed);
        settle(py, &self.reader, Some(&self.run_hint))
    }

    /// The bytes of this object's reader's run not served yet (see [`unserved`]).
    #[inline]
    pub(crate) fn unserved(&self, py: Python<'_>) -> u64 {
        unserved(py, &self.reader, Some(&self.run_hint))
    }
}
