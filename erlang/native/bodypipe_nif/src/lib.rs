//! Erlang NIF of bodypipe (module `bodypipe_nif`).
//!
//! Three parts:
//! - [`buffer`]: `py_buffer`, the write side of a bodypipe as an Erlang resource; the write path
//!   never takes the GIL;
//! - [`http`]: `bodypipe_http_parser`, strict request-head parsing and a chunked decoder that
//!   writes into a `py_buffer`;
//! - [`python`]: an embedded CPython (pyo3) so Erlang code can run Python and hand it buffers,
//!   with calls on threads of our own.
//!
//! Nothing in here may panic on user input: a panic in a NIF takes the whole VM down. Bad
//! arguments raise `badarg`; conditions of the stream come back as `{error, Atom}`.

#![deny(missing_docs)]

mod atoms;
pub mod buffer;
pub mod http;
mod iodata;
mod notify;
mod owners;
pub mod python;

use rustler::{Env, Term};

/// Makes a fresh binary term holding a copy of `data`.
pub(crate) fn binary_term<'a>(env: Env<'a>, data: &[u8]) -> Term<'a> {
    let mut b = rustler::NewBinary::new(env, data.len());
    b.as_mut_slice().copy_from_slice(data);
    b.into()
}

rustler::init!("bodypipe_nif");
