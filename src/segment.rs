//! Segments: fixed-capacity blocks of body bytes that never move once handed out.
//!
//! A segment is shared through an `Arc`: the chain of `next` links, the reader's window and any
//! [`View`](crate::View) each hold a reference, so memory a Python memoryview points into stays
//! valid for as long as the view lives, whatever the writer does next. Bytes below the published
//! `write_pos` are immutable; the writer only ever writes above it.
//!
//! The links belong to the pipe, not to the segments' other owners: when the reader goes (and
//! again when the pipe itself goes) the chain is cut link by link (`Shared::cut_chain`), so a view
//! keeps its own segment alive and nothing after it.

use crate::primitive::{Arc, AtomicPtr, Ordering, UnsafeCell};
use std::ptr::NonNull;

/// Segments at least this large are faulted in ahead of the writer, [`PREFAULT_WINDOW`] bytes
/// at a time, with one `MADV_POPULATE_WRITE` call instead of one page fault per 4 KiB page.
///
/// Measured by the bench suite's `bodypipe_unbounded` and `bodypipe_unbounded_no_prefault` rows
/// (`Builder::prefault`; 1 GiB streamed to a reader thread, medians of 7): 3.41 GB/s with
/// prefaulting and 2.52 without at 64 KiB writes, against 2.63 for one thread copying the same
/// bytes into one fresh allocation. At 16 KiB writes the two are within the run-to-run noise of
/// fresh memory on these VMs (0.7 to 3.5 GB/s). Ring mode never prefaults (`Config::prefault`):
/// its segments are reused, so only their first pass could fault.
///
/// Transparent huge pages (`MADV_HUGEPAGE`) were measured too and are not used: with the
/// kernel's default `defrag=madvise`, a fault on an advised region compacts memory synchronously,
/// and the same body ran at a median of 1.2-1.9 GB/s, anywhere from 0.5 to 4.4 between runs.
pub(crate) const PREFAULT_MIN: usize = 2 << 20;
/// How far ahead of a write the writer faults pages in: one syscall per this many bytes.
const PREFAULT_WINDOW: usize = 2 << 20;

/// One block of the body.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Stream offset of the first byte. Set by the writer while it holds the only reference.
    start: u64,
    ptr: NonNull<u8>,
    cap: usize,
    /// The next segment, as an owning `Arc::into_raw` pointer (null until the writer links one).
    /// The chain owns its segments, so readers can follow it without locks; the writer stores a
    /// link once, readers take it only when retiring a segment in ring mode (under the cursor
    /// lock), and `Shared::cut_chain` takes every link once no reader can follow them.
    next: Link,
    /// Zero-sized under std. Under loom, reads of the bytes go through `with` and recycling goes
    /// through `with_mut`, so loom reports a reuse that is not ordered after every read.
    access: UnsafeCell<()>,
}

// SAFETY: the bytes behind `ptr` are plain `u8`s owned by the segment. Concurrent access is
// disjoint by construction: the writer writes only at or above the published `write_pos`, readers
// read only below it, and a segment is rewritten only after `Arc::get_mut` proves no reader, view
// or link still refers to it.
unsafe impl Send for Segment {}
// SAFETY: as for `Send`; shared references only read published bytes or use atomics.
unsafe impl Sync for Segment {}

impl Segment {
    /// Allocates a segment of at least `cap` bytes starting at stream offset `start`, or `None`
    /// when the allocator refuses (never aborts the process).
    pub(crate) fn try_new(start: u64, cap: usize) -> Option<Arc<Segment>> {
        let cap = cap.max(1);
        let mut v: Vec<u8> = Vec::new();
        v.try_reserve_exact(cap).ok()?;
        let mut v = std::mem::ManuallyDrop::new(v);
        let cap = v.capacity();
        let ptr = NonNull::new(v.as_mut_ptr())?;
        Some(Arc::new(Segment { start, ptr, cap, next: Link::new(), access: UnsafeCell::new(()) }))
    }

