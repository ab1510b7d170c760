//! `py_buffer`: the write side of a bodypipe, as an Erlang resource.
//!
//! The core's `Writer` is single-producer (`Send`, not `Sync`), so the resource keeps it in a
//! `Mutex<Option<Writer>>`: writes from several Erlang processes are serialized there, and
//! `close`/`abort` take it out. Readers (Python) hold only an `Arc<Reader>` and are never
//! blocked by that mutex. The write path never touches Python or the GIL.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use rustler::{Atom, Encoder, Env, Error, LocalPid, Monitor, NifResult, Resource, ResourceArc, Term};

use bodypipe::{BuildError, Builder, Reader, Writability, WriteError, Writer};

use crate::atoms;
use crate::iodata::{self, Budget, Walk};
use crate::notify::{self, Kind, Notice};
use crate::owners;

/// Writes larger than this (or iolists with more elements than [`NORMAL_MAX_ITEMS`]) are
/// redone on a dirty CPU scheduler, so no call on a normal scheduler takes more than ~1 ms.
pub const NORMAL_MAX_BYTES: usize = 256 * 1024;
/// See [`NORMAL_MAX_BYTES`].
pub const NORMAL_MAX_ITEMS: usize = 20_000;

/// Reason used when the last Erlang reference is garbage-collected before `close`.
const GC_REASON: &str = "py_buffer garbage-collected without close";
/// Reason used by the fallback monitor when the watcher process is not running.
const OWNER_DOWN_UNKNOWN: &str = "{owner_down,unknown}";
/// Registered name of the Erlang process that turns owner exits into `{owner_down, Reason}`.
pub const WATCHER: &str = "bodypipe_owner_watch";

/// State shared by the resource, the owner registry and nothing else.
pub struct Shared {
    writer: Mutex<Option<Writer>>,
    reader: Arc<Reader>,
    /// Set once the writer has been taken out (closed or aborted); read by `info` without locking.
    writer_closed: AtomicBool,
    /// Processes waiting for `{py_buffer, Buf, writable | closed}`.
    waiters: Mutex<Vec<LocalPid>>,
    /// Bumped each time a writable hook is installed, so that a replaced hook, dropped unfired,
    /// can tell it was replaced (and stay silent) from the writer ending (and say `closed`).
    hook_gen: AtomicU64,
}

/// The resource behind a `py_buffer:buffer()`.
pub struct BufferRes {
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a NIF may wait for the writer lock. Normal schedulers must not: the lock can be held
/// by a large write on a dirty scheduler, so on contention they hand the call to a dirty variant.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// `try_lock`; report [`Busy`] if another process holds the writer.
    Never,
    /// Block until the writer is free (dirty schedulers, destructors).
    Block,
}

/// The writer lock is held by someone else; redo the call on a dirty scheduler.
pub(crate) struct Busy;

impl Shared {
    fn lock_writer(&self, wait: Wait) -> Result<MutexGuard<'_, Option<Writer>>, Busy> {
        match wait {
            Wait::Block => Ok(lock(&self.writer)),
            Wait::Never => match self.writer.try_lock() {
                Ok(g) => Ok(g),
                Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
                Err(TryLockError::WouldBlock) => Err(Busy),
            },
        }
    }

    /// Takes the writer out, so that it can be closed or aborted outside the lock (dropping its
    /// pending hook may release the last reference to the resource, whose destructor locks).
    fn take_writer(&self, wait: Wait) -> Result<Option<Writer>, Busy> {
        let w = self.lock_writer(wait)?.take();
        self.writer_closed.store(true, Ordering::Release);
        Ok(w)
    }

    /// Aborts the stream with `reason` unless it is already closed or aborted.
    fn abort_with(&self, reason: &str, wait: Wait) -> Result<(), Busy> {
        if let Some(w) = self.take_writer(wait)? {
            w.abort(reason);
        }
        Ok(())
    }

    /// Aborts the stream with `reason` unless it is already closed or aborted (may block).
    pub fn abort(&self, reason: &str) {
        let _ = self.abort_with(reason, Wait::Block);
    }
}

