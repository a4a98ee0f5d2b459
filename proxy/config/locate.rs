//! Finding a repeated key in the text of a block mapping.
//!
//! yaml_serde reports a duplicate key at the start of the mapping that holds it, without the
//! line of the repeat. This is a deliberately small scanner for YAML *block* mappings (the
//! shape of every nutcracker.yml): the entries of a mapping that starts at column C are the
//! lines indented by exactly C-1 spaces, until a line indented less. It understands plain,
//! single- and double-quoted keys. Anything fancier (flow mappings, `?` keys) makes it return
//! `None`, and the loader then reports the duplicate without looking further.

/// Where a repeated key is, as 1-based line numbers.
#[derive(Debug, PartialEq)]
pub struct Found {
    pub first_line: usize,
    pub repeat_line: usize,
    /// First line after the repeated entry and its value (exclusive end).
    pub end_line: usize,
    /// The key that owns the mapping (the pool name for a pool's settings), if found.
    pub parent: Option<String>,
}

/// Looks in the mapping starting at `line`/`column` (1-based, as yaml_serde reports them) for
/// the second entry whose key is `key`.
pub fn repeated_entry(text: &str, line: usize, column: usize, key: &str) -> Option<Found> {
    let lines: Vec<&str> = text.split('\n').map(|l| l.trim_end_matches('\r')).collect();
    let start = line.checked_sub(1)?;
    let indent = column.checked_sub(1)?;
    let first = lines.get(start)?;
    let offset = first.char_indices().nth(indent).map(|(i, _)| i)?;
    if first[offset..].starts_with(['{', '[']) {
        return None; // a flow collection, not a block mapping
    }
    let mut entries = vec![(start, key_of(&first[offset..]))];
    let mut i = start + 1;
    while i < lines.len() {
        let l = lines[i];
        if !is_content(l) {
            i += 1;
            continue;
        }
        let spaces = leading_spaces(l);
        let rest = &l[spaces..];
        if spaces < indent || (spaces == 0 && (rest.starts_with("---") || rest.starts_with("...")))
        {
            break;
        }
        if spaces == indent && !is_sequence_item(rest) {
            entries.push((i, key_of(rest)));
        }
        i += 1;
    }
    let mut matching = entries.iter().filter(|(_, k)| k.as_deref() == Some(key));
    let (first_idx, _) = matching.next()?;
    let (repeat_idx, _) = matching.next()?;
    let mut end = repeat_idx + 1;
    while end < lines.len() && belongs_to_value(lines[end], indent) {
        end += 1;
    }
    Some(Found {
        first_line: first_idx + 1,
        repeat_line: repeat_idx + 1,
        end_line: end + 1,
        parent: parent_key(&lines, start),
    })
}

/// Replaces lines `from..to` (1-based, `to` exclusive) with empty lines, keeping the count so
/// that later error locations still match the original file.
pub fn blank_lines(text: &str, from: usize, to: usize) -> String {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| if (from..to).contains(&(i + 1)) { "" } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_content(line: &str) -> bool {
    let t = line.trim_start();
    !t.is_empty() && !t.starts_with('#')
}

fn leading_spaces(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// `- item` may sit at the same indentation as the key that owns the sequence.
fn is_sequence_item(rest: &str) -> bool {
    rest == "-" || rest.starts_with("- ") || rest.starts_with("-\t")
}

/// True for lines that are part of the value of an entry at `indent`.
fn belongs_to_value(line: &str, indent: usize) -> bool {
    if !is_content(line) {
        return true;
    }
    let spaces = leading_spaces(line);
    spaces > indent || (spaces == indent && is_sequence_item(&line[spaces..]))
}

/// The key owning the mapping that starts on line index `start`: the nearest line above that
/// is indented less (or equally, for a mapping that is a `- ` item of a compact sequence).
fn parent_key(lines: &[&str], start: usize) -> Option<String> {
    let own = leading_spaces(lines[start]);
    let in_sequence = is_sequence_item(&lines[start][own..]);
    lines[..start]
        .iter()
        .rev()
        .filter(|l| is_content(l))
        .find(|l| {
            let spaces = leading_spaces(l);
            spaces < own || (in_sequence && spaces == own && !is_sequence_item(&l[spaces..]))
        })
        .and_then(|l| key_of(l.trim_start_matches(' ')))
}

/// The key of a `key: value` line, unquoted; `None` if the line is not a simple entry.
fn key_of(rest: &str) -> Option<String> {
    let (key, after) = if let Some(quoted) = rest.strip_prefix('"') {
        double_quoted(quoted)?
    } else if let Some(quoted) = rest.strip_prefix('\'') {
        single_quoted(quoted)?
    } else {
        if rest.starts_with(['?', '{', '[', '&', '*', '!', '#']) {
            return None;
        }
        let colon = rest.char_indices().find(|&(i, c)| {
            c == ':' && rest[i + 1..].chars().next().is_none_or(char::is_whitespace)
        });
        let (i, _) = colon?;
        return Some(rest[..i].trim_end().to_string());
    };
    after.trim_start().starts_with(':').then_some(key)
}

/// Reads a double-quoted YAML scalar (after the opening quote); returns it and the rest.
fn double_quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => {
                let (_, e) = chars.next()?;
                let hex_len = match e {
                    'x' => 2,
                    'u' => 4,
                    'U' => 8,
                    _ => 0,
                };
                if hex_len > 0 {
                    let hex: String = chars.by_ref().take(hex_len).map(|(_, c)| c).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                } else {
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '0' => '\0',
                        other => other,
                    });
                }
            }
            c => out.push(c),
        }
    }
    None
}

