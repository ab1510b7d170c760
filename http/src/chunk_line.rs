//! The chunk-size line (RFC 9112 §7.1), checked strictly.
//!
//! ```text
//! chunk-size-line = chunk-size *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
//! chunk-size      = 1*HEXDIG          ; at most 16 digits here
//! ext-val         = token / quoted-string
//! ```
//!
//! Not `httparse::parse_chunk_size` (1.10): it reads an empty line, a line of only whitespace
//! and a line of only `;ext` as size 0 (a silent end of the body), accepts whitespace after the
//! size without an extension, and takes any byte in an extension, a bare LF or a NUL included,
//! so a line that another parser ends at a bare LF runs on into the data there. The extensions
//! are checked and then ignored.

use crate::chars::{is_qdtext, is_quotable, is_tchar, skip_ows};
use crate::error::ChunkError;

/// Most hex digits in a chunk size: 16 make any `u64`.
///
/// ```
/// use bodypipe_http::{ChunkError, ChunkedDecoder, FeedError, MAX_SIZE_DIGITS};
///
/// let line = format!("{}1\r\n", "0".repeat(MAX_SIZE_DIGITS));
/// let err = ChunkedDecoder::new(Default::default()).feed(line.as_bytes(), &mut Vec::new());
/// assert_eq!(err, Err(FeedError::Chunk(ChunkError::ChunkSizeTooLong)));
/// ```
pub const MAX_SIZE_DIGITS: usize = 16;

/// The size on a chunk-size line (its content, without the CRLF).
pub(crate) fn parse(line: &[u8]) -> Result<u64, ChunkError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ChunkError::BadChunkSize);
    }
    if digits > MAX_SIZE_DIGITS {
        return Err(ChunkError::ChunkSizeTooLong);
    }
    let size = line[..digits].iter().fold(0u64, |acc, &b| (acc << 4) | u64::from(hex_value(b)));
    extensions(&line[digits..])?;
    Ok(size)
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Checks `*( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )`, the rest of the line.
fn extensions(mut rest: &[u8]) -> Result<(), ChunkError> {
    let mut first = true;
    while !rest.is_empty() {
        let after_bws = skip_ows(rest);
        if after_bws.first() != Some(&b';') {
            // Right after the digits, anything but an extension means the size itself is bad
            // (`6_0`, `5 `, `0x5`); later it is a bad extension.
            return Err(if first { ChunkError::BadChunkSize } else { ChunkError::BadChunkExtension });
        }
        first = false;
        let name_at = skip_ows(&after_bws[1..]);
        let name_len = name_at.iter().take_while(|&&b| is_tchar(b)).count();
        if name_len == 0 {
            return Err(ChunkError::BadChunkExtension);
        }
        rest = &name_at[name_len..];
        let after_name = skip_ows(rest);
        if after_name.first() == Some(&b'=') {
            rest = value(skip_ows(&after_name[1..]))?;
        }
    }
    Ok(())
}

/// Checks an extension value at the start of `s`; returns what follows it.
fn value(s: &[u8]) -> Result<&[u8], ChunkError> {
    if s.first() == Some(&b'"') {
        return quoted_string(&s[1..]);
    }
    let len = s.iter().take_while(|&&b| is_tchar(b)).count();
    if len == 0 {
        return Err(ChunkError::BadChunkExtension);
    }
    // Whatever follows must be BWS ";" or the end: the caller's loop checks.
    Ok(&s[len..])
}

/// `s` follows the opening quote; returns what follows the closing one.
fn quoted_string(s: &[u8]) -> Result<&[u8], ChunkError> {
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'"' => return Ok(&s[i + 1..]),
            b'\\' => match s.get(i + 1) {
                Some(&q) if is_quotable(q) => i += 2,
                _ => return Err(ChunkError::BadChunkExtension),
            },
            _ if is_qdtext(b) => i += 1,
            _ => return Err(ChunkError::BadChunkExtension),
        }
    }
    Err(ChunkError::BadChunkExtension)
}
