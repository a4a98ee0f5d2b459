//! Replies of the Redis commands the proxy splits over servers, merged back into the one
//! reply the client expects: MGET elements in request order (a repeated key's element
//! copied), DEL/UNLINK/TOUCH/EXISTS integers summed, MSET's `+OK` when every server said so.

use std::ops::Range;

use bytes::{BufMut, BytesMut};

use super::redis::RedisSession;
use crate::backend::{BackendError, Outcome};
use crate::coalesce::Wrote;
use crate::protocol::resp::{encode, reply, CommandSpec};

/// In an MGET's key list, a repeat of the key whose index is in the low bits.
pub(super) const REPEAT: u32 = 1 << 31;

impl RedisSession {
    pub(super) fn emit_mget(&mut self, keys: Vec<u32>, slots: Vec<u32>, out: &mut BytesMut) {
        let stats = &self.pool.table.stats;
        let replies: Vec<Outcome> = slots.iter().map(|&s| self.sink.take(s)).collect();
        let parts: Vec<Result<Vec<&[u8]>, Vec<u8>>> = replies
            .iter()
            .map(|r| match r {
                Ok(r) => reply::array_elements(r).ok_or_else(|| r.to_vec()),
                Err(e) => {
                    let mut line = Vec::new();
                    encode::error(&mut line, &format!("ERR {e}"));
                    Err(line)
                }
            })
            .collect();
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
                } else if !reply::is_error(&copy) {
                    stats.get_hits.inc()
                }
                out.put_slice(&copy);
                written.push(start..out.len());
                continue;
            }
            let f = f as usize;
            match &parts[f] {
                Ok(elems) => {
                    let elem = elems.get(cursors[f]).copied().unwrap_or(&b"$-1\r\n"[..]);
                    cursors[f] += 1;
                    if reply::is_nil(elem) {
                        stats.get_misses.inc()
                    } else {
                        stats.get_hits.inc()
                    }
                    out.put_slice(elem);
                }
                Err(line) => {
                    stats.get_lost.inc();
                    out.put_slice(line);
                }
            }
            if repeats {
                written.push(start..out.len());
            }
        }
    }

    pub(super) fn emit_sum(&mut self, slots: Vec<u32>, wrote: Wrote, out: &mut BytesMut) {
        wrote.answered(&self.pool.table.write_epochs);
        let mut sum = 0i64;
        let mut failure: Option<Vec<u8>> = None;
        for slot in slots {
            match self.sink.take(slot) {
                Ok(r) => match reply::integer(&r) {
                    Some(n) => sum += n,
                    None => {
                        failure.get_or_insert_with(|| r.to_vec());
                    }
                },
                Err(e) => {
                    failure.get_or_insert_with(|| error_line(&e));
                }
            }
        }
        match failure {
            Some(line) => out.put_slice(&line),
            None => encode::integer(out, sum),
        }
    }

    pub(super) fn emit_all_ok(&mut self, slots: Vec<u32>, wrote: Wrote, out: &mut BytesMut) {
        wrote.answered(&self.pool.table.write_epochs);
        let mut failure: Option<Vec<u8>> = None;
        for slot in slots {
            match self.sink.take(slot) {
                Ok(r) if r.as_ref() == b"+OK\r\n" => {}
                Ok(r) => {
                    failure.get_or_insert_with(|| r.to_vec());
                }
                Err(e) => {
                    failure.get_or_insert_with(|| error_line(&e));
                }
            }
        }
        out.put_slice(failure.as_deref().unwrap_or(b"+OK\r\n"));
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
        let failure = replies.iter().find_map(|r| match r {
            Err(e) => Some(error_line(e)),
            Ok(r) if reply::is_error(r) => Some(r.to_vec()),
            Ok(_) => None,
        });
        if let Some(line) = failure {
            out.put_slice(&line);
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

fn error_line(e: &BackendError) -> Vec<u8> {
    let mut line = Vec::new();
    encode::error(&mut line, &format!("ERR {e}"));
    line
}
