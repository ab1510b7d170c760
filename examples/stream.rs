//! Streams a body from a producer thread to a reader thread and reports what it measured.
//!
//! `cargo run --release --example stream -- [MiB] [chunk_bytes]` (defaults: 1024 MiB, 65536).
//! Runs the same body three ways: unbounded with an unknown length, unbounded with the content
//! length known, and ring mode with a 1 MiB high-water mark; checks a checksum on both sides and
//! prints throughput and peak memory.

use bodypipe::{Builder, WriteError};
use std::io::Read;
use std::time::Instant;

/// FNV-1a over 8-byte words: cheap enough not to dominate, strong enough to catch a lost,
/// duplicated or reordered chunk.
fn checksum(mut h: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(0x100_0000_01b3);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run(label: &str, builder: Builder, total: u64, chunk: usize) -> Result<(), Box<dyn std::error::Error>> {
    let (mut w, r) = builder.build()?;
    let producer = std::thread::spawn(move || -> Result<(u64, u64), String> {
        // A pseudo-random pattern made once, written from rotating offsets: the producer
        // should cost what a server's socket reads cost, not what generating bytes costs.
        const PATTERN: usize = 1 << 20;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let pattern: Vec<u8> = (0..PATTERN + chunk)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (seed >> 56) as u8
            })
            .collect();
        let mut sent = 0u64;
        let mut sum = 0xcbf2_9ce4_8422_2325;
        let mut full_waits = 0u64;
        let mut off = 0usize;
        while sent < total {
            let n = chunk.min((total - sent) as usize);
            let data = &pattern[off..off + n];
            off = (off + n) % PATTERN;
            loop {
                match w.write(data) {
                    Ok(()) => break,
                    Err(WriteError::Full) => {
                        full_waits += 1;
                        w.wait_writable(None).map_err(|e| e.to_string())?;
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            sum = checksum(sum, data);
            sent += n as u64;
        }
        w.close().map_err(|e| e.to_string())?;
        Ok((sum, full_waits))
    });
    let start = Instant::now();
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0u64;
    let mut sum = 0xcbf2_9ce4_8422_2325;
    loop {
        let n = (&r).read(&mut buf)?;
        if n == 0 {
            break;
        }
        sum = checksum(sum, &buf[..n]);
        got += n as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    let (sent_sum, full_waits) = producer.join().map_err(|_| "producer panicked")??;
    let ok = if sent_sum == sum && got == total { "checksum ok" } else { "CHECKSUM MISMATCH" };
    println!(
        "{label:<34} {:>7.0} MiB in {secs:>6.3} s = {:>6.2} GB/s  ({ok}; writer waited for room {full_waits} times; peak RSS {} MiB)",
        got as f64 / (1 << 20) as f64,
        got as f64 / secs / 1e9,
        peak_rss_kib().map_or(0, |k| k / 1024),
    );
    if sent_sum != sum || got != total {
        return Err("checksum mismatch".into());
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1024);
    let chunk: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(64 << 10);
    let total = mib << 20;
    println!("bodypipe: streaming a {mib} MiB body in {chunk}-byte writes from a writer thread to a reader thread");
    // Ring mode first, so its peak RSS is not hidden by the unbounded runs' high-water mark.
    run("ring mode, max_buffered = 1 MiB", Builder::new().max_buffered(1 << 20).max_size(total), total, chunk)?;
    run("unbounded, unknown length", Builder::new().max_size(total), total, chunk)?;
    run("unbounded, content_length known", Builder::new().content_length(total).max_size(total), total, chunk)?;
    Ok(())
}
