//! A lock-free single-producer byte pipe that hands a streaming body to readers.
//!
//! An HTTP server receives a request body in chunks; the application wants it as a file. The
//! [`Writer`] appends chunks into segments that never move and publishes each write with one
//! atomic store; the [`Reader`] (shared by any number of threads) reads, searches, seeks and views
//! the bytes, spinning briefly and then parking on a futex while it waits. The writer takes no
//! lock and makes no syscall unless a reader is actually parked.
//!
//! ```
//! use std::io::Read;
//!
//! let (mut w, r) = bodypipe::Builder::new().content_length(11).build()?;
//! let server = std::thread::spawn(move || {
//!     w.write(b"hello ").unwrap();
//!     w.write(b"world").unwrap(); // reaching the content length is EOF
//! });
//! let mut body = Vec::new();
//! (&r).read_to_end(&mut body)?;
//! assert_eq!(body, b"hello world");
//! server.join().unwrap();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Two modes:
//! - **unbounded** (default): every byte is kept until the reader is dropped, so `seek(0)` always
//!   works and a [`View`] of the whole body is possible;
//! - **ring** ([`Builder::max_buffered`]): a high-water mark on unread bytes; a write at or above it
//!   fails with [`WriteError::Full`] (storing nothing) and segments the reader has passed are
//!   reused, so memory stays near `max_buffered` whatever the body's length.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_debug_implementations)]

mod error;
mod primitive;
mod reader;
mod ready;
mod search;
mod segment;
mod shared;
mod view;
mod wait;
mod writer;

pub use error::{
    BuildError, CloseError, ReadError, ReadWithError, SeekError, WaitError, WaitWritableError, WriteError,
};
pub use reader::{LineRun, Reader, Ready};
pub use ready::Subscription;
pub use shared::{Stats, Writability};
pub use view::View;
pub use writer::Writer;

/// The README's Rust example, compiled and run by `cargo test --doc`, so the product page never
/// shows code that does not build.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

use primitive::Arc;
use shared::{Config, Shared, Sizing};

/// The default largest body: 1 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;

/// The abort reason a reader sees when the writer closed a body before its declared
/// `content_length` ([`Writer::close`] returns [`CloseError::Incomplete`] then).
///
/// ```
/// use std::io::Read;
///
/// let (mut w, r) = bodypipe::Builder::new().content_length(10).build()?;
/// w.write(b"abc")?;
/// assert!(w.close().is_err());
/// let mut body = Vec::new();
/// let err = (&r).read_to_end(&mut body).unwrap_err();
/// assert_eq!(body, b"abc");
/// assert_eq!(err.to_string(), bodypipe::INCOMPLETE_BODY);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const INCOMPLETE_BODY: &str = "incomplete body";

/// First segment of every body: small, so that many short bodies stay cheap. Segments then
/// double as bytes arrive, whatever length the body declares: a declared length is the
/// client's claim, and memory follows only the bytes actually received.
const FIRST_SEGMENT: usize = 4 << 10;
/// Segments stop growing here: few enough allocations for a 1 GiB body, and prefaulted in
/// whole windows (see `segment::PREFAULT_MIN`).
const MAX_SEGMENT: usize = 8 << 20;
/// Ring-mode segments grow to a quarter of the high-water mark, within these bounds.
const RING_SEGMENT_MIN: usize = 4 << 10;
const RING_SEGMENT_MAX: usize = 1 << 20;

/// Creates a pipe for a body of unknown length, unbounded, with the default size limit.
///
/// ```
/// let (mut w, r) = bodypipe::pipe();
/// w.write(b"chunk")?;
/// assert_eq!(r.buffered(), 5);
/// # Ok::<(), bodypipe::WriteError>(())
/// ```
pub fn pipe() -> (Writer, Reader) {
    let shared = Arc::new(Shared::new(Builder::new().config()));
    (Writer::new(shared.clone()), Reader::new(shared))
}

/// Configures a pipe.
///
/// ```
/// use bodypipe::{Builder, BuildError};
///
/// let (w, r) = Builder::new().content_length(1 << 20).max_buffered(64 << 10).build()?;
/// assert_eq!(r.content_length(), Some(1 << 20));
/// assert!(matches!(Builder::new().content_length(2 << 30).build(), Err(BuildError::TooLarge { .. })));
/// # drop(w);
/// # Ok::<(), BuildError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Builder {
    content_length: Option<u64>,
    max_buffered: Option<usize>,
    max_size: Option<u64>,
    segment_size: Option<usize>,
    no_prefault: bool,
}