impl BufferRes {
    /// The reader side, for handing to Python.
    pub fn reader(&self) -> Arc<Reader> {
        self.shared.reader.clone()
    }

    /// The writer slot (`None` once closed or aborted), for writers other than `write/2` (the
    /// chunked decoder); with [`Wait::Never`], `Err(Busy)` when another process holds it.
    pub(crate) fn lock_writer(&self, wait: Wait) -> Result<MutexGuard<'_, Option<Writer>>, Busy> {
        self.shared.lock_writer(wait)
    }

    /// Aborts the stream with `reason` unless it is already closed or aborted, without waiting
    /// for the writer: safe on a normal scheduler (see [`abort_without_waiting`]).
    pub(crate) fn abort_soon(&self, reason: &'static str) {
        abort_without_waiting(self.shared.clone(), reason);
    }

    /// Removes and returns the processes waiting for a writable/closed message.
    pub fn take_waiters(&self) -> Vec<LocalPid> {
        std::mem::take(&mut *lock(&self.shared.waiters))
    }
}

impl Drop for BufferRes {
    fn drop(&mut self) {
        // The last Erlang reference is gone (GC) or the library is unloading. Python holds only
        // the reader, so nobody can close this stream any more: abort it so no reader hangs.
        self.shared.abort(GC_REASON);
    }
}

#[rustler::resource_impl]
impl Resource for BufferRes {
    const IMPLEMENTS_DOWN: bool = true;

    fn down<'a>(&'a self, env: Env<'a>, pid: LocalPid, _monitor: Monitor) {
        // Normally the watcher process reports the exit with its reason; this monitor only
        // covers for it when it is not running (the application was not started).
        let watcher_alive = Atom::from_str(env, WATCHER).ok().and_then(|name| env.whereis_pid(name)).is_some();
        if !watcher_alive {
            for shared in owners::take(&pid) {
                abort_without_waiting(shared, OWNER_DOWN_UNKNOWN);
            }
            abort_without_waiting(self.shared.clone(), OWNER_DOWN_UNKNOWN);
        }
    }
}

/// Aborts `shared` now if its writer is free, else has the notify thread abort it once the
/// writer is released. `down` runs on a normal scheduler, and another process's multi-MiB write
/// on a dirty one may hold the writer for milliseconds: waiting there would stall the scheduler.
fn abort_without_waiting(shared: Arc<Shared>, reason: &'static str) {
    if shared.abort_with(reason, Wait::Never).is_err() {
        if let Err(shared) = notify::post_abort(shared, reason) {
            // No notify thread (thread creation failed): waiting is the only way left to make
            // sure no reader hangs.
            shared.abort(reason);
        }
    }
}

/// `buffer_new(ContentLength | undefined, MaxBuffered | undefined, MaxSize | undefined)`
/// -> `{ok, Buf, FirstForOwner}` | `{error, too_large}`; `badarg` on impossible values.
#[rustler::nif]
fn buffer_new<'a>(
    env: Env<'a>,
    content_length: Term<'a>,
    max_buffered: Term<'a>,
    max_size: Term<'a>,
) -> NifResult<Term<'a>> {
    // Decode every option before acting on any, so a bad one is badarg whatever the others are.
    let (content_length, max_buffered, max_size) =
        (opt_num(content_length)?, opt_num(max_buffered)?, opt_num(max_size)?);
    let mut b = Builder::new();
    match content_length {
        Num::Undefined => {}
        Num::Fits(n) => b = b.content_length(n),
        // Larger than any max_size (which is at most u64::MAX): a refusal, not a bad argument.
        Num::AboveU64 => return Ok((atoms::error(), atoms::too_large()).encode(env)),
    }
    match max_buffered {
        Num::Undefined => {}
        Num::Fits(0) => return Err(Error::BadArg),
        // A high-water mark beyond the address space is never reached; usize::MAX behaves alike.
        Num::Fits(n) => b = b.max_buffered(usize::try_from(n).unwrap_or(usize::MAX)),
        Num::AboveU64 => b = b.max_buffered(usize::MAX),
    }
    match max_size {
        Num::Undefined => {}
        Num::Fits(n) => b = b.max_size(n),
        // No body can exceed u64::MAX bytes, so a larger limit means the same as u64::MAX.
        Num::AboveU64 => b = b.max_size(u64::MAX),
    }
    let (writer, reader) = match b.build() {
        Ok(pair) => pair,
        Err(BuildError::TooLarge { .. }) => return Ok((atoms::error(), atoms::too_large()).encode(env)),
        Err(_) => return Err(Error::BadArg),
    };
    let shared = Arc::new(Shared {
        writer: Mutex::new(Some(writer)),
        reader: Arc::new(reader),
        writer_closed: AtomicBool::new(false),
        waiters: Mutex::new(Vec::new()),
        hook_gen: AtomicU64::new(0),
    });
    let owner = env.pid();
    let first = owners::register(owner, &shared);
    let res = ResourceArc::new(BufferRes { shared });
    // Fallback owner monitor; if it cannot be set the owner is already gone.
    if env.monitor(&res, &owner).is_none() {
        res.shared.abort(OWNER_DOWN_UNKNOWN);
    }
    Ok((atoms::ok(), res, first).encode(env))
}

