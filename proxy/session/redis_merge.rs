//! Replies of the Redis commands the proxy splits over servers, merged back into the one
//! reply the client expects: MGET elements in request order (a repeated key's element
//! copied), DEL/UNLINK/TOUCH/EXISTS integers summed, MSET's `+OK` when every server said so.
//! A failed fragment fails the whole command with one error reply, as twemproxy does.

use std::ops::Range;

use bytes::{BufMut, BytesMut};

use super::redis::RedisSession;
use crate::backend::Outcome;
use crate::coalesce::Wrote;
use crate::protocol::resp::{encode, reply, CommandSpec};
use crate::stats::{kind, PoolStats};

/// In an MGET's key list, a repeat of the key whose index is in the low bits.
pub(super) const REPEAT: u32 = 1 << 31;

impl RedisSession {
    pub(super) fn emit_mget(&mut self, keys: Vec<u32>, slots: Vec<u32>, out: &mut BytesMut) {
        let stats = &self.pool.table.stats;
        let replies: Vec<Outcome> = slots.iter().map(|&s| self.sink.take(s)).collect();
        let parts: Vec<Option<Vec<&[u8]>>> = replies
            .iter()
            .map(|r| r.as_ref().ok().and_then(|r| reply::array_elements(r)))
            .collect();
        // One failed fragment fails the whole MGET: redis-server never answers an array
        // holding errors, and clients (redis-py) would hand such elements back as values.
        if let Some(frag) = parts.iter().position(Option::is_none) {
            let fragment_of = |k: u32| match k & REPEAT {
                0 => k,
                _ => keys[(k & !REPEAT) as usize],
            };
            let lost = keys
                .iter()
                .filter(|&&k| parts[fragment_of(k) as usize].is_none())
                .count();
            stats.get_lost.add(lost as u64);
            out.put_slice(&failure_line(&replies[frag], stats));
            return;
        }
        let mut cursors = vec![0usize; parts.len()];
        // Past this the client is disconnected (see `session::drive`): stop copying.
        let limit = self.pool.table.config.client_output_limit as usize;
        // Where each key's element went in `out`, kept only when some key repeats another.
        let repeats = keys.iter().any(|&f| f & REPEAT != 0);
        let mut written: Vec<Range<usize>> = Vec::new();
        encode::array_header(out, keys.len());
        for &f in &keys {
            if out.len() > limit {
                self.truncated = true;
                break;
            }
            let start = out.len();
            if f & REPEAT != 0 {
                let copy = out[written[(f & !REPEAT) as usize].clone()].to_vec();
                if reply::is_nil(&copy) {
                    stats.get_misses.inc()
                } else {
                    stats.get_hits.inc()
                }
                out.put_slice(&copy);
                written.push(start..out.len());
                continue;
            }
            let f = f as usize;
            let elem = (parts[f].as_ref())
                .and_then(|elems| elems.get(cursors[f]).copied())
                .unwrap_or(&b"$-1\r\n"[..]);
            cursors[f] += 1;
            if reply::is_nil(elem) {
                stats.get_misses.inc()
            } else {
                stats.get_hits.inc()
            }
            out.put_slice(elem);
            if repeats {
                written.push(start..out.len());
            }
        }
    }

    pub(super) fn emit_sum(&mut self, slots: Vec<u32>, wrote: Wrote, out: &mut BytesMut) {
        wrote.answered(&self.pool.table.write_epochs);
        let mut sum = 0i64;
        let mut failure: Option<Outcome> = None;
        for slot in slots {
            let outcome = self.sink.take(slot);
            match outcome.as_ref().ok().and_then(|r| reply::integer(r)) {
                Some(n) => sum += n,
                None => {
                    failure.get_or_insert(outcome);
                }
            }
        }
        match failure {
            Some(outcome) => out.put_slice(&failure_line(&outcome, &self.pool.table.stats)),
            None => encode::integer(out, sum),
        }
    }

    pub(super) fn emit_all_ok(&mut self, slots: Vec<u32>, wrote: Wrote, out: &mut BytesMut) {
        wrote.answered(&self.pool.table.write_epochs);
        let mut failure: Option<Outcome> = None;
        for slot in slots {
            let outcome = self.sink.take(slot);
            if !matches!(&outcome, Ok(r) if r.as_ref() == b"+OK\r\n") {
                failure.get_or_insert(outcome);
            }
        }
        match failure {
            Some(outcome) => out.put_slice(&failure_line(&outcome, &self.pool.table.stats)),
            None => out.put_slice(b"+OK\r\n"),
        }
    }
}

/// How the replies of a command sent to every server are merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Everywhere {
    /// `SCRIPT LOAD`: every server answers the same SHA; the first failure otherwise.
    Same,
    /// `SCRIPT EXISTS`: arrays of 0/1, ANDed element by element (loaded everywhere).
    And,
    /// `SCRIPT FLUSH`: `+OK` when every server said so.
    AllOk,
}

/// The commands sent to every server of a pool, with how their replies merge.
pub(crate) fn everywhere(spec: &CommandSpec) -> Option<Everywhere> {
    match spec.name {
        "script|load" => Some(Everywhere::Same),
        "script|exists" => Some(Everywhere::And),
        "script|flush" => Some(Everywhere::AllOk),
        _ => None,
    }
}

impl RedisSession {
    pub(super) fn emit_everywhere(
        &mut self,
        slots: Vec<u32>,
        merge: Everywhere,
        out: &mut BytesMut,
    ) {
        let replies: Vec<Outcome> = slots.iter().map(|&s| self.sink.take(s)).collect();
        let failed = replies
            .iter()
            .find(|r| r.as_ref().map_or(true, |r| reply::is_error(r)));
        if let Some(outcome) = failed {
            out.put_slice(&failure_line(outcome, &self.pool.table.stats));
            return;
        }
        let ok = |r: &Outcome| r.as_ref().ok().cloned().unwrap_or_default();
        match merge {
            Everywhere::Same | Everywhere::AllOk => {
                let first = replies.first().map(ok).unwrap_or_default();
                if replies.iter().all(|r| ok(r) == first) {
                    out.put_slice(&first);
                } else {
                    encode::error(out, "ERR the servers of the pool answered differently");
                }
            }
            Everywhere::And => {
                let arrays: Vec<Vec<&[u8]>> = replies
                    .iter()
                    .filter_map(|r| r.as_ref().ok().and_then(|r| reply::array_elements(r)))
                    .collect();
                let n = arrays.first().map_or(0, Vec::len);
                if arrays.len() != replies.len() || arrays.iter().any(|a| a.len() != n) {
                    encode::error(out, "ERR the servers of the pool answered differently");
                    return;
                }
                encode::array_header(out, n);
                for i in 0..n {
                    let all = arrays.iter().all(|a| reply::integer(a[i]) == Some(1));
                    encode::integer(out, i64::from(all));
                }
            }
        }
    }
}

/// The one reply of a split command one of whose fragments failed: the server's own error
/// reply as it came (`-WRONGTYPE`, `-OOM`), or `-ERR <failure>` as a single-key command
/// gets, counted in the same statistics as those.
fn failure_line(outcome: &Outcome, stats: &PoolStats) -> Vec<u8> {
    match outcome {
        Ok(r) => {
            if reply::is_error(r) {
                stats.errors[kind::BACKEND_ERROR].inc();
            }
            r.to_vec()
        }
        Err(e) => {
            stats.forward_error.inc();
            stats.errors[e.kind()].inc();
            let mut line = Vec::new();
            encode::error(&mut line, &format!("ERR {e}"));
            line
        }
    }
}
