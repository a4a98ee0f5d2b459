//! MurmurHash2 as twemproxy ships it (`src/hashkit/nc_murmur.c`).
//!
//! The seed is not a parameter: libmemcached derives it from the key length
//! (`0xdeadbeef * len`), and the initial hash is `seed ^ len`. The C code reads the 4-byte
//! blocks with a native (little-endian on every platform twemproxy is deployed on) load;
//! we read them explicitly little-endian. Tail bytes are read as `unsigned char`, so there
//! is no sign extension in this hash.

const M: u32 = 0x5bd1_e995;
const R: u32 = 24;

/// twemproxy's `hash_murmur`.
pub(super) fn murmur2(key: &[u8]) -> u32 {
    // `(uint32_t)length` in C: wraps for keys >= 4 GiB, as here.
    let len = key.len() as u32;
    let seed = 0xdead_beef_u32.wrapping_mul(len);
    let mut h = seed ^ len;

    let mut blocks = key.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }

    let tail = blocks.remainder();
    if !tail.is_empty() {
        if let Some(&b) = tail.get(2) {
            h ^= u32::from(b) << 16;
        }
        if let Some(&b) = tail.get(1) {
            h ^= u32::from(b) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }

    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_key() {
        // seed = 0, h = 0, the final mixes keep 0.
        assert_eq!(murmur2(b""), 0);
    }

    #[test]
    fn tails_of_every_length() {
        let key = b"abcdefgh";
        let hs: Vec<u32> = (0..=key.len()).map(|n| murmur2(&key[..n])).collect();
        for (i, h) in hs.iter().enumerate() {
            assert!(!hs[i + 1..].contains(h));
        }
    }
}
