//! CRC based hashes of twemproxy (`src/hashkit/nc_crc16.c`, `nc_crc32.c`).
//!
//! * `crc16` is CRC-16/XMODEM (polynomial 0x1021, MSB first, init 0), but twemproxy 0.5.0
//!   keeps the accumulator in a `uint32_t` and never masks it back to 16 bits. The low 16
//!   bits are the real CRC; the high 16 bits hold bits shifted out of earlier steps. Those
//!   high bits matter for ketama placement, so they are reproduced.
//! * `crc32` is libmemcached's variant: the standard reflected CRC-32, then
//!   `(crc >> 16) & 0x7fff`. Only 15 bits survive, so on a ketama ring every key lands
//!   near the start of the continuum (twemproxy issue #175). Kept for compatibility.
//! * `crc32a` is the standard CRC-32 (same as zlib's `crc32`).
//!
//! The lookup tables are computed at compile time from the polynomials rather than
//! spelled out, which makes them easy to check against the published definitions.

/// CRC-16/XMODEM table: polynomial 0x1021, non-reflected.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// Reflected CRC-32 table: polynomial 0xEDB88320 (IEEE 802.3).
const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// twemproxy's `hash_crc16`: XMODEM steps on an unmasked 32-bit accumulator.
///
/// The table index only uses bits 8..15 of the accumulator and the low 8 bits of the
/// (sign-extended) key byte, so sign extension cannot change the result here.
pub(super) fn crc16(key: &[u8]) -> u32 {
    let mut crc: u32 = 0;
    for &b in key {
        let idx = ((crc >> 8) ^ u32::from(b)) & 0xff;
        crc = (crc << 8) ^ u32::from(CRC16_TABLE[idx as usize]);
    }
    crc
}

/// Standard CRC-32 (init and final XOR 0xFFFFFFFF), twemproxy's `crc32a`.
pub(super) fn crc32a(key: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &b in key {
        let idx = (crc ^ u32::from(b)) & 0xff;
        crc = (crc >> 8) ^ CRC32_TABLE[idx as usize];
    }
    !crc
}

/// libmemcached-compatible `crc32`: bits 16..30 of the standard CRC-32 (15 bits).
pub(super) fn crc32(key: &[u8]) -> u32 {
    (crc32a(key) >> 16) & 0x7fff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_check_values() {
        // The CRC catalogue's check input "123456789".
        assert_eq!(crc32a(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc16(b"123456789") & 0xffff, 0x31C3);
    }

    #[test]
    fn crc16_keeps_high_bits() {
        // Two bytes are enough to push bits above bit 15.
        assert_ne!(crc16(b"ab") >> 16, 0);
        assert_eq!(crc16(b"a"), 0x7c87);
    }

    #[test]
    fn crc32_is_fifteen_bits() {
        for key in [&b""[..], b"a", b"apple", b"\xff\xfe\xfd"] {
            assert!(crc32(key) <= 0x7fff);
        }
    }
}
