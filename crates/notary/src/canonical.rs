//! Canonical JSON exactly as notary signs it (docker/go `MarshalCanonical`), and the Go
//! `json.Marshal` escaping applied to stored file bytes.
//!
//! Canonical form: object members sorted by the UTF-8 bytes of their keys, only `"` and `\`
//! escaped in strings, integral numbers written as integers, no whitespace.

use serde_json::Value;

/// A value that has no canonical form (a number with a fraction, or out of range).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JSON number {0} is not an integer and has no canonical form")]
pub struct NotInteger(pub String);

/// Canonical bytes of `value` (what notary signatures cover).
pub fn to_vec(value: &Value) -> Result<Vec<u8>, NotInteger> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), NotInteger> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                let f = n.as_f64().ok_or_else(|| NotInteger(n.to_string()))?;
                if f.fract() != 0.0 || !f.is_finite() || f.abs() > 9.007_199_254_740_992e15 {
                    return Err(NotInteger(n.to_string()));
                }
                // `-0` is written `0`.
                let i = f as i64;
                out.extend_from_slice(i.to_string().as_bytes());
            }
        }
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Explicit bytewise sort: serde_json's map order depends on a cargo feature.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                write(v, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Go's `json.Marshal` HTML escaping over canonical text: `<`, `>`, `&`, U+2028, U+2029.
/// These characters only occur inside strings, so a plain substitution is exact.
pub fn go_escape(canonical: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(canonical.len() + 16);
    let mut i = 0;
    while i < canonical.len() {
        let b = canonical[i];
        match b {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            0xE2 if canonical.get(i + 1) == Some(&0x80)
                && matches!(canonical.get(i + 2), Some(0xA8) | Some(0xA9)) =>
            {
                if canonical[i + 2] == 0xA8 {
                    out.extend_from_slice(b"\\u2028");
                } else {
                    out.extend_from_slice(b"\\u2029");
                }
                i += 3;
                continue;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

/// True when `s` holds a control character (< 0x20), which Go refuses to put into a file.
pub fn has_control_char(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_bytewise_and_escapes_minimally() {
        let v: Value = serde_json::from_str(
            r#"{"b":1,"a":"x\"y\\z<&>\u2028\/","😀":0,"！":0,"é":[1.0,1e2,-0,true,null]}"#,
        )
        .unwrap();
        let c = to_vec(&v).unwrap();
        assert_eq!(
            String::from_utf8(c).unwrap(),
            "{\"a\":\"x\\\"y\\\\z<&>\u{2028}/\",\"b\":1,\"é\":[1,100,0,true,null],\"！\":0,\"😀\":0}"
        );
    }

    #[test]
    fn refuses_fractions() {
        let v: Value = serde_json::from_str("[1.5]").unwrap();
        assert!(to_vec(&v).is_err());
    }

    #[test]
    fn go_escape_html_and_separators() {
        let s = "\"a<b>&c\u{2028}d\u{2029}é\"";
        assert_eq!(
            go_escape(s.as_bytes()),
            b"\"a\\u003cb\\u003e\\u0026c\\u2028d\\u2029\xc3\xa9\"".to_vec()
        );
    }

    #[test]
    fn control_chars() {
        assert!(has_control_char("a\tb"));
        assert!(!has_control_char("a\u{7f}b"));
    }
}
