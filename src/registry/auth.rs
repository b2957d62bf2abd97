//! Authentication: Basic, and the Docker token flow driven by `WWW-Authenticate` challenges.
//!
//! Requests go out with whatever we already know (cached bearer token for the scope, or Basic
//! once the registry asked for it). On a 401 the challenge is parsed: a `Bearer` challenge makes
//! us fetch a token for `repository:<repo>:pull` from its realm (Basic credentials, an identity
//! token via the OAuth2 refresh-token grant, or anonymously), a `Basic` challenge makes us send
//! the username and password. Tokens are cached per scope until `expires_in` (default 60 s) runs
//! out, and dropped when the registry answers 401 to them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use super::challenge::parse_challenges;
use super::credentials::Credentials;
use super::error::{RegistryError, Result};
use super::retry::parse_retry_after;
use super::stats::{Counters, Kind};
use super::transport::{read_limited, transport_error};

const DEFAULT_TOKEN_LIFETIME: u64 = 60;
const MAX_TOKEN_RESPONSE: usize = 1 << 20;

/// What a request needs to reach the token endpoint.
pub(crate) struct Net<'a> {
    pub http: &'a reqwest::Client,
    pub counters: &'a Counters,
    pub registry: &'a str,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct BearerRealm {
    realm: String,
    service: Option<String>,
}

struct Token {
    value: SecretString,
    valid_until: Instant,
}

#[derive(Default)]
struct State {
    basic: bool,
    bearer: Option<BearerRealm>,
    tokens: HashMap<String, Token>,
}

pub(crate) struct Auth {
    credentials: Credentials,
    /// A plain-http token realm is accepted (the user opted in for this registry).
    insecure_realm: bool,
    state: Mutex<State>,
}

fn bearer(token: &SecretString) -> SecretString {
    SecretString::from(format!("Bearer {}", token.expose_secret()))
}

