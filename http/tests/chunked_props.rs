//! Property tests of the chunked decoder against a reference model: a plain decoder of the
//! whole input at once, written independently (one byte-at-a-time state machine for the
//! chunk-size line), that says whether an input is a valid body (and which), invalid, or
//! incomplete. The streaming decoder, fed the same input cut at random places into a sink
//! that randomly refuses writes as full, must agree exactly: same body, same bytes used, an
//! error for every invalid input (never a truncated or a wrong body), and no error while the
//! input is only incomplete. Its own memory never exceeds its limits.

use std::collections::VecDeque;
use std::convert::Infallible;

use bodypipe_http::{ChunkedDecoder, ChunkedLimits, FeedError, Progress, Refusal, Sink};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// The reference model.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Model {
    /// A whole body, ending after `used` bytes.
    Valid { body: Vec<u8>, used: usize },
    /// Broken framing; `body` is the data before the fault.
    Invalid { body: Vec<u8> },
    /// Fine so far, not finished; `body` is the data so far.
    Incomplete { body: Vec<u8> },
}

const FORBIDDEN: [&str; 6] = ["content-length", "transfer-encoding", "host", "trailer", "te", "authorization"];

fn tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn ows(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// A line at `at`: `Err` if it is already wrong (too long, a stray CR, a LF without CR),
/// `Ok(None)` if the input ends inside it, else its content and where the next line starts.
fn model_line(input: &[u8], at: usize, limit: usize) -> Result<Option<(&[u8], usize)>, ()> {
    let rest = &input[at..];
    let (content, next) = match rest.iter().position(|&c| c == b'\n') {
        Some(lf) if lf > 0 && rest[lf - 1] == b'\r' => (&rest[..lf - 1], Some(at + lf + 1)),
        Some(_) => return Err(()),
        None => (rest.strip_suffix(b"\r").unwrap_or(rest), None),
    };
    if content.len() > limit || content.contains(&b'\r') {
        return Err(());
    }
    Ok(next.map(|n| (content, n)))
}

/// The chunk size of a line, or `None` if the line is not `1*16HEXDIG *(BWS ";" BWS name
/// [BWS "=" BWS (token / quoted-string)])`.
fn model_size(line: &[u8]) -> Option<u64> {
    #[derive(Clone, Copy, PartialEq)]
    enum S {
        Digits,
        BeforeSemi,
        BeforeName,
        Name,
        AfterName,
        BeforeValue,
        Token,
        Quoted,
        Escape,
        AfterQuote,
    }
    let (mut s, mut digits, mut size) = (S::Digits, 0, 0u64);
    for &c in line {
        s = match s {
            S::Digits if c.is_ascii_hexdigit() => {
                digits += 1;
                if digits > 16 {
                    return None;
                }
                size = size * 16 + u64::from((c as char).to_digit(16)?);
                S::Digits
            }
            _ if digits == 0 => return None,
            S::Digits | S::BeforeSemi | S::Token | S::AfterQuote | S::AfterName | S::Name if c == b';' => S::BeforeName,
            S::Digits | S::BeforeSemi | S::Token | S::AfterQuote if ows(c) => S::BeforeSemi,
            S::BeforeName if ows(c) => S::BeforeName,
            S::BeforeName | S::Name if tchar(c) => S::Name,
            S::Name | S::AfterName if ows(c) => S::AfterName,
            S::Name | S::AfterName if c == b'=' => S::BeforeValue,
            S::BeforeValue if ows(c) => S::BeforeValue,
            S::BeforeValue if c == b'"' => S::Quoted,
            S::BeforeValue | S::Token if tchar(c) => S::Token,
            S::Quoted if c == b'"' => S::AfterQuote,
            S::Quoted if c == b'\\' => S::Escape,
            S::Quoted if matches!(c, b'\t' | b' ' | 0x21 | 0x23..=0x5B | 0x5D..=0x7E | 0x80..) => S::Quoted,
            S::Escape if matches!(c, b'\t' | b' ' | 0x21..=0x7E | 0x80..) => S::Quoted,
            _ => return None,
        };
    }
    (digits > 0 && matches!(s, S::Digits | S::Name | S::Token | S::AfterQuote)).then_some(size)
}

/// Whether a trailer line is `token ":" *(HTAB / SP / VCHAR / obs-text)` and allowed.
fn model_trailer(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&c| c == b':') else {
        return false;
    };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    !name.is_empty()
        && name.iter().all(|&c| tchar(c))
        && value.iter().all(|&c| matches!(c, b'\t' | b' '..=0x7E | 0x80..))
        && !FORBIDDEN.iter().any(|f| name.eq_ignore_ascii_case(f.as_bytes()))
}

