//! Repeated keys in one multi-key read.
//!
//! `get b b b ...` (memcached) and `MGET b b b ...` (Redis) are answered with one value per
//! key *as requested*, repeats included, but the proxy fetches each distinct key once and
//! copies its answer for the repeats. Forwarded as sent, one request line of 12 KB naming a
//! 1 MB value 6,000 times would make the backend send 6 GB, all of which the proxy would have
//! to frame before answering: bounded output per client could not help, since the reply
//! does not exist until it is complete.

use std::collections::HashMap;

/// Up to this many keys, a read without repeats is recognised with a small table on the
/// stack, indexed by a fingerprint of each key (no allocation, no hashing of whole keys).
const PAIRWISE: usize = 32;
/// Slots of that table: twice the keys, so probes stay short.
const SLOTS: usize = 2 * PAIRWISE;

/// For each of the `n` keys (`key(i)`), `Some(j)` when it repeats key `j < i` (its first
/// occurrence), `None` for a first occurrence; `None` overall when no key repeats, which costs
/// no allocation for a small read.
pub(crate) fn first_occurrences<'a>(
    n: usize,
    key: impl Fn(usize) -> &'a [u8],
) -> Option<Vec<Option<u32>>> {
    if n <= PAIRWISE && !small_has_repeats(n, &key) {
        return None;
    }
    // Keys come from clients: a per-process random seed keeps them from choosing collisions.
    let mut seen: HashMap<&[u8], u32, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(n, Default::default());
    let mut any = false;
    let firsts: Vec<Option<u32>> = (0..n)
        .map(|i| {
            let first = *seen.entry(key(i)).or_insert(i as u32);
            (first != i as u32).then(|| {
                any = true;
                first
            })
        })
        .collect();
    any.then_some(firsts)
}

/// Whether any of `n <= PAIRWISE` keys repeats: keys are compared whole only when their
/// fingerprints (length and last bytes, where keys of one request usually differ) match.
fn small_has_repeats<'a>(n: usize, key: &impl Fn(usize) -> &'a [u8]) -> bool {
    let mut table = [u8::MAX; SLOTS];
    let mut prints = [0u64; PAIRWISE];
    for i in 0..n {
        let fp = fingerprint(key(i));
        prints[i] = fp;
        let mut slot = (fp.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize;
        loop {
            match table[slot] {
                u8::MAX => {
                    table[slot] = i as u8;
                    break;
                }
                j if prints[j as usize] == fp && key(j as usize) == key(i) => return true,
                _ => slot = (slot + 1) % SLOTS,
            }
        }
    }
    false
}

/// The length and the last bytes of a key, in one word (one unaligned load for keys of 8 bytes
/// and more).
#[inline]
fn fingerprint(key: &[u8]) -> u64 {
    let n = key.len();
    let last = match key.get(n.wrapping_sub(8)..) {
        Some(tail) => u64::from_le_bytes(tail.try_into().unwrap_or_default()),
        None => key.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)),
    };
    last ^ (n as u64).rotate_right(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firsts(keys: &[&str]) -> Option<Vec<Option<u32>>> {
        first_occurrences(keys.len(), |i| keys[i].as_bytes())
    }

    #[test]
    fn distinct_keys_have_no_repeats() {
        assert_eq!(firsts(&["a", "b", "c"]), None);
        let many: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
        let many: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
        assert_eq!(firsts(&many), None);
    }

    #[test]
    fn keys_alike_but_for_their_start_are_distinct() {
        assert_eq!(
            firsts(&["a:123456", "b:123456", "a:123456"]),
            Some(vec![None, None, Some(0)])
        );
        assert_eq!(firsts(&["x1234567", "y1234567"]), None);
    }

    #[test]
    fn repeats_point_at_the_first_occurrence() {
        assert_eq!(
            firsts(&["a", "b", "a", "c", "b", "a"]),
            Some(vec![None, None, Some(0), None, Some(1), Some(0)])
        );
        let mut many: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
        many.push("k7".into());
        let many: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
        let f = firsts(&many).unwrap();
        assert_eq!(f[40], Some(7));
        assert_eq!(f.iter().filter(|x| x.is_some()).count(), 1);
    }
}
