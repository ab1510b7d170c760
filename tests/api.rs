#![cfg(not(bodypipe_loom))]
//! Behaviour tests of every public item of the core and every rule of issue 2.
//!
//! This binary installs a global allocator that counts, per thread, the bytes of large
//! allocations and can refuse them on demand: that is how the ring-mode memory tests see segment
//! reuse and how the fallible-allocation tests make a segment allocation fail mid-stream, without
//! any test-only public API in the crate.

use bodypipe::{
    BuildError, Builder, CloseError, ReadError, ReadWithError, Reader, Ready, SeekError, View, WaitError,
    WaitWritableError, Writability, WriteError, Writer, DEFAULT_MAX_SIZE, INCOMPLETE_BODY,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, BufRead, ErrorKind, IoSlice, Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Test allocator: per-thread accounting of large allocations, and injected failures.
// ---------------------------------------------------------------------------------------------

struct TestAlloc;

thread_local! {
    /// Bytes of allocations of at least `BIG` bytes made by this thread.
    static BIG_BYTES: Cell<u64> = const { Cell::new(0) };
    /// Bytes of this thread's allocations of at least `BIG` bytes not yet freed (by this thread).
    static BIG_LIVE: Cell<i64> = const { Cell::new(0) };
    /// Allocations of at least `FAIL_MIN` bytes fail once `FAIL_ALLOW` such allocations succeeded.
    static FAIL_MIN: Cell<usize> = const { Cell::new(usize::MAX) };
    static FAIL_ALLOW: Cell<u32> = const { Cell::new(0) };
    /// Bytes of all allocations made by this thread.
    static ALL_BYTES: Cell<u64> = const { Cell::new(0) };
    /// While `RECORDING`, the sizes of this thread's large allocations, in order.
    static RECORDING: Cell<bool> = const { Cell::new(false) };
    static RECORDED: [Cell<usize>; RECORD_MAX] = const { [const { Cell::new(0) }; RECORD_MAX] };
    static NRECORDED: Cell<usize> = const { Cell::new(0) };
}

const RECORD_MAX: usize = 64;

const BIG: usize = 1024;

// SAFETY: forwards to the system allocator; the bookkeeping touches only const-initialised
// thread-locals without destructors (no allocation, no re-entrancy).
unsafe impl GlobalAlloc for TestAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let size = layout.size();
        let _ = ALL_BYTES.try_with(|b| b.set(b.get() + size as u64));
        if size >= BIG && RECORDING.try_with(Cell::get).unwrap_or(false) {
            let _ = NRECORDED.try_with(|n| {
                let i = n.get();
                if i < RECORD_MAX {
                    let _ = RECORDED.try_with(|r| r[i].set(size));
                    n.set(i + 1);
                }
            });
        }
        if size >= BIG {
            let refuse = FAIL_MIN
                .try_with(|min| {
                    size >= min.get()
                        && FAIL_ALLOW.with(|allow| {
                            if allow.get() == 0 {
                                true
                            } else {
                                allow.set(allow.get() - 1);
                                false
                            }
                        })
                })
                .unwrap_or(false);
            if refuse {
                return std::ptr::null_mut();
            }
            let _ = BIG_BYTES.try_with(|b| b.set(b.get() + size as u64));
            let _ = BIG_LIVE.try_with(|b| b.set(b.get() + size as i64));
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= BIG {
            let _ = BIG_LIVE.try_with(|b| b.set(b.get() - layout.size() as i64));
        }
        // SAFETY: same contract as ours; `ptr` came from `System.alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: TestAlloc = TestAlloc;

fn all_bytes() -> u64 {
    ALL_BYTES.with(Cell::get)
}

/// The sizes of the large allocations `f` makes on this thread (the first `RECORD_MAX`).
fn record_large_allocations(f: impl FnOnce()) -> Vec<usize> {
    NRECORDED.with(|n| n.set(0));
    RECORDING.with(|r| r.set(true));
    f();
    RECORDING.with(|r| r.set(false));
    let n = NRECORDED.with(Cell::get);
    RECORDED.with(|r| r[..n].iter().map(Cell::get).collect())
}

fn big_bytes() -> u64 {
    BIG_BYTES.with(Cell::get)
}

/// Makes this thread's allocations of at least `min` bytes fail after `allow` successes, until
/// the guard drops.
struct FailGuard;

fn fail_allocations(min: usize, allow: u32) -> FailGuard {
    FAIL_ALLOW.with(|a| a.set(allow));
    FAIL_MIN.with(|m| m.set(min));
    FailGuard
}

impl Drop for FailGuard {
    fn drop(&mut self) {
        FAIL_MIN.with(|m| m.set(usize::MAX));
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn pattern(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn soon() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(10))
}

/// Spins (yielding) until `cond` holds; panics after 30 s, which only a hang reaches.
fn until(what: &str, cond: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < give_up, "never happened: {what}");
        thread::yield_now();
    }
}

/// Wake-up tests wait with 10 s deadlines, and a wait that reaches its deadline still returns
/// success if its condition holds by then: so a lost wake-up shows up only as slowness. Each such
/// test finishes in well under a second when every wake-up arrives.
fn assert_prompt(t0: Instant) {
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}: a wake-up was lost and a deadline hit");
}

fn read_all_now(r: &Reader) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.try_read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(ReadError::WouldBlock) => return out,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
}

fn would_block(r: &Reader) -> bool {
    let mut buf = [0u8; 1];
    r.try_read(&mut buf) == Err(ReadError::WouldBlock)
}

fn seek_error(e: &io::Error) -> SeekError {
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    *e.get_ref().and_then(|i| i.downcast_ref::<SeekError>()).expect("a SeekError inside")
}

fn concat(views: &[View]) -> Vec<u8> {
    views.iter().flat_map(|v| v.iter().copied()).collect()
}

// ---------------------------------------------------------------------------------------------
// Static properties
// ---------------------------------------------------------------------------------------------

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    send_sync::<Reader>();
    send::<Writer>();
    send_sync::<View>();
    send_sync::<WriteError>();
    send_sync::<bodypipe::Stats>();
};

fn _reader_ref_is_bufread_seek(r: &Reader) -> impl BufRead + Seek + '_ {
    r
}

fn _writer_is_write(w: Writer) -> impl Write {
    w
}

// ---------------------------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------------------------

#[test]
fn builder_validation() {
    assert_eq!(DEFAULT_MAX_SIZE, 1 << 30);
    assert_eq!(
        Builder::new().content_length((1 << 30) + 1).build().err(),
        Some(BuildError::TooLarge { content_length: (1 << 30) + 1, max_size: 1 << 30 })
    );
    assert_eq!(
        Builder::new().max_size(10).content_length(11).build().err(),
        Some(BuildError::TooLarge { content_length: 11, max_size: 10 })
    );
    assert!(Builder::new().max_size(10).content_length(10).build().is_ok());
    assert!(Builder::new().content_length(1 << 30).build().is_ok());
    assert_eq!(Builder::new().max_buffered(0).build().err(), Some(BuildError::ZeroMaxBuffered));
    assert_eq!(Builder::new().segment_size(0).build().err(), Some(BuildError::ZeroSegmentSize));
    for e in [
        BuildError::ZeroMaxBuffered,
        BuildError::ZeroSegmentSize,
        BuildError::TooLarge { content_length: 2, max_size: 1 },
    ] {
        assert!(!e.to_string().is_empty());
    }

    let (w, r) = Builder::new().content_length(100).max_buffered(10).max_size(1000).build().unwrap();
    assert_eq!(r.content_length(), Some(100));
    assert_eq!(r.max_buffered(), Some(10));
    let s = w.stats();
    assert_eq!((s.content_length, s.max_buffered, s.written, s.position, s.buffered), (Some(100), Some(10), 0, 0, 0));
    assert!(!s.eof && !s.aborted && !s.reader_closed);

    let (_w, r) = bodypipe::pipe();
    assert_eq!(r.content_length(), None);
    assert_eq!(r.max_buffered(), None);
    let (_w, r) = Builder::default().build().unwrap();
    assert_eq!(r.content_length(), None);
}

#[test]
fn zero_content_length_is_eof_at_once() {
    let (mut w, r) = Builder::new().content_length(0).build().unwrap();
    assert!(r.is_ended());
    assert!(r.at_eof());
    let mut buf = [0u8; 4];
    assert_eq!(r.try_read(&mut buf).unwrap(), 0);
    assert_eq!(w.write(b""), Ok(()));
    assert_eq!(w.write(b"x"), Err(WriteError::ExceedsContentLength));
    drop(w);
    // Dropping the writer of a complete body is not an abort.
    assert_eq!(r.abort_reason(), None);
    assert_eq!((&r).read(&mut buf).unwrap(), 0);
}

#[test]
fn default_max_size_refuses_without_allocating() {
    // 17 x 64 MiB > 1 GiB: refused by the size check before any segment is allocated.
    let chunk = vec![7u8; 64 << 20];
    let parts: Vec<&[u8]> = vec![&chunk[..]; 17];
    let (mut w, r) = bodypipe::pipe();
    let before = big_bytes();
    assert_eq!(w.write_slices(&parts), Err(WriteError::TooLarge));
    assert_eq!(big_bytes(), before, "a refused write allocated");
    assert_eq!(r.buffered(), 0);
    assert_eq!(w.written(), 0);
}

#[test]
fn idle_pipe_costs_well_under_1_kib() {
    let before = all_bytes();
    let (w, r) = bodypipe::pipe();
    let cost = all_bytes() - before;
    eprintln!("an idle pipe allocates {cost} bytes");
    assert!(cost < 1024, "an idle pipe allocated {cost} bytes");
    let before = all_bytes();
    let (w2, r2) = Builder::new().content_length(1 << 30).max_buffered(1 << 20).build().unwrap();
    assert!(all_bytes() - before < 1024, "no segment before the first write");
    drop((w, r, w2, r2));
}

