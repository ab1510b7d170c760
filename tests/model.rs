#![cfg(not(bodypipe_loom))]
//! Model-based property tests: random sequences of writes (`write`, `write_slices`), reads
//! (`try_read`, `try_read_full`, `try_read_views`, `read_blocking` and `read_until` with a
//! deadline already passed, `try_read_until` with random delimiters and limits, `take_lines` runs
//! partly given back), skips, seeks
//! (Start/Current/End), finds (random needles and pieces of the data, so many straddle segment
//! boundaries), views, closes (short of a declared length, which is an abort, and complete: an
//! operation fills the body up to its length) and aborts, against a plain `Vec<u8>` with a
//! position and an end state that makes every read fail once an aborted body is drained; in
//! unbounded and ring mode (random `max_buffered`), with and without `content_length` /
//! `max_size`, for segment sizes 1, 3, 7, 64 and the default sizing. 4000 cases of up to 300
//! operations per configuration.
//!
//! Every operation's result is compared with the model, and after every operation so are the
//! reader's `available`, `position`, `written` and `at_eof`. Ring mode is modelled exactly except
//! for the retained window: a backward seek may fail with `BeforeWindow` only for a target before
//! the segment holding the furthest position the cursor has reached, and once refused a target
//! stays refused; every successful backward seek is followed by reads compared with the model,
//! which is what catches a recycled segment overwriting bytes the reader can still reach.

use bodypipe::{Builder, CloseError, ReadError, Reader, SeekError, WriteError, Writer, INCOMPLETE_BODY};
use proptest::prelude::*;
use std::io::{ErrorKind, SeekFrom};
use std::time::Instant;

#[derive(Debug, Clone)]
enum Needle {
    Bytes(Vec<u8>),
    /// A piece of the unread data (taken at run time): `at` and `len` are reduced modulo it.
    FromData {
        at: usize,
        len: usize,
    },
}

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<u8>),
    WriteSlices(Vec<Vec<u8>>),
    TryRead(usize),
    /// A blocking read whose deadline has already passed: data, EOF, or `TimedOut`.
    Read(usize),
    TryReadUntil {
        delim: u8,
        limit: Option<usize>,
    },
    /// The blocking `read_until` with a deadline that has already passed.
    ReadUntil {
        delim: u8,
        limit: Option<usize>,
    },
    Skip(usize),
    SeekStart(u64),
    SeekCurrent(i64),
    SeekEnd(i64),
    Find {
        needle: Needle,
        start: u64,
        end: Option<u64>,
    },
    Views,
    Close,
    /// Writes up to the declared length (at most 64 bytes at a time), so closes are often
    /// complete, not only short.
    FillToLength,
    TryReadFull(usize),
    TryReadViews {
        min: usize,
        max: usize,
    },
    /// `take_lines`, then `give_back` of all but the first `used % (len + 1)` bytes of the run.
    TakeLines {
        delim: u8,
        max: usize,
        used: usize,
    },
    Abort,
}

const ALPHABET: &[u8] = b"ab\n-";

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(ALPHABET), 0..max)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => bytes(24).prop_map(Op::Write),
        2 => prop::collection::vec(bytes(10), 0..4).prop_map(Op::WriteSlices),
        6 => (0usize..30).prop_map(Op::TryRead),
        2 => (0usize..30).prop_map(Op::Read),
        4 => (prop::sample::select(ALPHABET), prop::option::of(0usize..20))
            .prop_map(|(delim, limit)| Op::TryReadUntil { delim, limit }),
        2 => (prop::sample::select(ALPHABET), prop::option::of(0usize..40))
            .prop_map(|(delim, limit)| Op::ReadUntil { delim, limit }),
        2 => (0usize..30).prop_map(Op::Skip),
        2 => (0u64..200).prop_map(Op::SeekStart),
        2 => (-40i64..40).prop_map(Op::SeekCurrent),
        1 => (-40i64..5).prop_map(Op::SeekEnd),
        5 => (
            prop_oneof![
                bytes(4).prop_map(Needle::Bytes),
                (any::<usize>(), 1usize..12).prop_map(|(at, len)| Needle::FromData { at, len }),
            ],
            0u64..30,
            prop::option::of(0u64..80),
        )
            .prop_map(|(needle, start, end)| Op::Find { needle, start, end }),
        2 => Just(Op::Views),
        1 => Just(Op::Close),
        2 => Just(Op::FillToLength),
        3 => (0usize..30).prop_map(Op::TryReadFull),
        3 => (0usize..30, 0usize..30).prop_map(|(min, max)| Op::TryReadViews { min, max }),
        1 => Just(Op::Abort),
        3 => (prop::sample::select(ALPHABET), 0usize..40, any::<usize>())
            .prop_map(|(delim, max, used)| Op::TakeLines { delim, max, used }),
    ]
}

