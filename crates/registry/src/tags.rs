//! Tag lists: `Link` header pagination and the [`TagSelector`] (exact names and globs).

use globset::{Glob, GlobMatcher};

use super::error::{RegistryError, Result};
use super::reference::validate_tag;

/// The target of the `rel="next"` link in a `Link` header value, if any
/// (`<https://r/v2/x/tags/list?last=b&n=2>; rel="next"`; several links may be comma-separated).
pub fn parse_next_link(header: &str) -> Option<String> {
    let mut rest = header;
    loop {
        let start = rest.find('<')?;
        let end = start + rest[start..].find('>')?;
        let url = &rest[start + 1..end];
        let after = &rest[end + 1..];
        // the link's parameters run until the next '<' (URLs cannot contain it unescaped)
        let params_end = after.find('<').unwrap_or(after.len());
        let params = &after[..params_end];
        let is_next = params.split(';').any(|p| {
            let p = p.trim().trim_end_matches(',').trim();
            let Some((k, v)) = p.split_once('=') else {
                return false;
            };
            k.trim().eq_ignore_ascii_case("rel")
                && v.trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(url.trim().to_string());
        }
        rest = &after[params_end..];
    }
}

#[derive(Clone, Debug)]
enum Pattern {
    Exact(String),
    Glob { text: String, matcher: GlobMatcher },
}

impl Pattern {
    fn text(&self) -> &str {
        match self {
            Pattern::Exact(t) => t,
            Pattern::Glob { text, .. } => text,
        }
    }
    fn matches(&self, tag: &str) -> bool {
        match self {
            Pattern::Exact(t) => t == tag,
            Pattern::Glob { matcher, .. } => matcher.is_match(tag),
        }
    }
}

/// Which tags to sign: exact tag names and globs (`v1.*`, `release-{a,b}`, `[0-9]*`).
#[derive(Clone, Debug, Default)]
pub struct TagSelector {
    patterns: Vec<Pattern>,
}

/// The outcome of applying a [`TagSelector`] to a tag list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Selected tags, sorted, without duplicates.
    pub tags: Vec<String>,
    /// Patterns (exact names or globs) that matched no tag, in selector order.
    pub unmatched: Vec<String>,
}

impl TagSelector {
    /// Builds a selector. A pattern with `*`, `?`, `[` or `{` is a glob; anything else must be a
    /// valid tag name.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<TagSelector> {
        let mut out = Vec::with_capacity(patterns.len());
        for p in patterns {
            let p = p.as_ref().trim();
            if p.contains(['*', '?', '[', '{']) {
                let glob = Glob::new(p).map_err(|e| RegistryError::BadReference {
                    input: p.to_string(),
                    reason: format!("not a valid tag glob: {e}"),
                })?;
                out.push(Pattern::Glob {
                    text: p.to_string(),
                    matcher: glob.compile_matcher(),
                });
            } else {
                validate_tag(p).map_err(|reason| RegistryError::BadReference {
                    input: p.to_string(),
                    reason,
                })?;
                out.push(Pattern::Exact(p.to_string()));
            }
        }
        Ok(TagSelector { patterns: out })
    }

    /// Whether any pattern selects `tag`.
    pub fn matches(&self, tag: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(tag))
    }

    /// Whether every pattern is an exact name (then no tag list is needed).
    pub fn is_exact_only(&self) -> bool {
        self.patterns.iter().all(|p| matches!(p, Pattern::Exact(_)))
    }

    /// The exact tag names in the selector.
    pub fn exact_tags(&self) -> Vec<String> {
        self.patterns
            .iter()
            .filter_map(|p| match p {
                Pattern::Exact(t) => Some(t.clone()),
                Pattern::Glob { .. } => None,
            })
            .collect()
    }

    /// Selects from a tag list and reports the patterns that matched nothing.
    pub fn select<S: AsRef<str>>(&self, tags: &[S]) -> Selection {
        let mut hit = vec![false; self.patterns.len()];
        let mut selected: Vec<String> = Vec::new();
        for tag in tags {
            let tag = tag.as_ref();
            let mut any = false;
            for (i, p) in self.patterns.iter().enumerate() {
                if p.matches(tag) {
                    hit[i] = true;
                    any = true;
                }
            }
            if any {
                selected.push(tag.to_string());
            }
        }
        selected.sort();
        selected.dedup();
        let unmatched = self
            .patterns
            .iter()
            .zip(hit)
            .filter(|(_, h)| !h)
            .map(|(p, _)| p.text().to_string())
            .collect();
        Selection {
            tags: selected,
            unmatched,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_next() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                r#"</v2/x/tags/list?last=b&n=2>; rel="next""#,
                Some("/v2/x/tags/list?last=b&n=2"),
            ),
            (
                r#"<https://r.io/v2/x/tags/list?n=2&last=b>; rel=next"#,
                Some("https://r.io/v2/x/tags/list?n=2&last=b"),
            ),
            (r#"</a>; rel="prev", </b>; rel="next""#, Some("/b")),
            (r#"</a>; title="x, y"; rel="prev next""#, Some("/a")),
            (r#"</a>; REL = "Next""#, Some("/a")),
            (r#"</a>; rel="prev""#, None),
            ("", None),
            ("garbage", None),
        ];
        for (h, want) in cases {
            assert_eq!(parse_next_link(h).as_deref(), *want, "{h}");
        }
    }

    #[test]
    fn selector_exact_and_globs() {
        let tags = [
            "v1",
            "v1.1",
            "v1.2",
            "v2.0",
            "latest",
            "multi",
            "oci-v1",
            "oci-multi",
        ];
        let s = TagSelector::new(&["latest", "v1.*", "oci-*", "nope", "x*"]).unwrap();
        let sel = s.select(&tags);
        assert_eq!(sel.tags, ["latest", "oci-multi", "oci-v1", "v1.1", "v1.2"]);
        assert_eq!(sel.unmatched, ["nope", "x*"]);
        assert!(!s.is_exact_only());
        assert_eq!(s.exact_tags(), ["latest", "nope"]);

        let s = TagSelector::new(&["{v1,multi}", "v[0-9].?"]).unwrap();
        assert_eq!(
            s.select(&tags).tags,
            ["multi", "v1", "v1.1", "v1.2", "v2.0"]
        );
        assert!(s.select(&tags).unmatched.is_empty());

        let s = TagSelector::new(&["v1", "latest"]).unwrap();
        assert!(s.is_exact_only());
        assert!(s.matches("v1") && !s.matches("v1.1"));
    }

    #[test]
    fn selector_rejects_bad_patterns() {
        for p in ["[", "bad tag", "a{b", ""] {
            let err = TagSelector::new(&[p]).expect_err(p);
            assert!(
                err.to_string().contains(&format!("{:?}", p.trim())),
                "{err}"
            );
        }
    }
}