#[test]
fn segment_sizing() {
    // Unknown length: a small first segment, doubling up to 8 MiB, and a write larger than the
    // next size gets a segment that fits it (up to the cap).
    let (mut w, r) = bodypipe::pipe();
    let chunk = vec![1u8; 1000];
    let sizes = record_large_allocations(|| {
        for _ in 0..40_000 {
            w.write(&chunk).unwrap();
        }
    });
    assert_eq!(
        sizes[..12],
        [
            4 << 10,
            8 << 10,
            16 << 10,
            32 << 10,
            64 << 10,
            128 << 10,
            256 << 10,
            512 << 10,
            1 << 20,
            2 << 20,
            4 << 20,
            8 << 20
        ]
    );
    assert!(sizes[12..].iter().all(|&s| s == 8 << 20), "{sizes:?}");
    assert_eq!(r.views().len(), sizes.len());
    drop(r);

    // Known length, unbounded: the same growth with the data (a declared length is only a
    // claim), never past the length: the last segment is exactly what is left of it.
    let (mut w, r) = Builder::new().content_length(1_000_000).build().unwrap();
    let sizes = record_large_allocations(|| {
        for _ in 0..1000 {
            w.write(&chunk).unwrap();
        }
    });
    assert_eq!(sizes, [4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 479_808]);
    assert_eq!(sizes.iter().sum::<usize>(), 1_000_000);
    assert_eq!(r.views().len(), sizes.len());
    // A declared 1 GiB with one byte written is one 4 KiB segment.
    let (mut w, _r) = Builder::new().content_length(1 << 30).build().unwrap();
    let before = all_bytes();
    w.write(b"x").unwrap();
    assert!(all_bytes() - before <= (4 << 10) + 256, "{} bytes for one byte", all_bytes() - before);

    // Ring mode: the same growth up to max_buffered / 4 within [4 KiB, 1 MiB], whatever the
    // content length.
    for (mb, seg) in [(1 << 10, 4 << 10), (64 << 10, 16 << 10), (16 << 20, 1 << 20)] {
        let (mut w, r) = Builder::new().max_buffered(mb).content_length(1 << 30).build().unwrap();
        let sizes = record_large_allocations(|| w.write(&chunk).unwrap());
        assert_eq!(sizes, [4 << 10], "max_buffered {mb}: the first segment");
        let sizes = record_large_allocations(|| {
            while w.written() < 3 * mb as u64 {
                match w.write(&chunk) {
                    Ok(()) => {}
                    Err(WriteError::Full) => assert!(r.skip(usize::MAX) >= mb),
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let grown: Vec<usize> =
            std::iter::successors(Some(8 << 10), |&s| Some(s * 2)).take_while(|&s| s <= seg).collect();
        assert_eq!(sizes[..grown.len()], grown[..], "max_buffered {mb}: doubling to {seg}");
        assert!(sizes.iter().all(|&s| s <= seg), "max_buffered {mb}: {sizes:?}");
        drop(r);
    }

    // segment_size overrides everything.
    let (mut w, _r) = Builder::new().segment_size(3000).content_length(10_000).build().unwrap();
    let sizes = record_large_allocations(|| {
        for _ in 0..10 {
            w.write(&chunk).unwrap();
        }
    });
    assert_eq!(sizes, [3000, 3000, 3000], "the fourth segment (1000 bytes) is below the recording size");
}

// ---------------------------------------------------------------------------------------------
// Whole-or-nothing writes, one test per WriteError variant
// ---------------------------------------------------------------------------------------------

#[test]
fn write_error_closed_after_reader_close() {
    let (mut w, r) = Builder::new().segment_size(4).build().unwrap();
    w.write(b"abcdef").unwrap();
    assert!(!w.is_reader_closed());
    r.close();
    assert!(r.is_closed());
    assert!(w.is_reader_closed());
    assert!(w.stats().reader_closed);
    assert_eq!(w.write(b"ghi"), Err(WriteError::Closed));
    assert_eq!(w.write(b""), Err(WriteError::Closed));
    assert_eq!(w.write_slices(&[&b"x"[..], &b"y"[..]]), Err(WriteError::Closed));
    assert_eq!(w.written(), 6);
    // Bytes written before the close can still be read, then EOF; reads never block again.
    assert_eq!(r.buffered(), 6);
    assert!(!r.at_eof());
    let mut out = Vec::new();
    (&r).read_to_end(&mut out).unwrap();
    assert_eq!(out, b"abcdef");
    assert!(r.at_eof());
    let mut buf = [0u8; 4];
    assert_eq!(r.try_read(&mut buf).unwrap(), 0);
    assert_eq!(r.wait(1, None), Ok(Ready::Ended(0)));
}

#[test]
fn write_error_closed_after_reader_drop() {
    let (mut w, r) = bodypipe::pipe();
    w.write(b"abc").unwrap();
    drop(r);
    assert!(w.is_reader_closed());
    assert_eq!(w.write(b"d"), Err(WriteError::Closed));
    assert_eq!(w.written(), 3);
    let e = Write::write(&mut w, b"d").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BrokenPipe);
    assert_eq!(w.wait_writable(None), Err(WaitWritableError::ReaderClosed));
}

#[test]
fn write_error_exceeds_content_length() {
    let (mut w, r) = Builder::new().content_length(10).segment_size(3).build().unwrap();
    w.write(b"012345").unwrap();
    assert_eq!(w.write(b"67890"), Err(WriteError::ExceedsContentLength));
    assert_eq!(w.write_slices(&[&b"67"[..], &b"890"[..]]), Err(WriteError::ExceedsContentLength));
    assert_eq!(w.written(), 6);
    assert_eq!(r.buffered(), 6);
    assert_eq!(r.written(), 6);
    assert_eq!(read_all_now(&r), b"012345");
    assert!(would_block(&r), "nothing of the refused write may be visible");
    assert!(!r.is_ended());
    w.write(b"6789").unwrap();
    assert!(r.is_ended(), "reaching the content length is EOF");
    assert_eq!(w.write(b"x"), Err(WriteError::ExceedsContentLength));
    assert_eq!(read_all_now(&r), b"6789");
    assert!(r.at_eof());
}

#[test]
fn write_error_too_large() {
    for ring in [false, true] {
        let b = Builder::new().max_size(10).segment_size(4);
        let (mut w, r) = if ring { b.max_buffered(100) } else { b }.build().unwrap();
        w.write(b"01234567").unwrap();
        assert_eq!(w.write(b"890"), Err(WriteError::TooLarge));
        assert_eq!(w.write_slices(&[&b"8"[..], &b"90"[..]]), Err(WriteError::TooLarge));
        assert_eq!(r.buffered(), 8);
        assert_eq!(read_all_now(&r), b"01234567");
        assert!(would_block(&r));
        w.write(b"89").unwrap();
        assert_eq!(w.write(b"x"), Err(WriteError::TooLarge));
        // Reading does not make room under max_size: it bounds the body, not the buffer.
        assert_eq!(read_all_now(&r), b"89");
        assert_eq!(w.write(b"x"), Err(WriteError::TooLarge));
        assert_eq!(w.written(), 10);
        assert!(!r.is_ended(), "max_size reached is not EOF without a content length");
        w.close().unwrap();
        assert!(r.at_eof());
    }
}

#[test]
fn write_error_full_in_ring_mode() {
    let (mut w, r) = Builder::new().max_buffered(8).segment_size(4).build().unwrap();
    w.write(b"abc").unwrap();
    // Unread bytes (3) are below the mark: a chunk larger than the mark is accepted whole.
    w.write(b"defghijklm").unwrap();
    assert_eq!(w.buffered(), 13);
    assert_eq!(w.write(b"n"), Err(WriteError::Full));
    assert_eq!(w.write_slices(&[&b"n"[..], &b"o"[..]]), Err(WriteError::Full));
    let e = Write::write(&mut w, b"n").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    // An empty write stores nothing and is never Full.
    assert_eq!(w.write(b""), Ok(()));
    assert_eq!(r.buffered(), 13);
    assert_eq!(w.written(), 13);
    let mut buf = [0u8; 5];
    assert_eq!(r.try_read(&mut buf).unwrap(), 5);
    assert_eq!(&buf, b"abcde");
    // 8 unread: still at the mark.
    assert_eq!(w.write(b"n"), Err(WriteError::Full));
    assert_eq!(r.skip(1), 1);
    // 7 unread: below.
    w.write(b"nop").unwrap();
    assert_eq!(read_all_now(&r), b"ghijklmnop");
    assert!(would_block(&r));
}

#[test]
fn write_error_display_and_io_mapping() {
    let all = [
        (WriteError::Closed, ErrorKind::BrokenPipe),
        (WriteError::ExceedsContentLength, ErrorKind::InvalidInput),
        (WriteError::TooLarge, ErrorKind::InvalidInput),
        (WriteError::Full, ErrorKind::WouldBlock),
        (WriteError::OutOfMemory, ErrorKind::OutOfMemory),
    ];
    let mut messages = Vec::new();
    for (e, kind) in all {
        let io: io::Error = e.into();
        assert_eq!(io.kind(), kind);
        assert_eq!(io.get_ref().and_then(|i| i.downcast_ref::<WriteError>()), Some(&e));
        messages.push(e.to_string());
    }
    messages.sort();
    messages.dedup();
    assert_eq!(messages.len(), 5);
    let io: io::Error = WaitError::TimedOut.into();
    assert_eq!(io.kind(), ErrorKind::TimedOut);
    assert!(!WaitWritableError::ReaderClosed.to_string().is_empty());
    assert_ne!(WaitWritableError::ReaderClosed.to_string(), WaitWritableError::TimedOut.to_string());
    for e in [SeekError::PastWritten, SeekError::BeforeStart, SeekError::BeforeWindow, SeekError::EndUnknown] {
        let io: io::Error = e.into();
        assert_eq!(seek_error(&io), e);
    }
    // Reads: typed, and only the std trait impls turn them into io::Error, the value inside.
    let aborted = ReadError::Aborted { reason: "client went away".into() };
    for (e, kind) in [
        (ReadError::WouldBlock, ErrorKind::WouldBlock),
        (ReadError::TimedOut, ErrorKind::TimedOut),
        (aborted.clone(), ErrorKind::ConnectionAborted),
        (ReadError::OutOfMemory, ErrorKind::OutOfMemory),
    ] {
        assert_eq!(e.kind(), kind);
        let io: io::Error = e.clone().into();
        assert_eq!(io.kind(), kind);
        assert_eq!(io.get_ref().and_then(|i| i.downcast_ref::<ReadError>()), Some(&e));
    }
    assert_eq!(io::Error::from(aborted).to_string(), "client went away", "the reason is the message");
    assert_eq!(ReadError::from(WaitError::TimedOut), ReadError::TimedOut);
    let with: ReadWithError<&str> = ReadError::WouldBlock.into();
    assert_eq!(with, ReadWithError::Read(ReadError::WouldBlock));
    assert_eq!(ReadWithError::<&str>::Callback("mine").to_string(), "mine");
}

/// The README promises that `&Reader` works like `&File`: no inherent method shadows a std
/// `Read`/`BufRead`/`Seek` method, so each is a plain method call on `&Reader`.
#[test]
fn std_read_and_bufread_methods_are_plain_method_calls_on_a_reader_ref() {
    let (mut w, r) = bodypipe::pipe();
    w.write(b"one\ntwo\nthree;four\nrest").unwrap();
    w.close().unwrap();
    let mut line = String::new();
    assert_eq!((&r).read_line(&mut line).unwrap(), 4);
    assert_eq!(line, "one\n");
    let mut bytes = Vec::new();
    assert_eq!((&r).read_until(b'\n', &mut bytes).unwrap(), 4);
    assert_eq!(bytes, b"two\n");
    let mut rr = &r;
    let mut exact = [0u8; 5];
    rr.read_exact(&mut exact).unwrap();
    assert_eq!(&exact, b"three");
    assert_eq!(rr.stream_position().unwrap(), 13);
    assert_eq!(rr.fill_buf().unwrap(), b";four\nrest");
    rr.consume(1);
    let lines: Vec<String> = (&r).lines().collect::<Result<_, _>>().unwrap();
    assert_eq!(lines, ["four", "rest"]);
    assert_eq!(Seek::seek(&mut rr, SeekFrom::Start(8)).unwrap(), 8);
    let mut rest = String::new();
    assert_eq!((&r).read_to_string(&mut rest).unwrap(), 15);
    assert_eq!(rest, "three;four\nrest");
    // The typed inherent versions sit beside them, named for what they add.
    assert_eq!(r.seek(SeekFrom::Start(0)), Ok(0));
    let mut raw = Vec::new();
    assert_eq!(r.read_line_deadline(&mut raw, Some(2), None), Ok(2));
    assert_eq!(raw, b"on");
}

// ---------------------------------------------------------------------------------------------
// Fallible allocation
// ---------------------------------------------------------------------------------------------

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_declared_length_is_faulted_in_only_as_it_is_written() {
    // A declared 256 MiB is no allocation; the writer faults pages in at most a window ahead of
    // its copies. The slack allows for other tests allocating in this process meanwhile.
    let (mut w, r) = Builder::new().content_length(256 << 20).build().unwrap();
    let before = rss_kib();
    w.write(b"abc").unwrap();
    let after_small = rss_kib();
    w.write(&vec![7u8; 5 << 20]).unwrap();
    assert_eq!(r.buffered(), 3 + (5 << 20));
    if let (Some(a), Some(b)) = (before, after_small) {
        assert!(b < a + 32 * 1024, "3 bytes into a 256 MiB segment: RSS grew from {a} KiB to {b} KiB");
    }
    let mut buf = [0u8; 3];
    (&r).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"abc");
}

#[test]
fn one_tib_segment_is_refused_as_out_of_memory() {
    // A declared length close to a 1 TiB max_size costs what is written: one small segment.
    let tib = 1u64 << 40;
    let (mut w, r) = Builder::new().max_size(tib).content_length(tib - 1).build().unwrap();
    let before = all_bytes();
    w.write(b"hello").unwrap();
    assert!(all_bytes() - before < 8 << 10, "{} bytes allocated for 5", all_bytes() - before);
    assert_eq!(r.buffered(), 5);
    drop((w, r));

    // 1 TiB segments (segment_size): the allocator refuses them at once (more than RAM + swap
    // under heuristic overcommit); nothing is committed and the stream stays usable.
    let (mut w, r) = Builder::new().max_size(tib).segment_size(1 << 40).build().unwrap();
    let rss_before = rss_kib();
    assert_eq!(w.write(b"hello"), Err(WriteError::OutOfMemory));
    assert_eq!(w.write_slices(&[&b"he"[..], &b"llo"[..]]), Err(WriteError::OutOfMemory));
    if let (Some(a), Some(b)) = (rss_before, rss_kib()) {
        assert!(b < a + 64 * 1024, "RSS grew from {a} KiB to {b} KiB");
    }
    assert_eq!(w.written(), 0);
    assert_eq!(r.buffered(), 0);
    assert!(would_block(&r));
    assert!(r.views().is_empty());
    assert!(!r.is_ended());
    assert_eq!(w.write(b""), Ok(()));
    w.abort("no memory");
    let mut buf = [0u8; 4];
    let e = r.try_read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionAborted);
    assert_eq!(e.to_string(), "no memory");

    // Again, then a close: EOF with nothing.
    let (mut w, r) = Builder::new().max_size(tib).segment_size(1 << 40).build().unwrap();
    assert_eq!(w.write(b"x"), Err(WriteError::OutOfMemory));
    w.close().unwrap();
    assert!(r.at_eof());
}

#[test]
fn allocation_failure_mid_stream_stores_nothing_and_recovers() {
    for ring in [false, true] {
        let b = Builder::new().segment_size(2048);
        let (mut w, r) = if ring { b.max_buffered(1 << 20) } else { b }.build().unwrap();
        let data = pattern(20_000, 1);
        w.write(&data[..1000]).unwrap();
        {
            // The next write needs 4 new segments; the third allocation fails.
            let _g = fail_allocations(2048, 2);
            assert_eq!(w.write(&data[1000..9000]), Err(WriteError::OutOfMemory), "ring={ring}");
        }
        assert_eq!(w.written(), 1000);
        assert_eq!(r.buffered(), 1000);
        assert_eq!(concat(&r.views()), &data[..1000]);
        {
            let _g = fail_allocations(2048, 0);
            assert_eq!(w.write(&data[1000..9000]), Err(WriteError::OutOfMemory));
            // What fits in the current segment needs no allocation.
            w.write(&data[1000..2000]).unwrap();
        }
        w.write(&data[2000..9000]).unwrap();
        w.write(&data[9000..]).unwrap();
        w.close().unwrap();
        let mut out = Vec::new();
        (&r).read_to_end(&mut out).unwrap();
        assert!(out == data, "ring={ring}");
    }
}

#[test]
fn failed_write_holds_no_memory_outside_ring_mode() {
    let (mut w, r) = Builder::new().segment_size(2048).build().unwrap();
    let data = pattern(9000, 4);
    w.write(&data[..1000]).unwrap();
    let live = BIG_LIVE.with(Cell::get);
    {
        // Needs 4 new segments; the first two are allocated, the third is refused.
        let _g = fail_allocations(2048, 2);
        assert_eq!(w.write(&data[1000..9000]), Err(WriteError::OutOfMemory));
    }
    // Unbounded mode never recycles, so the two segments must be freed, not kept aside.
    assert_eq!(BIG_LIVE.with(Cell::get), live);
    w.write(&data[1000..]).unwrap();
    w.close().unwrap();
    let mut out = Vec::new();
    (&r).read_to_end(&mut out).unwrap();
    assert!(out == data);
}

#[test]
fn refused_allocation_does_not_grow_the_next_segment() {
    let (mut w, _r) = bodypipe::pipe();
    w.write(&[1; 4096]).unwrap(); // fills the first 4 KiB segment
    {
        let _g = fail_allocations(BIG, 0);
        for _ in 0..5 {
            assert_eq!(w.write(b"x"), Err(WriteError::OutOfMemory));
        }
    }
    // Five refusals later, the second segment is still the second size of the sequence.
    assert_eq!(record_large_allocations(|| w.write(b"x").unwrap()), [8192]);
}

#[test]
fn wait_writable_with_an_unrepresentable_timeout_waits_without_panicking() {
    let (mut w, r) = Builder::new().max_buffered(4).build().unwrap();
    w.write(b"abcd").unwrap();
    let reader = std::thread::spawn(move || {
        until("the writer parks", || r.stats().writer_waiting);
        r.skip(4);
        r
    });
    assert_eq!(w.wait_writable(Some(Duration::MAX)), Ok(()));
    drop(reader.join().unwrap());
}

#[test]
fn allocation_failure_in_geometric_growth() {
    let (mut w, r) = bodypipe::pipe();
    let data = pattern(100_000, 2);
    w.write(&data[..3000]).unwrap();
    {
        let _g = fail_allocations(BIG, 0);
        assert_eq!(w.write(&data[3000..10_000]), Err(WriteError::OutOfMemory));
    }
    assert_eq!(r.buffered(), 3000);
    w.write(&data[3000..]).unwrap();
    w.close().unwrap();
    let mut out = Vec::new();
    (&r).read_to_end(&mut out).unwrap();
    assert!(out == data);
}

#[test]
fn allocation_failure_in_reads_and_views() {
    let (mut w, r) = Builder::new().segment_size(4096).build().unwrap();
    let mut data = pattern(20_000, 3);
    data.retain(|&b| b != b'\n');
    data.push(b'\n');
    w.write(&data).unwrap();
    {
        let _g = fail_allocations(8192, 0);
        // A coalesced copy is fallible.
        assert!(r.view().is_err());
        // Copying a line into a vector is fallible and consumes nothing when it fails.
        let mut line = Vec::new();
        let e = r.read_line_deadline(&mut line, None, None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfMemory);
        assert!(line.is_empty());
        assert_eq!(r.position(), 0);
    }
    let v = r.view().unwrap();
    assert!(!v.is_zero_copy());
    assert_eq!(&*v, &data[..]);
    let mut line = Vec::new();
    assert_eq!(r.read_line_deadline(&mut line, None, None).unwrap(), data.len());
    assert_eq!(line, data);
}

// ---------------------------------------------------------------------------------------------
// End of stream
// ---------------------------------------------------------------------------------------------

#[test]
fn content_length_reached_is_eof() {
    let (mut w, r) = Builder::new().content_length(11).build().unwrap();
    w.write(b"hello ").unwrap();
    assert!(!r.is_ended());
    w.write(b"world").unwrap();
    assert!(r.is_ended());
    assert!(r.stats().eof);
    assert!(!r.at_eof());
    // The writer is still alive; reads end at EOF without a close.
    let mut out = Vec::new();
    (&r).read_to_end(&mut out).unwrap();
    assert_eq!(out, b"hello world");
    assert!(r.at_eof());
    drop(w);
    // Dropping a writer whose body is complete does not turn EOF into an abort.
    assert_eq!(r.abort_reason(), None);
    assert!(!r.stats().aborted);
    let mut buf = [0u8; 1];
    assert_eq!(r.try_read(&mut buf).unwrap(), 0);
}

#[test]
fn content_length_reached_wakes_blocked_reader() {
    let t0 = Instant::now();
    let (mut w, r) = Builder::new().content_length(4).build().unwrap();
    thread::scope(|s| {
        let t = s.spawn(|| {
            let mut out = Vec::new();
            r.set_read_timeout(Some(Duration::from_secs(10)));
            (&r).read_to_end(&mut out).map(|_| out)
        });
        until("the reader parks", || r.stats().reader_waiting);
        w.write(b"ab").unwrap();
        until("the reader parks again", || r.stats().reader_wakes == 1 && r.stats().reader_waiting);
        w.write(b"cd").unwrap();
        assert_eq!(t.join().unwrap().unwrap(), b"abcd");
    });
    assert_prompt(t0);
}

#[test]
fn close_before_content_length_is_an_incomplete_body() {
    let (mut w, r) = Builder::new().content_length(100).build().unwrap();
    w.write(b"short").unwrap();
    assert_eq!(w.close(), Err(CloseError::Incomplete { written: 5, expected: 100 }));
    let e: io::Error = CloseError::Incomplete { written: 5, expected: 100 }.into();
    assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
    assert_eq!(e.to_string(), "body closed after 5 of its 100 declared bytes");
    assert!(r.is_ended());
    assert_eq!(r.abort_reason().as_deref(), Some(INCOMPLETE_BODY));
    // The bytes written come first, then the abort: never EOF.
    let mut out = Vec::new();
    let e = (&r).read_to_end(&mut out).unwrap_err();
    assert_eq!(out, b"short");
    assert_eq!((e.kind(), e.to_string()), (ErrorKind::ConnectionAborted, INCOMPLETE_BODY.to_owned()));
    assert!(!r.at_eof());
    let s = r.stats();
    assert!(!s.eof && s.aborted);
    assert_eq!((s.written, s.position, s.buffered), (5, 5, 0));

    // Nothing written at all is short too; a complete body, and a body of no declared length,
    // close cleanly.
    let (w, r) = Builder::new().content_length(1).build().unwrap();
    assert_eq!(w.close(), Err(CloseError::Incomplete { written: 0, expected: 1 }));
    assert_eq!(r.try_read(&mut [0u8; 1]).unwrap_err().kind(), ErrorKind::ConnectionAborted);
    let (mut w, r) = Builder::new().content_length(2).build().unwrap();
    w.write(b"ab").unwrap();
    assert_eq!(w.close(), Ok(()));
    let (w0, _r0) = Builder::new().content_length(0).build().unwrap();
    assert_eq!(w0.close(), Ok(()));
    let mut out = Vec::new();
    (&r).read_to_end(&mut out).unwrap();
    assert!(r.at_eof() && out == b"ab");
    let (mut w, _r) = bodypipe::pipe();
    w.write(b"any").unwrap();
    assert_eq!(w.close(), Ok(()));
}

#[test]
fn abort_gives_remaining_data_then_connection_aborted() {
    let (mut w, r) = Builder::new().segment_size(3).build().unwrap();
    w.write(b"partial body").unwrap();
    w.abort(String::from("client disconnected"));
    assert!(r.is_ended());
    assert_eq!(r.abort_reason().as_deref(), Some("client disconnected"));
    assert!(r.stats().aborted && !r.stats().eof);
    assert!(!r.at_eof(), "data is still unread");
    let mut buf = [0u8; 8];
    assert_eq!(r.try_read(&mut buf).unwrap(), 8);
    assert_eq!(&buf, b"partial ");
    assert_eq!((&r).read(&mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"body");
    assert!(!r.at_eof(), "an aborted body never reaches EOF");
    for _ in 0..2 {
        // The reason is data in the typed error, and the message of the std one.
        let aborted = ReadError::Aborted { reason: "client disconnected".into() };
        assert_eq!(r.try_read(&mut buf), Err(aborted.clone()));
        let e = (&r).read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionAborted);
        assert_eq!(e.to_string(), "client disconnected");
        assert_eq!(e.get_ref().and_then(|i| i.downcast_ref::<ReadError>()), Some(&aborted));
    }
    let mut line = Vec::new();
    assert!(matches!(r.read_line_deadline(&mut line, None, None), Err(ReadError::Aborted { .. })));
    assert_eq!(r.wait(1, None), Ok(Ready::Ended(0)));
    assert_eq!(BufRead::fill_buf(&mut &r).unwrap_err().kind(), ErrorKind::ConnectionAborted);

    // read_to_end keeps the data and reports the abort.
    let (mut w, r) = bodypipe::pipe();
    w.write(b"xyz").unwrap();
    w.abort("gone");
    let mut out = Vec::new();
    let e = (&r).read_to_end(&mut out).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionAborted);
    assert_eq!(out, b"xyz");
    // Seeking back re-reads the data, then the abort again.
    assert_eq!(r.seek(SeekFrom::Start(1)).unwrap(), 1);
    let mut buf = [0u8; 8];
    assert_eq!(r.try_read(&mut buf).unwrap(), 2);
    assert_eq!(r.try_read(&mut buf).unwrap_err().kind(), ErrorKind::ConnectionAborted);
}

