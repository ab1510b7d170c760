//! Readiness lists: any number of one-shot subscriptions, each with its own threshold, that the
//! other side of the pipe fires with no lock on its fast path.
//!
//! A subscription is a callback (or a [`Waker`]) and a threshold: a position of the other side
//! (the write position for "readable", the read position for "writable") at which it becomes
//! due. The list keeps the smallest armed threshold in one atomic. The firing side publishes its
//! progress, fences (the SeqCst fence it already pays for in `Signal::notify`), and loads that
//! word with a Relaxed load: only when its position meets it does it take the mutex, remove every
//! due entry and run them outside the lock. The arming side inserts its entry and lowers the word
//! under the mutex, fences, and re-checks its own condition, firing its entry itself if it is
//! already due. The two fences make the Dekker argument work: either the firing side sees the
//! threshold, or the arming side's re-check sees the progress. An entry is removed under the
//! mutex before it runs, so it runs at most once, and a cancel that removes it first means it
//! never runs.
//!
//! So any number of Python wrappers and event loops can each wait on one reader, with their own
//! thresholds: nothing replaces anything.

use crate::primitive::{fence, lock, AtomicU64, Mutex, Ordering};
use std::task::Waker;

/// `min` when nothing is armed.
const NONE: u64 = u64::MAX;

/// One armed readiness callback, returned by [`Reader::on_readable`](crate::Reader::on_readable)
/// and [`Writer::on_writable`](crate::Writer::on_writable) and accepted by their `cancel_*`
/// methods. Keys are never reused within a pipe, so cancelling one that has fired (or was
/// cancelled) is a harmless no-op.
///
/// ```
/// let (mut w, r) = bodypipe::pipe();
/// let sub = r.on_readable(|| unreachable!("cancelled before any write"));
/// assert!(r.cancel_readable(sub)); // removed before it could fire
/// assert!(!r.cancel_readable(sub)); // already gone
/// w.write(b"x")?;
/// # Ok::<(), bodypipe::WriteError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subscription(u64);

/// What runs when an entry fires.
pub(crate) enum Wake<T> {
    /// A user callback, given why it fired.
    Callback(Box<dyn FnOnce(T) + Send + 'static>),
    /// An async task ([`Writer::poll_writable`](crate::Writer::poll_writable)), told only that
    /// it should poll again.
    Waker(Waker),
}

impl<T> Wake<T> {
    fn run(self, why: T) {
        match self {
            Self::Callback(cb) => cb(why),
            Self::Waker(w) => w.wake(),
        }
    }
}

struct Entry<T> {
    key: u64,
    threshold: u64,
    wake: Wake<T>,
}

struct Entries<T> {
    list: Vec<Entry<T>>,
    next_key: u64,
}

impl<T> Entries<T> {
    fn min(&self) -> u64 {
        self.list.iter().map(|e| e.threshold).min().unwrap_or(NONE)
    }
}

/// The subscriptions of one side of a pipe (readable or writable).
pub(crate) struct ReadyList<T> {
    /// The smallest threshold among the armed entries, `NONE` if there are none. Written only
    /// under `entries`' lock, so it is always exactly that minimum; loaded without the lock by
    /// the firing side.
    min: AtomicU64,
    entries: Mutex<Entries<T>>,
}

impl<T> std::fmt::Debug for ReadyList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadyList").field("min", &self.min.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

impl<T: Copy> ReadyList<T> {
    pub(crate) fn new() -> Self {
        Self { min: AtomicU64::new(NONE), entries: Mutex::new(Entries { list: Vec::new(), next_key: 0 }) }
    }

    /// Arms `wake` for when the firing side's position reaches `threshold` (or it fires
    /// everything), then fires it at once if `due()` already says why. `due` must read the
    /// progress the firing side publishes, with Acquire loads.
    pub(crate) fn arm(&self, threshold: u64, wake: Wake<T>, due: impl FnOnce() -> Option<T>) -> Subscription {
        // A threshold of NONE would read as "nothing armed": one below it is never reached in
        // practice and still fires on `fire_all`.
        let threshold = threshold.min(NONE - 1);
        let key = {
            let mut entries = lock(&self.entries);
            let key = entries.next_key;
            entries.next_key += 1;
            entries.list.push(Entry { key, threshold, wake });
            // ORDERING: Relaxed, under the lock: the fence below orders it before our re-check,
            // which is all the Dekker argument needs; the lock orders it with the other writers
            // of `min`, which recompute it under the same lock.
            self.min.fetch_min(threshold, Ordering::Relaxed);
            key
        };
        // ORDERING: Dekker pair with the firing side, which publishes its progress, then fences
        // (SeqCst), then loads `min`. In the total order of the two fences one comes first, so
        // either the firing side sees our threshold (and takes the lock, which shows it our
        // entry), or our `due()` sees its progress; an entry armed while progress is made is never
        // left pending (loom: `on_readable_fires_once`, `two_subscribers_both_fire`,
        // `on_writable_fires_once`).
        fence(Ordering::SeqCst);
        if let Some(why) = due() {
            if let Some(wake) = self.take(key) {
                wake.run(why);
            }
        }
        Subscription(key)
    }

    /// Removes entry `key` unfired; false if it had fired or was removed already.
    pub(crate) fn cancel(&self, sub: Subscription) -> bool {
        // The callback is dropped after the lock is released: its destructor may do anything.
        self.take(sub.0).is_some()
    }

    fn take(&self, key: u64) -> Option<Wake<T>> {
        let mut entries = lock(&self.entries);
        let i = entries.list.iter().position(|e| e.key == key)?;
        let entry = entries.list.swap_remove(i);
        self.min.store(entries.min(), Ordering::Relaxed);
        Some(entry.wake)
    }

    /// The firing side, after publishing progress up to `pos` *and* a SeqCst fence: runs every
    /// entry whose threshold `pos` meets, with `why`.
    #[inline]
    pub(crate) fn fire(&self, pos: u64, why: T) {
        // ORDERING: Relaxed, after the caller's fence (see `arm`).
        if self.min.load(Ordering::Relaxed) <= pos {
            self.fire_where(why, |t| t <= pos);
        }
    }

    /// The firing side, after publishing the end (or a rewind) *and* a SeqCst fence: runs every
    /// armed entry, with `why`.
    #[inline]
    pub(crate) fn fire_all(&self, why: T) {
        if self.min.load(Ordering::Relaxed) != NONE {
            self.fire_where(why, |_| true);
        }
    }

    #[cold]
    fn fire_where(&self, why: T, due: impl Fn(u64) -> bool) {
        // One entry per hold of the lock, run outside it (a callback may arm again, or cancel,
        // on this list). No allocation: this runs on the writer's thread, which may be an
        // Erlang scheduler, where an allocation failure must not abort.
        loop {
            let wake = {
                let mut entries = lock(&self.entries);
                let Some(i) = entries.list.iter().position(|e| due(e.threshold)) else { return };
                let entry = entries.list.swap_remove(i);
                self.min.store(entries.min(), Ordering::Relaxed);
                entry.wake
            };
            wake.run(why);
        }
    }

    /// Drops every entry unfired (the writer is gone: a writability callback can never be
    /// useful).
    pub(crate) fn clear(&self) {
        let dropped = {
            let mut entries = lock(&self.entries);
            self.min.store(NONE, Ordering::Relaxed);
            std::mem::take(&mut entries.list)
        };
        drop(dropped);
    }

    /// How many entries are armed.
    pub(crate) fn armed(&self) -> usize {
        lock(&self.entries).list.len()
    }
}
