//! A streaming decoder of the chunked transfer coding (RFC 9112 §7.1) that writes the body into
//! a [`Sink`].
//!
//! Input may be cut anywhere (inside a chunk-size line, inside a CRLF, inside a trailer); the
//! decoder keeps only the part of a line that was cut, bounded by the limits, and writes chunk
//! data straight from the input into the sink, one write per run of data in a feed. When the
//! sink is full it stops and says how much input it consumed; the caller feeds the rest again
//! later. Trailers are checked, bounded and discarded.

use crate::chunk_line;
use crate::error::{ChunkError, FeedError};
use crate::limits::ChunkedLimits;
use crate::line::{At, LineBuf, LineError, Step};
use crate::sink::{Refusal, Sink};

/// Trailer fields a sender must not put in a trailer section (RFC 9110 §6.5.1: framing,
/// routing, authentication, trailer control). They are refused rather than dropped silently,
/// since a peer that honours them would frame or route differently.
const FORBIDDEN_TRAILERS: [&str; 6] = ["content-length", "transfer-encoding", "host", "trailer", "te", "authorization"];

/// A cut line larger than this is not kept after it completes.
const KEEP_LINE_BUFFER: usize = 256;

/// How far a feed got.
///
/// ```
/// use bodypipe_http::{ChunkedDecoder, ChunkedLimits, Progress};
///
/// let mut d = ChunkedDecoder::new(ChunkedLimits::default());
/// let (mut w, r) = bodypipe::Builder::new().max_buffered(2).build()?;
/// assert_eq!(d.feed(b"2\r\nab\r\n", &mut w)?, Progress::More);
/// // The ring is at its high-water mark: nothing of "cd..." is taken.
/// assert_eq!(d.feed(b"2\r\ncd\r\n0\r\n\r\n", &mut w)?, Progress::Full { used: 3 });
/// r.skip(2);
/// assert_eq!(d.feed(b"cd\r\n0\r\n\r\n", &mut w)?, Progress::Done { used: 9 });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// All the input was consumed; the body goes on.
    More,
    /// The body ended (last chunk, trailers and final CRLF) after `used` bytes of the input;
    /// what follows belongs to the next request.
    Done {
        /// Input bytes consumed.
        used: usize,
    },
    /// The sink was full after `used` bytes of the input: feed `input[used..]` again once it
    /// has room. Nothing of `input[used..]` was taken.
    Full {
        /// Input bytes consumed.
        used: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a chunk-size line.
    Size,
    /// In chunk data, with this many bytes left.
    Data(u64),
    /// After chunk data: expecting CR.
    DataCr,
    /// After chunk data and CR: expecting LF.
    DataLf,
    /// In the trailer section (after the last chunk).
    Trailer,
    /// After the final CRLF.
    Done,
    /// The framing was broken; sticky.
    Failed(ChunkError),
    /// The sink refused a write for good, or memory ran out; sticky.
    Poisoned,
}