fn model(input: &[u8], limits: &ChunkedLimits) -> Model {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let (line, next) = match model_line(input, at, limits.max_chunk_line) {
            Err(()) => return Model::Invalid { body },
            Ok(None) => return Model::Incomplete { body },
            Ok(Some(l)) => l,
        };
        let Some(size) = model_size(line) else {
            return Model::Invalid { body };
        };
        at = next;
        if size == 0 {
            break;
        }
        let avail = (input.len() - at) as u64;
        if avail < size {
            body.extend_from_slice(&input[at..]);
            return Model::Incomplete { body };
        }
        body.extend_from_slice(&input[at..at + size as usize]);
        at += size as usize;
        for want in [b'\r', b'\n'] {
            match input.get(at) {
                None => return Model::Incomplete { body },
                Some(&c) if c != want => return Model::Invalid { body },
                Some(_) => at += 1,
            }
        }
    }
    let (mut count, mut bytes) = (0, 0);
    loop {
        let limit = if count >= limits.max_trailers { 0 } else { (limits.max_trailer_size - bytes).saturating_sub(2) };
        match model_line(input, at, limit) {
            Err(()) => return Model::Invalid { body },
            Ok(None) => return Model::Incomplete { body },
            Ok(Some((&[], next))) => return Model::Valid { body, used: next },
            Ok(Some((line, next))) => {
                if !model_trailer(line) {
                    return Model::Invalid { body };
                }
                count += 1;
                bytes += line.len() + 2;
                at = next;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Driving the streaming decoder.

/// A sink that refuses writes as full when its pattern says so, then accepts everything.
struct Flaky {
    got: Vec<u8>,
    pattern: VecDeque<bool>,
}

impl Sink for Flaky {
    type Error = Infallible;

    fn write_all(&mut self, data: &[u8]) -> Result<(), Refusal<Infallible>> {
        assert!(!data.is_empty(), "the decoder never writes nothing");
        if self.pattern.pop_front() == Some(true) {
            return Err(Refusal::Full);
        }
        self.got.extend_from_slice(data);
        Ok(())
    }
}

/// Feeds `input` cut at `cuts`, resuming after every `Full` with exactly the rest; checks the
/// decoder's memory after every feed. Returns the outcome in the model's terms.
fn stream(input: &[u8], cuts: &[usize], limits: ChunkedLimits, full: Vec<bool>) -> Model {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c % (input.len() + 1)).collect();
    cuts.push(0);
    cuts.push(input.len());
    cuts.sort_unstable();
    let mut d = ChunkedDecoder::new(limits);
    let mut sink = Flaky { got: Vec::new(), pattern: full.into() };
    for w in cuts.windows(2) {
        let (mut base, end) = (w[0], w[1]);
        loop {
            let result = d.feed(&input[base..end], &mut sink);
            assert!(d.held() <= ChunkedDecoder::max_held(&limits), "held {} > {:?}", d.held(), limits);
            match result {
                Ok(Progress::More) => break,
                Ok(Progress::Full { used }) => {
                    assert!(used <= end - base);
                    base += used;
                }
                Ok(Progress::Done { used }) => {
                    assert!(d.is_done());
                    return Model::Valid { body: sink.got, used: base + used };
                }
                Err(FeedError::Chunk(_)) => return Model::Invalid { body: sink.got },
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
    }
    Model::Incomplete { body: sink.got }
}

// ---------------------------------------------------------------------------------------------
// Generators.

/// A valid chunked body: its encoding, which bytes are framing (not data), and the body.
#[derive(Debug, Clone)]
struct Encoded {
    bytes: Vec<u8>,
    framing: Vec<bool>,
    body: Vec<u8>,
    used: usize,
}

impl Encoded {
    fn push(&mut self, bytes: &[u8], framing: bool) {
        self.bytes.extend_from_slice(bytes);
        self.framing.extend(std::iter::repeat_n(framing, bytes.len()));
    }
}

fn token() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[A-Za-z0-9!#$%&'*+.^_`|~-]{1,6}").unwrap()
}

fn bws() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[ \t]{0,2}").unwrap()
}

/// `BWS ";" BWS name [ BWS "=" BWS value ]`.
fn extension() -> impl Strategy<Value = String> {
    let quoted =
        proptest::string::string_regex(r#"([ !#-\[\]-~]|\\[ -~]){0,6}"#).unwrap().prop_map(|s| format!("\"{s}\""));
    let value = prop_oneof![token(), quoted];
    (bws(), bws(), token(), proptest::option::of((bws(), bws(), value))).prop_map(|(a, b, name, v)| {
        let v = v.map(|(c, d, v)| format!("{c}={d}{v}")).unwrap_or_default();
        format!("{a};{b}{name}{v}")
    })
}

fn size_line(size: usize) -> impl Strategy<Value = String> {
    (0usize..3, any::<bool>(), proptest::collection::vec(extension(), 0..3)).prop_map(move |(zeros, upper, exts)| {
        let hex = if upper { format!("{size:X}") } else { format!("{size:x}") };
        format!("{}{hex}{}", "0".repeat(zeros), exts.concat())
    })
}

fn trailer() -> impl Strategy<Value = String> {
    let value = proptest::string::string_regex("[ -~\t]{0,12}").unwrap();
    (token().prop_filter("allowed", |t| !FORBIDDEN.iter().any(|f| t.eq_ignore_ascii_case(f))), bws(), value)
        .prop_map(|(n, w, v)| format!("{n}:{w}{}", v.trim_matches(|c| c == ' ' || c == '\t')))
}

fn encoded() -> impl Strategy<Value = Encoded> {
    let data = proptest::collection::vec(any::<u8>(), 1..40);
    let chunk = data.prop_flat_map(|d| (size_line(d.len()), Just(d)));
    (
        proptest::collection::vec(chunk, 0..6),
        size_line(0),
        proptest::collection::vec(trailer(), 0..4),
        proptest::collection::vec(any::<u8>(), 0..12),
    )
        .prop_map(|(chunks, last, trailers, suffix)| {
            let mut e = Encoded { bytes: Vec::new(), framing: Vec::new(), body: Vec::new(), used: 0 };
            for (line, data) in chunks {
                e.push(format!("{line}\r\n").as_bytes(), true);
                e.push(&data, false);
                e.push(b"\r\n", true);
                e.body.extend_from_slice(&data);
            }
            e.push(format!("{last}\r\n").as_bytes(), true);
            for t in trailers {
                e.push(format!("{t}\r\n").as_bytes(), true);
            }
            e.push(b"\r\n", true);
            e.used = e.bytes.len();
            e.push(&suffix, false);
            e
        })
}

fn limits() -> impl Strategy<Value = ChunkedLimits> {
    prop_oneof![
        2 => Just(ChunkedLimits::default()),
        1 => (1usize..80, 0usize..5, 0usize..120).prop_map(|(l, n, s)| ChunkedLimits {
            max_chunk_line: l,
            max_trailers: n,
            max_trailer_size: s,
        }),
    ]
}

/// A corruption of one place, preferably in the framing.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => proptest::sample::select(b"\r\n \t;=\"\\+-0fFgx:,\0\x7f\xff".to_vec()),
        1 => any::<u8>(),
    ]
}

fn mutation() -> impl Strategy<Value = (Mutation, bool)> {
    let m = prop_oneof![
        (any::<usize>(), interesting_byte()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<usize>(), interesting_byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ];
    (m, proptest::bool::weighted(0.85))
}

/// Applies `m` at a position chosen among the framing bytes (if `in_framing`) or anywhere.
fn mutate(e: &Encoded, (m, in_framing): &(Mutation, bool)) -> Vec<u8> {
    let framing: Vec<usize> = (0..e.used).filter(|&i| e.framing[i]).collect();
    let pick = |i: usize| if *in_framing { framing[i % framing.len()] } else { i % e.bytes.len() };
    let mut b = e.bytes.clone();
    match *m {
        Mutation::Replace(i, c) => {
            let i = pick(i);
            b[i] = c;
        }
        Mutation::Insert(i, c) => b.insert(pick(i), c),
        Mutation::Delete(i) => {
            b.remove(pick(i));
        }
        Mutation::Truncate(i) => b.truncate(pick(i)),
    }
    b
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(any::<usize>(), 0..24)
}

fn full_pattern() -> impl Strategy<Value = Vec<bool>> {
    proptest::collection::vec(proptest::bool::weighted(0.4), 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Every valid encoding gives exactly its body and stops exactly at its end, whatever the
    /// cuts and however often the sink is full.
    #[test]
    fn valid_bodies_decode_exactly(e in encoded(), cuts in cuts(), full in full_pattern()) {
        let limits = ChunkedLimits::default();
        prop_assert_eq!(model(&e.bytes, &limits), Model::Valid { body: e.body.clone(), used: e.used });
        prop_assert_eq!(stream(&e.bytes, &cuts, limits, full), Model::Valid { body: e.body, used: e.used });
    }

    /// Under any limits, and after any corruption, the decoder agrees with the model: an error
    /// for every invalid input, with the sink holding only the data before the fault.
    #[test]
    fn corrupted_bodies_agree_with_the_model(
        e in encoded(), m in mutation(), limits in limits(), cuts in cuts(), full in full_pattern()
    ) {
        let input = mutate(&e, &m);
        prop_assert_eq!(stream(&input, &cuts, limits, full), model(&input, &limits));
    }

    /// Unlimited inputs under the limits: arbitrary bytes, or a valid start followed by an
    /// endless line, never make the decoder hold more than its limits.
    #[test]
    fn arbitrary_bytes_agree_with_the_model(
        input in proptest::collection::vec(interesting_byte(), 0..300), limits in limits(), cuts in cuts()
    ) {
        prop_assert_eq!(stream(&input, &cuts, limits, Vec::new()), model(&input, &limits));
    }

    #[test]
    fn endless_lines_are_refused_within_the_limits(
        prefix in prop_oneof![Just(&b""[..]), Just(&b"5;"[..]), Just(&b"0\r\n"[..]), Just(&b"0\r\nX: "[..])],
        filler in interesting_byte().prop_filter("not a line end", |b| *b != b'\n' && *b != b'\r'),
        len in 1usize..600,
        limits in limits(),
        cuts in cuts(),
    ) {
        let mut input = prefix.to_vec();
        input.extend(std::iter::repeat_n(filler, len));
        prop_assert_eq!(stream(&input, &cuts, limits, Vec::new()), model(&input, &limits));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every single cut, and one byte per feed: a line, a CRLF or a trailer cut anywhere.
    #[test]
    fn every_cut_point(e in encoded()) {
        let expected = Model::Valid { body: e.body.clone(), used: e.used };
        for cut in 0..=e.bytes.len() {
            prop_assert_eq!(stream(&e.bytes, &[cut], ChunkedLimits::default(), Vec::new()), expected.clone());
        }
        let all: Vec<usize> = (0..e.bytes.len()).collect();
        prop_assert_eq!(stream(&e.bytes, &all, ChunkedLimits::default(), vec![true; 8]), expected);
    }
}

// ---------------------------------------------------------------------------------------------
// The model and the generators are themselves checked, so the properties cannot pass vacuously.

#[test]
fn the_model_knows_the_rules() {
    let l = ChunkedLimits::default();
    let valid = |s: &[u8], body: &[u8]| assert_eq!(model(s, &l), Model::Valid { body: body.to_vec(), used: s.len() });
    valid(b"5\r\nhello\r\n0\r\n\r\n", b"hello");
    valid(b"5;a=b\r\nhello\r\n0\r\nX: y\r\n\r\n", b"hello");
    valid(b"5 ; a = \"q \\\" s\" ;b\r\nhello\r\n000\r\n\r\n", b"hello");
    for bad in [
        &b"+5\r\n"[..],
        b"\r\n",
        b";a\r\n",
        b"5 \r\n",
        b"5;a \r\n",
        b"5\nhello",
        b"00000000000000005\r\n",
        b"5\r\nhelloX\r\n",
        b"0\r\n folded\r\n\r\n",
        b"0\r\nHost: x\r\n\r\n",
        b"5\r\r\n",
    ] {
        assert!(matches!(model(bad, &l), Model::Invalid { .. }), "{:?}", String::from_utf8_lossy(bad));
    }
    for partial in [&b""[..], b"5", b"5\r", b"5\r\nhel", b"5\r\nhello\r", b"0\r\nX: y\r\n"] {
        assert!(matches!(model(partial, &l), Model::Incomplete { .. }), "{:?}", String::from_utf8_lossy(partial));
    }
}

#[test]
fn corruptions_are_mostly_invalid() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut invalid, mut incomplete, mut valid) = (0, 0, 0);
    for _ in 0..2000 {
        let e = encoded().new_tree(&mut runner).unwrap().current();
        let m = mutation().new_tree(&mut runner).unwrap().current();
        match model(&mutate(&e, &m), &ChunkedLimits::default()) {
            Model::Invalid { .. } => invalid += 1,
            Model::Incomplete { .. } => incomplete += 1,
            Model::Valid { .. } => valid += 1,
        }
    }
    // Each kind is well represented: the property checks errors, waits and successes alike.
    assert!(invalid > 800, "{invalid} invalid, {incomplete} incomplete, {valid} valid");
    assert!(incomplete > 100 && valid > 100, "{invalid} invalid, {incomplete} incomplete, {valid} valid");
}

/// A ring-mode `bodypipe::Writer` as the sink, with a reader that drains a random amount each
/// time the decoder reports it full: the reader gets exactly the body.
fn through_ring(e: &Encoded, cuts: &[usize], max_buffered: usize, reads: &[usize]) -> (Vec<u8>, usize) {
    let (mut w, r) = bodypipe::Builder::new().max_buffered(max_buffered).build().unwrap();
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c % (e.bytes.len() + 1)).collect();
    cuts.extend([0, e.bytes.len()]);
    cuts.sort_unstable();
    let mut d = ChunkedDecoder::new(ChunkedLimits::default());
    let mut got = Vec::new();
    let mut reads = reads.iter().cycle();
    let mut read_some = |got: &mut Vec<u8>| {
        let mut buf = vec![0u8; *reads.next().unwrap_or(&1)];
        if let Ok(n) = r.try_read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    };
    for win in cuts.windows(2) {
        let (mut base, end) = (win[0], win[1]);
        loop {
            match d.feed(&e.bytes[base..end], &mut w).unwrap() {
                Progress::More => break,
                Progress::Full { used } => {
                    base += used;
                    read_some(&mut got);
                }
                Progress::Done { used } => {
                    w.close().expect("a body of unknown length closes cleanly");
                    let mut buf = [0u8; 256];
                    while let Ok(n @ 1..) = r.try_read(&mut buf) {
                        got.extend_from_slice(&buf[..n]);
                    }
                    return (got, base + used);
                }
            }
        }
    }
    panic!("the body did not end");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn a_ring_writer_gets_exactly_the_body(
        e in encoded(),
        cuts in cuts(),
        max_buffered in 1usize..48,
        reads in proptest::collection::vec(1usize..64, 1..8),
    ) {
        prop_assert_eq!(through_ring(&e, &cuts, max_buffered, &reads), (e.body.clone(), e.used));
    }
}
