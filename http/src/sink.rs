//! Where the chunked decoder puts the body bytes.

use std::collections::TryReserveError;

use bodypipe::{WriteError, Writer};

/// Why a [`Sink`] refused a write.
///
/// ```
/// use bodypipe_http::{Refusal, Sink};
///
/// let (mut w, r) = bodypipe::pipe();
/// drop(r);
/// assert_eq!(Sink::write_all(&mut w, b"x"), Err(Refusal::Fatal(bodypipe::WriteError::Closed)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal<E> {
    /// No room now: nothing was stored; the same write may succeed later (ring buffer at its
    /// high-water mark).
    Full,
    /// Refused for good.
    Fatal(E),
}

/// A destination for decoded body bytes. A write stores all of `data` or nothing.
///
/// ```
/// use bodypipe_http::{Refusal, Sink};
///
/// let (mut w, r) = bodypipe::Builder::new().max_buffered(4).build()?;
/// Sink::write_all(&mut w, b"abcd").map_err(|_| "refused")?;
/// assert_eq!(Sink::write_all(&mut w, b"e"), Err(Refusal::Full));
/// assert_eq!(r.buffered(), 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Sink {
    /// What a permanent refusal carries.
    type Error;

    /// Appends the whole of `data` (never empty), or nothing.
    fn write_all(&mut self, data: &[u8]) -> Result<(), Refusal<Self::Error>>;
}

impl Sink for Writer {
    type Error = WriteError;

    fn write_all(&mut self, data: &[u8]) -> Result<(), Refusal<WriteError>> {
        self.write(data).map_err(|e| if e == WriteError::Full { Refusal::Full } else { Refusal::Fatal(e) })
    }
}

/// A growable vector: never full; an allocation failure is a permanent refusal.
impl Sink for Vec<u8> {
    type Error = TryReserveError;

    fn write_all(&mut self, data: &[u8]) -> Result<(), Refusal<TryReserveError>> {
        self.try_reserve(data.len()).map_err(Refusal::Fatal)?;
        self.extend_from_slice(data);
        Ok(())
    }
}

impl<S: Sink + ?Sized> Sink for &mut S {
    type Error = S::Error;

    fn write_all(&mut self, data: &[u8]) -> Result<(), Refusal<S::Error>> {
        (**self).write_all(data)
    }
}
