//! The real futex (std builds); `primitive` swaps in a blocking model under loom.

use std::sync::atomic::AtomicU32;
use std::time::Instant;

/// A 32-bit futex word: `atomic-wait` for untimed waits and wakes, and on Linux a raw
/// `FUTEX_WAIT_BITSET` with an absolute `CLOCK_MONOTONIC` deadline for timed ones.
///
/// `atomic-wait` has no timeout. `FUTEX_WAIT_BITSET` takes an *absolute* deadline, so a wait that
/// is interrupted (`EINTR`) or returns spuriously can be retried without the deadline drifting;
/// this is how the Rust standard library's own futex-based `Condvar::wait_timeout` does it.
#[derive(Debug)]
pub(crate) struct Futex {
    word: AtomicU32,
}

impl Futex {
    pub(crate) const fn new(value: u32) -> Self {
        Self { word: AtomicU32::new(value) }
    }

    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.word
    }

    /// Sleeps while the word equals `expected`, until woken, spuriously, or until `deadline`.
    /// Returns false only when the deadline has passed.
    pub(crate) fn wait(&self, expected: u32, deadline: Option<Instant>) -> bool {
        match deadline {
            None => {
                atomic_wait::wait(&self.word, expected);
                true
            }
            Some(deadline) => timed_wait(&self.word, expected, deadline),
        }
    }

    pub(crate) fn wake_all(&self) {
        atomic_wait::wake_all(&self.word);
    }
}

#[cfg(target_os = "linux")]
// `time_t` and `c_long` are 32-bit on some Linux targets: the conversions are not useless there.
#[allow(clippy::useless_conversion)]
fn timed_wait(word: &AtomicU32, expected: u32, deadline: Instant) -> bool {
    let now = Instant::now();
    if now >= deadline {
        return false;
    }
    let remaining = deadline - now;
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return false;
    }
    let secs = i64::try_from(remaining.as_secs()).unwrap_or(i64::MAX / 2);
    let mut tv_sec = i64::from(ts.tv_sec).saturating_add(secs);
    let mut tv_nsec = i64::from(ts.tv_nsec) + i64::from(remaining.subsec_nanos());
    if tv_nsec >= 1_000_000_000 {
        tv_sec = tv_sec.saturating_add(1);
        tv_nsec -= 1_000_000_000;
    }
    let abs = libc::timespec {
        tv_sec: tv_sec.try_into().unwrap_or(libc::time_t::MAX),
        tv_nsec: tv_nsec.try_into().unwrap_or(0),
    };
    // SAFETY: the futex word is a live, aligned AtomicU32 for the duration of the call; `abs` is
    // a valid timespec; the kernel only reads both. FUTEX_WAIT_BITSET with CLOCK_REALTIME unset
    // interprets `abs` as an absolute CLOCK_MONOTONIC time.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word as *const AtomicU32,
            libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &abs as *const libc::timespec,
            std::ptr::null::<u32>(),
            u32::MAX, // FUTEX_BITSET_MATCH_ANY
        )
    };
    if r == 0 {
        return true;
    }
    // ETIMEDOUT: the deadline passed. EAGAIN (value changed), EINTR: a normal early return.
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ETIMEDOUT)
}

#[cfg(not(target_os = "linux"))]
fn timed_wait(word: &AtomicU32, expected: u32, deadline: Instant) -> bool {
    use std::sync::atomic::Ordering;
    // No portable timed futex: sleep in short slices. Correct, merely less prompt.
    while word.load(Ordering::Acquire) == expected {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep((deadline - now).min(std::time::Duration::from_micros(200)));
    }
    true
}