/// Reads a single-quoted YAML scalar (after the opening quote), where `''` is a quote.
fn single_quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if chars.peek().map(|&(_, c)| c) == Some('\'') {
                chars.next();
            } else {
                return Some((out, &s[i + 1..]));
            }
        }
        out.push(c);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_plain_and_quoted() {
        assert_eq!(key_of("hash: md5").as_deref(), Some("hash"));
        assert_eq!(key_of("hash:").as_deref(), Some("hash"));
        assert_eq!(key_of("a:b: c").as_deref(), Some("a:b"));
        assert_eq!(key_of("'it''s': 1").as_deref(), Some("it's"));
        assert_eq!(
            key_of("\"a\\\"b\\u00e9\" : 1").as_deref(),
            Some("a\"b\u{e9}")
        );
        assert_eq!(key_of("? complex"), None);
        assert_eq!(key_of("no colon here"), None);
        assert_eq!(key_of("'unterminated: 1"), None);
    }

    #[test]
    fn finds_the_repeat_and_its_value_lines() {
        let text =
            "p:\n  servers:\n  - a:1:1\n  hash: md5\n  servers:\n  - b:1:1\n\n    # c\n  x: 1\n";
        let found = repeated_entry(text, 2, 3, "servers").unwrap();
        assert_eq!(
            found,
            Found {
                first_line: 2,
                repeat_line: 5,
                end_line: 9,
                parent: Some("p".to_string()),
            }
        );
        let blanked = blank_lines(text, 5, 9);
        assert_eq!(blanked.lines().count(), text.lines().count());
        assert!(!blanked.contains("b:1:1"));
        assert!(blanked.contains("x: 1"));
    }

    #[test]
    fn stops_at_the_end_of_the_mapping() {
        // `hash` in pool q is not a repeat of `hash` in pool p.
        let text = "p:\n  hash: md5\nq:\n  hash: md5\n";
        assert_eq!(repeated_entry(text, 2, 3, "hash"), None);
        // Flow mappings are not scanned.
        assert_eq!(repeated_entry("p: {a: 1, a: 2}\n", 1, 4, "a"), None);
        // Out-of-range locations do not panic.
        assert_eq!(repeated_entry("p: 1\n", 9, 9, "p"), None);
        assert_eq!(repeated_entry("p: 1\n", 0, 0, "p"), None);
        assert_eq!(repeated_entry("p: 1\n", 1, 40, "p"), None);
    }

    #[test]
    fn parent_of_a_mapping_inside_a_compact_sequence() {
        let text = "p:\n  servers:\n  - a: 1\n    a: 2\n";
        let found = repeated_entry(text, 3, 5, "a").unwrap();
        assert_eq!(found.parent.as_deref(), Some("servers"));
        assert_eq!((found.first_line, found.repeat_line), (3, 4));
    }
}
