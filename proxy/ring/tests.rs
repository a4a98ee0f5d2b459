//! Golden tests against data recorded from nutcracker 0.5.0 (`tests/data/twemproxy/`).

use super::*;
use crate::hash::HashKind;

macro_rules! golden {
    ($file:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/twemproxy/",
            $file
        ))
    };
}

/// A pool as read from one of the golden `.yml` files, servers in twemproxy order.
struct Pool {
    hash: HashKind,
    dist: Distribution,
    /// (name, weight), sorted by [`twemproxy_order`].
    servers: Vec<(String, u32)>,
}

impl Pool {
    /// Reads the few directives the golden files use; a tiny line parser is enough and
    /// keeps these tests independent of the config module.
    fn parse(yml: &str) -> Pool {
        let mut hash = HashKind::DEFAULT;
        let mut dist = Distribution::DEFAULT;
        let mut servers = Vec::new();
        for line in yml.lines().map(str::trim) {
            if let Some(v) = line.strip_prefix("hash:") {
                hash = HashKind::from_name(v.trim()).expect("hash name");
            } else if let Some(v) = line.strip_prefix("distribution:") {
                dist = Distribution::from_name(v.trim()).expect("distribution name");
            } else if let Some(v) = line.strip_prefix("- ") {
                servers.push(parse_server(v.trim()));
            }
        }
        let names: Vec<&[u8]> = servers.iter().map(|(n, _)| n.as_bytes()).collect();
        let servers = twemproxy_order(&names)
            .into_iter()
            .map(|i| servers[i].clone())
            .collect();
        Pool {
            hash,
            dist,
            servers,
        }
    }

    fn nodes(&self) -> Vec<RingNode<'_>> {
        self.servers
            .iter()
            .map(|(name, weight)| RingNode {
                name: name.as_bytes(),
                weight: *weight,
                live: true,
            })
            .collect()
    }
}

/// `host:port:weight [name]`, parsed from the right as twemproxy does.
fn parse_server(s: &str) -> (String, u32) {
    let (addr, name) = match s.rsplit_once(' ') {
        Some((addr, name)) => (addr, Some(name)),
        None => (s, None),
    };
    let (rest, weight) = addr.rsplit_once(':').expect("weight");
    let (host, port) = rest.rsplit_once(':').expect("port");
    let port: u16 = port.parse().expect("port number");
    let name = name.map_or_else(|| default_server_name(host, port), str::to_string);
    (name, weight.parse().expect("weight number"))
}

fn csv_rows(csv: &str) -> impl Iterator<Item = (&str, &str)> {
    csv.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_once(',').expect("two columns"))
}

fn check_continuum(yml: &str, csv: &str) {
    let pool = Pool::parse(yml);
    assert_eq!(pool.dist, Distribution::Ketama);
    let ring = Ring::build(pool.dist, &pool.nodes());
    let expected: Vec<(u32, &str)> = csv_rows(csv)
        .map(|(v, name)| (v.parse().expect("point value"), name))
        .collect();
    assert_eq!(ring.points().len(), expected.len());
    for (k, (&(value, server), &(want_value, want_name))) in
        ring.points().iter().zip(&expected).enumerate()
    {
        assert_eq!(value, want_value, "point #{k}");
        assert_eq!(pool.servers[server as usize].0, want_name, "point #{k}");
    }
}

fn check_placement(yml: &str, csv: &str) -> Vec<usize> {
    let pool = Pool::parse(yml);
    let router = KeyRouter::new(pool.hash, None, pool.dist, &pool.nodes());
    let mut counts = vec![0; pool.servers.len()];
    let mut rows = 0;
    for (key, want) in csv_rows(csv) {
        let idx = router.server_for(key.as_bytes()).expect("a live server");
        assert_eq!(pool.servers[idx].0, want, "key {key}");
        counts[idx] += 1;
        rows += 1;
    }
    assert_eq!(rows, 1000);
    counts
}

#[test]
fn continuum_fnv1a64() {
    check_continuum(
        golden!("placement_ketama_fnv1a64.yml"),
        golden!("continuum_ketama_fnv1a64.csv"),
    );
}

