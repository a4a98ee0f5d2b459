//! The four FNV variants of twemproxy (`src/hashkit/nc_fnv.c`).
//!
//! Two twemproxy quirks are kept on purpose:
//! * every key byte is sign-extended before it is mixed in (`(uint32_t)key[x]` with a
//!   signed `char`), so a byte 0x80 is XORed in as 0xFFFFFF80; for the 64-bit variant
//!   as 0xFFFFFFFFFFFFFF80;
//! * `fnv1a_64` is not FNV-1a-64 at all: it keeps its state in 32 bits and uses the 64-bit
//!   constants truncated to 32 bits (basis 0x84222325, prime 0x1b3). It spreads similar keys
//!   badly (twemproxy issues #32 and #195), but it is the default hash, so placements made
//!   by every existing deployment depend on it.

use super::{sx32, sx64};

const FNV_64_INIT: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_64_PRIME: u64 = 0x0000_0100_0000_01b3;
const FNV_32_INIT: u32 = 2_166_136_261;
const FNV_32_PRIME: u32 = 16_777_619;

/// True 64-bit FNV-1 (multiply, then XOR) over sign-extended bytes, truncated to the low
/// 32 bits on return.
pub(super) fn fnv1_64(key: &[u8]) -> u32 {
    let mut h = FNV_64_INIT;
    for &b in key {
        h = h.wrapping_mul(FNV_64_PRIME);
        h ^= sx64(b);
    }
    h as u32
}

/// twemproxy's "fnv1a_64": FNV-1a computed in 32 bits with the 64-bit constants cast
/// down to `uint32_t`.
pub(super) fn fnv1a_64(key: &[u8]) -> u32 {
    let mut h = FNV_64_INIT as u32;
    for &b in key {
        h ^= sx32(b);
        h = h.wrapping_mul(FNV_64_PRIME as u32);
    }
    h
}

/// Standard 32-bit FNV-1 except for the sign-extended bytes.
pub(super) fn fnv1_32(key: &[u8]) -> u32 {
    let mut h = FNV_32_INIT;
    for &b in key {
        h = h.wrapping_mul(FNV_32_PRIME);
        h ^= sx32(b);
    }
    h
}

/// Standard 32-bit FNV-1a except for the sign-extended bytes.
pub(super) fn fnv1a_32(key: &[u8]) -> u32 {
    let mut h = FNV_32_INIT;
    for &b in key {
        h ^= sx32(b);
        h = h.wrapping_mul(FNV_32_PRIME);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_matches_reference_fnv() {
        // For ASCII input the sign extension is a no-op, so the 32-bit variants are the
        // published FNV-1 / FNV-1a test values.
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1_32(b"a"), 0x050c_5d7e);
        assert_eq!(fnv1_32(b""), FNV_32_INIT);
    }

    #[test]
    fn high_bytes_are_sign_extended() {
        // 0xff is mixed in as 0xffffffff, not 0x000000ff.
        let expected = (FNV_32_INIT ^ 0xffff_ffff).wrapping_mul(FNV_32_PRIME);
        assert_eq!(fnv1a_32(&[0xff]), expected);
        assert_ne!(
            fnv1a_32(&[0xff]),
            (FNV_32_INIT ^ 0xff).wrapping_mul(FNV_32_PRIME)
        );
    }
}
