//! Bob Jenkins' hashes as twemproxy ships them (`nc_one_at_a_time.c`, `nc_jenkins.c`).
//!
//! * `one_at_a_time` adds each key byte *sign-extended* (`(uint32_t)*ptr` on a signed
//!   `char`), unlike the textbook version.
//! * `jenkins` is lookup3's `hashlittle` with the fixed initval 13 (libmemcached's choice).
//!   The C code has three paths (32-bit aligned, 16-bit aligned, byte by byte); on a
//!   little-endian host all three compute the same thing, namely the key read as
//!   little-endian 32-bit words with the last block zero-padded. We implement that
//!   definition once, with explicit little-endian reads, so the result does not depend on
//!   the host or on the key's alignment.

use super::sx32;

/// twemproxy's `hash_one_at_a_time`.
pub(super) fn one_at_a_time(key: &[u8]) -> u32 {
    let mut v: u32 = 0;
    for &b in key {
        v = v.wrapping_add(sx32(b));
        v = v.wrapping_add(v << 10);
        v ^= v >> 6;
    }
    v = v.wrapping_add(v << 3);
    v ^= v >> 11;
    v.wrapping_add(v << 15)
}

/// lookup3's initval as libmemcached and twemproxy configure it.
const JENKINS_INITVAL: u32 = 13;

/// lookup3 `mix()`: reversible mixing of three state words.
#[inline(always)]
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

/// lookup3 `final()`: last avalanche of the state into `c`.
#[inline(always)]
fn final_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

/// Little-endian word `i` (0..=2) of a block of at most 12 bytes, zero-padded.
#[inline(always)]
fn word(block: &[u8], i: usize) -> u32 {
    let mut w = [0u8; 4];
    for (j, slot) in w.iter_mut().enumerate() {
        if let Some(&b) = block.get(i * 4 + j) {
            *slot = b;
        }
    }
    u32::from_le_bytes(w)
}

/// twemproxy's `hash_jenkins` (lookup3 `hashlittle`, initval 13).
pub(super) fn lookup3(key: &[u8]) -> u32 {
    // The C code adds the length as a uint32_t, so it wraps for keys >= 4 GiB.
    let init = 0xdead_beef_u32
        .wrapping_add(key.len() as u32)
        .wrapping_add(JENKINS_INITVAL);
    let (mut a, mut b, mut c) = (init, init, init);

    if key.is_empty() {
        // Zero-length keys skip the final mix.
        return c;
    }

    // All blocks but the last are mixed; the last one (1..=12 bytes, never empty) goes
    // through `final` instead. Hence `while length > 12` in C, not `>= 12`.
    let mut rest = key;
    while rest.len() > 12 {
        let (block, tail) = rest.split_at(12);
        a = a.wrapping_add(word(block, 0));
        b = b.wrapping_add(word(block, 1));
        c = c.wrapping_add(word(block, 2));
        mix(&mut a, &mut b, &mut c);
        rest = tail;
    }
    a = a.wrapping_add(word(rest, 0));
    b = b.wrapping_add(word(rest, 1));
    c = c.wrapping_add(word(rest, 2));
    final_mix(&mut a, &mut b, &mut c);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_key_returns_initial_state() {
        assert_eq!(lookup3(b""), 0xdead_befc);
        assert_eq!(one_at_a_time(b""), 0);
    }

    #[test]
    fn block_boundaries() {
        // Lengths around the 12-byte block size must all differ (exercise mix vs final).
        let key = [0x5au8; 40];
        let hashes: Vec<u32> = (10..=26).map(|n| lookup3(&key[..n])).collect();
        for (i, h) in hashes.iter().enumerate() {
            assert!(!hashes[i + 1..].contains(h));
        }
    }

    #[test]
    fn oaat_sign_extends() {
        // With sign extension the first step adds 0xffffffff for 0xff.
        let mut v = 0xffff_ffffu32;
        v = v.wrapping_add(v << 10);
        v ^= v >> 6;
        v = v.wrapping_add(v << 3);
        v ^= v >> 11;
        v = v.wrapping_add(v << 15);
        assert_eq!(one_at_a_time(&[0xff]), v);
    }
}
