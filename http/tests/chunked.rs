//! The chunked decoder: every framing rule, the limits, and resuming after a full sink.

use bodypipe::{Builder, WriteError};
use bodypipe_http::{ChunkError, ChunkedDecoder, ChunkedLimits, FeedError, Progress};

type Outcome = Result<(Vec<u8>, usize), FeedError<std::collections::TryReserveError>>;

/// Decodes `input` in one feed; the body and the bytes used, if it ended.
fn decode_with(input: &[u8], limits: ChunkedLimits) -> Outcome {
    let mut d = ChunkedDecoder::new(limits);
    let mut body = Vec::new();
    match d.feed(input, &mut body)? {
        Progress::Done { used } => Ok((body, used)),
        other => panic!("{:?}: expected the end of the body, got {other:?}", String::from_utf8_lossy(input)),
    }
}

fn decode(input: &[u8]) -> Outcome {
    decode_with(input, ChunkedLimits::default())
}

/// Decodes `input` one byte per feed.
fn decode_bytewise(input: &[u8], limits: ChunkedLimits) -> Outcome {
    let mut d = ChunkedDecoder::new(limits);
    let mut body = Vec::new();
    for (i, b) in input.iter().enumerate() {
        match d.feed(std::slice::from_ref(b), &mut body)? {
            Progress::More => {}
            Progress::Done { used } => return Ok((body, i + used)),
            Progress::Full { .. } => unreachable!("a Vec is never full"),
        }
        assert!(d.held() <= ChunkedDecoder::max_held(&limits));
    }
    panic!("{:?}: the body did not end", String::from_utf8_lossy(input));
}

fn chunk_error(input: &[u8]) -> ChunkError {
    chunk_error_with(input, ChunkedLimits::default())
}

/// The framing error of `input`, the same whether fed whole or byte by byte.
fn chunk_error_with(input: &[u8], limits: ChunkedLimits) -> ChunkError {
    let whole = match ChunkedDecoder::new(limits).feed(input, &mut Vec::new()) {
        Err(FeedError::Chunk(e)) => e,
        other => panic!("{:?}: expected a framing error, got {other:?}", String::from_utf8_lossy(input)),
    };
    let mut d = ChunkedDecoder::new(limits);
    let mut body = Vec::new();
    for b in input {
        match d.feed(std::slice::from_ref(b), &mut body) {
            Ok(Progress::More) => {}
            Err(FeedError::Chunk(e)) => {
                assert_eq!(e, whole, "{:?} byte by byte", String::from_utf8_lossy(input));
                return e;
            }
            other => panic!("{:?} byte by byte: {other:?}", String::from_utf8_lossy(input)),
        }
    }
    panic!("{:?} byte by byte: no error", String::from_utf8_lossy(input));
}

#[test]
fn a_body_and_what_follows_it() {
    let input = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    assert_eq!(decode(input).unwrap(), (b"hello world".to_vec(), 26));
    assert_eq!(decode_bytewise(input, ChunkedLimits::default()).unwrap(), (b"hello world".to_vec(), 26));
}

#[test]
fn extensions_are_checked_and_ignored() {
    for line in [
        "5;a=b",
        "5;a",
        "5;a;b=c",
        "5 ;a=b",
        "5\t; a = b",
        "5;a=\"quoted; \\\"string\\\"\"",
        "5; some; parameters=stuff",
        "5;foo=\"bar baz\"",
        "5;a=\"\"",
        "5;a=\"caf\u{e9}\"",
    ] {
        let input = format!("{line}\r\nhello\r\n0;last=1\r\n\r\n");
        assert_eq!(decode(input.as_bytes()).unwrap().0, b"hello", "{line:?}");
    }
    for line in [
        "5;",
        "5;=b",
        "5;a=",
        "5;a=\"open",
        "5;a=b c",
        "5;a b",
        "5;a=\"x\"y",
        "5;a ",
        "5;a=b;",
        "5;a=\"\x01\"",
        "5;a=\0",
        "5;a\x7f",
        "5;a=\"\\\x01\"",
    ] {
        let input = format!("{line}\r\nhello\r\n0\r\n\r\n");
        assert_eq!(chunk_error(input.as_bytes()), ChunkError::BadChunkExtension, "{line:?}");
    }
}

