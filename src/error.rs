//! One error type per operation.

use std::fmt;
use std::io;

/// Why [`Builder::build`](crate::Builder::build) refused a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The declared content length is above `max_size`.
    TooLarge {
        /// The declared length.
        content_length: u64,
        /// The limit it exceeds.
        max_size: u64,
    },
    /// `max_buffered(0)`: the high-water mark must admit at least one byte.
    ZeroMaxBuffered,
    /// `segment_size(0)`.
    ZeroSegmentSize,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { content_length, max_size } => {
                write!(f, "content length {content_length} exceeds the maximum body size {max_size}")
            }
            Self::ZeroMaxBuffered => f.write_str("max_buffered must be at least 1 byte"),
            Self::ZeroSegmentSize => f.write_str("segment_size must be at least 1 byte"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Why [`Writer::write`](crate::Writer::write) stored nothing. In every case the whole write was
/// refused: no byte of it is visible to readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WriteError {
    /// The reader side has closed (hung up), so nobody will read the bytes.
    Closed,
    /// The write would go past the declared content length.
    ExceedsContentLength,
    /// The write would make the body larger than `max_size`.
    TooLarge,
    /// Ring mode: unread bytes are at or above `max_buffered`. Retry after
    /// [`Writer::wait_writable`](crate::Writer::wait_writable) or an
    /// [`on_writable`](crate::Writer::on_writable) callback.
    Full,
    /// The allocator refused memory for a new segment.
    OutOfMemory,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "the reader side of the body is closed",
            Self::ExceedsContentLength => "write exceeds the declared content length",
            Self::TooLarge => "write exceeds the maximum body size",
            Self::Full => "buffer is full (unread bytes at the high-water mark)",
            Self::OutOfMemory => "out of memory allocating a body segment",
        })
    }
}

impl std::error::Error for WriteError {}

impl From<WriteError> for io::Error {
    fn from(e: WriteError) -> Self {
        let kind = match e {
            WriteError::Closed => io::ErrorKind::BrokenPipe,
            WriteError::Full => io::ErrorKind::WouldBlock,
            WriteError::OutOfMemory => io::ErrorKind::OutOfMemory,
            WriteError::ExceedsContentLength | WriteError::TooLarge => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}

/// Why [`Writer::close`](crate::Writer::close) did not end the body cleanly. The body is ended
/// either way: readers get the bytes written, then an abort with the reason
/// [`INCOMPLETE_BODY`](crate::INCOMPLETE_BODY).
///
/// ```
/// use bodypipe::{Builder, CloseError};
///
/// let (mut w, r) = Builder::new().content_length(10).build()?;
/// w.write(b"abc")?;
/// assert_eq!(w.close(), Err(CloseError::Incomplete { written: 3, expected: 10 }));
/// assert_eq!(r.abort_reason().as_deref(), Some(bodypipe::INCOMPLETE_BODY));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseError {
    /// Fewer bytes were written than the declared `content_length`: the body is truncated.
    Incomplete {
        /// Bytes written.
        written: u64,
        /// The declared length.
        expected: u64,
    },
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Incomplete { written, expected } => {
                write!(f, "body closed after {written} of its {expected} declared bytes")
            }
        }
    }
}

impl std::error::Error for CloseError {}

impl From<CloseError> for io::Error {
    fn from(e: CloseError) -> Self {
        io::Error::new(io::ErrorKind::UnexpectedEof, e)
    }
}

/// Why [`Writer::wait_writable`](crate::Writer::wait_writable) returned without room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WaitWritableError {
    /// The reader side closed: no room will ever come.
    ReaderClosed,
    /// The timeout passed first.
    TimedOut,
}

impl fmt::Display for WaitWritableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ReaderClosed => "the reader side of the body is closed",
            Self::TimedOut => "timed out waiting for the reader to make room",
        })
    }
}

impl std::error::Error for WaitWritableError {}

/// Why [`Reader::wait`](crate::Reader::wait) returned without data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WaitError {
    /// The deadline passed first.
    TimedOut,
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out waiting for body data")
    }
}

