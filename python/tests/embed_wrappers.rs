//! Several `PyBuffer` wrappers of one core reader, as the Erlang NIF makes them (a new wrapper on
//! every `py:call` that passes the same buffer): async reads parked through different wrappers
//! must each be woken. Issue 12 found one of two `aread(1)` calls, one per wrapper, still parked
//! seconds after two bytes were written, because the core kept one readable callback per reader
//! and the second wrapper's wait replaced the first's. Its own process (a file of its own), so it
//! neither depends on nor disturbs the interpreter state of `embed.rs`.
//! Runs with `cargo test -p bodypipe-python`.

use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict};
use std::sync::Arc;

mod common;

#[test]
fn two_wrappers_of_one_reader_each_parked_in_aread_are_both_woken() {
    common::start_embedded();

    let (w, r) = bodypipe::pipe();
    let reader = Arc::new(r);
    Python::attach(|py| -> PyResult<()> {
        let ns = PyDict::new(py);
        ns.set_item("a", bodypipe_python::wrap_reader(py, Arc::clone(&reader))?)?;
        ns.set_item("b", bodypipe_python::wrap_reader(py, Arc::clone(&reader))?)?;
        ns.set_item("w", Bound::new(py, bodypipe_python::Writer::new(w))?)?;
        // `wrap()`: one more wrapper of the same reader, as each NIF call makes.
        let shared = Arc::clone(&reader);
        let wrap = PyCFunction::new_closure(py, Some(c"wrap"), None, move |args, _kwargs| {
            bodypipe_python::wrap_reader(args.py(), Arc::clone(&shared))
        })?;
        ns.set_item("wrap", wrap)?;
        py.run(
            // The 10 s bound only turns a hang (the bug) into a failure; nothing is timed.
            c"
import asyncio

async def main():
    assert a is not b
    first = asyncio.create_task(a.aread(1))
    second = asyncio.create_task(b.aread(1))
    for _ in range(3):              # both tasks run to their park (FIFO), one per wrapper
        await asyncio.sleep(0)
    assert not first.done() and not second.done()
    assert a._parked() == 2 and b._parked() == 2, 'counted per reader, through any wrapper'
    w.write(b'x')
    w.write(b'y')
    got = await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert sorted(got) == [b'x', b'y'], got
    assert a._parked() == 0 and b._parked() == 0

    # Ten wrappers, each with a read parked at its own threshold, woken by the end.
    wrappers = [wrap() for _ in range(10)]
    tasks = [asyncio.create_task(x.areadexactly(5 + i)) for i, x in enumerate(wrappers)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert a._parked() == 10
    w.close()
    done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    assert all(isinstance(e, asyncio.IncompleteReadError) for e in done), done

asyncio.run(main())
",
            Some(&ns),
            None,
        )
    })
    .expect("every parked read woken");
}
