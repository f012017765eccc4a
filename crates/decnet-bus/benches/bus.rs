//! Micro-benchmarks of the daemon's per-event work: frame codec, envelope
//! build, and subscription matching against 10,000 patterns.
//!
//! `cargo bench -p decnet-bus --bench bus` (HTML reports under target/criterion).

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use decnet_bus::envelope::build_envelope;
use decnet_bus::frame::{encode_frame, Frame, FrameSpan, RawFrame, Scan, Verb};
use decnet_bus::index::SubscriptionIndex;
use decnet_bus::json_scan;

/// A 128-byte PUB body, like the benchmark workload.
fn body_128() -> Vec<u8> {
    let mut b = br#"{"type":"bench","payload":{"t":"00000000001234567890","pad":""#.to_vec();
    b.resize(125, b'x');
    b.extend_from_slice(br#""}}"#);
    b
}

/// A 128-byte PUB body of numbers, as a prober or profiler sends them.
fn body_numeric() -> Vec<u8> {
    let mut b =
        br#"{"type":"bench","payload":{"ts":1732345678.123456,"port":443,"score":0.875,"n":[1,-2,3.5e-3,42,1e10,7,"#
            .to_vec();
    while b.len() < 124 {
        b.extend_from_slice(b"9,");
    }
    b.extend_from_slice(b"0]}}");
    b
}

fn frames(c: &mut Criterion) {
    let body = body_128();
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode PUB 128B", |b| {
        let mut out = BytesMut::with_capacity(4096);
        b.iter(|| {
            out.clear();
            encode_frame(Verb::Pub, black_box("attacker.observed"), black_box(&body), &mut out).unwrap();
        })
    });
    let mut one = BytesMut::new();
    encode_frame(Verb::Pub, "attacker.observed", &body, &mut one).unwrap();
    // 256 frames back to back, as a socket read delivers them.
    let mut batch = BytesMut::new();
    for _ in 0..256 {
        batch.extend_from_slice(&one);
    }
    let batch = batch.freeze();
    g.throughput(Throughput::Elements(256));
    g.bench_function("scan 256 x PUB 128B (FrameSpan, daemon path: in place)", |b| {
        b.iter(|| {
            let buf = &batch[..];
            let mut at = 0;
            while let Scan::Frame(span) = FrameSpan::scan(&buf[at..]).unwrap() {
                black_box(span.arg_str(&buf[at..]));
                at += span.len;
            }
        })
    });
    g.bench_function("decode 256 x PUB 128B (RawFrame, a Bytes per frame)", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&batch[..]);
            while let Some(f) = RawFrame::parse(&mut buf).unwrap() {
                black_box(f);
            }
        })
    });
    g.bench_function("decode 256 x PUB 128B (Frame, owned arg)", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&batch[..]);
            while let Some(f) = Frame::parse(&mut buf).unwrap() {
                black_box(f);
            }
        })
    });
    g.finish();
}

fn envelope(c: &mut Criterion) {
    let body = body_128();
    let mut g = c.benchmark_group("envelope");
    g.throughput(Throughput::Elements(1));
    g.bench_function("build from 128B PUB body", |b| {
        let mut out = BytesMut::with_capacity(4096);
        b.iter(|| {
            out.clear();
            build_envelope(black_box("attacker.observed"), black_box(&body), &mut out).unwrap();
        })
    });
    // The two ways the daemon validates a body: the scanner's fast path,
    // and serde_json, which decides whatever the scanner leaves undecided.
    // (An ASCII body needs no separate UTF-8 pass on the fast path.)
    g.bench_function("validate 128B PUB body: json_scan", |b| {
        b.iter(|| black_box(json_scan::scan(black_box(&body)).unwrap()))
    });
    // Numbers are where the orjson-compatibility check (finite in f64)
    // adds work: a body of mostly numbers, two with an exponent.
    let numeric = body_numeric();
    g.bench_function("validate 128B numeric PUB body: json_scan", |b| {
        b.iter(|| black_box(json_scan::scan(black_box(&numeric)).unwrap()))
    });
    g.bench_function("validate 128B PUB body: serde_json RawValue", |b| {
        #[derive(serde::Deserialize)]
        struct PubBody<'a> {
            #[serde(rename = "type", borrow, default)]
            _event_type: Option<&'a serde_json::value::RawValue>,
            #[serde(rename = "payload", borrow, default)]
            _payload: Option<&'a serde_json::value::RawValue>,
        }
        b.iter(|| {
            let text = std::str::from_utf8(black_box(&body)).unwrap();
            black_box(serde_json::from_str::<PubBody<'_>>(text).unwrap())
        })
    });
    g.finish();
}

/// 10,000 patterns over 10 keys (connections), none matching `bench.load`,
/// plus one subscriber that does.
fn index_10k() -> SubscriptionIndex<u64> {
    let mut idx = SubscriptionIndex::new();
    for c in 0..10u64 {
        for p in 0..1000 {
            let pattern = match p % 4 {
                0 => format!("idle.c{c}.p{p}.*"),
                1 => format!("idle.c{c}.p{p}.>"),
                _ => format!("idle.c{c}.p{p}"),
            };
            idx.insert(c, &pattern);
        }
    }
    idx.insert(100, "bench.load");
    idx
}

fn matching(c: &mut Criterion) {
    let mut g = c.benchmark_group("index 10k patterns");
    g.throughput(Throughput::Elements(1));
    let idx = index_10k();
    g.bench_function("hit, cached", |b| b.iter(|| black_box(idx.lookup(black_box("bench.load")))));
    g.bench_function("miss, cached", |b| b.iter(|| black_box(idx.lookup(black_box("other.topic.x")))));
    let idx = index_10k();
    g.bench_function("hit, uncached", |b| b.iter(|| black_box(idx.lookup_uncached(black_box("bench.load")))));
    g.bench_function("miss, uncached", |b| b.iter(|| black_box(idx.lookup_uncached(black_box("other.topic.x")))));
    g.bench_function("deep miss under idle.c3, uncached", |b| {
        b.iter(|| black_box(idx.lookup_uncached(black_box("idle.c3.p999999.z"))))
    });
    g.finish();
}

criterion_group!(benches, frames, envelope, matching);
criterion_main!(benches);
