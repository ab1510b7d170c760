//! `bodypipe_http_parser`: the request-head parser and the chunked decoder of `bodypipe-http`
//! as NIFs. Translation only: terms in, the crate's types, terms out.
//!
//! The decoder writes into a `py_buffer`'s writer, taken from its slot the way `write/2` takes
//! it: on a normal scheduler only with `try_lock`, answering `dirty` on contention (and for
//! inputs above [`NORMAL_MAX_BYTES`]) so that the facade redoes the call on a dirty scheduler.

use std::sync::{Mutex, TryLockError};

use rustler::{Atom, Binary, Encoder, Env, Error, NifResult, Resource, ResourceArc, Term};

use bodypipe::{WriteError, Writer};
use bodypipe_http::{
    parse_head, Body, ChunkedDecoder, ChunkedLimits, FeedError, HeadLimits, Parsed, Progress, Refusal, Sink,
};

use crate::atoms;
use crate::buffer::{write_error_atom, BufferRes, NORMAL_MAX_BYTES};
use crate::shared::{Busy, Wait};

/// A chunked decoder held by Erlang.
pub struct DecoderRes {
    decoder: Mutex<ChunkedDecoder>,
}

#[rustler::resource_impl]
impl Resource for DecoderRes {}

mod keys {
    rustler::atoms! { more, done, bad_chunk, decoder_failed, method, target, version, headers, body, length, chunked,
    keep_alive, expect_continue }
}

fn limit(t: Term) -> NifResult<usize> {
    t.decode::<usize>().map_err(|_| Error::BadArg)
}

/// `http_parse_head(Bin, MaxRequestLine, MaxHeaderLine, MaxHeaders, MaxHeadSize)` ->
/// `{ok, Head, Rest} | more | {error, Status, Reason} | dirty`.
#[rustler::nif]
fn http_parse_head<'a>(
    env: Env<'a>,
    bin: Binary<'a>,
    max_request_line: Term<'a>,
    max_header_line: Term<'a>,
    max_headers: Term<'a>,
    max_head_size: Term<'a>,
) -> NifResult<Term<'a>> {
    let limits = head_limits(max_request_line, max_header_line, max_headers, max_head_size)?;
    // The parser looks at no more than max_head_size + 1 bytes; past ~256 KiB of that, go dirty.
    if bin.len().min(limits.max_head_size.saturating_add(1)) > NORMAL_MAX_BYTES {
        return Ok(atoms::dirty().encode(env));
    }
    parse_head_term(env, bin, &limits)
}

/// `http_parse_head_dirty(...)`: `http_parse_head` on a dirty CPU scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn http_parse_head_dirty<'a>(
    env: Env<'a>,
    bin: Binary<'a>,
    max_request_line: Term<'a>,
    max_header_line: Term<'a>,
    max_headers: Term<'a>,
    max_head_size: Term<'a>,
) -> NifResult<Term<'a>> {
    let limits = head_limits(max_request_line, max_header_line, max_headers, max_head_size)?;
    parse_head_term(env, bin, &limits)
}

/// The four head limits from their terms (each a positive integer).
fn head_limits(
    max_request_line: Term<'_>,
    max_header_line: Term<'_>,
    max_headers: Term<'_>,
    max_head_size: Term<'_>,
) -> NifResult<HeadLimits> {
    Ok(HeadLimits {
        max_request_line: limit(max_request_line)?,
        max_header_line: limit(max_header_line)?,
        max_headers: limit(max_headers)?,
        max_head_size: limit(max_head_size)?,
    })
}

fn parse_head_term<'a>(env: Env<'a>, bin: Binary<'a>, limits: &HeadLimits) -> NifResult<Term<'a>> {
    let head = match parse_head(bin.as_slice(), limits) {
        Ok(Parsed::Complete(head)) => head,
        Ok(Parsed::Partial) => return Ok(keys::more().encode(env)),
        Err(e) => {
            let reason = Atom::from_str(env, e.reason())?;
            return Ok((atoms::error(), e.status(), reason).encode(env));
        }
    };
    let enomem = || Ok((atoms::error(), 503, atoms::enomem()).encode(env));
    let mut fields = Vec::with_capacity(head.fields.len());
    for f in &head.fields {
        let (Some(name), Some(value)) =
            (crate::try_binary_term(env, f.name.to_ascii_lowercase().as_bytes()), crate::try_binary_term(env, f.value))
        else {
            return enomem();
        };
        fields.push((name, value));
    }
    let (Some(method), Some(target)) =
        (crate::try_binary_term(env, head.method.as_bytes()), crate::try_binary_term(env, head.target.as_bytes()))
    else {
        return enomem();
    };
    let body = match head.body {
        Body::None => atoms::none().encode(env),
        Body::Length(n) => (keys::length(), n).encode(env),
        Body::Chunked => keys::chunked().encode(env),
    };
    let map_keys = [
        keys::method().encode(env),
        keys::target().encode(env),
        keys::version().encode(env),
        keys::headers().encode(env),
        keys::body().encode(env),
        keys::keep_alive().encode(env),
        keys::expect_continue().encode(env),
    ];
    let values = [
        method,
        target,
        (1u8, head.minor_version).encode(env),
        fields.encode(env),
        body,
        head.keep_alive.encode(env),
        head.expect_continue.encode(env),
    ];
    let map = Term::map_from_term_arrays(env, &map_keys, &values)?;
    let rest = bin.make_subbinary(head.len, bin.len() - head.len)?;
    Ok((atoms::ok(), map, rest).encode(env))
}

