//! Request heads: httparse for the syntax, then the limits and the framing decisions.
//!
//! httparse (1.10) is strict on the grammar of the request line and of field lines (tokens,
//! no control characters but HTAB in values, no obs-fold, single spaces in the request line)
//! but lenient on three things this module adds: it takes a bare LF as a line ending, it has no
//! size limits, and it does not look at what the fields mean.

use crate::error::HeadError;
use crate::framing;
use crate::limits::HeadLimits;
use crate::target;

/// One header field, as received (value without surrounding whitespace).
///
/// ```
/// use bodypipe_http::{parse_head, Field, HeadLimits, Parsed};
///
/// let Parsed::Complete(h) = parse_head(b"GET / HTTP/1.1\r\nX-Id:  7 \r\n\r\n", &HeadLimits::default())? else {
///     panic!("complete")
/// };
/// assert_eq!(h.fields, [Field { name: "X-Id", value: b"7" }]);
/// # Ok::<(), bodypipe_http::HeadError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The name, a token, in its original case.
    pub name: &'a str,
    /// The value: visible ASCII, SP, HTAB and obs-text bytes.
    pub value: &'a [u8],
}

/// How the body of a request is framed.
///
/// ```
/// use bodypipe_http::{parse_head, Body, HeadLimits, Parsed};
///
/// let body = |req: &[u8]| match parse_head(req, &HeadLimits::default()) {
///     Ok(Parsed::Complete(h)) => Some(h.body),
///     _ => None,
/// };
/// assert_eq!(body(b"GET / HTTP/1.1\r\n\r\n"), Some(Body::None));
/// assert_eq!(body(b"PUT / HTTP/1.1\r\nContent-Length: 3\r\n\r\n"), Some(Body::Length(3)));
/// assert_eq!(body(b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), Some(Body::Chunked));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked transfer coding: decode it with [`ChunkedDecoder`](crate::ChunkedDecoder).
    Chunked,
}

/// A parsed, accepted request head. Borrows the input.
///
/// ```
/// use bodypipe_http::{parse_head, HeadLimits, Parsed};
///
/// let req = b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b";
/// let Parsed::Complete(h) = parse_head(req, &HeadLimits::default())? else { panic!("complete") };
/// assert_eq!((h.target, h.minor_version, h.keep_alive, h.expect_continue), ("/a", 0, true, false));
/// assert_eq!(&req[h.len..], b"GET /b");
/// # Ok::<(), bodypipe_http::HeadError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'a> {
    /// The method, a token (case-sensitive).
    pub method: &'a str,
    /// The request target, checked against the method's allowed forms.
    pub target: &'a str,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// The header fields in order.
    pub fields: Vec<Field<'a>>,
    /// The body framing.
    pub body: Body,
    /// Whether the connection may carry another request after this one (the version's default
    /// and `Connection: close` / `keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` in an HTTP/1.1 request.
    pub expect_continue: bool,
    /// Bytes of the input the head takes, its final empty line included: the body (or the next
    /// request) starts there.
    pub len: usize,
}

/// The outcome of [`parse_head`].
///
/// ```
/// use bodypipe_http::{parse_head, HeadLimits, Parsed};
///
/// assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost:", &HeadLimits::default()), Ok(Parsed::Partial));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A complete, accepted head.
    Complete(Head<'a>),
    /// The head is not complete yet and no limit is exceeded so far.
    Partial,
}

/// Parses the request head at the start of `buf`.
///
/// Only the first `max_head_size + 1` bytes of `buf` are looked at, and the cost is linear in
/// them. A caller that accumulates a head as it arrives need only
/// call again when the new bytes contain a LF (a head can only be completed, or refused on a
/// line, by one), or when the buffer grows past `max_request_line` or `max_head_size`.
///
/// ```
/// use bodypipe_http::{parse_head, Body, HeadLimits, Parsed};
///
/// let limits = HeadLimits::default();
/// let buf = b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
/// let Parsed::Complete(head) = parse_head(buf, &limits)? else { panic!("complete") };
/// assert_eq!((head.method, head.target, head.body, head.keep_alive), ("POST", "/up", Body::Length(5), true));
/// assert_eq!(&buf[head.len..], b"hello");
/// assert_eq!(parse_head(b"POST /up HTTP/1.1\r\nHo", &limits)?, Parsed::Partial);
/// # Ok::<(), bodypipe_http::HeadError>(())
/// ```
pub fn parse_head<'a>(buf: &'a [u8], limits: &HeadLimits) -> Result<Parsed<'a>, HeadError> {
    // A head must end within max_head_size bytes: looking at one byte more tells a head that is
    // too large, however much more the buffer holds (a body, or garbage).
    let buf = &buf[..buf.len().min(limits.max_head_size.saturating_add(1))];
    // Each field line takes at least 4 bytes ("a:\r\n"), so more slots than that could never be
    // filled within max_head_size.
    let slots = limits.max_headers.min(limits.max_head_size / 4 + 1);
    let mut table = Vec::new();
    table.try_reserve_exact(slots.saturating_add(1)).map_err(|_| HeadError::OutOfMemory)?;
    // One slot more than allowed: httparse says TooManyHeaders only when it runs out of slots,
    // so the extra one lets `max_headers` fields through and refuses the next.
    table.resize(slots + 1, httparse::EMPTY_HEADER);
    let mut req = httparse::Request::new(&mut table);
    let status = req.parse(buf);
    let (method, target, minor) = (req.method, req.path, req.version);
    let count = req.headers.len();
    let len = match status {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return partial(buf, limits),
        Err(httparse::Error::Version) => return version_error(buf, limits),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(httparse::Error::HeaderName) if has_obs_fold(buf) => return Err(HeadError::ObsFold),
        Err(httparse::Error::HeaderName) => return Err(HeadError::BadHeaderName),
        Err(httparse::Error::HeaderValue) => return Err(HeadError::BadHeaderValue),
        // After the version (`HTTP/1.1x`), or at the start of a field line (`\rx`).
        Err(httparse::Error::NewLine) if request_line_is_whole(buf) => return Err(HeadError::BadLineEnding),
        Err(httparse::Error::NewLine) => return Err(HeadError::BadRequestLine),
        Err(_) => return Err(HeadError::BadRequestLine),
    };
    if count > limits.max_headers {
        return Err(HeadError::TooManyHeaders);
    }
    scan_lines(&buf[..len], limits)?;
    if len > limits.max_head_size {
        return Err(HeadError::HeadTooLarge);
    }
    let (Some(method), Some(target), Some(minor)) = (method, target, minor) else {
        return Err(HeadError::BadRequestLine);
    };
    target::check(method, target)?;
    table.truncate(count);
    let fields: Vec<Field<'a>> = table.into_iter().map(|h| Field { name: h.name, value: h.value }).collect();
    let framing = framing::decide(minor, &fields)?;
    Ok(Parsed::Complete(Head {
        method,
        target,
        minor_version: minor,
        fields,
        body: framing.body,
        keep_alive: framing.keep_alive,
        expect_continue: framing.expect_continue,
        len,
    }))
}

