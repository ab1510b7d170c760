#![cfg(not(bodypipe_loom))]
//! Multi-threaded stress: at least 1 GiB from a writer thread to a reader, with a checksum that
//! both sides compute over the byte stream, in ring mode (1 MiB high-water mark) and unbounded
//! (unknown length and a known content length); plus three reader threads sharing one reader.
//!
//! Throughput figures are printed to stderr; see them with
//! `cargo test -p bodypipe --release --test stress -- --nocapture`. The tests take a lock so
//! they run one at a time and the figures are not skewed by each other.

use bodypipe::{Builder, Reader, WriteError, Writer};
use std::io::{ErrorKind, Read};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

const GIB: u64 = 1 << 30;
/// The writer sends slices of this random buffer at moving offsets.
const PATTERN: usize = 8 << 20;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Roughly log-uniform in `1..=max`, so small and large chunks both occur often.
    fn size(&mut self, max: usize) -> usize {
        let bits = (self.next() % (max.ilog2() as u64 + 1)) as u32;
        let n = 1 + (self.next() as usize & ((1usize << bits) - 1));
        n.min(max)
    }
}

fn pattern() -> Vec<u8> {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut v = Vec::with_capacity(PATTERN);
    while v.len() < PATTERN {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v
}

/// An order-sensitive checksum over a byte stream, independent of how the stream is split:
/// four multiply-rotate lanes over 32-byte blocks (fast enough not to be the bottleneck), the
/// tail carried between updates.
#[derive(Clone)]
struct StreamHash {
    lanes: [u64; 4],
    pending: [u8; 32],
    npending: usize,
    len: u64,
}

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl StreamHash {
    fn new() -> Self {
        Self { lanes: [1, 2, 3, 4], pending: [0; 32], npending: 0, len: 0 }
    }

    #[inline]
    fn block(&mut self, b: &[u8]) {
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            let w = u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
            *lane = (lane.rotate_left(29) ^ w).wrapping_mul(K);
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.npending > 0 {
            let take = (32 - self.npending).min(data.len());
            self.pending[self.npending..self.npending + take].copy_from_slice(&data[..take]);
            self.npending += take;
            data = &data[take..];
            if self.npending < 32 {
                return;
            }
            let p = self.pending;
            self.block(&p);
            self.npending = 0;
        }
        let mut blocks = data.chunks_exact(32);
        for b in &mut blocks {
            self.block(b);
        }
        let rest = blocks.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.npending = rest.len();
    }

    fn finish(&self) -> (u64, u64) {
        let mut h = self.len;
        for &l in &self.lanes {
            h = (h.rotate_left(23) ^ l).wrapping_mul(K);
        }
        for &b in &self.pending[..self.npending] {
            h = (h ^ u64::from(b)).wrapping_mul(K);
        }
        (self.len, h)
    }
}

/// Writes `total` bytes in random chunks (up to `max_chunk`), retrying `Full` after
/// `wait_writable`. Returns the checksum of what was written and how many times it was Full.
fn produce(mut w: Writer, data: &[u8], total: u64, max_chunk: usize, seed: u64, close: bool) -> ((u64, u64), u64) {
    let mut rng = Rng(seed);
    let mut hash = StreamHash::new();
    let mut sent = 0u64;
    let mut off = 0usize;
    let mut full = 0u64;
    while sent < total {
        let n = rng.size(max_chunk).min((total - sent) as usize);
        if off + n > data.len() {
            off = (rng.next() as usize) % (data.len() / 2);
        }
        let chunk = &data[off..off + n];
        loop {
            match w.write(chunk) {
                Ok(()) => break,
                Err(WriteError::Full) => {
                    full += 1;
                    w.wait_writable(Some(Duration::from_secs(30))).expect("the reader makes room");
                }
                Err(e) => panic!("write failed: {e}"),
            }
        }
        hash.update(chunk);
        sent += n as u64;
        off += n;
    }
    if close {
        w.close().unwrap();
    } else {
        // A known content length: reaching it is EOF; the writer is dropped without close.
        assert!(!w.stats().aborted);
        drop(w);
    }
    (hash.finish(), full)
}

/// Reads to EOF with random buffer sizes (blocking reads), hashing everything.
fn consume(r: &Reader, max_read: usize, seed: u64) -> (u64, u64) {
    let mut rng = Rng(seed);
    let mut hash = StreamHash::new();
    let mut buf = vec![0u8; max_read];
    r.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = r;
    loop {
        let n = rng.size(max_read);
        match reader.read(&mut buf[..n]) {
            Ok(0) => break,
            Ok(k) => hash.update(&buf[..k]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("read failed: {e}"),
        }
    }
    hash.finish()
}

fn report(what: &str, bytes: u64, took: Duration, extra: &str) {
    let secs = took.as_secs_f64();
    eprintln!(
        "stress {what}: {:.2} GiB in {:.3} s = {:.2} GB/s ({:.2} GiB/s){extra}",
        bytes as f64 / GIB as f64,
        secs,
        bytes as f64 / secs / 1e9,
        bytes as f64 / secs / GIB as f64,
    );
}

fn stream(what: &str, builder: Builder, total: u64, max_chunk: usize, max_read: usize, close: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = pattern();
    let (w, r) = builder.build().unwrap();
    let start = Instant::now();
    let (sent, got, full) = thread::scope(|s| {
        let data = &data;
        let producer = s.spawn(move || produce(w, data, total, max_chunk, 7, close));
        let got = consume(&r, max_read, 11);
        let (sent, full) = producer.join().unwrap();
        (sent, got, full)
    });
    let took = start.elapsed();
    assert_eq!(sent.0, total);
    assert_eq!(got, sent, "checksum mismatch: the reader saw different bytes");
    assert!(r.at_eof());
    assert_eq!(r.abort_reason(), None);
    report(what, total, took, &format!(", writer Full {full} times"));
}

#[test]
fn one_gib_ring_mode_1mib() {
    stream("ring 1 MiB max_buffered", Builder::new().max_buffered(1 << 20), GIB, 256 << 10, 256 << 10, true);
}

#[test]
fn one_gib_ring_mode_small_chunks() {
    // Many small writes and reads: the per-operation cost, not memcpy, dominates.
    stream("ring 1 MiB, chunks <= 4 KiB", Builder::new().max_buffered(1 << 20), GIB / 4, 4 << 10, 4 << 10, true);
}

#[test]
fn one_gib_unbounded_unknown_length() {
    // Unbounded keeps every byte: 1 GiB of memory, which is also the default max_size.
    stream("unbounded, unknown length", Builder::new(), GIB, 256 << 10, 256 << 10, true);
}

#[test]
fn one_gib_unbounded_content_length() {
    // Reaching the content length is EOF (no close). After the stream, the whole body is still
    // there as zero-copy views (segments grown with the data, the last one exactly what was left
    // of the length) whose checksum matches.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = pattern();
    let (w, r) = Builder::new().content_length(GIB).build().unwrap();
    let start = Instant::now();
    let (sent, got) = thread::scope(|s| {
        let data = &data;
        let producer = s.spawn(move || produce(w, data, GIB, 256 << 10, 13, false).0);
        let got = consume(&r, 256 << 10, 17);
        (producer.join().unwrap(), got)
    });
    let took = start.elapsed();
    assert_eq!(got, sent);
    report("unbounded, content_length 1 GiB", GIB, took, "");
    r.seek(std::io::SeekFrom::Start(0)).unwrap();
    let views = r.views();
    assert!(views.iter().all(bodypipe::View::is_zero_copy));
    assert_eq!(views.iter().map(|v| v.len() as u64).sum::<u64>(), GIB);
    let mut h = StreamHash::new();
    for v in &views {
        h.update(v);
    }
    assert_eq!(h.finish(), sent);
}

#[test]
fn one_gib_ring_mode_zero_copy_views_and_skip() {
    // The zero-copy consumer: wait, hash the views in place, skip past them. Views pin their
    // segments while the writer recycles the others; skip must let passed segments recycle.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = pattern();
    let (w, r) = Builder::new().max_buffered(1 << 20).build().unwrap();
    let start = Instant::now();
    let (sent, got) = thread::scope(|s| {
        let data = &data;
        let producer = s.spawn(move || produce(w, data, GIB, 256 << 10, 29, true).0);
        let mut hash = StreamHash::new();
        loop {
            match r.wait(1, Some(Instant::now() + Duration::from_secs(30))).unwrap() {
                bodypipe::Ready::Ended(0) => break,
                _ => {
                    let views = r.views();
                    let mut n = 0;
                    for v in &views {
                        hash.update(v);
                        n += v.len();
                    }
                    assert!(n > 0);
                    assert_eq!(r.skip(n), n);
                }
            }
        }
        (producer.join().unwrap(), hash.finish())
    });
    let took = start.elapsed();
    assert_eq!(got, sent);
    assert!(r.at_eof());
    report("ring 1 MiB, zero-copy views + skip", GIB, took, "");
}

/// Three threads read through one shared reader while a writer streams; every byte must be read
/// exactly once: total count, per-value histogram, sum and xor must equal the input's.
fn three_readers(what: &str, builder: Builder, total: u64) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = pattern();
    let (w, r) = builder.build().unwrap();
    let start = Instant::now();
    let (expected, got) = thread::scope(|s| {
        let data = &data;
        let producer = s.spawn(move || {
            let mut rng = Rng(23);
            let mut hist = [0u64; 256];
            let mut w = w;
            let mut sent = 0u64;
            let mut off = 0usize;
            while sent < total {
                let n = rng.size(64 << 10).min((total - sent) as usize);
                if off + n > data.len() {
                    off = (rng.next() as usize) % (data.len() / 2);
                }
                let chunk = &data[off..off + n];
                while let Err(e) = w.write(chunk) {
                    assert_eq!(e, WriteError::Full);
                    w.wait_writable(Some(Duration::from_secs(30))).unwrap();
                }
                for &b in chunk {
                    hist[b as usize] += 1;
                }
                sent += n as u64;
                off += n;
            }
            w.close().unwrap();
            hist
        });
        let readers: Vec<_> = (0..3u64)
            .map(|k| {
                let r = &r;
                s.spawn(move || {
                    let mut rng = Rng(100 + k);
                    let mut hist = [0u64; 256];
                    let mut buf = vec![0u8; 128 << 10];
                    let mut lines = Vec::new();
                    loop {
                        // Mix the ways of reading the shared cursor.
                        let got = match rng.next() % 4 {
                            0 => {
                                lines.clear();
                                r.read_line_deadline(&mut lines, Some(rng.size(64 << 10)), None).unwrap();
                                for &b in &lines {
                                    hist[b as usize] += 1;
                                }
                                lines.len()
                            }
                            1 => match r.try_read(&mut buf[..rng.size(128 << 10)]) {
                                Ok(n) => {
                                    buf[..n].iter().for_each(|&b| hist[b as usize] += 1);
                                    if n == 0 {
                                        break;
                                    }
                                    n
                                }
                                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                    std::hint::spin_loop();
                                    1
                                }
                                Err(e) => panic!("{e}"),
                            },
                            _ => {
                                let n = rng.size(128 << 10);
                                let k = r.read_deadline(&mut buf[..n], None).unwrap();
                                buf[..k].iter().for_each(|&b| hist[b as usize] += 1);
                                k
                            }
                        };
                        if got == 0 {
                            break;
                        }
                    }
                    hist
                })
            })
            .collect();
        let expected = producer.join().unwrap();
        let mut got = [0u64; 256];
        for t in readers {
            for (g, h) in got.iter_mut().zip(t.join().unwrap()) {
                *g += h;
            }
        }
        (expected, got)
    });
    let took = start.elapsed();
    let count = |h: &[u64; 256]| h.iter().sum::<u64>();
    let sum = |h: &[u64; 256]| h.iter().enumerate().map(|(v, &c)| v as u64 * c).sum::<u64>();
    let xor = |h: &[u64; 256]| h.iter().enumerate().fold(0u8, |x, (v, &c)| if c % 2 == 1 { x ^ v as u8 } else { x });
    assert_eq!(count(&got), total);
    assert_eq!(sum(&got), sum(&expected));
    assert_eq!(xor(&got), xor(&expected));
    assert!(got == expected, "per-byte-value histograms differ");
    assert!(r.at_eof());
    report(what, total, took, "");
}

#[test]
fn three_readers_share_one_reader_ring() {
    three_readers("3 readers sharing one reader, ring 1 MiB", Builder::new().max_buffered(1 << 20), 256 << 20);
}

#[test]
fn three_readers_share_one_reader_unbounded() {
    three_readers("3 readers sharing one reader, unbounded", Builder::new(), 256 << 20);
}

#[test]
fn stream_hash_is_split_independent() {
    let data = pattern();
    let whole = {
        let mut h = StreamHash::new();
        h.update(&data[..100_000]);
        h.finish()
    };
    let mut rng = Rng(5);
    let mut h = StreamHash::new();
    let mut at = 0;
    while at < 100_000 {
        let n = rng.size(100).min(100_000 - at);
        h.update(&data[at..at + n]);
        at += n;
    }
    assert_eq!(h.finish(), whole);
    // And it is order-sensitive: swapping two bytes changes it.
    let mut swapped = data[..100_000].to_vec();
    swapped.swap(10, 50_000);
    let mut h = StreamHash::new();
    h.update(&swapped);
    assert_ne!(h.finish(), whole);
}
