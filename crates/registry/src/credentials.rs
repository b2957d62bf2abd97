//! Registry credentials and the Docker config document (`~/.docker/config.json`, the
//! `.dockerconfigjson` key of a `kubernetes.io/dockerconfigjson` Secret).
//!
//! Credential helpers (`credsStore`, `credHelpers`) are **never executed**: an operator must not
//! run programs that a user's Secret names. A host served only by a helper gets anonymous
//! credentials and a warning.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::error::{RegistryError, Result};
use super::reference::{DOCKER_HUB, is_docker_hub};

/// How to authenticate to one registry.
#[derive(Clone, Default)]
pub enum Credentials {
    /// No credentials (anonymous pull, anonymous bearer tokens).
    #[default]
    Anonymous,
    /// Username and password: sent as Basic auth, or to the token endpoint.
    Basic {
        username: String,
        password: SecretString,
    },
    /// An OAuth2 refresh token (`identitytoken`): exchanged at the token endpoint with
    /// `grant_type=refresh_token`.
    IdentityToken {
        username: String,
        token: SecretString,
    },
    /// A ready bearer token for the registry (`registrytoken`), sent as is.
    Bearer(SecretString),
}

impl Credentials {
    /// Username/password credentials.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials::Basic {
            username: username.into(),
            password: SecretString::from(password.into()),
        }
    }

    /// Whether these are anonymous credentials.
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Credentials::Anonymous)
    }

    /// The `Authorization: Basic …` value, for Basic credentials.
    pub(crate) fn basic_header(&self) -> Option<SecretString> {
        match self {
            Credentials::Basic { username, password } => {
                let raw = format!("{username}:{}", password.expose_secret());
                let enc = base64::engine::general_purpose::STANDARD.encode(raw.as_bytes());
                Some(SecretString::from(format!("Basic {enc}")))
            }
            _ => None,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"[REDACTED]")
                .finish(),
            Credentials::IdentityToken { username, .. } => f
                .debug_struct("IdentityToken")
                .field("username", username)
                .field("token", &"[REDACTED]")
                .finish(),
            Credentials::Bearer(_) => f.write_str("Bearer([REDACTED])"),
        }
    }
}

#[derive(Deserialize, Default)]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, RawAuth>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct RawAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, alias = "identityToken")]
    identitytoken: Option<String>,
    #[serde(default, alias = "registryToken")]
    registrytoken: Option<String>,
}

/// A parsed Docker config document: credentials per registry.
#[derive(Clone, Default)]
pub struct DockerConfig {
    auths: BTreeMap<String, Credentials>,
    creds_store: Option<String>,
    cred_helpers: BTreeMap<String, String>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("auths", &self.auths)
            .field("creds_store", &self.creds_store)
            .field("cred_helpers", &self.cred_helpers)
            .finish()
    }
}

impl DockerConfig {
    /// Parses a `config.json` / `.dockerconfigjson` document (`{"auths": {...}}`), or the legacy
    /// `.dockercfg` form (the `auths` map at top level).
    pub fn from_json(bytes: &[u8]) -> Result<DockerConfig> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| RegistryError::Config {
                detail: format!("docker config is not valid JSON: {e}"),
            })?;
        let raw: RawConfig = if value.get("auths").is_some()
            || value.get("credsStore").is_some()
            || value.get("credHelpers").is_some()
        {
            serde_json::from_value(value)
        } else {
            // legacy .dockercfg: {"https://index.docker.io/v1/": {"auth": ..}}
            serde_json::from_value(serde_json::json!({ "auths": value }))
        }
        .map_err(|e| RegistryError::Config {
            detail: format!("docker config has an unexpected shape: {e}"),
        })?;

        let mut auths = BTreeMap::new();
        for (key, entry) in raw.auths {
            let host = normalize_registry_key(&key);
            let creds = entry_credentials(&key, entry)?;
            if creds.is_anonymous() {
                continue;
            }
            auths.insert(host, creds);
        }
        let cred_helpers = raw
            .cred_helpers
            .into_iter()
            .map(|(k, v)| (normalize_registry_key(&k), v))
            .collect();
        Ok(DockerConfig {
            auths,
            creds_store: raw.creds_store,
            cred_helpers,
        })
    }

    /// The credentials for a registry (`docker.io`, `host:port`, or a URL). Anonymous when the
    /// document has none; when only a credential helper would know them, logs a warning (helpers
    /// are never executed).
    pub fn credentials_for(&self, registry: &str) -> Credentials {
        let host = normalize_registry_key(registry);
        if let Some(c) = self.auths.get(&host) {
            return c.clone();
        }
        if let Some(helper) = self.helper_for(&host) {
            tracing::warn!(
                registry = %host,
                helper,
                "docker config names credential helper docker-credential-{helper} for {host}; \
                 helpers are not executed, using anonymous access (put the credentials in \
                 \"auths\" instead)"
            );
        }
        Credentials::Anonymous
    }

    /// The credential helper the document names for a registry (`credHelpers`, else
    /// `credsStore`), which trustkeeper does **not** run.
    pub fn helper_for(&self, registry: &str) -> Option<&str> {
        let host = normalize_registry_key(registry);
        self.cred_helpers
            .get(&host)
            .or(self.creds_store.as_ref())
            .map(String::as_str)
    }

    /// The normalized registry names that have credentials.
    pub fn registries(&self) -> impl Iterator<Item = &str> {
        self.auths.keys().map(String::as_str)
    }
}

