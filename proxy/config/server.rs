//! One entry of a pool's `servers:` list.
//!
//! The syntax is twemproxy's (`conf_add_server`): `host:port:weight [name]` or
//! `/path/to/socket:weight [name]`, parsed from the right. The name is what follows the last
//! space, the weight follows the last colon and the port the colon before it, which is what
//! lets an unbracketed IPv6 literal (`::1:11211:1`) through. The name matters more than the
//! address: ketama hashes it and the stats use it as a key, so the default-name rules must
//! match twemproxy's byte for byte or keys would move when migrating.

use std::fmt;
use std::path::PathBuf;

use serde_yaml::Value;

use super::listen::{fmt_host_port, parse_host, parse_port};
use super::scalar;
use crate::ring::{default_server_name, default_unix_server_name, twemproxy_order};

/// How to reach a backend. Host names are kept as text and resolved when connecting.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ServerAddr {
    /// `host` has no brackets even for IPv6.
    Tcp {
        host: String,
        port: u16,
    },
    Unix(PathBuf),
}

/// A backend as configured: its name (explicit or default), address and weight.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerConfig {
    /// Used for ketama points, stats keys and the duplicate check.
    pub name: String,
    pub addr: ServerAddr,
    /// At least 1.
    pub weight: u32,
}

const FORMAT: &str = "expected \"host:port:weight [name]\" or \"/path/to/socket:weight [name]\"";

impl ServerConfig {
    /// Parses one `servers:` entry; the error is a reason that quotes the entry.
    pub fn parse(entry: &str) -> Result<ServerConfig, String> {
        let fail = |why: String| format!("\"{entry}\": {why}");
        let (spec, name) = match entry.rsplit_once(' ') {
            Some((spec, name)) => {
                if name.is_empty() {
                    return Err(fail("the name after the space is empty".to_string()));
                }
                (spec.trim_end(), Some(name))
            }
            None => (entry, None),
        };
        let Some((addr, weight)) = spec.rsplit_once(':') else {
            return Err(fail(format!("has no weight ({FORMAT})")));
        };
        let weight = parse_weight(weight).map_err(fail)?;
        let (addr, default_name) = if addr.starts_with('/') {
            // twemproxy quirk: the default name of a unix server is the path plus a colon,
            // because it is built as "<addr>:<port text>" with an empty port.
            (
                ServerAddr::Unix(PathBuf::from(addr)),
                default_unix_server_name(addr),
            )
        } else {
            let Some((host, port)) = addr.rsplit_once(':') else {
                return Err(fail(format!("has no port or no weight ({FORMAT})")));
            };
            let host = parse_host(host).map_err(fail)?;
            let port = parse_port(port).map_err(fail)?;
            let default_name = default_server_name(&host, port);
            (ServerAddr::Tcp { host, port }, default_name)
        };
        Ok(ServerConfig {
            name: name.map_or(default_name, str::to_string),
            addr,
            weight,
        })
    }
}

/// A weight: decimal digits, at least 1 (twemproxy refuses 0 with "has a zero weight").
fn parse_weight(weight: &str) -> Result<u32, String> {
    if weight.is_empty() || !weight.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "weight \"{weight}\" is not a positive integer ({FORMAT})"
        ));
    }
    match weight.parse::<u32>() {
        Ok(0) => Err("has a zero weight (the weight must be at least 1)".to_string()),
        Ok(w) => Ok(w),
        Err(_) => Err(format!(
            "weight {weight} is too large (maximum {})",
            u32::MAX
        )),
    }
}

