//! How long the body is and whether the connection stays open: RFC 9112 §6 decided from the
//! header fields, strictly, so that no two parsers can disagree on where this request ends.

use crate::chars::{is_token, list_elements, name_is, trim_ows};
use crate::error::HeadError;
use crate::head::{Body, Field};
use crate::target;

/// The framing decisions for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Framing {
    pub(crate) body: Body,
    pub(crate) keep_alive: bool,
    pub(crate) expect_continue: bool,
}

/// What `Transfer-Encoding` fields said, all of them read as one list.
#[derive(Default)]
struct Codings {
    present: bool,
    count: usize,
    chunked: usize,
    last_is_chunked: bool,
    other: bool,
}

impl Codings {
    fn add(&mut self, value: &[u8]) -> Result<(), HeadError> {
        self.present = true;
        // Empty list elements are ignored (RFC 9110 §5.6.1).
        for element in list_elements(value).filter(|e| !e.is_empty()) {
            let (name, params) = match element.iter().position(|&b| b == b';') {
                Some(i) => (trim_ows(&element[..i]), true),
                None => (element, false),
            };
            if !is_token(name) {
                return Err(HeadError::BadTransferEncoding);
            }
            let is_chunked = name.eq_ignore_ascii_case(b"chunked");
            if is_chunked && params {
                // chunked takes no parameters.
                return Err(HeadError::BadTransferEncoding);
            }
            self.count += 1;
            self.chunked += usize::from(is_chunked);
            self.other |= !is_chunked;
            self.last_is_chunked = is_chunked;
        }
        Ok(())
    }
}

/// Decides the framing of a request of HTTP/1.`minor` with these fields.
pub(crate) fn decide(minor: u8, fields: &[Field<'_>]) -> Result<Framing, HeadError> {
    let mut content_length: Option<&[u8]> = None;
    let mut codings = Codings::default();
    let (mut close, mut keep_alive) = (false, false);
    let mut expect_continue = false;
    let (mut hosts, mut content_types) = (0usize, 0usize);
    for f in fields {
        if name_is(f.name, "content-length") {
            for element in list_elements(f.value) {
                if element.is_empty() || !element.iter().all(u8::is_ascii_digit) {
                    return Err(HeadError::BadContentLength);
                }
                match content_length {
                    Some(seen) if seen != element => return Err(HeadError::BadContentLength),
                    _ => content_length = Some(element),
                }
            }
        } else if name_is(f.name, "transfer-encoding") {
            codings.add(f.value)?;
        } else if name_is(f.name, "connection") {
            for token in list_elements(f.value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name_is(f.name, "expect") {
            for element in list_elements(f.value).filter(|e| !e.is_empty()) {
                if !element.eq_ignore_ascii_case(b"100-continue") {
                    return Err(HeadError::ExpectationFailed);
                }
                expect_continue = true;
            }
        } else if name_is(f.name, "host") {
            hosts += 1;
            target::check_host(f.value)?;
        } else if name_is(f.name, "content-type") {
            content_types += 1;
        }
    }
    if hosts > 1 {
        return Err(HeadError::BadHost);
    }
    if content_types > 1 {
        return Err(HeadError::DuplicateField);
    }
    let body = if codings.present {
        if content_length.is_some() {
            return Err(HeadError::ContentLengthWithTransferEncoding);
        }
        if minor == 0 {
            return Err(HeadError::TransferEncodingInHttp10);
        }
        if codings.count == 0 || codings.chunked > 1 {
            return Err(HeadError::BadTransferEncoding);
        }
        if !codings.last_is_chunked {
            return Err(HeadError::ChunkedNotFinal);
        }
        if codings.other {
            return Err(HeadError::UnsupportedTransferEncoding);
        }
        Body::Chunked
    } else if let Some(digits) = content_length {
        Body::Length(decimal(digits).ok_or(HeadError::BadContentLength)?)
    } else {
        Body::None
    };
    Ok(Framing {
        body,
        keep_alive: !close && (minor == 1 || keep_alive),
        // A 100-continue expectation in an HTTP/1.0 request is ignored (RFC 9110 §10.1.1).
        expect_continue: expect_continue && minor == 1,
    })
}

/// The value of a run of ASCII digits; `None` above `u64::MAX`.
fn decimal(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}
