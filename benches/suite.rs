//! The one-run comparison driver (issue 5): every Rust workload against every baseline,
//! back-to-back in one process, interleaved round-robin over several repetitions; prints the
//! table of medians and ratios and writes `bench-results/bench.json`.
//!
//! `cargo bench -p bodypipe --bench suite` (or `make bench`). Environment:
//! - `BENCH_REPS` (default 5): repetitions of every throughput/writer-cost measurement;
//! - `BENCH_SCALE` (default 1.0): multiplies every byte total and sample count (0.1 for a smoke run);
//! - `BENCH_OUT` (default `bench-results/bench.json`).
//!
//! Memory figures are measured in child processes (this binary re-executed with `--child ...`), so
//! their peak RSS is not polluted by the other workloads.

mod common;

use bodypipe::{Builder, WriteError, Writer};
use common::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const GIB: u64 = 1 << 30;
const READ_BUF: usize = 64 * KIB;
const RING_MAX: usize = MIB;

// ---------------------------------------------------------------------------------------------
// Statistics and result plumbing
// ---------------------------------------------------------------------------------------------

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One line of the ratio table.
struct Target {
    id: &'static str,
    what: String,
    value: f64,
    baseline: f64,
    ratio: f64,
    /// `ratio >= min` (or `<= max` when `le`).
    bound: f64,
    le: bool,
    unit: &'static str,
}

impl Target {
    fn met(&self) -> bool {
        if self.le {
            self.ratio <= self.bound
        } else {
            self.ratio >= self.bound
        }
    }
}