/// A size option of `buffer_new`, as decoded.
enum Num {
    /// `undefined`: the option is not set.
    Undefined,
    /// A value that fits the core's `u64` sizes.
    Fits(u64),
    /// A non-negative integer above u64::MAX: a legal Erlang size, larger than any body.
    AboveU64,
}

fn opt_num(t: Term) -> NifResult<Num> {
    let env = t.get_env();
    if t.is_atom() && t == atoms::undefined().to_term(env) {
        return Ok(Num::Undefined);
    }
    if let Ok(n) = t.decode::<u64>() {
        return Ok(Num::Fits(n));
    }
    // What failed to decode is either a bignum beyond u64 (which the facade's guards let through)
    // or something no size can be: a negative number, a float, another type.
    if t.is_integer() && t > 0.encode(env) {
        Ok(Num::AboveU64)
    } else {
        Err(Error::BadArg)
    }
}

fn get_buf<'a>(t: Term<'a>) -> NifResult<&'a BufferRes> {
    t.try_get_resource::<BufferRes>().ok_or(Error::BadArg)
}

pub(crate) fn write_error_atom(e: WriteError) -> Atom {
    match e {
        WriteError::Closed => atoms::closed(),
        WriteError::ExceedsContentLength => atoms::exceeds_content_length(),
        WriteError::TooLarge => atoms::too_large(),
        WriteError::Full => atoms::full(),
        WriteError::OutOfMemory => atoms::enomem(),
        // `WriteError` is non-exhaustive; a future condition is reported as a refusal.
        _ => atoms::closed(),
    }
}

fn do_write<'a>(env: Env<'a>, buf: &BufferRes, data: Term<'a>, budget: Budget, wait: Wait) -> NifResult<Term<'a>> {
    // Fast path: one binary.
    if data.is_binary() {
        let bin = rustler::Binary::from_term(data)?;
        if bin.len() > budget.max_bytes {
            return Ok(atoms::dirty().encode(env));
        }
        return Ok(finish_write(env, buf, wait, |w| w.write(bin.as_slice())));
    }
    match iodata::walk(data, budget)? {
        Walk::OverBudget => Ok(atoms::dirty().encode(env)),
        Walk::Done(io) => {
            let slices = io.slices();
            Ok(finish_write(env, buf, wait, |w| w.write_slices(&slices)))
        }
    }
}

fn finish_write<'a>(
    env: Env<'a>,
    buf: &BufferRes,
    wait: Wait,
    f: impl FnOnce(&mut Writer) -> Result<(), WriteError>,
) -> Term<'a> {
    let Ok(mut guard) = buf.shared.lock_writer(wait) else {
        return atoms::dirty().encode(env);
    };
    let result = match guard.as_mut() {
        None => Err(WriteError::Closed),
        Some(w) => f(w),
    };
    drop(guard);
    match result {
        Ok(()) => atoms::ok().encode(env),
        Err(e) => (atoms::error(), write_error_atom(e)).encode(env),
    }
}

