//! Reading single YAML values (booleans, numbers, strings) with twemproxy's rules.
//!
//! twemproxy sees every scalar as raw text, whereas yaml_serde has already typed it (`true`,
//! `30001`, `~`). The functions here accept both forms of a value twemproxy accepts (a quoted
//! `"100"` is a number to twemproxy, so it is one here too) and turn everything else into a
//! reason string that quotes the value. The caller adds the pool and key.

use serde_yaml::Value;

/// Why a value is unusable, for errors on values that are not scalars at all.
pub fn kind_problem(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some("has an empty value".to_string()),
        Value::Sequence(_) => Some("expected a single value, found a sequence".to_string()),
        Value::Mapping(_) => Some("expected a single value, found a mapping".to_string()),
        Value::Tagged(tagged) => Some(format!(
            "YAML tags such as {} are not supported",
            tagged.tag
        )),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => None,
    }
}

/// The value as written, for quoting in error messages.
pub fn render(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Sequence(_) => "[...]".to_string(),
        Value::Mapping(_) => "{...}".to_string(),
        Value::Tagged(tagged) => format!("{} {}", tagged.tag, render(&tagged.value)),
    }
}

/// The text of a scalar. A YAML number or boolean is rendered back to text because twemproxy
/// would have read it as text (`hash_tag: 12` is the two characters `1` and `2`).
pub fn text(value: &Value) -> Result<String, String> {
    if let Some(problem) = kind_problem(value) {
        return Err(problem);
    }
    let text = render(value);
    if text.is_empty() {
        return Err("has an empty value".to_string());
    }
    Ok(text)
}

/// A boolean: a YAML boolean, or the quoted strings `"true"`/`"false"` (twemproxy compares
/// the raw text, so quoting changes nothing there). `yes`, `on`, `1` are rejected as in
/// twemproxy; YAML 1.2 reads `yes` as a string anyway. One divergence: yaml_serde also types
/// `True`/`TRUE` as booleans before we see them, so those are accepted where twemproxy's
/// exact comparison refuses them.
pub fn boolean(value: &Value) -> Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        _ => Err(kind_problem(value)
            .unwrap_or_else(|| format!("\"{}\" is not \"true\" or \"false\"", render(value)))),
    }
}

/// A non-negative integer that fits in `u32`. twemproxy's `nc_atoi` takes decimal digits only;
/// a YAML integer is accepted as well because yaml_serde has already turned it into a number.
pub fn number(value: &Value) -> Result<u32, String> {
    let not_a_number = || {
        format!(
            "\"{}\" is not a number (expected a non-negative decimal integer)",
            render(value)
        )
    };
    let too_large = || format!("{} is too large (maximum {})", render(value), u32::MAX);
    match value {
        Value::Number(n) => match n.as_u64() {
            Some(n) => u32::try_from(n).map_err(|_| too_large()),
            None => Err(not_a_number()),
        },
        Value::String(s) => {
            if s.is_empty() {
                return Err("has an empty value".to_string());
            }
            if !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(not_a_number());
            }
            // Only digits, so the only possible failure is overflow.
            s.parse::<u32>().map_err(|_| too_large())
        }
        _ => Err(kind_problem(value).unwrap_or_else(not_a_number)),
    }
}

/// A size in bytes: an integer, or a decimal with a unit as Redis writes them (`512kb`,
/// `32mb`, `1gb`; `k`/`m`/`g` too), powers of 1024, case-insensitive.
pub fn size(value: &Value) -> Result<u64, String> {
    let bad = || {
        format!(
            "\"{}\" is not a size (expected bytes, or a number with kb, mb or gb)",
            render(value)
        )
    };
    match value {
        Value::Number(n) => n.as_u64().ok_or_else(bad),
        Value::String(s) => {
            let lower = s.trim().to_ascii_lowercase();
            let digits = lower.bytes().take_while(u8::is_ascii_digit).count();
            let unit: u64 = match &lower[digits..] {
                "" | "b" => 1,
                "k" | "kb" => 1 << 10,
                "m" | "mb" => 1 << 20,
                "g" | "gb" => 1 << 30,
                _ => return Err(bad()),
            };
            let n: u64 = lower[..digits].parse().map_err(|_| bad())?;
            n.checked_mul(unit)
                .ok_or_else(|| format!("{} is too large", render(value)))
        }
        _ => Err(kind_problem(value).unwrap_or_else(bad)),
    }
}

