//! The state the writer and the readers share: positions, the end of the stream, wake-ups.

use crate::primitive::{Arc, AtomicBool, AtomicU32, AtomicU64, Ordering, UnsafeCell};
use crate::ready::{ReadyList, Subscription, Wake};
use crate::segment::{FreeList, Link, Segment};
use crate::wait::Signal;

/// The stream is still being written.
pub(crate) const OPEN: u32 = 0;
/// The writer closed it (or the content length was reached): EOF after the data.
pub(crate) const EOF: u32 = 1;
/// The writer aborted it: the data, then an error with the reason.
pub(crate) const ABORTED: u32 = 2;

/// Why an [`on_writable`](crate::Writer::on_writable) callback fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Writability {
    /// Unread bytes fell below half of `max_buffered` (or there is no high-water mark).
    Writable,
    /// The reader side closed; further writes fail with [`WriteError::Closed`](crate::WriteError::Closed).
    ReaderClosed,
}

/// Fixed settings of one pipe.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) content_length: Option<u64>,
    pub(crate) max_buffered: Option<u64>,
    pub(crate) max_size: u64,
    pub(crate) first_segment: usize,
    pub(crate) sizing: Sizing,
    /// Fault large segments in ahead of the writer (`Segment::prefault`).
    pub(crate) prefault: bool,
}

/// How the writer sizes new segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sizing {
    /// Every segment this size (the `segment_size` tuning knob).
    Fixed(usize),
    /// Start at `first_segment`, double up to `max` as bytes arrive (every other pipe, whatever
    /// length it declares: a segment is never sized from a length the client only claims).
    Geometric { max: usize },
}

/// A snapshot of a pipe's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Bytes written (published) so far.
    pub written: u64,
    /// The read position (as [`Reader::position`](crate::Reader::position)).
    pub position: u64,
    /// Unread bytes (`written - read`).
    pub buffered: u64,
    /// The declared content length, if any.
    pub content_length: Option<u64>,
    /// The high-water mark, if in ring mode.
    pub max_buffered: Option<u64>,
    /// The writer closed the stream (or the content length was reached).
    pub eof: bool,
    /// The writer aborted the stream.
    pub aborted: bool,
    /// The reader side closed.
    pub reader_closed: bool,
    /// Wake syscalls made to wake parked readers so far: with threshold wake-ups, at most about
    /// one per blocking read call that had to park, however many writes fed it.
    pub reader_wakes: u64,
    /// Wake syscalls made to wake a writer parked in `wait_writable` so far.
    pub writer_wakes: u64,
    /// A blocking read is registered to be woken: its reader is parked, or about to park. False
    /// means none is parked (save one being woken right now). A wait that ended without a wake
    /// (its last check before parking found its bytes, or it timed out) leaves its registration
    /// until the next write that meets it, so true can outlast a wait until then.
    pub reader_waiting: bool,
    /// The writer is registered to be woken for room (ring mode: `wait_writable`, or a write
    /// waiting for the reader); as `reader_waiting`.
    pub writer_waiting: bool,
}

