//! Server selection (key distribution), compatible with twemproxy 0.5.0.
//!
//! A pool places a key in four steps (`server_pool_idx` in twemproxy's `nc_server.c`):
//! the hash tag picks the part of the key to hash ([`hash_tag_span`]), the pool's hash
//! function turns it into a `u32` ([`crate::hash::HashKind`]), and the distribution maps
//! the hash onto one of the live servers ([`Ring`]). [`KeyRouter`] bundles the three
//! with twemproxy's special cases.
//!
//! Server *indices* are positions in the pool's server list **after** twemproxy's sort
//! ([`twemproxy_order`]); modula tables and ketama tie-breaking depend on that order, so
//! callers must build [`RingNode`] slices in that order.
//!
//! The three distributions:
//! * `ketama` (`ketama.rs`): consistent hashing on an MD5 continuum, 160 points per server
//!   scaled by weight;
//! * `modula` (`modula.rs`): `hash % total_weight` over a table of weighted servers;
//! * `random` (`random.rs`): a uniformly random live server per key, ignoring the hash.

mod ketama;
mod modula;
mod random;
pub use random::next_u32;
mod router;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use self::ketama::{points_per_server, KETAMA_POINTS_PER_SERVER};
pub use self::router::KeyRouter;

/// How a pool maps key hashes to servers (twemproxy's `distribution:` directive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution {
    /// Consistent hashing on an MD5 continuum (twemproxy's default).
    Ketama,
    /// `hash % total_weight`, each server owning `weight` consecutive slots.
    Modula,
    /// A random live server for every request; the key is not hashed.
    Random,
}

impl Distribution {
    /// twemproxy's default when a pool has no `distribution:` directive.
    pub const DEFAULT: Distribution = Distribution::Ketama;

    /// Parses a twemproxy `distribution:` value (exact, case-sensitive, as twemproxy).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ketama" => Some(Distribution::Ketama),
            "modula" => Some(Distribution::Modula),
            "random" => Some(Distribution::Random),
            _ => None,
        }
    }

    /// The name used in twemproxy configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Ketama => "ketama",
            Distribution::Modula => "modula",
            Distribution::Random => "random",
        }
    }
}

impl std::fmt::Display for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The order twemproxy gives a pool's servers: it `qsort`s them by name with
/// `string_compare`, i.e. shorter names first, then `memcmp` of the bytes. Returns the
/// permutation: `order[k]` is the input index of the server that gets index `k`.
///
/// twemproxy rejects duplicate names, so the sort has no ties in valid configurations;
/// for equal names we keep input order (stable sort) to stay deterministic.
pub fn twemproxy_order(names: &[&[u8]]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (names[a], names[b]);
        x.len().cmp(&y.len()).then_with(|| x.cmp(y))
    });
    order
}

/// The name twemproxy gives a TCP server without an explicit name: `host:port`, or just
/// `host` when the port is 11211 (libmemcached's convention, so that rings built by
/// libmemcached clients for default-port servers are identical). The weight is never part
/// of the name. The name feeds the ketama point strings, so it decides key placement.
pub fn default_server_name(host: &str, port: u16) -> String {
    if port == 11211 {
        host.to_string()
    } else {
        format!("{host}:{port}")
    }
}

/// The name twemproxy gives a unix-socket server without an explicit name: the path
/// followed by a colon (`"/tmp/mc.sock:"`), as observed in nutcracker 0.5.0's stats.
pub fn default_unix_server_name(path: &str) -> String {
    format!("{path}:")
}

/// The part of `key` that is hashed when the pool has a `hash_tag` (twemproxy and Redis
/// Cluster rule): find the first `tag[0]`, then the first `tag[1]` after it; if both exist
/// and enclose at least one byte, only those bytes are hashed, otherwise the whole key.
///
/// Examples with `"{}"`: `{}abc` and `{abc` hash whole, `a}b{c}` hashes `c`,
/// `user:{123}:x` hashes `123`. With `"$$"`, `$t$1` hashes `t`.
pub fn hash_tag_span(key: &[u8], tag: Option<[u8; 2]>) -> &[u8] {
    let Some([open, close]) = tag else {
        return key;
    };
    let Some(start) = key.iter().position(|&b| b == open) else {
        return key;
    };
    let after = &key[start + 1..];
    match after.iter().position(|&b| b == close) {
        Some(len) if len > 0 => &after[..len],
        _ => key,
    }
}

/// One server as input to [`Ring::build`]. Slices of these must be in twemproxy order
/// (see [`twemproxy_order`]); the position in the slice is the server index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingNode<'a> {
    /// The server's name (explicit name, or [`default_server_name`]); ketama hashes it.
    pub name: &'a [u8],
    /// Configured weight. twemproxy requires >= 1; a weight of 0 gets no share of keys.
    pub weight: u32,
    /// `false` for an ejected server: it is left out of the ring entirely, and the other
    /// servers' shares are recomputed over the live ones, as twemproxy does.
    pub live: bool,
}

impl<'a> RingNode<'a> {
    /// Live servers of weight 1 with these names: the common case in tests, benchmarks and
    /// ring predictions.
    pub fn equal<S: AsRef<[u8]>>(names: &'a [S]) -> Vec<RingNode<'a>> {
        names
            .iter()
            .map(|n| RingNode {
                name: n.as_ref(),
                weight: 1,
                live: true,
            })
            .collect()
    }
}

/// An immutable key-hash to server-index map, built once per route table.
///
/// [`Ring::route`] is allocation-free and O(1) for modula/random, O(log points per
/// bucket) for ketama (see `ketama.rs`).
#[derive(Clone, Debug)]
pub struct Ring {
    dist: Distribution,
    node_count: usize,
    live_count: usize,
    imp: Imp,
}

#[derive(Clone, Debug)]
enum Imp {
    Ketama(ketama::Continuum),
    Modula(modula::Modula),
    Random(random::LiveSet),
}

impl Ring {
    /// Builds the ring for `nodes` (in twemproxy order), skipping servers not `live`.
    pub fn build(dist: Distribution, nodes: &[RingNode<'_>]) -> Ring {
        let imp = match dist {
            Distribution::Ketama => Imp::Ketama(ketama::Continuum::build(nodes)),
            Distribution::Modula => Imp::Modula(modula::Modula::build(nodes)),
            Distribution::Random => Imp::Random(random::LiveSet::build(nodes)),
        };
        Ring {
            dist,
            node_count: nodes.len(),
            live_count: nodes.iter().filter(|n| n.live).count(),
            imp,
        }
    }

    /// Server index (into the `nodes` given to [`Ring::build`]) for an already computed
    /// key hash; `None` when no server can take keys (none live, or all live servers have
    /// weight 0). For [`Distribution::Random`] the hash is ignored.
    #[inline]
    pub fn route(&self, hash: u32) -> Option<usize> {
        match &self.imp {
            Imp::Ketama(c) => c.lookup(hash),
            Imp::Modula(m) => m.lookup(hash),
            Imp::Random(r) => r.pick(),
        }
    }

    /// The ketama continuum as `(point value, server index)`, sorted by value then server
    /// index; empty for the other distributions. For tests and diagnostics.
    pub fn points(&self) -> &[(u32, u32)] {
        match &self.imp {
            Imp::Ketama(c) => c.points(),
            _ => &[],
        }
    }

    /// The distribution this ring implements.
    pub fn distribution(&self) -> Distribution {
        self.dist
    }

    /// Number of servers given to [`Ring::build`], live or not.
    pub fn node_count(&self) -> usize {
        self.node_count
    }

    /// Number of live servers.
    pub fn live_count(&self) -> usize {
        self.live_count
    }
}
