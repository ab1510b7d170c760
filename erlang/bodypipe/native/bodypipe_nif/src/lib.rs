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
//! Underneath: [`shared`] (one buffer's state; imports nothing from this crate), [`owners`]
//! (which buffers each process created; depends on `shared` only), [`notify`] (a thread that
//! runs queued jobs with an `OwnedEnv` and knows nothing of buffers), [`iodata`], [`atoms`].
//!
//! Nothing in here may panic on user input: a panic in a NIF takes the whole VM down. Bad
//! arguments raise `badarg`; conditions of the stream come back as `{error, Atom}`.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod atoms;
pub mod buffer;
pub mod http;
mod iodata;
mod notify;
mod owners;
pub mod python;
mod shared;

use std::mem::MaybeUninit;

use rustler::{Env, OwnedBinary, Term};

/// Binaries up to this size live on the process heap (ERTS's `ERL_ONHEAP_BIN_LIMIT`).
const HEAP_BINARY_MAX: usize = 64;

/// Makes a fresh binary term holding a copy of `data`, for data of bounded size (names,
/// messages). Data of any size a user controls goes through [`try_binary_term`].
pub(crate) fn binary_term<'a>(env: Env<'a>, data: &[u8]) -> Term<'a> {
    let mut b = rustler::NewBinary::new(env, data.len());
    b.as_mut_slice().copy_from_slice(data);
    b.into()
}

/// Makes a fresh binary term holding a copy of `data`, or `None` if the VM cannot allocate it.
///
/// `enif_make_new_binary` (rustler's `NewBinary`, `OwnedBinary::new`) treats a failed
/// allocation as fatal: the VM aborts with "binary_alloc: Cannot allocate". `enif_alloc_binary`
/// reports it instead, so a multi-GiB block from Python can become a `MemoryError`.
pub(crate) fn try_binary_term<'a>(env: Env<'a>, data: &[u8]) -> Option<Term<'a>> {
    if data.len() <= HEAP_BINARY_MAX {
        // A heap binary: a few words on the process heap, like any small term.
        return Some(binary_term(env, data));
    }
    let mut raw = MaybeUninit::<rustler::sys::ErlNifBinary>::uninit();
    // SAFETY: enif_alloc_binary only writes `raw`, and returns non-zero exactly when it filled it
    // with a binary of `data.len()` bytes.
    if unsafe { rustler::sys::enif_alloc_binary(data.len(), raw.as_mut_ptr()) } == 0 {
        return None;
    }
    // SAFETY: filled by the successful call above; `OwnedBinary` takes over releasing it.
    let mut owned = unsafe { OwnedBinary::from_raw(raw.assume_init()) };
    owned.as_mut_slice().copy_from_slice(data);
    Some(owned.release(env).to_term(env))
}

/// A value, or the atom `undefined` for `None` (rustler itself encodes `None` as `nil`); for the
/// fields of the info maps.
pub(crate) struct OrUndefined<T>(pub Option<T>);

impl<T: rustler::Encoder> rustler::Encoder for OrUndefined<T> {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match &self.0 {
            Some(v) => v.encode(env),
            None => atoms::undefined().encode(env),
        }
    }
}

rustler::init!("bodypipe_nif");
