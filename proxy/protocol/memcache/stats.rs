//! `stats <arg>` for a pool as a whole: which subcommands the proxy answers, how each is sent
//! to the servers, and how their replies merge into one. Tools that read one memcached's view
//! (`memcdump`, pymemcache's `stats('items')`) then see the pool as one server: counts summed,
//! item dumps concatenated. Plain `stats` is the proxy's own counters (`session::mc_stats`).

use bytes::{BufMut, Bytes, BytesMut};

use super::{number, put_num};

/// A `stats` subcommand the proxy answers for the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolStats {
    /// `stats items`, `stats slabs`, `stats sizes`: every server's lines, counts summed.
    Items,
    Slabs,
    Sizes,
    /// `stats settings`: the first server's, since settings are per server, not additive.
    Settings,
    /// `stats cachedump <slab> <limit>`: every server's `ITEM` lines, one after the other.
    CacheDump {
        slab: u32,
        limit: u32,
    },
    /// `stats reset`: sent to every server, `RESET` once all of them did.
    Reset,
}

/// How the replies of a request sent to every server of a pool become one reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMerge {
    /// Every server answered exactly this line (`OK` for flush_all, `RESET` for stats reset):
    /// that line, else the first other reply.
    AllSaid(&'static [u8]),
    /// `STAT` lines merged by name.
    SumStats,
    /// `ITEM` lines concatenated.
    Concat,
}

