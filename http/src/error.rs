//! One error type per operation: [`HeadError`] for a request head, [`ChunkError`] for the framing
//! of a chunked body, [`FeedError`] for one feed of the decoder.

use std::fmt;

/// Why a request head was refused. Every variant carries the HTTP status to answer with
/// ([`status`](Self::status)) and a stable name ([`reason`](Self::reason)); after any of them
/// the connection must be closed, since where the next request would start is unknown.
///
/// ```
/// use bodypipe_http::{parse_head, HeadError, HeadLimits};
///
/// let err = parse_head(b"GET / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", &HeadLimits::default()).unwrap_err();
/// assert_eq!(err, HeadError::BadContentLength);
/// assert_eq!((err.status(), err.reason()), (400, "bad_content_length"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeadError {
    /// The request line is malformed (method, target or spacing).
    BadRequestLine,
    /// The request target is not in a form its method allows (RFC 9112 §3.2).
    BadTarget,
    /// The request line is longer than `max_request_line`.
    RequestLineTooLong,
    /// The protocol version is malformed.
    BadVersion,
    /// A well-formed version other than HTTP/1.0 and HTTP/1.1.
    UnsupportedVersion,
    /// A line of the head does not end in CRLF (a bare LF or CR).
    BadLineEnding,
    /// A header field name is not a token (or is followed by whitespace before the colon).
    BadHeaderName,
    /// A header field value holds a control character other than HTAB.
    BadHeaderValue,
    /// A header line starts with whitespace (obsolete line folding).
    ObsFold,
    /// A header field line is longer than `max_header_line`.
    HeaderLineTooLong,
    /// More header fields than `max_headers`.
    TooManyHeaders,
    /// The head is larger than `max_head_size`.
    HeadTooLarge,
    /// `Content-Length` is not one run of digits, or is repeated with different values.
    BadContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`.
    ContentLengthWithTransferEncoding,
    /// `Transfer-Encoding` is malformed, empty, or applies chunked more than once.
    BadTransferEncoding,
    /// `Transfer-Encoding` does not end in chunked: the body length cannot be known.
    ChunkedNotFinal,
    /// A transfer coding other than chunked.
    UnsupportedTransferEncoding,
    /// `Transfer-Encoding` in an HTTP/1.0 request.
    TransferEncodingInHttp10,
    /// `Host` is repeated or is not a valid host.
    BadHost,
    /// A field that admits one value (`Content-Type`) is repeated.
    DuplicateField,
    /// `Expect` with anything but `100-continue`.
    ExpectationFailed,
    /// Memory for the header table could not be allocated.
    OutOfMemory,
}

impl HeadError {
    /// The HTTP status to answer with.
    pub fn status(self) -> u16 {
        match self {
            Self::RequestLineTooLong => 414,
            Self::HeaderLineTooLong | Self::TooManyHeaders | Self::HeadTooLarge => 431,
            Self::UnsupportedVersion => 505,
            Self::UnsupportedTransferEncoding => 501,
            Self::ExpectationFailed => 417,
            Self::OutOfMemory => 503,
            _ => 400,
        }
    }

    /// A stable snake_case name (the Erlang atom of `{error, Status, Reason}`).
    pub fn reason(self) -> &'static str {
        match self {
            Self::BadRequestLine => "bad_request_line",
            Self::BadTarget => "bad_target",
            Self::RequestLineTooLong => "request_line_too_long",
            Self::BadVersion => "bad_version",
            Self::UnsupportedVersion => "unsupported_version",
            Self::BadLineEnding => "bad_line_ending",
            Self::BadHeaderName => "bad_header_name",
            Self::BadHeaderValue => "bad_header_value",
            Self::ObsFold => "obs_fold",
            Self::HeaderLineTooLong => "header_line_too_long",
            Self::TooManyHeaders => "too_many_headers",
            Self::HeadTooLarge => "head_too_large",
            Self::BadContentLength => "bad_content_length",
            Self::ContentLengthWithTransferEncoding => "content_length_with_transfer_encoding",
            Self::BadTransferEncoding => "bad_transfer_encoding",
            Self::ChunkedNotFinal => "chunked_not_final",
            Self::UnsupportedTransferEncoding => "unsupported_transfer_encoding",
            Self::TransferEncodingInHttp10 => "transfer_encoding_in_http10",
            Self::BadHost => "bad_host",
            Self::DuplicateField => "duplicate_field",
            Self::ExpectationFailed => "expectation_failed",
            Self::OutOfMemory => "enomem",
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason().replace('_', " "), self.status())
    }
}

impl std::error::Error for HeadError {}

/// Why a chunked body's framing was refused. The body is broken from there on: answer 400 if
/// nothing was sent yet, and close the connection.
///
/// ```
/// use bodypipe_http::{ChunkError, ChunkedDecoder, ChunkedLimits, FeedError};
///
/// let mut d = ChunkedDecoder::new(ChunkedLimits::default());
/// let mut body = Vec::new();
/// let err = d.feed(b"+5\r\nhello\r\n0\r\n\r\n", &mut body).unwrap_err();
/// assert!(matches!(err, FeedError::Chunk(ChunkError::BadChunkSize)));
/// assert_eq!(ChunkError::BadChunkSize.reason(), "bad_chunk_size");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChunkError {
    /// The chunk-size line does not start with hex digits, or has something other than
    /// extensions after them (a sign, whitespace without `;`, an underscore...).
    BadChunkSize,
    /// More than 16 hex digits.
    ChunkSizeTooLong,
    /// A chunk extension is malformed.
    BadChunkExtension,
    /// The chunk-size line is longer than `max_chunk_line`.
    ChunkLineTooLong,
    /// A chunk-size or trailer line does not end in CRLF (a bare LF or CR).
    BadLineEnding,
    /// The chunk data is not followed by CRLF.
    BadChunkTerminator,
    /// More trailer fields than `max_trailers`.
    TooManyTrailers,
    /// More trailer bytes than `max_trailer_size`.
    TrailersTooLarge,
    /// A trailer line is not a valid field line.
    BadTrailer,
    /// A trailer field that must not be sent as a trailer (framing, routing, authentication:
    /// RFC 9110 §6.5.1).
    ForbiddenTrailer,
}