impl std::error::Error for WaitError {}

impl From<WaitError> for io::Error {
    fn from(e: WaitError) -> Self {
        io::Error::new(io::ErrorKind::TimedOut, e)
    }
}

/// Why a [`Reader::seek`](crate::Reader::seek) was refused (surfaced as `InvalidInput`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SeekError {
    /// The target is beyond the bytes written so far.
    PastWritten,
    /// The target is before the start of the stream.
    BeforeStart,
    /// Ring mode: the target is before the oldest byte still retained.
    BeforeWindow,
    /// `SeekFrom::End` before the writer has finished.
    EndUnknown,
}

impl fmt::Display for SeekError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PastWritten => "cannot seek past the data written so far",
            Self::BeforeStart => "cannot seek before the start of the body",
            Self::BeforeWindow => "cannot seek before the retained window (ring mode recycles read bytes)",
            Self::EndUnknown => "cannot seek from the end before the body is complete",
        })
    }
}

impl std::error::Error for SeekError {}

impl From<SeekError> for io::Error {
    fn from(e: SeekError) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// Why a read of a [`Reader`](crate::Reader) returned no bytes (end of stream is `Ok(0)`, not an
/// error). The std trait impls (`Read`, `BufRead` for `&Reader`) map it to an `io::Error` whose
/// kind is [`ReadError::kind`] and whose inner error is this value, so nothing is lost there
/// either: `e.get_ref().and_then(|e| e.downcast_ref::<ReadError>())` gives it back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReadError {
    /// Nothing to read yet and the stream is still open (a non-blocking read).
    WouldBlock,
    /// The deadline passed first; nothing was consumed.
    TimedOut,
    /// The writer aborted the stream and every byte written before the abort has been read.
    Aborted {
        /// The reason the writer gave (`Writer::abort`), `"writer dropped"` when it was dropped.
        reason: String,
    },
    /// The allocator refused memory for the result (a line appended to a `Vec`).
    OutOfMemory,
}

impl ReadError {
    /// The `io::ErrorKind` this maps to in the std trait impls.
    ///
    /// ```
    /// use bodypipe::ReadError;
    /// use std::io::ErrorKind;
    ///
    /// assert_eq!(ReadError::WouldBlock.kind(), ErrorKind::WouldBlock);
    /// assert_eq!(ReadError::Aborted { reason: "gone".into() }.kind(), ErrorKind::ConnectionAborted);
    /// ```
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Self::WouldBlock => io::ErrorKind::WouldBlock,
            Self::TimedOut => io::ErrorKind::TimedOut,
            Self::Aborted { .. } => io::ErrorKind::ConnectionAborted,
            Self::OutOfMemory => io::ErrorKind::OutOfMemory,
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WouldBlock => f.write_str("no body data yet"),
            Self::TimedOut => f.write_str("timed out waiting for body data"),
            // The reason alone: it is what the producer said, and what `io::Error`'s text was.
            Self::Aborted { reason } => f.write_str(reason),
            Self::OutOfMemory => f.write_str("out of memory reading the body"),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<ReadError> for io::Error {
    fn from(e: ReadError) -> Self {
        io::Error::new(e.kind(), e)
    }
}

impl From<WaitError> for ReadError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::TimedOut => Self::TimedOut,
        }
    }
}

/// Why [`Reader::try_read_until_with`](crate::Reader::try_read_until_with) returned no line:
/// the read itself failed, or the callback refused the line (which is then left unread).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReadWithError<E> {
    /// The read failed (after an abort, or out of memory gathering a line across segments).
    Read(ReadError),
    /// The callback returned this error; nothing was consumed.
    Callback(E),
}

impl<E: fmt::Display> fmt::Display for ReadWithError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(e) => e.fmt(f),
            Self::Callback(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for ReadWithError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read(e) => Some(e),
            Self::Callback(e) => Some(e),
        }
    }
}

impl<E> From<ReadError> for ReadWithError<E> {
    fn from(e: ReadError) -> Self {
        Self::Read(e)
    }
}