/// The decoder of one chunked body.
///
/// ```
/// use bodypipe_http::{ChunkedDecoder, ChunkedLimits, Progress};
///
/// let mut d = ChunkedDecoder::new(ChunkedLimits::default());
/// let mut body = Vec::new();
/// assert_eq!(d.feed(b"5;ext=1\r\nhel", &mut body)?, Progress::More);
/// assert_eq!(d.feed(b"lo\r\n0\r\nX-Sum: 1\r\n\r\nGET /next", &mut body)?, Progress::Done { used: 19 });
/// assert_eq!(body, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ChunkedDecoder {
    limits: ChunkedLimits,
    state: State,
    line: LineBuf,
    trailers: usize,
    trailer_bytes: usize,
    body_bytes: u64,
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    ///
    /// ```
    /// let d = bodypipe_http::ChunkedDecoder::new(Default::default());
    /// assert!(!d.is_done() && d.body_bytes() == 0 && d.held() == 0);
    /// ```
    pub fn new(limits: ChunkedLimits) -> Self {
        Self { limits, state: State::Size, line: LineBuf::default(), trailers: 0, trailer_bytes: 0, body_bytes: 0 }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Body bytes written to sinks so far.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }

    /// Bytes of memory the decoder holds for cut lines: never more than
    /// [`max_held`](Self::max_held).
    ///
    /// ```
    /// use bodypipe_http::{ChunkedDecoder, ChunkedLimits};
    ///
    /// let limits = ChunkedLimits { max_chunk_line: 100, ..Default::default() };
    /// let mut d = ChunkedDecoder::new(limits);
    /// d.feed(b"5;an-extension-cut-by-the-end-of-the-feed", &mut Vec::new())?;
    /// assert!(d.held() > 0 && d.held() <= ChunkedDecoder::max_held(&limits));
    /// assert_eq!(ChunkedDecoder::max_held(&limits), 16384 + 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn held(&self) -> usize {
        self.line.held()
    }

    /// The most [`held`](Self::held) can be under these limits.
    pub fn max_held(limits: &ChunkedLimits) -> usize {
        limits.max_chunk_line.max(limits.max_trailer_size).saturating_add(2)
    }

    /// Decodes `input`, writing chunk data into `sink`.
    ///
    /// Errors are sticky: after a framing error every later feed returns the same one, after
    /// [`FeedError::Sink`] or [`FeedError::OutOfMemory`] every later feed returns
    /// [`FeedError::Poisoned`]. After the body ended, feeds return `Done { used: 0 }`.
    pub fn feed<S: Sink + ?Sized>(&mut self, input: &[u8], sink: &mut S) -> Result<Progress, FeedError<S::Error>> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                State::Done => return Ok(Progress::Done { used: pos }),
                State::Failed(e) => return Err(FeedError::Chunk(e)),
                State::Poisoned => return Err(FeedError::Poisoned),
                _ if rest.is_empty() => return Ok(Progress::More),
                State::Size => {
                    let step = self.line.step(rest, self.limits.max_chunk_line);
                    let (used, at) = match step.map_err(|e| self.line_error(e, ChunkError::ChunkLineTooLong))? {
                        Step::Partial => return Ok(Progress::More),
                        Step::Line { used, at } => (used, at),
                    };
                    let content = match &at {
                        At::Input(r) => &rest[r.clone()],
                        At::Buf => self.line.content(),
                    };
                    let parsed = chunk_line::parse(content);
                    self.line.clear(KEEP_LINE_BUFFER);
                    let size = parsed.map_err(|e| self.fail(e))?;
                    pos += used;
                    self.state = if size == 0 { State::Trailer } else { State::Data(size) };
                }
                State::Data(left) => {
                    let n = usize::try_from(left).map_or(rest.len(), |l| l.min(rest.len()));
                    match sink.write_all(&rest[..n]) {
                        Ok(()) => {}
                        Err(Refusal::Full) => return Ok(Progress::Full { used: pos }),
                        Err(Refusal::Fatal(e)) => {
                            self.state = State::Poisoned;
                            return Err(FeedError::Sink(e));
                        }
                    }
                    pos += n;
                    self.body_bytes += n as u64;
                    let left = left - n as u64;
                    self.state = if left == 0 { State::DataCr } else { State::Data(left) };
                }
                State::DataCr | State::DataLf => {
                    let (want, next) =
                        if self.state == State::DataCr { (b'\r', State::DataLf) } else { (b'\n', State::Size) };
                    if rest[0] != want {
                        return Err(self.fail(ChunkError::BadChunkTerminator));
                    }
                    pos += 1;
                    self.state = next;
                }
                State::Trailer => pos += self.trailer_step(rest)?,
            }
        }
    }

    /// Takes bytes of a trailer line; returns how many.
    fn trailer_step<E>(&mut self, rest: &[u8]) -> Result<usize, FeedError<E>> {
        let full = self.trailers >= self.limits.max_trailers;
        // Content plus CRLF must fit what is left of the budget; once the count is reached
        // only the empty line that ends the section fits.
        let limit = if full { 0 } else { (self.limits.max_trailer_size - self.trailer_bytes).saturating_sub(2) };
        let too_long = if full { ChunkError::TooManyTrailers } else { ChunkError::TrailersTooLarge };
        let step = self.line.step(rest, limit).map_err(|e| self.line_error(e, too_long))?;
        let Step::Line { used, at } = step else {
            return Ok(rest.len());
        };
        let checked = match &at {
            At::Input(r) if r.is_empty() => None,
            // The line with its CRLF, as httparse wants it.
            At::Input(r) => Some(check_trailer(&rest[r.start..used])),
            At::Buf if self.line.content().is_empty() => None,
            At::Buf => Some(match self.line.restore_crlf() {
                Ok(line) => check_trailer(line),
                Err(e) => return Err(self.line_error(e, too_long)),
            }),
        };
        self.line.clear(KEEP_LINE_BUFFER);
        match checked {
            None => self.state = State::Done,
            Some(Err(e)) => return Err(self.fail(e)),
            Some(Ok(len)) => {
                self.trailers += 1;
                self.trailer_bytes += len;
            }
        }
        Ok(used)
    }

    fn fail<E>(&mut self, e: ChunkError) -> FeedError<E> {
        self.state = State::Failed(e);
        FeedError::Chunk(e)
    }

    fn line_error<E>(&mut self, e: LineError, too_long: ChunkError) -> FeedError<E> {
        match e {
            LineError::TooLong => self.fail(too_long),
            LineError::BadEnding => self.fail(ChunkError::BadLineEnding),
            LineError::OutOfMemory => {
                self.state = State::Poisoned;
                FeedError::OutOfMemory
            }
        }
    }
}

/// Checks one trailer field line (with its CRLF) with httparse; returns its length.
///
/// httparse, given exactly one complete field line, parses it and then asks for more input (the
/// next line): `Partial` means the line is valid, an error that it is not.
fn check_trailer(line: &[u8]) -> Result<usize, ChunkError> {
    let mut slot = [httparse::EMPTY_HEADER; 1];
    match httparse::parse_headers(line, &mut slot) {
        Ok(httparse::Status::Partial) => {}
        _ => return Err(ChunkError::BadTrailer),
    }
    // httparse checked that the name is a token ending at the colon.
    let name = line.split(|&b| b == b':').next().unwrap_or_default();
    if FORBIDDEN_TRAILERS.iter().any(|f| name.eq_ignore_ascii_case(f.as_bytes())) {
        return Err(ChunkError::ForbiddenTrailer);
    }
    Ok(line.len())
}
