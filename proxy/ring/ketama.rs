//! The ketama continuum, exactly as twemproxy 0.5.0 builds it (`src/hashkit/nc_ketama.c`).
//!
//! Build (over the *live* servers only, in server index order):
//! 1. `pct = weight / total_live_weight` and the point count
//!    `floorf(pct * 160 / 4 * n_live + 1e-10) * 4`, see [`points_per_server`];
//! 2. for `i` in `0..points/4`, the MD5 digest of `"<name>-<i>"` yields four points, its
//!    four little-endian 32-bit words;
//! 3. all points are sorted by value.
//!
//! Lookup is a lower bound: the first point whose value is `>= hash`, wrapping around to
//! the first point when the hash is above every point.
//!
//! **Ties.** twemproxy sorts with `qsort` comparing values only, so the order of equal
//! values is up to libc. glibc's `qsort` (what nutcracker builds use) is a merge sort for
//! arrays of this size, which is stable: equal points stay in insertion order, i.e. by
//! ascending server index. We sort by `(value, server index)`, which reproduces that, and
//! is deterministic whatever the input. (A tie needs two MD5 words to collide, so it is
//! rare: about one ring in 4,000 at 480 points.)
//!
//! **Long names.** twemproxy formats the point string into an 86-byte buffer with
//! `snprintf` but hashes as many bytes as `snprintf` *would* have written. For a string of
//! exactly 86 bytes that means the first 85 bytes plus the terminating NUL, which we
//! reproduce; longer strings make twemproxy read past its buffer (undefined behaviour),
//! and there we hash the full string.
//!
//! **Speed.** A plain binary search over 160k points (1000 servers) misses the cache at
//! almost every step. We add a bucket index over the top bits of the hash that narrows the
//! search to the few points sharing the hash's bucket; the result is the same lower bound.

use super::RingNode;
use crate::hash::{digest_word, md5_digest};
use std::io::Write;

/// Points per server at equal weights (40 MD5 digests × 4 words).
pub const KETAMA_POINTS_PER_SERVER: u32 = 160;

/// Size of twemproxy's point-string buffer (`KETAMA_MAX_HOSTLEN`).
const KETAMA_MAX_HOSTLEN: usize = 86;

/// Upper bound of the bucket index size: 2^20 buckets (4 MiB) covers ~6,500 servers at one
/// point per bucket; bigger rings just get a few more points per bucket.
const MAX_BUCKET_BITS: u32 = 20;

/// Number of ketama points twemproxy gives a live server, in twemproxy's float32
/// arithmetic: `(uint32_t)(floorf((float)(pct * 160 / 4 * (float)n_live + 1e-10)) * 4)`
/// with `pct = (float)weight / (float)total_weight`.
///
/// Every product is rounded to `f32`; the `+ 1e-10` is done in `f64` (a C double literal)
/// and rounded back to `f32`, where it is normally lost. Equal weights give 160; 1:2:3
/// gives 80/160/240; a weight far below the others gets 0 points and never receives keys.
/// Rounding also makes equal weights give 156 instead of 160 points for some pool sizes
/// (25, 47, 50, 55, ... live servers; 207 sizes up to 2000), so growing a pool from 24 to
/// 25 servers also moves a few keys between the old servers. twemproxy does the same.
/// A zero total weight gives 0 (NaN saturates to 0) instead of twemproxy's undefined result.
pub fn points_per_server(weight: u32, total_weight: u64, n_live: u32) -> u32 {
    let pct = weight as f32 / total_weight as f32;
    let scaled = pct * KETAMA_POINTS_PER_SERVER as f32 / 4.0 * n_live as f32;
    let nudged = (f64::from(scaled) + 0.000_000_000_1) as f32;
    (nudged.floor() * 4.0) as u32
}

/// A built continuum: sorted points plus a bucket index for fast lower-bound lookups.
#[derive(Clone, Debug, Default)]
pub(super) struct Continuum {
    /// `(value, server index)`, sorted.
    points: Vec<(u32, u32)>,
    /// `buckets[b]` = index of the first point with `value >= b << shift`; one extra
    /// entry at the end equal to `points.len()`.
    buckets: Vec<u32>,
    /// `32 - bucket bits`: the bucket of a hash is `hash >> shift`.
    shift: u32,
}

