//! The consumer side: one cursor shared by any number of threads.
//!
//! The cursor has its own lock, which the writer never touches. No thread waits while holding
//! it: a blocking read first waits for data (spin, then futex) with no lock held, then takes the
//! lock only to copy and move the cursor. So `buffered`, `at_eof` and `position` from other
//! threads never stall behind a blocked read.

use crate::error::{ReadError, ReadWithError, SeekError, WaitError};
use crate::primitive::{lock, Arc, AtomicU64, Mutex, MutexGuard, Ordering};
use crate::ready::{Subscription, Wake};
use crate::search::ChunkSearch;
use crate::segment::Segment;
use crate::shared::{Shared, Stats, ABORTED, EOF, OPEN};
use crate::view::View;
use crate::wait::Check;
use std::collections::TryReserveError;
use std::collections::VecDeque;
use std::io::{self, BufRead, Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

/// What [`Reader::wait`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// At least the requested number of bytes can be read now (this many).
    Data(usize),
    /// The stream has ended (EOF, abort, or the reader closed); this many bytes are still unread.
    Ended(usize),
}

/// A run of complete lines consumed in one step by [`Reader::take_lines`]: the bytes (a
/// zero-copy [`View`], derefs to `[u8]`) and the stream position of the first.
#[derive(Debug, Clone)]
pub struct LineRun {
    view: View,
    start: u64,
}

impl LineRun {
    /// The stream position of the run's first byte.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The stream position just past the run.
    pub fn end(&self) -> u64 {
        self.start + self.view.len() as u64
    }
}

impl std::ops::Deref for LineRun {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.view
    }
}

/// The consumer half of a pipe: `Send + Sync`, every method takes `&self`.
///
/// Threads that share a reader share one cursor, as threads sharing a file do. `Read`, `BufRead`
/// and `Seek` are implemented for `&Reader`, like `std::fs::File`, and no inherent method shadows
/// theirs: `(&r).read_line(&mut line)` is `BufRead::read_line`. The inherent reads return a typed
/// [`ReadError`]; those that block until a deadline say so in their name (`read_deadline`,
/// `read_line_deadline`, `read_until_deadline`).
///
/// ```
/// use std::io::{BufRead, Read};
///
/// let (mut w, r) = bodypipe::pipe();
/// let producer = std::thread::spawn(move || {
///     for line in ["first\n", "second\n"] {
///         w.write(line.as_bytes()).unwrap();
///     }
///     w.close().unwrap();
/// });
/// let lines: Vec<String> = (&r).lines().collect::<Result<_, _>>()?;
/// assert_eq!(lines, ["first", "second"]);
/// producer.join().unwrap();
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Reader {
    shared: Arc<Shared>,
    cursor: Mutex<Cursor>,
    /// The read timeout in nanoseconds; `u64::MAX` means none.
    timeout_ns: AtomicU64,
    /// Ring mode: segments lent out by `BufRead::fill_buf`, kept unrecycled until the reader is
    /// dropped, because a borrowed slice may outlive any later call on another `&Reader`.
    lent: Mutex<Vec<Arc<Segment>>>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("stats", &self.stats()).finish()
    }
}

/// The shared read position and the segments it can reach.
struct Cursor {
    pos: u64,
    /// Consecutive segments from the oldest retained one; each but the last is full.
    segs: VecDeque<Arc<Segment>>,
    /// Index in `segs` of the segment holding `pos` (== `segs.len()` if not discovered yet).
    idx: usize,
    /// `read_until` resumes here: no `scan_delim` in `[pos, scanned)`.
    scanned: u64,
    scan_delim: u8,
    /// Ring mode: the chain's reference to the first segment has been released.
    head_released: bool,
}

impl Cursor {
    /// Follows the published links until `segs` covers `upto` (bytes below it are published).
    fn discover(&mut self, shared: &Shared, upto: u64) {
        if upto == 0 {
            // Nothing is needed, and `head` may only be followed once a non-zero `write_pos` has
            // been loaded with Acquire (see `Shared::head`).
            return;
        }
        if self.segs.is_empty() {
            match shared.head() {
                Some(head) => self.segs.push_back(head),
                None => return,
            }
        }
        while self.segs.back().is_some_and(|s| s.end() < upto) {
            match self.segs.back().and_then(|s| s.next()) {
                Some(next) => self.segs.push_back(next),
                None => break,
            }
        }
    }

    /// Points `idx` at the segment holding `at`, discovering segments as needed.
    #[inline]
    fn locate(&mut self, shared: &Shared, at: u64) -> Option<&Arc<Segment>> {
        // Nearly every call asks for the segment it asked for last time: one lookup, not four.
        if self.segs.get(self.idx).is_some_and(|s| s.start() <= at && at < s.end()) {
            return self.segs.get(self.idx);
        }
        self.relocate(shared, at)
    }

    /// `locate` when the cursor's segment does not hold `at`.
    #[cold]
    fn relocate(&mut self, shared: &Shared, at: u64) -> Option<&Arc<Segment>> {
        if self.idx >= self.segs.len() || self.segs[self.idx].start() > at {
            self.idx = self.segs.partition_point(|s| s.end() <= at);
        }
        while self.idx < self.segs.len() && self.segs[self.idx].end() <= at {
            self.idx += 1;
        }
        if self.idx == self.segs.len() {
            self.discover(shared, at + 1);
            self.idx = self.segs.partition_point(|s| s.end() <= at);
        }
        self.segs.get(self.idx)
    }

    /// Calls `f` on each published chunk of `[from, to)` in order until it returns true.
    fn visit(&mut self, shared: &Shared, from: u64, to: u64, mut f: impl FnMut(&Arc<Segment>, usize, usize) -> bool) {
        let mut at = from;
        let saved = self.idx;
        while at < to {
            let Some(seg) = self.locate(shared, at) else { break };
            let off = (at - seg.start()) as usize;
            let len = (seg.end().min(to) - at) as usize;
            // `f` borrows the segment from `segs` rather than a clone: an `Arc` clone and drop
            // are two locked RMWs, on the path every `readline` takes.
            if f(seg, off, len) {
                break;
            }
            at += len as u64;
        }
        // `visit` looks ahead; the cursor's segment is still the one at `pos`.
        self.idx = saved;
    }

