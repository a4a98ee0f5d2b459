//! Redis command metadata and key extraction.
//!
//! The table itself ([`super::command_table`]) is generated from a real redis-server's
//! `COMMAND` output; this module gives it types, looks commands up case-insensitively without
//! allocating, and finds a command's keys with Redis's own key-spec algorithm
//! (`getKeysUsingKeySpecs`), so that every key-bearing command, including EVAL, XREAD or
//! ZUNIONSTORE whose keys move with their arguments, is routed by its real keys. SORT's
//! `STORE` destination, which no key spec can describe, is found as SORT parses it.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::OnceLock;

use super::command_table::COMMANDS;

/// Command flags, as Redis reports them.
pub mod flag {
    pub const WRITE: u32 = 1 << 0;
    pub const READONLY: u32 = 1 << 1;
    pub const DENYOOM: u32 = 1 << 2;
    pub const ADMIN: u32 = 1 << 3;
    pub const PUBSUB: u32 = 1 << 4;
    pub const NOSCRIPT: u32 = 1 << 5;
    pub const BLOCKING: u32 = 1 << 6;
    pub const LOADING: u32 = 1 << 7;
    pub const STALE: u32 = 1 << 8;
    pub const FAST: u32 = 1 << 9;
    pub const MOVABLEKEYS: u32 = 1 << 10;
    pub const NO_AUTH: u32 = 1 << 11;
    pub const NO_MANDATORY_KEYS: u32 = 1 << 12;
    pub const ALLOW_BUSY: u32 = 1 << 13;
}

/// ACL categories, as Redis reports them.
pub mod cat {
    pub const KEYSPACE: u32 = 1 << 0;
    pub const READ: u32 = 1 << 1;
    pub const WRITE: u32 = 1 << 2;
    pub const STRING: u32 = 1 << 3;
    pub const BITMAP: u32 = 1 << 4;
    pub const LIST: u32 = 1 << 5;
    pub const SET: u32 = 1 << 6;
    pub const SORTEDSET: u32 = 1 << 7;
    pub const HASH: u32 = 1 << 8;
    pub const STREAM: u32 = 1 << 9;
    pub const HYPERLOGLOG: u32 = 1 << 10;
    pub const GEO: u32 = 1 << 11;
    pub const PUBSUB: u32 = 1 << 12;
    pub const ADMIN: u32 = 1 << 13;
    pub const FAST: u32 = 1 << 14;
    pub const SLOW: u32 = 1 << 15;
    pub const BLOCKING: u32 = 1 << 16;
    pub const DANGEROUS: u32 = 1 << 17;
    pub const CONNECTION: u32 = 1 << 18;
    pub const TRANSACTION: u32 = 1 << 19;
    pub const SCRIPTING: u32 = 1 << 20;
}

/// Where a key spec starts looking for keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Begin {
    Index(i32),
    Keyword {
        keyword: &'static str,
        start_from: i32,
    },
    Unknown,
}

/// How a key spec finds keys once it has started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Find {
    Range {
        last_key: i32,
        step: i32,
        limit: i32,
    },
    KeyNum {
        keynum_idx: i32,
        first_key: i32,
        step: i32,
    },
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpec {
    pub begin: Begin,
    pub find: Find,
    pub incomplete: bool,
}

/// One command (or `container|subcommand`) of the table.
#[derive(Debug)]
pub struct CommandSpec {
    pub name: &'static str,
    /// Redis arity: `n` means exactly n arguments (the name included), `-n` at least n.
    pub arity: i32,
    pub flags: u32,
    pub categories: u32,
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    pub key_specs: &'static [KeySpec],
}

impl CommandSpec {
    pub fn has_flag(&self, f: u32) -> bool {
        self.flags & f != 0
    }

    pub fn in_category(&self, c: u32) -> bool {
        self.categories & c != 0
    }

    pub fn arity_ok(&self, argc: usize) -> bool {
        let a = self.arity;
        if a >= 0 {
            argc == a as usize
        } else {
            argc >= a.unsigned_abs() as usize
        }
    }

    /// A command whose only key is at a fixed position (most commands): routed without
    /// walking key specs.
    pub fn single_key(&self) -> Option<usize> {
        (self.first_key > 0 && self.last_key == self.first_key && !self.has_flag(flag::MOVABLEKEYS))
            .then_some(self.first_key as usize)
    }

    /// Whether the command has subcommands (its second argument picks the real command).
    pub fn is_container(&self) -> bool {
        // Entries come from the table: the position follows from the address, no search.
        let offset = (self as *const CommandSpec as usize).wrapping_sub(COMMANDS.as_ptr() as usize);
        let at = offset / std::mem::size_of::<CommandSpec>();
        if !COMMANDS.get(at).is_some_and(|c| std::ptr::eq(c, self)) {
            return false;
        }
        COMMANDS.get(at + 1).is_some_and(|next| {
            next.name.starts_with(self.name)
                && next.name.as_bytes().get(self.name.len()) == Some(&b'|')
        })
    }
}

/// Looks a command up by name, ignoring ASCII case, without allocating.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut buf = [0u8; 48];
    let lower = lowercase(name, &mut buf)?;
    position(lower).map(|i| &COMMANDS[i])
}

/// The first 8 bytes of a name as an integer, zero-padded (names hold no NUL).
fn prefix(name: &[u8]) -> u64 {
    name.iter()
        .take(8)
        .enumerate()
        .fold(0, |p, (i, &b)| p | u64::from(b) << (56 - 8 * i))
}