/// `http_chunked_new(MaxChunkLine, MaxTrailers, MaxTrailerSize)` -> `Decoder`.
#[rustler::nif]
fn http_chunked_new(
    max_chunk_line: Term,
    max_trailers: Term,
    max_trailer_size: Term,
) -> NifResult<ResourceArc<DecoderRes>> {
    let limits = ChunkedLimits {
        max_chunk_line: limit(max_chunk_line)?,
        max_trailers: limit(max_trailers)?,
        max_trailer_size: limit(max_trailer_size)?,
    };
    Ok(ResourceArc::new(DecoderRes { decoder: Mutex::new(ChunkedDecoder::new(limits)) }))
}

/// The writer slot of a `py_buffer` as a sink: an empty slot (closed or aborted) refuses.
struct Slot<'a>(&'a mut Option<Writer>);

impl Sink for Slot<'_> {
    type Error = WriteError;

    fn write_all(&mut self, data: &[u8]) -> Result<(), Refusal<WriteError>> {
        match self.0.as_mut() {
            Some(w) => Sink::write_all(w, data),
            None => Err(Refusal::Fatal(WriteError::Closed)),
        }
    }
}

/// `http_chunked_feed(Decoder, Buf, Bin)` -> `more | {done, Rest} | {full, Rest} |
/// {error, Reason} | dirty`.
#[rustler::nif]
fn http_chunked_feed<'a>(env: Env<'a>, decoder: Term<'a>, buf: Term<'a>, bin: Binary<'a>) -> NifResult<Term<'a>> {
    if bin.len() > NORMAL_MAX_BYTES {
        return Ok(atoms::dirty().encode(env));
    }
    feed(env, decoder, buf, bin, Wait::Never)
}

/// `http_chunked_feed_dirty(Decoder, Buf, Bin)`: `http_chunked_feed` of any size, on a dirty
/// CPU scheduler, waiting for the decoder and the writer if another process holds them.
#[rustler::nif(schedule = "DirtyCpu")]
fn http_chunked_feed_dirty<'a>(env: Env<'a>, decoder: Term<'a>, buf: Term<'a>, bin: Binary<'a>) -> NifResult<Term<'a>> {
    feed(env, decoder, buf, bin, Wait::Block)
}

fn feed<'a>(env: Env<'a>, decoder: Term<'a>, buf: Term<'a>, bin: Binary<'a>, wait: Wait) -> NifResult<Term<'a>> {
    let decoder = decoder.try_get_resource::<DecoderRes>().ok_or(Error::BadArg)?;
    let buf = buf.try_get_resource::<BufferRes>().ok_or(Error::BadArg)?;
    let dirty = || Ok(atoms::dirty().encode(env));
    let mut dec = match (wait, decoder.decoder.try_lock()) {
        (_, Ok(g)) => g,
        (_, Err(TryLockError::Poisoned(p))) => p.into_inner(),
        (Wait::Never, Err(TryLockError::WouldBlock)) => return dirty(),
        (Wait::Block, Err(TryLockError::WouldBlock)) => decoder.decoder.lock().unwrap_or_else(|e| e.into_inner()),
    };
    let Ok(mut slot) = buf.lock_writer(wait).map_err(|Busy| ()) else {
        return dirty();
    };
    let result = dec.feed(bin.as_slice(), &mut Slot(&mut slot));
    drop(slot);
    drop(dec);
    let rest = |used: usize| bin.make_subbinary(used, bin.len() - used);
    Ok(match result {
        Ok(Progress::More) => keys::more().encode(env),
        Ok(Progress::Done { used }) => (keys::done(), rest(used)?).encode(env),
        Ok(Progress::Full { used }) => (atoms::full(), rest(used)?).encode(env),
        Err(FeedError::Chunk(e)) => (atoms::error(), (keys::bad_chunk(), Atom::from_str(env, e.reason())?)).encode(env),
        Err(FeedError::Sink(e)) => (atoms::error(), write_error_atom(e)).encode(env),
        Err(FeedError::OutOfMemory) => (atoms::error(), atoms::enomem()).encode(env),
        Err(FeedError::Poisoned) => (atoms::error(), keys::decoder_failed()).encode(env),
    })
}