#[test]
fn chunk_sizes() {
    let ok = |line: &str, size: usize| {
        let input = format!("{line}\r\n{}\r\n0\r\n\r\n", "x".repeat(size));
        assert_eq!(decode(input.as_bytes()).unwrap().0.len(), size, "{line:?}");
    };
    ok("a", 10);
    ok("A", 10);
    ok("0000000000000010", 16);
    ok("1f", 31);
    for line in ["+5", "-5", " 5", "5 ", "5\t", "0x5", "6_0", "5x", "g", "", " ", "\t", ";a=b", " ;foo=bar", "-0", "+0"]
    {
        let input = format!("{line}\r\nhello\r\n0\r\n\r\n");
        assert_eq!(chunk_error(input.as_bytes()), ChunkError::BadChunkSize, "{line:?}");
    }
    // More than 16 hex digits, even if they are leading zeros.
    assert_eq!(chunk_error(b"00000000000000005\r\nhello\r\n"), ChunkError::ChunkSizeTooLong);
    assert_eq!(chunk_error(b"10000000000000000\r\n"), ChunkError::ChunkSizeTooLong);
    assert_eq!(ChunkError::ChunkSizeTooLong.status(), 400);
}

#[test]
fn the_largest_size_is_read_whole() {
    let mut d = ChunkedDecoder::new(ChunkedLimits::default());
    let mut body = Vec::new();
    assert_eq!(d.feed(b"FFFFFFFFFFFFFFFF\r\nabc", &mut body).unwrap(), Progress::More);
    assert_eq!(body, b"abc");
}

#[test]
fn an_empty_or_whitespace_size_line_is_never_a_last_chunk() {
    // httparse's parse_chunk_size reads these as size 0: a silent end of the body.
    for line in ["", " ", "\t", ";ext"] {
        let input = format!("5\r\nhello\r\n{line}\r\n\r\n");
        assert_eq!(chunk_error(input.as_bytes()), ChunkError::BadChunkSize, "{line:?}");
    }
}

