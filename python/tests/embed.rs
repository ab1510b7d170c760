//! The rlib as an embedder (the Erlang NIF) uses it: register the module with the inittab before
//! the interpreter starts, hand a core reader to Python with `wrap_reader`, and see errors map
//! to the exported exception types. Runs with `cargo test -p bodypipe-python`.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::Arc;

mod common;

#[test]
fn embedder_registers_module_and_wraps_reader() {
    common::start_embedded();

    let (mut w, r) = bodypipe::pipe();
    let reader = Arc::new(r);
    w.write(b"line one\nline two\n").expect("write");

    Python::attach(|py| -> PyResult<()> {
        let obj = bodypipe_python::wrap_reader(py, Arc::clone(&reader))?;
        let ns = PyDict::new(py);
        ns.set_item("buf", obj)?;
        py.run(
            // Nothing has imported `bodypipe` yet: a file check must pass all the same.
            c"import io\nassert isinstance(buf, io.RawIOBase)\nimport bodypipe\nassert isinstance(buf, bodypipe.PyBuffer)\nfirst = buf.readline()\n",
            Some(&ns),
            None,
        )?;
        let first: Vec<u8> = ns.get_item("first")?.expect("first").extract()?;
        assert_eq!(first, b"line one\n");
        Ok(())
    })
    .expect("python side");

    // The embedder's own handle shares the cursor with Python.
    assert_eq!(reader.position(), 9);
    w.abort("client went away");

    Python::attach(|py| -> PyResult<()> {
        let obj = bodypipe_python::wrap_reader(py, Arc::clone(&reader))?;
        let ns = PyDict::new(py);
        ns.set_item("buf", obj)?;
        py.run(c"rest = buf.readline()", Some(&ns), None)?;
        let err = py.run(c"buf.read()", Some(&ns), None).expect_err("aborted");
        assert!(err.is_instance_of::<bodypipe_python::BodyAborted>(py));
        assert!(err.is_instance_of::<pyo3::exceptions::PyConnectionAbortedError>(py));
        assert_eq!(err.value(py).getattr("reason")?.extract::<String>()?, "client went away");
        Ok(())
    })
    .expect("abort maps to BodyAborted");
}