    #[inline]
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    #[inline]
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// Stream offset one past the last byte this segment can hold.
    #[inline]
    pub(crate) fn end(&self) -> u64 {
        self.start + self.cap as u64
    }

    /// Makes a segment that nobody else refers to hold the bytes from `start` on.
    pub(crate) fn reset(&mut self, start: u64) {
        self.access.with_mut(|_| ());
        self.start = start;
        debug_assert!(self.next.0.load(Ordering::Relaxed).is_null());
    }

    /// Copies `src` into the segment at `offset`.
    ///
    /// # Safety
    /// `offset + src.len() <= cap`, the range lies at or above the published write position, and
    /// only the single writer calls this.
    #[inline]
    pub(crate) unsafe fn write_at(&self, offset: usize, src: &[u8]) {
        debug_assert!(offset + src.len() <= self.cap);
        // SAFETY: in bounds by the caller's contract; no reader reads unpublished bytes, so this
        // range is not aliased by any shared slice.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len()) };
    }

    /// Faults in the pages of `[from, to)` rounded up to the next prefault window, ahead of the
    /// writer copying there (writer only); returns the offset faulted in so far. Segments below
    /// [`PREFAULT_MIN`] are left to ordinary page faults: the result is then `cap`.
    ///
    /// Never more than `written` bytes (those in the stream before this write) past `to`: memory
    /// runs ahead of the bytes received by at most a window, and by no more than was received,
    /// so a body that declares 1 GiB and sends a byte costs a page, not a window.
    ///
    /// Advice only: the contents are unchanged, and on failure (a kernel before 5.14, or memory
    /// short right now) the pages are simply faulted in by the copy, as without it.
    pub(crate) fn prefault(&self, from: usize, to: usize, written: u64) -> usize {
        if self.cap < PREFAULT_MIN {
            return self.cap;
        }
        let ahead = usize::try_from(written).unwrap_or(usize::MAX);
        let upto =
            to.div_ceil(PREFAULT_WINDOW).saturating_mul(PREFAULT_WINDOW).min(to.saturating_add(ahead)).min(self.cap);
        if upto > from {
            populate_write(self.ptr_at(from), upto - from);
        }
        upto.max(from)
    }

    /// The published bytes `[offset, offset + len)`.
    ///
    /// # Safety
    /// The range is in bounds and below a `write_pos` loaded with Acquire, so the writer never
    /// writes it again while this segment is alive and unrecycled.
    #[inline]
    pub(crate) unsafe fn slice(&self, offset: usize, len: usize) -> &[u8] {
        debug_assert!(offset + len <= self.cap);
        self.access.with(|_| ());
        // SAFETY: in bounds and immutable by the caller's contract.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len) }
    }

    /// Marks a read of published bytes through a raw pointer (a [`View`](crate::View)): nothing
    /// under std; under loom an access to the segment's cell, so that a recycling not ordered
    /// after the read is reported.
    #[inline]
    pub(crate) fn touch(&self) {
        self.access.with(|_| ());
    }

    /// Raw pointer to byte `offset`, for views that outlive any borrow.
    #[inline]
    pub(crate) fn ptr_at(&self, offset: usize) -> *const u8 {
        debug_assert!(offset <= self.cap);
        // SAFETY: `offset <= cap`, so the result is in bounds or one past the end.
        unsafe { self.ptr.as_ptr().add(offset) }
    }

    /// Links `next` after this segment (writer, once per segment).
    pub(crate) fn link(&self, next: Arc<Segment>) {
        self.next.set(next);
    }

    /// A new reference to the linked successor, if any (see [`Link::get`] for when to call).
    pub(crate) fn next(&self) -> Option<Arc<Segment>> {
        self.next.get()
    }

    /// Takes the owning link to the successor (ring-mode retirement, under the cursor lock).
    pub(crate) fn take_next(&self) -> Option<Arc<Segment>> {
        self.next.take()
    }