#[derive(Debug, Clone, Copy)]
struct Config {
    segment: Option<usize>,
    max_buffered: Option<usize>,
    content_length: Option<u64>,
    max_size: Option<u64>,
}

impl Config {
    /// The segment size that fixes the ring-mode window (see `lib.rs`).
    fn ring_segment(&self) -> Option<u64> {
        let m = self.max_buffered?;
        Some(self.segment.unwrap_or((m / 4).clamp(4 << 10, 1 << 20)) as u64)
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum End {
    Open,
    Eof,
    Aborted,
}

struct Model {
    data: Vec<u8>,
    pos: usize,
    end: End,
    /// The furthest position the cursor has reached (ring mode window bound).
    furthest: usize,
    /// Ring mode: targets below this were refused as before the window.
    refused_below: usize,
    reason: Option<&'static str>,
}

impl Model {
    fn unread(&self) -> &[u8] {
        &self.data[self.pos..]
    }

    fn advance(&mut self, n: usize) {
        self.pos += n;
        self.furthest = self.furthest.max(self.pos);
    }
}

const REASON: &str = "model abort";

enum Line {
    Take(usize),
    Aborted,
    Incomplete,
}

/// What `try_read_until` does now, per the model.
fn expect_line(m: &Model, delim: u8, limit: Option<usize>) -> Line {
    let lim = limit.unwrap_or(usize::MAX);
    let unread = m.unread();
    let window = &unread[..unread.len().min(lim)];
    if lim == 0 {
        Line::Take(0)
    } else if let Some(i) = window.iter().position(|&b| b == delim) {
        Line::Take(i + 1)
    } else if unread.len() >= lim {
        Line::Take(lim)
    } else if m.end == End::Eof {
        // The rest (or nothing) at a clean end; after an abort a last line without its
        // delimiter is no line.
        Line::Take(unread.len())
    } else if m.end == End::Aborted {
        Line::Aborted
    } else {
        Line::Incomplete
    }
}

fn run(config: Config, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut b = Builder::new();
    if let Some(s) = config.segment {
        b = b.segment_size(s);
    }
    if let Some(m) = config.max_buffered {
        b = b.max_buffered(m);
    }
    if let Some(cl) = config.content_length {
        b = b.content_length(cl);
    }
    if let Some(ms) = config.max_size {
        b = b.max_size(ms);
    }
    let (w, r) = b.build().unwrap();
    let mut w: Option<Writer> = Some(w);
    let mut m = Model {
        data: Vec::new(),
        pos: 0,
        end: if config.content_length == Some(0) { End::Eof } else { End::Open },
        furthest: 0,
        refused_below: 0,
        reason: None,
    };
    let max_size = config.max_size.unwrap_or(bodypipe::DEFAULT_MAX_SIZE);

    for op in ops {
        match op {
            Op::Write(chunk) => write(&mut w, &mut m, &config, max_size, &[chunk])?,
            Op::WriteSlices(parts) => write(&mut w, &mut m, &config, max_size, &parts)?,
            Op::TryRead(n) => {
                let mut buf = vec![0u8; n];
                let got = r.try_read(&mut buf);
                check_read(&mut m, n, got, &buf, ReadError::WouldBlock)?;
            }
            Op::Read(n) => {
                let mut buf = vec![0u8; n];
                let got = r.read_deadline(&mut buf, Some(Instant::now()));
                check_read(&mut m, n, got, &buf, ReadError::TimedOut)?;
            }
            Op::TryReadUntil { delim, limit } => {
                let mut out = b"prefix".to_vec();
                let got = r.try_read_until(delim, &mut out, limit);
                match expect_line(&m, delim, limit) {
                    Line::Take(n) => {
                        let got = got.map_err(|e| TestCaseError::fail(format!("{e}")))?;
                        prop_assert_eq!(got, Some(n));
                        prop_assert_eq!(&out[..6], b"prefix");
                        prop_assert_eq!(&out[6..], &m.unread()[..n]);
                        m.advance(n);
                    }
                    Line::Aborted => {
                        prop_assert_eq!(got.map_err(|e| e.kind()).err(), Some(ErrorKind::ConnectionAborted));
                        prop_assert_eq!(out.as_slice(), b"prefix");
                    }
                    Line::Incomplete => {
                        prop_assert_eq!(got.ok(), Some(None), "an incomplete line must be None");
                        prop_assert_eq!(out.as_slice(), b"prefix");
                    }
                }
            }
            Op::ReadUntil { delim, limit } => {
                // The blocking read with a deadline already passed.
                let mut out = b"prefix".to_vec();
                let got = r.read_until_deadline(delim, &mut out, limit, Some(Instant::now()));
                match expect_line(&m, delim, limit) {
                    Line::Take(n) => {
                        let got = got.map_err(|e| TestCaseError::fail(format!("{e}")))?;
                        prop_assert_eq!(got, n);
                        prop_assert_eq!(&out[6..], &m.unread()[..n]);
                        m.advance(n);
                    }
                    Line::Aborted => {
                        // The bytes of the line that can never complete come with the error.
                        prop_assert_eq!(got.map_err(|e| e.kind()).err(), Some(ErrorKind::ConnectionAborted));
                        prop_assert_eq!(&out[..6], b"prefix");
                        prop_assert_eq!(&out[6..], m.unread());
                        let n = m.unread().len();
                        m.advance(n);
                    }
                    Line::Incomplete => {
                        let unread = m.unread().len();
                        let lim = limit.unwrap_or(usize::MAX);
                        if config.max_buffered.is_some_and(|mb| unread >= mb) {
                            // Ring mode, the writer blocked: the line is consumed as it arrives.
                            let take = lim.min(unread);
                            prop_assert_eq!(&out[6..], &m.unread()[..take]);
                            if take == lim {
                                prop_assert_eq!(got.ok(), Some(take));
                            } else {
                                prop_assert_eq!(got.map_err(|e| e.kind()).err(), Some(ErrorKind::TimedOut));
                            }
                            m.advance(take);
                        } else {
                            prop_assert_eq!(got.map_err(|e| e.kind()).err(), Some(ErrorKind::TimedOut));
                            prop_assert_eq!(out.as_slice(), b"prefix");
                        }
                    }
                }
            }
            Op::TakeLines { delim, max, used } => {
                let before = r.position();
                match r.take_lines(delim, max) {
                    Some(run) => {
                        let len = run.len();
                        prop_assert_eq!(run.start(), m.pos as u64);
                        prop_assert!(len >= 1 && len <= max, "run of {} bytes for max {}", len, max);
                        prop_assert_eq!(&run[..], &m.unread()[..len]);
                        prop_assert_eq!(run.last(), Some(&delim));
                        prop_assert_eq!(r.position(), run.end());
                        let used = used % (len + 1);
                        prop_assert!(r.give_back(&run, used), "nobody else moved the cursor");
                        m.furthest = m.furthest.max(m.pos + len);
                        m.advance(used);
                    }
                    // No complete line in reach, or the segment ends first.
                    None => prop_assert_eq!(r.position(), before, "no run consumes nothing"),
                }
            }
            Op::Skip(n) => {
                let expect = n.min(m.unread().len());
                prop_assert_eq!(r.skip(n), expect);
                m.advance(expect);
            }
            Op::SeekStart(p) => seek(&r, &mut m, &config, SeekFrom::Start(p))?,
            Op::SeekCurrent(d) => seek(&r, &mut m, &config, SeekFrom::Current(d))?,
            Op::SeekEnd(d) => seek(&r, &mut m, &config, SeekFrom::End(d))?,
            Op::Find { needle, start, end } => {
                let unread = m.unread();
                let needle = match needle {
                    Needle::Bytes(b) => b,
                    Needle::FromData { at, len } => {
                        if unread.is_empty() {
                            b"a".to_vec()
                        } else {
                            let at = at % unread.len();
                            unread[at..(at + len).min(unread.len())].to_vec()
                        }
                    }
                };
                let avail = unread.len() as u64;
                let stop = end.map_or(avail, |e| e.min(avail));
                let expect = if needle.is_empty() {
                    (start <= stop).then_some(start)
                } else if start >= stop || stop - start < needle.len() as u64 {
                    None
                } else {
                    unread[start as usize..stop as usize]
                        .windows(needle.len())
                        .position(|w| w == needle.as_slice())
                        .map(|i| start + i as u64)
                };
                prop_assert_eq!(r.find(&needle, start, end), expect, "needle {:?}", needle);
            }
            Op::Views => {
                let views = r.views();
                let cat: Vec<u8> = views.iter().flat_map(|v| v.iter().copied()).collect();
                prop_assert_eq!(cat.as_slice(), m.unread());
                prop_assert!(views.iter().all(|v| v.is_zero_copy() && !v.is_empty()));
                let one = r.view().unwrap();
                prop_assert_eq!(&*one, m.unread());
                prop_assert_eq!(one.is_zero_copy(), views.len() == 1);
            }
            Op::Close => {
                if let Some(w) = w.take() {
                    let got = w.close();
                    let written = m.data.len() as u64;
                    match config.content_length.filter(|&cl| written < cl) {
                        // A close short of the declared length is an abort, and says so.
                        Some(expected) => {
                            prop_assert_eq!(got, Err(CloseError::Incomplete { written, expected }));
                            m.end = End::Aborted;
                            m.reason = Some(INCOMPLETE_BODY);
                        }
                        None => {
                            prop_assert_eq!(got, Ok(()));
                            m.end = End::Eof;
                        }
                    }
                }
            }
            Op::FillToLength => {
                let Some(cl) = config.content_length else { continue };
                let n = usize::try_from(cl).unwrap_or(usize::MAX).saturating_sub(m.data.len()).min(64);
                let chunk: Vec<u8> = (0..n).map(|i| ALPHABET[i % ALPHABET.len()]).collect();
                write(&mut w, &mut m, &config, max_size, &[chunk])?;
            }
            Op::TryReadFull(n) => {
                let mut buf = vec![0u8; n];
                let got = r.try_read_full(&mut buf);
                let unread = m.unread().len();
                if n == 0 {
                    prop_assert_eq!(got.ok(), Some(0));
                } else if unread >= n || (m.end != End::Open && unread > 0) {
                    let k = n.min(unread);
                    prop_assert_eq!(got.ok(), Some(k));
                    prop_assert_eq!(&buf[..k], &m.unread()[..k]);
                    m.advance(k);
                } else {
                    let expect = match m.end {
                        End::Open => Err(ErrorKind::WouldBlock),
                        End::Eof => Ok(0),
                        End::Aborted => Err(ErrorKind::ConnectionAborted),
                    };
                    prop_assert_eq!(got.map_err(|e| e.kind()), expect);
                }
            }
            Op::TryReadViews { min, max } => {
                let got = r.try_read_views(min, max);
                let unread = m.unread().len();
                let need = min.clamp(1, max.max(1));
                if max == 0 {
                    prop_assert!(got.map_err(|e| e.kind()).is_ok_and(|v| v.is_empty()));
                } else if unread >= need || (m.end != End::Open && unread > 0) {
                    let views = got.map_err(|e| TestCaseError::fail(format!("{e}")))?;
                    let k = unread.min(max);
                    let cat: Vec<u8> = views.iter().flat_map(|v| v.iter().copied()).collect();
                    prop_assert_eq!(cat.as_slice(), &m.unread()[..k]);
                    prop_assert!(views.iter().all(|v| v.is_zero_copy() && !v.is_empty()));
                    m.advance(k);
                } else {
                    let expect = match m.end {
                        End::Open => Err(ErrorKind::WouldBlock),
                        End::Eof => Ok(0),
                        End::Aborted => Err(ErrorKind::ConnectionAborted),
                    };
                    prop_assert_eq!(got.map(|v| v.len()).map_err(|e| e.kind()), expect);
                }
            }
            Op::Abort => {
                if let Some(w) = w.take() {
                    w.abort(REASON);
                    if m.end == End::Open {
                        m.end = End::Aborted;
                        m.reason = Some(REASON);
                    }
                }
            }
        }
        // Invariants after every operation.
        prop_assert_eq!(r.buffered(), m.data.len() - m.pos);
        prop_assert_eq!(r.position(), m.pos as u64);
        prop_assert_eq!(r.written(), m.data.len() as u64);
        // An aborted body never reaches EOF: reads raise instead.
        prop_assert_eq!(r.at_eof(), m.end == End::Eof && m.pos >= m.data.len());
        prop_assert_eq!(r.is_ended(), m.end != End::Open);
        if let Some(w) = &w {
            prop_assert_eq!(w.written(), m.data.len() as u64);
            prop_assert_eq!(w.buffered(), (m.data.len() - m.pos) as u64);
        }
    }

    // The end: drop an open writer (an abort), then drain and compare.
    if let Some(w) = w.take() {
        drop(w);
        if m.end == End::Open {
            m.end = End::Aborted;
            m.reason = Some("writer dropped");
        }
    }
    prop_assert_eq!(r.abort_reason(), m.reason.map(str::to_owned));
    let mut rest = Vec::new();
    let err = loop {
        let mut buf = [0u8; 13];
        match r.try_read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => rest.extend_from_slice(&buf[..n]),
            Err(e) => break Some(e),
        }
    };
    prop_assert_eq!(rest.as_slice(), m.unread());
    match m.end {
        End::Eof => prop_assert!(err.is_none()),
        End::Aborted => {
            let e = err.expect("an abort error");
            prop_assert_eq!(e.kind(), ErrorKind::ConnectionAborted);
            prop_assert_eq!(Some(e.to_string()), m.reason.map(str::to_owned));
        }
        End::Open => unreachable!(),
    }
    prop_assert_eq!(r.at_eof(), m.end == End::Eof);
    // Unbounded mode keeps everything: the whole body is still there from 0.
    if config.max_buffered.is_none() {
        prop_assert_eq!(r.seek(SeekFrom::Start(0)).unwrap(), 0);
        let all: Vec<u8> = r.views().iter().flat_map(|v| v.iter().copied()).collect();
        prop_assert_eq!(all, m.data);
    }
    Ok(())
}

fn write(
    w: &mut Option<Writer>,
    m: &mut Model,
    config: &Config,
    max_size: u64,
    parts: &[Vec<u8>],
) -> Result<(), TestCaseError> {
    let Some(writer) = w.as_mut() else { return Ok(()) };
    let n: usize = parts.iter().map(Vec::len).sum();
    let new_len = (m.data.len() + n) as u64;
    let unread = m.data.len() - m.pos;
    let expect = if config.content_length.is_some_and(|cl| new_len > cl) {
        Err(WriteError::ExceedsContentLength)
    } else if new_len > max_size {
        Err(WriteError::TooLarge)
    } else if n > 0 && config.max_buffered.is_some_and(|mb| unread >= mb) {
        Err(WriteError::Full)
    } else {
        Ok(())
    };
    let got = if parts.len() == 1 { writer.write(&parts[0]) } else { writer.write_slices(parts) };
    prop_assert_eq!(got, expect);
    if got.is_ok() {
        for p in parts {
            m.data.extend_from_slice(p);
        }
        if config.content_length == Some(m.data.len() as u64) {
            m.end = End::Eof;
        }
    }
    Ok(())
}

fn check_read(
    m: &mut Model,
    n: usize,
    got: Result<usize, ReadError>,
    buf: &[u8],
    nothing_yet: ReadError,
) -> Result<(), TestCaseError> {
    let unread = m.unread().len();
    if n == 0 {
        prop_assert_eq!(got.ok(), Some(0));
    } else if unread > 0 {
        let k = n.min(unread);
        prop_assert_eq!(got.ok(), Some(k));
        prop_assert_eq!(&buf[..k], &m.unread()[..k]);
        m.advance(k);
    } else {
        match m.end {
            End::Eof => prop_assert_eq!(got.ok(), Some(0)),
            End::Aborted => {
                let reason = m.reason.unwrap_or(REASON).to_owned();
                prop_assert_eq!(got, Err(ReadError::Aborted { reason }));
            }
            End::Open => prop_assert_eq!(got, Err(nothing_yet)),
        }
    }
    Ok(())
}

fn seek(r: &Reader, m: &mut Model, config: &Config, to: SeekFrom) -> Result<(), TestCaseError> {
    let len = m.data.len() as i128;
    let target = match to {
        SeekFrom::Start(p) => Ok(i128::from(p)),
        SeekFrom::Current(d) => Ok(m.pos as i128 + i128::from(d)),
        SeekFrom::End(d) if m.end != End::Open => Ok(len + i128::from(d)),
        SeekFrom::End(_) => Err(SeekError::EndUnknown),
    };
    let expect = target.and_then(|t| {
        if t < 0 {
            Err(SeekError::BeforeStart)
        } else if t > len {
            Err(SeekError::PastWritten)
        } else {
            Ok(t as usize)
        }
    });
    let got = r.seek(to);
    match (expect, got) {
        (Ok(t), Ok(p)) => {
            prop_assert_eq!(p, t as u64);
            if let Some(_s) = config.ring_segment() {
                prop_assert!(
                    t >= m.refused_below,
                    "seek to {} succeeded after one below {} was refused",
                    t,
                    m.refused_below
                );
            }
            m.pos = t;
            m.furthest = m.furthest.max(t);
        }
        (Ok(t), Err(SeekError::BeforeWindow)) => {
            let s = config.ring_segment().ok_or_else(|| TestCaseError::fail("BeforeWindow in unbounded mode"))?;
            let window_bound = (m.furthest as u64 / s) * s;
            prop_assert!(
                (t as u64) < window_bound,
                "BeforeWindow for {} although the cursor never passed the segment start {}",
                t,
                window_bound
            );
            m.refused_below = m.refused_below.max(t + 1);
        }
        (expect, got) => prop_assert_eq!(expect.map(|t| t as u64), got),
    }
    Ok(())
}

fn config_strategy(segment: Option<usize>, ring: bool) -> impl Strategy<Value = Config> {
    let max_buffered = if ring { (1usize..64).prop_map(Some).boxed() } else { Just(None).boxed() };
    (max_buffered, prop::option::weighted(0.25, 0u64..400), prop::option::weighted(0.25, 0u64..400)).prop_map(
        move |(max_buffered, content_length, max_size)| {
            // A content length above max_size cannot be built; keep it within.
            let content_length = match (content_length, max_size) {
                (Some(cl), Some(ms)) => Some(cl.min(ms)),
                (cl, _) => cl,
            };
            Config { segment, max_buffered, content_length, max_size }
        },
    )
}

const CASES: u32 = 4000;

macro_rules! model_test {
    ($name:ident, $segment:expr, $ring:expr) => {
        proptest! {
            #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]
            #[test]
            fn $name(config in config_strategy($segment, $ring), ops in prop::collection::vec(op(), 0..300)) {
                run(config, ops)?;
            }
        }
    };
}

model_test!(unbounded_segment_1, Some(1), false);
model_test!(unbounded_segment_3, Some(3), false);
model_test!(unbounded_segment_7, Some(7), false);
model_test!(unbounded_segment_64, Some(64), false);
model_test!(unbounded_default_sizing, None, false);
model_test!(ring_segment_1, Some(1), true);
model_test!(ring_segment_3, Some(3), true);
model_test!(ring_segment_7, Some(7), true);
model_test!(ring_segment_64, Some(64), true);
model_test!(ring_default_sizing, None, true);

/// The window rule is not vacuous: with tiny segments, reading past a segment and seeking back
/// before it is refused, while seeking back within the current segment works.
#[test]
fn ring_window_is_enforced() {
    let (mut w, r) = Builder::new().max_buffered(64).segment_size(3).build().unwrap();
    w.write(b"0123456789").unwrap();
    r.skip(7);
    assert!(r.seek(SeekFrom::Start(6)).is_ok());
    let e = r.seek(SeekFrom::Start(5)).unwrap_err();
    assert_eq!(e, SeekError::BeforeWindow);
}
