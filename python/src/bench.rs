//! Benchmark-only helpers, compiled in by the `bench` feature and never shipped in the wheel:
//! `make bench` installs a build with `--features bench` (see the Makefile's `bench-python`).
//!
//! `_bench_feed` plays the part of a production server's I/O thread (the Erlang NIF's writer):
//! a Rust thread that never holds the GIL feeds the body, so `benches/python_bench.py` can measure
//! the reader alone.

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::writer::Writer;

/// Feeds `total` bytes in `chunk`-byte writes into `writer` from a Rust thread that never holds
/// the GIL, waiting for room in ring mode, then closes the body. Returns at once; `writer` is
/// spent (closed for Python writes). The bytes are `(i * 31 + 7) & 0xff` for `i` in `0..chunk`,
/// repeated.
#[pyfunction]
#[pyo3(name = "_bench_feed")]
pub(crate) fn bench_feed(py: Python<'_>, writer: &Bound<'_, Writer>, total: u64, chunk: usize) -> PyResult<()> {
    if chunk == 0 {
        return Err(PyValueError::new_err("chunk must be at least 1 byte"));
    }
    let core = writer.get().take_core(py).ok_or_else(|| PyValueError::new_err("writer is closed"))?;
    std::thread::Builder::new()
        .name("bodypipe-bench-feed".into())
        .spawn(move || feed(core, total, chunk))
        .map_err(|e| PyOSError::new_err(format!("cannot start the feeder thread: {e}")))?;
    Ok(())
}

/// The byte at offset `i` of every `chunk`-sized block the feeder writes.
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31).wrapping_add(7)) as u8
}

/// The feeder thread of `_bench_feed`. If the reader hangs up, the body is closed (nobody is left
/// to tell); any other refusal drops the writer, which aborts the body, so a reader never waits
/// on a feeder that gave up.
fn feed(mut w: ::bodypipe::Writer, total: u64, chunk: usize) {
    let data: Vec<u8> = (0..chunk).map(pattern).collect();
    let mut sent = 0u64;
    while sent < total {
        let n = usize::try_from(total - sent).map_or(chunk, |left| left.min(chunk));
        match w.write(&data[..n]) {
            Ok(()) => sent += n as u64,
            Err(::bodypipe::WriteError::Full) => {
                if w.wait_writable(None).is_err() {
                    w.close();
                    return;
                }
            }
            Err(::bodypipe::WriteError::Closed) => {
                w.close();
                return;
            }
            Err(_) => return,
        }
    }
    w.close();
}

#[cfg(test)]
mod tests {
    use super::{feed, pattern};
    use std::io::Read;

    fn expected(total: usize, chunk: usize) -> Vec<u8> {
        (0..total).map(|i| pattern(i % chunk)).collect()
    }

    #[test]
    fn feeds_exact_bytes_then_eof_unbounded_and_ring() {
        for max_buffered in [None, Some(64 * 1024)] {
            let total = 5 * 1024 * 1024 + 123;
            let mut b = ::bodypipe::Builder::new();
            if let Some(m) = max_buffered {
                b = b.max_buffered(m);
            }
            let (w, r) = b.build().expect("valid builder");
            let t = std::thread::spawn(move || feed(w, total as u64, 65536));
            let mut got = Vec::new();
            (&r).read_to_end(&mut got).expect("a complete body");
            t.join().expect("the feeder does not panic");
            assert_eq!(got.len(), total);
            assert!(got == expected(total, 65536), "bytes differ ({max_buffered:?})");
            assert!(r.at_eof());
        }
    }

    #[test]
    fn reader_close_stops_the_feeder() {
        let (w, r) = ::bodypipe::Builder::new().max_buffered(4096).build().expect("valid builder");
        // Would run forever without the hang-up.
        let t = std::thread::spawn(move || feed(w, 1 << 40, 1024));
        let mut ten = [0u8; 10];
        (&r).read_exact(&mut ten).expect("the first bytes");
        r.close();
        t.join().expect("the feeder ends once the reader hangs up");
    }
}
