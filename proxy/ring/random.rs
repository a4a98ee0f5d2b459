//! The random distribution (`src/hashkit/nc_random.c`).
//!
//! twemproxy draws `random() % n_live` for every request, ignoring both the key and the
//! weights (every live server has one slot). Reproducing libc's `random()` stream would
//! be pointless: it is seeded with `time(NULL)`, so no two twemproxy runs agree anyway.
//! What matters for compatibility is the behaviour: uniform over live servers, weight
//! ignored, no hashing.
//!
//! We use a per-thread xorshift64* generator (no locking, no allocation after the first
//! use on a thread), seeded from the clock and the thread's stack address so that threads
//! started in the same nanosecond still differ. The index is taken with a multiply-shift
//! (Lemire) rather than `%`, which avoids the division and most of the modulo bias.

use super::RingNode;
use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// The live servers' indices, one slot each.
#[derive(Clone, Debug)]
pub(super) struct LiveSet {
    live: Vec<u32>,
}

impl LiveSet {
    pub(super) fn build(nodes: &[RingNode<'_>]) -> LiveSet {
        // Weight is ignored, as in twemproxy, and so is weight 0: a live server with
        // weight 0 still takes random traffic there.
        let live = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.live)
            .map(|(i, _)| i as u32)
            .collect();
        LiveSet { live }
    }

    #[inline]
    pub(super) fn pick(&self) -> Option<usize> {
        let n = self.live.len();
        if n <= 1 {
            return self.live.first().map(|&i| i as usize);
        }
        let slot = ((u64::from(next_u32()) * n as u64) >> 32) as usize;
        self.live.get(slot).map(|&i| i as usize)
    }
}

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

/// A non-zero seed from the wall clock and this thread's stack address.
fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let marker = 0u8;
    let addr = std::ptr::addr_of!(marker) as usize as u64;
    // splitmix64 finaliser to spread the entropy over all bits.
    let mut z = nanos ^ addr.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    if z == 0 {
        0x2545_f491_4f6c_dd1d
    } else {
        z
    }
}

/// xorshift64* step; returns the high 32 bits (the better ones). Also used for TTL jitter:
/// a fast per-thread generator, no lock, no allocation.
pub fn next_u32() -> u32 {
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roughly_uniform_and_only_live() {
        let nodes: Vec<RingNode<'static>> = [(1, true), (100, false), (9, true), (1, true)]
            .iter()
            .map(|&(weight, live)| RingNode {
                name: b"s",
                weight,
                live,
            })
            .collect();
        let set = LiveSet::build(&nodes);
        let mut counts = [0u32; 4];
        for _ in 0..30_000 {
            counts[set.pick().expect("live server")] += 1;
        }
        assert_eq!(counts[1], 0, "ejected server never picked");
        for i in [0, 2, 3] {
            // 10,000 expected each, weight ignored.
            assert!((9_000..11_000).contains(&counts[i]), "{counts:?}");
        }
    }

    #[test]
    fn degenerate_sets() {
        let dead = [RingNode {
            name: b"a",
            weight: 1,
            live: false,
        }];
        assert_eq!(LiveSet::build(&dead).pick(), None);
        assert_eq!(LiveSet::build(&[]).pick(), None);
        let one = [RingNode {
            name: b"a",
            weight: 1,
            live: true,
        }];
        assert_eq!(LiveSet::build(&one).pick(), Some(0));
    }
}
