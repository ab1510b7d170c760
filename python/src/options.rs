//! The options of a new body, decoded the same way by both bindings (`bodypipe.pipe(...)` in
//! Python, `py_buffer:new/1` in Erlang), so the same value means the same thing in each: each
//! binding only turns its own integers into [`Size`] and maps [`OptionError`] to its own error.

use ::bodypipe::{BuildError, Builder, Reader, Writer};
use std::fmt;

/// A size argument as a binding received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Size {
    /// Not given (`None`, `undefined`).
    #[default]
    Unset,
    /// A non-negative integer that fits the core's sizes.
    Fits(u64),
    /// A non-negative integer above `u64::MAX`: legal in both languages, larger than any body.
    AboveU64,
}

/// The options of [`Builder`], as both bindings take them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyOptions {
    /// The declared length (`Content-Length`).
    pub content_length: Size,
    /// Ring mode's high-water mark.
    pub max_buffered: Size,
    /// The largest body accepted.
    pub max_size: Size,
    /// Every segment this size (tuning and tests; Python only).
    pub segment_size: Size,
}

/// Why a body could not be made from its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionError {
    /// A declared length above `max_size` (or above any size): a refusal, not a bad argument.
    TooLarge(String),
    /// A value the core refuses (`max_buffered` or `segment_size` of 0: its [`BuildError`]).
    Refused(BuildError),
    /// A segment larger than the address space. Names the option.
    Invalid(&'static str, String),
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge(why) => f.write_str(why),
            Self::Refused(e) => e.fmt(f),
            Self::Invalid(name, why) => write!(f, "{name}: {why}"),
        }
    }
}

impl std::error::Error for OptionError {}

impl BodyOptions {
    /// Builds the body. A limit above `u64::MAX` (`max_size`, `max_buffered`) means the same as
    /// no limit a body can reach; a declared length above it can never be accepted.
    ///
    /// ```
    /// use bodypipe_python::options::{BodyOptions, OptionError, Size};
    ///
    /// let huge = BodyOptions { max_size: Size::AboveU64, content_length: Size::Fits(5), ..Default::default() };
    /// assert!(huge.build().is_ok());
    /// let refused = BodyOptions { content_length: Size::AboveU64, ..Default::default() };
    /// assert!(matches!(refused.build(), Err(OptionError::TooLarge(_))));
    /// let zero = BodyOptions { max_buffered: Size::Fits(0), ..Default::default() };
    /// assert!(matches!(zero.build(), Err(OptionError::Refused(bodypipe::BuildError::ZeroMaxBuffered))));
    /// ```
    pub fn build(&self) -> Result<(Writer, Reader), OptionError> {
        let mut b = Builder::new();
        b = match self.max_size {
            Size::Unset => b,
            Size::Fits(n) => b.max_size(n),
            Size::AboveU64 => b.max_size(u64::MAX),
        };
        b = match self.content_length {
            Size::Unset => b,
            Size::Fits(n) => b.content_length(n),
            Size::AboveU64 => {
                return Err(OptionError::TooLarge("content length exceeds any body size (above 2**64 - 1)".into()))
            }
        };
        b = match self.max_buffered {
            Size::Unset => b,
            // A high-water mark beyond the address space is never reached: the same as usize::MAX.
            Size::Fits(n) => b.max_buffered(usize::try_from(n).unwrap_or(usize::MAX)),
            Size::AboveU64 => b.max_buffered(usize::MAX),
        };
        b = match self.segment_size {
            Size::Unset => b,
            Size::Fits(n) => match usize::try_from(n) {
                Ok(n) => b.segment_size(n),
                Err(_) => return Err(OptionError::Invalid("segment_size", "is too large".into())),
            },
            Size::AboveU64 => return Err(OptionError::Invalid("segment_size", "is too large".into())),
        };
        b.build().map_err(|e| match e {
            BuildError::TooLarge { .. } => OptionError::TooLarge(e.to_string()),
            other => OptionError::Refused(other),
        })
    }
}
