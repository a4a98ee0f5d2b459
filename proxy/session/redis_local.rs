//! Redis commands the proxy answers itself: the connection commands client libraries send on
//! connect (PING, ECHO, AUTH, HELLO, SELECT 0, CLIENT SETNAME/GETNAME/SETINFO/ID/INFO, COMMAND,
//! INFO, QUIT). Answering them locally is what lets redis-cli, redis-py, Jedis or go-redis
//! connect through the proxy without special configuration; twemproxy closes the connection
//! on most of them.

use std::fmt::Write;

use bytes::Bytes;

use super::redis::RedisSession;
use super::Flow;
use crate::protocol::resp::command_table::{COMMANDS, REDIS_VERSION};
use crate::protocol::resp::commands::{self, CommandSpec};
use crate::protocol::resp::encode;

/// Answers `spec` if it is a command the proxy serves itself; None to route it.
pub(super) fn answer(s: &mut RedisSession, spec: &CommandSpec, argv: &[&[u8]]) -> Option<Flow> {
    // A reply built here is sized by the request (ECHO's argument, one COMMAND INFO entry of a
    // few hundred bytes per name): one that could not fit the client's output limit is never
    // built, and the client is disconnected as for any reply over it.
    let limit = s.pool.table.config.client_output_limit as usize;
    let size = match spec.name {
        "ping" | "echo" => argv.get(1).map_or(0, |a| a.len()),
        "command|info" => argv
            .len()
            .saturating_sub(2)
            .saturating_mul(COMMAND_INFO_SIZE),
        _ => 0,
    };
    if size > limit {
        s.truncated = true;
        return Some(Flow::Continue);
    }
    let mut out = Vec::new();
    match spec.name {
        "ping" => match argv.get(1) {
            Some(msg) => encode::bulk(&mut out, msg),
            None => encode::status(&mut out, "PONG"),
        },
        "echo" => encode::bulk(&mut out, argv[1]),
        "quit" => {
            s.ready(Bytes::from_static(b"+OK\r\n"));
            return Some(Flow::Close);
        }
        "auth" => auth(s, &argv[1..], &mut out),
        "hello" => hello(s, argv, &mut out),
        "select" => {
            if argv[1] == b"0" {
                encode::status(&mut out, "OK");
            } else {
                encode::error(&mut out, "ERR DB index is out of range (shardproxy serves database 0; redis_db picks the backend database)");
            }
        }
        // Every CLIENT subcommand is answered here: some (SETINFO, from Redis 7.2) are newer
        // than the command table, and the rest concern the proxy connection, not a backend.
        name if name == "client" || name.starts_with("client|") => client(s, argv, &mut out),
        "command" | "command|count" | "command|docs" | "command|info" | "command|list"
        | "command|getkeys" => command(spec.name, argv, &mut out),
        "info" => encode::bulk(&mut out, info(s).as_bytes()),
        _ => return None,
    }
    s.ready(out.into());
    Some(Flow::Continue)
}

/// The most a COMMAND INFO entry takes (the longest is about 400 bytes).
const COMMAND_INFO_SIZE: usize = 512;