#[test]
fn continuum_md5_named_weighted() {
    check_continuum(
        golden!("placement_ketama_md5_named_weighted.yml"),
        golden!("continuum_ketama_md5_named_weighted.csv"),
    );
}

#[test]
fn placement_fnv1a64() {
    let counts = check_placement(
        golden!("placement_ketama_fnv1a64.yml"),
        golden!("placement_ketama_fnv1a64.csv"),
    );
    assert_eq!(counts, [300, 230, 470]);
}

#[test]
fn placement_md5_named_weighted() {
    // Servers sort as beta, alpha, gamma (shorter names first).
    let counts = check_placement(
        golden!("placement_ketama_md5_named_weighted.yml"),
        golden!("placement_ketama_md5_named_weighted.csv"),
    );
    assert_eq!(counts, [297, 147, 556]);
}

#[test]
fn default_names() {
    assert_eq!(default_server_name("127.0.0.1", 30001), "127.0.0.1:30001");
    assert_eq!(default_server_name("127.0.0.1", 11211), "127.0.0.1");
    assert_eq!(default_server_name("localhost", 30001), "localhost:30001");
    assert_eq!(
        default_unix_server_name("/path/to/none.sock"),
        "/path/to/none.sock:"
    );
    assert_eq!(
        parse_server("127.0.0.1:30002:2 beta"),
        ("beta".to_string(), 2)
    );
}

#[test]
fn server_order() {
    let names: [&[u8]; 5] = [b"gamma", b"beta", b"alpha", b"b", b"10.0.0.1:2"];
    assert_eq!(twemproxy_order(&names), [3, 1, 2, 0, 4]);
    assert_eq!(twemproxy_order(&[]), Vec::<usize>::new());
}

#[test]
fn distribution_names() {
    for d in [
        Distribution::Ketama,
        Distribution::Modula,
        Distribution::Random,
    ] {
        assert_eq!(Distribution::from_name(d.name()), Some(d));
    }
    assert_eq!(Distribution::from_name("Ketama"), None);
}

#[test]
fn modula_weights_3_1_2() {
    // Names of different lengths: sorted order is "b:2" (w1), "cc:3" (w2), "aaaa:1" (w3).
    let servers = [("aaaa:1", 3), ("b:2", 1), ("cc:3", 2)];
    let names: Vec<&[u8]> = servers.iter().map(|s| s.0.as_bytes()).collect();
    let order = twemproxy_order(&names);
    assert_eq!(order, [1, 2, 0]);
    let nodes: Vec<RingNode<'_>> = order
        .iter()
        .map(|&i| RingNode {
            name: servers[i].0.as_bytes(),
            weight: servers[i].1,
            live: true,
        })
        .collect();
    let ring = Ring::build(Distribution::Modula, &nodes);
    assert!(ring.points().is_empty());
    // Table: [b, cc, cc, aaaa, aaaa, aaaa].
    let by_slot: Vec<&str> = (0..6)
        .map(|h| servers[order[ring.route(h).unwrap()]].0)
        .collect();
    assert_eq!(
        by_slot,
        ["b:2", "cc:3", "cc:3", "aaaa:1", "aaaa:1", "aaaa:1"]
    );
    assert_eq!(ring.route(6 + 4), ring.route(4));

    // Through the router: the md5 of the key picks the slot.
    let router = KeyRouter::new(HashKind::Md5, None, Distribution::Modula, &nodes);
    for key in ["key:0", "key:1", "foo", "bar"] {
        let slot = HashKind::Md5.hash(key.as_bytes()) % 6;
        assert_eq!(router.server_for(key.as_bytes()), ring.route(slot));
    }

    // Ejecting "cc:3" leaves [b, aaaa, aaaa, aaaa].
    let mut ejected = nodes.clone();
    ejected[1].live = false;
    let ring = Ring::build(Distribution::Modula, &ejected);
    let by_slot: Vec<usize> = (0..4).map(|h| ring.route(h).unwrap()).collect();
    assert_eq!(by_slot, [0, 2, 2, 2]);
}

