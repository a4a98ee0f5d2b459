//! Redis RESP2 codec: client requests (arrays and inline commands), backend reply framing,
//! encoders, and Redis's command table for arity checks and key extraction. Pure functions
//! over bytes.

pub mod command_table;
pub mod commands;
pub mod encode;
pub mod reply;
pub mod request;
#[cfg(test)]
mod tests;

pub use commands::{lookup, lookup_sub, CommandSpec};
pub use reply::{frame_reply, BadReply};
pub use request::{Limits, Parser, ProtocolError, Step};

/// Parses a decimal as Redis's `string2ll` does: an optional `-`, no `+`, no leading zero, no
/// space, within i64. As strict as the server, so the proxy refuses exactly the lengths Redis
/// refuses; and without `str::parse`'s UTF-8 pass, since this runs several times per request.
pub fn decimal(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    match digits {
        [b'0'] if !negative => return Some(0),
        [b'1'..=b'9', ..] => {}
        _ => return None,
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        // Down to i64::MIN, whose magnitude is one more than i64::MAX.
        (value <= i64::MAX as u64 + 1).then(|| (value as i64).wrapping_neg())
    } else {
        i64::try_from(value).ok()
    }
}
