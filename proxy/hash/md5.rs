//! MD5 based hashing (`src/hashkit/nc_md5.c`).
//!
//! MD5 plays two roles in twemproxy: it is one of the selectable key hashes (`md5`),
//! and it is *always* what builds the ketama continuum, whatever key hash the pool uses.
//! Both take 32-bit words out of the digest little-endian, which is spelled out here
//! (rather than relying on the host's byte order) so results do not depend on the CPU.

use ::md5::{Digest, Md5};

/// The 16-byte MD5 digest of `data`. Runs entirely on the stack.
#[inline]
pub fn md5_digest(data: &[u8]) -> [u8; 16] {
    let mut hasher = Md5::new();
    hasher.update(data);
    hasher.finalize().into()
}

/// The `alignment`-th little-endian 32-bit word (0..=3) of a digest.
///
/// This is twemproxy's `ketama_hash` word extraction; with `alignment == 0` it is also the
/// `md5` key hash. Out-of-range alignments wrap (`alignment % 4`) instead of panicking.
#[inline]
pub fn digest_word(digest: &[u8; 16], alignment: usize) -> u32 {
    let base = (alignment % 4) * 4;
    u32::from_le_bytes([
        digest[base],
        digest[base + 1],
        digest[base + 2],
        digest[base + 3],
    ])
}

/// twemproxy's `hash_md5`: the first little-endian word of the key's digest.
#[inline]
pub(super) fn hash_md5(key: &[u8]) -> u32 {
    digest_word(&md5_digest(key), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_digest() {
        // RFC 1321: MD5("") = d41d8cd98f00b204e9800998ecf8427e
        let d = md5_digest(b"");
        assert_eq!(d[..4], [0xd4, 0x1d, 0x8c, 0xd9]);
        assert_eq!(hash_md5(b""), 0xd98c_1dd4);
        assert_eq!(digest_word(&d, 3), 0x7e42_f8ec);
        assert_eq!(digest_word(&d, 7), digest_word(&d, 3));
    }
}
