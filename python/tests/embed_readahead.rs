//! Line iteration takes runs of lines ahead of the core cursor (src/readahead.rs): several
//! `PyBuffer` wrappers of one core reader, as the Erlang NIF makes them, must see the lines in
//! order, and Rust must find the cursor where the lines read so far end once the wrappers are
//! gone. Its own process (a file of its own: the embedded interpreter starts once per process).
//! Runs with `cargo test -p bodypipe-python`.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::Arc;

mod common;

/// A finished body of `n` lines `line 0\n`, `line 1\n`, ..., as a shared core reader.
fn finished_lines(n: usize) -> Arc<bodypipe::Reader> {
    let (mut w, r) = bodypipe::pipe();
    let data: Vec<u8> = (0..n).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
    w.write(&data).expect("write");
    w.close().expect("close");
    Arc::new(r)
}

/// Line iteration through one wrapper takes a run of lines ahead of the core cursor: the other
/// wrappers of the reader serve the same run in order, give it back before any other read, and
/// the core (as Rust sees it once the wrapper is gone) is where the lines read so far end.
#[test]
fn a_run_of_lines_taken_through_one_wrapper_is_seen_by_the_others() {
    common::start_embedded();

    let reader = finished_lines(100);
    Python::attach(|py| -> PyResult<()> {
        let ns = PyDict::new(py);
        ns.set_item("a", bodypipe_python::wrap_reader(py, Arc::clone(&reader))?)?;
        ns.set_item("b", bodypipe_python::wrap_reader(py, Arc::clone(&reader))?)?;
        py.run(
            c"
assert next(a) == b'line 0\\n'
assert a.tell() == b.tell() == 7
assert b.readline() == b'line 1\\n', 'served from the run a took'
assert next(b) == b'line 2\\n'
assert b.read(7) == b'line 3\\n', 'the run given back first'
assert next(a) == b'line 4\\n'
assert b.readable_amount() == a.readable_amount()
assert a.tell() == b.tell() == 35
del a, b
",
            Some(&ns),
            None,
        )
    })
    .expect("lines in order through both wrappers");
    // The wrappers are gone: the run was given back, so the core cursor is after line 4.
    assert_eq!(reader.position(), 35);
    a_run_overtaken_by_a_rust_read_is_not_lost();
}

/// Rust consuming from the cursor while a run is out: the run cannot be given back, so a Python
/// call that needs that raises `RuntimeError` instead of losing or repeating bytes, and the
/// run's lines are still served, in order, by the line reads. (Called from the test above: one
/// interpreter per process.)
fn a_run_overtaken_by_a_rust_read_is_not_lost() {
    // More than one run: the cursor stops at the run's end, with lines after it.
    let reader = finished_lines(2000);
    Python::attach(|py| -> PyResult<()> {
        let ns = PyDict::new(py);
        ns.set_item("a", bodypipe_python::wrap_reader(py, Arc::clone(&reader))?)?;
        py.run(c"assert next(a) == b'line 0\\n'", Some(&ns), None)?;
        let run_end = reader.position();
        assert!(run_end > 7, "a run was taken ahead");
        assert_eq!(reader.skip(1), 1, "Rust consumes one byte past the run");
        py.run(
            c"
try:
    a.read(1)
except RuntimeError as e:
    assert 'given back' in str(e), e
else:
    raise AssertionError('read() after the cursor moved under the run')
assert next(a) == b'line 1\\n', 'the run is still served'
",
            Some(&ns),
            None,
        )
    })
    .expect("the overtaken run is kept");
}