#[test]
fn writer_dropped_aborts() {
    let t0 = Instant::now();
    let (mut w, r) = bodypipe::pipe();
    w.write(b"abc").unwrap();
    drop(w);
    assert_eq!(r.abort_reason().as_deref(), Some("writer dropped"));
    let mut out = Vec::new();
    let e = (&r).read_to_end(&mut out).unwrap_err();
    assert_eq!(out, b"abc");
    assert_eq!(e.kind(), ErrorKind::ConnectionAborted);
    assert_eq!(e.to_string(), "writer dropped");

    // A reader parked in another thread is released by the drop.
    let (w, r) = bodypipe::pipe();
    thread::scope(|s| {
        let t = s.spawn(|| {
            let mut buf = [0u8; 4];
            r.read_deadline(&mut buf, soon())
        });
        until("the reader parks", || r.stats().reader_waiting);
        drop(w);
        let e = t.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionAborted);
        assert_eq!(e.to_string(), "writer dropped");
    });
    assert_prompt(t0);
}

#[test]
fn at_eof_semantics() {
    let (mut w, r) = bodypipe::pipe();
    assert!(!r.at_eof());
    w.write(b"ab").unwrap();
    assert!(!r.at_eof());
    r.skip(2);
    assert!(!r.at_eof(), "all read but the stream is open");
    w.write(b"c").unwrap();
    w.close().unwrap();
    assert!(!r.at_eof(), "ended, one byte unread");
    r.skip(1);
    assert!(r.at_eof());
    // Seeking back makes data unread again.
    r.seek(SeekFrom::Start(0)).unwrap();
    assert!(!r.at_eof());

    // Abort: never at EOF, drained or not (reads report the abort instead), even once the
    // reader is closed as well.
    let (mut w, r) = bodypipe::pipe();
    w.write(b"a").unwrap();
    w.abort("x");
    assert!(!r.at_eof());
    r.skip(1);
    assert!(!r.at_eof());
    r.close();
    assert!(!r.at_eof());

    // Reader close: at EOF once what was written is read.
    let (mut w, r) = bodypipe::pipe();
    w.write(b"a").unwrap();
    r.close();
    assert!(!r.at_eof());
    r.skip(1);
    assert!(r.at_eof());
    assert!(!r.is_ended(), "the writer has not ended the stream");
}

// ---------------------------------------------------------------------------------------------
// Non-blocking and blocking reads, timeouts, wake-ups
// ---------------------------------------------------------------------------------------------

#[test]
fn try_read_would_block_and_partial_reads() {
    let (mut w, r) = Builder::new().segment_size(4).build().unwrap();
    let mut buf = [0u8; 6];
    assert_eq!(r.try_read(&mut buf), Err(ReadError::WouldBlock));
    assert_eq!(r.try_read(&mut []).unwrap(), 0);
    w.write(b"0123456789").unwrap();
    assert_eq!(r.try_read(&mut buf).unwrap(), 6);
    assert_eq!(&buf, b"012345");
    assert_eq!(r.position(), 6);
    assert_eq!(r.try_read(&mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"6789");
    assert_eq!(r.try_read(&mut buf), Err(ReadError::WouldBlock));
    assert_eq!(r.skip(5), 0);
    w.write(b"abc").unwrap();
    assert_eq!(r.skip(2), 2);
    assert_eq!(r.buffered(), 1);
    assert_eq!(r.position(), 12);
    assert_eq!(r.try_read(&mut buf).unwrap(), 1);
    assert_eq!(buf[0], b'c');
    w.write(b"de").unwrap();
    assert_eq!(r.skip(5), 2, "skip consumes only what is there");
    assert_eq!(r.position(), 15);
    w.close().unwrap();
    assert_eq!(r.try_read(&mut buf).unwrap(), 0);
}

#[test]
fn read_timeout_times_out_and_consumes_nothing() {
    let (mut w, r) = bodypipe::pipe();
    assert_eq!(r.read_timeout(), None);
    r.set_read_timeout(Some(Duration::from_millis(50)));
    assert_eq!(r.read_timeout(), Some(Duration::from_millis(50)));
    let mut buf = [0u8; 4];
    let t = Instant::now();
    let e = (&r).read(&mut buf).unwrap_err();
    let took = t.elapsed();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert!(took >= Duration::from_millis(50), "returned after {took:?}");
    assert!(took < Duration::from_secs(5), "returned after {took:?}");

    // A partial line: the BufRead line read times out and consumes nothing.
    w.write(b"abc").unwrap();
    let mut s = String::new();
    assert_eq!(BufRead::read_line(&mut &r, &mut s).unwrap_err().kind(), ErrorKind::TimedOut);
    assert!(s.is_empty());
    assert_eq!(r.position(), 0);
    assert_eq!(r.buffered(), 3);
    w.write(b"\n").unwrap();
    assert_eq!(BufRead::read_line(&mut &r, &mut s).unwrap(), 4);
    assert_eq!(s, "abc\n");

    // fill_buf honours the timeout as well.
    let e = BufRead::fill_buf(&mut &r).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);

    // read_blocking with an explicit deadline.
    let e = r.read_deadline(&mut buf, Some(Instant::now() + Duration::from_millis(5))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);

    r.set_read_timeout(None);
    assert_eq!(r.read_timeout(), None);
    w.write(b"z").unwrap();
    assert_eq!((&r).read(&mut buf).unwrap(), 1);
    // A huge timeout is accepted and does not overflow.
    r.set_read_timeout(Some(Duration::MAX));
    assert!(r.read_timeout().is_some());
    w.close().unwrap();
    assert_eq!((&r).read(&mut buf).unwrap(), 0);
}

