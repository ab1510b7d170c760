//! Strict HTTP/1.1 request framing for bodypipe: request heads parsed by
//! [httparse](https://docs.rs/httparse) and held to RFC 9112 and to configurable limits, and a
//! streaming decoder of chunked bodies that writes straight into a [`bodypipe::Writer`] (or
//! any [`Sink`]).
//!
//! Every refusal is typed and carries the HTTP status to answer with. Nothing here allocates
//! in proportion to the input beyond the limits, and nothing panics on any input.
//!
//! ```
//! use bodypipe_http::{parse_head, Body, ChunkedDecoder, ChunkedLimits, HeadLimits, Parsed, Progress};
//!
//! let req = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
//! let Parsed::Complete(head) = parse_head(req, &HeadLimits::default())? else { panic!("complete") };
//! assert_eq!(head.body, Body::Chunked);
//!
//! let (mut w, r) = bodypipe::pipe();
//! let mut d = ChunkedDecoder::new(ChunkedLimits::default());
//! assert_eq!(d.feed(&req[head.len..], &mut w)?, Progress::Done { used: 15 });
//! assert_eq!(r.buffered(), 5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod chars;
mod chunk_line;
mod chunked;
mod error;
mod framing;
mod head;
mod limits;
mod line;
mod sink;
mod target;

pub use chunk_line::MAX_SIZE_DIGITS;
pub use chunked::{ChunkedDecoder, Progress};
pub use error::{ChunkError, FeedError, HeadError};
pub use head::{parse_head, Body, Field, Head, Parsed};
pub use limits::{ChunkedLimits, HeadLimits};
pub use sink::{Refusal, Sink};
