//! Baselines and helpers shared by the `suite` driver and the criterion micro-benchmarks.
//!
//! Everything here is a *baseline*, not product code: the reference model (the seed design,
//! re-implemented faithfully), `Read`-like adapters over channels and an OS pipe, the two memcpy
//! limits, a raw futex, and a per-thread futex-syscall counter built on `perf_event_open`.
#![allow(dead_code)]

use std::sync::atomic::AtomicU32;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

// ---------------------------------------------------------------------------------------------
// The reference model (../shared/seed/buffer-api.md): one contiguous buffer grown by realloc,
// a mutex around every write and read, a condvar broadcast on every write. Like glibc's
// pthread_cond_broadcast it costs no syscall when nobody waits: we keep the waiter count under the
// mutex and only call `notify_all` when it is non-zero (Rust's `notify_all` always makes one,
// which would flatter bodypipe).
// ---------------------------------------------------------------------------------------------

/// The seed's default capacity for a body of unknown length.
pub const REF_INITIAL_CAPACITY: usize = 64 << 10;

struct RefState {
    /// `data.len()` is the write position; capacity grows by doubling through `realloc`.
    data: Vec<u8>,
    read_pos: usize,
    eof: bool,
    waiters: u32,
}

/// The reference buffer: `py_buffer_resource_t` with its mutex and `data_ready` condvar.
pub struct RefBuffer {
    state: Mutex<RefState>,
    data_ready: Condvar,
}

impl RefBuffer {
    /// `py_buffer:new/0` (64 KiB to start) or `new/1` (pre-allocates the content length).
    pub fn new(content_length: Option<usize>) -> Self {
        let cap = content_length.unwrap_or(REF_INITIAL_CAPACITY);
        RefBuffer {
            state: Mutex::new(RefState { data: Vec::with_capacity(cap), read_pos: 0, eof: false, waiters: 0 }),
            data_ready: Condvar::new(),
        }
    }

    /// `py_buffer:write/2`: lock, grow (realloc-and-copy), memcpy, broadcast, unlock.
    pub fn write(&self, chunk: &[u8]) {
        let mut s = self.state.lock().unwrap();
        let need = s.data.len() + chunk.len();
        if need > s.data.capacity() {
            // The seed doubles its capacity until it fits; `reserve_exact` is one `realloc`.
            let mut cap = s.data.capacity().max(1);
            while cap < need {
                cap *= 2;
            }
            let extra = cap - s.data.len();
            s.data.reserve_exact(extra);
        }
        s.data.extend_from_slice(chunk);
        if s.waiters > 0 {
            self.data_ready.notify_all();
        }
    }

    /// `py_buffer:close/1`.
    pub fn close(&self) {
        let mut s = self.state.lock().unwrap();
        s.eof = true;
        if s.waiters > 0 {
            self.data_ready.notify_all();
        }
    }

    /// `read(size)`: blocks (condvar) until data or EOF, copies under the mutex.
    pub fn read(&self, buf: &mut [u8]) -> usize {
        let mut s = self.state.lock().unwrap();
        while s.data.len() == s.read_pos && !s.eof {
            s.waiters += 1;
            s = self.data_ready.wait(s).unwrap();
            s.waiters -= 1;
        }
        let n = (s.data.len() - s.read_pos).min(buf.len());
        let at = s.read_pos;
        buf[..n].copy_from_slice(&s.data[at..at + n]);
        s.read_pos += n;
        n
    }

    /// Benchmark helper: forget the body but keep the allocation (so a long single-thread loop
    /// measures writes, not unbounded growth).
    pub fn reset(&self) {
        let mut s = self.state.lock().unwrap();
        s.data.clear();
        s.read_pos = 0;
    }

    /// Bytes allocated for the body (capacity).
    pub fn capacity(&self) -> usize {
        self.state.lock().unwrap().data.capacity()
    }
}

// ---------------------------------------------------------------------------------------------
// `read(64 KiB)` adapters over channels: block for the first chunk, then drain what is already
// queued while the buffer has room, keeping a partial chunk for the next call (what a BufReader
// over a channel does). Returns 0 once the sender is gone and everything is drained.
// ---------------------------------------------------------------------------------------------

/// A reader-side adapter over any channel of `Vec<u8>` chunks.
pub struct ChanReader<R> {
    recv: R,
    pending: Vec<u8>,
    off: usize,
}

/// The two receive operations the adapter needs.
pub trait ChunkRecv {
    fn recv_chunk(&self) -> Option<Vec<u8>>;
    fn try_recv_chunk(&self) -> Option<Vec<u8>>;
}

impl ChunkRecv for std::sync::mpsc::Receiver<Vec<u8>> {
    fn recv_chunk(&self) -> Option<Vec<u8>> {
        self.recv().ok()
    }
    fn try_recv_chunk(&self) -> Option<Vec<u8>> {
        self.try_recv().ok()
    }
}

impl ChunkRecv for crossbeam_channel::Receiver<Vec<u8>> {
    fn recv_chunk(&self) -> Option<Vec<u8>> {
        self.recv().ok()
    }
    fn try_recv_chunk(&self) -> Option<Vec<u8>> {
        self.try_recv().ok()
    }
}