    /// The raw link word, for the free list (which reuses it as its own link).
    pub(crate) fn link_word(&self) -> &AtomicPtr<Segment> {
        &self.next.0
    }
}

/// An owning, atomically published reference to a segment: `Segment::next` and the pipe's
/// head. Null until the writer sets it once; readers clone through it under the cursor lock; only
/// the reader takes it back (ring-mode retirement) or the last owner (drop).
#[derive(Debug)]
pub(crate) struct Link(AtomicPtr<Segment>);

impl Link {
    pub(crate) fn new() -> Self {
        Self(AtomicPtr::new(std::ptr::null_mut()))
    }

    /// Publishes `seg` (writer, once).
    pub(crate) fn set(&self, seg: Arc<Segment>) {
        let raw = Arc::into_raw(seg).cast_mut();
        // ORDERING: Release, for `take` (Acquire) only. Readers that follow a link with `get`
        // do so only to reach bytes below a `write_pos` they loaded with Acquire, and the writer
        // sets every link a write needs before its Release store of `write_pos`; that pair
        // publishes the segment's fields and bytes to them (loom: `segment_publication` fails when
        // the `write_pos` store is weakened). `Shared::cut_chain` is different: when the reader
        // is dropped it takes every link, including those of a write still in progress that no
        // `write_pos` covers, and then touches the segment behind it (its own link) and drops
        // the reference. This Release / Acquire pair is what makes the segment's construction by
        // the writer happen before that (loom: `reader_drop_cuts_chain_while_writer_links`
        // reports a causality violation with Relaxed here). Once per segment, so it costs nothing
        // measurable (and on x86 the swap is the same instruction either way).
        let old = self.0.swap(raw, Ordering::Release);
        debug_assert!(old.is_null());
    }

    /// A new reference to the linked segment, if any.
    ///
    /// Call only with the cursor lock held, after an Acquire load of `write_pos` that covers
    /// bytes in the linked segment (see `set`).
    pub(crate) fn get(&self) -> Option<Arc<Segment>> {
        // ORDERING: Relaxed; see `set`.
        let raw = self.0.load(Ordering::Relaxed);
        // SAFETY: a non-null link is an owning `Arc::into_raw` pointer that only `take` (called
        // under the cursor lock, as our caller holds it, or by the last owner) gives back, so the
        // reference is alive while we add ours.
        NonNull::new(raw).map(|p| unsafe { clone_raw(p.as_ptr()) })
    }

    /// Takes the owning reference back.
    pub(crate) fn take(&self) -> Option<Arc<Segment>> {
        // ORDERING: Acquire pairs with the Release in `set` (see there).
        let raw = self.0.swap(std::ptr::null_mut(), Ordering::Acquire);
        // SAFETY: the pointer came from `Arc::into_raw` and the swap makes us its only taker.
        NonNull::new(raw).map(|p| unsafe { Arc::from_raw(p.as_ptr().cast_const()) })
    }
}

/// A new `Arc` from a raw pointer that some other owner keeps alive.
///
/// # Safety
/// `p` came from `Arc::into_raw` and that reference is still held while this runs.
unsafe fn clone_raw(p: *mut Segment) -> Arc<Segment> {
    // SAFETY: per the contract, the count is at least one while we add ours.
    unsafe {
        Arc::increment_strong_count(p.cast_const());
        Arc::from_raw(p.cast_const())
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Unlink iteratively: a 1 GiB body in 4 KiB segments would overflow the stack if each
        // segment's drop dropped its successor recursively.
        let mut next = self.take_next();
        while let Some(seg) = next {
            next = match Arc::try_unwrap(seg) {
                Ok(seg) => seg.take_next(),
                Err(_) => None,
            };
        }
        // SAFETY: `ptr`/`cap` came from a `Vec<u8>` we leaked in `try_new`; length 0 means no
        // element is dropped (they are plain bytes anyway).
        drop(unsafe { Vec::from_raw_parts(self.ptr.as_ptr(), 0, self.cap) });
    }
}

