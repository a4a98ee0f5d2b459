//! [`KeyRouter`]: everything a pool needs to place a key, with twemproxy's rules.

use super::{hash_tag_span, Distribution, Ring, RingNode};
use crate::hash::HashKind;

/// Hash function + hash tag + ring, applied the way twemproxy's `server_pool_idx` does:
///
/// 1. a pool with exactly one server always uses index 0 and never hashes (twemproxy's
///    shortcut; the result is the same as hashing, but it is cheaper and also holds for
///    an empty key);
/// 2. the hash tag, if any, selects the hashed part of the key ([`hash_tag_span`]);
/// 3. an empty (tagged) key hashes to 0, not to `hash(b"")`: twemproxy skips the hash
///    function for empty keys, and e.g. `fnv1a_64("")` is 0x84222325, not 0, so this
///    changes where Redis' `SET "" v` goes;
/// 4. `random` never hashes at all.
///
/// Unlike twemproxy, which fails the request before asking for an index when no server
/// is live, [`KeyRouter::server_for`] simply returns `None` then (also for the
/// single-server pool whose server is ejected).
#[derive(Clone, Debug)]
pub struct KeyRouter {
    hash: HashKind,
    tag: Option<[u8; 2]>,
    ring: Ring,
    /// Rules 1 and 4: route without hashing.
    skip_hash: bool,
}

impl KeyRouter {
    /// Builds the router for a pool whose servers are `nodes`, in twemproxy order.
    pub fn new(
        hash: HashKind,
        tag: Option<[u8; 2]>,
        dist: Distribution,
        nodes: &[RingNode<'_>],
    ) -> KeyRouter {
        KeyRouter {
            hash,
            tag,
            ring: Ring::build(dist, nodes),
            // twemproxy tests the configured server count, live or not.
            skip_hash: nodes.len() == 1 || dist == Distribution::Random,
        }
    }

    /// Index (into the `nodes` given to [`KeyRouter::new`]) of the server owning `key`;
    /// `None` when no server is live. Allocation-free.
    #[inline]
    pub fn server_for(&self, key: &[u8]) -> Option<usize> {
        if self.skip_hash {
            // With one server the ring maps every hash to it (or to None if ejected).
            return self.ring.route(0);
        }
        self.ring.route(self.key_hash(key))
    }

    /// The hash twemproxy would compute for `key` in this pool (tag applied, empty → 0),
    /// whether or not the distribution uses it. For diagnostics and tests.
    #[inline]
    pub fn key_hash(&self, key: &[u8]) -> u32 {
        let span = hash_tag_span(key, self.tag);
        if span.is_empty() {
            0
        } else {
            self.hash.hash(span)
        }
    }

    /// The ring keys are placed on.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The pool's key hash function.
    pub fn hash_kind(&self) -> HashKind {
        self.hash
    }

    /// The pool's hash tag, if any.
    pub fn hash_tag(&self) -> Option<[u8; 2]> {
        self.tag
    }
}