#[test]
fn blocking_read_woken_by_write_close_and_abort() {
    let t0 = Instant::now();
    #[derive(Clone, Copy, Debug)]
    enum End {
        Write,
        Close,
        Abort,
    }
    for end in [End::Write, End::Close, End::Abort] {
        for delay_ms in [0u64, 1, 30] {
            let (mut w, r) = bodypipe::pipe();
            thread::scope(|s| {
                let t = s.spawn(|| {
                    let mut buf = [0u8; 8];
                    let deadline = Some(Instant::now() + Duration::from_secs(10));
                    r.read_deadline(&mut buf, deadline).map(|n| buf[..n].to_vec())
                });
                thread::sleep(Duration::from_millis(delay_ms));
                match end {
                    End::Write => {
                        w.write(b"data").unwrap();
                        assert_eq!(t.join().unwrap().unwrap(), b"data");
                    }
                    End::Close => {
                        w.close().unwrap();
                        assert_eq!(t.join().unwrap().unwrap(), b"", "{end:?}");
                    }
                    End::Abort => {
                        w.abort("bye");
                        let e = t.join().unwrap().unwrap_err();
                        assert_eq!(e.kind(), ErrorKind::ConnectionAborted);
                        assert_eq!(e.to_string(), "bye");
                    }
                }
            });
        }
    }
    assert_prompt(t0);
}

#[test]
fn blocking_read_woken_by_reader_close_from_other_thread() {
    let t0 = Instant::now();
    let (_w, r) = bodypipe::pipe();
    thread::scope(|s| {
        let t = s.spawn(|| {
            let mut buf = [0u8; 8];
            r.read_deadline(&mut buf, soon())
        });
        until("the reader parks", || r.stats().reader_waiting);
        r.close();
        assert_eq!(t.join().unwrap().unwrap(), 0);
    });
    assert_prompt(t0);
}

#[test]
fn queries_do_not_stall_behind_a_blocked_read() {
    let t0 = Instant::now();
    let (mut w, r) = bodypipe::pipe();
    w.write(b"ab").unwrap();
    r.skip(2);
    thread::scope(|s| {
        let t = s.spawn(|| {
            let mut buf = [0u8; 8];
            r.read_deadline(&mut buf, soon())
        });
        until("the reader parks", || r.stats().reader_waiting);
        // All of these would deadlock if the blocked reader held the cursor lock.
        let t0 = Instant::now();
        assert_eq!(r.buffered(), 0);
        assert!(!r.at_eof());
        assert_eq!(r.position(), 2);
        assert_eq!(r.find(b"x", 0, None), None);
        assert!(r.views().is_empty());
        assert_eq!(r.seek(SeekFrom::Start(1)).unwrap(), 1);
        assert!(t0.elapsed() < Duration::from_secs(2));
        w.write(b"c").unwrap();
        let n = t.join().unwrap().unwrap();
        assert!(n >= 1);
    });
    assert_prompt(t0);
}

#[test]
fn seek_back_wakes_blocked_reader() {
    // A thread blocked in a read while another thread seeks the shared cursor back: the bytes
    // are there again, so the blocked read must return them, not sleep until the next write.
    let (mut w, r) = bodypipe::pipe();
    w.write(b"abc").unwrap();
    r.skip(3);
    thread::scope(|s| {
        let t = s.spawn(|| {
            let mut buf = [0u8; 8];
            r.read_deadline(&mut buf, Some(Instant::now() + Duration::from_secs(5))).map(|n| buf[..n].to_vec())
        });
        until("the reader parks", || r.stats().reader_waiting);
        let t0 = Instant::now();
        r.seek(SeekFrom::Start(1)).unwrap();
        assert_eq!(t.join().unwrap().unwrap(), b"bc");
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(2), "the blocked read returned only {took:?} after the seek");
    });
    drop(w);
}

#[test]
fn wait_semantics() {
    let t0 = Instant::now();
    let (mut w, r) = bodypipe::pipe();
    let short = || Some(Instant::now() + Duration::from_millis(5));
    assert_eq!(r.wait(1, short()), Err(WaitError::TimedOut));
    assert_eq!(r.wait(0, short()), Err(WaitError::TimedOut), "min is clamped to 1");
    w.write(b"abc").unwrap();
    assert_eq!(r.wait(0, None), Ok(Ready::Data(3)));
    assert_eq!(r.wait(3, None), Ok(Ready::Data(3)));
    assert_eq!(r.wait(4, short()), Err(WaitError::TimedOut));
    assert_eq!(r.buffered(), 3, "wait consumes nothing");
    thread::scope(|s| {
        let t = s.spawn(|| r.wait(6, soon()));
        thread::sleep(Duration::from_millis(10));
        w.write(b"de").unwrap();
        thread::sleep(Duration::from_millis(10));
        w.write(b"f").unwrap();
        assert_eq!(t.join().unwrap(), Ok(Ready::Data(6)));
    });
    thread::scope(|s| {
        let t = s.spawn(|| r.wait(100, soon()));
        thread::sleep(Duration::from_millis(20));
        w.close().unwrap();
        assert_eq!(t.join().unwrap(), Ok(Ready::Ended(6)));
    });
    r.skip(6);
    assert_eq!(r.wait(1, None), Ok(Ready::Ended(0)));
    assert_prompt(t0);
}

// ---------------------------------------------------------------------------------------------
// Lines
// ---------------------------------------------------------------------------------------------

#[test]
fn read_line_across_segments() {
    let (mut w, r) = Builder::new().segment_size(3).build().unwrap();
    for part in [&b"ab"[..], b"c\nde", b"f", b"\n", b"\n", b"gh"] {
        w.write(part).unwrap();
    }
    let mut line = Vec::new();
    assert_eq!(r.read_line_deadline(&mut line, None, None).unwrap(), 4);
    assert_eq!(line, b"abc\n");
    line.clear();
    assert_eq!(r.try_read_line(&mut line, None).unwrap(), Some(4));
    assert_eq!(line, b"def\n");
    // read_line appends.
    assert_eq!(r.read_line_deadline(&mut line, None, None).unwrap(), 1);
    assert_eq!(line, b"def\n\n");
    line.clear();
    // The last line has no newline yet: not complete, nothing consumed.
    assert_eq!(r.try_read_line(&mut line, None).unwrap(), None);
    assert!(line.is_empty());
    assert_eq!(r.buffered(), 2);
    assert_eq!(
        r.read_line_deadline(&mut line, None, Some(Instant::now() + Duration::from_millis(5))).unwrap_err().kind(),
        ErrorKind::TimedOut
    );
    assert!(line.is_empty());
    w.close().unwrap();
    // At EOF the rest is a line.
    assert_eq!(r.read_line_deadline(&mut line, None, None).unwrap(), 2);
    assert_eq!(line, b"gh");
    assert_eq!(r.read_line_deadline(&mut line, None, None).unwrap(), 0);
    assert_eq!(r.try_read_line(&mut line, None).unwrap(), Some(0));
}

#[test]
fn try_read_until_with_in_place_gathered_and_failing() {
    let (mut w, r) = Builder::new().segment_size(8).build().unwrap();
    w.write(b"abc\ndefghijkl\nrest").unwrap();
    let fail = |_: &[u8]| Err::<(), _>("no room");
    // A line inside one segment is handed over in place; a failing callback consumes nothing,
    // and its own error comes back typed.
    assert_eq!(r.try_read_until_with(b'\n', None, fail), Err(ReadWithError::Callback("no room")));
    assert_eq!(r.position(), 0);
    let seg0 = r.views()[0].as_ptr();
    let (ptr, line) = r.try_read_until_with(b'\n', None, |l| Ok::<_, ()>((l.as_ptr(), l.to_vec()))).unwrap().unwrap();
    assert_eq!(ptr, seg0, "zero-copy");
    assert_eq!(line, b"abc\n");
    // A line spanning segments (bytes 4..14 cross 8) is gathered; failure still consumes nothing.
    assert_eq!(r.try_read_until_with(b'\n', None, fail), Err(ReadWithError::Callback("no room")));
    assert_eq!(r.position(), 4);
    assert_eq!(r.try_read_until_with(b'\n', None, |l| Ok::<_, ()>(l.to_vec())).unwrap().unwrap(), b"defghijkl\n");
    // Incomplete: None, and the callback is not called.
    let called = Cell::new(false);
    let got = r.try_read_until_with(b'\n', None, |_| {
        called.set(true);
        Ok::<_, ()>(())
    });
    assert!(got.unwrap().is_none());
    assert!(!called.get());
    // Limit and end of stream.
    assert_eq!(r.try_read_until_with(b'\n', Some(2), |l| Ok::<_, ()>(l.to_vec())).unwrap().unwrap(), b"re");
    w.close().unwrap();
    assert_eq!(r.try_read_until_with(b'\n', None, |l| Ok::<_, ()>(l.to_vec())).unwrap().unwrap(), b"st");
    assert_eq!(r.try_read_until_with(b'\n', None, |l| Ok::<_, ()>(l.len())).unwrap(), Some(0));
    assert!(r.at_eof());
}

#[test]
fn read_line_limits() {
    let (mut w, r) = Builder::new().segment_size(2).build().unwrap();
    w.write(b"abcdefg\nhi\n").unwrap();
    let mut line = Vec::new();
    assert_eq!(r.read_line_deadline(&mut line, Some(3), None).unwrap(), 3);
    assert_eq!(line, b"abc");
    line.clear();
    assert_eq!(r.read_line_deadline(&mut line, Some(0), None).unwrap(), 0);
    assert_eq!(r.position(), 3);
    assert_eq!(r.read_line_deadline(&mut line, Some(5), None).unwrap(), 5);
    assert_eq!(line, b"defg\n", "the newline is the 5th byte");
    line.clear();
    assert_eq!(r.read_line_deadline(&mut line, Some(100), None).unwrap(), 3);
    assert_eq!(line, b"hi\n");
    // A limit is reached only with enough bytes present; otherwise the read waits.
    w.write(b"xy").unwrap();
    line.clear();
    assert_eq!(r.try_read_line(&mut line, Some(3)).unwrap(), None);
    assert_eq!(r.try_read_line(&mut line, Some(2)).unwrap(), Some(2));
    assert_eq!(line, b"xy");
}

#[test]
fn read_until_custom_delimiter_and_memo() {
    let (mut w, r) = Builder::new().segment_size(5).build().unwrap();
    // A long record arriving one byte at a time; interleave scans for two delimiters so the
    // remembered scan position must be per delimiter.
    let mut out = Vec::new();
    for i in 0..500u32 {
        w.write(&[b'a' + (i % 20) as u8]).unwrap();
        assert_eq!(r.try_read_until(b';', &mut out, None).unwrap(), None);
        assert_eq!(r.try_read_line(&mut out, None).unwrap(), None);
    }
    // 'z' was never written (20 letters a..t), '\n' neither: a write of both finishes both.
    w.write(b"z;\n").unwrap();
    assert_eq!(r.try_read_until(b'z', &mut out, None).unwrap(), Some(501));
    assert_eq!(out.len(), 501);
    assert_eq!(out.last(), Some(&b'z'));
    out.clear();
    assert_eq!(r.read_until_deadline(b';', &mut out, None, None).unwrap(), 1);
    assert_eq!(out, b";");
    out.clear();
    assert_eq!(BufRead::read_until(&mut &r, b'\n', &mut out).unwrap(), 1);
    // Seeking back invalidates nothing: the same record is found again.
    r.seek(SeekFrom::Start(0)).unwrap();
    out.clear();
    assert_eq!(r.read_until_deadline(b';', &mut out, None, None).unwrap(), 502);
}

#[test]
fn read_line_blocks_for_the_rest_of_the_line() {
    let t0 = Instant::now();
    let (mut w, r) = Builder::new().segment_size(4).build().unwrap();
    thread::scope(|s| {
        let t = s.spawn(|| {
            let mut line = Vec::new();
            r.read_line_deadline(&mut line, None, soon()).map(|_| line)
        });
        for part in [&b"hel"[..], b"lo wo", b"rld", b"\nnext"] {
            thread::sleep(Duration::from_millis(5));
            w.write(part).unwrap();
        }
        assert_eq!(t.join().unwrap().unwrap(), b"hello world\n");
    });
    assert_eq!(r.buffered(), 4);
    assert_prompt(t0);
}