/// Faults in the whole pages of `[ptr, ptr + len)` for writing, without touching their contents.
#[cfg(target_os = "linux")]
fn populate_write(ptr: *const u8, len: usize) {
    use std::sync::atomic::{AtomicBool, Ordering};
    // Set once the kernel says it has no MADV_POPULATE_WRITE, so that one failure costs one
    // syscall per process, not one per window. A hint shared by all pipes: Relaxed is enough.
    static UNSUPPORTED: AtomicBool = AtomicBool::new(false);
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    if UNSUPPORTED.load(Ordering::Relaxed) {
        return;
    }
    // The real page size (4 KiB on x86-64, up to 64 KiB on arm64): a start rounded to a smaller
    // one would be refused (EINVAL) and switch prefaulting off for good.
    // SAFETY: sysconf only reads a system constant.
    let page =
        *PAGE.get_or_init(|| usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1));
    // Whole pages inside the range only: rounding outwards could reach unmapped addresses.
    let start = (ptr as usize).div_ceil(page) * page;
    let end = (ptr as usize + len) / page * page;
    if end <= start {
        return;
    }
    // SAFETY: [start, end) lies inside one live allocation of ours and is page-aligned.
    // MADV_POPULATE_WRITE only populates page tables as a write fault would; it never changes
    // the bytes, so no reader or Rust reference can observe it.
    let r = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_POPULATE_WRITE) };
    if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        UNSUPPORTED.store(true, Ordering::Relaxed);
    }
}

#[cfg(not(target_os = "linux"))]
fn populate_write(_ptr: *const u8, _len: usize) {}

/// Segments the reader has finished with in ring mode, handed back to the writer for reuse.
///
/// A Treiber stack with many pushers (readers, serialised by the cursor lock anyway) and a single
/// consumer (the writer) that takes the whole stack at once with a swap, so there is no ABA.
/// Each entry owns one reference, linked through the segment's own `next` word.
#[derive(Debug)]
pub(crate) struct FreeList {
    head: AtomicPtr<Segment>,
}

impl FreeList {
    pub(crate) fn new() -> Self {
        Self { head: AtomicPtr::new(std::ptr::null_mut()) }
    }

    /// Gives `seg` (already unlinked from its successor) back to the writer.
    pub(crate) fn push(&self, seg: Arc<Segment>) {
        let raw = Arc::into_raw(seg).cast_mut();
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: `raw` is alive (we own a reference) and its link word is ours to set: it
            // was unlinked and is in no other list.
            unsafe { (*raw).link_word().store(head, Ordering::Relaxed) };
            // ORDERING: Release makes every read the reader did from this segment (all done
            // under the cursor lock before retiring it) happen before the writer's Acquire swap
            // in `take_all` and hence before it rewrites the bytes. Weakening it to Relaxed lets
            // the writer recycle a segment a reader is still reading (loom: `ring_free_list_handover`).
            match self.head.compare_exchange_weak(head, raw, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Takes every segment in the list (writer only).
    pub(crate) fn take_all(&self, out: &mut Vec<Arc<Segment>>) {
        // ORDERING: pairs with the Release in `push`.
        let mut raw = self.head.swap(std::ptr::null_mut(), Ordering::Acquire);
        while let Some(p) = NonNull::new(raw) {
            // SAFETY: every entry is an owning `into_raw` pointer and the swap made us its owner.
            let seg = unsafe { Arc::from_raw(p.as_ptr().cast_const()) };
            raw = seg.link_word().swap(std::ptr::null_mut(), Ordering::Relaxed);
            out.push(seg);
        }
    }
}

impl Drop for FreeList {
    fn drop(&mut self) {
        let mut all = Vec::new();
        self.take_all(&mut all);
    }
}
