//! The Docker token flow: a `Bearer` challenge names a realm (and a service and scope); a GET
//! of the realm with `service`, `scope` (and `account` for Basic credentials) answers a token,
//! or an OAuth2 refresh-token grant POSTs the same as a form. Tokens are cached per key until
//! `expires_in` (default 60 s) minus a small margin.
//!
//! The realm must be https unless the user opted in for that server: the token request carries
//! the password or refresh token, and the token itself. Nothing is sent to a refused realm.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};

use super::counters::{Counters, Kind};

const DEFAULT_TOKEN_LIFETIME: u64 = 60;

/// What the token request authenticates with.
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    Anonymous,
    /// Sent as Basic auth, with `account=<username>`.
    Basic {
        username: &'a str,
        password: &'a SecretString,
    },
    /// An OAuth2 refresh token (`grant_type=refresh_token`, POSTed as a form).
    RefreshToken(&'a SecretString),
}

/// One token request.
pub struct TokenRequest<'a> {
    pub realm: &'a str,
    pub service: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub credential: Credential<'a>,
    /// A plain-http realm is accepted (the user opted in for this server).
    pub insecure_realm: bool,
    /// The most bytes of token response read.
    pub max_body: u64,
}

/// Why a realm is refused before anything is sent to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RealmRefused {
    #[error("the token realm is plain http")]
    PlainHttp,
    #[error("the token realm has scheme {0:?}")]
    Scheme(String),
}

/// Why no token came back. Each client says it in its own words.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token realm {realm:?} is not a URL: {detail}")]
    BadRealm { realm: String, detail: String },
    #[error("{0}")]
    Realm(RealmRefused),
    /// The request did not get an answer (connect, TLS, timeout).
    #[error("token request failed: {0}")]
    Send(reqwest::Error),
    /// 401 or 403: the credentials (or their absence) were refused.
    #[error("token endpoint answered HTTP {status}")]
    Refused { status: u16 },
    /// Any other non-success status, with the (bounded) body and `Retry-After` as sent.
    #[error("token endpoint answered HTTP {status}")]
    Status {
        status: u16,
        retry_after: Option<String>,
        body: Vec<u8>,
    },
    #[error("token response larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The body stopped arriving.
    #[error("token response failed: {0}")]
    Body(reqwest::Error),
    /// A success status (`status`) whose body is not a token response.
    #[error("token endpoint sent invalid JSON: {source}")]
    Json {
        status: u16,
        source: serde_json::Error,
    },
    #[error("token endpoint sent no token")]
    NoToken { status: u16 },
}

/// A realm must be `https`, or `http` where `insecure_allowed` (logged).
pub fn check_realm(url: &reqwest::Url, insecure_allowed: bool) -> Result<(), RealmRefused> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if insecure_allowed => {
            tracing::warn!(realm = %url, "token realm is plain http (allowed by insecureTokenRealm)");
            Ok(())
        }
        "http" => Err(RealmRefused::PlainHttp),
        other => Err(RealmRefused::Scheme(other.to_string())),
    }
}

/// A bearer token and until when it is used.
pub struct Token {
    pub value: SecretString,
    pub valid_until: Instant,
}

impl Token {
    /// Valid for `expires_in` seconds (0 or absent: 60), less a tenth of that, at most 10 s,
    /// so that it is not used just as it runs out.
    fn new(value: String, expires_in: Option<u64>) -> Token {
        let lifetime = expires_in
            .filter(|&s| s > 0)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let margin = (lifetime / 10).min(10);
        Token {
            value: SecretString::from(value),
            valid_until: Instant::now() + Duration::from_secs(lifetime - margin),
        }
    }

    pub fn is_fresh(&self) -> bool {
        self.valid_until > Instant::now()
    }

    /// The `Authorization` value.
    pub fn authorization(&self) -> SecretString {
        SecretString::from(format!("Bearer {}", self.value.expose_secret()))
    }
}

/// Tokens by key (a scope, or a scope per repository).
#[derive(Default)]
pub struct TokenCache {
    tokens: HashMap<String, Token>,
}

impl TokenCache {
    /// The token for `key` while it is fresh.
    pub fn fresh(&self, key: &str) -> Option<&Token> {
        self.tokens.get(key).filter(|t| t.is_fresh())
    }

    pub fn insert(&mut self, key: &str, token: Token) {
        self.tokens.insert(key.to_string(), token);
    }

    /// Drops the token for `key` if it is the one sent as `sent` (refused by the server), not
    /// one that another request already put in its place.
    pub fn refused(&mut self, key: &str, sent: Option<&SecretString>) {
        let same = self.tokens.get(key).is_some_and(|t| {
            sent.is_some_and(|s| s.expose_secret() == t.authorization().expose_secret())
        });
        if same {
            self.tokens.remove(key);
        }
    }
}

