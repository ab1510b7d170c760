//! `py_buffer`: the write side of a bodypipe, as an Erlang resource.
//!
//! The state the resource shares with the owner registry and queued jobs is [`Shared`]; this
//! module holds the NIFs and the resource itself. The write path never touches Python or the GIL.

use std::sync::{Arc, MutexGuard};

use rustler::{Atom, Encoder, Env, Error, LocalPid, Monitor, NifMap, NifResult, Resource, ResourceArc, Term};

use bodypipe::{Reader, Writability, WriteError, Writer};
use bodypipe_python::options::{BodyOptions, OptionError, Size};

use crate::atoms;
use crate::iodata::{self, Budget, Walk};
use crate::notify;
use crate::owners;
use crate::shared::{Busy, Shared, Wait};
use crate::OrUndefined;

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

/// The resource behind a `py_buffer:buffer()`.
pub struct BufferRes {
    shared: Arc<Shared>,
}

/// What the processes waiting in `notify_writable` are told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Unread bytes fell below half of `max_buffered` (or the buffer is unbounded).
    Writable,
    /// The buffer can take no more writes: the reader hung up, or it was closed or aborted.
    Closed,
}

/// Has the notify thread send `{py_buffer, Buf, Kind}` to every process waiting on `buf`
/// (safe on any thread: it only queues). `buf` is released on the notify thread.
fn post_notice(buf: ResourceArc<BufferRes>, kind: Kind) {
    // No notify thread means the process is shutting down (it was started before any hook was
    // installed): nobody is left to tell.
    let _ = notify::post(Box::new(move |env| {
        let kind = match kind {
            Kind::Writable => atoms::writable(),
            Kind::Closed => atoms::closed(),
        };
        for pid in buf.shared.take_waiters() {
            let buf = buf.clone();
            // A dead recipient is not an error worth reporting.
            let _ = env.send_and_clear(&pid, |e| (atoms::py_buffer(), buf, kind).encode(e));
        }
    }));
}

impl BufferRes {
    /// The reader side, for handing to Python.
    pub fn reader(&self) -> Arc<Reader> {
        self.shared.reader().clone()
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
        let job: notify::Job = Box::new(move |_env| shared.abort(reason));
        if let Err(job) = notify::post(job) {
            // No notify thread (thread creation failed): waiting here is the only way left to
            // make sure no reader hangs; the job only needs an env to run in, any will do.
            job(&mut rustler::OwnedEnv::new());
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
    let opts = BodyOptions { content_length, max_buffered, max_size, ..BodyOptions::default() };
    let (writer, reader) = match opts.build() {
        Ok(pair) => pair,
        Err(OptionError::TooLarge(_)) => return Ok((atoms::error(), atoms::too_large()).encode(env)),
        Err(OptionError::Refused(_) | OptionError::Invalid(..)) => return Err(Error::BadArg),
    };
    let shared = Arc::new(Shared::new(writer, reader));
    let owner = env.pid();
    let first = owners::register(owner, &shared);
    let res = ResourceArc::new(BufferRes { shared });
    // Fallback owner monitor; if it cannot be set the owner is already gone.
    if env.monitor(&res, &owner).is_none() {
        res.shared.abort(OWNER_DOWN_UNKNOWN);
    }
    Ok((atoms::ok(), res, first).encode(env))
}

/// An option of `buffer_new` as the shared decoder takes it: `undefined`, a size, or a bignum
/// above any size (which the facade's guards let through); anything else no size can be.
fn opt_num(t: Term) -> NifResult<Size> {
    let env = t.get_env();
    if t.is_atom() && t == atoms::undefined().to_term(env) {
        return Ok(Size::Unset);
    }
    if let Ok(n) = t.decode::<u64>() {
        return Ok(Size::Fits(n));
    }
    if t.is_integer() && t > 0.encode(env) {
        Ok(Size::AboveU64)
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
    if res.shared.has_waiters() {
        post_notice(res, Kind::Closed);
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
            post_notice(buf, kind);
        }
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            if buf.shared.hook_gen() == self.gen {
                // Not replaced by a newer hook: the writer closed or aborted.
                post_notice(buf, Kind::Closed);
            }
        }
    }
}

fn notify_impl(env: Env, buf: ResourceArc<BufferRes>, wait: Wait) -> NifResult<Atom> {
    notify::ensure_started().map_err(|_| Error::RaiseAtom("system_limit"))?;
    let Ok(guard) = buf.shared.lock_writer(wait) else {
        return Ok(atoms::dirty());
    };
    buf.shared.add_waiter(env.pid());
    match guard.as_ref() {
        Some(w) => {
            let gen = buf.shared.next_hook_gen();
            let hook = Hook { buf: Some(buf.clone()), gen };
            // Replaced: the old hook is dropped unfired, silently (its generation is stale).
            if let Some(old) = buf.shared.replace_hook_sub(None) {
                w.cancel_writable(old);
            }
            // May fire at once, on this thread: the hook only queues a notice.
            let sub = w.on_writable(move |why| hook.fire(why));
            buf.shared.replace_hook_sub(Some(sub));
            drop(guard);
        }
        None => {
            drop(guard);
            post_notice(buf, Kind::Closed);
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

/// The map `buffer_info/1` returns (`py_buffer:info()`); keys are the field names.
#[derive(NifMap)]
#[rustler(encode)]
struct Info<'a> {
    written: u64,
    read: u64,
    buffered: u64,
    eof: bool,
    aborted: bool,
    reader_closed: bool,
    writer_closed: bool,
    content_length: OrUndefined<u64>,
    max_buffered: OrUndefined<u64>,
    abort_reason: OrUndefined<Term<'a>>,
    reader_wakes: u64,
    writer_wakes: u64,
    reader_waiting: bool,
    writer_waiting: bool,
}

/// `buffer_info(Buf)` -> map of counters.
#[rustler::nif]
fn buffer_info(env: Env<'_>, buf: ResourceArc<BufferRes>) -> Term<'_> {
    let reader = buf.shared.reader();
    let s = reader.stats();
    Info {
        written: s.written,
        read: s.position,
        buffered: s.buffered,
        eof: s.eof,
        aborted: s.aborted,
        reader_closed: s.reader_closed,
        writer_closed: buf.shared.writer_closed(),
        content_length: OrUndefined(s.content_length),
        max_buffered: OrUndefined(s.max_buffered),
        abort_reason: OrUndefined(reader.abort_reason().map(|r| crate::binary_term(env, r.as_bytes()))),
        reader_wakes: s.reader_wakes,
        writer_wakes: s.writer_wakes,
        reader_waiting: s.reader_waiting,
        writer_waiting: s.writer_waiting,
    }
    .encode(env)
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