#[test]
fn ring_mode_line_longer_than_max_buffered_completes() {
    let t0 = Instant::now();
    // Reads consume as they go in ring mode: a line longer than the high-water mark must not
    // deadlock (the writer is Full until the reader consumes; the reader waits for the newline).
    for limit in [None, Some(1000)] {
        let (mut w, r) = Builder::new().max_buffered(8).segment_size(4).build().unwrap();
        let mut line = b"0123456789abcdefghijklmnopqrstuvwxyz".to_vec();
        line.push(b'\n');
        let body = [line.clone(), b"tail".to_vec()].concat();
        thread::scope(|s| {
            let writer = s.spawn(move || {
                for chunk in body.chunks(3) {
                    loop {
                        match w.write(chunk) {
                            Ok(()) => break,
                            Err(WriteError::Full) => w.wait_writable(Some(Duration::from_secs(10))).unwrap(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                w.close().unwrap();
            });
            let mut got = Vec::new();
            let n = r.read_line_deadline(&mut got, limit, soon()).unwrap();
            assert_eq!(n, line.len());
            assert_eq!(got, line);
            got.clear();
            assert_eq!(r.read_line_deadline(&mut got, limit, soon()).unwrap(), 4);
            assert_eq!(got, b"tail");
            writer.join().unwrap();
        });
    }
    assert_prompt(t0);
}

#[test]
fn bufread_lines_and_read_line_string() {
    let (mut w, r) = Builder::new().segment_size(3).build().unwrap();
    let t = thread::spawn(move || {
        for i in 0..200 {
            w.write(format!("line number {i}\n").as_bytes()).unwrap();
        }
        w.write(b"last").unwrap();
        w.close().unwrap();
    });
    let lines: Vec<String> = (&r).lines().collect::<Result<_, _>>().unwrap();
    t.join().unwrap();
    assert_eq!(lines.len(), 201);
    for (i, l) in lines.iter().take(200).enumerate() {
        assert_eq!(l, &format!("line number {i}"));
    }
    assert_eq!(lines[200], "last");

    let (mut w, r) = bodypipe::pipe();
    w.write(b"ok\n\xff\xfe\n").unwrap();
    let mut s = String::new();
    assert_eq!(BufRead::read_line(&mut &r, &mut s).unwrap(), 3);
    assert_eq!(s, "ok\n");
    assert_eq!(BufRead::read_line(&mut &r, &mut s).unwrap_err().kind(), ErrorKind::InvalidData);
    assert_eq!(s, "ok\n");
}

// ---------------------------------------------------------------------------------------------
// find
// ---------------------------------------------------------------------------------------------

#[test]
fn find_across_segment_boundaries() {
    let (mut w, r) = Builder::new().segment_size(4).build().unwrap();
    w.write(b"--bo").unwrap();
    w.write(b"unda").unwrap();
    w.write(b"ry\r\n--boundary--").unwrap();
    // 24 bytes: "--boundary" at 0 and 12; "boundary" at 2 and 14; "\r\n" at 10.
    assert_eq!(r.find(b"boundary", 0, None), Some(2));
    assert_eq!(r.find(b"--boundary", 0, None), Some(0));
    assert_eq!(r.find(b"\r\n", 0, None), Some(10));
    assert_eq!(r.find(b"a", 0, None), Some(7));
    assert_eq!(r.find(b"ary\r\n-", 0, None), Some(7));
    assert_eq!(r.find(b"nope", 0, None), None);
    // start: the match must begin at or after it.
    assert_eq!(r.find(b"boundary", 2, None), Some(2));
    assert_eq!(r.find(b"boundary", 3, None), Some(14));
    // end: the match must end at or before it.
    assert_eq!(r.find(b"boundary", 0, Some(9)), None);
    assert_eq!(r.find(b"boundary", 0, Some(10)), Some(2));
    assert_eq!(r.find(b"boundary", 3, Some(21)), None);
    assert_eq!(r.find(b"boundary", 3, Some(22)), Some(14));
    assert_eq!(r.find(b"boundary", 3, Some(1000)), Some(14));
    assert_eq!(r.find(b"-", 23, None), Some(23));
    assert_eq!(r.find(b"-", 24, None), None);
    assert_eq!(r.find(b"boundary", 10, Some(5)), None);
    // Empty needle: found at start when start is within the unread bytes.
    assert_eq!(r.find(b"", 0, None), Some(0));
    assert_eq!(r.find(b"", 24, None), Some(24));
    assert_eq!(r.find(b"", 25, None), None);
    // Needle longer than what is there.
    assert_eq!(r.find(&[b'-'; 25], 0, None), None);
    // find consumes nothing and is relative to the read position.
    assert_eq!(r.buffered(), 24);
    r.skip(3);
    assert_eq!(r.find(b"boundary", 0, None), Some(11));
    assert_eq!(r.find(b"oundary", 0, None), Some(0));
}

#[test]
fn find_never_blocks_and_sees_new_writes() {
    let (mut w, r) = Builder::new().segment_size(1).build().unwrap();
    assert_eq!(r.find(b"ab", 0, None), None);
    w.write(b"xxa").unwrap();
    assert_eq!(r.find(b"ab", 0, None), None);
    w.write(b"b").unwrap();
    assert_eq!(r.find(b"ab", 0, None), Some(2));
    assert_eq!(r.find(b"xab", 0, None), Some(1));
    assert_eq!(r.find(b"xxab", 0, None), Some(0));
}

// ---------------------------------------------------------------------------------------------
// seek
// ---------------------------------------------------------------------------------------------

#[test]
fn seek_rules_unbounded() {
    let (mut w, r) = Builder::new().segment_size(3).build().unwrap();
    w.write(b"0123456789").unwrap();
    assert_eq!(r.seek(SeekFrom::Start(4)).unwrap(), 4);
    assert_eq!(r.position(), 4);
    assert_eq!(r.seek(SeekFrom::Current(2)).unwrap(), 6);
    assert_eq!(r.seek(SeekFrom::Current(-5)).unwrap(), 1);
    assert_eq!(r.seek(SeekFrom::Start(10)).unwrap(), 10, "to the end of the written bytes is fine");
    assert_eq!(r.seek(SeekFrom::Start(11)).unwrap_err(), SeekError::PastWritten);
    assert_eq!(r.seek(SeekFrom::Current(1)).unwrap_err(), SeekError::PastWritten);
    assert_eq!(r.seek(SeekFrom::Current(-11)).unwrap_err(), SeekError::BeforeStart);
    assert_eq!(r.seek(SeekFrom::Current(i64::MIN)).unwrap_err(), SeekError::BeforeStart);
    assert_eq!(r.seek(SeekFrom::Start(u64::MAX)).unwrap_err(), SeekError::PastWritten);
    assert_eq!(r.seek(SeekFrom::End(0)).unwrap_err(), SeekError::EndUnknown);
    assert_eq!(r.seek(SeekFrom::End(-3)).unwrap_err(), SeekError::EndUnknown);
    assert_eq!(r.position(), 10, "failed seeks do not move the cursor");
    assert_eq!(r.seek(SeekFrom::Start(7)).unwrap(), 7);
    let mut buf = [0u8; 3];
    assert_eq!(r.try_read(&mut buf).unwrap(), 3);
    assert_eq!(&buf, b"789");
    w.close().unwrap();
    assert_eq!(r.seek(SeekFrom::End(0)).unwrap(), 10);
    assert_eq!(r.seek(SeekFrom::End(-10)).unwrap(), 0);
    assert_eq!(r.seek(SeekFrom::End(-11)).unwrap_err(), SeekError::BeforeStart);
    assert_eq!(r.seek(SeekFrom::End(1)).unwrap_err(), SeekError::PastWritten);
    assert_eq!(r.seek(SeekFrom::End(-4)).unwrap(), 6);
    let mut rest = Vec::new();
    (&r).read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"6789");
    // The Seek trait for &Reader.
    assert_eq!(Seek::seek(&mut &r, SeekFrom::Start(2)).unwrap(), 2);
    assert_eq!((&r).stream_position().unwrap(), 2);
    assert_eq!(Seek::seek(&mut &r, SeekFrom::Current(-1)).unwrap(), 1);
    (&r).rewind().unwrap();
    assert_eq!(r.position(), 0);
    assert_eq!(r.buffered(), 10);
    assert!(Seek::seek(&mut &r, SeekFrom::Start(11)).is_err());
}

#[test]
fn seek_end_after_abort_and_content_length() {
    let (mut w, r) = bodypipe::pipe();
    w.write(b"abc").unwrap();
    w.abort("x");
    assert_eq!(r.seek(SeekFrom::End(-1)).unwrap(), 2);
    let (mut w, r) = Builder::new().content_length(3).build().unwrap();
    w.write(b"abc").unwrap();
    assert_eq!(r.seek(SeekFrom::End(-2)).unwrap(), 1);
}

#[test]
fn unbounded_seek_zero_after_reading_everything() {
    for seg in [None, Some(1), Some(7), Some(4096)] {
        let b = Builder::new();
        let (mut w, r) = match seg {
            Some(n) => b.segment_size(n),
            None => b,
        }
        .build()
        .unwrap();
        let data = pattern(50_000, 4);
        for c in data.chunks(777) {
            w.write(c).unwrap();
        }
        w.close().unwrap();
        let mut out = Vec::new();
        (&r).read_to_end(&mut out).unwrap();
        assert!(out == data);
        assert_eq!(r.seek(SeekFrom::Start(0)).unwrap(), 0);
        out.clear();
        (&r).read_to_end(&mut out).unwrap();
        assert!(out == data, "seg {seg:?}");
        r.seek(SeekFrom::Start(12_345)).unwrap();
        let mut buf = [0u8; 100];
        (&r).read_exact(&mut buf).unwrap();
        assert_eq!(&buf[..], &data[12_345..12_445]);
    }
}

#[test]
fn seek_rules_ring_mode() {
    let (mut w, r) = Builder::new().max_buffered(16).segment_size(4).build().unwrap();
    w.write(b"0123456789ab").unwrap();
    let mut buf = [0u8; 10];
    assert_eq!(r.try_read(&mut buf).unwrap(), 10);
    // Segments [0,4) and [4,8) are behind the cursor and were recycled: the window starts at 8.
    assert_eq!(r.seek(SeekFrom::Start(7)).unwrap_err(), SeekError::BeforeWindow);
    assert_eq!(r.seek(SeekFrom::Start(0)).unwrap_err(), SeekError::BeforeWindow);
    assert_eq!(r.seek(SeekFrom::Current(-3)).unwrap_err(), SeekError::BeforeWindow);
    assert_eq!(r.position(), 10);
    assert_eq!(r.seek(SeekFrom::Current(-2)).unwrap(), 8);
    assert_eq!(r.try_read(&mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"89ab");
    assert_eq!(r.seek(SeekFrom::Start(13)).unwrap_err(), SeekError::PastWritten);
    // Writes after the window moved reuse the recycled segments; data stays right.
    w.write(b"cdefghij").unwrap();
    assert_eq!(r.seek(SeekFrom::Current(3)).unwrap(), 15);
    assert_eq!(r.try_read(&mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"fghij");
    w.close().unwrap();
    assert_eq!(r.seek(SeekFrom::End(-2)).unwrap(), 18);
    assert_eq!(r.seek(SeekFrom::End(-20)).unwrap_err(), SeekError::BeforeWindow);
}

// ---------------------------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------------------------

#[test]
fn views_zero_copy_and_coalesced() {
    let (mut w, r) = Builder::new().segment_size(4).build().unwrap();
    assert!(r.views().is_empty());
    let empty = r.view().unwrap();
    assert!(empty.is_empty());
    assert!(!empty.is_zero_copy());
    w.write(b"0123456789").unwrap();
    let views = r.views();
    assert_eq!(views.len(), 3);
    assert!(views.iter().all(View::is_zero_copy));
    assert_eq!(views.iter().map(|v| v.len()).collect::<Vec<_>>(), [4, 4, 2]);
    assert_eq!(concat(&views), b"0123456789");
    let v = r.view().unwrap();
    assert!(!v.is_zero_copy(), "spans segments: one coalesced copy");
    assert_eq!(&*v, b"0123456789");
    assert_eq!(v.as_ref(), b"0123456789");
    assert_eq!(r.buffered(), 10, "views consume nothing");
    r.skip(5);
    let views = r.views();
    assert_eq!(concat(&views), b"56789");
    assert_eq!(views.len(), 2);
    r.skip(1);
    r.skip(2);
    let v = r.view().unwrap();
    assert!(v.is_zero_copy(), "within one segment: zero-copy");
    assert_eq!(&*v, b"89");
    let c = v.clone();
    assert_eq!(c.as_ptr(), v.as_ptr());
    assert!(format!("{v:?}").contains("View"));

    // A known length is no longer one segment (storage follows the bytes): a view of several
    // segments is one coalesced copy; a body written in one piece into segments of its size is
    // one segment, and zero-copy.
    let (mut w, r) = Builder::new().content_length(100_000).build().unwrap();
    let data = pattern(100_000, 5);
    for c in data.chunks(1000) {
        w.write(c).unwrap();
    }
    let v = r.view().unwrap();
    assert!(!v.is_zero_copy());
    assert!(*v == data[..]);
    assert!(r.views().len() > 1 && r.views().iter().all(View::is_zero_copy));
    let (mut w, r) = Builder::new().content_length(100_000).segment_size(100_000).build().unwrap();
    w.write(&data).unwrap();
    let v = r.view().unwrap();
    assert!(v.is_zero_copy() && *v == data[..]);
}

#[test]
fn view_outlives_reader_and_writer_and_survives_writes() {
    for ring in [false, true] {
        let b = Builder::new().segment_size(64);
        let (mut w, r) = if ring { b.max_buffered(256) } else { b }.build().unwrap();
        let first = pattern(100, 6);
        w.write(&first).unwrap();
        let views = r.views();
        let whole = r.view().unwrap();
        let ptrs: Vec<*const u8> = views.iter().map(|v| v.as_ptr()).collect();
        // Stream a lot more through: in ring mode the reader's segments are retired and the
        // writer recycles free ones, but never the two pinned by the views.
        let more = pattern(1 << 20, 7);
        let mut buf = [0u8; 100];
        r.skip(100);
        for c in more.chunks(100) {
            w.write(c).unwrap();
            assert_eq!(r.try_read(&mut buf).unwrap(), c.len());
            assert_eq!(&buf[..c.len()], c);
        }
        assert_eq!(concat(&views), first);
        assert_eq!(views.iter().map(|v| v.as_ptr()).collect::<Vec<_>>(), ptrs);
        drop(r);
        drop(w);
        assert_eq!(concat(&views), first, "ring={ring}");
        assert_eq!(&*whole, &first[..]);
        // Views move across threads.
        let t = thread::spawn(move || concat(&views));
        assert_eq!(t.join().unwrap(), first);
    }
}

/// Bytes of large allocations made by this thread and not yet freed.
fn big_live() -> i64 {
    BIG_LIVE.with(Cell::get)
}

#[test]
fn a_small_view_pins_only_its_own_segment() {
    // A 256 MiB body written and read; everything released but a 10-byte view: what stays
    // allocated is that view's segment (the first one holds the first 64 KiB write; the last
    // one is at most 8 MiB), not the body. Single-threaded, so every segment is allocated and
    // freed by this thread.
    for (label, at_end, most) in [("first", false, 80 << 10), ("last", true, 9 << 20)] {
        let live = big_live();
        let (mut w, r) = bodypipe::pipe();
        let chunk = pattern(64 << 10, 21);
        for _ in 0..(256 << 20) / chunk.len() {
            w.write(&chunk).unwrap();
        }
        w.close().unwrap();
        if at_end {
            r.seek(SeekFrom::End(-10)).unwrap();
        }
        let view = r.views().remove(0);
        r.seek(SeekFrom::Start(0)).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        while (&r).read(&mut buf).unwrap() > 0 {}
        let body = big_live() - live;
        assert!(body >= 256 << 20, "{label}: {body} bytes live with the body");
        // (The first view is the whole 4 KiB first segment; a Python memoryview slice of it
        // would pin the same.)
        let expect = if at_end { chunk[chunk.len() - 10..].to_vec() } else { chunk[..view.len()].to_vec() };
        drop((r, buf, chunk));
        let kept = big_live() - live - expect.capacity() as i64;
        eprintln!("{label} 10 bytes of a 256 MiB body: {kept} bytes live once all but the view is released");
        assert!(kept <= most, "{label}: {kept} bytes kept alive by a view of 10 bytes");
        assert_eq!(&view[..], &expect[..]);
        drop((view, expect));
        assert_eq!(big_live(), live, "{label}: everything freed with the view");
    }

    // The same in ring mode, and with the writer still alive after the reader is gone.
    let live = big_live();
    let (mut w, r) = Builder::new().max_buffered(1 << 20).build().unwrap();
    let data = pattern(4096, 22);
    let mut buf = vec![0u8; 4096];
    stream_single_threaded(&mut w, &r, 8 << 20, &data, &mut buf);
    w.write(&data).unwrap();
    drop((data, buf));
    let view = r.views().remove(0);
    drop(r);
    let kept = big_live() - live;
    assert!(kept <= (1 << 20) + (256 << 10) * 2, "ring: {kept} bytes with the reader gone");
    drop(w);
    assert!(big_live() - live <= 256 << 10, "ring: one segment for the view");
    drop(view);
    assert_eq!(big_live(), live);
}

#[test]
fn try_read_full_and_views_are_one_step() {
    let (mut w, r) = Builder::new().segment_size(5).build().unwrap();
    w.write(b"0123456789abc").unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(r.try_read_full(&mut buf).unwrap(), 8);
    assert_eq!(&buf, b"01234567");
    // Fewer than asked while open: nothing consumed.
    assert_eq!(r.try_read_full(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
    assert_eq!(r.position(), 8);
    let views = r.try_read_views(2, 3).unwrap();
    assert_eq!((views.len(), concat(&views)), (2, b"89a".to_vec()), "two segments, one range");
    assert_eq!(r.try_read_views(3, 10).unwrap_err().kind(), ErrorKind::WouldBlock);
    assert!(r.try_read_views(1, 0).unwrap().is_empty(), "max 0 takes nothing");
    assert_eq!(r.position(), 11);
    // At the end, what is left; then EOF; after an abort, the abort.
    w.close().unwrap();
    assert_eq!(r.try_read_full(&mut buf).unwrap(), 2);
    assert_eq!(r.try_read_full(&mut buf).unwrap(), 0);
    assert!(r.try_read_views(1, 8).unwrap().is_empty());
    let (mut w, r) = bodypipe::pipe();
    w.write(b"xy").unwrap();
    w.abort("gone");
    assert_eq!(concat(&r.try_read_views(5, 5).unwrap()), b"xy");
    assert_eq!(r.try_read_views(1, 5).unwrap_err().kind(), ErrorKind::ConnectionAborted);
    assert_eq!(r.try_read_full(&mut buf).unwrap_err().kind(), ErrorKind::ConnectionAborted);
}

#[test]
fn every_read_is_one_contiguous_slice_across_threads() {
    // Four threads share one cursor over a body of 8-byte words that hold their own offsets;
    // each result must be the body at its own offset (never spliced from two places), large
    // (views, copied after the cursor is released) and small (copied under it), and together
    // they must be the body exactly once. Streamed by a writer thread, unbounded and ring mode.
    const SIZE: usize = 30 << 20; // a multiple of both steps
    let body: Vec<u8> = (0..SIZE as u64 / 8).flat_map(|i| (i * 8).to_le_bytes()).collect();
    for ring in [false, true] {
        for step in [3 << 20, 4096] {
            let b = Builder::new().max_size(1 << 30);
            let (mut w, r) = if ring { b.max_buffered(4 << 20) } else { b }.build().unwrap();
            let got: Mutex<Vec<(u64, usize)>> = Mutex::new(Vec::new());
            thread::scope(|s| {
                let body = &body;
                s.spawn(move || {
                    for c in body.chunks(200_000) {
                        loop {
                            match w.write(c) {
                                Ok(()) => break,
                                Err(WriteError::Full) => w.wait_writable(None).unwrap(),
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                    w.close().unwrap();
                });
                for t in 0..4 {
                    let (r, got) = (&r, &got);
                    s.spawn(move || {
                        let mut buf = vec![0u8; step];
                        loop {
                            // Half the threads read views, half copy: both are one step.
                            let chunk: Vec<u8> = if t % 2 == 0 {
                                match r.try_read_views(step, step) {
                                    Ok(v) if v.is_empty() => break,
                                    Ok(v) => concat(&v),
                                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                        r.wait(step, None).unwrap();
                                        continue;
                                    }
                                    Err(e) => panic!("{e}"),
                                }
                            } else {
                                match r.try_read_full(&mut buf) {
                                    Ok(0) => break,
                                    Ok(n) => buf[..n].to_vec(),
                                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                        r.wait(step, None).unwrap();
                                        continue;
                                    }
                                    Err(e) => panic!("{e}"),
                                }
                            };
                            assert_eq!(chunk.len(), step, "a one-step read is whole");
                            let at = u64::from_le_bytes(chunk[..8].try_into().unwrap());
                            assert!(chunk == body[at as usize..at as usize + step], "spliced at {at}");
                            got.lock().unwrap().push((at, chunk.len()));
                        }
                    });
                }
            });
            let mut got = got.into_inner().unwrap();
            got.sort();
            let mut pos = 0;
            for (at, n) in got {
                assert_eq!(at, pos, "ring={ring} step={step}");
                pos += n as u64;
            }
            assert_eq!(pos, SIZE as u64);
        }
    }
}

#[test]
fn ring_mode_reuses_segments_pinned_by_large_reads_once_released() {
    // A large read reserves its range and copies after releasing the cursor, so the segments it
    // copies from are retired (and offered to the writer) while still pinned. The writer keeps
    // them and reuses them once released, instead of allocating anew for every such read.
    let (mut w, r) = Builder::new().max_buffered(1 << 20).build().unwrap();
    let data = pattern(64 << 10, 23);
    let mut round = |n: usize| {
        for _ in 0..n {
            while w.write(&data).is_ok() {}
            let held = r.try_read_views(1, usize::MAX).unwrap(); // the cursor is past them
            for _ in 0..4 {
                w.write(&data).unwrap_or(()); // the writer refills meanwhile
            }
            assert!(held.iter().all(|v| v.chunks(data.len()).all(|c| data.starts_with(c) || c.len() < data.len())));
            drop(held);
        }
    };
    round(8);
    let warm = big_bytes();
    round(64);
    let steady = big_bytes() - warm;
    eprintln!("ring mode, 64 pinned large reads: {steady} bytes allocated after warm-up");
    assert!(steady < 2 << 20, "{steady} bytes allocated for 64 rounds of pinned reads");
}

/// How many pages of `[start, start + len)` (rounded out to whole pages) are resident: the
/// segment's own pages, by `mincore`, which other tests allocating in this process meanwhile do
/// not disturb as they do the process's RSS.
fn resident_pages(start: *const u8, len: usize) -> usize {
    // SAFETY: sysconf only reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let lo = start as usize & !(page - 1);
    let hi = (start as usize + len).div_ceil(page) * page;
    let mut resident = vec![0u8; (hi - lo) / page];
    // SAFETY: `[lo, hi)` lies within one live allocation (the caller's segment, rounded out to
    // its pages), and `resident` has one byte per page of it.
    let rc = unsafe { libc::mincore(lo as *mut libc::c_void, hi - lo, resident.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    resident.iter().filter(|b| **b & 1 == 1).count()
}

#[test]
fn prefault_runs_no_further_ahead_than_the_bytes_written() {
    // Segments of 64 MiB (the tuning knob, so one segment is large from the first byte): a
    // 1-byte body is a page or two of the segment resident, not a 2 MiB prefault window (512
    // pages). Counted on the segment's own pages: the process's RSS moved by up to 2 MiB with
    // the other tests' allocations, and failed this test now and then.
    let (mut w, r) = Builder::new().segment_size(64 << 20).build().unwrap();
    w.write(b"x").unwrap();
    let view = r.view().unwrap();
    assert!(view.is_zero_copy());
    let resident = resident_pages(view.as_ptr(), 64 << 20);
    assert!(resident <= 2, "1 byte into a 64 MiB segment: {resident} of its pages are resident");
    assert_eq!(r.buffered(), 1);
}

// ---------------------------------------------------------------------------------------------
// Ring mode memory
// ---------------------------------------------------------------------------------------------

/// Streams `total` bytes in `data`-sized writes on this thread: the reader takes one chunk every
/// other write until the writer is Full, then drains to below half the mark. Every chunk read is
/// checked (all writes are whole chunks and reads are chunk-sized, so they stay aligned).
fn stream_single_threaded(w: &mut Writer, r: &Reader, total: usize, data: &[u8], buf: &mut [u8]) {
    let mut sent = 0;
    let mut i = 0u64;
    while sent < total {
        i += 1;
        match w.write(data) {
            Ok(()) => sent += data.len(),
            Err(WriteError::Full) => {
                let low = r.max_buffered().unwrap() / 2;
                while r.buffered() >= low.max(1) {
                    assert_eq!(r.try_read(buf).unwrap(), data.len());
                    assert!(buf == data, "bytes changed");
                }
            }
            Err(e) => panic!("{e}"),
        }
        if i % 2 == 0 && r.buffered() > 0 {
            assert_eq!(r.try_read(buf).unwrap(), data.len());
            assert!(buf == data, "bytes changed");
        }
    }
}

#[test]
fn ring_mode_reuses_segments() {
    // Single-threaded so that every large allocation is made by this thread and counted.
    // Segments are max_buffered / 4 = 64 KiB.
    let (mut w, r) = Builder::new().max_buffered(256 << 10).build().unwrap();
    let data = pattern(4096, 8);
    let mut buf = vec![0u8; 4096];
    stream_single_threaded(&mut w, &r, 4 << 20, &data, &mut buf);
    let warm = big_bytes();
    stream_single_threaded(&mut w, &r, 64 << 20, &data, &mut buf);
    let steady = big_bytes() - warm;
    eprintln!("ring mode: {steady} bytes allocated in the pipe while streaming 64 MiB after warm-up");
    assert!(steady < 64 << 10, "ring mode allocated {steady} bytes while streaming 64 MiB");
    assert_eq!(w.written(), (68 << 20) as u64);
    w.close().unwrap();
    let rest = read_all_now(&r);
    assert!(rest.chunks(4096).all(|c| c == &data[..]));
    assert!(r.at_eof());

    // The counter works: unbounded mode keeps and therefore allocates everything. (max_buffered
    // is None there, so the helper must not hit Full.)
    let (mut w, r) = Builder::new().max_buffered(usize::MAX).build().unwrap();
    let before = big_bytes();
    stream_single_threaded(&mut w, &r, 1 << 20, &data, &mut buf);
    assert!(big_bytes() - before < 2 << 20);
    let (mut w, r) = bodypipe::pipe();
    let before = big_bytes();
    for _ in 0..(16 << 20) / 4096 {
        w.write(&data).unwrap();
        assert_eq!(r.try_read(&mut buf).unwrap(), 4096);
    }
    assert!(big_bytes() - before >= 16 << 20);
}

#[test]
fn ring_mode_reuses_segments_with_a_skip_only_consumer() {
    // A consumer that discards the body with skip() (never copying) must let segments recycle
    // too, or ring-mode memory grows with the body.
    let (mut w, r) = Builder::new().max_buffered(64 << 10).build().unwrap();
    let data = pattern(4096, 12);
    let mut stream = |total: usize| {
        for _ in 0..total / 4096 {
            w.write(&data).unwrap();
            assert_eq!(r.skip(4096), 4096);
        }
    };
    stream(1 << 20);
    let warm = big_bytes();
    stream(32 << 20);
    let steady = big_bytes() - warm;
    assert!(steady < 64 << 10, "ring mode allocated {steady} bytes while skipping 32 MiB");
}

#[test]
fn ring_mode_memory_stays_bounded_with_large_chunks() {
    // Memory stays within max_buffered + the largest chunk + a segment, whatever the chunk sizes.
    let (mut w, r) = Builder::new().max_buffered(64 << 10).build().unwrap();
    let chunk = pattern(200 << 10, 9);
    let mut buf = vec![0u8; 50 << 10];
    let start = big_bytes();
    for _ in 0..200 {
        w.write(&chunk).unwrap();
        while r.buffered() > 0 {
            let n = r.try_read(&mut buf).unwrap();
            assert!(n > 0);
        }
    }
    let allocated = big_bytes() - start;
    // The reader's 50 KiB buffer is ours; the pipe's segments (16 KiB each) are reused.
    assert!(allocated < (64 << 10) + (200 << 10) + (64 << 10), "allocated {allocated}");
}

// ---------------------------------------------------------------------------------------------
// Writer flow control: on_writable and wait_writable
// ---------------------------------------------------------------------------------------------

type Fired = (Writability, thread::ThreadId);

fn hook_channel() -> (mpsc::Sender<Fired>, mpsc::Receiver<Fired>) {
    mpsc::channel()
}

#[test]
fn on_writable_fires_at_once_when_there_is_room() {
    let me = thread::current().id();
    // Unbounded: always.
    let (w, _r) = bodypipe::pipe();
    let (tx, rx) = hook_channel();
    w.on_writable(move |why| {
        let _ = tx.send((why, thread::current().id()));
    });
    assert_eq!(rx.try_recv().unwrap(), (Writability::Writable, me));
    // Ring mode below half the mark.
    let (mut w, _r) = Builder::new().max_buffered(8).build().unwrap();
    w.write(b"abc").unwrap();
    let (tx, rx) = hook_channel();
    w.on_writable(move |why| {
        let _ = tx.send((why, thread::current().id()));
    });
    assert_eq!(rx.try_recv().unwrap(), (Writability::Writable, me));
    // At half or more (but below the mark, so a write would be admitted): not at once.
    w.write(b"d").unwrap();
    let (tx, rx) = hook_channel();
    w.on_writable(move |why| {
        let _ = tx.send((why, thread::current().id()));
    });
    assert!(rx.try_recv().is_err());
}

#[test]
fn on_writable_fires_later_on_the_reader_thread() {
    let (mut w, r) = Builder::new().max_buffered(8).build().unwrap();
    w.write(&[1; 8]).unwrap();
    assert_eq!(w.write(b"x"), Err(WriteError::Full));
    let (tx, rx) = hook_channel();
    let fired = Arc::new(AtomicUsize::new(0));
    let f = fired.clone();
    w.on_writable(move |why| {
        f.fetch_add(1, Ordering::SeqCst);
        {
            let _ = tx.send((why, thread::current().id()));
        };
    });
    assert!(rx.try_recv().is_err());
    let reader_thread = thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(r.skip(3), 3); // 5 unread: not below half of 8
            assert_eq!(fired.load(Ordering::SeqCst), 0);
            let mut buf = [0u8; 2];
            assert_eq!(r.try_read(&mut buf).unwrap(), 2); // 3 unread: below half
            assert_eq!(fired.load(Ordering::SeqCst), 1, "fires during the read that frees room");
            thread::current().id()
        })
        .join()
        .unwrap()
    });
    assert_eq!(rx.try_recv().unwrap(), (Writability::Writable, reader_thread));
    assert_ne!(reader_thread, thread::current().id());
    // One-shot.
    r.skip(3);
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    assert!(rx.try_recv().is_err());
    w.write(b"x").unwrap();
}

#[test]
fn on_writable_reader_closed() {
    // Armed, then the reader closes (from another thread).
    let (mut w, r) = Builder::new().max_buffered(4).build().unwrap();
    w.write(b"abcd").unwrap();
    let (tx, rx) = hook_channel();
    w.on_writable(move |why| {
        let _ = tx.send((why, thread::current().id()));
    });
    let t = thread::spawn(move || {
        r.close();
        thread::current().id()
    })
    .join()
    .unwrap();
    assert_eq!(rx.try_recv().unwrap(), (Writability::ReaderClosed, t));
    // Armed after the reader is gone: fires at once with ReaderClosed.
    let (tx, rx) = hook_channel();
    w.on_writable(move |why| {
        let _ = tx.send((why, thread::current().id()));
    });
    assert_eq!(rx.try_recv().unwrap().0, Writability::ReaderClosed);
    // Reader dropped (not closed explicitly) while armed.
    let (mut w, r) = Builder::new().max_buffered(4).build().unwrap();
    w.write(b"abcd").unwrap();
    let (tx, rx) = hook_channel();
    w.on_writable(move |why| {
        let _ = tx.send((why, thread::current().id()));
    });
    drop(r);
    assert_eq!(rx.try_recv().unwrap().0, Writability::ReaderClosed);
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn on_writable_several_cancelled_and_dropped_unfired() {
    let (mut w, r) = Builder::new().max_buffered(4).build().unwrap();
    w.write(b"abcd").unwrap();
    let dropped1 = Arc::new(AtomicBool::new(false));
    let fired1 = Arc::new(AtomicBool::new(false));
    let (d, f) = (DropFlag(dropped1.clone()), fired1.clone());
    let first = w.on_writable(move |_| {
        let _d = d;
        f.store(true, Ordering::SeqCst);
    });
    let (tx, rx) = hook_channel();
    w.on_writable(move |why| {
        let _ = tx.send((why, thread::current().id()));
    });
    assert!(!dropped1.load(Ordering::SeqCst), "a second callback does not replace the first");
    let (tx3, rx3) = hook_channel();
    w.on_writable(move |why| {
        let _ = tx3.send((why, thread::current().id()));
    });
    assert!(w.cancel_writable(first));
    assert!(dropped1.load(Ordering::SeqCst), "a cancelled callback is dropped");
    assert!(!fired1.load(Ordering::SeqCst), "unfired");
    assert!(!w.cancel_writable(first), "cancelled once");
    r.skip(4);
    assert_eq!(rx.try_recv().unwrap().0, Writability::Writable);
    assert_eq!(rx3.try_recv().unwrap().0, Writability::Writable, "every armed callback fires");
    assert!(!fired1.load(Ordering::SeqCst));

    // Closing the writer drops a pending callback unfired.
    w.write(b"abcd").unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    let fired = Arc::new(AtomicBool::new(false));
    let (d, f) = (DropFlag(dropped.clone()), fired.clone());
    w.on_writable(move |_| {
        let _d = d;
        f.store(true, Ordering::SeqCst);
    });
    w.close().unwrap();
    assert!(dropped.load(Ordering::SeqCst));
    r.skip(4);
    drop(r);
    assert!(!fired.load(Ordering::SeqCst));
}

#[test]
fn on_writable_callback_may_rearm() {
    let (mut w, r) = Builder::new().max_buffered(4).build().unwrap();
    w.write(b"abcd").unwrap();
    let w = Arc::new(Mutex::new(w));
    let count = Arc::new(AtomicUsize::new(0));
    fn arm(w: &Arc<Mutex<Writer>>, count: &Arc<AtomicUsize>) {
        let (w2, c2) = (w.clone(), count.clone());
        w.lock().unwrap().on_writable(move |why| {
            if why == Writability::Writable && c2.fetch_add(1, Ordering::SeqCst) < 3 {
                // Runs on the reader's thread, outside any pipe lock: writing and re-arming work.
                let mut guard = w2.lock().unwrap();
                guard.write(b"wxyz").unwrap();
                drop(guard);
                arm(&w2, &c2);
            }
        });
    }
    arm(&w, &count);
    assert_eq!(count.load(Ordering::SeqCst), 0);
    let mut out = Vec::new();
    let mut buf = [0u8; 4];
    while let Ok(n) = r.try_read(&mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(out, b"abcdwxyzwxyzwxyz");
    assert_eq!(count.load(Ordering::SeqCst), 4);
}

fn readable_channel(r: &Reader) -> mpsc::Receiver<thread::ThreadId> {
    let (tx, rx) = mpsc::channel();
    r.on_readable(move || {
        let _ = tx.send(thread::current().id());
    });
    rx
}

#[test]
fn on_readable_fires_at_once_when_a_read_would_not_block() {
    let me = thread::current().id();
    let (mut w, r) = bodypipe::pipe();
    w.write(b"x").unwrap();
    assert_eq!(readable_channel(&r).try_recv(), Ok(me), "data unread");
    r.skip(1);
    assert!(readable_channel(&r).try_recv().is_err(), "nothing unread, stream open");
    w.close().unwrap();
    assert_eq!(readable_channel(&r).try_recv(), Ok(me), "ended");

    let (_w, r) = bodypipe::pipe();
    r.close();
    assert_eq!(readable_channel(&r).try_recv(), Ok(me), "reader closed");

    let (w, r) = bodypipe::pipe();
    w.abort("x");
    assert_eq!(readable_channel(&r).try_recv(), Ok(me), "aborted");
}

#[test]
fn on_readable_fires_later_on_the_writer_thread() {
    #[derive(Clone, Copy, Debug)]
    enum How {
        Write,
        Close,
        Abort,
        Drop,
        ContentLength,
    }
    for how in [How::Write, How::Close, How::Abort, How::Drop, How::ContentLength] {
        let (mut w, r) = Builder::new().content_length(10).build().unwrap();
        w.write(b"abc").unwrap();
        r.skip(3);
        let rx = readable_channel(&r);
        assert!(rx.try_recv().is_err());
        let writer_thread = thread::spawn(move || {
            match how {
                How::Write => w.write(b"d").unwrap(),
                // Short of the length: an abort, which fires the callback all the same.
                How::Close => assert!(w.close().is_err()),
                How::Abort => w.abort("gone"),
                How::Drop => drop(w),
                How::ContentLength => {
                    w.write(b"1234567").unwrap();
                    // The callback already fired (one-shot); the end adds nothing.
                }
            }
            thread::current().id()
        })
        .join()
        .unwrap();
        assert_eq!(rx.try_recv(), Ok(writer_thread), "{how:?}");
        assert!(rx.try_recv().is_err(), "{how:?}: fires once");
        // After it fired a read does not block.
        let mut buf = [0u8; 8];
        let res = r.try_read(&mut buf);
        assert!(!matches!(&res, Err(e) if e.kind() == ErrorKind::WouldBlock), "{how:?}: {res:?}");
    }
}

#[test]
fn on_readable_reader_close_several_cancel_and_seek_back() {
    // Fired by a close of the reader from another thread.
    let (_w, r) = bodypipe::pipe();
    let rx = readable_channel(&r);
    let closer = thread::scope(|s| {
        s.spawn(|| {
            r.close();
            thread::current().id()
        })
        .join()
        .unwrap()
    });
    assert_eq!(rx.try_recv(), Ok(closer));

    // A new callback is added beside a pending one (several event loops, several wrappers);
    // a cancelled one is dropped unfired; each fires once.
    let (mut w, r) = bodypipe::pipe();
    let dropped = Arc::new(AtomicBool::new(false));
    let fired = Arc::new(AtomicBool::new(false));
    let (d, f) = (DropFlag(dropped.clone()), fired.clone());
    let sub = r.on_readable(move || {
        let _d = d;
        f.store(true, Ordering::SeqCst);
    });
    let rx = readable_channel(&r);
    let rx2 = readable_channel(&r);
    assert!(!dropped.load(Ordering::SeqCst));
    assert_eq!(r.armed_readable(), 3);
    assert!(r.cancel_readable(sub));
    assert!(dropped.load(Ordering::SeqCst));
    w.write(b"ab").unwrap();
    assert!(rx.try_recv().is_ok() && rx2.try_recv().is_ok(), "both fire");
    assert!(!fired.load(Ordering::SeqCst));
    assert_eq!(r.armed_readable(), 0);
    w.write(b"c").unwrap();
    assert!(rx.try_recv().is_err(), "once per arm");

    // Seeking back makes bytes unread again: an armed callback fires.
    r.skip(usize::MAX);
    let rx = readable_channel(&r);
    assert!(rx.try_recv().is_err());
    r.seek(SeekFrom::Start(0)).unwrap();
    assert!(rx.try_recv().is_ok(), "seek back made data readable");

    // A callback may re-arm itself from inside (it runs outside any pipe lock).
    r.skip(usize::MAX);
    let r = Arc::new(r);
    let count = Arc::new(AtomicUsize::new(0));
    fn arm(r: &Arc<Reader>, count: &Arc<AtomicUsize>) {
        let (r2, c2) = (r.clone(), count.clone());
        r.on_readable(move || {
            c2.fetch_add(1, Ordering::SeqCst);
            r2.skip(usize::MAX);
            // Re-arming after the end would fire at once, forever.
            if !r2.is_ended() {
                arm(&r2, &c2);
            }
        });
    }
    arm(&r, &count);
    for _ in 0..5 {
        w.write(b"z").unwrap();
    }
    assert_eq!(count.load(Ordering::SeqCst), 5);
    assert_eq!(r.buffered(), 0);
    w.close().unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 6, "and once more for the end");
}

#[test]
fn wait_writable_semantics() {
    let t0 = Instant::now();
    let (w, _r) = bodypipe::pipe();
    assert_eq!(w.wait_writable(Some(Duration::ZERO)), Ok(()));
    let (mut w, r) = Builder::new().max_buffered(4).build().unwrap();
    assert_eq!(w.wait_writable(None), Ok(()));
    w.write(b"abc").unwrap();
    assert_eq!(w.wait_writable(None), Ok(()), "below the mark");
    w.write(b"d").unwrap();
    let t = Instant::now();
    assert_eq!(w.wait_writable(Some(Duration::from_millis(30))), Err(WaitWritableError::TimedOut));
    assert!(t.elapsed() >= Duration::from_millis(30));
    thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(Duration::from_millis(20));
            assert_eq!(r.skip(1), 1);
        });
        assert_eq!(w.wait_writable(Some(Duration::from_secs(10))), Ok(()));
    });
    w.write(b"e").unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(Duration::from_millis(20));
            r.close();
        });
        assert_eq!(w.wait_writable(Some(Duration::from_secs(10))), Err(WaitWritableError::ReaderClosed));
    });
    // Woken by a reader dropped in another thread.
    let (mut w, r) = Builder::new().max_buffered(1).build().unwrap();
    w.write(b"a").unwrap();
    let t = thread::spawn(move || {
        until("the writer parks", || r.stats().writer_waiting);
        drop(r);
    });
    assert_eq!(w.wait_writable(Some(Duration::from_secs(10))), Err(WaitWritableError::ReaderClosed));
    t.join().unwrap();
    assert_prompt(t0);
}