fn entry_credentials(key: &str, e: RawAuth) -> Result<Credentials> {
    let bad = |what: &str| RegistryError::Config {
        detail: format!("docker config entry for {key:?}: {what}"),
    };
    let (mut username, mut password) = (e.username, e.password);
    if let Some(auth) = e.auth.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .map_err(|_| bad("\"auth\" is not valid base64"))?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| bad("\"auth\" does not decode to UTF-8"))?;
        let (u, p) = decoded
            .split_once(':')
            .ok_or_else(|| bad("\"auth\" must decode to \"username:password\""))?;
        username = Some(u.to_string());
        password = Some(p.to_string());
    }
    if let Some(token) = e.identitytoken.filter(|t| !t.is_empty()) {
        return Ok(Credentials::IdentityToken {
            username: username.unwrap_or_default(),
            token: SecretString::from(token),
        });
    }
    if let Some(token) = e.registrytoken.filter(|t| !t.is_empty()) {
        return Ok(Credentials::Bearer(SecretString::from(token)));
    }
    match (username, password) {
        (Some(u), Some(p)) if !u.is_empty() => Ok(Credentials::Basic {
            username: u,
            password: SecretString::from(p),
        }),
        (Some(u), _) if !u.is_empty() => Err(bad("has a username but no password")),
        _ => Ok(Credentials::Anonymous),
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `https://host:5000/v2/` → `host:5000`.
pub fn normalize_registry_key(key: &str) -> String {
    let k = key.trim();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    if is_docker_hub(&host) {
        DOCKER_HUB.to_string()
    } else {
        host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn parses_auth_forms_and_normalizes_hosts() {
        let doc = format!(
            r#"{{
              "auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "registry.example.com:5000": {{"username": "bob", "password": "p:w,d"}},
                "https://ghcr.io": {{"auth": "{}", "identitytoken": "refresh-xyz"}},
                "http://Quay.IO/v2/": {{"auth": "{}"}},
                "empty.example": {{}},
                "bearer.example": {{"registrytoken": "tok"}}
              }},
              "credHelpers": {{"gcr.io": "gcloud"}}
            }}"#,
            b64("alice:s3cret:with:colons"),
            b64("carol:ignored"),
            b64("dave:pw")
        );
        let cfg = DockerConfig::from_json(doc.as_bytes()).unwrap();
        for host in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/v1/",
        ] {
            match cfg.credentials_for(host) {
                Credentials::Basic { username, password } => {
                    assert_eq!(username, "alice");
                    assert_eq!(password.expose_secret(), "s3cret:with:colons");
                }
                other => panic!("{host}: {other:?}"),
            }
        }
        match cfg.credentials_for("registry.example.com:5000") {
            Credentials::Basic { username, password } => {
                assert_eq!(username, "bob");
                assert_eq!(password.expose_secret(), "p:w,d");
            }
            other => panic!("{other:?}"),
        }
        match cfg.credentials_for("ghcr.io") {
            Credentials::IdentityToken { username, token } => {
                assert_eq!(username, "carol");
                assert_eq!(token.expose_secret(), "refresh-xyz");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            cfg.credentials_for("quay.io"),
            Credentials::Basic { .. }
        ));
        assert!(matches!(
            cfg.credentials_for("bearer.example"),
            Credentials::Bearer(_)
        ));
        assert!(cfg.credentials_for("empty.example").is_anonymous());
        assert!(cfg.credentials_for("other.example").is_anonymous());
        // helpers are reported, never run
        assert_eq!(cfg.helper_for("gcr.io"), Some("gcloud"));
        assert!(cfg.credentials_for("gcr.io").is_anonymous());
        assert_eq!(cfg.helper_for("ghcr.io"), None);
    }

    #[test]
    fn creds_store_applies_to_all_hosts() {
        let cfg =
            DockerConfig::from_json(br#"{"auths":{"a.io":{}},"credsStore":"desktop"}"#).unwrap();
        assert_eq!(cfg.helper_for("a.io"), Some("desktop"));
        assert!(cfg.credentials_for("a.io").is_anonymous());
    }

    #[test]
    fn legacy_dockercfg() {
        let doc = format!(
            r#"{{"https://index.docker.io/v1/": {{"auth": "{}"}}}}"#,
            b64("u:p")
        );
        let cfg = DockerConfig::from_json(doc.as_bytes()).unwrap();
        assert!(matches!(
            cfg.credentials_for("docker.io"),
            Credentials::Basic { .. }
        ));
    }

    #[test]
    fn bad_documents_are_config_errors() {
        for doc in [
            "not json".to_string(),
            r#"{"auths": {"x.io": {"auth": "%%%"}}}"#.to_string(),
            format!(
                r#"{{"auths": {{"x.io": {{"auth": "{}"}}}}}}"#,
                b64("nocolon")
            ),
            r#"{"auths": {"x.io": {"username": "u"}}}"#.to_string(),
            r#"{"auths": []}"#.to_string(),
        ] {
            let err = DockerConfig::from_json(doc.as_bytes()).expect_err(&doc);
            assert!(matches!(err, RegistryError::Config { .. }), "{doc}: {err}");
        }
    }

    #[test]
    fn debug_is_redacted() {
        let doc = format!(
            r#"{{"auths": {{"x.io": {{"auth": "{}"}}, "y.io": {{"identitytoken": "idtok-secret"}}}}}}"#,
            b64("user:hunter2")
        );
        let cfg = DockerConfig::from_json(doc.as_bytes()).unwrap();
        let dbg = format!("{cfg:?} {:?}", Credentials::basic("u", "hunter3"));
        assert!(
            !dbg.contains("hunter2") && !dbg.contains("hunter3") && !dbg.contains("idtok"),
            "{dbg}"
        );
        assert!(dbg.contains("REDACTED"));
    }
}
