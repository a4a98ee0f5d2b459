//! The `listen:` address of a pool.
//!
//! Syntax follows twemproxy's `conf_set_listen`: a value starting with `/` is a unix socket
//! path optionally followed by a space and an octal permission; anything else is `host:port`
//! split at the *last* colon, so an unbracketed IPv6 literal such as `::1:22121` works. Unlike
//! twemproxy 0.5.0 the bracketed form `[::1]:22121` is accepted too (brackets are stripped),
//! since that is how everyone else writes IPv6 addresses. Host names are kept as text: they
//! are resolved when the listener is bound, not while validating.

use std::fmt;
use std::path::PathBuf;

/// Where a pool accepts client connections.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// A TCP listener; `host` has no brackets even for IPv6.
    Tcp { host: String, port: u16 },
    /// A unix socket; `mode` is the permission to `chmod` it to after binding.
    Unix { path: PathBuf, mode: Option<u32> },
}

impl ListenAddr {
    /// Parses a `listen:` value; the error is a reason that quotes the value.
    pub fn parse(text: &str) -> Result<ListenAddr, String> {
        if text.starts_with('/') {
            return parse_unix(text);
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(format!(
                "\"{text}\" is not \"host:port\" or \"/path/to/socket [permissions]\""
            ));
        };
        let host = parse_host(host).map_err(|why| format!("\"{text}\": {why}"))?;
        let port = parse_port(port).map_err(|why| format!("\"{text}\": {why}"))?;
        Ok(ListenAddr::Tcp { host, port })
    }

    /// True when two pools could not both bind this address. Unix sockets clash on the path
    /// whatever their permissions; TCP ones on the exact host text and port (names are not
    /// resolved here, so `localhost` and `127.0.0.1` are not recognised as the same).
    pub fn clashes_with(&self, other: &ListenAddr) -> bool {
        match (self, other) {
            (ListenAddr::Unix { path: a, .. }, ListenAddr::Unix { path: b, .. }) => a == b,
            (a, b) => a == b,
        }
    }
}

fn parse_unix(text: &str) -> Result<ListenAddr, String> {
    // twemproxy splits at the last space; so a path that contains spaces needs a permission.
    let Some((path, mode)) = text.rsplit_once(' ') else {
        return Ok(ListenAddr::Unix {
            path: PathBuf::from(text),
            mode: None,
        });
    };
    let path = path.trim_end();
    let valid =
        !mode.is_empty() && mode.len() <= 4 && mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
    let mode = u32::from_str_radix(mode, 8)
        .ok()
        .filter(|m| valid && *m <= 0o777)
        .ok_or_else(|| {
            format!("\"{text}\": \"{mode}\" is not an octal file permission (expected e.g. 0666)")
        })?;
    Ok(ListenAddr::Unix {
        path: PathBuf::from(path),
        mode: Some(mode),
    })
}

/// Strips IPv6 brackets and refuses hosts that could never resolve, so the mistake is caught
/// now rather than when the listener or backend connection is created.
pub(crate) fn parse_host(host: &str) -> Result<String, String> {
    let inner = match (host.strip_prefix('['), host.strip_suffix(']')) {
        (Some(_), Some(_)) if host.len() >= 2 => &host[1..host.len() - 1],
        (None, None) => host,
        _ => return Err(format!("unbalanced brackets in host \"{host}\"")),
    };
    if inner.is_empty() {
        return Err("the host is empty".to_string());
    }
    if inner.contains(|c: char| c.is_whitespace() || c == '[' || c == ']') {
        return Err(format!("\"{host}\" is not a valid host"));
    }
    Ok(inner.to_string())
}

/// A TCP port: decimal digits only (as twemproxy's `nc_atoi`), 1..=65535.
pub(crate) fn parse_port(port: &str) -> Result<u16, String> {
    let valid = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    port.parse::<u16>()
        .ok()
        .filter(|p| valid && *p != 0)
        .ok_or_else(|| format!("\"{port}\" is not a valid port (expected 1..65535)"))
}

/// Writes `host:port` with brackets around IPv6 literals so the text can be parsed back.
pub(crate) fn fmt_host_port(f: &mut fmt::Formatter<'_>, host: &str, port: u16) -> fmt::Result {
    if host.contains(':') {
        write!(f, "[{host}]:{port}")
    } else {
        write!(f, "{host}:{port}")
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp { host, port } => fmt_host_port(f, host, *port),
            ListenAddr::Unix { path, .. } => write!(f, "{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> ListenAddr {
        ListenAddr::Tcp {
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn tcp_splits_at_last_colon() {
        assert_eq!(
            ListenAddr::parse("127.0.0.1:22121"),
            Ok(tcp("127.0.0.1", 22121))
        );
        assert_eq!(ListenAddr::parse("localhost:1"), Ok(tcp("localhost", 1)));
        assert_eq!(
            ListenAddr::parse("0.0.0.0:65535"),
            Ok(tcp("0.0.0.0", 65535))
        );
    }

    #[test]
    fn ipv6_with_and_without_brackets() {
        assert_eq!(ListenAddr::parse("::1:30160"), Ok(tcp("::1", 30160)));
        assert_eq!(ListenAddr::parse("[::1]:30160"), Ok(tcp("::1", 30160)));
        assert_eq!(tcp("::1", 30160).to_string(), "[::1]:30160");
        assert_eq!(tcp("10.0.0.1", 5).to_string(), "10.0.0.1:5");
    }

    #[test]
    fn bad_tcp_values() {
        for bad in [
            "localhost",
            "127.0.0.1:",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:+80",
            "127.0.0.1:8o",
            ":80",
            "[::1:80",
            "::1]:80",
            "[]:80",
            "a b:80",
        ] {
            assert!(ListenAddr::parse(bad).is_err(), "{bad} accepted");
        }
        let err = ListenAddr::parse("127.0.0.1:0").unwrap_err();
        assert!(err.contains("not a valid port"), "{err}");
    }

    #[test]
    fn unix_path_and_octal_permission() {
        assert_eq!(
            ListenAddr::parse("/var/run/x.sock 0600"),
            Ok(ListenAddr::Unix {
                path: PathBuf::from("/var/run/x.sock"),
                mode: Some(0o600)
            })
        );
        assert_eq!(
            ListenAddr::parse("/tmp/x.sock"),
            Ok(ListenAddr::Unix {
                path: PathBuf::from("/tmp/x.sock"),
                mode: None
            })
        );
        assert_eq!(
            ListenAddr::parse("/tmp/x.sock 777").map(|a| a.to_string()),
            Ok("/tmp/x.sock".to_string())
        );
        for bad in ["/x 0800", "/x 1777", "/x rw", "/x ", "/x -1"] {
            let err = ListenAddr::parse(bad).unwrap_err();
            assert!(err.contains("octal"), "{bad}: {err}");
        }
    }

    #[test]
    fn clash_ignores_unix_permissions() {
        let a = ListenAddr::parse("/x 0600").unwrap();
        let b = ListenAddr::parse("/x 0666").unwrap();
        assert!(a.clashes_with(&b));
        assert!(tcp("::1", 1).clashes_with(&ListenAddr::parse("[::1]:1").unwrap()));
        assert!(!tcp("::1", 1).clashes_with(&tcp("::1", 2)));
    }
}
