//! Zero-copy windows onto published bytes that outlive the reader and the cursor.

use crate::primitive::Arc;
use crate::segment::Segment;
use std::collections::TryReserveError;
use std::ops::Deref;

enum Backing {
    Empty,
    Segment(Arc<Segment>),
    Heap(#[allow(dead_code)] std::sync::Arc<Vec<u8>>),
}

/// Read-only bytes of the body: a window onto one segment (zero-copy), or a coalesced copy.
///
/// A view owns a reference to what it points into, so it stays valid after the reader, the
/// writer and the pipe are gone, and while writes continue; in ring mode its segment is not
/// reused while the view lives. It pins that one segment only: once the reader and the writer
/// are gone, a 10-byte view of a large body keeps one segment (at most 8 MiB) allocated, not
/// the body. `as_ptr` is stable for the view's whole life, which is what the
/// Python buffer protocol needs.
///
/// ```
/// let (mut w, r) = bodypipe::pipe();
/// w.write(b"hello")?;
/// let view = r.view()?;
/// w.write(b" world")?;          // writes continue while the view is held
/// drop(r);
/// assert_eq!(&*view, b"hello"); // still valid
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct View {
    backing: Backing,
    ptr: *const u8,
    len: usize,
}

impl Clone for Backing {
    fn clone(&self) -> Self {
        match self {
            Backing::Empty => Backing::Empty,
            Backing::Segment(s) => Backing::Segment(s.clone()),
            Backing::Heap(h) => Backing::Heap(h.clone()),
        }
    }
}

// SAFETY: a view only reads immutable published bytes that its `backing` keeps alive; the raw
// pointer is just a cached address into that owned memory.
unsafe impl Send for View {}
// SAFETY: as above; `&View` gives only shared reads of immutable bytes.
unsafe impl Sync for View {}

impl View {
    pub(crate) fn empty() -> Self {
        Self { backing: Backing::Empty, ptr: std::ptr::NonNull::<u8>::dangling().as_ptr(), len: 0 }
    }

    /// A view of `[off, off + len)` of `seg`; the caller guarantees those bytes are published.
    pub(crate) fn segment(seg: Arc<Segment>, off: usize, len: usize) -> Self {
        let ptr = seg.ptr_at(off);
        Self { backing: Backing::Segment(seg), ptr, len }
    }

    /// One contiguous copy of several views.
    pub(crate) fn coalesce(parts: &[View]) -> Result<Self, TryReserveError> {
        let total: usize = parts.iter().map(|v| v.len).sum();
        let mut buf = Vec::new();
        buf.try_reserve_exact(total)?;
        for p in parts {
            buf.extend_from_slice(p);
        }
        let ptr = buf.as_ptr();
        Ok(Self { backing: Backing::Heap(std::sync::Arc::new(buf)), ptr, len: total })
    }

    /// Whether this view is a window onto a segment (true) or a coalesced copy / empty (false).
    ///
    /// ```
    /// let (mut w, r) = bodypipe::Builder::new().segment_size(2).build()?;
    /// w.write(b"ab")?;
    /// assert!(r.view()?.is_zero_copy()); // within one segment
    /// w.write(b"cd")?;
    /// assert!(!r.view()?.is_zero_copy()); // two segments: coalesced into a copy
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_zero_copy(&self) -> bool {
        matches!(self.backing, Backing::Segment(_))
    }
}

impl Deref for View {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        if let Backing::Segment(seg) = &self.backing {
            seg.touch();
        }
        // SAFETY: `ptr..ptr+len` lies in memory owned by `backing` (a segment's published bytes,
        // which are never rewritten while referenced, or our own copy) and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// An empty view (no bytes, nothing pinned), as a reader's `view()` of nothing unread is.
///
/// ```
/// let v = bodypipe::View::default();
/// assert!(v.is_empty());
/// ```
impl Default for View {
    fn default() -> Self {
        Self::empty()
    }
}

impl AsRef<[u8]> for View {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").field("len", &self.len).field("zero_copy", &self.is_zero_copy()).finish()
    }
}
