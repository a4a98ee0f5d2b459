//! Hot-path benchmarks for key placement: ring lookups and key hashing.
//!
//! `route()` runs once per key of every request, so it must stay far below a network
//! round trip; the target is < 50 ns even for 1000 servers (160,000 ketama points, which
//! no longer fit in L2). Lookups cycle through a table of pseudo-random hashes so the
//! numbers include realistic cache misses rather than one hot cache line.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardproxy::hash::HashKind;
use shardproxy::ring::{default_server_name, twemproxy_order, Distribution, Ring, RingNode};
use std::hint::black_box;

/// Pseudo-random probe hashes (xorshift32), shared by every lookup benchmark.
fn probes() -> Vec<u32> {
    let mut x = 0x1234_5678u32;
    (0..1 << 16)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        })
        .collect()
}

/// Names of `n` servers, sorted as twemproxy sorts them.
fn server_names(n: usize) -> Vec<String> {
    let names: Vec<String> = (0..n)
        .map(|i| default_server_name(&format!("10.1.{}.{}", i / 250, i % 250), 11311))
        .collect();
    let bytes: Vec<&[u8]> = names.iter().map(|s| s.as_bytes()).collect();
    twemproxy_order(&bytes)
        .into_iter()
        .map(|i| names[i].clone())
        .collect()
}

fn bench_route(c: &mut Criterion) {
    let hashes = probes();
    let mut group = c.benchmark_group("route");
    group.throughput(Throughput::Elements(1));
    for servers in [10usize, 1000] {
        let names = server_names(servers);
        let nodes = RingNode::equal(&names);
        for dist in [Distribution::Ketama, Distribution::Modula] {
            let ring = Ring::build(dist, &nodes);
            let mut i = 0usize;
            group.bench_function(format!("{}/{servers}", dist.name()), |b| {
                b.iter(|| {
                    i = (i + 1) & (hashes.len() - 1);
                    black_box(ring.route(black_box(hashes[i])))
                })
            });
        }
    }
    group.finish();
}

fn bench_hash(c: &mut Criterion) {
    let key = b"user:1234567:profile"; // 20 bytes
    let mut group = c.benchmark_group("hash_20b");
    group.throughput(Throughput::Bytes(key.len() as u64));
    for kind in [HashKind::Fnv1a_64, HashKind::Md5] {
        group.bench_function(kind.name(), |b| {
            b.iter(|| black_box(kind.hash(black_box(&key[..]))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_route, bench_hash);
criterion_main!(benches);