/// `buffer_write(Buf, IoData)` -> `ok | {error, Reason} | dirty` (redo with `buffer_write_dirty`).
#[rustler::nif]
fn buffer_write<'a>(env: Env<'a>, buf: Term<'a>, data: Term<'a>) -> NifResult<Term<'a>> {
    let buf = get_buf(buf)?;
    let budget = Budget { max_bytes: NORMAL_MAX_BYTES, max_items: NORMAL_MAX_ITEMS };
    do_write(env, buf, data, budget, Wait::Never)
}

/// `buffer_write_dirty(Buf, IoData)` -> `ok | {error, Reason}`: one write of any size, on a
/// dirty CPU scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn buffer_write_dirty<'a>(env: Env<'a>, buf: Term<'a>, data: Term<'a>) -> NifResult<Term<'a>> {
    let buf = get_buf(buf)?;
    do_write(env, buf, data, Budget::UNLIMITED, Wait::Block)
}

/// Wakes every process waiting in `notify_writable` with `closed` (the writer has ended).
fn release_waiters(res: ResourceArc<BufferRes>) {
    if !lock(&res.shared.waiters).is_empty() {
        notify::post(Notice { buf: res, kind: Kind::Closed });
    }
}

fn close_impl(env: Env<'_>, buf: ResourceArc<BufferRes>, wait: Wait) -> Term<'_> {
    match buf.shared.take_writer(wait) {
        Err(Busy) => atoms::dirty().encode(env),
        Ok(w) => {
            // Short of the declared length the body ends as an abort ("incomplete body"), and
            // the caller is told; a complete body (or one of no declared length) is `ok`.
            let complete = w.is_none_or(|w| w.close().is_ok());
            release_waiters(buf);
            if complete {
                atoms::ok().encode(env)
            } else {
                (atoms::error(), atoms::incomplete()).encode(env)
            }
        }
    }
}

/// `buffer_close(Buf)` -> `ok | {error, incomplete} | dirty`. Idempotent (`ok`); a no-op after
/// `abort`. `{error, incomplete}`: fewer bytes were written than the declared content length;
/// the body is ended all the same, and Python readers get `BodyAborted("incomplete body")`.
#[rustler::nif]
fn buffer_close(env: Env<'_>, buf: ResourceArc<BufferRes>) -> Term<'_> {
    close_impl(env, buf, Wait::Never)
}

/// `buffer_close_dirty(Buf)` -> `ok | {error, incomplete}`: `buffer_close` when a large write
/// holds the writer.
#[rustler::nif(schedule = "DirtyIo")]
fn buffer_close_dirty(env: Env<'_>, buf: ResourceArc<BufferRes>) -> Term<'_> {
    close_impl(env, buf, Wait::Block)
}

fn abort_impl(buf: ResourceArc<BufferRes>, reason: rustler::Binary, wait: Wait) -> Atom {
    let text = String::from_utf8_lossy(reason.as_slice());
    match buf.shared.abort_with(&text, wait) {
        Err(Busy) => atoms::dirty(),
        Ok(()) => {
            release_waiters(buf);
            atoms::ok()
        }
    }
}

/// `buffer_abort(Buf, ReasonText :: binary())` -> `ok | dirty`. A no-op after `close`.
#[rustler::nif]
fn buffer_abort(buf: ResourceArc<BufferRes>, reason: rustler::Binary) -> Atom {
    abort_impl(buf, reason, Wait::Never)
}

/// `buffer_abort_dirty(Buf, ReasonText)` -> `ok`: `buffer_abort` when a large write holds the writer.
#[rustler::nif(schedule = "DirtyIo")]
fn buffer_abort_dirty(buf: ResourceArc<BufferRes>, reason: rustler::Binary) -> Atom {
    abort_impl(buf, reason, Wait::Block)
}

/// Fires once, or tells the waiters `closed` if dropped unfired because the writer ended.
struct Hook {
    buf: Option<ResourceArc<BufferRes>>,
    gen: u64,
}

impl Hook {
    fn fire(mut self, why: Writability) {
        if let Some(buf) = self.buf.take() {
            let kind = match why {
                Writability::Writable => Kind::Writable,
                Writability::ReaderClosed => Kind::Closed,
            };
            notify::post(Notice { buf, kind });
        }
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            if buf.shared.hook_gen.load(Ordering::Acquire) == self.gen {
                // Not replaced by a newer hook: the writer closed or aborted.
                notify::post(Notice { buf, kind: Kind::Closed });
            }
        }
    }
}

fn notify_impl(env: Env, buf: ResourceArc<BufferRes>, wait: Wait) -> NifResult<Atom> {
    notify::ensure_started().map_err(|_| Error::RaiseAtom("system_limit"))?;
    let Ok(guard) = buf.shared.lock_writer(wait) else {
        return Ok(atoms::dirty());
    };
    lock(&buf.shared.waiters).push(env.pid());
    match guard.as_ref() {
        Some(w) => {
            let gen = buf.shared.hook_gen.fetch_add(1, Ordering::AcqRel) + 1;
            let hook = Hook { buf: Some(buf.clone()), gen };
            // May fire at once, on this thread: the hook only queues a notice.
            w.on_writable(move |why| hook.fire(why));
            drop(guard);
        }
        None => {
            drop(guard);
            notify::post(Notice { buf, kind: Kind::Closed });
        }
    }
    Ok(atoms::ok())
}

/// `buffer_notify_writable(Buf)` -> `ok | dirty`: the caller gets `{py_buffer, Buf, writable}`
/// once unread bytes are below half of `max_buffered` (at once if they are), or
/// `{py_buffer, Buf, closed}` if the stream can take no more writes first.
#[rustler::nif]
fn buffer_notify_writable(env: Env, buf: ResourceArc<BufferRes>) -> NifResult<Atom> {
    notify_impl(env, buf, Wait::Never)
}

/// `buffer_notify_writable_dirty(Buf)` -> `ok`: when a large write holds the writer.
#[rustler::nif(schedule = "DirtyIo")]
fn buffer_notify_writable_dirty(env: Env, buf: ResourceArc<BufferRes>) -> NifResult<Atom> {
    notify_impl(env, buf, Wait::Block)
}

/// `buffer_info(Buf)` -> map of counters.
#[rustler::nif]
fn buffer_info(env: Env, buf: ResourceArc<BufferRes>) -> NifResult<Term> {
    let s = buf.shared.reader.stats();
    let writer_closed = buf.shared.writer_closed.load(Ordering::Acquire);
    let undefined = atoms::undefined().encode(env);
    let opt = |v: Option<u64>| v.map(|n| n.encode(env)).unwrap_or(undefined);
    let reason = buf.shared.reader.abort_reason().map(|r| crate::binary_term(env, r.as_bytes())).unwrap_or(undefined);
    let keys = [
        atoms::written().encode(env),
        atoms::read().encode(env),
        atoms::buffered().encode(env),
        atoms::eof().encode(env),
        atoms::aborted().encode(env),
        atoms::reader_closed().encode(env),
        atoms::writer_closed().encode(env),
        atoms::content_length().encode(env),
        atoms::max_buffered().encode(env),
        atoms::abort_reason().encode(env),
    ];
    let values = [
        s.written.encode(env),
        s.read.encode(env),
        s.buffered.encode(env),
        s.eof.encode(env),
        s.aborted.encode(env),
        s.reader_closed.encode(env),
        writer_closed.encode(env),
        opt(s.content_length),
        opt(s.max_buffered),
        reason,
    ];
    Term::map_from_term_arrays(env, &keys, &values)
}

/// `owner_down(Pid, ReasonText)` -> `ok`: aborts every live buffer `Pid` created. On a dirty
/// IO scheduler: it may wait for large writes in progress.
#[rustler::nif(schedule = "DirtyIo")]
fn owner_down(pid: LocalPid, reason: rustler::Binary) -> Atom {
    let text = String::from_utf8_lossy(reason.as_slice());
    for shared in owners::take(&pid) {
        shared.abort(&text);
    }
    atoms::ok()
}

/// `owners()` -> pids that created buffers and have not been reported down.
#[rustler::nif]
fn owners() -> Vec<LocalPid> {
    owners::pids()
}
