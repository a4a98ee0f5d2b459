//! Property tests: the consistent-hashing guarantees of ketama, and robustness of every
//! distribution on arbitrary input.

use super::*;
use crate::hash::HashKind;
use proptest::prelude::*;

const KEYS: usize = 20_000;

/// Deterministic pseudo-random key hashes (splitmix64), so a failing case is reproducible
/// from its seed alone.
fn hashes(seed: u64) -> Vec<u32> {
    let mut s = seed;
    (0..KEYS)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 32) as u32
        })
        .collect()
}

/// Server names as a config would give them, in twemproxy order.
fn sorted_names(count: usize, base: u16) -> Vec<String> {
    let names: Vec<String> = (0..count)
        .map(|i| default_server_name(&format!("10.0.{}.{}", i / 200, i % 200), base))
        .collect();
    let bytes: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
    twemproxy_order(&bytes)
        .into_iter()
        .map(|i| names[i].clone())
        .collect()
}

fn nodes<'a>(names: &'a [String], dead: Option<&str>) -> Vec<RingNode<'a>> {
    names
        .iter()
        .map(|n| RingNode {
            name: n.as_bytes(),
            weight: 1,
            live: Some(n.as_str()) != dead,
        })
        .collect()
}

/// The owner (by name) of every hash.
fn owners<'a>(ring: &Ring, names: &'a [String], hashes: &[u32]) -> Vec<&'a str> {
    hashes
        .iter()
        .map(|&h| names[ring.route(h).expect("a live server")].as_str())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Adding an (N+1)th equal-weight server moves about 1/(N+1) of the keys, all of them
    /// to the new server; ejecting a server moves only its own keys.
    #[test]
    fn ketama_is_consistent(n in 2usize..=20, port in 1024u16..65535, seed in any::<u64>()) {
        let hs = hashes(seed);
        let all = sorted_names(n + 1, port);
        // The newcomer is the last one generated; it may sort anywhere.
        let newcomer = default_server_name(&format!("10.0.{}.{}", n / 200, n % 200), port);
        let before_names: Vec<String> = all.iter().filter(|s| **s != newcomer).cloned().collect();

        let before = Ring::build(Distribution::Ketama, &nodes(&before_names, None));
        let after = Ring::build(Distribution::Ketama, &nodes(&all, None));
        let (a, b) = (owners(&before, &before_names, &hs), owners(&after, &all, &hs));

        let mut moved = 0usize;
        for (old, new) in a.iter().zip(&b) {
            if old != new {
                moved += 1;
                prop_assert_eq!(*new, newcomer.as_str(), "keys only move to the new server");
            }
        }
        let expected = KEYS as f64 / (n + 1) as f64;
        prop_assert!(
            (0.4 * expected..=1.8 * expected).contains(&(moved as f64)),
            "moved {} keys, expected about {:.0}", moved, expected
        );

        // Eject one server of the N+1 (chosen by the seed).
        let victim = all[(seed % (n as u64 + 1)) as usize].clone();
        let ejected = Ring::build(Distribution::Ketama, &nodes(&all, Some(&victim)));
        let c = owners(&ejected, &all, &hs);
        for (full, less) in b.iter().zip(&c) {
            prop_assert_ne!(*less, victim.as_str());
            if full != less {
                prop_assert_eq!(*full, victim.as_str(), "only the ejected server's keys move");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `route()` never panics and answers with a live server, or `None` exactly when no
    /// server can take keys.
    #[test]
    fn route_returns_live_servers(
        servers in prop::collection::vec((0u32..=12, any::<bool>(), "[a-z0-9.:]{0,12}"), 0..24),
        dist in prop_oneof![
            Just(Distribution::Ketama),
            Just(Distribution::Modula),
            Just(Distribution::Random),
        ],
        probes in prop::collection::vec(any::<u32>(), 1..64),
    ) {
        let nodes: Vec<RingNode<'_>> = servers
            .iter()
            .map(|(w, live, name)| RingNode { name: name.as_bytes(), weight: *w, live: *live })
            .collect();
        let ring = Ring::build(dist, &nodes);
        let any_live = nodes.iter().any(|n| n.live);
        let any_weighted = nodes.iter().any(|n| n.live && n.weight > 0);
        for h in probes.into_iter().chain([0, 1, u32::MAX]) {
            match ring.route(h) {
                Some(i) => {
                    prop_assert!(i < nodes.len());
                    prop_assert!(nodes[i].live, "dead server {} picked", i);
                }
                None => match dist {
                    Distribution::Random => prop_assert!(!any_live),
                    // Weight-0 servers get no slot; ketama can also give a tiny weight
                    // 0 points, but then another live server has points.
                    _ => prop_assert!(!any_weighted),
                },
            }
        }
    }

    /// Whole-pipeline robustness: arbitrary keys, tags, hashes and weights.
    #[test]
    fn key_router_never_panics(
        weights in prop::collection::vec((any::<u32>(), any::<bool>()), 0..8),
        key in prop::collection::vec(any::<u8>(), 0..300),
        tag in prop::option::of(any::<[u8; 2]>()),
        kind in prop::sample::select(HashKind::ALL.to_vec()),
        modula in any::<bool>(),
    ) {
        let names: Vec<String> = (0..weights.len()).map(|i| format!("s{i}")).collect();
        let nodes: Vec<RingNode<'_>> = weights
            .iter()
            .zip(&names)
            .map(|(&(weight, live), name)| RingNode { name: name.as_bytes(), weight, live })
            .collect();
        let dist = if modula { Distribution::Modula } else { Distribution::Ketama };
        let router = KeyRouter::new(kind, tag, dist, &nodes);
        if let Some(i) = router.server_for(&key) {
            prop_assert!(nodes[i].live);
        }
        let span = hash_tag_span(&key, tag);
        prop_assert!(span.len() <= key.len());
    }
}