/// A string that is used verbatim (a password). Integers are rendered in decimal for
/// twemproxy compatibility (`redis_auth: 123456`); a float or boolean is refused because its
/// rendering could differ from what was typed (`1e3` would become `1000.0`, `True` `true`),
/// which would silently change a secret.
pub fn verbatim(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Value::Number(_) | Value::Bool(_) => Err(format!(
            "{} is not a string; quote it so YAML keeps it exactly as written",
            render(value)
        )),
        _ => Err(kind_problem(value).unwrap_or_else(|| "has an empty value".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn booleans_are_exactly_true_or_false() {
        assert_eq!(boolean(&yaml("true")), Ok(true));
        assert_eq!(boolean(&yaml("false")), Ok(false));
        assert_eq!(boolean(&yaml("'true'")), Ok(true));
        assert_eq!(
            boolean(&yaml("yes")),
            Err("\"yes\" is not \"true\" or \"false\"".to_string())
        );
        assert!(boolean(&yaml("1")).is_err());
        assert!(boolean(&yaml("on")).is_err());
        assert_eq!(boolean(&yaml("~")), Err("has an empty value".to_string()));
    }

    #[test]
    fn numbers_are_non_negative_decimal() {
        assert_eq!(number(&yaml("400")), Ok(400));
        assert_eq!(number(&yaml("'400'")), Ok(400));
        assert_eq!(number(&yaml("0600")), Ok(600));
        assert_eq!(number(&yaml("0")), Ok(0));
        let err = number(&yaml("-1")).unwrap_err();
        assert!(err.contains("\"-1\" is not a number"), "{err}");
        assert!(number(&yaml("1.5")).is_err());
        assert!(number(&yaml("'1_000'")).is_err());
        assert!(number(&yaml("' 5'")).is_err());
        assert!(number(&yaml("true")).is_err());
        assert!(number(&yaml("4294967296"))
            .unwrap_err()
            .contains("too large"));
        assert!(number(&yaml("'99999999999999999999'"))
            .unwrap_err()
            .contains("too large"));
        assert_eq!(number(&yaml("''")), Err("has an empty value".to_string()));
        assert!(number(&yaml("[1]")).unwrap_err().contains("sequence"));
    }

    #[test]
    fn text_renders_scalars_and_rejects_the_rest() {
        assert_eq!(text(&yaml("md5")), Ok("md5".to_string()));
        assert_eq!(text(&yaml("12")), Ok("12".to_string()));
        assert_eq!(text(&yaml("")), Err("has an empty value".to_string()));
        assert_eq!(text(&yaml("''")), Err("has an empty value".to_string()));
        assert!(text(&yaml("{a: 1}")).unwrap_err().contains("mapping"));
        assert!(text(&yaml("!foo x")).unwrap_err().contains("tags"));
    }

    #[test]
    fn verbatim_keeps_secrets_intact() {
        assert_eq!(verbatim(&yaml("s3cr3t")), Ok("s3cr3t".to_string()));
        assert_eq!(verbatim(&yaml("123456")), Ok("123456".to_string()));
        assert_eq!(verbatim(&yaml("'1e3'")), Ok("1e3".to_string()));
        assert!(verbatim(&yaml("1e3")).unwrap_err().contains("quote it"));
        assert!(verbatim(&yaml("True")).unwrap_err().contains("quote it"));
        assert!(verbatim(&yaml("''")).is_err());
    }

    #[test]
    fn sizes_take_redis_units() {
        assert_eq!(size(&yaml("1024")), Ok(1024));
        assert_eq!(size(&yaml("32mb")), Ok(32 << 20));
        assert_eq!(size(&yaml("32MB")), Ok(32 << 20));
        assert_eq!(size(&yaml("512k")), Ok(512 << 10));
        assert_eq!(size(&yaml("1gb")), Ok(1 << 30));
        assert!(size(&yaml("mb")).is_err());
        assert!(size(&yaml("1.5mb")).is_err());
        assert!(size(&yaml("-1")).is_err());
        assert!(size(&yaml("12tb")).is_err());
    }
}
