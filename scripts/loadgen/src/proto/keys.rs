//! Keys (`key:<n>`), the value each key stores, and the decimal helpers both codecs use.

/// `key:<n>` without allocation.
#[derive(Clone, Copy)]
pub struct Key {
    buf: [u8; 16],
    len: u8,
}

impl Key {
    pub fn new(n: u32) -> Key {
        let mut digits = [0u8; 20];
        let d = decimal(n as u64, &mut digits);
        let mut buf = [0u8; 16];
        buf[..4].copy_from_slice(b"key:");
        let nd = d.len();
        buf[4..4 + nd].copy_from_slice(d);
        Key {
            buf,
            len: (4 + nd) as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// The first bytes of this key's value: `key:<n>:`.
    fn value_prefix(&self) -> ([u8; 17], usize) {
        let mut p = [0u8; 17];
        let n = self.len as usize;
        p[..n].copy_from_slice(self.as_bytes());
        p[n] = b':';
        (p, n + 1)
    }
}

/// Appends the value of key `n`: `key:<n>:` then `x`, cut or padded to `size` bytes.
pub fn push_value(out: &mut Vec<u8>, n: u32, size: usize) {
    let (p, plen) = Key::new(n).value_prefix();
    let take = plen.min(size);
    out.extend_from_slice(&p[..take]);
    out.resize(out.len() + (size - take), b'x');
}

/// True if `data` can be the value of key `n` (its prefix matches; values written with another
/// size still match).
pub fn value_matches(data: &[u8], n: u32) -> bool {
    let (p, plen) = Key::new(n).value_prefix();
    let m = plen.min(data.len());
    data[..m] == p[..m]
}

/// Parses `key:<n>`; None for any other key.
pub fn key_number(key: &[u8]) -> Option<u32> {
    let digits = key.strip_prefix(b"key:")?;
    parse_u64(digits).and_then(|v| u32::try_from(v).ok())
}

pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(b - b'0');
    }
    Some(v)
}

pub fn parse_i64(s: &[u8]) -> Option<i64> {
    match s.strip_prefix(b"-") {
        Some(rest) => parse_u64(rest)
            .and_then(|v| i64::try_from(v).ok())
            .map(|v| -v),
        None => parse_u64(s).and_then(|v| i64::try_from(v).ok()),
    }
}

pub fn push_decimal(out: &mut Vec<u8>, v: usize) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(decimal(v as u64, &mut digits));
}

/// `v` in decimal, written at the end of `digits`; returns the written tail.
fn decimal(mut v: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &digits[i..]
}
