//! Paul Hsieh's SuperFastHash as twemproxy ships it (`src/hashkit/nc_hsieh.c`).
//!
//! Differences from the published version that matter for compatibility:
//! * the initial hash is 0, not the key length;
//! * an empty key returns 0 without the final avalanche;
//! * `get16bits` is the portable byte-wise little-endian read (x86-64 builds do not take
//!   the i386-only unaligned-load branch), so no sign extension there;
//! * in the 3-byte tail the third byte is read through a signed `char` and
//!   sign-extended before `<< 18`, so bytes >= 0x80 also set bits 26..31.

use super::sx32;

/// Little-endian 16-bit read of `bytes[at..at + 2]`; missing bytes read as 0 (never
/// happens for the offsets used below, but keeps the function panic-free).
#[inline(always)]
fn get16(bytes: &[u8], at: usize) -> u32 {
    let lo = bytes.get(at).copied().unwrap_or(0);
    let hi = bytes.get(at + 1).copied().unwrap_or(0);
    u32::from(u16::from_le_bytes([lo, hi]))
}

/// twemproxy's `hash_hsieh`.
pub(super) fn hsieh(key: &[u8]) -> u32 {
    if key.is_empty() {
        return 0;
    }
    let mut hash: u32 = 0;

    let mut chunks = key.chunks_exact(4);
    for chunk in &mut chunks {
        hash = hash.wrapping_add(get16(chunk, 0));
        let tmp = (get16(chunk, 2) << 11) ^ hash;
        hash = (hash << 16) ^ tmp;
        hash = hash.wrapping_add(hash >> 11);
    }

    let tail = chunks.remainder();
    match tail.len() {
        3 => {
            hash = hash.wrapping_add(get16(tail, 0));
            hash ^= hash << 16;
            hash ^= sx32(tail[2]) << 18;
            hash = hash.wrapping_add(hash >> 11);
        }
        2 => {
            hash = hash.wrapping_add(get16(tail, 0));
            hash ^= hash << 11;
            hash = hash.wrapping_add(hash >> 17);
        }
        1 => {
            // Read as `unsigned char` in C: no sign extension for this case.
            hash = hash.wrapping_add(u32::from(tail[0]));
            hash ^= hash << 10;
            hash = hash.wrapping_add(hash >> 1);
        }
        _ => {}
    }

    // Final avalanche.
    hash ^= hash << 3;
    hash = hash.wrapping_add(hash >> 5);
    hash ^= hash << 4;
    hash = hash.wrapping_add(hash >> 17);
    hash ^= hash << 25;
    hash.wrapping_add(hash >> 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_zero() {
        assert_eq!(hsieh(b""), 0);
    }

    #[test]
    fn tail_byte_sign_extension_matters() {
        // Same low 8 bits in the third tail byte, different results because 0x80 is
        // sign-extended to 0xffffff80 before the shift.
        assert_ne!(hsieh(b"ab\x80"), hsieh(b"ab\x00"));
        assert_eq!(hsieh(&[0x80, 0x61, 0x62, 0x63]), 0xc136_f838);
    }
}
