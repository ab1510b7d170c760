//! The limits every parse is held to. All of them are ours and configurable; the defaults follow
//! common practice (gunicorn, nginx) and the figures in issue 10.

/// Limits on a request head. Each is answered with the status in
/// [`HeadError::status`](crate::HeadError::status) when exceeded.
///
/// ```
/// let limits = bodypipe_http::HeadLimits { max_headers: 10, ..Default::default() };
/// assert_eq!(limits.max_head_size, 65536);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Longest request line, without its CRLF (default 8192): longer is 414.
    pub max_request_line: usize,
    /// Longest header field line, without its CRLF (default 8192): longer is 431.
    pub max_header_line: usize,
    /// Most header fields (default 100): more is 431.
    pub max_headers: usize,
    /// Most bytes in the whole head, from the first byte to the empty line that ends it
    /// (default 65536): more is 431, also while the head is still incomplete.
    pub max_head_size: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self { max_request_line: 8192, max_header_line: 8192, max_headers: 100, max_head_size: 65536 }
    }
}

/// Limits on the framing of a chunked body; the decoder never holds more than
/// `max(max_chunk_line, max_trailer_size)` bytes of its own (plus 4 bytes while it checks a
/// trailer line).
///
/// ```
/// let limits = bodypipe_http::ChunkedLimits::default();
/// assert_eq!((limits.max_chunk_line, limits.max_trailers, limits.max_trailer_size), (4096, 100, 16384));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedLimits {
    /// Longest chunk-size line, extensions included, without its CRLF (default 4096).
    pub max_chunk_line: usize,
    /// Most trailer fields (default 100; 0 refuses any trailer).
    pub max_trailers: usize,
    /// Most bytes of trailer fields, each line's CRLF included (default 16384).
    pub max_trailer_size: usize,
}

impl Default for ChunkedLimits {
    fn default() -> Self {
        Self { max_chunk_line: 4096, max_trailers: 100, max_trailer_size: 16384 }
    }
}
