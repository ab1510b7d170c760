//! Line iteration takes runs of lines ahead of the core cursor (src/readahead.rs): several
//! `PyBuffer` wrappers of one core reader, as the Erlang NIF makes them, must see the lines in
//! order, and Rust must find the cursor where the lines read so far end once the wrappers are
//! gone. Its own process (a file of its own: the embedded interpreter starts once per process).
//! Runs with `cargo test -p bodypipe-python`.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::Arc;

mod common;

/// Line iteration through one wrapper takes a run of lines ahead of the core cursor: the other
/// wrappers of the reader serve the same run in order, give it back before any other read, and
/// the core (as Rust sees it once the wrapper is gone) is where the lines read so far end.
#[test]
fn a_run_of_lines_taken_through_one_wrapper_is_seen_by_the_others() {
    common::start_embedded();

    let (mut w, r) = bodypipe::pipe();
    let data: Vec<u8> = (0..100).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
    w.write(&data).expect("write");
    w.close().expect("close");
    let reader = Arc::new(r);
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
}