impl ChunkError {
    /// The HTTP status to answer with (if nothing was sent yet).
    pub fn status(self) -> u16 {
        400
    }

    /// A stable snake_case name (the Erlang atom of `{error, {bad_chunk, Why}}`).
    pub fn reason(self) -> &'static str {
        match self {
            Self::BadChunkSize => "bad_chunk_size",
            Self::ChunkSizeTooLong => "chunk_size_too_long",
            Self::BadChunkExtension => "bad_chunk_extension",
            Self::ChunkLineTooLong => "chunk_line_too_long",
            Self::BadLineEnding => "bad_line_ending",
            Self::BadChunkTerminator => "bad_chunk_terminator",
            Self::TooManyTrailers => "too_many_trailers",
            Self::TrailersTooLarge => "trailers_too_large",
            Self::BadTrailer => "bad_trailer",
            Self::ForbiddenTrailer => "forbidden_trailer",
        }
    }
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason().replace('_', " "))
    }
}

impl std::error::Error for ChunkError {}

/// Why a [`ChunkedDecoder::feed`](crate::ChunkedDecoder::feed) failed.
///
/// ```
/// use bodypipe_http::{ChunkedDecoder, FeedError};
///
/// let (mut w, r) = bodypipe::Builder::new().max_size(2).build()?;
/// let mut d = ChunkedDecoder::new(Default::default());
/// assert_eq!(d.feed(b"3\r\nabc\r\n", &mut w), Err(FeedError::Sink(bodypipe::WriteError::TooLarge)));
/// assert_eq!(d.feed(b"0\r\n\r\n", &mut w), Err(FeedError::Poisoned));
/// # drop(r);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedError<E> {
    /// The framing is broken; every later feed gives the same error.
    Chunk(ChunkError),
    /// The sink refused a write for good (closed, too large...).
    Sink(E),
    /// The decoder could not allocate its line buffer.
    OutOfMemory,
    /// An earlier feed failed with `Sink` or `OutOfMemory`: the decoder cannot go on.
    Poisoned,
}

impl<E: fmt::Display> fmt::Display for FeedError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Chunk(e) => write!(f, "bad chunked body: {e}"),
            Self::Sink(e) => write!(f, "the body sink refused a write: {e}"),
            Self::OutOfMemory => f.write_str("out of memory in the chunked decoder"),
            Self::Poisoned => f.write_str("the chunked decoder failed earlier"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for FeedError<E> {}
