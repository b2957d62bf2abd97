//! Image references (`name`, `name:tag`, `name@sha256:…`, `host[:port]/path:tag@sha256:…`) with
//! Docker Hub defaults, following distribution's `reference.ParseNormalizedNamed`.

use std::fmt;

use super::error::{RegistryError, Result};

/// Canonical name of Docker Hub in references and GUNs.
pub const DOCKER_HUB: &str = "docker.io";
/// Host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// Legacy Docker Hub name (also the docker config key `https://index.docker.io/v1/`).
pub const DOCKER_HUB_LEGACY: &str = "index.docker.io";

const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalized image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageRef {
    /// Parses `name`, `name:tag`, `name@sha256:<64 hex>`, `name:tag@sha256:…`, with an optional
    /// `host[:port]/` prefix. Without a host the image is on Docker Hub (`docker.io`), and a
    /// one-component Hub name gets `library/`.
    pub fn parse(input: &str) -> Result<ImageRef> {
        let bad = |reason: &str| RegistryError::bad_reference(input, reason);
        if input.is_empty() {
            return Err(bad("the reference is empty"));
        }
        if input.trim() != input || input.chars().any(char::is_whitespace) {
            return Err(bad("the reference contains whitespace"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                validate_digest(digest).map_err(|r| bad(&r))?;
                (rest, Some(digest.to_string()))
            }
            None => (input, None),
        };
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                let tag = &rest[i + 1..];
                validate_tag(tag).map_err(|r| bad(&r))?;
                (&rest[..i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(bad("the repository name is empty"));
        }
        let (registry, path) = split_domain(name);
        if let Some(domain) = &registry {
            validate_domain(domain).map_err(|r| bad(&r))?;
        }
        validate_path(path).map_err(|r| bad(&r))?;
        let registry = match registry {
            None => DOCKER_HUB.to_string(),
            Some(d) if is_docker_hub(d) => DOCKER_HUB.to_string(),
            Some(d) => d.to_string(),
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(bad(&format!(
                "the repository name is longer than {MAX_NAME_LEN} characters"
            )));
        }
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The canonical registry name: `docker.io` for Docker Hub, else `host[:port]`.
    pub fn registry_host(&self) -> &str {
        &self.registry
    }

    /// The host (and port) that serves the registry API: `registry-1.docker.io` for Docker Hub.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// The repository path inside the registry (`library/alpine`, `team/app`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference had one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:…`), if the reference had one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The Notary GUN: `docker.io/<namespace>/<name>` for Docker Hub, `host[:port]/path` otherwise.
    pub fn gun(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<ImageRef> {
        validate_tag(tag).map_err(|r| RegistryError::bad_reference(tag, r))?;
        Ok(ImageRef {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository without tag and digest.
    pub fn repository_only(&self) -> ImageRef {
        ImageRef {
            tag: None,
            digest: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ImageRef::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for ImageRef {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self> {
        ImageRef::parse(s)
    }
}

/// Whether a registry name means Docker Hub.
pub fn is_docker_hub(host: &str) -> bool {
    let h = host.to_ascii_lowercase();
    matches!(
        h.as_str(),
        DOCKER_HUB | DOCKER_HUB_LEGACY | DOCKER_HUB_API_HOST | "registry.hub.docker.com"
    )
}

/// Splits `name` into (domain, path) like distribution's `splitDockerDomain`.
fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn validate_domain(domain: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Err(format!("registry host {domain:?} has an unclosed '['"));
        };
        if v6.is_empty() || !v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!(
                "registry host {domain:?} is not a valid IPv6 address"
            ));
        }
        match after.strip_prefix(':') {
            Some(p) => ("v6", Some(p)),
            None if after.is_empty() => ("v6", None),
            None => return Err(format!("registry host {domain:?} is malformed")),
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if host != "v6" {
        if host.is_empty() {
            return Err(format!("registry host {domain:?} is empty"));
        }
        for label in host.split('.') {
            let ok = !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(format!("registry host {domain:?} is not a valid host name"));
            }
        }
    }
    if let Some(p) = port
        && (p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) || p.parse::<u16>().is_err())
    {
        return Err(format!(
            "registry port {p:?} is not a number from 0 to 65535"
        ));
    }
    Ok(())
}

/// Path components: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, separated by `/`.
fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the repository path is empty".into());
    }
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "repository name {path:?} must be lowercase (uppercase letters are not allowed)"
        ));
    }
    for comp in path.split('/') {
        if comp.is_empty() {
            return Err(format!(
                "repository name {path:?} has an empty path component"
            ));
        }
        if !valid_component(comp) {
            return Err(format!(
                "repository path component {comp:?} may only contain a-z, 0-9 and single \
                 separators '.', '_', '__' or '-' between them"
            ));
        }
    }
    Ok(())
}

fn valid_component(comp: &str) -> bool {
    let b = comp.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__', or one or more '-'.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// Tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub(crate) fn validate_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err("the tag after ':' is empty".into());
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!(
            "the tag is {} characters long, the limit is {MAX_TAG_LEN}",
            tag.len()
        ));
    }
    let first = tag.as_bytes()[0];
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return Err(format!(
            "tag {tag:?} must start with a letter, digit or '_'"
        ));
    }
    if let Some(c) = tag
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "tag {tag:?} contains {c:?}; only letters, digits, '_', '.' and '-' are allowed"
        ));
    }
    Ok(())
}

