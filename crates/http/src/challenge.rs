//! The one `WWW-Authenticate` challenge parser (RFC 7235) of the notary and registry clients,
//! with quoted values that contain commas (`scope="repository:a:pull,push"`), escapes, and
//! several challenges in one header.

use std::collections::BTreeMap;

/// One authentication challenge: a scheme (lowercased) and its parameters (names lowercased).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    pub fn is_bearer(&self) -> bool {
        self.scheme == "bearer"
    }

    pub fn is_basic(&self) -> bool {
        self.scheme == "basic"
    }
}

/// Parses every challenge in one `WWW-Authenticate` header value. Malformed trailing parts are
/// skipped rather than failing the whole header.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        p.skip_ws_and_commas();
        if p.eof() {
            break;
        }
        let Some(scheme) = p.token() else {
            break;
        };
        let mut ch = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: BTreeMap::new(),
        };
        // Parameters until the next challenge (a token not followed by '=') or the end.
        loop {
            p.skip_ws_and_commas();
            if p.eof() {
                break;
            }
            let save = p.i;
            let Some(name) = p.token() else {
                // token68 or garbage: skip to the next comma
                p.skip_until_comma();
                continue;
            };
            p.skip_ws();
            if p.peek() != Some(b'=') {
                // the start of the next challenge
                p.i = save;
                break;
            }
            p.i += 1;
            p.skip_ws();
            let value = if p.peek() == Some(b'"') {
                p.quoted()
            } else {
                p.token68_or_token().unwrap_or_default()
            };
            ch.params.insert(name.to_ascii_lowercase(), value);
        }
        out.push(ch);
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn eof(&self) -> bool {
        self.i >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }
    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }
    fn skip_until_comma(&mut self) {
        while let Some(c) = self.peek() {
            if c == b',' {
                break;
            }
            self.i += 1;
        }
    }
    fn is_tchar(c: u8) -> bool {
        c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
    }
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(Self::is_tchar) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    fn token68_or_token(&mut self) -> Option<String> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| Self::is_tchar(c) || c == b'/' || c == b'=' || c == b':')
        {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    fn quoted(&mut self) -> String {
        debug_assert_eq!(self.peek(), Some(b'"'));
        self.i += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                _ => out.push(c),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_bearer_with_comma_in_scope() {
        let h = r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/app:pull,push""#;
        let c = parse_challenges(h);
        assert_eq!(c.len(), 1);
        assert!(c[0].is_bearer());
        assert_eq!(c[0].param("realm"), Some("https://auth.example.com/token"));
        assert_eq!(c[0].param("service"), Some("registry.example.com"));
        assert_eq!(c[0].param("scope"), Some("repository:team/app:pull,push"));
    }

    #[test]
    fn several_challenges_spaces_escapes_and_case() {
        let h = r#"Basic realm="a, \"quoted\" realm" , BEARER Realm = "https://r/t" , error="invalid_token",scope=repository:x:pull"#;
        let c = parse_challenges(h);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(c[0].is_basic());
        assert_eq!(c[0].param("realm"), Some(r#"a, "quoted" realm"#));
        assert!(c[1].is_bearer());
        assert_eq!(c[1].param("realm"), Some("https://r/t"));
        assert_eq!(c[1].param("error"), Some("invalid_token"));
        assert_eq!(c[1].param("scope"), Some("repository:x:pull"));
    }

    #[test]
    fn bare_scheme_and_token68_and_garbage() {
        assert_eq!(parse_challenges("Basic")[0].scheme, "basic");
        let c = parse_challenges("Negotiate abc==, Basic realm=\"x\"");
        assert_eq!(
            c.iter().map(|c| c.scheme.as_str()).collect::<Vec<_>>(),
            ["negotiate", "basic"]
        );
        assert!(parse_challenges("").is_empty());
        assert!(parse_challenges("  ,, ").is_empty());
        // unterminated quote: takes the rest
        let c = parse_challenges(r#"Bearer realm="https://x/t"#);
        assert_eq!(c[0].param("realm"), Some("https://x/t"));
    }

    /// What notary-server's token mode sends (was the notary client's own parser's test).
    #[test]
    fn notary_server_challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://127.0.0.1:12396/token",service="testbed-notary",scope="repository:example.com/vectors/auth:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert!(c[0].is_bearer());
        assert_eq!(c[0].param("realm"), Some("https://127.0.0.1:12396/token"));
        assert_eq!(c[0].param("service"), Some("testbed-notary"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:example.com/vectors/auth:pull,push")
        );
        assert!(parse_challenges(r#"Basic realm="x""#)[0].is_basic());
        let c = parse_challenges("Negotiate");
        assert!(!c[0].is_basic() && !c[0].is_bearer());
    }

    /// The notary client's old parser ended a quoted value at the first `"`, so an escaped
    /// quote cut the realm and dropped the service and scope after it.
    #[test]
    fn escaped_quote_keeps_the_parameters_after_it() {
        let c = parse_challenges(
            r#"Bearer realm="https://r/t?a=\"b\"",service="s",scope="repository:g:pull""#,
        );
        assert_eq!(c[0].param("realm"), Some(r#"https://r/t?a="b""#));
        assert_eq!(c[0].param("service"), Some("s"));
        assert_eq!(c[0].param("scope"), Some("repository:g:pull"));
    }
}
