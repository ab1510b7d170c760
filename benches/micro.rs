//! Criterion micro-benchmarks: single-thread costs of the hot operations, bodypipe against the
//! reference model and crossbeam-channel. The cross-design ratios of issue 5 come from the
//! `suite` driver (one run, interleaved); these give criterion's confidence intervals for the
//! per-operation costs. `cargo bench -p bodypipe --bench micro`.

mod common;

use bodypipe::Builder;
use common::*;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

const MIB: usize = 1 << 20;

fn write_64b(c: &mut Criterion) {
    let mut g = c.benchmark_group("write_64B_no_reader_parked");
    g.throughput(Throughput::Elements(1));
    let data = [7u8; 64];
    {
        let (mut w, r) = Builder::new().max_buffered(MIB).max_size(u64::MAX).build().unwrap();
        let mut i = 0u32;
        let mut buf = vec![0u8; 64 << 10];
        g.bench_function("bodypipe_ring", |b| {
            b.iter(|| {
                w.write(black_box(&data)).unwrap();
                i += 1;
                // Drain with try_read (skip() does not recycle segments: see the bench report).
                if i % (16 << 10) == 0 {
                    while r.try_read(&mut buf).unwrap_or(0) > 0 {}
                }
            })
        });
    }
    {
        let b0 = RefBuffer::new(None);
        let mut n = 0usize;
        g.bench_function("reference", |b| {
            b.iter(|| {
                b0.write(black_box(&data));
                n += 1;
                // The reference keeps every byte: start over every 1 MiB (keeping the allocation)
                // so the loop measures writes, not unbounded growth.
                if n % (16 << 10) == 0 {
                    b0.reset();
                }
            })
        });
    }
    {
        let (tx, rx) = crossbeam_channel::unbounded::<Vec<u8>>();
        let mut n = 0usize;
        g.bench_function("crossbeam_send_vec", |b| {
            b.iter(|| {
                tx.send(black_box(&data).to_vec()).unwrap();
                n += 1;
                if n % (16 << 10) == 0 {
                    while rx.try_recv().is_ok() {}
                }
            })
        });
    }
    g.finish();
}

fn read_64k(c: &mut Criterion) {
    let mut g = c.benchmark_group("write_then_read_64KiB_one_thread");
    g.throughput(Throughput::Bytes(64 << 10));
    let data = vec![3u8; 64 << 10];
    let mut out = vec![0u8; 64 << 10];
    {
        let (mut w, r) = Builder::new().max_buffered(MIB).max_size(u64::MAX).build().unwrap();
        g.bench_function("bodypipe_ring", |b| {
            b.iter(|| {
                w.write(&data).unwrap();
                black_box(r.try_read(&mut out).unwrap());
            })
        });
    }
    g.bench_function("reference_fresh_each_64KiB", |b| {
        b.iter_batched(
            || RefBuffer::new(None),
            |rb| {
                rb.write(&data);
                black_box(rb.read(&mut out));
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn find_boundary(c: &mut Criterion) {
    let mut g = c.benchmark_group("find_boundary_16MiB");
    let total = 16 * MIB;
    g.throughput(Throughput::Bytes(total as u64));
    let needle = b"\r\n--------------------------boundary1234567890";
    let mut body = pattern(0);
    body.truncate(MIB);
    let body: Vec<u8> = body.iter().cycle().take(total).map(|b| b | 0x80).collect();
    let (mut w, r) = bodypipe::pipe();
    for chunk in body.chunks(64 << 10) {
        w.write(chunk).unwrap();
    }
    g.bench_function("bodypipe_reader_find", |b| b.iter(|| black_box(r.find(needle, 0, None))));
    g.bench_function("memmem_on_slice", |b| b.iter(|| black_box(memchr::memmem::find(&body, needle))));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = write_64b, read_64k, find_boundary
}
criterion_main!(benches);