#[derive(Default)]
struct Results {
    /// metric name -> (value, unit)
    metrics: BTreeMap<String, (f64, &'static str)>,
    /// repetition samples behind each median, for the JSON
    samples: BTreeMap<String, Vec<f64>>,
    targets: Vec<Target>,
    notes: Vec<String>,
}

impl Results {
    fn put(&mut self, k: impl Into<String>, v: f64, unit: &'static str) {
        self.metrics.insert(k.into(), (v, unit));
    }
    fn get(&self, k: &str) -> f64 {
        self.metrics.get(k).map_or(f64::NAN, |x| x.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Watchdog: a lost wake-up must fail the run, not hang `make bench` (it happened once, on a
// mid-edit tree: writer parked in wait_writable, reader parked in wait with 1 MiB available).
// ---------------------------------------------------------------------------------------------

static BEAT: AtomicU64 = AtomicU64::new(0);
static DOING: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

fn beat(what: impl Into<String>) {
    *DOING.lock().unwrap() = what.into();
    BEAT.fetch_add(1, Ordering::Relaxed);
}

fn start_watchdog() {
    let limit = env_f64("BENCH_WATCHDOG_SECS", 300.0);
    thread::spawn(move || {
        let (mut last, mut since) = (u64::MAX, Instant::now());
        loop {
            thread::sleep(Duration::from_secs(1));
            let b = BEAT.load(Ordering::Relaxed);
            if b != last {
                (last, since) = (b, Instant::now());
            } else if since.elapsed().as_secs_f64() > limit {
                eprintln!(
                    "watchdog: no progress for {limit} s in `{}`: a lost wake-up or deadlock; aborting",
                    DOING.lock().unwrap()
                );
                std::process::exit(4);
            }
        }
    });
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// Streaming throughput: a writer thread, the reader (this thread) reads into a 64 KiB buffer.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Run {
    secs: f64,
    /// futex(2) calls made by the writer thread (wakes, plus waits for room in ring mode)
    wfutex: u64,
    /// futex(2) calls made by the reader thread (parks)
    rfutex: u64,
}

fn counted<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let c = FutexCounter::for_this_thread();
    let before = c.as_ref().map_or(0, |c| c.read());
    let r = f();
    let after = c.as_ref().map_or(0, |c| c.read());
    (r, after - before)
}

fn write_or_wait(w: &mut Writer, data: &[u8]) {
    loop {
        match w.write(data) {
            Ok(()) => return,
            Err(WriteError::Full) => w.wait_writable(None).expect("reader closed"),
            Err(e) => panic!("write: {e}"),
        }
    }
}

/// Times one body streamed between two threads, the same way for every design: `produce` runs
/// on a writer thread (its futex calls counted) with the pattern, total and chunk size and must
/// end the stream; `read` fills a 64 KiB buffer on this thread and returns 0 at the end (its
/// futex calls counted too).
fn stream_run(
    pat: &Arc<Vec<u8>>,
    total: u64,
    chunk: usize,
    produce: impl FnOnce(&[u8], u64, usize) + Send + 'static,
    mut read: impl FnMut(&mut [u8]) -> usize,
) -> Run {
    let mut buf = vec![0u8; READ_BUF];
    let cr = FutexCounter::for_this_thread();
    let r0 = cr.as_ref().map_or(0, |c| c.read());
    let start = Instant::now();
    let pat = pat.clone();
    let h = thread::spawn(move || counted(|| produce(&pat, total, chunk)).1);
    let mut got = 0u64;
    loop {
        let n = read(&mut buf);
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    let rfutex = cr.as_ref().map_or(0, |c| c.read()) - r0;
    let wfutex = h.join().unwrap();
    assert_eq!(got, total);
    black_box(&buf);
    Run { secs, wfutex, rfutex }
}

fn stream_bodypipe(pat: &Arc<Vec<u8>>, total: u64, chunk: usize, builder: Builder) -> Run {
    let (mut w, r) = builder.build().unwrap();
    let produce = move |pat: &[u8], total, chunk| {
        for_each_chunk(pat, total, chunk, |c| write_or_wait(&mut w, c));
        w.close().unwrap();
    };
    stream_run(pat, total, chunk, produce, |buf| (&r).read(buf).unwrap())
}

fn stream_reference(pat: &Arc<Vec<u8>>, total: u64, chunk: usize) -> Run {
    let b = Arc::new(RefBuffer::new(None));
    let wb = b.clone();
    let produce = move |pat: &[u8], total, chunk| {
        for_each_chunk(pat, total, chunk, |c| wb.write(c));
        wb.close();
    };
    stream_run(pat, total, chunk, produce, |buf| b.read(buf))
}

fn stream_chan<S, R>(pat: &Arc<Vec<u8>>, total: u64, chunk: usize, (tx, rx): (S, R), send: fn(&S, Vec<u8>)) -> Run
where
    S: Send + 'static,
    R: ChunkRecv,
{
    let mut reader = ChanReader::new(rx);
    let produce = move |pat: &[u8], total, chunk| {
        for_each_chunk(pat, total, chunk, |c| send(&tx, c.to_vec()));
        drop(tx);
    };
    stream_run(pat, total, chunk, produce, |buf| reader.read(buf))
}

fn stream_os_pipe(pat: &Arc<Vec<u8>>, total: u64, chunk: usize) -> Run {
    let (rfd, wfd) = os_pipe();
    let produce = move |pat: &[u8], total, chunk| {
        for_each_chunk(pat, total, chunk, |c| fd_write_all(wfd, c));
        fd_close(wfd);
    };
    let run = stream_run(pat, total, chunk, produce, |buf| fd_read(rfd, buf));
    fd_close(rfd);
    run
}

/// One thread copying the same bytes in the same chunk sizes into a hot reused 1 MiB buffer
/// (the ring's size): the bound for ring mode.
fn memcpy_hot(pat: &Arc<Vec<u8>>, total: u64, chunk: usize) -> Run {
    let mut dst = vec![0u8; RING_MAX.max(chunk)];
    let start = Instant::now();
    let mut off = 0usize;
    for_each_chunk(pat, total, chunk, |c| {
        if off + c.len() > dst.len() {
            off = 0;
        }
        dst[off..off + c.len()].copy_from_slice(c);
        off += c.len();
        black_box(&mut dst);
    });
    let secs = start.elapsed().as_secs_f64();
    black_box(&dst);
    Run { secs, wfutex: 0, rfutex: 0 }
}

/// The same copy into fresh memory: one new allocation of the whole body (plain malloc, no
/// madvise), faulting in every page: the bound for unbounded mode. Freeing is not timed.
fn memcpy_fresh(pat: &Arc<Vec<u8>>, total: u64, chunk: usize) -> Run {
    let start = Instant::now();
    let mut dst: Vec<u8> = Vec::with_capacity(total as usize);
    for_each_chunk(pat, total, chunk, |c| {
        dst.extend_from_slice(c);
    });
    let secs = start.elapsed().as_secs_f64();
    black_box(&dst);
    drop(dst);
    Run { secs, wfutex: 0, rfutex: 0 }
}

type Design = (&'static str, fn(&Arc<Vec<u8>>, u64, usize) -> Run);

fn designs() -> Vec<Design> {
    vec![
        ("bodypipe_ring", |p, t, c| stream_bodypipe(p, t, c, Builder::new().max_buffered(RING_MAX))),
        ("bodypipe_unbounded", |p, t, c| stream_bodypipe(p, t, c, Builder::new())),
        // The same without faulting segments in ahead of the writer (`Builder::prefault`): what
        // the MADV_POPULATE_WRITE windows buy in fresh memory.
        ("bodypipe_unbounded_no_prefault", |p, t, c| stream_bodypipe(p, t, c, Builder::new().prefault(false))),
        ("reference", stream_reference),
        ("mpsc", |p, t, c| stream_chan(p, t, c, std::sync::mpsc::channel(), |s, v| s.send(v).unwrap())),
        ("crossbeam", |p, t, c| stream_chan(p, t, c, crossbeam_channel::unbounded(), |s, v| s.send(v).unwrap())),
        ("crossbeam_bounded_1MiB", |p, t, c| {
            stream_chan(p, t, c, crossbeam_channel::bounded((RING_MAX / c).max(1)), |s, v| s.send(v).unwrap())
        }),
        ("os_pipe", stream_os_pipe),
        ("memcpy_hot", memcpy_hot),
        ("memcpy_fresh", memcpy_fresh),
    ]
}

fn size_label(chunk: usize) -> String {
    if chunk >= KIB {
        format!("{}KiB", chunk / KIB)
    } else {
        format!("{chunk}B")
    }
}

fn throughput(res: &mut Results, reps: usize, scale: f64) {
    let sizes: [(usize, u64); 4] = [(64, 64 << 20), (KIB, 256 << 20), (16 * KIB, GIB), (64 * KIB, GIB)];
    // BENCH_CHUNKS=64,65536 runs only those chunk sizes.
    let only: Vec<usize> =
        std::env::var("BENCH_CHUNKS").unwrap_or_default().split(',').filter_map(|c| c.trim().parse().ok()).collect();
    for (chunk, total) in sizes {
        if !only.is_empty() && !only.contains(&chunk) {
            continue;
        }
        let total = ((total as f64 * scale) as u64).max(chunk as u64 * 1024) / chunk as u64 * chunk as u64;
        let pat = Arc::new(pattern(chunk));
        let ds = designs();
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); ds.len()];
        eprintln!("throughput {}: {} MiB x {reps} reps", size_label(chunk), total >> 20);
        for _ in 0..reps {
            for (i, (name, f)) in ds.iter().enumerate() {
                beat(format!("stream {} {name}", size_label(chunk)));
                runs[i].push(f(&pat, total, chunk));
            }
        }
        // One extra, untimed pass with the futex counters on (they slow the threads they watch).
        set_counting(true);
        let counted_runs: Vec<Run> = ds
            .iter()
            .map(|(name, f)| {
                beat(format!("stream {} {name} (counted)", size_label(chunk)));
                f(&pat, total, chunk)
            })
            .collect();
        set_counting(false);
        let writes = total.div_ceil(chunk as u64) as f64;
        for (i, (name, _)) in ds.iter().enumerate() {
            let gbs: Vec<f64> = runs[i].iter().map(|r| total as f64 / r.secs / 1e9).collect();
            let key = format!("stream.{}.{}", size_label(chunk), name);
            let g = median(&gbs);
            res.put(format!("{key}.GBps"), g, "GB/s");
            res.put(format!("{key}.Mwrites_per_s"), g * 1e9 / chunk as f64 / 1e6, "M writes/s");
            let c = counted_runs[i];
            res.put(format!("{key}.writer_futex_per_write"), c.wfutex as f64 / writes, "futex/write");
            res.put(format!("{key}.reader_futex_per_write"), c.rfutex as f64 / writes, "futex/write");
            res.put(format!("{key}.counted_run_GBps"), total as f64 / c.secs / 1e9, "GB/s");
            res.samples.insert(format!("{key}.GBps"), gbs);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A reader blocked in read(65536) fed by 64 B writes (issue 12): what the Erlang front end does
// to a Python `wsgi.input.read(65536)`. bodypipe's `read(n)` is a file's (exactly n unless EOF),
// so it waits with a threshold of n bytes; the reference design's `read(n)` returns whatever is
// there (up to n), woken by the writer's broadcast. Per read call: wake syscalls made by the
// writer, futex calls made by the reader.
// ---------------------------------------------------------------------------------------------

const READ64K: usize = 64 * KIB;

type ReadDesign = (&'static str, fn(&Arc<Vec<u8>>, u64, usize) -> (Run, u64));

/// The Python binding's `read(n)` on the core: wait for `n` unread bytes (or the end) without
/// consuming, then one copy.
fn read64k_bodypipe(pat: &Arc<Vec<u8>>, total: u64, chunk: usize, builder: Builder) -> (Run, u64) {
    let (mut w, r) = builder.build().unwrap();
    let produce = move |pat: &[u8], total, chunk| {
        for_each_chunk(pat, total, chunk, |c| write_or_wait(&mut w, c));
        w.close().expect("a body of no declared length closes cleanly");
    };
    let mut calls = 0u64;
    let run = stream_run(pat, total, chunk, produce, |buf| {
        calls += 1;
        let want = buf.len().min(READ64K);
        r.wait(want, None).unwrap();
        r.try_read(&mut buf[..want]).unwrap()
    });
    (run, calls)
}

fn read64k_reference(pat: &Arc<Vec<u8>>, total: u64, chunk: usize) -> (Run, u64) {
    let b = Arc::new(RefBuffer::new(None));
    let wb = b.clone();
    let produce = move |pat: &[u8], total, chunk| {
        for_each_chunk(pat, total, chunk, |c| wb.write(c));
        wb.close();
    };
    let mut calls = 0u64;
    let run = stream_run(pat, total, chunk, produce, |buf| {
        calls += 1;
        b.read(&mut buf[..READ64K])
    });
    (run, calls)
}

fn read64k(res: &mut Results, reps: usize, scale: f64) {
    let chunk = 64;
    let total = (((64 << 20) as f64 * scale) as u64).max(READ64K as u64 * 16) / READ64K as u64 * READ64K as u64;
    let pat = Arc::new(pattern(chunk));
    let ds: [ReadDesign; 3] = [
        ("bodypipe_unbounded", |p, t, c| read64k_bodypipe(p, t, c, Builder::new())),
        ("bodypipe_ring", |p, t, c| read64k_bodypipe(p, t, c, Builder::new().max_buffered(RING_MAX))),
        ("reference", read64k_reference),
    ];
    eprintln!("read(64 KiB) fed by 64 B writes: {} MiB x {reps} reps", total >> 20);
    let mut gbs: Vec<Vec<f64>> = vec![Vec::new(); ds.len()];
    for _ in 0..reps {
        for (i, (name, f)) in ds.iter().enumerate() {
            beat(format!("read64k {name}"));
            let (run, _) = f(&pat, total, chunk);
            gbs[i].push(total as f64 / run.secs / 1e9);
        }
    }
    set_counting(true);
    let counted_runs: Vec<(Run, u64)> = ds.iter().map(|(_, f)| f(&pat, total, chunk)).collect();
    set_counting(false);
    for (i, (name, _)) in ds.iter().enumerate() {
        let key = format!("read64k.{name}");
        res.put(format!("{key}.GBps"), median(&gbs[i]), "GB/s");
        res.samples.insert(format!("{key}.GBps"), gbs[i].clone());
        let (run, calls) = counted_runs[i];
        res.put(format!("{key}.read_calls"), calls as f64, "calls");
        res.put(format!("{key}.writer_futex_per_read"), run.wfutex as f64 / calls as f64, "futex/read");
        res.put(format!("{key}.reader_futex_per_read"), run.rfutex as f64 / calls as f64, "futex/read");
    }
}

// ---------------------------------------------------------------------------------------------
// Writer cost with no reader parked: ns per 64 B write and futex calls per write, one thread.
// ---------------------------------------------------------------------------------------------

const W64_BATCH: usize = 16 * KIB; // writes between drains: 1 MiB of 64 B writes

fn writer_cost(res: &mut Results, reps: usize, scale: f64) {
    let n = ((1_000_000.0 * scale) as usize).max(W64_BATCH) / W64_BATCH * W64_BATCH;
    let pat = Arc::new(pattern(64));
    type Cost = (&'static str, fn(&[u8], usize) -> (f64, u64));
    let costs: Vec<Cost> = vec![
        // Ring mode, the reader drains (try_read into 64 KiB) on the same thread every 1 MiB:
        // hot, recycled segments. The drain's copy is included (about 1 ns per 64 B write).
        ("bodypipe_ring", |pat, n| {
            let (mut w, r) = Builder::new().max_buffered(RING_MAX).build().unwrap();
            let mut buf = vec![0u8; READ_BUF];
            let (secs, fx) = timed_counted(|| {
                let mut i = 0;
                for_each_chunk(pat, (n * 64) as u64, 64, |c| {
                    w.write(c).unwrap();
                    i += 1;
                    if i % W64_BATCH == 0 {
                        while r.try_read(&mut buf).unwrap_or(0) > 0 {}
                    }
                });
            });
            drop((w, r));
            (secs, fx)
        }),
        // The same, draining with `skip`: the consumer never copies, so this is the writer's
        // cost alone with segments recycled behind the skipping cursor (`Cursor::moved`).
        ("bodypipe_ring_skip_drain", |pat, n| {
            let (mut w, r) = Builder::new().max_buffered(RING_MAX).build().unwrap();
            let (secs, fx) = timed_counted(|| {
                let mut i = 0;
                for_each_chunk(pat, (n * 64) as u64, 64, |c| {
                    w.write(c).unwrap();
                    i += 1;
                    if i % W64_BATCH == 0 {
                        r.skip(usize::MAX);
                    }
                });
            });
            drop((w, r));
            (secs, fx)
        }),
        // Unbounded, nobody reads: fresh memory (segments grow to 8 MiB, huge pages).
        ("bodypipe_unbounded", |pat, n| {
            let (mut w, r) = bodypipe::pipe();
            let out = timed_counted(|| for_each_chunk(pat, (n * 64) as u64, 64, |c| w.write(c).unwrap()));
            drop((w, r));
            out
        }),
        // The reference keeps every byte; start over every 1 MiB (keeping the allocation) so this
        // is hot memory too, like bodypipe_ring.
        ("reference", |pat, n| {
            let b = RefBuffer::new(None);
            let mut i = 0;
            timed_counted(|| {
                for_each_chunk(pat, (n * 64) as u64, 64, |c| {
                    b.write(c);
                    i += 1;
                    if i % W64_BATCH == 0 {
                        b.reset();
                    }
                })
            })
        }),
        ("crossbeam", |pat, n| {
            let (tx, rx) = crossbeam_channel::unbounded::<Vec<u8>>();
            let mut i = 0;
            timed_counted(|| {
                for_each_chunk(pat, (n * 64) as u64, 64, |c| {
                    tx.send(c.to_vec()).unwrap();
                    i += 1;
                    if i % W64_BATCH == 0 {
                        while rx.try_recv().is_ok() {}
                    }
                })
            })
        }),
        ("mpsc", |pat, n| {
            let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
            let mut i = 0;
            timed_counted(|| {
                for_each_chunk(pat, (n * 64) as u64, 64, |c| {
                    tx.send(c.to_vec()).unwrap();
                    i += 1;
                    if i % W64_BATCH == 0 {
                        while rx.try_recv().is_ok() {}
                    }
                })
            })
        }),
    ];
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); costs.len()];
    let mut fx: Vec<Vec<f64>> = vec![Vec::new(); costs.len()];
    eprintln!("writer cost: {n} x 64 B writes x {reps} reps");
    for _ in 0..reps {
        for (i, (name, f)) in costs.iter().enumerate() {
            beat(format!("writer cost {name}"));
            let (secs, _) = f(&pat, n);
            ns[i].push(secs * 1e9 / n as f64);
        }
    }
    set_counting(true);
    for (i, (_, f)) in costs.iter().enumerate() {
        let (_, futexes) = f(&pat, n);
        fx[i].push(futexes as f64 / n as f64);
    }
    set_counting(false);
    for (i, (name, _)) in costs.iter().enumerate() {
        res.put(format!("write64.{name}.ns_per_write"), median(&ns[i]), "ns");
        res.put(format!("write64.{name}.futex_per_write"), median(&fx[i]), "futex/write");
        res.samples.insert(format!("write64.{name}.ns_per_write"), ns[i].clone());
    }
}

fn timed_counted(f: impl FnOnce()) -> (f64, u64) {
    let start = Instant::now();
    let ((), n) = counted(f);
    (start.elapsed().as_secs_f64(), n)
}

// ---------------------------------------------------------------------------------------------
// Wake latency: reader parked (the writer waits `gap` first), writer writes one byte; time from
// just before the write to the reader's return, on one monotonic clock.
// ---------------------------------------------------------------------------------------------

struct Latency {
    /// ns, unsorted
    samples: Vec<u64>,
    /// futex calls by the writer thread per wake
    wfutex: f64,
}

/// Waits until `done` changes from `seen` (the reader has recorded its time).
fn await_ack(ack: &AtomicU64, seen: u64) -> u64 {
    loop {
        let v = ack.load(Ordering::Acquire);
        if v != seen {
            return v;
        }
        std::hint::spin_loop();
    }
}

fn pause(gap: Duration) {
    if gap >= Duration::from_micros(100) {
        thread::sleep(gap);
    } else {
        let t = Instant::now();
        while t.elapsed() < gap {
            std::hint::spin_loop();
        }
    }
}

/// Generic driver: `spawn_reader(base, t1, ack)` runs the reader loop on a new thread; `wake()`
/// is the write; `finish()` ends the reader.
fn latency_run(
    n: usize,
    gap: Duration,
    mut wake: impl FnMut(),
    reader: impl FnOnce(Instant, Arc<(AtomicU64, AtomicU64)>) + Send + 'static,
    finish: impl FnOnce(),
) -> Latency {
    let base = Instant::now();
    let shared = Arc::new((AtomicU64::new(0), AtomicU64::new(0))); // (t1 ns, ack count)
    let s2 = shared.clone();
    let h = thread::spawn(move || reader(base, s2));
    let mut samples = Vec::with_capacity(n);
    let c = FutexCounter::for_this_thread();
    let mut fx = 0u64;
    let mut acks = 0u64;
    // Warm up: a few untimed round trips.
    for i in 0..n + 20 {
        pause(gap);
        let f0 = c.as_ref().map_or(0, |c| c.read());
        let t0 = now_ns(base);
        wake();
        let f1 = c.as_ref().map_or(0, |c| c.read());
        acks = await_ack(&shared.1, acks);
        let t1 = shared.0.load(Ordering::Acquire);
        if i >= 20 {
            samples.push(t1.saturating_sub(t0));
            fx += f1 - f0;
        }
    }
    finish();
    h.join().unwrap();
    Latency { samples, wfutex: fx as f64 / n as f64 }
}

fn ack(base: Instant, s: &(AtomicU64, AtomicU64)) {
    s.0.store(now_ns(base), Ordering::Release);
    s.1.fetch_add(1, Ordering::Release);
}

fn lat_bodypipe(n: usize, gap: Duration) -> Latency {
    let (w, r) = bodypipe::pipe();
    let w = std::cell::RefCell::new(Some(w));
    latency_run(
        n,
        gap,
        || w.borrow_mut().as_mut().unwrap().write(b"x").unwrap(),
        move |base, s| {
            let mut b = [0u8; 1];
            while r.read_deadline(&mut b, None).unwrap() == 1 {
                ack(base, &s);
            }
        },
        || w.borrow_mut().take().unwrap().close().unwrap(),
    )
}

fn lat_reference(n: usize, gap: Duration) -> Latency {
    let b = Arc::new(RefBuffer::new(None));
    let rb = b.clone();
    latency_run(
        n,
        gap,
        || b.write(b"x"),
        move |base, s| {
            let mut buf = [0u8; 1];
            while rb.read(&mut buf) == 1 {
                ack(base, &s);
            }
        },
        || b.close(),
    )
}

fn lat_futex(n: usize, gap: Duration) -> Latency {
    let word = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (w2, s2) = (word.clone(), stop.clone());
    latency_run(
        n,
        gap,
        || {
            word.fetch_add(1, Ordering::Release);
            futex_wake(&word, 1);
        },
        move |base, s| {
            let mut seen = 0u32;
            loop {
                let mut v = w2.load(Ordering::Acquire);
                while v == seen {
                    futex_wait(&w2, seen);
                    v = w2.load(Ordering::Acquire);
                }
                seen = v;
                if s2.load(Ordering::Acquire) {
                    return;
                }
                ack(base, &s);
            }
        },
        || {
            stop.store(true, Ordering::Release);
            word.fetch_add(1, Ordering::Release);
            futex_wake(&word, 1);
        },
    )
}

fn wake_latency(res: &mut Results, scale: f64) {
    let n = ((2000.0 * scale) as usize).max(100);
    let batches = 5;
    type Lat = (&'static str, fn(usize, Duration) -> Latency, Duration);
    let parked = Duration::from_micros(300);
    let spinning = Duration::from_micros(3);
    let all: Vec<Lat> = vec![
        ("bodypipe", lat_bodypipe, parked),
        ("reference", lat_reference, parked),
        ("raw_futex", lat_futex, parked),
        ("bodypipe_spinning_reader", lat_bodypipe, spinning),
    ];
    eprintln!("wake latency: {n} samples per design, {batches} interleaved batches");
    let mut samples: Vec<Vec<u64>> = vec![Vec::new(); all.len()];
    for _ in 0..batches {
        for (i, (name, f, gap)) in all.iter().enumerate() {
            beat(format!("wake latency {name}"));
            let l = f(n / batches, *gap);
            samples[i].extend(l.samples);
        }
    }
    set_counting(true);
    let fx: Vec<f64> = all.iter().map(|(_, f, gap)| f(n / batches, *gap).wfutex).collect();
    set_counting(false);
    for (i, (name, _, _)) in all.iter().enumerate() {
        let s = &mut samples[i];
        s.sort_unstable();
        res.put(format!("wake.{name}.p50_us"), percentile(s, 0.5) as f64 / 1e3, "us");
        res.put(format!("wake.{name}.p99_us"), percentile(s, 0.99) as f64 / 1e3, "us");
        res.put(format!("wake.{name}.writer_futex_per_wake"), fx[i], "futex/wake");
    }
}

// ---------------------------------------------------------------------------------------------
// Memory, in child processes.
// ---------------------------------------------------------------------------------------------

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn heap_bytes() -> u64 {
    // SAFETY: mallinfo2 only reads allocator statistics.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as u64
}

/// Resets VmHWM to the current RSS (Linux >= 4.0).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn child(args: &[String]) {
    match args.first().map(String::as_str) {
        Some("idle") => {
            const N: usize = 10_000;
            type Make = fn() -> Box<dyn std::any::Any>;
            let kinds: [(&str, Make); 5] = [
                ("bodypipe_pipe", || Box::new(bodypipe::pipe())),
                ("bodypipe_ring_1MiB", || Box::new(Builder::new().max_buffered(RING_MAX).build().unwrap())),
                ("bodypipe_pipe_after_1B_write", || {
                    let (mut w, r) = bodypipe::pipe();
                    w.write(b"x").unwrap();
                    Box::new((w, r))
                }),
                ("reference", || Box::new(RefBuffer::new(None))),
                ("crossbeam_unbounded", || Box::new(crossbeam_channel::unbounded::<Vec<u8>>())),
            ];
            for (name, make) in kinds {
                let (h0, r0) = (heap_bytes(), status_kib("VmRSS:"));
                let v: Vec<Box<dyn std::any::Any>> = (0..N).map(|_| make()).collect();
                let (h1, r1) = (heap_bytes(), status_kib("VmRSS:"));
                // Heap bytes per pipe include the Box and the Vec slot (16 + 8 B): subtract them.
                let per_heap = (h1 - h0) as f64 / N as f64 - 24.0;
                println!("idle.{name}.heap_bytes {per_heap}");
                println!("idle.{name}.rss_bytes {}", (r1.saturating_sub(r0)) as f64 * 1024.0 / N as f64);
                drop(v);
            }
        }
        Some(mode @ ("ring" | "unbounded" | "reference")) => {
            let total: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(GIB);
            let chunk = 64 * KIB;
            let pat = Arc::new(pattern(chunk));
            // Touch everything the run needs before the baseline, then reset the peak.
            let warm = vec![1u8; READ_BUF];
            black_box(&warm);
            let base = status_kib("VmRSS:");
            reset_peak();
            let run = match mode {
                "ring" => stream_bodypipe(&pat, total, chunk, Builder::new().max_buffered(RING_MAX)),
                "unbounded" => stream_bodypipe(&pat, total, chunk, Builder::new()),
                _ => stream_reference(&pat, total, chunk),
            };
            let peak = status_kib("VmHWM:");
            println!("rss.{mode}.baseline_kib {base}");
            println!("rss.{mode}.peak_above_baseline_mib {}", peak.saturating_sub(base) as f64 / 1024.0);
            println!("rss.{mode}.GBps {}", total as f64 / run.secs / 1e9);
        }
        _ => panic!("unknown child {args:?}"),
    }
}

fn run_child(res: &mut Results, args: &[&str]) {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe).arg("--child").args(args).output().expect("spawn child");
    if !out.status.success() {
        res.notes.push(format!("child {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
        return;
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut it = line.split_whitespace();
        if let (Some(k), Some(v)) = (it.next(), it.next().and_then(|v| v.parse::<f64>().ok())) {
            let unit = if k.ends_with("_mib") {
                "MiB"
            } else if k.ends_with("GBps") {
                "GB/s"
            } else if k.ends_with("_kib") {
                "KiB"
            } else {
                "B"
            };
            res.put(k, v, unit);
        }
    }
}

fn memory(res: &mut Results, scale: f64) {
    eprintln!("memory: idle pipes, peak RSS streaming (child processes)");
    run_child(res, &["idle"]);
    let total = ((GIB as f64 * scale) as u64).max(64 << 20).to_string();
    for mode in ["ring", "unbounded", "reference"] {
        beat(format!("memory child {mode}"));
        run_child(res, &[mode, &total]);
    }
}

// ---------------------------------------------------------------------------------------------
// Sanity: the futex counter counts.
// ---------------------------------------------------------------------------------------------

fn counter_selftest(res: &mut Results) {
    set_counting(true);
    let word = AtomicU32::new(0);
    let ((), n) = counted(|| {
        for _ in 0..100 {
            futex_wake(&word, 1);
        }
    });
    set_counting(false);
    res.put("selftest.futex_counter_counts_100_wakes", n as f64, "futex");
    if n != 100 {
        res.notes.push(format!("futex counter unavailable or wrong ({n} of 100): futex counts are not valid"));
    }
}

// ---------------------------------------------------------------------------------------------
// Targets and output
// ---------------------------------------------------------------------------------------------

fn targets(res: &mut Results) {
    // Absolute targets, expressed as ratios against these so they sit in the same table.
    res.put("one", 1.0, "");
    res.put("eight_mib", 8.0, "MiB");
    let mut t = Vec::new();
    let mut ratio = |id: &'static str, what: &str, v: &str, b: &str, bound: f64, le: bool, unit: &'static str| {
        let (value, baseline) = (res.get(v), res.get(b));
        t.push(Target { id, what: what.to_owned(), value, baseline, ratio: value / baseline, bound, le, unit });
    };
    ratio(
        "ring64k_vs_hot_memcpy",
        "ring mode, 64 KiB chunks / hot memcpy",
        "stream.64KiB.bodypipe_ring.GBps",
        "stream.64KiB.memcpy_hot.GBps",
        0.7,
        false,
        "GB/s",
    );
    ratio(
        "unbounded64k_vs_fresh_memcpy",
        "unbounded, 64 KiB chunks / fresh-memory memcpy",
        "stream.64KiB.bodypipe_unbounded.GBps",
        "stream.64KiB.memcpy_fresh.GBps",
        1.0,
        false,
        "GB/s",
    );
    ratio(
        "s64_vs_reference",
        "64 B chunks (unbounded) / reference model",
        "stream.64B.bodypipe_unbounded.GBps",
        "stream.64B.reference.GBps",
        5.0,
        false,
        "GB/s",
    );
    ratio(
        "s64_vs_crossbeam",
        "64 B chunks (unbounded) / crossbeam-channel",
        "stream.64B.bodypipe_unbounded.GBps",
        "stream.64B.crossbeam.GBps",
        5.0,
        false,
        "GB/s",
    );
    ratio(
        "s64ring_vs_reference",
        "64 B chunks (ring) / reference model",
        "stream.64B.bodypipe_ring.GBps",
        "stream.64B.reference.GBps",
        5.0,
        false,
        "GB/s",
    );
    ratio(
        "s64ring_vs_crossbeam",
        "64 B chunks (ring) / crossbeam-channel",
        "stream.64B.bodypipe_ring.GBps",
        "stream.64B.crossbeam.GBps",
        5.0,
        false,
        "GB/s",
    );
    // Issue 12: ring mode against crossbeam-channel of owned chunks, both flavours: unbounded, and
    // bounded to the same memory in flight (1 MiB of chunks).
    for (id, what, v, b, bound) in [
        ("ring64k_vs_crossbeam", "ring, 64 KiB / crossbeam unbounded", "64KiB.bodypipe_ring", "64KiB.crossbeam", 1.0),
        (
            "ring64k_vs_crossbeam_bounded",
            "ring, 64 KiB / crossbeam bounded (1 MiB in flight)",
            "64KiB.bodypipe_ring",
            "64KiB.crossbeam_bounded_1MiB",
            1.0,
        ),
        ("ring64B_vs_crossbeam", "ring, 64 B / crossbeam unbounded", "64B.bodypipe_ring", "64B.crossbeam", 3.0),
        (
            "ring64B_vs_crossbeam_bounded",
            "ring, 64 B / crossbeam bounded (1 MiB in flight)",
            "64B.bodypipe_ring",
            "64B.crossbeam_bounded_1MiB",
            3.0,
        ),
    ] {
        ratio(id, what, &format!("stream.{v}.GBps"), &format!("stream.{b}.GBps"), bound, false, "GB/s");
    }
    // Issue 12: a reader blocked in read(65536) fed by 64 B writes.
    ratio(
        "read64k_vs_reference",
        "read(64 KiB) fed by 64 B writes (unbounded) / reference model",
        "read64k.bodypipe_unbounded.GBps",
        "read64k.reference.GBps",
        2.0,
        false,
        "GB/s",
    );
    ratio(
        "read64k_wakes_per_read",
        "wake syscalls per read(64 KiB) call, 64 B writes (at most 1)",
        "read64k.bodypipe_unbounded.writer_futex_per_read",
        "one",
        1.0,
        true,
        "futex/read",
    );
    ratio(
        "wake_p50_vs_futex",
        "wake latency p50 / raw futex p50",
        "wake.bodypipe.p50_us",
        "wake.raw_futex.p50_us",
        1.2,
        true,
        "us",
    );
    ratio(
        "no_wake_syscall",
        "futex calls per 64 B write, no reader parked (must be 0)",
        "write64.bodypipe_ring.futex_per_write",
        "one",
        0.0,
        true,
        "futex/write",
    );
    ratio(
        "ring_rss",
        "ring mode 1 GiB peak RSS above baseline / 8 MiB",
        "rss.ring.peak_above_baseline_mib",
        "eight_mib",
        1.0,
        true,
        "MiB",
    );
    res.targets = t;
}

fn machine() -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("?");
    m.insert("cpu_model", model.trim().to_owned());
    m.insert("cpus", thread::available_parallelism().map_or(0, |n| n.get()).to_string());
    m.insert("kernel", std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned());
    m.insert(
        "thp",
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default().trim().to_owned(),
    );
    let hyp = if cpuinfo.contains(" hypervisor") { "yes" } else { "no" };
    m.insert("virtualized", hyp.to_owned());
    if let Ok(o) = std::process::Command::new("rustc").arg("-V").output() {
        m.insert("rustc", String::from_utf8_lossy(&o.stdout).trim().to_owned());
    }
    m
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".to_owned()
    }
}

fn write_json(res: &Results, path: &str, reps: usize, scale: f64, secs: f64) {
    let mut o = String::from("{\n");
    let _ = writeln!(o, "  \"suite\": \"bodypipe issue-5 benchmarks\",");
    let _ = writeln!(o, "  \"reps\": {reps}, \"scale\": {scale}, \"wall_seconds\": {secs:.1},");
    o.push_str("  \"machine\": {");
    let mach: Vec<String> = machine().iter().map(|(k, v)| format!("{}: {}", json_str(k), json_str(v))).collect();
    o.push_str(&mach.join(", "));
    o.push_str("},\n  \"metrics\": {\n");
    let ms: Vec<String> = res
        .metrics
        .iter()
        .map(|(k, (v, u))| format!("    {}: {{\"value\": {}, \"unit\": {}}}", json_str(k), json_num(*v), json_str(u)))
        .collect();
    o.push_str(&ms.join(",\n"));
    o.push_str("\n  },\n  \"samples\": {\n");
    let ss: Vec<String> = res
        .samples
        .iter()
        .map(|(k, v)| {
            let xs: Vec<String> = v.iter().map(|x| json_num(*x)).collect();
            format!("    {}: [{}]", json_str(k), xs.join(", "))
        })
        .collect();
    o.push_str(&ss.join(",\n"));
    o.push_str("\n  },\n  \"targets\": [\n");
    let ts: Vec<String> = res
        .targets
        .iter()
        .map(|t| {
            format!(
                "    {{\"id\": {}, \"what\": {}, \"value\": {}, \"baseline\": {}, \"ratio\": {}, \"bound\": {}, \"cmp\": {}, \"unit\": {}, \"met\": {}}}",
                json_str(t.id),
                json_str(&t.what),
                json_num(t.value),
                json_num(t.baseline),
                json_num(t.ratio),
                t.bound,
                json_str(if t.le { "<=" } else { ">=" }),
                json_str(t.unit),
                t.met()
            )
        })
        .collect();
    o.push_str(&ts.join(",\n"));
    o.push_str("\n  ],\n  \"notes\": [");
    let ns: Vec<String> = res.notes.iter().map(|n| json_str(n)).collect();
    o.push_str(&ns.join(", "));
    o.push_str("]\n}\n");
    if let Some(dir) = std::path::Path::new(path).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(path, o).expect("write json");
}

fn print_tables(res: &Results) {
    println!("\n== Streaming throughput (GB/s, median; writer thread -> reader read(64 KiB)) ==");
    let names: Vec<&str> = designs().iter().map(|d| d.0).collect();
    print!("{:<24}", "design");
    for s in ["64B", "1KiB", "16KiB", "64KiB"] {
        print!("{s:>10}");
    }
    println!("{:>14}", "Mwrites/s@64B");
    for n in &names {
        print!("{n:<24}");
        for s in ["64B", "1KiB", "16KiB", "64KiB"] {
            print!("{:>10.3}", res.get(&format!("stream.{s}.{n}.GBps")));
        }
        println!("{:>14.2}", res.get(&format!("stream.64B.{n}.Mwrites_per_s")));
    }
    println!(
        "\n== read(64 KiB) fed by 64 B writes: GB/s, wake syscalls (writer) and futex calls (reader) per read call =="
    );
    for n in ["bodypipe_unbounded", "bodypipe_ring", "reference"] {
        println!(
            "{n:<24}{:>10.3} GB/s {:>10.3} wakes/read {:>10.3} reader futex/read {:>8} reads",
            res.get(&format!("read64k.{n}.GBps")),
            res.get(&format!("read64k.{n}.writer_futex_per_read")),
            res.get(&format!("read64k.{n}.reader_futex_per_read")),
            res.get(&format!("read64k.{n}.read_calls")),
        );
    }
    println!("\n== futex calls per write while streaming 64 B (writer / reader thread) ==");
    for n in ["bodypipe_ring", "bodypipe_unbounded", "reference", "crossbeam", "mpsc"] {
        println!(
            "{n:<24}{:>10.4} /{:>10.4}",
            res.get(&format!("stream.64B.{n}.writer_futex_per_write")),
            res.get(&format!("stream.64B.{n}.reader_futex_per_write"))
        );
    }
    println!("\n== Writer cost, 64 B writes, no reader parked (one thread) ==");
    for n in ["bodypipe_ring", "bodypipe_ring_skip_drain", "bodypipe_unbounded", "reference", "crossbeam", "mpsc"] {
        println!(
            "{n:<26}{:>8.2} ns/write {:>10.4} futex/write",
            res.get(&format!("write64.{n}.ns_per_write")),
            res.get(&format!("write64.{n}.futex_per_write"))
        );
    }
    println!("\n== Wake latency, write(1 byte) -> reader returns ==");
    for n in ["bodypipe", "reference", "raw_futex", "bodypipe_spinning_reader"] {
        println!(
            "{n:<26} p50 {:>7.2} us  p99 {:>7.2} us  writer futex/wake {:.2}",
            res.get(&format!("wake.{n}.p50_us")),
            res.get(&format!("wake.{n}.p99_us")),
            res.get(&format!("wake.{n}.writer_futex_per_wake"))
        );
    }
    println!("\n== Memory ==");
    for (k, (v, u)) in res.metrics.iter().filter(|(k, _)| k.starts_with("idle.") || k.starts_with("rss.")) {
        println!("{k:<48}{v:>12.1} {u}");
    }
    println!("\n== Targets (ratios measured in this run) ==");
    for t in &res.targets {
        println!(
            "{:<4} {:<58} {:>10.3} / {:>10.3} = {:>7.3}  (target {} {})",
            if t.met() { "MET" } else { "MISS" },
            t.what,
            t.value,
            t.baseline,
            t.ratio,
            if t.le { "<=" } else { ">=" },
            t.bound
        );
    }
    for n in &res.notes {
        println!("note: {n}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1..]);
        return;
    }
    let reps = env_f64("BENCH_REPS", 5.0).max(1.0) as usize;
    let scale = env_f64("BENCH_SCALE", 1.0);
    let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| "bench-results/bench.json".to_owned());
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let want = |s: &str| only.is_empty() || only.split(',').any(|o| o == s);
    let start = Instant::now();
    start_watchdog();
    let mut res = Results::default();
    counter_selftest(&mut res);
    if want("writer") {
        writer_cost(&mut res, reps, scale);
    }
    if want("wake") {
        wake_latency(&mut res, scale);
    }
    if want("stream") {
        throughput(&mut res, reps, scale);
    }
    if want("read64k") {
        read64k(&mut res, reps, scale);
    }
    if want("memory") {
        memory(&mut res, scale);
    }
    targets(&mut res);
    let secs = start.elapsed().as_secs_f64();
    print_tables(&res);
    write_json(&res, &out, reps, scale, secs);
    println!("\nwrote {out} ({secs:.0} s)");
}
