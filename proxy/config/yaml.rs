//! Turning the file's text into a YAML tree while reporting *every* duplicate key.
//!
//! yaml_serde refuses a mapping with a repeated key: building a `Value` fails with
//! `<path>: duplicate entry with key "hash"`, located at the start of the mapping, and stops
//! there. twemproxy also rejects duplicates, so the error is right, but stopping would hide
//! every other problem in the file. So the loader turns that error into a [`ConfigError`],
//! finds the repeated entry in the text (see [`super::locate`]), blanks its lines and parses
//! again, until the text parses or the repeat cannot be found (a flow mapping such as
//! `{a: 1, a: 1}`), in which case the checks stop at the YAML level. Blanking instead of
//! deleting keeps line numbers stable between rounds. The first occurrence is the one kept.
//!
//! This reads yaml_serde's message text. Should a later version word it differently, the
//! file is still rejected (as invalid YAML) and the `dupkey.yml` corpus test fails loudly.

use serde_yaml::Value;

use super::error::ConfigError;
use super::locate::{self, Found};

/// Gives up on a file with more repeated keys than this rather than re-parsing forever.
const MAX_DUPLICATES: usize = 64;

/// Parses `text`, pushing one error per repeated key and per YAML error onto `errors`.
/// Returns the tree (with the first occurrence of each repeated key) when one could be built.
pub fn load(text: &str, errors: &mut Vec<ConfigError>) -> Option<Value> {
    let mut text = text.to_string();
    for _ in 0..MAX_DUPLICATES {
        let error = match serde_yaml::from_str::<Value>(&text) {
            Ok(value) => return Some(value),
            Err(error) => error,
        };
        let message = error.to_string();
        let Some(dup) = Duplicate::from_message(&message) else {
            errors.push(ConfigError::file(format!("invalid YAML: {message}")));
            return None;
        };
        let found = error
            .location()
            .and_then(|at| locate::repeated_entry(&text, at.line(), at.column(), &dup.key));
        let Some(found) = found else {
            errors.push(dup.unlocated_error(&message));
            return None;
        };
        errors.push(dup.error(&found));
        text = locate::blank_lines(&text, found.repeat_line, found.end_line);
    }
    errors.push(ConfigError::file(format!(
        "more than {MAX_DUPLICATES} repeated keys; the remaining checks were skipped"
    )));
    None
}

/// What yaml_serde's duplicate-key message says: the path of the mapping and the key.
#[derive(Debug, PartialEq)]
struct Duplicate {
    /// Empty for the top-level mapping (so the key is a pool name).
    path: String,
    key: String,
}

const MARKER: &str = "duplicate entry with key ";

impl Duplicate {
    /// Reads `[<path>: ]duplicate entry with key <key>[ at line L column C]`. The key is
    /// printed with `{:?}` for strings, backticks for booleans and bare for numbers.
    fn from_message(message: &str) -> Option<Duplicate> {
        let at = message.find(MARKER)?;
        let path = message[..at].strip_suffix(": ").unwrap_or("").to_string();
        let rest = &message[at + MARKER.len()..];
        let key = if let Some(quoted) = rest.strip_prefix('"') {
            unescape_debug(quoted)?
        } else if let Some(ticked) = rest.strip_prefix('`') {
            ticked.split('`').next()?.to_string()
        } else {
            rest.split(" at line ").next()?.to_string()
        };
        Some(Duplicate { path, key })
    }

    fn error(&self, found: &Found) -> ConfigError {
        let lines = format!("lines {} and {}", found.first_line, found.repeat_line);
        if self.path.is_empty() {
            return ConfigError::pool(&self.key, format!("is defined more than once ({lines})"));
        }
        match &found.parent {
            // The mapping is a pool's settings: the usual case, `hash:` given twice.
            Some(parent) if *parent == self.path => ConfigError::key(
                &self.path,
                &self.key,
                format!("is given more than once ({lines})"),
            ),
            // Deeper than any valid setting; name the pool and the setting holding it.
            parent => ConfigError::key(
                first_segment(&self.path),
                parent.as_deref().unwrap_or(&self.path),
                format!("repeats the key \"{}\" ({lines})", self.key),
            ),
        }
    }