impl Builder {
    /// An unbounded pipe of unknown length with a 1 GiB limit.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::Builder::new().build()?; // same as bodypipe::pipe()
    /// w.write(b"x")?;
    /// assert_eq!((r.content_length(), r.max_buffered(), r.max_size()), (None, None, bodypipe::DEFAULT_MAX_SIZE));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The exact expected size. Reaching it is EOF; writing past it is
    /// [`WriteError::ExceedsContentLength`]; closing before it is not EOF: [`Writer::close`]
    /// reports [`CloseError::Incomplete`] and readers get an abort with the reason
    /// [`INCOMPLETE_BODY`] once they have read the bytes written.
    ///
    /// The length is a promise, not an allocation: storage grows with the bytes written (4 KiB
    /// doubling to 8 MiB per segment, never past the declared length), so a client that declares
    /// 1 GiB and sends nothing costs nothing.
    ///
    /// ```
    /// use bodypipe::{Builder, WriteError};
    ///
    /// let (mut w, r) = Builder::new().content_length(5).build()?;
    /// w.write(b"hel")?;
    /// assert!(!r.is_ended());
    /// assert_eq!(w.write(b"lo!"), Err(WriteError::ExceedsContentLength)); // nothing stored
    /// w.write(b"lo")?; // the declared length: EOF
    /// assert!(r.is_ended());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn content_length(mut self, n: u64) -> Self {
        self.content_length = Some(n);
        self
    }

    /// Ring mode: a high-water mark on unread bytes. Writes are accepted whole while unread bytes
    /// are below it and fail with [`WriteError::Full`] once they are at or above it.
    ///
    /// ```
    /// use bodypipe::{Builder, WriteError};
    ///
    /// let (mut w, r) = Builder::new().max_buffered(4).build()?;
    /// w.write(b"abcdef")?; // accepted whole: unread bytes were below the mark
    /// assert_eq!(w.write(b"g"), Err(WriteError::Full));
    /// r.skip(3); // 3 unread: below the mark again
    /// w.write(b"g")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_buffered(mut self, bytes: usize) -> Self {
        self.max_buffered = Some(bytes);
        self
    }

    /// The largest body accepted (default 1 GiB); writes past it fail with
    /// [`WriteError::TooLarge`].
    ///
    /// ```
    /// use bodypipe::{Builder, WriteError};
    ///
    /// let (mut w, _r) = Builder::new().max_size(4).build()?;
    /// w.write(b"abc")?;
    /// assert_eq!(w.write(b"de"), Err(WriteError::TooLarge));
    /// w.write(b"d")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// Tuning and tests: every segment this size (no geometric growth). A body written in one
    /// piece of this size is one segment, so a view of it is zero-copy.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::Builder::new().segment_size(4).build()?;
    /// w.write(b"0123456789")?;
    /// assert_eq!(r.views().len(), 3); // 4 + 4 + 2 bytes, one view per segment
    /// assert_eq!(&*r.view()?, b"0123456789"); // coalesced into one copy
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn segment_size(mut self, bytes: usize) -> Self {
        self.segment_size = Some(bytes);
        self
    }

    /// Tuning and benchmarks: whether large segments are faulted in ahead of the writer
    /// (default: yes, outside ring mode). Off, every page is faulted in by the copy that first
    /// touches it, as in a plain `Vec`.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::Builder::new().prefault(false).build()?;
    /// w.write(&[7; 1 << 20])?;
    /// assert_eq!(r.buffered(), 1 << 20);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn prefault(mut self, on: bool) -> Self {
        self.no_prefault = !on;
        self
    }

    fn config(&self) -> Config {
        let max_size = self.max_size.unwrap_or(DEFAULT_MAX_SIZE);
        let max_buffered = self.max_buffered.map(|m| m as u64);
        let (first_segment, sizing) = match (self.segment_size, self.max_buffered) {
            (Some(n), _) => (n, Sizing::Fixed(n)),
            (None, Some(m)) => {
                let max = (m / 4).clamp(RING_SEGMENT_MIN, RING_SEGMENT_MAX);
                (FIRST_SEGMENT.min(max), Sizing::Geometric { max })
            }
            (None, None) => (FIRST_SEGMENT, Sizing::Geometric { max: MAX_SEGMENT }),
        };
        // Ring segments are reused, so only their first pass could fault: not worth a syscall.
        let prefault = !self.no_prefault && self.max_buffered.is_none();
        Config { content_length: self.content_length, max_buffered, max_size, first_segment, sizing, prefault }
    }

    /// Creates the pipe, or refuses a configuration that can never work.
    ///
    /// ```
    /// use bodypipe::{BuildError, Builder};
    ///
    /// assert!(Builder::new().content_length(10).max_size(100).build().is_ok());
    /// assert_eq!(Builder::new().max_buffered(0).build().unwrap_err(), BuildError::ZeroMaxBuffered);
    /// assert!(matches!(Builder::new().content_length(101).max_size(100).build(), Err(BuildError::TooLarge { .. })));
    /// ```
    pub fn build(self) -> Result<(Writer, Reader), BuildError> {
        let config = self.config();
        if let Some(cl) = self.content_length {
            if cl > config.max_size {
                return Err(BuildError::TooLarge { content_length: cl, max_size: config.max_size });
            }
        }
        if self.max_buffered == Some(0) {
            return Err(BuildError::ZeroMaxBuffered);
        }
        if self.segment_size == Some(0) {
            return Err(BuildError::ZeroSegmentSize);
        }
        let shared = Arc::new(Shared::new(config));
        if config.content_length == Some(0) {
            // An empty body is complete before anything is written.
            shared.finish(None);
        }
        Ok((Writer::new(shared.clone()), Reader::new(shared)))
    }
}
