//! Codec micro-benchmarks: parsing client requests and framing backend replies.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardproxy::protocol::memcache::{self, Expect, Limits, Parsed};

fn parse_requests(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("memcache_parse");
    let get = b"get user:1234567890\r\n";
    g.throughput(Throughput::Elements(1));
    g.bench_function("get_1_key", |b| {
        b.iter(|| match memcache::parse(black_box(get), &limits) {
            Parsed::Request(r, n) => black_box((r.keys.len(), n)),
            _ => unreachable!(),
        })
    });
    let multi: Vec<u8> = {
        let mut v = b"get".to_vec();
        for i in 0..10 {
            v.extend_from_slice(format!(" user:{i:010}").as_bytes());
        }
        v.extend_from_slice(b"\r\n");
        v
    };
    g.bench_function("get_10_keys", |b| {
        b.iter(|| match memcache::parse(black_box(&multi), &limits) {
            Parsed::Request(r, n) => black_box((r.keys.len(), n)),
            _ => unreachable!(),
        })
    });
    let mut set = b"set user:1234567890 0 3600 100\r\n".to_vec();
    set.extend_from_slice(&[b'x'; 100]);
    set.extend_from_slice(b"\r\n");
    g.bench_function("set_100_bytes", |b| {
        b.iter(|| match memcache::parse(black_box(&set), &limits) {
            Parsed::Request(r, n) => black_box((r.data.len(), n)),
            _ => unreachable!(),
        })
    });
    g.bench_function("encode_set_100_bytes", |b| {
        let Parsed::Request(req, _) = memcache::parse(&set, &limits) else {
            unreachable!()
        };
        let mut out = BytesMut::with_capacity(4096);
        b.iter(|| {
            out.clear();
            memcache::encode_keyed(black_box(&req), &set, &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

fn frame_replies(c: &mut Criterion) {
    let mut g = c.benchmark_group("memcache_frame_reply");
    let mut hit = b"VALUE user:1234567890 0 100\r\n".to_vec();
    hit.extend_from_slice(&[b'x'; 100]);
    hit.extend_from_slice(b"\r\nEND\r\n");
    g.bench_function("get_hit_100_bytes", |b| {
        b.iter(|| memcache::frame_reply(black_box(&hit), Expect::Values, 1 << 20))
    });
    g.bench_function("stored", |b| {
        b.iter(|| memcache::frame_reply(black_box(b"STORED\r\n"), Expect::Storage, 0))
    });
    g.finish();
}

criterion_group!(benches, parse_requests, frame_replies);
criterion_main!(benches);