/// Why a `stats` line is not forwarded: the reply memcached (or the proxy) gives instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("refused stats subcommand")]
pub struct Refused(pub &'static [u8]);

const NOT_SUPPORTED: &[u8] = b"CLIENT_ERROR this 'stats' form is not supported by shardproxy\r\n";

impl PoolStats {
    /// Reads the arguments of a `stats` line (everything after the verb), answering as
    /// memcached 1.6 does where it refuses them: extra tokens are ignored, an unknown
    /// subcommand is `ERROR`, a short or unreadable `cachedump` a `CLIENT_ERROR`. Per-server
    /// views that a pool cannot merge (`detail`, `conns`, `extstore`) are refused by name.
    pub fn parse(args: &[u8]) -> Result<PoolStats, Refused> {
        let mut tokens = args.split(|&b| b == b' ').filter(|t| !t.is_empty());
        Ok(match tokens.next().unwrap_or_default() {
            b"items" => PoolStats::Items,
            b"slabs" => PoolStats::Slabs,
            b"sizes" => PoolStats::Sizes,
            b"settings" => PoolStats::Settings,
            b"reset" => PoolStats::Reset,
            b"cachedump" => {
                let (Some(slab), Some(limit)) = (tokens.next(), tokens.next()) else {
                    return Err(Refused(b"CLIENT_ERROR bad command line\r\n"));
                };
                match (number::strtoul_u32(slab), number::strtoul_u32(limit)) {
                    (Some(slab), Some(limit)) => PoolStats::CacheDump { slab, limit },
                    _ => return Err(Refused(b"CLIENT_ERROR bad command line format\r\n")),
                }
            }
            b"detail" | b"conns" | b"extstore" => return Err(Refused(NOT_SUPPORTED)),
            _ => return Err(Refused(b"ERROR\r\n")),
        })
    }

    /// How the servers' replies combine; `None`: sent to the first server only.
    pub fn merge(self) -> Option<PoolMerge> {
        match self {
            PoolStats::Items | PoolStats::Slabs | PoolStats::Sizes => Some(PoolMerge::SumStats),
            PoolStats::Settings => None,
            PoolStats::CacheDump { .. } => Some(PoolMerge::Concat),
            PoolStats::Reset => Some(PoolMerge::AllSaid(b"RESET\r\n")),
        }
    }

    /// The canonical request sent to a server.
    pub fn encode(self, dst: &mut BytesMut) {
        let verb: &[u8] = match self {
            PoolStats::Items => b"stats items",
            PoolStats::Slabs => b"stats slabs",
            PoolStats::Sizes => b"stats sizes",
            PoolStats::Settings => b"stats settings",
            PoolStats::Reset => b"stats reset",
            PoolStats::CacheDump { .. } => b"stats cachedump",
        };
        dst.put_slice(verb);
        if let PoolStats::CacheDump { slab, limit } = self {
            dst.put_u8(b' ');
            put_num(dst, slab);
            dst.put_u8(b' ');
            put_num(dst, limit);
        }
        dst.put_slice(b"\r\n");
    }
}

/// Fields of `stats items` and `stats slabs` that are not counts (ages, times, sizes of a
/// slab class): taken from the first server that has them, since a sum means nothing.
const NOT_COUNTS: &[&[u8]] = &[
    b"age",
    b"age_hot",
    b"age_warm",
    b"evicted_time",
    b"chunk_size",
    b"chunks_per_page",
];

/// Merges framed `STAT name value` replies (each ending in `END`), in server order: a name's
/// first appearance fixes its place; numeric values of counts are summed, anything else keeps
/// the first server's value.
pub fn merge_stats(replies: &[Bytes]) -> BytesMut {
    let mut order: Vec<(&[u8], Value<'_>)> = Vec::new();
    let mut index: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
    for reply in replies {
        for line in lines(reply) {
            let Some(rest) = line.strip_prefix(b"STAT ") else {
                continue;
            };
            let split = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            let (name, value) = (&rest[..split], rest.get(split + 1..).unwrap_or_default());
            let field = name.rsplit(|&b| b == b':').next().unwrap_or(name);
            let count = !NOT_COUNTS.contains(&field);
            let value = match super::request::parse_u64(value) {
                Some(n) if count => Value::Count(n),
                _ => Value::Text(value),
            };
            match index.get(name) {
                Some(&i) => {
                    let slot: &mut Value<'_> = &mut order[i].1;
                    if let (Value::Count(sum), Value::Count(n)) = (slot, value) {
                        *sum = sum.saturating_add(n);
                    }
                }
                None => {
                    index.insert(name, order.len());
                    order.push((name, value));
                }
            }
        }
    }
    let mut out = BytesMut::new();
    for (name, value) in order {
        out.put_slice(b"STAT ");
        out.put_slice(name);
        out.put_u8(b' ');
        match value {
            Value::Count(n) => put_num(&mut out, n),
            Value::Text(t) => out.put_slice(t),
        }
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"END\r\n");
    out
}

enum Value<'a> {
    Count(u64),
    Text(&'a [u8]),
}

/// Every server's lines before its `END`, then one `END`.
pub fn concat(replies: &[Bytes]) -> BytesMut {
    let mut out = BytesMut::new();
    for line in replies.iter().flat_map(|r| lines(r)) {
        out.put_slice(line);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"END\r\n");
    out
}

/// The lines of a framed stats reply before its `END`, without their line endings.
fn lines(reply: &[u8]) -> impl Iterator<Item = &[u8]> {
    reply
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| *l != b"END")
        .filter(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_memcached_refuses() {
        assert_eq!(PoolStats::parse(b"items extra"), Ok(PoolStats::Items));
        assert_eq!(
            PoolStats::parse(b"cachedump 1 0"),
            Ok(PoolStats::CacheDump { slab: 1, limit: 0 })
        );
        assert_eq!(
            PoolStats::parse(b"cachedump 1"),
            Err(Refused(b"CLIENT_ERROR bad command line\r\n"))
        );
        assert_eq!(
            PoolStats::parse(b"cachedump x 0"),
            Err(Refused(b"CLIENT_ERROR bad command line format\r\n"))
        );
        assert_eq!(PoolStats::parse(b"foo"), Err(Refused(b"ERROR\r\n")));
        let mut out = BytesMut::new();
        PoolStats::CacheDump { slab: 7, limit: 3 }.encode(&mut out);
        assert_eq!(&out[..], b"stats cachedump 7 3\r\n");
    }

    #[test]
    fn merges_counts_and_keeps_the_first_other_value() {
        let a = Bytes::from_static(b"STAT 1:chunk_size 96\r\nSTAT 1:used_chunks 2\r\nEND\r\n");
        let b = Bytes::from_static(
            b"STAT 1:chunk_size 96\r\nSTAT 1:used_chunks 3\r\nSTAT 5:used_chunks 1\r\nEND\r\n",
        );
        assert_eq!(
            &merge_stats(&[a.clone(), b.clone()])[..],
            b"STAT 1:chunk_size 96\r\nSTAT 1:used_chunks 5\r\nSTAT 5:used_chunks 1\r\nEND\r\n"
        );
        let d = Bytes::from_static(b"ITEM k [1 b; 0 s]\r\nEND\r\n");
        assert_eq!(
            &concat(&[d.clone(), Bytes::from_static(b"END\r\n"), d])[..],
            b"ITEM k [1 b; 0 s]\r\nITEM k [1 b; 0 s]\r\nEND\r\n"
        );
    }
}