impl Continuum {
    pub(super) fn build(nodes: &[RingNode<'_>]) -> Continuum {
        let live = || nodes.iter().enumerate().filter(|(_, n)| n.live);
        let n_live = live().count() as u32;
        // twemproxy sums in uint32_t; u64 avoids its wrap-around for absurd weights.
        let total_weight: u64 = live().map(|(_, n)| u64::from(n.weight)).sum();

        let mut points = Vec::with_capacity(n_live as usize * KETAMA_POINTS_PER_SERVER as usize);
        let mut label = Vec::with_capacity(KETAMA_MAX_HOSTLEN + 16);
        for (index, node) in live() {
            let count = points_per_server(node.weight, total_weight, n_live);
            for i in 0..count / 4 {
                point_label(&mut label, node.name, i);
                let digest = md5_digest(&label);
                for alignment in 0..4 {
                    points.push((digest_word(&digest, alignment), index as u32));
                }
            }
        }
        points.sort_unstable();

        let bits = bucket_bits(points.len());
        let shift = 32 - bits;
        let bucket_count = 1usize << bits;
        let mut buckets = Vec::with_capacity(bucket_count + 1);
        let mut next = 0usize;
        for b in 0..bucket_count as u64 {
            let floor = b << shift;
            while next < points.len() && u64::from(points[next].0) < floor {
                next += 1;
            }
            buckets.push(next as u32);
        }
        buckets.push(points.len() as u32);

        Continuum {
            points,
            buckets,
            shift,
        }
    }

    #[inline]
    pub(super) fn points(&self) -> &[(u32, u32)] {
        &self.points
    }

    /// Server index owning `hash`: the first point `>= hash`, else the first point.
    #[inline]
    pub(super) fn lookup(&self, hash: u32) -> Option<usize> {
        let bucket = (u64::from(hash) >> self.shift) as usize;
        let lo = *self.buckets.get(bucket)? as usize;
        let hi = *self.buckets.get(bucket + 1)? as usize;
        let candidates = self.points.get(lo..hi)?;
        let at = lo + candidates.partition_point(|&(value, _)| value < hash);
        let (_, server) = self.points.get(at).or_else(|| self.points.first())?;
        Some(*server as usize)
    }
}

/// Writes twemproxy's point string `"<name>-<i>"` into `out`, applying the 86-byte
/// `snprintf` truncation quirk described in the module docs.
fn point_label(out: &mut Vec<u8>, name: &[u8], i: u32) {
    out.clear();
    out.extend_from_slice(name);
    // Writing to a Vec cannot fail.
    let _ = write!(out, "-{i}");
    if out.len() == KETAMA_MAX_HOSTLEN {
        out[KETAMA_MAX_HOSTLEN - 1] = 0;
    }
}

/// log2 of the bucket count: about one point per bucket, at least 2 buckets.
fn bucket_bits(points: usize) -> u32 {
    let wanted = points.max(2).next_power_of_two().trailing_zeros();
    wanted.clamp(1, MAX_BUCKET_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_counts() {
        assert_eq!(points_per_server(1, 3, 3), 160);
        assert_eq!(
            [1, 2, 3].map(|w| points_per_server(w, 6, 3)),
            [80, 160, 240]
        );
        assert_eq!(
            [3, 5, 7].map(|w| points_per_server(w, 15, 3)),
            [96, 160, 224]
        );
        assert_eq!(points_per_server(1, 100_001, 2), 0);
        assert_eq!(points_per_server(0, 0, 2), 0);
    }

    #[test]
    fn equal_weights_float32_quirk() {
        // Equal weights give 160 points for small pools, but not always: for some pool
        // sizes `(1/n as f32) * 160 / 4 * n` rounds to just below 40, and twemproxy then
        // gives every server 156 points. The first such sizes (checked against the C
        // expression compiled with gcc) are 25, 47, 50, 55, 61, 71, 94, 100.
        let quirky = [25, 47, 50, 55, 61, 71, 94, 100];
        for n in 1..=100u32 {
            let want = if quirky.contains(&n) { 156 } else { 160 };
            assert_eq!(points_per_server(7, 7 * u64::from(n), n), want, "n = {n}");
        }
        let odd = (1..=2000u32).filter(|&n| points_per_server(1, n.into(), n) != 160);
        assert_eq!(odd.count(), 207);
    }

    #[test]
    fn labels() {
        let mut out = Vec::new();
        point_label(&mut out, b"127.0.0.1:30001", 39);
        assert_eq!(out, b"127.0.0.1:30001-39");
        let name = [b'x'; 84];
        point_label(&mut out, &name, 0);
        assert_eq!(out.len(), 86);
        assert_eq!(out[84..], [b'-', 0]);
        point_label(&mut out, &name, 10);
        assert_eq!(out[84..], *b"-10");
    }

    #[test]
    fn lookup_matches_plain_lower_bound() {
        let names: Vec<String> = (0..7).map(|i| format!("node{i}")).collect();
        let nodes = RingNode::equal(&names);
        let c = Continuum::build(&nodes);
        let naive = |h: u32| {
            let at = c.points.partition_point(|p| p.0 < h);
            c.points.get(at).unwrap_or(&c.points[0]).1 as usize
        };
        let mut probes = vec![0, 1, u32::MAX, u32::MAX - 1];
        for &(v, _) in &c.points {
            probes.extend([v.wrapping_sub(1), v, v.wrapping_add(1)]);
        }
        let mut x = 0x9e37_79b9u32;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            probes.push(x);
        }
        for h in probes {
            assert_eq!(c.lookup(h), Some(naive(h)), "hash {h}");
        }
    }

    #[test]
    fn empty_continuum() {
        let c = Continuum::build(&[]);
        assert_eq!(c.lookup(0), None);
        assert_eq!(c.lookup(u32::MAX), None);
    }
}