impl Auth {
    pub(crate) fn new(credentials: Credentials, insecure_realm: bool) -> Self {
        Auth {
            credentials,
            insecure_realm,
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn has_credentials(&self) -> bool {
        !self.credentials.is_anonymous()
    }

    /// The `Authorization` value to send for `scope`, fetching a token if the registry is known
    /// to want one and none is cached.
    pub(crate) async fn header(&self, net: &Net<'_>, scope: &str) -> Result<Option<SecretString>> {
        if let Credentials::Bearer(t) = &self.credentials {
            return Ok(Some(bearer(t)));
        }
        // Held across the token fetch: concurrent requests wait for one token instead of each
        // fetching their own.
        let mut st = self.state.lock().await;
        if st.basic {
            return Ok(self.credentials.basic_header());
        }
        if let Some(t) = st.tokens.get(scope)
            && t.valid_until > Instant::now()
        {
            return Ok(Some(bearer(&t.value)));
        }
        let Some(realm) = st.bearer.clone() else {
            return Ok(None);
        };
        let token = self.fetch_token(net, &realm, scope).await?;
        let header = bearer(&token.value);
        st.tokens.insert(scope.to_string(), token);
        Ok(Some(header))
    }

    /// Learns from a 401's challenges. Returns whether retrying with new authorization can help.
    pub(crate) async fn challenged(
        &self,
        headers: &HeaderMap,
        scope: &str,
        sent: Option<&SecretString>,
    ) -> bool {
        if matches!(self.credentials, Credentials::Bearer(_)) {
            return false;
        }
        let challenges: Vec<_> = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        let mut st = self.state.lock().await;
        if let Some(c) = challenges.iter().find(|c| c.is_bearer())
            && let Some(realm) = c.param("realm")
        {
            st.bearer = Some(BearerRealm {
                realm: realm.to_string(),
                service: c.param("service").map(str::to_string),
            });
            st.basic = false;
            // Drop the token the registry just refused, unless another request already
            // replaced it.
            let refused = st.tokens.get(scope).is_some_and(|t| {
                sent.is_some_and(|s| s.expose_secret() == bearer(&t.value).expose_secret())
            });
            if refused {
                st.tokens.remove(scope);
            }
            return true;
        }
        if challenges.iter().any(|c| c.is_basic())
            && matches!(self.credentials, Credentials::Basic { .. })
            && sent.is_none()
        {
            st.basic = true;
            return true;
        }
        if st.basic && sent.is_none() {
            // another request switched to Basic meanwhile
            return true;
        }
        false
    }

    async fn fetch_token(&self, net: &Net<'_>, realm: &BearerRealm, scope: &str) -> Result<Token> {
        let protocol = |detail: String| RegistryError::Protocol {
            registry: net.registry.to_string(),
            detail,
        };
        let mut url = reqwest::Url::parse(&realm.realm)
            .map_err(|e| protocol(format!("token realm {:?} is not a URL: {e}", realm.realm)))?;
        check_realm(&url, self.insecure_realm).map_err(protocol)?;
        let mut params: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = &realm.service {
            params.push(("service", s));
        }
        params.push(("scope", scope));
        let req = match &self.credentials {
            Credentials::IdentityToken { token, .. } => {
                // OAuth2 refresh-token grant; the form body is encoded by Url's serializer.
                let mut form = reqwest::Url::parse("http://x/").expect("static URL");
                form.query_pairs_mut()
                    .extend_pairs(params.iter().copied())
                    .append_pair("grant_type", "refresh_token")
                    .append_pair("client_id", "trustkeeper")
                    .append_pair("refresh_token", token.expose_secret());
                net.http
                    .post(url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(form.query().unwrap_or_default().to_string())
            }
            Credentials::Basic { username, .. } => {
                url.query_pairs_mut()
                    .extend_pairs(params.iter().copied())
                    .append_pair("account", username);
                let mut v = HeaderValue::from_str(
                    self.credentials
                        .basic_header()
                        .expect("basic credentials")
                        .expose_secret(),
                )
                .map_err(|_| RegistryError::Config {
                    detail: "the username or password contains characters not allowed in HTTP \
                             headers"
                        .into(),
                })?;
                v.set_sensitive(true);
                net.http.get(url).header(AUTHORIZATION, v)
            }
            Credentials::Anonymous | Credentials::Bearer(_) => {
                url.query_pairs_mut().extend_pairs(params.iter().copied());
                net.http.get(url)
            }
        };
        net.counters.sent(Kind::Token);
        let resp = req
            .send()
            .await
            .map_err(|e| transport_error(net.registry, e, net.timeout))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()));
        let body = read_limited(resp, MAX_TOKEN_RESPONSE, net.registry, net.timeout).await?;
        if status == 401 || status == 403 {
            return Err(RegistryError::Unauthorized {
                registry: net.registry.to_string(),
                detail: format!(
                    "token endpoint {} answered HTTP {} to {}",
                    realm.realm,
                    status.as_u16(),
                    if self.credentials.is_anonymous() {
                        "an anonymous request (no credentials configured)"
                    } else {
                        "our credentials"
                    }
                ),
            });
        }
        if status == 429 {
            return Err(RegistryError::RateLimited {
                registry: net.registry.to_string(),
                retry_after,
            });
        }
        if status.is_server_error() {
            return Err(RegistryError::Server {
                registry: net.registry.to_string(),
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(protocol(format!(
                "token endpoint {} answered HTTP {}",
                realm.realm,
                status.as_u16()
            )));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| protocol(format!("token endpoint sent invalid JSON: {e}")))?;
        let value = parsed
            .token
            .filter(|t| !t.is_empty())
            .or(parsed.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| protocol("token endpoint sent no token".into()))?;
        let lifetime = parsed
            .expires_in
            .filter(|&s| s > 0)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let margin = (lifetime / 10).min(10);
        Ok(Token {
            value: SecretString::from(value),
            valid_until: Instant::now() + Duration::from_secs(lifetime - margin),
        })
    }
}

/// A token realm must be `https` unless the user opted in: the token request carries the
/// registry password or identity token, and the token itself. Nothing is sent to a refused one.
pub(crate) fn check_realm(url: &reqwest::Url, insecure_allowed: bool) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if insecure_allowed => {
            tracing::warn!(realm = %url, "token realm is plain http (allowed by insecureTokenRealm)");
            Ok(())
        }
        "http" => Err(format!(
            "its token realm {url} is plain http: credentials and tokens would travel in the \
             clear, so nothing was sent; serve the realm over https, or allow it for this \
             registry with spec.registry.insecureTokenRealm / --insecure-token-realm HOST"
        )),
        other => Err(format!(
            "its token realm {url} has scheme {other:?}: only https token realms are used"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::check_realm;

    #[test]
    fn token_realms_must_be_https_unless_allowed() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert!(check_realm(&url("https://auth.example.com/token"), false).is_ok());
        let refused = check_realm(&url("http://auth.example.com/token"), false).unwrap_err();
        assert!(refused.contains("plain http") && refused.contains("insecureTokenRealm"));
        assert!(check_realm(&url("http://auth.example.com/token"), true).is_ok());
        assert!(check_realm(&url("ftp://auth.example.com/token"), true).is_err());
    }
}
