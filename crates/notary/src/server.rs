//! notary-server HTTP API (notary-v1.md §6, §7): GET roles (current, by version, by hash),
//! publish (one multipart POST), server-managed keys; anonymous, basic or Docker-style bearer
//! token auth; custom CA; timeouts; response size limits. One reqwest client (pool) per server.
//! Challenges, the token flow and the request counters are [`trustkeeper_http`]'s.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use reqwest::{RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::client::{self, Fetch, Repository, TrustAnchor, TrustState};
use super::edit::SignedFile;
use super::error::{Error, Result};
use super::keys::PublicKey;
use trustkeeper_http::challenge::{Challenge, parse_challenges};
pub use trustkeeper_http::counters::RequestStats;
use trustkeeper_http::counters::{Counters, Kind};
use trustkeeper_http::token::{Credential, TokenCache, TokenError, TokenRequest};

/// Credentials for the trust server (used for Basic challenges and the token endpoint).
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: SecretString,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Anonymous => write!(f, "Anonymous"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `https://notary.example.com` (no trailing `/v2`).
    pub url: String,
    /// Extra CA certificates (PEM bundle) trusted on top of the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Trust only `ca_pem`, not the system roots (a private server's own CA; also skips
    /// loading the system roots, tens of milliseconds at every start).
    pub ca_only: bool,
    pub auth: Auth,
    /// Per-request timeout.
    pub timeout: Duration,
    /// The most trust metadata one update reads, every file together (see
    /// [`Fetch::max_metadata_bytes`]); also caps every single GET.
    pub max_metadata_bytes: u64,
}

impl ServerConfig {
    pub fn new(url: impl Into<String>) -> Self {
        ServerConfig {
            url: url.into(),
            ca_pem: None,
            ca_only: false,
            auth: Auth::Anonymous,
            timeout: Duration::from_secs(30),
            max_metadata_bytes: client::DEFAULT_MAX_METADATA_BYTES,
        }
    }
}

/// Client for one notary server. [`NotaryClient::fork`] gives a client on the same connections
/// and token cache with its own request counters (one per reconcile).
pub struct NotaryClient {
    shared: Arc<Shared>,
    counters: Arc<Counters>,
}

struct Shared {
    base: String,
    max_metadata_bytes: u64,
    auth: Auth,
    http: reqwest::Client,
    /// (scope kind, gun) → bearer token.
    tokens: Mutex<TokenCache>,
    /// The server (or a proxy) asked for Basic auth once: send it up front from then on.
    basic_challenged: std::sync::atomic::AtomicBool,
    /// A plain-`http://` token realm is accepted (the user opted in for this server).
    insecure_token_realm: std::sync::atomic::AtomicBool,
    /// Per-request timeout, for the message when it passes.
    timeout: Duration,
}

impl std::fmt::Debug for NotaryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NotaryClient({})", self.shared.base)
    }
}

/// Largest error body read for messages.
const MAX_ERROR_BODY: u64 = 64 << 10;

/// The first challenge of the first `WWW-Authenticate` header, as the server means it.
fn first_challenge(headers: &reqwest::header::HeaderMap) -> Option<Challenge> {
    let h = headers
        .get(reqwest::header::WWW_AUTHENTICATE)?
        .to_str()
        .ok()?;
    parse_challenges(h).into_iter().next()
}

/// The largest token response read.
const MAX_TOKEN_RESPONSE: u64 = MAX_ERROR_BODY;

#[derive(Deserialize)]
struct ErrorBody {
    errors: Vec<ErrorEntry>,
}
#[derive(Deserialize)]
struct ErrorEntry {
    code: String,
    message: Option<String>,
    detail: Option<serde_json::Value>,
}