impl<R: ChunkRecv> ChanReader<R> {
    pub fn new(recv: R) -> Self {
        ChanReader { recv, pending: Vec::new(), off: 0 }
    }

    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut done = 0;
        loop {
            if self.off == self.pending.len() {
                let next = if done == 0 { self.recv.recv_chunk() } else { self.recv.try_recv_chunk() };
                match next {
                    Some(c) => {
                        self.pending = c;
                        self.off = 0;
                    }
                    None => return done,
                }
            }
            let take = (self.pending.len() - self.off).min(buf.len() - done);
            buf[done..done + take].copy_from_slice(&self.pending[self.off..self.off + take]);
            self.off += take;
            done += take;
            if done == buf.len() {
                return done;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// OS pipe.
// ---------------------------------------------------------------------------------------------

/// `pipe(2)`: (read fd, write fd).
pub fn os_pipe() -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid array of two ints.
    let r = unsafe { libc::pipe(fds.as_mut_ptr()) };
    assert_eq!(r, 0, "pipe: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

pub fn fd_write_all(fd: i32, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: valid fd and buffer.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            panic!("write: {e}");
        }
        data = &data[n as usize..];
    }
}

pub fn fd_read(fd: i32, buf: &mut [u8]) -> usize {
    loop {
        // SAFETY: valid fd and buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return n as usize;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            panic!("read: {e}");
        }
    }
}

pub fn fd_close(fd: i32) {
    // SAFETY: we own the fd.
    unsafe { libc::close(fd) };
}

// ---------------------------------------------------------------------------------------------
// Raw futex.
// ---------------------------------------------------------------------------------------------

pub fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a live aligned u32; no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word as *const AtomicU32,
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        )
    };
}

pub fn futex_wake(word: &AtomicU32, n: i32) {
    // SAFETY: `word` is a live aligned u32.
    unsafe { libc::syscall(libc::SYS_futex, word as *const AtomicU32, libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, n) };
}

// ---------------------------------------------------------------------------------------------
// Per-thread futex syscall counter: perf_event_open on the `syscalls:sys_enter_futex`
// tracepoint, pid = 0 (this thread only), cpu = -1. Exact, no ptrace, no LD_PRELOAD.
// ---------------------------------------------------------------------------------------------

/// Whether [`FutexCounter::for_this_thread`] opens counters (off for timed runs).
pub static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns counting on or off for the counters opened from now on.
pub fn set_counting(on: bool) {
    COUNTING.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Counts `futex(2)` entries made by the thread that created it.
pub struct FutexCounter {
    fd: i32,
}

fn tracepoint_id() -> Option<u64> {
    for base in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if let Ok(s) = std::fs::read_to_string(format!("{base}/events/syscalls/sys_enter_futex/id")) {
            if let Ok(id) = s.trim().parse() {
                return Some(id);
            }
        }
    }
    None
}

impl FutexCounter {
    /// `None` when perf or the tracepoint is unavailable (permissions, no tracefs).
    /// Only while [`COUNTING`] is on: an active tracepoint event slows the thread that carries it
    /// (measured: 9 ns -> 50 ns per 64 B write on these VMs), so timed runs and counted runs are
    /// separate passes.
    pub fn for_this_thread() -> Option<Self> {
        if !COUNTING.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let id = tracepoint_id()?;
        // struct perf_event_attr, PERF_ATTR_SIZE_VER5 (112 bytes), zeroed: counting mode,
        // enabled at once, not inherited.
        let mut attr = [0u64; 14];
        let type_and_size: u64 = 2 /* PERF_TYPE_TRACEPOINT */ | ((112u64) << 32);
        attr[0] = type_and_size;
        attr[1] = id; // config
                      // SAFETY: attr is a valid perf_event_attr of the declared size.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                attr.as_ptr(),
                0i32,
                -1i32,
                -1i32,
                8u64, /* PERF_FLAG_FD_CLOEXEC */
            )
        };
        if fd < 0 {
            return None;
        }
        Some(FutexCounter { fd: fd as i32 })
    }

    pub fn read(&self) -> u64 {
        let mut v = 0u64;
        // SAFETY: reading 8 bytes into a u64.
        let n = unsafe { libc::read(self.fd, (&mut v as *mut u64).cast(), 8) };
        if n == 8 {
            v
        } else {
            0
        }
    }
}

impl Drop for FutexCounter {
    fn drop(&mut self) {
        fd_close(self.fd);
    }
}

// ---------------------------------------------------------------------------------------------
// Data.
// ---------------------------------------------------------------------------------------------

/// Bytes every producer writes from, at rotating offsets: pseudo-random, made once.
pub const PATTERN: usize = 1 << 20;

pub fn pattern(chunk: usize) -> Vec<u8> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    (0..PATTERN + chunk)
        .map(|_| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 56) as u8
        })
        .collect()
}

/// Walks the chunk sequence of a `total`-byte body: `f(chunk_slice)` for each write.
#[inline]
pub fn for_each_chunk(pattern: &[u8], total: u64, chunk: usize, mut f: impl FnMut(&[u8])) {
    let mut sent = 0u64;
    let mut off = 0usize;
    while sent < total {
        let n = chunk.min((total - sent) as usize);
        f(&pattern[off..off + n]);
        off += n;
        if off >= PATTERN {
            off -= PATTERN;
        }
        sent += n as u64;
    }
}

pub fn now_ns(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}