#[test]
fn hash_tags() {
    let braces = Some(*b"{}");
    assert_eq!(hash_tag_span(b"{}abc", braces), b"{}abc");
    assert_eq!(hash_tag_span(b"{abc", braces), b"{abc");
    assert_eq!(hash_tag_span(b"a}b{c}", braces), b"c");
    assert_eq!(hash_tag_span(b"user:{123}:name", braces), b"123");
    assert_eq!(hash_tag_span(b"{a}{b}", braces), b"a");
    assert_eq!(hash_tag_span(b"abc}", braces), b"abc}");
    assert_eq!(hash_tag_span(b"", braces), b"");
    assert_eq!(hash_tag_span(b"{x}", None), b"{x}");
    let dollars = Some(*b"$$");
    assert_eq!(hash_tag_span(b"$t$1", dollars), b"t");
    assert_eq!(hash_tag_span(b"$$t$", dollars), b"$$t$");
    assert_eq!(hash_tag_span(b"a$bc$d$", dollars), b"bc");
}

#[test]
fn router_rules() {
    let names = ["s1:1", "s2:2", "s3:3"];
    let nodes = RingNode::equal(&names);
    let router = KeyRouter::new(
        HashKind::Fnv1a_64,
        Some(*b"{}"),
        Distribution::Ketama,
        &nodes,
    );
    // Tagged keys follow their tag.
    for tag in ["1", "user42", "x"] {
        let want = router.ring().route(HashKind::Fnv1a_64.hash(tag.as_bytes()));
        for key in [
            format!("{{{tag}}}"),
            format!("a{{{tag}}}b"),
            format!("zz:{{{tag}}}:{{q}}"),
        ] {
            assert_eq!(router.server_for(key.as_bytes()), want, "{key}");
        }
    }
    // Empty key hashes to 0, not to fnv1a_64("").
    assert_eq!(router.key_hash(b""), 0);
    assert_eq!(router.server_for(b""), router.ring().route(0));
    assert_eq!(router.key_hash(b"{}"), HashKind::Fnv1a_64.hash(b"{}"));

    // One server: index 0 whatever the key; None once it is ejected.
    let one = KeyRouter::new(HashKind::Md5, None, Distribution::Ketama, &nodes[..1]);
    assert_eq!(one.server_for(b"anything"), Some(0));
    let mut dead = nodes[0];
    dead.live = false;
    let none = KeyRouter::new(HashKind::Md5, None, Distribution::Modula, &[dead]);
    assert_eq!(none.server_for(b"anything"), None);
    assert_eq!(
        KeyRouter::new(HashKind::Md5, None, Distribution::Ketama, &[]).server_for(b"k"),
        None
    );

    // Random ignores the key but only returns live servers.
    let mut some_dead = nodes.clone();
    some_dead[0].live = false;
    let random = KeyRouter::new(HashKind::Md5, None, Distribution::Random, &some_dead);
    for i in 0..200 {
        let idx = random.server_for(format!("k{i}").as_bytes()).unwrap();
        assert!(idx == 1 || idx == 2);
    }
}

#[test]
fn ejection_rebuilds_over_live_servers() {
    // Weights 1:2:3 with the weight-3 server ejected: 1:2 over two live servers gives
    // 2 * 160 * (1/3, 2/3) = 104 and 212 points (float32 floors), as twemproxy.
    let names = ["alpha", "beta", "gamma"];
    let nodes: Vec<RingNode<'_>> = names
        .iter()
        .zip([1, 2, 3])
        .map(|(n, w)| RingNode {
            name: n.as_bytes(),
            weight: w,
            live: w != 3,
        })
        .collect();
    let ring = Ring::build(Distribution::Ketama, &nodes);
    let count = |s: u32| ring.points().iter().filter(|p| p.1 == s).count() as u32;
    assert_eq!(count(0), points_per_server(1, 3, 2));
    assert_eq!(count(1), points_per_server(2, 3, 2));
    assert_eq!(count(2), 0);
    assert_eq!((count(0), count(1)), (104, 212));
    assert_eq!(ring.live_count(), 2);
    assert_eq!(ring.node_count(), 3);
}