/// The position of a lower-case name in [`COMMANDS`]: a hash map from the names' 8-byte
/// prefixes to the first name with that prefix, then a scan of the few names sharing it
/// (`cluster|...`). The map is built once and never grows, so a fixed hasher is safe even
/// though names come from clients: a lookup cannot lengthen any probe sequence.
fn position(name: &[u8]) -> Option<usize> {
    type Firsts = HashMap<u64, u16, foldhash::fast::FixedState>;
    static FIRSTS: OnceLock<Firsts> = OnceLock::new();
    let firsts = FIRSTS.get_or_init(|| {
        let mut map = Firsts::default();
        for (i, c) in COMMANDS.iter().enumerate().rev() {
            map.insert(prefix(c.name.as_bytes()), i as u16);
        }
        map
    });
    let p = prefix(name);
    let first = *firsts.get(&p)? as usize;
    (first..COMMANDS.len())
        .take_while(|&i| i == first || prefix(COMMANDS[i].name.as_bytes()) == p)
        .find(|&i| COMMANDS[i].name.as_bytes() == name)
}

/// Looks up `container|sub`, e.g. `object|encoding`.
pub fn lookup_sub(container: &CommandSpec, sub: &[u8]) -> Option<&'static CommandSpec> {
    let mut buf = [0u8; 48];
    let lower = lowercase(sub, &mut buf)?;
    let mut full = [0u8; 97];
    let n = container.name.len();
    full[..n].copy_from_slice(container.name.as_bytes());
    full[n] = b'|';
    full[n + 1..n + 1 + lower.len()].copy_from_slice(lower);
    position(&full[..n + 1 + lower.len()]).map(|i| &COMMANDS[i])
}

fn lowercase<'a>(name: &[u8], buf: &'a mut [u8; 48]) -> Option<&'a [u8]> {
    if name.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    Some(&buf[..name.len()])
}

/// Why keys could not be extracted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// A numkeys argument is not a number, or the keys run past the arguments.
    BadNumKeys,
}

/// Indexes (into `args`, where `args[0]` is the command name) of every key of the command,
/// pushed onto `out` in argument order.
pub fn keys(spec: &CommandSpec, args: &[&[u8]], out: &mut Vec<usize>) -> Result<(), KeyError> {
    let argc = args.len() as i64;
    for ks in spec.key_specs {
        let first = match ks.begin {
            Begin::Index(i) => i as i64,
            Begin::Keyword {
                keyword,
                start_from,
            } => {
                let found = if start_from > 0 {
                    (start_from as i64..argc)
                        .find(|&i| args[i as usize].eq_ignore_ascii_case(keyword.as_bytes()))
                } else {
                    (1..=(argc + start_from as i64).max(0)).rev().find(|&i| {
                        i < argc && args[i as usize].eq_ignore_ascii_case(keyword.as_bytes())
                    })
                };
                match found {
                    Some(i) => i + 1,
                    None => continue,
                }
            }
            Begin::Unknown => continue,
        };
        let (first, last, step) = match ks.find {
            Find::Range {
                last_key,
                step,
                limit,
            } => {
                let last = if last_key >= 0 {
                    first + last_key as i64
                } else if limit <= 1 {
                    argc + last_key as i64
                } else {
                    first + ((argc - first) / limit as i64 + last_key as i64)
                };
                (first, last, step.max(1) as i64)
            }
            Find::KeyNum {
                keynum_idx,
                first_key,
                step,
            } => {
                let idx = first + keynum_idx as i64;
                let n = args
                    .get(idx as usize)
                    .and_then(|a| std::str::from_utf8(a).ok()?.parse::<i64>().ok())
                    .filter(|&n| n >= 0)
                    .ok_or(KeyError::BadNumKeys)?;
                let first = first + first_key as i64;
                (
                    first,
                    first + (n - 1) * step.max(1) as i64,
                    step.max(1) as i64,
                )
            }
            Find::Unknown => continue,
        };
        if last < first {
            continue; // numkeys 0, or an optional key that is absent
        }
        if last >= argc {
            return Err(KeyError::BadNumKeys);
        }
        let mut i = first;
        while i <= last {
            out.push(i as usize);
            i += step;
        }
    }
    // SORT's destination has no key spec Redis can express (`Begin::Unknown`): its position
    // depends on the options before it. Without it, `SORT src STORE dst` would be routed by
    // `src` alone and write `dst` on `src`'s server. SORT_RO takes no STORE.
    if spec.name == "sort" {
        out.extend(sort_store_key(args));
    }
    Ok(())
}

/// The index of the key `SORT key [BY p] [LIMIT o c] [GET p ...] [ASC|DESC] [ALPHA] [STORE dst]`
/// writes, if any: found as Redis's `sortGetKeys` finds it (options scanned from the argument
/// after the key on, LIMIT skipping two arguments, BY and GET one, the last STORE winning), except
/// that the argument after STORE is consumed as SORT itself consumes it. Redis's helper scans
/// that argument again as an option, so for `SORT src STORE limit STORE x` it names `limit`
/// while SORT writes `x`; routing must follow the key that is really written.
fn sort_store_key(args: &[&[u8]]) -> Option<usize> {
    let mut store = None;
    let mut i = 2;
    while i < args.len() {
        let arg = args[i];
        if arg.eq_ignore_ascii_case(b"limit") {
            i += 2;
        } else if arg.eq_ignore_ascii_case(b"by") || arg.eq_ignore_ascii_case(b"get") {
            i += 1;
        } else if arg.eq_ignore_ascii_case(b"store") && i + 1 < args.len() {
            store = Some(i + 1);
            i += 1;
        }
        i += 1;
    }
    store
}

/// The ranges of `frame` that hold each argument, as `&[u8]` slices.
pub fn arg_slices<'a>(frame: &'a [u8], args: &[Range<usize>], out: &mut Vec<&'a [u8]>) {
    out.clear();
    out.extend(args.iter().map(|r| &frame[r.clone()]));
}