/// httparse needs more bytes: refuse anyway if a limit is already exceeded.
fn partial<'a>(buf: &[u8], limits: &HeadLimits) -> Result<Parsed<'a>, HeadError> {
    scan_lines(buf, limits)?;
    if buf.len() > limits.max_head_size {
        return Err(HeadError::HeadTooLarge);
    }
    Ok(Parsed::Partial)
}

/// Checks every line of `head` (complete or not): each ends in CRLF, the request line and the
/// field lines are within their limits.
fn scan_lines(head: &[u8], limits: &HeadLimits) -> Result<(), HeadError> {
    let mut at = 0;
    let mut request_line_seen = false;
    while at < head.len() {
        let (content, complete) = match memchr::memchr(b'\n', &head[at..]) {
            Some(i) => {
                let end = at + i;
                if end == 0 || head[end - 1] != b'\r' {
                    return Err(HeadError::BadLineEnding);
                }
                let content = &head[at..end - 1];
                at = end + 1;
                (content, true)
            }
            None => {
                // The line so far; a CR at its end is the start of its CRLF.
                let rest = &head[at..];
                at = head.len();
                (rest.strip_suffix(b"\r").unwrap_or(rest), false)
            }
        };
        if !request_line_seen {
            if content.is_empty() && complete {
                // An empty line before the request line (RFC 9112 §2.2).
                continue;
            }
            request_line_seen = true;
            if content.len() > limits.max_request_line {
                return Err(HeadError::RequestLineTooLong);
            }
        } else if content.len() > limits.max_header_line {
            return Err(HeadError::HeaderLineTooLong);
        }
    }
    Ok(())
}

/// httparse refuses any version but 1.0 and 1.1, even before it has all of it: tell a
/// well-formed other version (505) from a malformed one (400), waiting for the rest of the
/// version if what came so far can still become `HTTP/d.d`.
fn version_error<'a>(buf: &[u8], limits: &HeadLimits) -> Result<Parsed<'a>, HeadError> {
    let line = request_line(buf);
    let end = line.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(line.len());
    let version = line[..end].splitn(3, |&b| b == b' ').nth(2).unwrap_or_default();
    const SHAPE: &[u8] = b"HTTP/d.d";
    let shaped = version.len() <= SHAPE.len()
        && version.iter().zip(SHAPE).all(|(&b, &s)| if s == b'd' { b.is_ascii_digit() } else { b == s });
    match (shaped, &line[end..]) {
        (false, _) => Err(HeadError::BadVersion),
        // The line is not over: more of the version may come.
        (true, [] | [b'\r']) => partial(buf, limits),
        (true, [b'\r', b'\n', ..]) if version.len() == SHAPE.len() => Err(HeadError::UnsupportedVersion),
        (true, [b'\n', ..]) => Err(HeadError::BadLineEnding),
        (true, _) => Err(HeadError::BadVersion),
    }
}

/// The request line with its line ending (what there is of it), after any empty lines.
fn request_line(buf: &[u8]) -> &[u8] {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let line = &buf[start..];
    match memchr::memchr(b'\n', line) {
        Some(lf) => &line[..lf + 1],
        None => line,
    }
}

/// Whether the request line ends in a version and CRLF (a NewLine error is then in a field).
fn request_line_is_whole(buf: &[u8]) -> bool {
    let line = request_line(buf);
    line.ends_with(b" HTTP/1.1\r\n") || line.ends_with(b" HTTP/1.0\r\n")
}

/// Whether a field line starts with whitespace (obs-fold, RFC 9112 §5.2).
fn has_obs_fold(buf: &[u8]) -> bool {
    buf.windows(2).any(|w| w[0] == b'\n' && (w[1] == b' ' || w[1] == b'\t'))
}