    /// Copies published bytes from the cursor into `buf` and advances; `written` was loaded with
    /// Acquire. Returns the count.
    fn copy_out(&mut self, shared: &Shared, buf: &mut [u8], written: u64) -> usize {
        let n = usize::try_from(written - self.pos).unwrap_or(usize::MAX).min(buf.len());
        let mut done = 0;
        while done < n {
            let pos = self.pos;
            let Some(seg) = self.locate(shared, pos) else { break };
            let off = (pos - seg.start()) as usize;
            let take = ((seg.end() - pos) as usize).min(n - done);
            // SAFETY: `[off, off + take)` is inside the segment and below `written`, which was
            // loaded with Acquire, so those bytes are published and never written again while the
            // segment is in our window (it is recycled only after we retire it).
            buf[done..done + take].copy_from_slice(unsafe { seg.slice(off, take) });
            done += take;
            self.pos += take as u64;
        }
        done
    }

    /// Publishes the cursor and, in ring mode, hands segments wholly behind it to the writer.
    fn moved(&mut self, shared: &Shared) {
        // ORDERING: Release orders our copies out of the segments before the new position, for
        // the writer's flow-control check (Acquire in `admit`).
        shared.read_pos.store(self.pos, Ordering::Release);
        // Bytes between the old and the new position need no rescanning: keep the furthest.
        self.scanned = self.scanned.max(self.pos);
        if shared.config.max_buffered.is_none() {
            return;
        }
        // A cursor moved without copying (`skip`, `seek`) has not discovered the segments it
        // passed; without this they would never be retired and ring memory would grow with the
        // body. `pos` is at most a `write_pos` our caller loaded with Acquire.
        self.discover(shared, self.pos);
        while self.segs.len() > 1 && self.segs[0].end() <= self.pos {
            let Some(old) = self.segs.pop_front() else { break };
            self.idx = self.idx.saturating_sub(1);
            // Drop the chain's links into and out of `old`: the successor stays owned by `segs`.
            drop(old.take_next());
            if !self.head_released {
                drop(shared.take_head());
                self.head_released = true;
            }
            shared.free.push(old);
        }
    }
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            cursor: Mutex::new(Cursor {
                pos: 0,
                segs: VecDeque::new(),
                idx: 0,
                scanned: 0,
                scan_delim: b'\n',
                head_released: false,
            }),
            timeout_ns: AtomicU64::new(u64::MAX),
            lent: Mutex::new(Vec::new()),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match self.timeout_ns.load(Ordering::Relaxed) {
            u64::MAX => None,
            ns => Instant::now().checked_add(Duration::from_nanos(ns)),
        }
    }

    /// What a read returns when no byte is left: EOF, WouldBlock, or the abort.
    fn nothing_left(&self, end: u32) -> Result<usize, ReadError> {
        if end == ABORTED {
            Err(ReadError::Aborted { reason: self.shared.reason() })
        } else if end != OPEN || self.shared.reader_closed.load(Ordering::Acquire) {
            Ok(0)
        } else {
            Err(ReadError::WouldBlock)
        }
    }

    /// Reads what is there now, never blocking.
    ///
    /// `Ok(0)` means EOF (or that this reader was closed); [`ReadError::WouldBlock`] means nothing
    /// yet; after an abort, the data written before it, then [`ReadError::Aborted`] with the reason.
    ///
    /// One call is one contiguous slice of the stream, whatever other threads sharing the cursor
    /// do: the copy is made under one hold of the cursor.
    ///
    /// ```
    /// use bodypipe::ReadError;
    ///
    /// let (mut w, r) = bodypipe::pipe();
    /// let mut buf = [0u8; 8];
    /// assert_eq!(r.try_read(&mut buf), Err(ReadError::WouldBlock));
    /// w.write(b"abc")?;
    /// assert_eq!(r.try_read(&mut buf)?, 3);
    /// w.close()?;
    /// assert_eq!(r.try_read(&mut buf)?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_read(&self, buf: &mut [u8]) -> Result<usize, ReadError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let got = self.take(1, buf.len(), |cur, shared, written, n| cur.copy_out(shared, &mut buf[..n], written))?;
        Ok(got.unwrap_or(0))
    }

    /// Fills `buf` whole in one step if that many unread bytes are there now; once the stream
    /// has ended, takes what is left (fewer; `Ok(0)` at EOF). Otherwise `WouldBlock`, consuming
    /// nothing, so a caller that waits for `buf.len()` bytes and then calls this gets one
    /// contiguous slice even if another thread took some bytes meanwhile (it waits again).
    ///
    /// ```
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"abc")?;
    /// let mut buf = [0u8; 4];
    /// assert_eq!(r.try_read_full(&mut buf), Err(bodypipe::ReadError::WouldBlock));
    /// w.write(b"d")?;
    /// assert_eq!(r.try_read_full(&mut buf)?, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_read_full(&self, buf: &mut [u8]) -> Result<usize, ReadError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let got =
            self.take(buf.len(), buf.len(), |cur, shared, written, n| cur.copy_out(shared, &mut buf[..n], written))?;
        Ok(got.unwrap_or(0))
    }

    /// Consumes between `min` (at least 1) and `max` of the unread bytes present now (once the
    /// stream has ended, what is left) and returns them as zero-copy [`View`]s, one per segment,
    /// without copying anything under the cursor lock: the range is reserved under one hold of
    /// the cursor, and the caller copies out of the views afterwards, for as long as it likes,
    /// while other threads read on. So a large read stays one contiguous slice of the stream and
    /// never holds other readers up for the length of its copy. Each view pins its segment (in
    /// ring mode the writer reuses it only once the view is dropped).
    ///
    /// Empty at EOF; `WouldBlock` (consuming nothing) while fewer than `min` bytes are there and
    /// the stream is open; after an abort, the data before it, then [`ReadError::Aborted`].
    ///
    /// ```
    /// let (mut w, r) = bodypipe::Builder::new().segment_size(4).build()?;
    /// w.write(b"abcdef")?;
    /// let views = r.try_read_views(1, 5)?;
    /// let bytes: Vec<u8> = views.iter().flat_map(|v| v.iter().copied()).collect();
    /// assert_eq!((views.len(), bytes.as_slice()), (2, &b"abcde"[..]));
    /// assert_eq!(r.position(), 5);
    /// assert!(matches!(r.try_read_views(2, 8), Err(bodypipe::ReadError::WouldBlock)));
    /// w.close()?;
    /// assert_eq!(r.try_read_views(2, 8)?.len(), 1); // ended: what is left
    /// assert!(r.try_read_views(1, 8)?.is_empty()); // EOF
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_read_views(&self, min: usize, max: usize) -> Result<Vec<View>, ReadError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let got = self.take(min, max, |cur, shared, _written, n| {
            let mut views = Vec::new();
            let from = cur.pos;
            let mut total = 0u64;
            cur.visit(shared, from, from + n as u64, |seg, off, len| {
                views.push(View::segment(seg.clone(), off, len));
                total += len as u64;
                false
            });
            cur.pos += total;
            views
        })?;
        Ok(got.unwrap_or_default())
    }

    /// The one consuming step of the reads above, under one hold of the cursor: takes between
    /// `min` (at least 1, at most `max`) and `max` unread bytes when that many are there, or what
    /// is left once the stream has ended. `sink(cursor, shared, written, n)` consumes exactly `n`
    /// bytes from the cursor (`written` was loaded with Acquire). `Ok(None)` at EOF.
    fn take<R>(
        &self,
        min: usize,
        max: usize,
        sink: impl FnOnce(&mut Cursor, &Shared, u64, usize) -> R,
    ) -> Result<Option<R>, ReadError> {
        let mut cur = lock(&self.cursor);
        let (end, written) = self.shared.end_and_written();
        let avail = usize::try_from(written - cur.pos).unwrap_or(usize::MAX);
        let need = min.clamp(1, max.max(1));
        let n = if avail >= need {
            avail.min(max)
        } else if avail > 0 && (end != OPEN || self.shared.reader_closed.load(Ordering::Acquire)) {
            avail
        } else {
            drop(cur);
            return match self.nothing_left(end) {
                Ok(_) if avail > 0 => Err(ReadError::WouldBlock),
                Ok(_) => Ok(None),
                Err(e) => Err(e),
            };
        };
        let got = sink(&mut cur, &self.shared, written, n);
        cur.moved(&self.shared);
        drop(cur);
        self.shared.after_read();
        Ok(Some(got))
    }

    /// Blocks until at least one byte is read, the stream ends (`Ok(0)`), or `deadline` passes
    /// ([`ReadError::TimedOut`], nothing consumed). `None`: no deadline. This is `Read::read`
    /// with an explicit deadline instead of the [read timeout](Self::set_read_timeout).
    ///
    /// ```
    /// use bodypipe::ReadError;
    /// use std::time::{Duration, Instant};
    ///
    /// let (mut w, r) = bodypipe::pipe();
    /// let mut buf = [0u8; 8];
    /// let soon = Instant::now() + Duration::from_millis(1);
    /// assert_eq!(r.read_deadline(&mut buf, Some(soon)), Err(ReadError::TimedOut));
    /// w.write(b"abc")?;
    /// assert_eq!(r.read_deadline(&mut buf, None)?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_deadline(&self, buf: &mut [u8], deadline: Option<Instant>) -> Result<usize, ReadError> {
        loop {
            match self.try_read(buf) {
                Err(ReadError::WouldBlock) => {
                    self.wait(1, deadline)?;
                }
                r => return r,
            }
        }
    }

    /// Blocks until `min` bytes (at least 1) are unread, the stream ends, or `deadline` passes.
    /// Consumes nothing and holds no lock while waiting.
    ///
    /// ```
    /// use bodypipe::Ready;
    /// use std::time::{Duration, Instant};
    ///
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"ab")?;
    /// assert_eq!(r.wait(2, None)?, Ready::Data(2));
    /// assert!(r.wait(3, Some(Instant::now() + Duration::from_millis(1))).is_err());
    /// w.close()?;
    /// assert_eq!(r.wait(3, None)?, Ready::Ended(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(&self, min: usize, deadline: Option<Instant>) -> Result<Ready, WaitError> {
        let shared = &*self.shared;
        let min = min.max(1) as u64;
        let state = || {
            let (end, written) = shared.end_and_written();
            let read = shared.read_pos.load(Ordering::Acquire);
            let avail = written.saturating_sub(read);
            let ended = end != OPEN || shared.reader_closed.load(Ordering::Acquire);
            (avail, ended, read)
        };
        let check = || {
            let (avail, ended, read) = state();
            if avail >= min || ended {
                Check::Done
            } else {
                // The write position that makes `min` unread: only a write that reaches it (or the
                // end, or a rewind, which wake every waiter) is worth a wake-up. If another reader
                // thread consumes meanwhile, the wake comes early and we register again.
                Check::Until(read.saturating_add(min))
            }
        };
        if !shared.data.wait_until(check, deadline) {
            return Err(WaitError::TimedOut);
        }
        let (avail, ended, _) = state();
        let avail = usize::try_from(avail).unwrap_or(usize::MAX);
        Ok(if avail as u64 >= min {
            Ready::Data(avail)
        } else if ended {
            Ready::Ended(avail)
        } else {
            Ready::Data(avail)
        })
    }

    /// Appends bytes up to and including the next `delim` (or `limit` bytes, or the rest at the
    /// end of the stream) to `out`, blocking until `deadline` (`None`: no deadline) as needed.
    /// Returns the count; 0 at EOF. `BufRead::read_until` is this with no limit and the
    /// [read timeout](Self::set_read_timeout).
    ///
    /// Atomic with respect to other threads reading the same cursor: a line is never split
    /// between two readers. A scan that finds no delimiter is remembered, so a long line that
    /// arrives in many small writes is scanned once, not once per write.
    ///
    /// After an abort, a last line without its delimiter is not a line: its bytes are appended
    /// to `out` and the abort ([`ReadError::Aborted`]) is returned, as `std::io::BufRead` does
    /// with an error after a partial read.
    ///
    /// Ring mode: the writer cannot add a byte while `max_buffered` bytes are unread, so a line
    /// that long could never complete in place; it is consumed into `out` as it arrives instead
    /// (as `std::io::BufRead::read_until` does). Such a line may then interleave with reads by
    /// other threads, and if the read fails (timeout, abort) the bytes taken so far are in `out`.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"key=value;rest")?;
    /// w.abort("client disconnected");
    /// let mut out = Vec::new();
    /// assert_eq!(r.read_until_deadline(b';', &mut out, None, None)?, 10);
    /// assert_eq!(out, b"key=value;");
    /// out.clear();
    /// assert_eq!(r.read_until_deadline(b';', &mut out, Some(2), None)?, 2); // the limit
    /// assert_eq!(out, b"re");
    /// out.clear();
    /// // The abort is an error, never an end: what was left arrives with it.
    /// let err = r.read_until_deadline(b';', &mut out, None, None).unwrap_err();
    /// assert!(matches!(err, bodypipe::ReadError::Aborted { .. }));
    /// assert_eq!(out, b"st");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_until_deadline(
        &self,
        delim: u8,
        out: &mut Vec<u8>,
        limit: Option<usize>,
        deadline: Option<Instant>,
    ) -> Result<usize, ReadError> {
        match self.read_until_inner(delim, out, limit, deadline) {
            Err(e @ ReadError::Aborted { .. }) => {
                // The incomplete last line (fewer than `limit` bytes, or the error would not
                // have come) goes to the caller with the error.
                while let Ok(views) = self.try_read_views(1, usize::MAX) {
                    if views.is_empty() {
                        break;
                    }
                    for v in &views {
                        if out.try_reserve(v.len()).is_err() {
                            return Err(ReadError::OutOfMemory);
                        }
                        out.extend_from_slice(v);
                    }
                }
                Err(e)
            }
            other => other,
        }
    }

    fn read_until_inner(
        &self,
        delim: u8,
        out: &mut Vec<u8>,
        mut limit: Option<usize>,
        deadline: Option<Instant>,
    ) -> Result<usize, ReadError> {
        let mut total = 0;
        loop {
            // What the scan below will at least have seen: waiting for bytes beyond it (rather
            // than for `buffered() + 1` read after the scan) cannot miss a delimiter that lands
            // between the scan and the wait (loom: `read_line_sees_late_newline`).
            let seen = self.shared.write_pos.load(Ordering::Acquire);
            match self.try_read_until(delim, out, limit)? {
                Some(n) => return Ok(total + n),
                None => {
                    let avail = self.buffered();
                    if self.shared.config.max_buffered.is_some_and(|m| avail as u64 >= m) {
                        let before = out.len();
                        let take = limit.map_or(avail, |l| l.min(avail));
                        if let Some(n) = self.try_read_until(delim, out, Some(take))? {
                            total += n;
                            if n == 0 || out[before..].last() == Some(&delim) || limit == Some(n) {
                                return Ok(total);
                            }
                            limit = limit.map(|l| l - n);
                        }
                        continue;
                    }
                    self.wait_beyond(seen, deadline)?;
                }
            }
        }
    }

    /// Blocks until more than `seen` bytes are written, the stream ends, or the reader closes.
    fn wait_beyond(&self, seen: u64, deadline: Option<Instant>) -> Result<(), WaitError> {
        let shared = &*self.shared;
        let check = || {
            let (end, written) = shared.end_and_written();
            if written > seen || end != OPEN || shared.reader_closed.load(Ordering::Acquire) {
                Check::Done
            } else {
                // One byte more than the scan saw: the first that could complete the line.
                Check::Until(seen + 1)
            }
        };
        if shared.data.wait_until(check, deadline) {
            Ok(())
        } else {
            Err(WaitError::TimedOut)
        }
    }

    /// [`read_until_deadline`](Self::read_until_deadline) with `b'\n'`: one line into a `Vec`
    /// (bytes, not necessarily UTF-8), at most `limit` bytes, blocking until `deadline`.
    ///
    /// ```
    /// use bodypipe::ReadError;
    /// use std::time::{Duration, Instant};
    ///
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"one\ntw")?;
    /// let mut line = Vec::new();
    /// assert_eq!(r.read_line_deadline(&mut line, None, None)?, 4);
    /// assert_eq!(line, b"one\n");
    /// let soon = Some(Instant::now() + Duration::from_millis(1));
    /// assert_eq!(r.read_line_deadline(&mut line, None, soon), Err(ReadError::TimedOut));
    /// w.close(); // the end completes the last line
    /// line.clear();
    /// assert_eq!(r.read_line_deadline(&mut line, None, None)?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_line_deadline(
        &self,
        out: &mut Vec<u8>,
        limit: Option<usize>,
        deadline: Option<Instant>,
    ) -> Result<usize, ReadError> {
        self.read_until_deadline(b'\n', out, limit, deadline)
    }

    /// Like [`read_until_deadline`](Self::read_until_deadline) but never blocks: `None` while the
    /// line is not complete yet (nothing is consumed then).
    ///
    /// ```
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"a;b")?;
    /// let mut out = Vec::new();
    /// assert_eq!(r.try_read_until(b';', &mut out, None)?, Some(2));
    /// assert_eq!(r.try_read_until(b';', &mut out, None)?, None); // "b" is incomplete
    /// assert_eq!(out, b"a;");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_read_until(
        &self,
        delim: u8,
        out: &mut Vec<u8>,
        limit: Option<usize>,
    ) -> Result<Option<usize>, ReadError> {
        let res = self.try_read_until_with(delim, limit, |line| {
            out.try_reserve(line.len()).map_err(|_| ReadError::OutOfMemory)?;
            out.extend_from_slice(line);
            Ok(line.len())
        });
        res.map_err(|e| match e {
            ReadWithError::Read(e) | ReadWithError::Callback(e) => e,
        })
    }

    /// Like [`try_read_until`](Self::try_read_until), but hands the line to `f` in place instead
    /// of appending it to a `Vec`: zero-copy when the line lies in one segment (the common case),
    /// else one gathered copy. The line is consumed only if `f` returns `Ok`; its error, of any
    /// type `E`, comes back as [`ReadWithError::Callback`] with nothing consumed. So a binding can
    /// build its result object (a Python `bytes`) straight from segment memory and lose nothing
    /// if that allocation fails, or refuse a line for reasons of its own. `f` runs with the cursor
    /// lock held: keep it short.
    ///
    /// ```
    /// use bodypipe::ReadWithError;
    /// use std::convert::Infallible;
    ///
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"GET / HTTP/1.1\r\nHost")?;
    /// let too_long = |l: &[u8]| if l.len() > 8 { Err("too long") } else { Ok(l.to_vec()) };
    /// assert_eq!(r.try_read_until_with(b'\n', None, too_long), Err(ReadWithError::Callback("too long")));
    /// let line = r.try_read_until_with(b'\n', None, |l| Ok::<_, Infallible>(l.to_vec()))?; // still there
    /// assert_eq!(line.as_deref(), Some(&b"GET / HTTP/1.1\r\n"[..]));
    /// assert_eq!(r.try_read_until_with(b'\n', None, |l| Ok::<_, Infallible>(l.len()))?, None); // "Host" is incomplete
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_read_until_with<R, E>(
        &self,
        delim: u8,
        limit: Option<usize>,
        f: impl FnOnce(&[u8]) -> Result<R, E>,
    ) -> Result<Option<R>, ReadWithError<E>> {
        let limit = limit.map_or(u64::MAX, |l| l as u64);
        if limit == 0 {
            return f(&[]).map(Some).map_err(ReadWithError::Callback);
        }
        let mut cur = lock(&self.cursor);
        let (end, written) = self.shared.end_and_written();
        let pos = cur.pos;
        let avail = written - pos;
        let to = written.min(pos.saturating_add(limit));
        let from = if cur.scan_delim == delim { cur.scanned.max(pos).min(to) } else { pos };
        let mut found = None;
        cur.visit(&self.shared, from, to, |seg, off, len| {
            // SAFETY: below `written` (Acquire) and inside the segment, as `visit` guarantees.
            let chunk = unsafe { seg.slice(off, len) };
            match memchr::memchr(delim, chunk) {
                Some(i) => {
                    found = Some(seg.start() + (off + i) as u64);
                    true
                }
                None => false,
            }
        });
        let take = if let Some(at) = found {
            at + 1 - pos
        } else if avail >= limit {
            limit
        } else if end != OPEN || self.shared.reader_closed.load(Ordering::Acquire) {
            if avail == 0 || end == ABORTED {
                // After an abort the last line can never complete: not a line, but the abort
                // (consuming nothing; `read_until` hands the bytes over with the error).
                drop(cur);
                self.nothing_left(end)?;
                return f(&[]).map(Some).map_err(ReadWithError::Callback);
            }
            avail
        } else {
            cur.scanned = to;
            cur.scan_delim = delim;
            return Ok(None);
        };
        let take = usize::try_from(take).map_err(|_| ReadError::OutOfMemory)?;
        // Borrowed, not cloned (see `visit`).
        let in_place = cur.locate(&self.shared, pos).filter(|seg| seg.end() - pos >= take as u64);
        let result = match in_place {
            Some(seg) => {
                // SAFETY: `[pos, pos + take)` is inside this segment and below `written` (Acquire).
                let line = unsafe { seg.slice((pos - seg.start()) as usize, take) };
                let r = f(line).map_err(ReadWithError::Callback)?;
                cur.pos += take as u64;
                r
            }
            None => {
                let mut line = Vec::new();
                line.try_reserve_exact(take).map_err(|_| ReadError::OutOfMemory)?;
                line.resize(take, 0);
                let n = cur.copy_out(&self.shared, &mut line, written);
                match f(&line[..n]) {
                    Ok(r) => r,
                    Err(e) => {
                        // Put the cursor back: nothing of a failed read is lost.
                        cur.pos = pos;
                        cur.idx = cur.segs.len();
                        return Err(ReadWithError::Callback(e));
                    }
                }
            }
        };
        cur.moved(&self.shared);
        drop(cur);
        self.shared.after_read();
        Ok(Some(result))
    }

    /// Consumes, under one hold of the cursor, a run of complete lines (each ending in `delim`)
    /// from the read position: as many as lie wholly in at most `max` bytes of the current
    /// segment, not counting its last byte. `None` (nothing consumed) if not even one does. The
    /// run is a zero-copy [`View`], so a line reader can hand out the lines that follow one by one
    /// without touching the cursor again, and put back what it did not hand out with
    /// [`give_back`](Self::give_back).
    ///
    /// The run never reaches the segment's end, so the segment stays in the retained window
    /// (ring mode) and the cursor can always be moved back to any line of it.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"one\ntwo\nthr")?;
    /// let run = r.take_lines(b'\n', 4096).expect("two complete lines");
    /// assert_eq!((run.start(), &run[..]), (0, &b"one\ntwo\n"[..]));
    /// assert_eq!(r.position(), 8);
    /// assert!(r.give_back(&run, 4)); // only "one\n" was used
    /// assert_eq!(r.position(), 4);
    /// assert!(r.take_lines(b'\n', 2).is_none()); // "two\n" does not fit in 2 bytes
    /// # Ok::<(), bodypipe::WriteError>(())
    /// ```
    pub fn take_lines(&self, delim: u8, max: usize) -> Option<LineRun> {
        let mut cur = lock(&self.cursor);
        let written = self.shared.write_pos.load(Ordering::Acquire);
        let pos = cur.pos;
        let seg = cur.locate(&self.shared, pos)?;
        // The segment's last byte is left out: a run ending there would let the cursor pass the
        // segment, which ring mode then retires, and `give_back` could not return into it.
        let hi = written.min(seg.end() - 1).min(pos.saturating_add(max as u64));
        if hi <= pos {
            return None;
        }
        let off = (pos - seg.start()) as usize;
        let len = (hi - pos) as usize;
        // SAFETY: `[off, off + len)` is inside the segment and below `written` (Acquire).
        let chunk = unsafe { seg.slice(off, len) };
        let end = memchr::memrchr(delim, chunk)? + 1;
        let view = View::segment(seg.clone(), off, end);
        cur.pos += end as u64;
        cur.moved(&self.shared);
        drop(cur);
        self.shared.after_read();
        Some(LineRun { view, start: pos })
    }

    /// Returns the unused tail of a [`take_lines`](Self::take_lines) run: if the read position
    /// is still where the run ended (nobody read since), moves it back to `run.start() + used`,
    /// as if only the first `used` bytes of the run had been read, and returns true. False if
    /// the cursor has moved since (another thread read or seeked): then nothing changes, and the
    /// caller still holds the rest of the run.
    pub fn give_back(&self, run: &LineRun, used: usize) -> bool {
        let used = used.min(run.view.len());
        if used == run.view.len() {
            return true;
        }
        let cur = lock(&self.cursor);
        if cur.pos != run.end() {
            return false;
        }
        self.move_to(cur, run.start + used as u64);
        true
    }

    /// [`try_read_until`](Self::try_read_until) with `b'\n'`.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"one\ntw")?;
    /// let mut line = Vec::new();
    /// assert_eq!(r.try_read_line(&mut line, None)?, Some(4));
    /// assert_eq!(r.try_read_line(&mut line, None)?, None);
    /// assert_eq!(r.try_read_line(&mut line, Some(1))?, Some(1)); // the limit ends a line too
    /// assert_eq!(line, b"one\nt");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_read_line(&self, out: &mut Vec<u8>, limit: Option<usize>) -> Result<Option<usize>, ReadError> {
        self.try_read_until(b'\n', out, limit)
    }

    /// Consumes up to `n` unread bytes that are there now, without copying; returns the count.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"headerbody")?;
    /// assert_eq!(r.skip(6), 6);
    /// assert_eq!(r.skip(100), 4); // only what is there
    /// assert_eq!(r.position(), 10);
    /// # Ok::<(), bodypipe::WriteError>(())
    /// ```
    pub fn skip(&self, n: usize) -> usize {
        let mut cur = lock(&self.cursor);
        let written = self.shared.write_pos.load(Ordering::Acquire);
        let take = (written - cur.pos).min(n as u64);
        cur.pos += take;
        cur.moved(&self.shared);
        drop(cur);
        self.shared.after_read();
        take as usize
    }

    /// Unread bytes: what can be read now without blocking (`written() - position()`), the
    /// quantity ring mode's [`max_buffered`](Self::max_buffered) bounds. The same number as
    /// [`Writer::buffered`](crate::Writer::buffered) and [`Stats::buffered`](crate::Stats::buffered).
    ///
    /// ```
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"abcd")?;
    /// r.skip(1);
    /// assert_eq!(r.buffered(), 3);
    /// assert_eq!(w.buffered(), 3);
    /// # Ok::<(), bodypipe::WriteError>(())
    /// ```
    pub fn buffered(&self) -> usize {
        usize::try_from(self.shared.buffered()).unwrap_or(usize::MAX)
    }

    /// True once the stream has ended cleanly (the writer closed it or reached the content
    /// length, or this reader closed) and every byte is read.
    ///
    /// Never true after an abort (a short close is one): an aborted body has no end of file,
    /// only an error, which every read returns once the bytes before it are consumed. So a
    /// polling loop `while !r.at_eof() { ... r.try_read(..)? ... }` cannot end early with a
    /// truncated body; [`abort_reason`](Self::abort_reason) tells the state without reading.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"x")?;
    /// w.abort("client disconnected");
    /// let mut buf = [0u8; 4];
    /// assert_eq!(r.try_read(&mut buf)?, 1);
    /// assert!(!r.at_eof());
    /// assert_eq!(r.try_read(&mut buf).unwrap_err().kind(), std::io::ErrorKind::ConnectionAborted);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn at_eof(&self) -> bool {
        let (end, written) = self.shared.end_and_written();
        let clean = end == EOF || (end == OPEN && self.shared.reader_closed.load(Ordering::Acquire));
        clean && self.shared.read_pos.load(Ordering::Acquire) >= written
    }

    /// Whether the writer has ended the stream (close, abort, or the content length reached).
    ///
    /// ```
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"ab")?;
    /// assert!(!r.is_ended());
    /// w.close();
    /// assert!(r.is_ended()); // even with bytes unread
    /// # Ok::<(), bodypipe::WriteError>(())
    /// ```
    pub fn is_ended(&self) -> bool {
        self.shared.end.load(Ordering::Acquire) != OPEN
    }

    /// The abort reason, if the writer aborted.
    ///
    /// ```
    /// let (w, r) = bodypipe::pipe();
    /// assert_eq!(r.abort_reason(), None);
    /// w.abort("client disconnected");
    /// assert_eq!(r.abort_reason().as_deref(), Some("client disconnected"));
    /// ```
    pub fn abort_reason(&self) -> Option<String> {
        (self.shared.end.load(Ordering::Acquire) == ABORTED).then(|| self.shared.reason())
    }

    /// Finds `needle` in the unread bytes present now, in `[start, end)` relative to the read
    /// position; returns its offset from the read position. Never blocks. Finds needles that
    /// straddle segment boundaries.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"--bound")?;
    /// w.write(b"ary\r\n")?;
    /// assert_eq!(r.find(b"boundary", 0, None), Some(2));
    /// assert_eq!(r.find(b"\r\n", 0, Some(9)), None);
    /// # Ok::<(), bodypipe::WriteError>(())
    /// ```
    pub fn find(&self, needle: &[u8], start: u64, end: Option<u64>) -> Option<u64> {
        let mut cur = lock(&self.cursor);
        let written = self.shared.write_pos.load(Ordering::Acquire);
        let pos = cur.pos;
        let avail = written - pos;
        let stop = end.map_or(avail, |e| e.min(avail));
        if needle.is_empty() {
            // As `bytes.find(b"", start, end)`: the empty needle is found at `start` if in range.
            return (start <= stop).then_some(start);
        }
        if start >= stop || stop - start < needle.len() as u64 {
            return None;
        }
        let mut search = ChunkSearch::new(needle);
        let mut found = None;
        cur.visit(&self.shared, pos + start, pos + stop, |seg, off, len| {
            // SAFETY: below `written` (Acquire) and inside the segment.
            let chunk = unsafe { seg.slice(off, len) };
            found = search.feed(chunk);
            found.is_some()
        });
        found.map(|i| start + i)
    }

    /// Sets the timeout for blocking reads through `Read`/`BufRead` (`None`: wait forever); a
    /// read that times out fails with `ErrorKind::TimedOut` and consumes nothing.
    ///
    /// ```
    /// use std::io::{ErrorKind, Read};
    /// use std::time::Duration;
    ///
    /// let (_w, r) = bodypipe::pipe();
    /// r.set_read_timeout(Some(Duration::from_millis(1)));
    /// let err = (&r).read(&mut [0u8; 8]).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::TimedOut);
    /// ```
    pub fn set_read_timeout(&self, timeout: Option<Duration>) {
        let ns = timeout.map_or(u64::MAX, |t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX - 1).min(u64::MAX - 1));
        self.timeout_ns.store(ns, Ordering::Relaxed);
    }

    /// The timeout set by [`set_read_timeout`](Self::set_read_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (_w, r) = bodypipe::pipe();
    /// assert_eq!(r.read_timeout(), None);
    /// r.set_read_timeout(Some(Duration::from_secs(30)));
    /// assert_eq!(r.read_timeout(), Some(Duration::from_secs(30)));
    /// ```
    pub fn read_timeout(&self) -> Option<Duration> {
        match self.timeout_ns.load(Ordering::Relaxed) {
            u64::MAX => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// The read position (bytes consumed, adjusted by seeks).
    ///
    /// ```
    /// use std::io::SeekFrom;
    ///
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"abcdef")?;
    /// r.skip(4);
    /// assert_eq!(r.position(), 4);
    /// r.seek(SeekFrom::Start(1))?;
    /// assert_eq!(r.position(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn position(&self) -> u64 {
        self.shared.read_pos.load(Ordering::Acquire)
    }

    /// Bytes the writer has published so far.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"abc")?;
    /// r.skip(2);
    /// assert_eq!((r.written(), r.position(), r.buffered()), (3, 2, 1));
    /// # Ok::<(), bodypipe::WriteError>(())
    /// ```
    pub fn written(&self) -> u64 {
        self.shared.write_pos.load(Ordering::Acquire)
    }

    /// The declared content length, if any.
    ///
    /// ```
    /// let (_w, r) = bodypipe::Builder::new().content_length(42).build()?;
    /// assert_eq!(r.content_length(), Some(42));
    /// assert_eq!(bodypipe::pipe().1.content_length(), None);
    /// # Ok::<(), bodypipe::BuildError>(())
    /// ```
    pub fn content_length(&self) -> Option<u64> {
        self.shared.config.content_length
    }

    /// The high-water mark, in ring mode.
    ///
    /// ```
    /// let (_w, r) = bodypipe::Builder::new().max_buffered(64 << 10).build()?;
    /// assert_eq!(r.max_buffered(), Some(64 << 10));
    /// assert_eq!(bodypipe::pipe().1.max_buffered(), None); // unbounded
    /// # Ok::<(), bodypipe::BuildError>(())
    /// ```
    pub fn max_buffered(&self) -> Option<usize> {
        self.shared.config.max_buffered.map(|m| usize::try_from(m).unwrap_or(usize::MAX))
    }

    /// A snapshot of the pipe's counters.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"abcd")?;
    /// r.skip(1);
    /// w.close();
    /// let s = r.stats();
    /// assert_eq!((s.written, s.position, s.buffered, s.eof, s.aborted), (4, 1, 3, true, false));
    /// # Ok::<(), bodypipe::WriteError>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Moves the read position. `Start`/`Current` may go anywhere within the written bytes (in
    /// ring mode, not before the retained window); `End` only once the stream has ended.
    ///
    /// ```
    /// use std::io::SeekFrom;
    ///
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"abcdef")?;
    /// assert_eq!(r.seek(SeekFrom::Start(4))?, 4);
    /// assert!(r.seek(SeekFrom::End(-1)).is_err()); // not ended yet
    /// assert!(r.seek(SeekFrom::Start(7)).is_err()); // past the written bytes
    /// w.close()?;
    /// assert_eq!(r.seek(SeekFrom::End(-1))?, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seek(&self, to: SeekFrom) -> Result<u64, SeekError> {
        let mut cur = lock(&self.cursor);
        let (end, written) = self.shared.end_and_written();
        let target = match to {
            SeekFrom::Start(p) => i128::from(p),
            SeekFrom::Current(d) => i128::from(cur.pos) + i128::from(d),
            SeekFrom::End(d) if end != OPEN => i128::from(written) + i128::from(d),
            SeekFrom::End(_) => return Err(SeekError::EndUnknown),
        };
        if target < 0 {
            return Err(SeekError::BeforeStart);
        }
        if target > i128::from(written) {
            return Err(SeekError::PastWritten);
        }
        let target = target as u64;
        if self.shared.config.max_buffered.is_some() {
            cur.discover(&self.shared, written);
            let window = cur.segs.front().map_or(cur.pos, |s| s.start());
            if target < window {
                return Err(SeekError::BeforeWindow);
            }
        }
        self.move_to(cur, target);
        Ok(target)
    }

    /// Moves the locked cursor to `target` (within the written bytes and the retained window)
    /// and tells whoever must know: a writer (rewinds), parked readers (bytes unread again).
    fn move_to(&self, mut cur: MutexGuard<'_, Cursor>, target: u64) {
        let back = target < cur.pos;
        cur.pos = target;
        cur.scanned = target;
        cur.idx = cur.segs.len();
        cur.moved(&self.shared);
        if back {
            // ORDERING: Release, after the `read_pos` store in `moved`: a writer that sees the
            // bump (Acquire) and reloads `read_pos` sees the rewound position or a later one.
            self.shared.rewinds.fetch_add(1, Ordering::Release);
        }
        drop(cur);
        if back {
            // Bytes are unread again: a thread parked in a read of this cursor must see them,
            // whatever write position it waits for (no syscall unless one is parked).
            self.shared.wake_readers();
        }
        self.shared.after_read();
    }

    /// Arms a one-shot callback for when a read would not block: unread data is there, the
    /// stream has ended, or the reader was closed. It fires at once, on this thread, if that is
    /// already so; otherwise on the thread that makes it so (the writer's `write`, `close` or
    /// `abort`, or a `close` or backward `seek` here). Keep it short and non-blocking (write to
    /// an eventfd, send a message).
    ///
    /// Any number may be armed at once, each with its own threshold, and each fires at most once:
    /// several event loops, or several wrappers of one reader, can each wait on it. The returned
    /// [`Subscription`] cancels it ([`cancel_readable`](Self::cancel_readable)).
    ///
    /// This is what an event loop waits on instead of polling; the writer pays for it only while
    /// one is armed, and then takes a lock only for a write that makes one due.
    ///
    /// ```
    /// use std::sync::mpsc;
    ///
    /// let (mut w, r) = bodypipe::pipe();
    /// let (tx, rx) = mpsc::channel();
    /// let tx2 = tx.clone();
    /// r.on_readable(move || tx.send("first").unwrap_or(()));
    /// r.on_readable(move || tx2.send("second").unwrap_or(())); // does not replace the first
    /// assert!(rx.try_recv().is_err()); // nothing yet
    /// w.write(b"x")?;                  // the writer's write runs both callbacks
    /// let mut got: Vec<_> = rx.try_iter().collect();
    /// got.sort();
    /// assert_eq!(got, ["first", "second"]);
    /// # Ok::<(), bodypipe::WriteError>(())
    /// ```
    pub fn on_readable(&self, hook: impl FnOnce() + Send + 'static) -> Subscription {
        self.shared.arm_readable(1, Wake::Callback(Box::new(move |()| hook())))
    }

    /// [`on_readable`](Self::on_readable) with a threshold: fires once at least `min` bytes
    /// (`0` counts as 1) beyond the read position *as of this call* are written, the stream has
    /// ended, or the reader was closed. This is how an async `readline` waits for *more* than the
    /// incomplete line already there, and `readexactly(n)` for all `n` bytes, without being woken
    /// by every write. If other threads consume meanwhile it fires early: re-check when it fires.
    ///
    /// ```
    /// use std::sync::mpsc;
    ///
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"abc")?;
    /// let (tx, rx) = mpsc::channel();
    /// r.on_readable_min(4, move || tx.send(()).unwrap_or(()));
    /// assert!(rx.try_recv().is_err()); // 3 bytes are not enough
    /// w.write(b"d")?;
    /// assert!(rx.try_recv().is_ok());
    /// # Ok::<(), bodypipe::WriteError>(())
    /// ```
    pub fn on_readable_min(&self, min: usize, hook: impl FnOnce() + Send + 'static) -> Subscription {
        self.shared.arm_readable(min as u64, Wake::Callback(Box::new(move |()| hook())))
    }

    /// Cancels a callback armed by [`on_readable`](Self::on_readable) or
    /// [`on_readable_min`](Self::on_readable_min): true if it was still armed (it will never
    /// run, and is dropped here), false if it has already fired or was cancelled. Safe against a
    /// concurrent fire: exactly one of the two happens.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::pipe();
    /// let sub = r.on_readable_min(10, || {});
    /// assert_eq!(r.armed_readable(), 1);
    /// assert!(r.cancel_readable(sub));
    /// assert_eq!(r.armed_readable(), 0);
    /// let fired = r.on_readable(|| {});
    /// w.write(b"x")?; // fires and removes it
    /// assert!(!r.cancel_readable(fired));
    /// # Ok::<(), bodypipe::WriteError>(())
    /// ```
    pub fn cancel_readable(&self, sub: Subscription) -> bool {
        self.shared.cancel_readable(sub)
    }

    /// How many readable callbacks are armed (not yet fired or cancelled).
    ///
    /// ```
    /// let (w, r) = bodypipe::pipe();
    /// r.on_readable(|| {});
    /// r.on_readable_min(100, || {});
    /// assert_eq!(r.armed_readable(), 2);
    /// w.close(); // the end fires both
    /// assert_eq!(r.armed_readable(), 0);
    /// ```
    pub fn armed_readable(&self) -> usize {
        self.shared.armed_readable()
    }

    /// The largest body this pipe accepts.
    ///
    /// ```
    /// let (_w, r) = bodypipe::Builder::new().max_size(1 << 20).build()?;
    /// assert_eq!(r.max_size(), 1 << 20);
    /// # Ok::<(), bodypipe::BuildError>(())
    /// ```
    pub fn max_size(&self) -> u64 {
        self.shared.config.max_size
    }

    /// Hangs up: the writer's next write fails with `Closed`, a writer waiting for room is told,
    /// and reads never block again (bytes already written can still be read, then EOF).
    ///
    /// ```
    /// use bodypipe::WriteError;
    ///
    /// let (mut w, r) = bodypipe::pipe();
    /// w.write(b"ab")?;
    /// r.close();
    /// assert_eq!(w.write(b"c"), Err(WriteError::Closed));
    /// assert_eq!(r.try_read(&mut [0u8; 8])?, 2); // bytes already written are still there
    /// assert_eq!(r.try_read(&mut [0u8; 8])?, 0); // then EOF, never a wait
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        self.shared.close_reader();
    }

    /// Whether [`close`](Self::close) was called.
    ///
    /// ```
    /// let (w, r) = bodypipe::pipe();
    /// w.close(); // the writer's end is not the reader's close
    /// assert!(!r.is_closed());
    /// r.close();
    /// assert!(r.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.reader_closed.load(Ordering::Acquire)
    }

    /// The unread bytes present now, zero-copy, one [`View`] per segment. Each view keeps its
    /// segment alive (and out of ring-mode reuse) for as long as it lives.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::Builder::new().segment_size(4).build()?;
    /// w.write(b"abcdef")?;
    /// r.skip(1);
    /// let views = r.views();
    /// assert_eq!(views.iter().map(|v| &v[..]).collect::<Vec<_>>(), [&b"bcd"[..], b"ef"]);
    /// assert!(views.iter().all(|v| v.is_zero_copy()));
    /// assert_eq!(r.position(), 1); // nothing consumed
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn views(&self) -> Vec<View> {
        let mut cur = lock(&self.cursor);
        let written = self.shared.write_pos.load(Ordering::Acquire);
        let pos = cur.pos;
        let mut out = Vec::new();
        cur.visit(&self.shared, pos, written, |seg, off, len| {
            out.push(View::segment(seg.clone(), off, len));
            false
        });
        out
    }

    /// All unread bytes present now as one contiguous [`View`]: zero-copy when they lie in one
    /// segment, else one coalesced copy. Segments grow with the bytes written (4 KiB doubling to
    /// 8 MiB), so a body larger than its first segment usually spans several; a body written in
    /// one piece into a pipe built with [`Builder::segment_size`](crate::Builder::segment_size)
    /// of that length is one segment. [`views`](Self::views) is zero-copy always.
    ///
    /// ```
    /// let (mut w, r) = bodypipe::Builder::new().content_length(6).build()?;
    /// w.write(b"abc")?;
    /// w.write(b"def")?;
    /// let v = r.view()?;
    /// assert_eq!(&*v, b"abcdef");
    /// assert!(v.is_zero_copy()); // both writes landed in the first segment (4 KiB)
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn view(&self) -> Result<View, TryReserveError> {
        let mut views = self.views();
        match views.len() {
            0 => Ok(View::empty()),
            1 => Ok(views.remove(0)),
            _ => View::coalesce(&views),
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Nobody can read any more: let the writer know instead of buffering into the void.
        self.shared.close_reader();
        // Nor follow a link: cut the chain, so views outliving the reader pin only their own
        // segments (the writer keeps its tail and links after it, which it no longer can use).
        let oldest = lock(&self.cursor).segs.front().cloned();
        self.shared.cut_chain(oldest);
    }
}

