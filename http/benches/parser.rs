//! What the strict parser costs: chunked decoding into a `Writer` against writing the same
//! body bytes plainly (the baseline, same run, same pipe kind), by chunk size; and parsing a
//! typical browser head. `cargo bench -p bodypipe-http --bench parser`.

use bodypipe::Builder;
use bodypipe_http::{parse_head, ChunkedDecoder, ChunkedLimits, HeadLimits, Parsed, Progress};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

const BODY: usize = 8 << 20;
/// Socket-sized feeds, as the Erlang side gets them.
const FEED: usize = 64 << 10;

fn encode(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / chunk * 12 + 16);
    for c in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn chunked(c: &mut Criterion) {
    let body: Vec<u8> = (0..BODY).map(|i| (i * 31 % 251) as u8).collect();
    let mut g = c.benchmark_group("chunked_decode_8MiB");
    g.throughput(Throughput::Bytes(BODY as u64));
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("baseline_plain_writes_64KiB", |b| {
        b.iter_batched(
            || Builder::new().max_size(u64::MAX).build().unwrap(),
            |(mut w, r)| {
                for piece in body.chunks(FEED) {
                    w.write(black_box(piece)).unwrap();
                }
                (w, r)
            },
            BatchSize::PerIteration,
        )
    });
    for chunk in [64 << 10, 4 << 10, 256, 16] {
        let input = encode(&body, chunk);
        g.bench_function(format!("chunks_of_{chunk}B_in_64KiB_feeds"), |b| {
            b.iter_batched(
                || Builder::new().max_size(u64::MAX).build().unwrap(),
                |(mut w, r)| {
                    let mut d = ChunkedDecoder::new(ChunkedLimits::default());
                    for piece in input.chunks(FEED) {
                        match d.feed(black_box(piece), &mut w).unwrap() {
                            Progress::More | Progress::Done { .. } => {}
                            Progress::Full { .. } => unreachable!("unbounded"),
                        }
                    }
                    assert!(d.is_done());
                    (w, r)
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn head(c: &mut Criterion) {
    let req = b"POST /upload/file?name=report.pdf&x=1 HTTP/1.1\r\n\
Host: example.com:8080\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Content-Type: application/octet-stream\r\n\
Content-Length: 65536\r\n\
Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n\
Connection: keep-alive\r\n\
\r\n";
    let mut g = c.benchmark_group("parse_head");
    g.throughput(Throughput::Bytes(req.len() as u64));
    g.bench_function(format!("typical_{}B_10_fields", req.len()), |b| {
        b.iter(|| match parse_head(black_box(req), &HeadLimits::default()) {
            Ok(Parsed::Complete(h)) => h.len,
            other => panic!("{other:?}"),
        })
    });
    g.finish();
}

criterion_group!(benches, chunked, head);
criterion_main!(benches);