/// Parses a whole `servers:` value and puts the servers in twemproxy order (shorter name first,
/// then bytewise), because that order *is* the server index that modula and ketama use.
/// Every bad entry and every repeated name is reported, each as its own reason.
pub fn parse_list(value: &Value) -> Result<Vec<ServerConfig>, Vec<String>> {
    let items = match value {
        Value::Sequence(items) if items.is_empty() => {
            return Err(vec![
                "lists no servers (a pool needs at least one)".to_string()
            ])
        }
        Value::Sequence(items) => items,
        Value::Null => {
            return Err(vec![
                "lists no servers (a pool needs at least one)".to_string()
            ])
        }
        other => {
            return Err(vec![format!(
                "expected a sequence of \"host:port:weight [name]\" entries, found \"{}\"",
                scalar::render(other)
            )])
        }
    };
    let mut problems = Vec::new();
    let mut servers = Vec::with_capacity(items.len());
    for item in items {
        match scalar::text(item).and_then(|entry| ServerConfig::parse(&entry)) {
            Ok(server) => servers.push(server),
            Err(why) => problems.push(why),
        }
    }
    let names: Vec<&[u8]> = servers.iter().map(|s| s.name.as_bytes()).collect();
    let mut sorted: Vec<ServerConfig> = twemproxy_order(&names)
        .into_iter()
        .filter_map(|i| servers.get(i).cloned())
        .collect();
    if sorted.len() != servers.len() {
        // Defensive: the ring's ordering must be a permutation; never drop a server.
        sorted = servers;
    }
    // Equal names sort next to each other; report each repeated name once.
    for (i, pair) in sorted.windows(2).enumerate() {
        let repeats_earlier = i > 0 && sorted[i - 1].name == pair[0].name;
        if pair[0].name == pair[1].name && !repeats_earlier {
            problems.push(format!("has servers with same name '{}'", pair[0].name));
        }
    }
    if problems.is_empty() {
        Ok(sorted)
    } else {
        Err(problems)
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddr::Tcp { host, port } => fmt_host_port(f, host, *port),
            ServerAddr::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> ServerAddr {
        ServerAddr::Tcp {
            host: host.to_string(),
            port,
        }
    }

    fn parse(entry: &str) -> ServerConfig {
        ServerConfig::parse(entry).unwrap_or_else(|e| panic!("{entry}: {e}"))
    }

    #[test]
    fn host_port_weight_with_default_names() {
        let s = parse("127.0.0.1:30001:1");
        assert_eq!(s.addr, tcp("127.0.0.1", 30001));
        assert_eq!((s.name.as_str(), s.weight), ("127.0.0.1:30001", 1));
        // libmemcached compatibility: port 11211 is left out of the name.
        assert_eq!(parse("127.0.0.1:11211:1").name, "127.0.0.1");
        assert_eq!(parse("localhost:30001:5").name, "localhost:30001");
        assert_eq!(parse("localhost:30001:5").weight, 5);
    }

    #[test]
    fn explicit_name_after_last_space() {
        let s = parse("127.0.0.1:30001:2 alpha");
        assert_eq!((s.name.as_str(), s.weight), ("alpha", 2));
        assert_eq!(s.addr, tcp("127.0.0.1", 30001));
    }

    #[test]
    fn ipv6_with_and_without_brackets_share_a_default_name() {
        let a = parse("::1:30001:1");
        let b = parse("[::1]:30001:1");
        assert_eq!(a, b);
        assert_eq!(a.addr, tcp("::1", 30001));
        assert_eq!(a.addr.to_string(), "[::1]:30001");
    }

    #[test]
    fn unix_socket_default_name_has_trailing_colon() {
        let s = parse("/tmp/x.sock:1");
        assert_eq!(s.addr, ServerAddr::Unix(PathBuf::from("/tmp/x.sock")));
        assert_eq!(s.name, "/tmp/x.sock:");
        assert_eq!(s.addr.to_string(), "/tmp/x.sock");
        assert_eq!(parse("/tmp/x.sock:3 name1").name, "name1");
    }

    #[test]
    fn malformed_entries_are_rejected_with_reasons() {
        let cases = [
            ("127.0.0.1:30001", "has no port or no weight"),
            ("127.0.0.1", "has no weight"),
            ("127.0.0.1:30001:0", "zero weight"),
            ("127.0.0.1:30001:-1", "not a positive integer"),
            ("127.0.0.1:30001:1 a b", "not a positive integer"),
            ("127.0.0.1:30001:1 ", "name after the space is empty"),
            ("127.0.0.1:0:1", "not a valid port"),
            ("127.0.0.1:70000:1", "not a valid port"),
            (":30001:1", "host is empty"),
            ("[::1:30001:1", "unbalanced"),
            ("/tmp/x.sock", "has no weight"),
            ("/tmp/x.sock:", "not a positive integer"),
            ("h:1:99999999999", "too large"),
        ];
        for (entry, expected) in cases {
            let err = ServerConfig::parse(entry).unwrap_err();
            assert!(err.contains(expected), "{entry}: {err}");
            assert!(err.starts_with(&format!("\"{entry}\"")), "{entry}: {err}");
        }
    }

    fn list(yaml: &str) -> Result<Vec<ServerConfig>, Vec<String>> {
        parse_list(&serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn list_is_sorted_by_length_then_bytes() {
        let servers =
            list("[ '10.0.0.1:30001:1 gamma', '10.0.0.2:30002:1 b', '10.0.0.3:3:1 alpha' ]");
        let servers = servers.unwrap();
        let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
        // Not alphabetical: "b" is shortest, "alpha" and "gamma" have equal length.
        assert_eq!(names, ["b", "alpha", "gamma"]);
        let servers =
            list("['127.0.0.1:30002:1', '127.0.0.1:11211:1', 'localhost:30001:1']").unwrap();
        let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["127.0.0.1", "127.0.0.1:30002", "localhost:30001"]);
    }

    #[test]
    fn list_reports_every_problem() {
        let problems =
            list("['a:1:0', 'b:1', 'c:1:1 x', 'd:1:1 x', 'e:1:1 x', 'f:1:1 y', 'g:1:1 y', ~]")
                .unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems[0].contains("zero weight"));
        assert!(problems[1].contains("has no port or no weight"));
        assert!(problems[2].contains("empty value"));
        assert_eq!(problems[3], "has servers with same name 'x'");
        assert_eq!(problems[4], "has servers with same name 'y'");
    }

    #[test]
    fn list_must_be_a_non_empty_sequence() {
        assert!(list("[]").unwrap_err()[0].contains("lists no servers"));
        assert!(list("~").unwrap_err()[0].contains("lists no servers"));
        assert!(list("a:1:1").unwrap_err()[0].contains("expected a sequence"));
        assert!(list("{a: 1}").unwrap_err()[0].contains("expected a sequence"));
        assert!(list("[[a]]").unwrap_err()[0].contains("found a sequence"));
    }
}