/// Gives a hot atomic a cache line of its own.
///
/// `write_pos` is stored on every write and `read_pos` on every read; on the same line as each
/// other, or as the rarely written fields the other side loads on every call (`end`,
/// `reader_closed`, the signals' `parked` flags), every store would invalidate the other core's
/// copy. 64 bytes, not the 128 that x86's adjacent-line prefetcher would prefer: measured, 128
/// bought nothing over 64 here and doubled an idle pipe's size (424 -> 857 bytes).
#[repr(align(64))]
#[derive(Debug)]
pub(crate) struct CachePadded<T>(T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

pub(crate) struct Shared {
    pub(crate) config: Config,
    /// Bytes published by the writer. Release by the writer after copying; Acquire by readers.
    pub(crate) write_pos: CachePadded<AtomicU64>,
    /// The reader's cursor, mirrored for lock-free queries and for the writer's ring check.
    pub(crate) read_pos: CachePadded<AtomicU64>,
    /// Bumped after every backward seek's `read_pos` store, so the writer's cached copy of
    /// `read_pos` (which assumes it only grows) is refreshed. Rarely written, so the writer's
    /// per-write load of it hits a clean cache line, unlike a load of `read_pos`.
    pub(crate) rewinds: AtomicU64,
    /// OPEN, EOF or ABORTED; set once by the writer, after its last `write_pos` store.
    pub(crate) end: AtomicU32,
    /// Written once, before `end` becomes ABORTED (Release), read only after seeing ABORTED (Acquire).
    reason: UnsafeCell<Option<Box<str>>>,
    /// The reader hung up. Set once (an AcqRel swap, so exactly one closer runs the wake-ups),
    /// never cleared.
    ///
    /// ORDERING: it publishes no data, only "stop": readers and waiters load it with Acquire so
    /// that a close is seen no earlier than what the closing thread did before it (its reads),
    /// and it is always stored before a `Signal::notify_all`, whose SeqCst fence pairs it with the
    /// waiters' re-check like any other progress. The writer's `admit` loads it Relaxed: a
    /// racing close may let one more write through, indistinguishable from that write coming
    /// first.
    pub(crate) reader_closed: AtomicBool,
    /// The first segment, as an owning `Arc::into_raw` pointer; published once by the writer.
    head: Link,
    /// Readers park here waiting for data or the end.
    pub(crate) data: Signal,
    /// The writer parks here waiting for room (ring mode).
    pub(crate) space: Signal,
    /// The writer's "room again" subscriptions (callbacks, an async writer's waker), fired by
    /// readers; thresholds are read positions.
    writable: ReadyList<Writability>,
    /// "Data or end" subscriptions (event loops, async readers), fired by the writer; thresholds
    /// are write positions.
    readable: ReadyList<()>,
    /// Ring mode: segments the reader is done with, for the writer to reuse.
    pub(crate) free: FreeList,
}

// SAFETY: `reason` is the only non-Sync field. It is written once by the writer before the
// Release store of ABORTED and read only after an Acquire load that saw ABORTED, so the write
// happens before every read and no two threads ever access it in conflict.
unsafe impl Sync for Shared {}
// SAFETY: every field is Send (the subscriptions' callbacks are `Send`); see above for `reason`.
unsafe impl Send for Shared {}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(config: Config) -> Self {
        Self {
            config,
            write_pos: CachePadded(AtomicU64::new(0)),
            read_pos: CachePadded(AtomicU64::new(0)),
            rewinds: AtomicU64::new(0),
            end: AtomicU32::new(OPEN),
            reason: UnsafeCell::new(None),
            reader_closed: AtomicBool::new(false),
            head: Link::new(),
            data: Signal::new(),
            space: Signal::new(),
            writable: ReadyList::new(),
            readable: ReadyList::new(),
            free: FreeList::new(),
        }
    }

    /// Publishes the first segment (writer, once; see [`Link::set`] for the ordering).
    pub(crate) fn publish_head(&self, seg: Arc<Segment>) {
        self.head.set(seg);
    }

    /// A new reference to the first segment, if the writer has published one (cursor lock held,
    /// after an Acquire load of a non-zero `write_pos`).
    pub(crate) fn head(&self) -> Option<Arc<Segment>> {
        self.head.get()
    }

    /// Drops the chain's reference to the first segment (ring-mode retirement, cursor lock held).
    pub(crate) fn take_head(&self) -> Option<Arc<Segment>> {
        self.head.take()
    }

    /// Takes every link of the chain, from the head (or `oldest`) on, once no reader can follow them (the
    /// reader is being dropped, or the pipe is). Segments that a [`View`](crate::View) (or the
    /// writer's tail) still holds stay alive, but no longer hold their successors: a small view
    /// pins its own segment, not the rest of the body. The `Segment` drop alone cannot do this,
    /// since it only runs once the view is gone.
    pub(crate) fn cut_chain(&self, oldest: Option<Arc<Segment>>) {
        // In ring mode the head link is released early; the oldest segment the reader still
        // holds is where the chain starts then.
        let mut next = self.head.take().or(oldest);
        while let Some(seg) = next {
            next = seg.take_next();
        }
    }

    /// Ends the stream (writer). Returns false if it had already ended (first end wins).
    pub(crate) fn finish(&self, abort_reason: Option<String>) -> bool {
        let state = if abort_reason.is_some() { ABORTED } else { EOF };
        if self.end.load(Ordering::Relaxed) != OPEN {
            return false;
        }
        if let Some(r) = abort_reason {
            // SAFETY: only the single writer gets here, once (the stream is still OPEN and `finish`
            // consumes the writer), and no reader reads `reason` before seeing ABORTED below.
            self.reason.with_mut(|p| unsafe { *p = Some(r.into_boxed_str()) });
        }
        // ORDERING: Release orders every earlier `write_pos` store (and the reason) before the
        // end; a reader that loads `end` with Acquire *before* loading `write_pos` therefore sees
        // the final position and never reports EOF early (loom: `close_after_writes`).
        self.end.store(state, Ordering::Release);
        self.wake_readers();
        // The writer is gone: a pending writable subscription can never be useful.
        self.writable.clear();
        true
    }

    /// The abort reason, once `end` has been seen as ABORTED with Acquire.
    pub(crate) fn reason(&self) -> String {
        // SAFETY: callers saw ABORTED with an Acquire load, which the write in `finish` precedes.
        self.reason.with(|p| unsafe { (*p).as_deref().unwrap_or("aborted").to_owned() })
    }

    /// The stream's end state and the write position, in the order that makes EOF trustworthy.
    #[inline]
    pub(crate) fn end_and_written(&self) -> (u32, u64) {
        // ORDERING: `end` first, with Acquire: if it says EOF/ABORTED, the `write_pos` loaded after
        // it is final. In the other order a reader could pair a stale position with a new EOF.
        let end = self.end.load(Ordering::Acquire);
        let written = self.write_pos.load(Ordering::Acquire);
        (end, written)
    }

    /// Unread bytes now.
    #[inline]
    pub(crate) fn buffered(&self) -> u64 {
        // Load the reader's position first: it never passes the write position, so this
        // difference cannot underflow even though the two loads are not one snapshot.
        let read = self.read_pos.load(Ordering::Acquire);
        let written = self.write_pos.load(Ordering::Acquire);
        written.saturating_sub(read)
    }

    /// Whether the writer has room under the high-water mark.
    pub(crate) fn has_room(&self) -> bool {
        self.config.max_buffered.is_none_or(|m| self.buffered() < m)
    }

    /// Arms a writable subscription (writer side): due once unread bytes fall below half of the
    /// high-water mark (at once outside ring mode), or the reader closes.
    pub(crate) fn arm_writable(&self, wake: Wake<Writability>) -> Subscription {
        let threshold = match self.config.max_buffered {
            // Unread bytes `written - read_pos` below `ceil(m / 2)`: the read position to reach.
            // Only the writer moves `write_pos`, and it is the one arming.
            Some(m) => (self.write_pos.load(Ordering::Relaxed) + 1).saturating_sub(m.div_ceil(2)),
            None => 0,
        };
        self.writable.arm(threshold, wake, || self.writable_due(threshold))
    }

    /// Why a writable subscription with `threshold` should fire now, if it should.
    fn writable_due(&self, threshold: u64) -> Option<Writability> {
        if self.reader_closed.load(Ordering::Acquire) {
            Some(Writability::ReaderClosed)
        } else if self.config.max_buffered.is_none() || self.read_pos.load(Ordering::Acquire) >= threshold {
            Some(Writability::Writable)
        } else {
            None
        }
    }

    /// Removes a writable subscription unfired; false if it fired or was removed already.
    pub(crate) fn cancel_writable(&self, sub: Subscription) -> bool {
        self.writable.cancel(sub)
    }

    /// Arms a readable subscription (reader side): due once `min` (at least 1) bytes beyond the
    /// read position are written, the stream has ended, or the reader is closed; at once if that
    /// is already so.
    pub(crate) fn arm_readable(&self, min: u64, wake: Wake<()>) -> Subscription {
        // A write position, so that the writer compares it with its own position and loads
        // nothing of the readers'. If other reader threads consume meanwhile, it fires early: a
        // readiness callback is a hint, and its receiver re-checks.
        let threshold = self.read_pos.load(Ordering::Acquire).saturating_add(min.max(1));
        self.readable.arm(threshold, wake, || self.readable_due(threshold))
    }

    fn readable_due(&self, threshold: u64) -> Option<()> {
        let (end, written) = self.end_and_written();
        (written >= threshold || end != OPEN || self.reader_closed.load(Ordering::Acquire)).then_some(())
    }

    /// Removes a readable subscription unfired; false if it fired or was removed already.
    pub(crate) fn cancel_readable(&self, sub: Subscription) -> bool {
        self.readable.cancel(sub)
    }

    /// How many readable subscriptions are armed.
    pub(crate) fn armed_readable(&self) -> usize {
        self.readable.armed()
    }

    /// Writer side, after publishing a write up to `pos` (Release store of `write_pos` done): wake
    /// parked readers whose threshold `pos` meets and fire an armed readable callback. Costs a
    /// fence and two Relaxed loads when nobody waits for `pos` or less.
    #[inline]
    pub(crate) fn after_write(&self, pos: u64) {
        // `notify` begins with the SeqCst fence that also orders our publication before the load
        // of the readable list's threshold (the Dekker pair with `ReadyList::arm`).
        self.data.notify(pos);
        self.readable.fire(pos, ());
    }

    /// After the end of the stream, the reader closing or a backward seek (each published
    /// before the call): every parked reader re-checks, whatever its threshold.
    pub(crate) fn wake_readers(&self) {
        // As in `after_write`: `notify_all` begins with the fence.
        self.data.notify_all();
        self.readable.fire_all(());
    }

    /// Reader side, after moving the cursor (Release store of `read_pos` done): wake a writer
    /// waiting for room and fire a writable callback if one is due. Ring mode only.
    pub(crate) fn after_read(&self) {
        if self.config.max_buffered.is_none() {
            return;
        }
        // Our own store, or a later one by another reader thread: either meets a writer's
        // threshold that our store met.
        let read = self.read_pos.load(Ordering::Relaxed);
        // `notify` begins with the SeqCst fence that also orders our `read_pos` store before the
        // load of the writable list's threshold (the Dekker pair with `ReadyList::arm`).
        self.space.notify(read);
        self.writable.fire(read, Writability::Writable);
    }

    /// The reader hung up: fail further writes, wake everyone, tell a waiting writer.
    pub(crate) fn close_reader(&self) {
        if self.reader_closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.wake_readers();
        self.space.notify_all();
        self.writable.fire_all(Writability::ReaderClosed);
    }

    pub(crate) fn stats(&self) -> Stats {
        let (end, written) = self.end_and_written();
        let read = self.read_pos.load(Ordering::Acquire).min(written);
        Stats {
            written,
            position: read,
            buffered: written - read,
            content_length: self.config.content_length,
            max_buffered: self.config.max_buffered,
            eof: end == EOF,
            aborted: end == ABORTED,
            reader_closed: self.reader_closed.load(Ordering::Acquire),
            reader_wakes: self.data.wakes(),
            writer_wakes: self.space.wakes(),
            reader_waiting: self.data.has_waiter(),
            writer_waiting: self.space.has_waiter(),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.cut_chain(None);
    }
}