fn auth(s: &mut RedisSession, args: &[&[u8]], out: &mut Vec<u8>) {
    let (user, password) = match args {
        [password] => (&b"default"[..], *password),
        [user, password] => (*user, *password),
        _ => unreachable!("arity checked"),
    };
    match &s.pool.table.config.redis_auth {
        None => encode::error(
            out,
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ),
        Some(expected) if user == b"default" && password == expected.as_bytes() => {
            s.authenticated = true;
            encode::status(out, "OK");
        }
        Some(_) => encode::error(out, "WRONGPASS invalid username-password pair or user is disabled."),
    }
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`: RESP2 only.
fn hello(s: &mut RedisSession, argv: &[&[u8]], out: &mut Vec<u8>) {
    if let Some(ver) = argv.get(1) {
        match *ver {
            b"2" => {}
            b"3" => {
                return encode::error(
                    out,
                    "NOPROTO sorry, this protocol version is not supported.",
                )
            }
            _ => return encode::error(out, "NOPROTO unsupported protocol version"),
        }
    }
    let mut i = 2;
    while i < argv.len() {
        if argv[i].eq_ignore_ascii_case(b"auth") && i + 2 < argv.len() {
            let mut reply = Vec::new();
            auth(s, &argv[i + 1..i + 3], &mut reply);
            if reply.first() == Some(&b'-') {
                out.extend_from_slice(&reply);
                return;
            }
            i += 3;
        } else if argv[i].eq_ignore_ascii_case(b"setname") && i + 1 < argv.len() {
            s.name = Some(Bytes::copy_from_slice(argv[i + 1]));
            i += 2;
        } else {
            return encode::error(
                out,
                &format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(argv[i])
                ),
            );
        }
    }
    if !s.authenticated {
        return encode::error(out, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    encode::array_header(out, 14);
    for (k, v) in [("server", "redis"), ("version", REDIS_VERSION)] {
        encode::bulk(out, k.as_bytes());
        encode::bulk(out, v.as_bytes());
    }
    encode::bulk(out, b"proto");
    encode::integer(out, 2);
    encode::bulk(out, b"id");
    encode::integer(out, s.id as i64);
    for (k, v) in [("mode", "standalone"), ("role", "master")] {
        encode::bulk(out, k.as_bytes());
        encode::bulk(out, v.as_bytes());
    }
    encode::bulk(out, b"modules");
    encode::array_header(out, 0);
}

fn client(s: &mut RedisSession, argv: &[&[u8]], out: &mut Vec<u8>) {
    let sub = String::from_utf8_lossy(argv[1]).to_ascii_lowercase();
    match sub.as_str() {
        "setname" if argv.len() == 3 => {
            if argv[2].iter().any(|&b| b <= b' ' || b > b'~') {
                return encode::error(
                    out,
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            s.name = (!argv[2].is_empty()).then(|| Bytes::copy_from_slice(argv[2]));
            encode::status(out, "OK");
        }
        "getname" => match &s.name {
            Some(n) => encode::bulk(out, n),
            None => encode::nil(out),
        },
        "id" => encode::integer(out, s.id as i64),
        // Library metadata (lib-name, lib-ver) and eviction flags concern the server the
        // client thinks it talks to; acknowledging them keeps libraries happy.
        "setinfo" | "no-evict" | "no-touch" => encode::status(out, "OK"),
        "info" | "list" => {
            let name = s
                .name
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let pool = &s.pool.table.config.name;
            let line = format!(
                "id={} name={name} db=0 cmd=client|{sub} pool={pool}\n",
                s.id
            );
            encode::bulk(out, line.as_bytes());
        }
        "setname" => encode::error(
            out,
            "ERR wrong number of arguments for 'client|setname' command",
        ),
        _ => encode::error(
            out,
            &format!("ERR command 'client {sub}' is not supported by shardproxy"),
        ),
    }
}

/// `COMMAND` and its subcommands, from the same table the proxy routes with.
fn command(name: &str, argv: &[&[u8]], out: &mut Vec<u8>) {
    let top_level = || COMMANDS.iter().filter(|c| !c.name.contains('|'));
    match name {
        "command" => {
            encode::array_header(out, top_level().count());
            top_level().for_each(|c| command_info(c, out));
        }
        "command|count" => encode::integer(out, top_level().count() as i64),
        "command|list" => {
            encode::array_header(out, top_level().count());
            top_level().for_each(|c| encode::bulk(out, c.name.as_bytes()));
        }
        // Documentation is not carried; an empty map lets redis-cli fall back to no hints.
        "command|docs" => encode::array_header(out, 0),
        "command|info" => {
            encode::array_header(out, argv.len() - 2);
            for name in &argv[2..] {
                match commands::lookup(name) {
                    Some(c) => command_info(c, out),
                    None => out.extend_from_slice(b"*-1\r\n"),
                }
            }
        }
        "command|getkeys" => {
            let args = &argv[2..];
            let mut keys = Vec::new();
            match commands::lookup(args[0]).map(|c| commands::keys(c, args, &mut keys)) {
                Some(Ok(())) if !keys.is_empty() => {
                    encode::array_header(out, keys.len());
                    keys.iter().for_each(|&k| encode::bulk(out, args[k]));
                }
                Some(_) => encode::error(out, "ERR The command has no key arguments"),
                None => encode::error(out, "ERR Invalid command specified"),
            }
        }
        _ => encode::error(
            out,
            &format!(
                "ERR unknown subcommand '{}'. Try COMMAND HELP.",
                String::from_utf8_lossy(argv[1])
            ),
        ),
    }
}

/// Redis 6's `COMMAND INFO` element: name, arity, flags, first key, last key, step.
fn command_info(c: &CommandSpec, out: &mut Vec<u8>) {
    use crate::protocol::resp::commands::flag;
    let names = [
        (flag::WRITE, "write"),
        (flag::READONLY, "readonly"),
        (flag::DENYOOM, "denyoom"),
        (flag::ADMIN, "admin"),
        (flag::PUBSUB, "pubsub"),
        (flag::NOSCRIPT, "noscript"),
        (flag::BLOCKING, "blocking"),
        (flag::LOADING, "loading"),
        (flag::STALE, "stale"),
        (flag::FAST, "fast"),
        (flag::MOVABLEKEYS, "movablekeys"),
    ];
    encode::array_header(out, 6);
    encode::bulk(out, c.name.as_bytes());
    encode::integer(out, c.arity as i64);
    let set: Vec<&str> = names
        .iter()
        .filter(|(f, _)| c.has_flag(*f))
        .map(|(_, n)| *n)
        .collect();
    encode::array_header(out, set.len());
    for n in set {
        encode::status(out, n);
    }
    encode::integer(out, c.first_key as i64);
    encode::integer(out, c.last_key as i64);
    encode::integer(out, c.step as i64);
}

/// `INFO`: the sections a client library may read (server version, mode) plus the proxy's.
fn info(s: &RedisSession) -> String {
    let t = &s.pool.table;
    let st = &t.stats;
    let mut out = String::with_capacity(1024);
    let _ = write!(
        out,
        "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\nprocess_id:{}\r\nuptime_in_seconds:{}\r\n\r\n",
        std::process::id(),
        s.pool.started.elapsed().as_secs()
    );
    let _ = write!(
        out,
        "# Clients\r\nconnected_clients:{}\r\n\r\n# Stats\r\ntotal_connections_received:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\n\r\n",
        st.client_connections.get(),
        st.total_connections.get(),
        st.get_hits.get(),
        st.get_misses.get()
    );
    let _ = write!(
        out,
        "# Proxy\r\nproxy:shardproxy\r\nproxy_version:{}\r\npool:{}\r\nservers:{}\r\nforward_errors:{}\r\nclient_errors:{}\r\nfragments:{}\r\n",
        env!("CARGO_PKG_VERSION"),
        t.config.name,
        t.config.servers.len(),
        st.forward_error.get(),
        st.errors[crate::stats::kind::CLIENT_PROTOCOL].get(),
        st.fragments.get()
    );
    for (server, ss) in t.config.servers.iter().zip(&t.server_stats) {
        let _ = write!(
            out,
            "server_{}:requests={},responses={},timeouts={},errors={},connections={}\r\n",
            server.name,
            ss.requests.get(),
            ss.responses.get(),
            ss.server_timedout.get(),
            ss.server_err.get(),
            ss.server_connections.get()
        );
    }
    out
}

/// Redis's reply to an unknown command, word for word.
pub(super) fn unknown_command(argv: &[&[u8]]) -> String {
    let mut args = String::new();
    for a in argv.iter().skip(1) {
        let shown: String = String::from_utf8_lossy(a).chars().take(128).collect();
        let _ = write!(args, "'{shown}' ");
    }
    let name: String = String::from_utf8_lossy(argv[0]).chars().take(128).collect();
    format!("ERR unknown command '{name}', with args beginning with: {args}")
}
