//! Reading the proxy's Prometheus `/metrics` (a proxy started with
//! `--metrics-addr 127.0.0.1:PORT`) without a client library.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The body of `GET /metrics`, fetched with a plain HTTP/1.0 request (the server closes the
/// connection after its reply). Panics if the endpoint does not answer within 5 s.
pub fn scrape_metrics(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to /metrics on {port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .expect("send GET /metrics");
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("read /metrics on {port}: {e}"));
    let out = String::from_utf8_lossy(&out).into_owned();
    match out.split_once("\r\n\r\n") {
        Some((_, body)) => body.to_string(),
        None => panic!("not an HTTP reply from /metrics: {out:?}"),
    }
}

/// The value of the sample `name` whose labels include every `labels` pair, or `None` if the
/// exposition has no such sample (a labelled counter may appear only once it is incremented,
/// and a metric the proxy does not implement never appears). Panics if several samples match.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse().ok())
            .flatten()
        })
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} matches {found:?}");
    found.first().copied()
}
