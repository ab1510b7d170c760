//! Feeds a ring-mode pipe from a tokio task, with backpressure, while a reader thread consumes.
//!
//! `cargo run --release --example tokio_ring -- [MiB] [chunk_bytes]` (defaults: 256 MiB, 65536).
//!
//! The producer is an async task on a current-thread tokio runtime, as a server's connection task
//! would be: it writes each chunk with `Writer::write`, and when the ring is full (`Full`) it
//! awaits `Writer::writable()`, which parks the task (not the thread) until the reader's thread
//! frees half the ring. The core knows nothing of tokio: `poll_writable` is plain `std::task`.
//! Both sides checksum the bytes; the example prints throughput, how many times the task waited
//! and the peak memory, which stays near the 1 MiB high-water mark whatever the body's size.

use bodypipe::{Builder, WriteError};
use std::io::Read;
use std::time::Instant;

/// Sum of the bytes, each weighted by its position in the stream, on both sides: cheap, and it
/// catches a lost, duplicated or reordered chunk.
fn checksum((mut h, mut at): (u64, u64), data: &[u8]) -> (u64, u64) {
    for &b in data {
        at += 1;
        h = h.wrapping_add(u64::from(b).wrapping_mul(at));
    }
    (h, at)
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().map_or(Ok(256), |a| a.parse())?;
    let chunk: usize = args.next().map_or(Ok(65536), |a| a.parse())?;
    if chunk == 0 {
        return Err("chunk_bytes must be at least 1".into());
    }
    let total = mib << 20;
    let (mut w, r) = Builder::new().max_buffered(1 << 20).build()?;

    let reader = std::thread::spawn(move || -> std::io::Result<(u64, (u64, u64))> {
        let (mut sum, mut got) = ((0u64, 0u64), 0u64);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = (&r).read(&mut buf)?;
            if n == 0 {
                return Ok((got, sum));
            }
            sum = checksum(sum, &buf[..n]);
            got += n as u64;
        }
    });

    let t0 = Instant::now();
    let producer = tokio::spawn(async move {
        let data: Vec<u8> = (0..chunk).map(|i| (i.wrapping_mul(31) ^ (i >> 7)) as u8).collect();
        let (mut sum, mut sent, mut waits) = ((0u64, 0u64), 0u64, 0u64);
        while sent < total {
            let n = usize::try_from(total - sent).map_or(chunk, |left| left.min(chunk));
            match w.write(&data[..n]) {
                Ok(()) => {
                    sum = checksum(sum, &data[..n]);
                    sent += n as u64;
                }
                Err(WriteError::Full) => {
                    waits += 1;
                    w.writable().await?;
                }
                Err(e) => return Err(Box::<dyn std::error::Error + Send + Sync>::from(e)),
            }
        }
        w.close()?;
        Ok((sent, sum, waits))
    });
    let (sent, sent_sum, waits) = producer.await?.map_err(|e| e.to_string())?;
    let (got, got_sum) = reader.join().map_err(|_| "reader thread panicked")??;
    let secs = t0.elapsed().as_secs_f64();
    if (got, got_sum) != (sent, sent_sum) {
        return Err(format!("mismatch: sent {sent} bytes (sum {sent_sum:?}), got {got} (sum {got_sum:?})").into());
    }
    println!(
        "tokio task -> ring (max_buffered 1 MiB) -> reader thread: {:.0} MiB in {chunk}-byte writes, {:.2} GB/s, \
         checksums match, the task awaited writable() {waits} times, peak RSS {} KiB",
        sent as f64 / f64::from(1 << 20),
        sent as f64 / secs / 1e9,
        peak_rss_kib().map_or_else(|| "?".to_owned(), |k| k.to_string()),
    );
    Ok(())
}