impl NotaryClient {
    pub fn new(cfg: ServerConfig) -> Result<Self> {
        // A bad or empty bundle is refused here: it would otherwise fail later as "unreachable".
        let tls = trustkeeper_http::tls::client_config(cfg.ca_pem.as_deref(), cfg.ca_only).map_err(|e| {
            Error::Config(format!(
                "the notary CA bundle cannot be used: {e}: give the PEM of the CA that signs the notary server's certificate"
            ))
        })?;
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("trustkeeper/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured(tls)
            .redirect(trustkeeper_http::tls::redirect_policy())
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(NotaryClient {
            shared: Arc::new(Shared {
                base: cfg.url.trim_end_matches('/').to_string(),
                max_metadata_bytes: cfg.max_metadata_bytes.max(1),
                auth: cfg.auth,
                http,
                tokens: Mutex::default(),
                basic_challenged: Default::default(),
                insecure_token_realm: Default::default(),
                timeout: cfg.timeout,
            }),
            counters: Arc::default(),
        })
    }

    /// Accepts a plain-`http://` token realm from this server (the password then travels in
    /// the clear); off by default: such a realm is refused before anything is sent to it.
    pub fn allow_insecure_token_realm(&self, allow: bool) {
        (self.shared.insecure_token_realm).store(allow, std::sync::atomic::Ordering::Relaxed);
    }

    /// A client on the same connections and token cache, with its own counters.
    pub fn fork(&self) -> NotaryClient {
        NotaryClient {
            shared: self.shared.clone(),
            counters: Arc::default(),
        }
    }

    /// Requests sent so far.
    pub fn stats(&self) -> RequestStats {
        self.counters.snapshot()
    }

    /// Sends one request, counted by method.
    async fn execute(&self, rb: RequestBuilder) -> Result<reqwest::Response> {
        let (client, req) = rb.build_split();
        let req = req.map_err(|e| self.unreachable(e))?;
        self.counters.sent(if req.method() == reqwest::Method::GET {
            Kind::Get
        } else {
            Kind::Post
        });
        client.execute(req).await.map_err(|e| self.unreachable(e))
    }

    fn url(&self, gun: &str, name: &str) -> String {
        format!("{}/v2/{gun}/_trust/tuf/{name}", self.shared.base)
    }

    fn unreachable(&self, e: reqwest::Error) -> Error {
        if e.is_timeout() {
            return Error::Timeout {
                url: self.shared.base.clone(),
                timeout: Some(self.shared.timeout),
            };
        }
        Error::Unreachable {
            url: self.shared.base.clone(),
            reason: trustkeeper_http::tls::with_causes(&e),
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<trustkeeper_http::token::Token> {
        let credential = match &self.shared.auth {
            Auth::Basic { username, password } => Credential::Basic { username, password },
            Auth::Anonymous => Credential::Anonymous,
        };
        let req = TokenRequest {
            realm,
            service,
            scope,
            credential,
            insecure_realm: (self.shared.insecure_token_realm)
                .load(std::sync::atomic::Ordering::Relaxed),
            max_body: MAX_TOKEN_RESPONSE,
        };
        let server = |status: u16, body: String| Error::Server {
            url: realm.into(),
            status,
            body,
        };
        trustkeeper_http::token::fetch_token(&self.shared.http, &self.counters, &req)
            .await
            .map_err(|e| match e {
                TokenError::BadRealm { detail, .. } => {
                    Error::Config(format!("token realm {realm:?}: {detail}"))
                }
                // The token request carries the password: never in the clear unless allowed.
                TokenError::Realm(_) => Error::Config(format!(
                    "the trust server {} names the token realm {realm}, which is not https: \
                     credentials would travel in the clear, so nothing was sent; serve it over \
                     https, or allow it with spec.notary.insecureTokenRealm / \
                     --insecure-token-realm HOST",
                    self.shared.base
                )),
                TokenError::Send(e) => self.unreachable(e),
                TokenError::Body(e) => body_error(e, "token response"),
                TokenError::TooLarge { limit } => Error::TooLarge {
                    what: "token response".into(),
                    limit,
                },
                TokenError::Refused { status } => Error::Unauthorized {
                    url: realm.to_string(),
                    status,
                },
                TokenError::Status { status, body, .. } => {
                    server(status, String::from_utf8_lossy(&body).into_owned())
                }
                TokenError::Json { status, source } => {
                    server(status, format!("bad token response: {source}"))
                }
                TokenError::NoToken { status } => {
                    server(status, "token response without token".into())
                }
            })
    }

    /// Sends a request, answering one auth challenge. `make` builds the request (again).
    async fn send(
        &self,
        cache_key: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<reqwest::Response> {
        let cached = {
            let t = self.shared.tokens.lock().expect("token cache");
            t.fresh(cache_key).map(|tok| tok.value.clone())
        };
        let mut req = make();
        if let Some(tok) = &cached {
            req = req.bearer_auth(tok.expose_secret());
        } else if let Auth::Basic { username, password } = &self.shared.auth
            && self
                .shared
                .basic_challenged
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            req = req.basic_auth(username, Some(password.expose_secret()));
        }
        let resp = self.execute(req).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let url = resp.url().to_string();
        let retry = match first_challenge(resp.headers()) {
            Some(c) if c.is_basic() => match &self.shared.auth {
                Auth::Basic { username, password } => {
                    self.shared
                        .basic_challenged
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    make().basic_auth(username, Some(password.expose_secret()))
                }
                Auth::Anonymous => return Err(Error::Unauthorized { url, status: 401 }),
            },
            Some(c) if c.is_bearer() && c.param("realm").is_some() => {
                let realm = c.param("realm").unwrap_or_default();
                let tok = self
                    .fetch_token(realm, c.param("service"), c.param("scope"))
                    .await?;
                let retry = make().bearer_auth(tok.value.expose_secret());
                (self.shared.tokens.lock().expect("token cache")).insert(cache_key, tok);
                retry
            }
            _ => return Err(Error::Unauthorized { url, status: 401 }),
        };
        let resp = self.execute(retry).await?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            return Err(Error::Unauthorized {
                url,
                status: resp.status().as_u16(),
            });
        }
        Ok(resp)
    }

    /// GETs `<name>` (`root.json`, `2.root.json`, `targets/releases.<sha256>.json`, …) with a
    /// size limit. `Ok(None)` on 404.
    pub async fn get(&self, gun: &str, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let cap = self.shared.max_metadata_bytes;
        let url = self.url(gun, name);
        let resp = self
            .send(&format!("pull {gun}"), || self.shared.http.get(&url))
            .await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let body = read_limited(resp, MAX_ERROR_BODY, &url)
                .await
                .unwrap_or_default();
            return Err(Error::Server {
                url,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        // Whatever the caller asks for, never more than the cap.
        match read_limited(resp, limit.min(cap), &format!("{gun} {name}")).await {
            Err(Error::TooLarge { what, .. }) if cap < limit => {
                Err(Error::MetadataTooLarge { what, limit: cap })
            }
            other => other.map(Some),
        }
    }

    /// Current file of `role`.
    pub async fn get_role(&self, gun: &str, role: &str) -> Result<Option<Vec<u8>>> {
        self.get(gun, &format!("{role}.json"), client::MAX_ROOT_BYTES)
            .await
    }

    /// `role` at `version` (`N.role.json`).
    pub async fn get_role_version(
        &self,
        gun: &str,
        role: &str,
        version: u64,
    ) -> Result<Option<Vec<u8>>> {
        self.get(
            gun,
            &format!("{version}.{role}.json"),
            client::MAX_ROOT_BYTES,
        )
        .await
    }

    /// `role` by the sha256 (hex) of its file bytes.
    pub async fn get_role_by_hash(
        &self,
        gun: &str,
        role: &str,
        sha256_hex: &str,
        length: u64,
    ) -> Result<Option<Vec<u8>>> {
        self.get(gun, &format!("{role}.{sha256_hex}.json"), length)
            .await
    }

    /// Public half of the server-managed `timestamp` or `snapshot` key (created if missing).
    pub async fn server_key(&self, gun: &str, role: &str) -> Result<PublicKey> {
        let name = format!("{role}.key");
        let b = self
            .get(gun, &name, MAX_ERROR_BODY)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("{gun} {name}"),
            })?;
        serde_json::from_slice(&b).map_err(|e| Error::invalid(&name, e.to_string()))
    }

    /// Asks the server to create a new `timestamp`/`snapshot` key (used once a root lists it).
    pub async fn rotate_server_key(&self, gun: &str, role: &str) -> Result<PublicKey> {
        let name = format!("{role}.key");
        let url = self.url(gun, &name);
        let resp = self
            .send(&format!("push {gun}"), || self.shared.http.post(&url))
            .await?;
        let status = resp.status();
        let b = read_limited(resp, MAX_ERROR_BODY, &url).await?;
        if !status.is_success() {
            return Err(Error::Server {
                url,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&b).into_owned(),
            });
        }
        serde_json::from_slice(&b).map_err(|e| Error::invalid(&name, e.to_string()))
    }

    /// Fetches and verifies the repository (see [`client`]).
    pub async fn update(
        &self,
        gun: &str,
        anchor: &TrustAnchor,
        now: Timestamp,
    ) -> Result<(Repository, TrustState)> {
        client::update_with(self, gun, anchor, now).await
    }

    /// Uploads signed files in one multipart POST (field `files`, filename = role).
    pub async fn publish(&self, gun: &str, files: &[SignedFile]) -> Result<()> {
        if files.iter().any(|f| f.role == "timestamp") {
            return Err(Error::Config("never upload timestamp".into()));
        }
        let url = self.url(gun, "");
        let make = || {
            let mut form = reqwest::multipart::Form::new();
            for f in files {
                let part = reqwest::multipart::Part::bytes(f.bytes.clone())
                    .file_name(f.role.clone())
                    .mime_str("application/octet-stream")
                    .expect("static mime");
                form = form.part("files", part);
            }
            self.shared.http.post(&url).multipart(form)
        };
        let resp = self.send(&format!("push {gun}"), make).await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = read_limited(resp, MAX_ERROR_BODY, &url)
            .await
            .unwrap_or_default();
        if status == StatusCode::NOT_FOUND {
            return Err(Error::UnknownRepository { gun: gun.into() });
        }
        if let Ok(eb) = serde_json::from_slice::<ErrorBody>(&body)
            && let Some(e) = eb.errors.first()
        {
            let detail = e.detail.as_ref().map(|d| d.to_string()).unwrap_or_default();
            if e.code == "VERSION" {
                return Err(Error::VersionConflict { gun: gun.into() });
            }
            if detail.contains("tuf: data has no signatures") {
                return Err(Error::NoSignatures { gun: gun.into() });
            }
            return Err(Error::Rejected {
                gun: gun.into(),
                code: e.code.clone(),
                message: format!("{} {detail}", e.message.clone().unwrap_or_default()),
            });
        }
        Err(Error::Server {
            url,
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

impl Fetch for NotaryClient {
    async fn fetch(&self, gun: &str, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        self.get(gun, name, limit).await.map_err(|e| match e {
            // A body that stopped arriving: say which server and after how long.
            Error::Timeout { timeout: None, .. } => Error::Timeout {
                url: self.shared.base.clone(),
                timeout: Some(self.shared.timeout),
            },
            e => e,
        })
    }

    fn max_metadata_bytes(&self) -> u64 {
        self.shared.max_metadata_bytes
    }
}

/// Reads a body, failing as soon as it exceeds `limit` bytes.
async fn read_limited(resp: reqwest::Response, limit: u64, what: &str) -> Result<Vec<u8>> {
    use trustkeeper_http::body::{self, BodyError};
    body::read_limited(resp, limit).await.map_err(|e| match e {
        BodyError::TooLarge { limit } => Error::TooLarge {
            what: what.into(),
            limit,
        },
        BodyError::Transport(e) => body_error(e, what),
    })
}

/// A body that failed to arrive. reqwest calls a timeout there "error decoding response body":
/// it is said as a timeout instead.
fn body_error(e: reqwest::Error, what: &str) -> Error {
    if e.is_timeout() {
        return Error::Timeout {
            url: what.into(),
            timeout: None,
        };
    }
    Error::Unreachable {
        url: what.into(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine spawns these futures on a multi-threaded runtime.
    #[test]
    fn futures_are_send() {
        fn assert_send<T: Send>(_: &T) {}
        let c = NotaryClient::new(ServerConfig::new("https://127.0.0.1:1")).unwrap();
        let f = c.update("g", &TrustAnchor::FirstUse, Timestamp::UNIX_EPOCH);
        assert_send(&f);
        let p = c.publish("g", &[]);
        assert_send(&p);
    }

    #[test]
    fn the_first_challenge_is_the_one_answered() {
        let mut h = reqwest::header::HeaderMap::new();
        h.append(
            reqwest::header::WWW_AUTHENTICATE,
            r#"Bearer realm="https://r/t",service="s",scope="repository:g:pull,push", Basic realm="x""#
                .parse()
                .unwrap(),
        );
        h.append(reqwest::header::WWW_AUTHENTICATE, "Basic".parse().unwrap());
        let c = first_challenge(&h).unwrap();
        assert!(c.is_bearer());
        assert_eq!(c.param("scope"), Some("repository:g:pull,push"));
        assert!(first_challenge(&reqwest::header::HeaderMap::new()).is_none());
    }
}
