//! The producer side: appends whole writes into segments and publishes them with one store.

use crate::error::{CloseError, WaitWritableError, WriteError};
use crate::primitive::{Arc, Ordering};
use crate::ready::{Subscription, Wake};
use crate::segment::Segment;
use crate::shared::{Shared, Sizing, Stats, Writability};
use crate::wait::Check;
use crate::INCOMPLETE_BODY;
use std::future::Future;
use std::io;
use std::ops::Deref;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Ring mode: at most this many retired segments still pinned by views are kept for reuse.
const SPARE_MAX: usize = 8;

/// The producer half of a pipe. There is exactly one, so writes need no lock.
///
/// Writes never block: they append the whole chunk or fail with a [`WriteError`], storing nothing.
/// `close` ends the body normally, `abort` ends it with an error; dropping a writer without either
/// aborts with the reason `"writer dropped"`, so a reader never waits on a producer that is gone.
///
/// ```
/// use std::io::Read;
///
/// let (mut w, r) = bodypipe::pipe();
/// w.write(b"hello ")?;
/// w.write(b"world")?;
/// w.close()?;
/// let mut body = String::new();
/// (&r).read_to_string(&mut body)?;
/// assert_eq!(body, "hello world");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Writer {
    shared: Arc<Shared>,
    /// The segment being filled, if any.
    tail: Option<Arc<Segment>>,
    /// Our own copy of `write_pos`: only this writer changes it.
    pos: u64,
    /// Size of the next segment to allocate (geometric growth up to the cap).
    next_size: usize,
    /// Ring mode: retired segments taken from the free list, candidates for reuse.
    spare: Vec<Arc<Segment>>,
    /// Ring mode: the reader's position as last loaded (the rtrb cached-index fast path). Reads
    /// only move it forward, so a stale value under-estimates the room and the cached check can
    /// only refuse too early, whereupon the real `read_pos` is loaded; a backward seek bumps
    /// `rewinds`, which invalidates the cache. Saves loading a line the reader writes on every
    /// read, on every write.
    read_cache: u64,
    /// The `rewinds` count `read_cache` was loaded under.
    rewinds_seen: u64,
    /// Offset in `tail` up to which its pages have been faulted in ahead of the copies
    /// (`Segment::prefault`). `usize::MAX` when `config.prefault` is off (ring mode, or
    /// `Builder::prefault(false)`), so the per-write check is one comparison that never fires.
    prefaulted: usize,
    /// The waker `poll_writable` registered, if it returned `Pending` since.
    waker: Option<Subscription>,
    finished: bool,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("written", &self.pos).field("shared", &self.shared).finish()
    }
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let next_size = shared.config.first_segment;
        let prefaulted = if shared.config.prefault { 0 } else { usize::MAX };
        Self {
            shared,
            tail: None,
            pos: 0,
            next_size,
            spare: Vec::new(),
            read_cache: 0,
            rewinds_seen: 0,
            prefaulted,
            waker: None,
            finished: false,
        }
    }

    /// Appends `data` whole, or stores nothing and says why. Never blocks.
    ///
    /// ```
    /// use bodypipe::{Builder, WriteError};
    ///
    /// let (mut w, r) = Builder::new().content_length(4).build()?;
    /// assert_eq!(w.write(b"abcde"), Err(WriteError::ExceedsContentLength));
    /// w.write(b"abcd")?;
    /// assert_eq!(r.buffered(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write(&mut self, data: &[u8]) -> Result<(), WriteError> {
        self.write_slices(&[data])
    }

    /// Appends the concatenation of `parts` as one write: readers see all of it or none of it.
    ///
    /// This is how a gather list (Erlang iodata, `write_vectored`) stays one atomic append.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write_slices(&[&b"head"[..], &b"er"[..]])?;
    /// assert_eq!(r.buffered(), 6);
    /// # Ok::<(), bodypipe::WriteError>(())
    /// ```
    pub fn write_slices<B: Deref<Target = [u8]>>(&mut self, parts: &[B]) -> Result<(), WriteError> {
        let n = parts.iter().try_fold(0u64, |acc, p| acc.checked_add(p.len() as u64)).ok_or(WriteError::TooLarge)?;
        let new_pos = self.admit(n)?;
        if n == 0 {
            return Ok(());
        }
        self.append(parts, n)?;
        self.publish(new_pos);
        Ok(())
    }

    /// Checks a write of `n` bytes against every limit; returns the position after it.
    fn admit(&mut self, n: u64) -> Result<u64, WriteError> {
        let shared = &*self.shared;
        // Relaxed is enough: a close that happens-before this call (the documented contract) is
        // visible through that happens-before; a racing close may let one more write through,
        // which is indistinguishable from the write having come first.
        if shared.reader_closed.load(Ordering::Relaxed) {
            return Err(WriteError::Closed);
        }
        let new_pos = self.pos.checked_add(n).ok_or(WriteError::TooLarge)?;
        if shared.config.content_length.is_some_and(|cl| new_pos > cl) {
            return Err(WriteError::ExceedsContentLength);
        }
        if new_pos > shared.config.max_size {
            return Err(WriteError::TooLarge);
        }
        if let Some(max) = shared.config.max_buffered {
            // The high-water mark: a write is accepted whole while unread bytes are below it, so a
            // single chunk larger than the mark is never refused forever.
            // ORDERING: Acquire pairs with the Release bump after a backward seek's `read_pos`
            // store, so the reload below cannot return the position from before the seek.
            let rewinds = shared.rewinds.load(Ordering::Acquire);
            if n > 0 && (rewinds != self.rewinds_seen || self.pos.saturating_sub(self.read_cache) >= max) {
                self.rewinds_seen = rewinds;
                self.read_cache = shared.read_pos.load(Ordering::Acquire);
                if self.pos.saturating_sub(self.read_cache) >= max {
                    return Err(WriteError::Full);
                }
            }
        }
        Ok(new_pos)
    }

    /// Copies the bytes into the tail and, if needed, into new segments allocated first.
    /// Nothing becomes visible until `publish`.
    fn append<B: Deref<Target = [u8]>>(&mut self, parts: &[B], n: u64) -> Result<(), WriteError> {
        let room = self.tail.as_ref().map_or(0, |t| t.end() - self.pos);
        if n <= room {
            let tail = self.tail.as_ref().ok_or(WriteError::OutOfMemory)?;
            let mut off = (self.pos - tail.start()) as usize;
            let end = off + n as usize;
            if end > self.prefaulted {
                self.prefaulted = tail.prefault(self.prefaulted, end, self.pos);
            }
            for p in parts {
                // SAFETY: `off + p.len() <= cap` because the whole write fits in the room; the range is
                // above the published position; we are the only writer.
                unsafe { tail.write_at(off, p) };
                off += p.len();
            }
            return Ok(());
        }
        // Allocate (or recycle) every segment the write needs before copying anything, so an
        // allocation failure leaves the stream exactly as it was.
        let mut fresh: Vec<Arc<Segment>> = Vec::new();
        let mut start = self.tail.as_ref().map_or(self.pos, |t| t.end());
        let mut need = n - room;
        while need > 0 {
            let Some(seg) = self.obtain(start, need) else {
                self.give_back(&mut fresh);
                return Err(WriteError::OutOfMemory);
            };
            if fresh.try_reserve(1).is_err() {
                drop(seg);
                self.give_back(&mut fresh);
                return Err(WriteError::OutOfMemory);
            }
            need = need.saturating_sub(seg.cap() as u64);
            start = seg.end();
            fresh.push(seg);
        }
        if self.shared.config.prefault {
            // Fault in what this write covers before copying.
            if let Some(t) = &self.tail {
                t.prefault(self.prefaulted, t.cap(), self.pos);
            }
            let mut left = n - room;
            for seg in &fresh {
                let take = left.min(seg.cap() as u64);
                self.prefaulted = seg.prefault(0, take as usize, self.pos);
                left -= take;
            }
        }
        let mut dst = self.tail.iter().chain(fresh.iter());
        let mut seg = dst.next().ok_or(WriteError::OutOfMemory)?;
        let mut off = (self.pos - seg.start()) as usize;
        for p in parts {
            let mut src: &[u8] = p;
            while !src.is_empty() {
                if off == seg.cap() {
                    seg = dst.next().ok_or(WriteError::OutOfMemory)?;
                    off = 0;
                }
                let take = src.len().min(seg.cap() - off);
                // SAFETY: `off + take <= cap`; above the published position; single writer.
                unsafe { seg.write_at(off, &src[..take]) };
                off += take;
                src = &src[take..];
            }
        }
        let mut prev = self.tail.take();
        for seg in fresh {
            match &prev {
                Some(p) => p.link(seg.clone()),
                None => self.shared.publish_head(seg.clone()),
            }
            prev = Some(seg);
        }
        self.tail = prev;
        Ok(())
    }

    /// A segment for stream offset `start` holding at least part of `need` bytes: recycled in
    /// ring mode when one is free and unpinned, else newly allocated. `None` on allocation failure.
    fn obtain(&mut self, start: u64, need: u64) -> Option<Arc<Segment>> {
        let config = self.shared.config;
        if config.max_buffered.is_some() {
            if let Some(seg) = self.recycle(start) {
                return Some(seg);
            }
        }
        // Never beyond the declared length (or the size limit): the last segment of a body that
        // arrives in full is exactly as large as what is left of it.
        let limit = config.content_length.unwrap_or(config.max_size).saturating_sub(start).max(1);
        let size = match config.sizing {
            Sizing::Fixed(n) => n as u64,
            // As large as the write needs (up to `max`), else the next step of the doubling, so
            // storage follows the bytes written: at most one segment is not full, and it is
            // never larger than the bytes before it plus the first segment.
            Sizing::Geometric { max } => {
                let want = usize::try_from(need).unwrap_or(usize::MAX);
                self.next_size.max(want.min(max)) as u64
            }
        };
        let size = size.min(limit);
        let seg = Segment::try_new(start, usize::try_from(size).ok()?)?;
        if let Sizing::Geometric { max } = config.sizing {
            // Grow only on success: a refused allocation must not make the next attempt larger.
            self.next_size = self.next_size.saturating_mul(2).min(max);
        }
        Some(seg)
    }

    /// Ring mode: a retired segment that nobody else refers to, reset to hold the bytes from
    /// `start` on. One still pinned (by a view, or by a large read copying out of it after
    /// releasing the cursor) stays in `spare` to be tried again, up to [`SPARE_MAX`] of them;
    /// segments smaller than the current size (from the growth at the start of the body) are
    /// freed instead of reused, so the ring settles at its full segment size.
    fn recycle(&mut self, start: u64) -> Option<Arc<Segment>> {
        if self.spare.is_empty() {
            self.shared.free.take_all(&mut self.spare);
        }
        let mut i = 0;
        while i < self.spare.len() {
            if self.spare[i].cap() < self.next_size {
                drop(self.spare.swap_remove(i));
                continue;
            }
            // A view or a BufRead borrow may still point into a retired segment: `get_mut`
            // proves nobody does (it is the Acquire side of every other owner's release).
            if let Some(s) = Arc::get_mut(&mut self.spare[i]) {
                s.reset(start);
                return Some(self.spare.swap_remove(i));
            }
            i += 1;
        }
        // All pinned: keep a few for later, let the views own the rest.
        self.spare.truncate(SPARE_MAX);
        None
    }

    /// Segments allocated for a write that then failed: kept for reuse in ring mode (where
    /// `obtain` recycles), freed otherwise, so a refused write holds no memory.
    fn give_back(&mut self, segs: &mut Vec<Arc<Segment>>) {
        if self.shared.config.max_buffered.is_some() {
            self.spare.append(segs);
        } else {
            segs.clear();
        }
    }

    /// Makes everything up to `new_pos` visible and wakes a parked reader.
    fn publish(&mut self, new_pos: u64) {
        self.pos = new_pos;
        // ORDERING: Release publishes the bytes copied (and segments linked) above: a reader that
        // loads `write_pos` with Acquire and sees `new_pos` sees every one of those bytes. With
        // Relaxed a reader could copy bytes that are not there yet (loom: `bytes_in_order`).
        self.shared.write_pos.store(new_pos, Ordering::Release);
        if self.shared.config.content_length == Some(new_pos) {
            // Reaching the declared length is EOF.
            self.finished = self.shared.finish(None) || self.finished;
        } else {
            self.shared.after_write(new_pos);
        }
    }

    /// Ends the body: readers get every byte, then EOF.
    ///
    /// With a declared `content_length` that was not reached, the body is truncated, and saying
    /// EOF would pass it off as complete: the readers get every byte written, then an abort with
    /// the reason [`INCOMPLETE_BODY`](crate::INCOMPLETE_BODY), and this returns
    /// [`CloseError::Incomplete`] so the producer knows too. The body is ended either way.
    ///
    /// ```
    /// use bodypipe::{Builder, CloseError};
    ///
    /// let (mut w, _r) = Builder::new().content_length(4).build()?;
    /// w.write(b"ab")?;
    /// assert_eq!(w.close(), Err(CloseError::Incomplete { written: 2, expected: 4 }));
    ///
    /// let (mut w, _r) = bodypipe::pipe(); // no declared length: any length is complete
    /// w.write(b"ab")?;
    /// w.close()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(mut self) -> Result<(), CloseError> {
        self.finished = true;
        match self.shared.config.content_length {
            Some(expected) if self.pos < expected => {
                self.shared.finish(Some(INCOMPLETE_BODY.to_owned()));
                Err(CloseError::Incomplete { written: self.pos, expected })
            }
            _ => {
                self.shared.finish(None);
                Ok(())
            }
        }
    }

    /// Ends the body with an error: readers get every byte written so far, then
    /// `io::ErrorKind::ConnectionAborted` carrying `reason`.
    ///
    /// ```
    /// use std::io::Read;
    ///
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"partial")?;
    /// w.abort("client disconnected");
    /// let mut buf = [0u8; 16];
    /// assert_eq!((&r).read(&mut buf)?, 7);
    /// let err = (&r).read(&mut buf).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::ConnectionAborted);
    /// assert_eq!(err.to_string(), "client disconnected");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn abort(mut self, reason: impl Into<String>) {
        self.shared.finish(Some(reason.into()));
        self.finished = true;
    }

    /// Bytes written so far.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"abc")?;
    /// r.skip(3);
    /// assert_eq!(w.written(), 3); // read or not
    /// # Ok::<(), bodypipe::WriteError>(())
    /// ```
    pub fn written(&self) -> u64 {
        self.pos
    }

    /// Bytes written but not yet read.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"abc")?;
    /// r.skip(1);
    /// assert_eq!(w.buffered(), 2);
    /// # Ok::<(), bodypipe::WriteError>(())
    /// ```
    pub fn buffered(&self) -> u64 {
        self.shared.buffered()
    }

    /// Whether the reader side has closed (further writes fail with [`WriteError::Closed`]).
    ///
    /// ```
    /// let (w, r) = bodypipe::pipe();
    /// assert!(!w.is_reader_closed());
    /// drop(r); // dropping the reader closes it
    /// assert!(w.is_reader_closed());
    /// ```
    pub fn is_reader_closed(&self) -> bool {
        self.shared.reader_closed.load(Ordering::Acquire)
    }

    /// A snapshot of the pipe's counters.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::Builder::new().max_buffered(8).build()?;
    /// w.write(b"abc")?;
    /// r.close();
    /// let s = w.stats();
    /// assert_eq!((s.written, s.buffered, s.max_buffered, s.reader_closed), (3, 3, Some(8), true));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Blocks until a write would be admitted under the high-water mark (at once outside ring
    /// mode), the reader closes, or `timeout` passes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use bodypipe::{Builder, WaitWritableError, WriteError};
    ///
    /// let (mut w, r) = Builder::new().max_buffered(4).build()?;
    /// w.write(b"abcd")?;
    /// assert_eq!(w.write(b"e"), Err(WriteError::Full));
    /// assert_eq!(w.wait_writable(Some(Duration::from_millis(1))), Err(WaitWritableError::TimedOut));
    /// r.skip(4);
    /// w.wait_writable(None)?;
    /// w.write(b"e")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_writable(&self, timeout: Option<Duration>) -> Result<(), WaitWritableError> {
        let shared = &*self.shared;
        // A timeout too large to represent as a deadline is no deadline (`Instant + Duration`
        // panics on overflow, and the timeout is the caller's).
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let closed = || shared.reader_closed.load(Ordering::Acquire);
        let max = shared.config.max_buffered.unwrap_or(u64::MAX);
        let check = || {
            if closed() || shared.has_room() {
                Check::Done
            } else {
                // Room means `written - read_pos < max`: the read position the readers' wake-up
                // must reach. Only this writer moves `write_pos`, so it is fixed while we wait.
                Check::Until((self.pos + 1).saturating_sub(max))
            }
        };
        let ok = shared.space.wait_until(check, deadline);
        if closed() {
            Err(WaitWritableError::ReaderClosed)
        } else if ok {
            Ok(())
        } else {
            Err(WaitWritableError::TimedOut)
        }
    }

    /// Whether a write would be admitted now: unread bytes are below the high-water mark (always
    /// true outside ring mode) and the reader has not closed.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::Builder::new().max_buffered(4).build()?;
    /// assert!(w.has_room());
    /// w.write(b"abcd")?;
    /// assert!(!w.has_room());
    /// r.skip(1);
    /// assert!(w.has_room());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn has_room(&self) -> bool {
        !self.is_reader_closed() && self.shared.has_room()
    }

    /// Polls for room, for any async runtime (the core depends on none): `Ready(Ok(()))` once a
    /// write would be admitted (at once outside ring mode), `Ready(Err(ReaderClosed))` once the
    /// reader has closed; otherwise `Pending`, with `cx`'s waker armed on the same readiness list
    /// as [`on_writable`](Self::on_writable): the reader's thread wakes it when unread bytes fall
    /// below half of `max_buffered` (so a producer that fills the ring is woken once per half
    /// ring, not once per read), or when the reader closes. Each `Pending` replaces the waker of
    /// the previous one.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use std::task::{Context, Poll, Wake, Waker};
    ///
    /// struct Count(AtomicUsize);
    /// impl Wake for Count {
    ///     fn wake(self: Arc<Self>) {
    ///         self.0.fetch_add(1, Ordering::SeqCst);
    ///     }
    /// }
    ///
    /// let (mut w, r) = bodypipe::Builder::new().max_buffered(4).build()?;
    /// let count = Arc::new(Count(AtomicUsize::new(0)));
    /// let waker = Waker::from(count.clone());
    /// let mut cx = Context::from_waker(&waker);
    /// assert_eq!(w.poll_writable(&mut cx), Poll::Ready(Ok(())));
    /// w.write(b"abcd")?;
    /// assert_eq!(w.poll_writable(&mut cx), Poll::Pending);
    /// r.skip(3); // below half the mark: the reader's thread wakes the task
    /// assert_eq!(count.0.load(Ordering::SeqCst), 1);
    /// assert_eq!(w.poll_writable(&mut cx), Poll::Ready(Ok(())));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn poll_writable(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WaitWritableError>> {
        if let Some(sub) = self.waker.take() {
            // Fired already (and so removed), or about to be replaced by this poll's waker.
            self.shared.cancel_writable(sub);
        }
        if self.is_reader_closed() {
            return Poll::Ready(Err(WaitWritableError::ReaderClosed));
        }
        if self.shared.has_room() {
            return Poll::Ready(Ok(()));
        }
        // If room came since the check above, this fires at once (waking the task) and the next
        // poll sees it; the list's Dekker pair with the readers' `after_read` means the wake-up is
        // never lost (loom: `poll_writable_woken`).
        self.waker = Some(self.shared.arm_writable(Wake::Waker(cx.waker().clone())));
        Poll::Pending
    }

    /// [`poll_writable`](Self::poll_writable) as a future: waits, without blocking a thread,
    /// until a write would be admitted (`Ok`) or the reader closes (`Err(ReaderClosed)`). Works
    /// on any executor; `examples/tokio_ring.rs` feeds a ring-mode pipe from a tokio task with it.
    ///
    /// ```
    /// use bodypipe::{Builder, WriteError};
    ///
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     // A minimal executor for the example: poll, park until woken.
    /// #     struct Unpark(std::thread::Thread);
    /// #     impl std::task::Wake for Unpark {
    /// #         fn wake(self: std::sync::Arc<Self>) {
    /// #             self.0.unpark()
    /// #         }
    /// #     }
    /// #     let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
    /// #             return v;
    /// #         }
    /// #         std::thread::park();
    /// #     }
    /// # }
    /// let (mut w, r) = Builder::new().max_buffered(4).build()?;
    /// let reader = std::thread::spawn(move || std::io::read_to_string(&r));
    /// block_on(async {
    ///     for chunk in [&b"hello "[..], b"async ", b"world"] {
    ///         loop {
    ///             match w.write(chunk) {
    ///                 Err(WriteError::Full) => w.writable().await?,
    ///                 other => break other?,
    ///             }
    ///         }
    ///     }
    ///     w.close();
    ///     Ok::<(), Box<dyn std::error::Error>>(())
    /// })?;
    /// assert_eq!(reader.join().unwrap()?, "hello async world");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn writable(&mut self) -> impl Future<Output = Result<(), WaitWritableError>> + '_ {
        std::future::poll_fn(move |cx| self.poll_writable(cx))
    }

    /// Arms a one-shot callback for when writing makes sense again.
    ///
    /// It fires at once, on this thread, if unread bytes are already below half of
    /// `max_buffered` (always, outside ring mode); otherwise later on the thread whose read frees
    /// the room, or that closes the reader ([`Writability::ReaderClosed`]). Keep it short and
    /// non-blocking (send a message). Several may be armed at once, each fires at most once;
    /// [`cancel_writable`](Self::cancel_writable) removes one unfired, and closing or aborting
    /// the writer drops every pending one.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use bodypipe::{Builder, Writability};
    ///
    /// let (mut w, r) = Builder::new().max_buffered(8).build()?;
    /// w.write(&[0; 8])?;
    /// let (tx, rx) = mpsc::channel();
    /// w.on_writable(move |why| tx.send(why).unwrap_or(()));
    /// assert!(rx.try_recv().is_err()); // full: not yet
    /// r.skip(8);                       // the reader frees room: the callback runs here
    /// assert_eq!(rx.try_recv(), Ok(Writability::Writable));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_writable(&self, hook: impl FnOnce(Writability) + Send + 'static) -> Subscription {
        self.shared.arm_writable(Wake::Callback(Box::new(hook)))
    }

    /// Cancels a callback armed by [`on_writable`](Self::on_writable): true if it was still armed
    /// (it will never run, and is dropped here), false if it has fired or was cancelled.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::Builder::new().max_buffered(2).build()?;
    /// w.write(b"ab")?;
    /// let sub = w.on_writable(|_| unreachable!("cancelled first"));
    /// assert!(w.cancel_writable(sub));
    /// r.skip(2); // would have fired it
    /// assert!(!w.cancel_writable(sub));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel_writable(&self, sub: Subscription) -> bool {
        self.shared.cancel_writable(sub)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.finish(Some("writer dropped".to_owned()));
        }
    }
}

impl io::Write for Writer {
    /// Writes the whole buffer or fails; `Full` maps to `WouldBlock`, `Closed` to `BrokenPipe`.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Writer::write(self, buf)?;
        Ok(buf.len())
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.write_slices(bufs)?;
        Ok(bufs.iter().map(|b| b.len()).sum())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Writer::write(self, buf)?;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