/// Asks the realm for a token. Counts one [`Kind::Token`] request when one is sent.
pub async fn fetch_token(
    http: &reqwest::Client,
    counters: &Counters,
    req: &TokenRequest<'_>,
) -> Result<Token, TokenError> {
    let mut url = reqwest::Url::parse(req.realm).map_err(|e| TokenError::BadRealm {
        realm: req.realm.to_string(),
        detail: e.to_string(),
    })?;
    check_realm(&url, req.insecure_realm).map_err(TokenError::Realm)?;
    let mut params: Vec<(&str, &str)> = Vec::with_capacity(3);
    if let Some(s) = req.service {
        params.push(("service", s));
    }
    if let Some(s) = req.scope {
        params.push(("scope", s));
    }
    let rb = match req.credential {
        Credential::RefreshToken(token) => {
            // OAuth2 refresh-token grant; the form body is encoded by Url's serializer.
            let mut form = reqwest::Url::parse("http://x/").expect("static URL");
            form.query_pairs_mut()
                .extend_pairs(params.iter().copied())
                .append_pair("grant_type", "refresh_token")
                .append_pair("client_id", "trustkeeper")
                .append_pair("refresh_token", token.expose_secret());
            http.post(url)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.query().unwrap_or_default().to_string())
        }
        Credential::Basic { username, password } => {
            url.query_pairs_mut()
                .extend_pairs(params.iter().copied())
                .append_pair("account", username);
            // reqwest marks the header sensitive.
            http.get(url)
                .basic_auth(username, Some(password.expose_secret()))
        }
        Credential::Anonymous => {
            url.query_pairs_mut().extend_pairs(params.iter().copied());
            http.get(url)
        }
    };
    counters.sent(Kind::Token);
    let resp = rb.send().await.map_err(TokenError::Send)?;
    let status = resp.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(TokenError::Refused {
            status: status.as_u16(),
        });
    }
    let retry_after = (!status.is_success())
        .then(|| resp.headers().get(RETRY_AFTER))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = read_limited(resp, req.max_body).await?;
    if !status.is_success() {
        return Err(TokenError::Status {
            status: status.as_u16(),
            retry_after,
            body,
        });
    }
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    }
    let parsed: TokenResponse =
        serde_json::from_slice(&body).map_err(|source| TokenError::Json {
            status: status.as_u16(),
            source,
        })?;
    let value = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or(TokenError::NoToken {
            status: status.as_u16(),
        })?;
    Ok(Token::new(value, parsed.expires_in))
}

/// Reads a token response, refusing more than `limit` bytes before reading them.
async fn read_limited(resp: reqwest::Response, limit: u64) -> Result<Vec<u8>, TokenError> {
    super::body::read_limited(resp, limit)
        .await
        .map_err(|e| match e {
            super::body::BodyError::TooLarge { limit } => TokenError::TooLarge { limit },
            super::body::BodyError::Transport(e) => TokenError::Body(e),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_realms_must_be_https_unless_allowed() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert!(check_realm(&url("https://auth.example.com/token"), false).is_ok());
        assert_eq!(
            check_realm(&url("http://auth.example.com/token"), false),
            Err(RealmRefused::PlainHttp)
        );
        assert!(check_realm(&url("http://auth.example.com/token"), true).is_ok());
        assert_eq!(
            check_realm(&url("ftp://auth.example.com/token"), true),
            Err(RealmRefused::Scheme("ftp".into()))
        );
    }

    #[test]
    fn expiry_defaults_and_margin() {
        let left = |e: Option<u64>| {
            let t = Token::new("t".into(), e);
            t.valid_until.saturating_duration_since(Instant::now())
        };
        // absent or 0: 60 s less 6 s
        assert!((Duration::from_secs(53)..=Duration::from_secs(54)).contains(&left(None)));
        assert!((Duration::from_secs(53)..=Duration::from_secs(54)).contains(&left(Some(0))));
        // the margin is at most 10 s
        assert!(
            (Duration::from_secs(3589)..=Duration::from_secs(3590)).contains(&left(Some(3600)))
        );
        let mut cache = TokenCache::default();
        cache.insert("k", Token::new("t".into(), Some(60)));
        let sent = cache.fresh("k").unwrap().authorization();
        assert_eq!(sent.expose_secret(), "Bearer t");
        // another token than the one refused stays
        cache.refused("k", Some(&SecretString::from("Bearer other")));
        assert!(cache.fresh("k").is_some());
        cache.refused("k", Some(&sent));
        assert!(cache.fresh("k").is_none());
    }
}