/// Digest grammar we accept: `sha256:<64 lowercase hex>` (notary signs sha256 only).
pub fn validate_digest(digest: &str) -> Result<(), String> {
    let Some((algo, hex)) = digest.split_once(':') else {
        return Err(format!(
            "digest {digest:?} must look like sha256:<64 hex characters>"
        ));
    };
    if algo != "sha256" {
        return Err(format!(
            "digest algorithm {algo:?} is not supported, only sha256"
        ));
    }
    if hex.len() != 64
        || !hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        return Err(format!(
            "digest {digest:?} must have exactly 64 lowercase hex characters after 'sha256:'"
        ));
    }
    Ok(())
}

/// Whether `s` is a digest (`algo:hex`) rather than a tag.
pub(crate) fn looks_like_digest(s: &str) -> bool {
    s.contains(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:934658806b42b94cdd3db936c48d59e9197a60d29310e78a347a850789afcab9";

    /// input, registry, api host, repository, tag, has digest, gun
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        bool,
        &'a str,
    );

    #[test]
    fn parses_valid_references() {
        // input, registry, api host, repository, tag, digest, gun
        let cases: &[Case] = &[
            (
                "alpine",
                "docker.io",
                "registry-1.docker.io",
                "library/alpine",
                None,
                false,
                "docker.io/library/alpine",
            ),
            (
                "alpine:3.20",
                "docker.io",
                "registry-1.docker.io",
                "library/alpine",
                Some("3.20"),
                false,
                "docker.io/library/alpine",
            ),
            (
                "library/alpine:latest",
                "docker.io",
                "registry-1.docker.io",
                "library/alpine",
                Some("latest"),
                false,
                "docker.io/library/alpine",
            ),
            (
                "myorg/app:v1",
                "docker.io",
                "registry-1.docker.io",
                "myorg/app",
                Some("v1"),
                false,
                "docker.io/myorg/app",
            ),
            (
                "docker.io/alpine",
                "docker.io",
                "registry-1.docker.io",
                "library/alpine",
                None,
                false,
                "docker.io/library/alpine",
            ),
            (
                "index.docker.io/myorg/app",
                "docker.io",
                "registry-1.docker.io",
                "myorg/app",
                None,
                false,
                "docker.io/myorg/app",
            ),
            (
                "registry-1.docker.io/library/busybox:1",
                "docker.io",
                "registry-1.docker.io",
                "library/busybox",
                Some("1"),
                false,
                "docker.io/library/busybox",
            ),
            (
                "localhost/app",
                "localhost",
                "localhost",
                "app",
                None,
                false,
                "localhost/app",
            ),
            (
                "localhost:5000/team/app:dev",
                "localhost:5000",
                "localhost:5000",
                "team/app",
                Some("dev"),
                false,
                "localhost:5000/team/app",
            ),
            (
                "127.0.0.1:25479/test/app-1_x.y",
                "127.0.0.1:25479",
                "127.0.0.1:25479",
                "test/app-1_x.y",
                None,
                false,
                "127.0.0.1:25479/test/app-1_x.y",
            ),
            (
                "registry.example.com/a/b/c:1.0-rc_1",
                "registry.example.com",
                "registry.example.com",
                "a/b/c",
                Some("1.0-rc_1"),
                false,
                "registry.example.com/a/b/c",
            ),
            (
                "ghcr.io/o/i@SHA",
                "ghcr.io",
                "ghcr.io",
                "o/i",
                None,
                true,
                "ghcr.io/o/i",
            ),
            (
                "ghcr.io/o/i:v2@SHA",
                "ghcr.io",
                "ghcr.io",
                "o/i",
                Some("v2"),
                true,
                "ghcr.io/o/i",
            ),
            (
                "alpine@SHA",
                "docker.io",
                "registry-1.docker.io",
                "library/alpine",
                None,
                true,
                "docker.io/library/alpine",
            ),
            (
                "[::1]:5000/app:1",
                "[::1]:5000",
                "[::1]:5000",
                "app",
                Some("1"),
                false,
                "[::1]:5000/app",
            ),
            (
                "a__b/c---d:_x",
                "docker.io",
                "registry-1.docker.io",
                "a__b/c---d",
                Some("_x"),
                false,
                "docker.io/a__b/c---d",
            ),
        ];
        for &(input, reg, api, repo, tag, has_digest, gun) in cases {
            let input = input.replace("SHA", D);
            let r = ImageRef::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry_host(), reg, "{input}");
            assert_eq!(r.api_host(), api, "{input}");
            assert_eq!(r.repository(), repo, "{input}");
            assert_eq!(r.tag(), tag, "{input}");
            assert_eq!(r.digest(), has_digest.then_some(D), "{input}");
            assert_eq!(r.gun(), gun, "{input}");
            // Display round-trips.
            assert_eq!(ImageRef::parse(&r.to_string()).unwrap(), r, "{input}");
        }
    }

    #[test]
    fn rejects_bad_references_with_reason() {
        let long_tag = format!("app:{}", "a".repeat(129));
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "empty"),
            ("MyApp".into(), "lowercase"),
            ("registry.example.com/Team/app".into(), "lowercase"),
            ("app:".into(), "tag after ':' is empty"),
            ("app:v1+x".into(), "contains '+'"),
            ("app:.v1".into(), "must start"),
            (long_tag, "limit is 128"),
            ("app@sha256:abc".into(), "64 lowercase hex"),
            (format!("app@sha256:{}", "A".repeat(64)), "64 lowercase hex"),
            (format!("app@md5:{}", "a".repeat(32)), "only sha256"),
            ("app@".into(), "sha256:<64 hex"),
            ("a//b".into(), "empty path component"),
            ("a/-b".into(), "may only contain"),
            ("a/b_".into(), "may only contain"),
            ("a/b___c".into(), "may only contain"),
            ("host:99999/app".into(), "port"),
            ("ex_ample.com/app".into(), "not a valid host"),
            ("bad-.com/app".into(), "not a valid host"),
            (" alpine".into(), "whitespace"),
            ("registry.example.com/".into(), "path is empty"),
            (":tag".into(), "empty"),
        ];
        for (input, want) in cases {
            let err = ImageRef::parse(&input).expect_err(&input);
            let msg = err.to_string();
            assert!(
                matches!(err, RegistryError::BadReference { .. }),
                "{input}: {msg}"
            );
            assert!(
                msg.contains(&format!("{input:?}")),
                "message must quote the input: {msg}"
            );
            assert!(msg.contains(want), "{input}: {msg} should mention {want:?}");
        }
    }

    #[test]
    fn serde_as_a_string() {
        let r: ImageRef = serde_json::from_str(r#""alpine:3""#).unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#""docker.io/library/alpine:3""#
        );
        let err = serde_json::from_str::<ImageRef>(r#""Bad""#).unwrap_err();
        assert!(err.to_string().contains("lowercase"), "{err}");
    }

    #[test]
    fn tag_of_128_chars_is_fine() {
        let r = ImageRef::parse(&format!("app:{}", "a".repeat(128))).unwrap();
        assert_eq!(r.tag().unwrap().len(), 128);
    }

    #[test]
    fn with_tag_and_repository_only() {
        let r = ImageRef::parse(&format!("alpine:3@{D}")).unwrap();
        let t = r.with_tag("edge").unwrap();
        assert_eq!(t.to_string(), "docker.io/library/alpine:edge");
        assert_eq!(r.repository_only().to_string(), "docker.io/library/alpine");
        assert!(r.with_tag("bad tag").is_err());
    }
}
