//! Key hash functions, bit-for-bit compatible with twemproxy 0.5.0 (`src/hashkit/*.c`).
//!
//! Compatibility is the whole point of this module: an operator must be able to swap
//! twemproxy for shardproxy without a cold cache, so every key has to land on the same
//! server as before. That means copying twemproxy's quirks rather than "fixing" them:
//!
//! * twemproxy passes keys as `const char *`, and `char` is signed on x86, so every byte
//!   from 0x80 up is sign-extended wherever the C code casts it straight to an integer
//!   (`(uint32_t)key[i]`): all four FNV variants, one_at_a_time and hsieh's 3-byte tail.
//!   `sx32` / `sx64` reproduce that.
//! * `fnv1a_64` (the default!) is really a 32-bit hash using the truncated 64-bit
//!   constants, see `fnv.rs`.
//! * `crc32` is libmemcached's 15-bit variant, see `crc.rs`.
//! * `crc16` never masks its accumulator to 16 bits, see `crc.rs`.
//!
//! Every function returns a `u32`, never allocates and never panics, for any input.

mod crc;
mod fnv;
mod hsieh;
mod jenkins;
mod md5;
mod murmur;

#[cfg(test)]
mod tests;

pub use self::md5::{digest_word, md5_digest};

/// The twelve key hash functions twemproxy offers through the `hash:` pool directive.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashKind {
    /// Bob Jenkins' one-at-a-time hash (`one_at_a_time`).
    OneAtATime,
    /// First four bytes of the MD5 digest, little-endian (`md5`).
    Md5,
    /// CRC-16/XMODEM with twemproxy's unmasked accumulator (`crc16`).
    Crc16,
    /// libmemcached's 15-bit CRC-32 variant (`crc32`).
    Crc32,
    /// Standard CRC-32, as zlib computes it (`crc32a`).
    Crc32a,
    /// 64-bit FNV-1 truncated to 32 bits (`fnv1_64`).
    Fnv1_64,
    /// 32-bit FNV-1a with the truncated 64-bit constants (`fnv1a_64`, twemproxy's default).
    Fnv1a_64,
    /// Standard 32-bit FNV-1 (`fnv1_32`).
    Fnv1_32,
    /// Standard 32-bit FNV-1a (`fnv1a_32`).
    Fnv1a_32,
    /// Paul Hsieh's SuperFastHash (`hsieh`).
    Hsieh,
    /// MurmurHash2 with a length-derived seed (`murmur`).
    Murmur,
    /// Bob Jenkins' lookup3 `hashlittle`, initval 13 (`jenkins`).
    Jenkins,
}

impl HashKind {
    /// Every hash kind, in the order twemproxy's `hash_type` table lists them.
    pub const ALL: [HashKind; 12] = [
        HashKind::OneAtATime,
        HashKind::Md5,
        HashKind::Crc16,
        HashKind::Crc32,
        HashKind::Crc32a,
        HashKind::Fnv1_64,
        HashKind::Fnv1a_64,
        HashKind::Fnv1_32,
        HashKind::Fnv1a_32,
        HashKind::Hsieh,
        HashKind::Murmur,
        HashKind::Jenkins,
    ];

    /// twemproxy's default when a pool has no `hash:` directive.
    pub const DEFAULT: HashKind = HashKind::Fnv1a_64;

    /// Parses a twemproxy `hash:` value. Matching is exact (twemproxy compares the
    /// configured string byte for byte, so `MD5` is rejected there as well).
    pub fn from_name(name: &str) -> Option<HashKind> {
        HashKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The name used in twemproxy configuration files.
    pub fn name(self) -> &'static str {
        match self {
            HashKind::OneAtATime => "one_at_a_time",
            HashKind::Md5 => "md5",
            HashKind::Crc16 => "crc16",
            HashKind::Crc32 => "crc32",
            HashKind::Crc32a => "crc32a",
            HashKind::Fnv1_64 => "fnv1_64",
            HashKind::Fnv1a_64 => "fnv1a_64",
            HashKind::Fnv1_32 => "fnv1_32",
            HashKind::Fnv1a_32 => "fnv1a_32",
            HashKind::Hsieh => "hsieh",
            HashKind::Murmur => "murmur",
            HashKind::Jenkins => "jenkins",
        }
    }

    /// Hashes `key` exactly as twemproxy 0.5.0 does.
    ///
    /// Note that twemproxy itself never calls the hash for an empty key (it uses 0,
    /// see `ring::KeyRouter`); this function still returns what the C function would.
    #[inline]
    pub fn hash(self, key: &[u8]) -> u32 {
        match self {
            HashKind::OneAtATime => jenkins::one_at_a_time(key),
            HashKind::Md5 => md5::hash_md5(key),
            HashKind::Crc16 => crc::crc16(key),
            HashKind::Crc32 => crc::crc32(key),
            HashKind::Crc32a => crc::crc32a(key),
            HashKind::Fnv1_64 => fnv::fnv1_64(key),
            HashKind::Fnv1a_64 => fnv::fnv1a_64(key),
            HashKind::Fnv1_32 => fnv::fnv1_32(key),
            HashKind::Fnv1a_32 => fnv::fnv1a_32(key),
            HashKind::Hsieh => hsieh::hsieh(key),
            HashKind::Murmur => murmur::murmur2(key),
            HashKind::Jenkins => jenkins::lookup3(key),
        }
    }
}

impl std::fmt::Display for HashKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A key byte as the C code sees it after `(uint32_t)key[i]` with a signed `char`:
/// bytes >= 0x80 become 0xFFFFFF80..=0xFFFFFFFF.
#[inline(always)]
pub(crate) fn sx32(b: u8) -> u32 {
    b as i8 as i32 as u32
}

/// Same as [`sx32`] for the 64-bit casts (`(uint64_t)key[i]`) of `fnv1_64`.
#[inline(always)]
pub(crate) fn sx64(b: u8) -> u64 {
    b as i8 as i64 as u64
}