    fn unlocated_error(&self, message: &str) -> ConfigError {
        if self.path.is_empty() {
            return ConfigError::pool(
                &self.key,
                format!("is defined more than once ({message}); the remaining checks were skipped"),
            );
        }
        ConfigError::key(
            first_segment(&self.path),
            &self.key,
            format!("is given more than once ({message}); the remaining checks were skipped"),
        )
    }
}

/// The pool part of a yaml_serde path such as `p.servers[0]` (best effort: a pool name with a
/// dot in it is cut short, which only affects errors nested deeper than any valid setting).
fn first_segment(path: &str) -> &str {
    path.split(['.', '[']).next().unwrap_or(path)
}

/// Undoes Rust's `{:?}` escaping of a string, reading up to the closing quote.
fn unescape_debug(quoted: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = quoted.chars();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                '0' => out.push('\0'),
                'u' => {
                    let hex: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dup(path: &str, key: &str) -> Option<Duplicate> {
        Some(Duplicate {
            path: path.to_string(),
            key: key.to_string(),
        })
    }

    #[test]
    fn reads_yaml_serde_duplicate_messages() {
        let m = "p: duplicate entry with key \"hash\" at line 2 column 3";
        assert_eq!(Duplicate::from_message(m), dup("p", "hash"));
        let m = "duplicate entry with key \"p\" at line 1 column 1";
        assert_eq!(Duplicate::from_message(m), dup("", "p"));
        let m = "a.b: duplicate entry with key \"x\\\"y\\u{e9}\" at line 2 column 3";
        assert_eq!(Duplicate::from_message(m), dup("a.b", "x\"y\u{e9}"));
        let m = "p: duplicate entry with key `true` at line 2 column 3";
        assert_eq!(Duplicate::from_message(m), dup("p", "true"));
        let m = "p: duplicate entry with key 1 at line 2 column 3";
        assert_eq!(Duplicate::from_message(m), dup("p", "1"));
        assert_eq!(Duplicate::from_message("did not find expected key"), None);
    }

    fn load_errors(text: &str) -> (Option<Value>, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let value = load(text, &mut errors);
        (value, errors)
    }

    #[test]
    fn every_repeated_key_is_reported_and_parsing_goes_on() {
        let text =
            "p:\n  hash: md5\n  listen: a:1\n  hash: crc32\nq:\n  x: 1\n  x: 2\np:\n  y: 1\n";
        let (value, errors) = load_errors(text);
        let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            reasons,
            [
                // In the order yaml_serde meets them: inner mappings end before the outer one.
                "pool 'p': key 'hash': is given more than once (lines 2 and 4)",
                "pool 'q': key 'x': is given more than once (lines 6 and 7)",
                "pool 'p': is defined more than once (lines 1 and 8)",
            ]
        );
        // The first occurrence wins.
        let value = value.expect("parsed after blanking the repeats");
        assert_eq!(value["p"]["hash"], Value::from("md5"));
    }

    #[test]
    fn nested_and_flow_duplicates() {
        let (_, errors) = load_errors("p:\n  servers:\n  - a: 1\n    a: 2\n");
        assert_eq!(errors[0].pool.as_deref(), Some("p"));
        assert_eq!(errors[0].key.as_deref(), Some("servers"));
        let (value, errors) = load_errors("p: {a: 1, a: 2}\n");
        assert!(value.is_none());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key.as_deref(), Some("a"));
    }

    #[test]
    fn syntax_errors_are_file_level() {
        let (value, errors) = load_errors("a: [1\n");
        assert!(value.is_none());
        assert_eq!(errors.len(), 1);
        assert!(errors[0].reason.starts_with("invalid YAML:"));
        assert!(errors[0].pool.is_none());
    }
}
