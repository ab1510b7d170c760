//! Assembly of one CRLF-terminated line out of input that may arrive in pieces, never holding
//! more than the line's limit.
//!
//! A line found whole in the input is not copied; only a line cut by the end of a feed is kept,
//! and its content never exceeds the limit (a CR that ends a piece is remembered as a flag, not
//! stored). Lines must end in CRLF: a LF without CR, or a CR anywhere else, is an error, so no
//! two parsers can disagree on where the line ends.

use std::collections::TryReserveError;
use std::ops::Range;

/// Why a line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineError {
    /// The content would exceed the limit.
    TooLong,
    /// A LF without a CR before it, or a CR not followed by LF.
    BadEnding,
    /// The buffer for a cut line could not grow.
    OutOfMemory,
}

impl From<TryReserveError> for LineError {
    fn from(_: TryReserveError) -> Self {
        Self::OutOfMemory
    }
}

/// Where the content of a completed line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum At {
    /// In the input of this step, at this range.
    Input(Range<usize>),
    /// In the buffer ([`LineBuf::content`]).
    Buf,
}

/// The outcome of [`LineBuf::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// The line ended after `used` bytes of the input (its CRLF included).
    Line { used: usize, at: At },
    /// The whole input was taken; the line goes on.
    Partial,
}

/// The part of a line received so far.
#[derive(Debug, Default)]
pub(crate) struct LineBuf {
    buf: Vec<u8>,
    /// The last piece ended in CR: the next byte must be LF.
    cr: bool,
}

impl LineBuf {
    /// Takes bytes of `input` (non-empty) into the current line, whose content (without CRLF)
    /// may be at most `limit` bytes. After `Step::Line`, call [`clear`](Self::clear) once the
    /// content has been used.
    pub(crate) fn step(&mut self, input: &[u8], limit: usize) -> Result<Step, LineError> {
        if self.cr {
            return match input.first() {
                None => Ok(Step::Partial),
                Some(b'\n') => {
                    self.cr = false;
                    Ok(Step::Line { used: 1, at: At::Buf })
                }
                Some(_) => Err(LineError::BadEnding),
            };
        }
        let room = limit.saturating_sub(self.buf.len());
        // Room for `room` content bytes, then CR and LF: a LF beyond that ends a line too long.
        let window = &input[..input.len().min(room.saturating_add(2))];
        match memchr::memchr(b'\n', window) {
            Some(lf) => {
                let content_end = lf.checked_sub(1).filter(|&i| window[i] == b'\r').ok_or(LineError::BadEnding)?;
                let content = &input[..content_end];
                if memchr::memchr(b'\r', content).is_some() {
                    return Err(LineError::BadEnding);
                }
                if content.len() > room {
                    return Err(LineError::TooLong);
                }
                if self.buf.is_empty() {
                    return Ok(Step::Line { used: lf + 1, at: At::Input(0..content_end) });
                }
                self.append(content, limit)?;
                Ok(Step::Line { used: lf + 1, at: At::Buf })
            }
            None if window.len() < input.len() => Err(LineError::TooLong),
            None => {
                let (content, cr) = match input.split_last() {
                    Some((b'\r', rest)) => (rest, true),
                    _ => (input, false),
                };
                if content.len() > room {
                    return Err(LineError::TooLong);
                }
                if memchr::memchr(b'\r', content).is_some() {
                    return Err(LineError::BadEnding);
                }
                self.append(content, limit)?;
                self.cr = cr;
                Ok(Step::Partial)
            }
        }
    }

    /// Grows the buffer geometrically but never past `cap`, so it holds at most `cap` bytes
    /// whatever the sizes of the pieces.
    fn append(&mut self, data: &[u8], cap: usize) -> Result<(), LineError> {
        let need = self.buf.len() + data.len();
        if need > self.buf.capacity() {
            // `need <= cap` (the caller checked the content against the room), so is `target`.
            let target = need.max(self.buf.capacity().saturating_mul(2).max(64).min(cap));
            self.buf.try_reserve_exact(target - self.buf.len())?;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Puts the CRLF back after a completed line held in the buffer (for httparse, which wants
    /// the line with its ending): the buffer then holds at most its limit + 2 bytes.
    pub(crate) fn restore_crlf(&mut self) -> Result<&[u8], LineError> {
        self.buf.try_reserve_exact(2)?;
        self.buf.extend_from_slice(b"\r\n");
        Ok(&self.buf)
    }

    /// The content of a line completed with `At::Buf`.
    pub(crate) fn content(&self) -> &[u8] {
        &self.buf
    }

    /// Forgets the line; releases a buffer grown past `keep` bytes.
    pub(crate) fn clear(&mut self, keep: usize) {
        self.buf.clear();
        self.cr = false;
        if self.buf.capacity() > keep {
            self.buf = Vec::new();
        }
    }

    /// Bytes of memory the buffer holds.
    pub(crate) fn held(&self) -> usize {
        self.buf.capacity()
    }
}
