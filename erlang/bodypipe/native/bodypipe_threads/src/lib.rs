//! The threads of the bodypipe NIF, without the NIF.
//!
//! The NIF crate is a `cdylib` whose test binary cannot link (the `enif_*` symbols exist only
//! inside a running VM), so the parts that need no VM live here, as plain Rust with unit tests:
//! - [`pool`]: the pool that runs Python calls, growing on demand up to a cap and shrinking
//!   when idle;
//! - [`jobs`]: one long-lived thread that runs queued jobs against a context made on that
//!   thread (the NIF's notify thread, whose context is an `OwnedEnv`).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod jobs;
pub mod pool;