#[test]
fn a_long_chunk_line_is_an_error_never_a_truncation() {
    // The case mochiweb read as size 0 after 8192 bytes.
    let long = format!("5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(8190));
    assert_eq!(chunk_error(long.as_bytes()), ChunkError::ChunkLineTooLong);
    let digits = format!("{}5\r\nhello\r\n0\r\n\r\n", "0".repeat(9000));
    assert!(matches!(chunk_error(digits.as_bytes()), ChunkError::ChunkLineTooLong | ChunkError::ChunkSizeTooLong));
    // At the limit exactly, it is fine, whole or byte by byte.
    let limits = ChunkedLimits { max_chunk_line: 64, ..Default::default() };
    let at_limit = format!("5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(62));
    assert_eq!(decode_with(at_limit.as_bytes(), limits).unwrap().0, b"hello");
    assert_eq!(decode_bytewise(at_limit.as_bytes(), limits).unwrap().0, b"hello");
    let over = format!("5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(63));
    assert_eq!(chunk_error_with(over.as_bytes(), limits), ChunkError::ChunkLineTooLong);
    // Refused as soon as the line is longer than the limit, without waiting for its end.
    let mut d = ChunkedDecoder::new(limits);
    let endless = format!("5;{}", "a".repeat(63));
    assert_eq!(d.feed(endless.as_bytes(), &mut Vec::new()), Err(FeedError::Chunk(ChunkError::ChunkLineTooLong)));
}

#[test]
fn bad_line_endings() {
    assert_eq!(chunk_error(b"5\nhello\r\n0\r\n\r\n"), ChunkError::BadLineEnding);
    assert_eq!(chunk_error(b"5\rhello\r\n0\r\n\r\n"), ChunkError::BadLineEnding);
    assert_eq!(chunk_error(b"5\n;\r\nhello\r\n0\r\n\r\n"), ChunkError::BadLineEnding);
    assert_eq!(chunk_error(b"5;ext=val\rue\r\nhello\r\n0\r\n\r\n"), ChunkError::BadLineEnding);
    assert_eq!(chunk_error(b"5;a\nhello\r\n0\r\n\r\n"), ChunkError::BadLineEnding);
    assert_eq!(chunk_error(b"5\r\nhello\r\n0\n\r\n"), ChunkError::BadLineEnding);
    assert_eq!(chunk_error(b"5\r\nhello\r\n0\r\n\n"), ChunkError::BadLineEnding);
    assert_eq!(chunk_error(b"5\r\nhello\r\n0\r\nX: y\n\r\n"), ChunkError::BadLineEnding);
}

#[test]
fn chunk_data_must_end_in_crlf() {
    for after in ["\n", "\rX", "XX", "  ", "\r\r\n", "x\r\n"] {
        let input = format!("5\r\nhello{after}0\r\n\r\n");
        assert_eq!(chunk_error(input.as_bytes()), ChunkError::BadChunkTerminator, "{after:?}");
    }
    // A chunk longer than its size is not "the rest as the next size line".
    assert_eq!(chunk_error(b"3\r\nhello\r\n0\r\n\r\n"), ChunkError::BadChunkTerminator);
}

#[test]
fn trailers_are_discarded() {
    let input = b"5\r\nhello\r\n0\r\nVary: *\r\nContent-Type: text/plain\r\nX-Empty:\r\n\r\nnext";
    let (body, used) = decode(input).unwrap();
    assert_eq!((body.as_slice(), &input[used..]), (&b"hello"[..], &b"next"[..]));
    assert_eq!(decode_bytewise(input, ChunkedLimits::default()).unwrap().0, b"hello");
}

#[test]
fn trailer_count_limit() {
    let limits = ChunkedLimits { max_trailers: 2, ..Default::default() };
    let trailers = |n: usize| {
        let mut s = String::from("0\r\n");
        for i in 0..n {
            s.push_str(&format!("X-{i}: {i}\r\n"));
        }
        s + "\r\n"
    };
    assert_eq!(decode_with(trailers(2).as_bytes(), limits).unwrap().1, trailers(2).len());
    assert_eq!(chunk_error_with(trailers(3).as_bytes(), limits), ChunkError::TooManyTrailers);
    let none = ChunkedLimits { max_trailers: 0, ..Default::default() };
    assert!(decode_with(trailers(0).as_bytes(), none).is_ok());
    assert_eq!(chunk_error_with(trailers(1).as_bytes(), none), ChunkError::TooManyTrailers);
    assert_eq!(chunk_error(trailers(101).as_bytes()), ChunkError::TooManyTrailers);
}

#[test]
fn trailer_size_limit() {
    let limits = ChunkedLimits { max_trailer_size: 20, ..Default::default() };
    // "X: 0123456789012345\r\n" is 21 bytes; one byte less fits.
    assert!(decode_with(b"0\r\nX: 012345678901234\r\n\r\n", limits).is_ok());
    assert_eq!(chunk_error_with(b"0\r\nX: 0123456789012345\r\n\r\n", limits), ChunkError::TrailersTooLarge);
    assert_eq!(chunk_error_with(b"0\r\nA: 1234567\r\nB: 1234567\r\n\r\n", limits), ChunkError::TrailersTooLarge);
    // Endless trailers are refused once past the limit, not when they end.
    for (limits, expected) in [
        (ChunkedLimits::default(), ChunkError::TooManyTrailers),
        (ChunkedLimits { max_trailers: 1000, ..Default::default() }, ChunkError::TrailersTooLarge),
    ] {
        let mut d = ChunkedDecoder::new(limits);
        assert_eq!(d.feed(b"0\r\n", &mut Vec::new()), Ok(Progress::More));
        let line = b"X-Filler: 0123456789abcdef0123456789abcdef\r\n";
        let mut fed = 0;
        let err = loop {
            match d.feed(line, &mut Vec::new()) {
                Ok(Progress::More) => fed += line.len(),
                Err(e) => break e,
                other => panic!("{other:?}"),
            }
            assert!(d.held() <= ChunkedDecoder::max_held(&limits));
        };
        assert_eq!(err, FeedError::Chunk(expected));
        assert!(fed <= limits.max_trailer_size, "{fed} bytes of trailers taken");
    }
}

#[test]
fn bad_trailers() {
    for line in [" folded", "No colon", "Bad Name: x", "X: a\x01b", "X: a\x7fb", ": v", "X : v"] {
        let input = format!("0\r\nA: b\r\n{line}\r\n\r\n");
        assert_eq!(chunk_error(input.as_bytes()), ChunkError::BadTrailer, "{line:?}");
    }
    for name in ["Content-Length", "transfer-encoding", "HOST", "Trailer", "TE", "Authorization"] {
        let input = format!("5\r\nhello\r\n0\r\n{name}: 99\r\n\r\n");
        assert_eq!(chunk_error(input.as_bytes()), ChunkError::ForbiddenTrailer, "{name}");
    }
}

#[test]
fn errors_are_sticky_and_done_is_final() {
    let mut d = ChunkedDecoder::new(ChunkedLimits::default());
    let mut body = Vec::new();
    assert_eq!(d.feed(b"zz\r\n", &mut body), Err(FeedError::Chunk(ChunkError::BadChunkSize)));
    assert_eq!(d.feed(b"5\r\nhello\r\n0\r\n\r\n", &mut body), Err(FeedError::Chunk(ChunkError::BadChunkSize)));
    assert!(body.is_empty());
    let mut d = ChunkedDecoder::new(ChunkedLimits::default());
    assert_eq!(d.feed(b"0\r\n\r\n", &mut body), Ok(Progress::Done { used: 5 }));
    assert!(d.is_done());
    assert_eq!(d.feed(b"5\r\nhello", &mut body), Ok(Progress::Done { used: 0 }));
    assert!(body.is_empty());
}

#[test]
fn an_empty_feed_changes_nothing() {
    let mut d = ChunkedDecoder::new(ChunkedLimits::default());
    let mut body = Vec::new();
    assert_eq!(d.feed(b"", &mut body), Ok(Progress::More));
    assert_eq!(d.feed(b"3\r", &mut body), Ok(Progress::More));
    assert_eq!(d.feed(b"", &mut body), Ok(Progress::More));
    assert_eq!(d.feed(b"\nabc\r\n0\r\n\r\n", &mut body), Ok(Progress::Done { used: 11 }));
    assert_eq!(body, b"abc");
}

/// Reads what is there without blocking.
fn drain(r: &bodypipe::Reader, out: &mut Vec<u8>) {
    let mut buf = [0u8; 64];
    while let Ok(n @ 1..) = r.try_read(&mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn a_full_ring_buffer_resumes_exactly() {
    let (mut w, r) = Builder::new().max_buffered(4).build().unwrap();
    let mut d = ChunkedDecoder::new(ChunkedLimits::default());
    let input = b"3\r\nabc\r\n4\r\ndefg\r\n2\r\nhi\r\n0\r\n\r\nNEXT";
    let mut rest: &[u8] = input;
    let mut read = Vec::new();
    let mut fulls = 0;
    loop {
        match d.feed(rest, &mut w).unwrap() {
            Progress::Full { used } => {
                fulls += 1;
                rest = &rest[used..];
                drain(&r, &mut read);
            }
            Progress::Done { used } => {
                rest = &rest[used..];
                break;
            }
            Progress::More => panic!("the input holds the whole body"),
        }
    }
    w.close().expect("a body of unknown length closes cleanly");
    drain(&r, &mut read);
    assert_eq!((read.as_slice(), rest), (&b"abcdefghi"[..], &b"NEXT"[..]));
    assert!(fulls >= 1);
}

#[test]
fn a_refusing_writer_poisons_the_decoder() {
    let (mut w, r) = Builder::new().max_size(4).build().unwrap();
    let mut d = ChunkedDecoder::new(ChunkedLimits::default());
    assert_eq!(d.feed(b"3\r\nabc\r\n2\r\nde\r\n", &mut w), Err(FeedError::Sink(WriteError::TooLarge)));
    assert_eq!(d.feed(b"0\r\n\r\n", &mut w), Err(FeedError::Poisoned));
    assert_eq!(r.buffered(), 3);
    let (mut w, r) = bodypipe::pipe();
    drop(r);
    let mut d = ChunkedDecoder::new(ChunkedLimits::default());
    assert_eq!(d.feed(b"3\r\nabc\r\n", &mut w), Err(FeedError::Sink(WriteError::Closed)));
}

#[test]
fn every_error_has_a_distinct_name() {
    let all = [
        ChunkError::BadChunkSize,
        ChunkError::ChunkSizeTooLong,
        ChunkError::BadChunkExtension,
        ChunkError::ChunkLineTooLong,
        ChunkError::BadLineEnding,
        ChunkError::BadChunkTerminator,
        ChunkError::TooManyTrailers,
        ChunkError::TrailersTooLarge,
        ChunkError::BadTrailer,
        ChunkError::ForbiddenTrailer,
    ];
    let mut names: Vec<&str> = all.iter().map(|e| e.reason()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len());
}