impl Read for &Reader {
    /// Blocks until at least one byte is read (0 at EOF), honouring the read timeout.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        Ok(self.read_deadline(buf, self.deadline())?)
    }
}

impl BufRead for &Reader {
    /// The unread bytes of the current segment. In ring mode the segment is kept out of reuse
    /// until the reader is dropped (a borrowed slice can outlive later calls made through another
    /// `&Reader`); prefer `read_line`/`read_until`/`lines`, which copy and pin nothing.
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let reader: &Reader = self;
        let deadline = reader.deadline();
        loop {
            let mut cur = lock(&reader.cursor);
            let (end, written) = reader.shared.end_and_written();
            let pos = cur.pos;
            if written > pos {
                let Some(seg) = cur.locate(&reader.shared, pos).cloned() else {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                };
                let off = (pos - seg.start()) as usize;
                let len = (seg.end().min(written) - pos) as usize;
                let ptr = seg.ptr_at(off);
                if reader.shared.config.max_buffered.is_some() {
                    let mut lent = lock(&reader.lent);
                    if !lent.last().is_some_and(|l| Arc::ptr_eq(l, &seg)) {
                        lent.push(seg);
                    }
                }
                // SAFETY: `[off, off + len)` is published (below `written`, Acquire) and inside the
                // segment. The segment outlives the returned borrow, which is bounded by the
                // `&Reader`: outside ring mode `segs` keeps every segment until the reader drops;
                // in ring mode `lent` does.
                return Ok(unsafe { std::slice::from_raw_parts(ptr, len) });
            }
            drop(cur);
            match reader.nothing_left(end) {
                Err(ReadError::WouldBlock) => {
                    reader.wait(1, deadline).map_err(ReadError::from)?;
                }
                Err(e) => return Err(e.into()),
                Ok(_) => return Ok(&[]),
            }
        }
    }

    fn consume(&mut self, amt: usize) {
        self.skip(amt);
    }

    fn read_until(&mut self, byte: u8, buf: &mut Vec<u8>) -> io::Result<usize> {
        Ok(self.read_until_deadline(byte, buf, None, self.deadline())?)
    }

    fn read_line(&mut self, buf: &mut String) -> io::Result<usize> {
        let mut bytes = Vec::new();
        let n = self.read_line_deadline(&mut bytes, None, self.deadline())?;
        let s = std::str::from_utf8(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        buf.push_str(s);
        Ok(n)
    }
}

impl Seek for &Reader {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        Ok(Reader::seek(self, pos)?)
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.position())
    }
}