// ---------------------------------------------------------------------------------------------
// io::Write
// ---------------------------------------------------------------------------------------------

#[test]
fn io_write_impl() {
    let (mut w, r) = Builder::new().content_length(12).segment_size(4).build().unwrap();
    assert_eq!(Write::write(&mut w, b"abc").unwrap(), 3);
    w.write_all(b"def").unwrap();
    w.flush().unwrap();
    write!(w, "{}", 12).unwrap();
    let bufs = [IoSlice::new(b"gh"), IoSlice::new(b"ijkl")];
    // Vectored: one atomic append; past the content length nothing of it is stored.
    assert_eq!(w.write_vectored(&bufs).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(r.buffered(), 8);
    let bufs = [IoSlice::new(b"g"), IoSlice::new(b""), IoSlice::new(b"hi")];
    assert_eq!(w.write_vectored(&bufs).unwrap(), 3);
    assert_eq!(w.write_all(b"jk").unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(w.write_vectored(&[IoSlice::new(b"j")]).unwrap(), 1);
    assert!(r.is_ended());
    let mut s = String::new();
    (&r).read_to_string(&mut s).unwrap();
    assert_eq!(s, "abcdef12ghij");
}

#[test]
fn write_vectored_is_one_atomic_append() {
    // A reader polling concurrently never sees part of a vectored write (each write is 3 + 4 + 3
    // bytes spanning 1-byte-ish segments), and every chunk arrives intact.
    let (mut w, r) = Builder::new().segment_size(3).build().unwrap();
    const N: usize = 20_000;
    thread::scope(|s| {
        s.spawn(move || {
            for i in 0..N {
                let b = (i % 251) as u8;
                let (x, y) = ([b; 3], [b; 4]);
                let bufs = [IoSlice::new(&x), IoSlice::new(&y), IoSlice::new(&x)];
                assert_eq!(w.write_vectored(&bufs).unwrap(), 10);
            }
            w.close().unwrap();
        });
        let mut seen = 0usize;
        let mut buf = [0u8; 10];
        loop {
            let a = r.buffered();
            assert_eq!(a % 10, 0, "saw a partial vectored write: {a} bytes unread");
            if a == 0 {
                if r.at_eof() {
                    break;
                }
                continue;
            }
            // Read exactly one record; it must be ten copies of its byte.
            assert_eq!(r.try_read(&mut buf).unwrap(), 10);
            assert_eq!(buf, [(seen % 251) as u8; 10]);
            seen += 1;
        }
        assert_eq!(seen, N);
    });
}

// ---------------------------------------------------------------------------------------------
// Read / BufRead for &Reader
// ---------------------------------------------------------------------------------------------

#[test]
fn ring_fill_buf_slice_survives_consume_and_reuse_through_another_handle() {
    // `&Reader` is `Copy`: a slice borrowed from one handle may outlive a `consume` and further
    // reads through another. In ring mode the writer reuses consumed segments, so the lent
    // segment must be kept out of reuse, or the slice would change under its holder.
    let (mut w, r) = Builder::new().max_buffered(8).segment_size(8).build().unwrap();
    w.write(b"abcdefgh").unwrap();
    let mut a = &r;
    let mut b = &r;
    let lent = a.fill_buf().unwrap();
    assert_eq!(lent, b"abcdefgh");
    b.consume(8);
    for round in 0..50u8 {
        w.write(&[round; 8]).unwrap();
        let mut buf = [0u8; 8];
        b.read_exact(&mut buf).unwrap();
        assert_eq!(buf, [round; 8]);
    }
    assert_eq!(lent, b"abcdefgh", "a lent segment was recycled while borrowed");
}

#[test]
fn read_to_end_and_fill_buf_consume() {
    let data = pattern(100_000, 10);
    for ring in [false, true] {
        let b = Builder::new().segment_size(1000);
        let (mut w, r) = if ring { b.max_buffered(4000) } else { b }.build().unwrap();
        let d = data.clone();
        let t = thread::spawn(move || {
            for c in d.chunks(777) {
                loop {
                    match w.write(c) {
                        Ok(()) => break,
                        Err(WriteError::Full) => w.wait_writable(None).unwrap(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            w.close().unwrap();
        });
        // fill_buf yields at most one segment's unread bytes; consume moves on.
        let mut out = Vec::new();
        let mut reader = &r;
        loop {
            let buf = reader.fill_buf().unwrap();
            if buf.is_empty() {
                break;
            }
            assert!(buf.len() <= 1000);
            let take = buf.len().min(333);
            out.extend_from_slice(&buf[..take]);
            reader.consume(take);
        }
        t.join().unwrap();
        assert!(out == data, "ring={ring}");
        assert!(r.at_eof());
    }
    // read_to_end and read_exact from a writer thread, in ring mode with reads larger than the
    // mark (reads consume as they go).
    let (mut w, r) = Builder::new().max_buffered(1000).build().unwrap();
    let d = data.clone();
    let t = thread::spawn(move || {
        for c in d.chunks(100) {
            while let Err(e) = w.write(c) {
                assert_eq!(e, WriteError::Full);
                w.wait_writable(None).unwrap();
            }
        }
        w.close().unwrap();
    });
    let mut first = vec![0u8; 50_000];
    (&r).read_exact(&mut first).unwrap();
    let mut rest = Vec::new();
    (&r).read_to_end(&mut rest).unwrap();
    t.join().unwrap();
    first.extend_from_slice(&rest);
    assert!(first == data);
}

// ---------------------------------------------------------------------------------------------
// Several threads sharing one reader
// ---------------------------------------------------------------------------------------------

#[test]
fn shared_cursor_never_duplicates_or_loses_bytes() {
    for ring in [false, true] {
        let b = Builder::new().segment_size(4096);
        let (mut w, r) = if ring { b.max_buffered(64 << 10) } else { b }.build().unwrap();
        let data = pattern(8 << 20, 11);
        let (sum, xor) = data.iter().fold((0u64, 0u8), |(s, x), &b| (s + u64::from(b), x ^ b));
        let total = data.len() as u64;
        let threads = 4;
        let barrier = Barrier::new(threads + 1);
        let results: Vec<(u64, u64, u8)> = thread::scope(|s| {
            let readers: Vec<_> = (0..threads)
                .map(|k| {
                    let (r, barrier) = (&r, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let (mut n, mut sum, mut xor) = (0u64, 0u64, 0u8);
                        let mut buf = vec![0u8; 1 + 997 * (k + 1)];
                        let mut i = 0usize;
                        loop {
                            i += 1;
                            let len = 1 + (i * 7919) % buf.len();
                            let got = if i % 2 == 0 {
                                match r.try_read(&mut buf[..len]) {
                                    Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                                    other => other.unwrap(),
                                }
                            } else {
                                (&*r).read(&mut buf[..len]).unwrap()
                            };
                            if got == 0 {
                                return (n, sum, xor);
                            }
                            n += got as u64;
                            for &b in &buf[..got] {
                                sum += u64::from(b);
                                xor ^= b;
                            }
                        }
                    })
                })
                .collect();
            barrier.wait();
            let mut at = 0;
            let mut k = 0;
            while at < data.len() {
                k += 1;
                let end = (at + 1 + (k * 104_729) % 20_000).min(data.len());
                match w.write(&data[at..end]) {
                    Ok(()) => at = end,
                    Err(WriteError::Full) => w.wait_writable(None).unwrap(),
                    Err(e) => panic!("{e}"),
                }
            }
            w.close().unwrap();
            readers.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let n: u64 = results.iter().map(|r| r.0).sum();
        let s: u64 = results.iter().map(|r| r.1).sum();
        let x: u8 = results.iter().fold(0, |x, r| x ^ r.2);
        assert_eq!((n, s, x), (total, sum, xor), "ring={ring}");
    }
}

#[test]
fn shared_cursor_lines_are_never_split() {
    let (mut w, r) = Builder::new().segment_size(7).max_buffered(4096).build().unwrap();
    const LINES: usize = 30_000;
    let mut got: Vec<Vec<u64>> = thread::scope(|s| {
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let r = &r;
                s.spawn(move || {
                    let mut mine = Vec::new();
                    let mut line = Vec::new();
                    loop {
                        line.clear();
                        if r.read_line_deadline(&mut line, None, soon()).unwrap() == 0 {
                            return mine;
                        }
                        let text = std::str::from_utf8(&line).unwrap();
                        let (num, check) = text.trim_end().split_once(':').expect("a whole line");
                        assert_eq!(num.len(), check.len(), "a torn line: {text:?}");
                        mine.push(num.parse::<u64>().unwrap());
                    }
                })
            })
            .collect();
        for i in 0..LINES {
            let line = format!("{i}:{}\n", "x".repeat(i.to_string().len()));
            // Split each line across two writes to make torn reads possible.
            let (a, b) = line.as_bytes().split_at(line.len() / 2);
            for part in [a, b] {
                while let Err(e) = w.write(part) {
                    assert_eq!(e, WriteError::Full);
                    w.wait_writable(None).unwrap();
                }
            }
        }
        w.close().unwrap();
        readers.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut all: Vec<u64> = got.iter_mut().flat_map(|v| v.drain(..)).collect();
    all.sort_unstable();
    assert_eq!(all, (0..LINES as u64).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------------
// Stats and misc accessors
// ---------------------------------------------------------------------------------------------

#[test]
fn stats_and_accessors() {
    let (mut w, r) = Builder::new().content_length(10).build().unwrap();
    w.write(b"abcdef").unwrap();
    r.skip(2);
    let s = r.stats();
    assert_eq!(s, w.stats());
    assert_eq!((s.written, s.position, s.buffered), (6, 2, 4));
    assert_eq!(s.content_length, Some(10));
    assert!(!s.eof && !s.aborted && !s.reader_closed);
    assert_eq!(w.written(), 6);
    assert_eq!(w.buffered(), 4);
    assert_eq!(r.written(), 6);
    assert_eq!(r.position(), 2);
    assert_eq!(r.max_size(), bodypipe::DEFAULT_MAX_SIZE);
    assert_eq!(Builder::new().max_size(77).build().unwrap().1.max_size(), 77);
    assert!(format!("{w:?}").contains("Writer"));
    assert!(format!("{r:?}").contains("Reader"));
    assert_eq!(bodypipe::Stats::default().written, 0);
    w.write(b"ghij").unwrap();
    assert!(r.stats().eof);
}

/// Counts wake-ups of a task.
struct Wakes(AtomicUsize);

impl std::task::Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn poll_writable_pending_woken_by_reads_and_by_reader_close() {
    use std::task::{Context, Poll, Waker};
    let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
    let waker = Waker::from(wakes.clone());
    let mut cx = Context::from_waker(&waker);
    // Outside ring mode: always ready.
    let (mut w, _r) = bodypipe::pipe();
    assert_eq!(w.poll_writable(&mut cx), Poll::Ready(Ok(())));
    // Ring mode: pending while full, woken once unread bytes fall below half the mark (not by a
    // read that leaves them at or above it), on the reader's thread.
    let (mut w, r) = Builder::new().max_buffered(8).build().unwrap();
    w.write(&[0; 8]).unwrap();
    assert!(!w.has_room());
    assert_eq!(w.poll_writable(&mut cx), Poll::Pending);
    assert_eq!(w.poll_writable(&mut cx), Poll::Pending, "a second poll replaces the waker");
    r.skip(1);
    assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "7 unread: not below half of 8");
    thread::scope(|s| {
        s.spawn(|| r.skip(4));
    });
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "woken once, the replaced waker not at all");
    assert_eq!(w.poll_writable(&mut cx), Poll::Ready(Ok(())));
    r.skip(3);
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "nothing armed: nothing woken");
    // The reader closing wakes a pending task, which then gets ReaderClosed.
    w.write(&[0; 8]).unwrap();
    assert_eq!(w.poll_writable(&mut cx), Poll::Pending);
    r.close();
    assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
    assert_eq!(w.poll_writable(&mut cx), Poll::Ready(Err(WaitWritableError::ReaderClosed)));
    assert!(!w.has_room());
}

/// Threshold wake-ups: a reader parked in `wait(1000)` is not woken (no wake syscall at all)
/// by the 999 writes below its threshold, and is woken, once, by the write that meets it. The
/// writes start once `Stats::reader_waiting` shows the reader registered (it has nothing to
/// read, so it parks), so every count here is exact in every interleaving.
#[test]
fn writes_below_a_parked_readers_threshold_wake_nobody() {
    let (mut w, r) = bodypipe::pipe();
    assert!(!r.stats().reader_waiting);
    thread::scope(|s| {
        let waiter = s.spawn(|| r.wait(1000, Some(Instant::now() + Duration::from_secs(30))));
        until("the reader parks", || r.stats().reader_waiting);
        for _ in 0..999 {
            w.write(b"x").unwrap();
        }
        assert_eq!(r.stats().reader_wakes, 0, "a write below the threshold woke the reader");
        assert!(r.stats().reader_waiting, "still parked below its threshold");
        w.write(b"x").unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(Ready::Data(1000)));
    });
    let s = r.stats();
    assert_eq!(s.reader_wakes, 1, "one wake for the one parked wait");
    assert!(!s.reader_waiting, "the wake took the registration");
    assert_eq!((s.writer_wakes, s.writer_waiting), (0, false), "unbounded: the writer never waits");
}

/// Ring mode: a writer parked in `wait_writable` on a full window is woken, once, by the read
/// that makes room, and not by reads that leave the window full.
#[test]
fn a_read_that_makes_room_wakes_the_parked_writer_once() {
    let (mut w, r) = Builder::new().max_buffered(4).build().unwrap();
    w.write(b"abcd").unwrap();
    thread::scope(|s| {
        let writer = s.spawn(|| w.wait_writable(Some(Duration::from_secs(30))));
        until("the writer parks", || r.stats().writer_waiting);
        assert_eq!(r.stats().writer_wakes, 0);
        r.skip(4);
        assert_eq!(writer.join().unwrap(), Ok(()));
    });
    let s = r.stats();
    assert_eq!((s.writer_wakes, s.writer_waiting), (1, false));
    assert_eq!((s.reader_wakes, s.reader_waiting), (0, false), "the reader never waited");
}
