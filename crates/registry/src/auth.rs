//! Authentication: Basic, and the Docker token flow driven by `WWW-Authenticate` challenges.
//!
//! Requests go out with whatever we already know (cached bearer token for the scope, or Basic
//! once the registry asked for it). On a 401 the challenge is parsed: a `Bearer` challenge makes
//! us fetch a token for `repository:<repo>:pull` from its realm (Basic credentials, an identity
//! token via the OAuth2 refresh-token grant, or anonymously), a `Basic` challenge makes us send
//! the username and password. Tokens are cached per scope until `expires_in` (default 60 s) runs
//! out, and dropped when the registry answers 401 to them.

use std::time::Duration;

use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use super::credentials::Credentials;
use super::error::{RegistryError, Result};
use super::retry::parse_retry_after;
use super::transport::transport_error;
use trustkeeper_http::challenge::parse_challenges;
use trustkeeper_http::counters::Counters;
use trustkeeper_http::token::{
    Credential, RealmRefused, TokenCache, TokenError, TokenRequest, fetch_token,
};

const MAX_TOKEN_RESPONSE: u64 = 1 << 20;

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

#[derive(Default)]
struct State {
    basic: bool,
    bearer: Option<BearerRealm>,
    tokens: TokenCache,
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
        if let Some(t) = st.tokens.fresh(scope) {
            return Ok(Some(t.authorization()));
        }
        let Some(realm) = st.bearer.clone() else {
            return Ok(None);
        };
        let token = self.fetch_token(net, &realm, scope).await?;
        let header = token.authorization();
        st.tokens.insert(scope, token);
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
            st.tokens.refused(scope, sent);
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

    async fn fetch_token(
        &self,
        net: &Net<'_>,
        realm: &BearerRealm,
        scope: &str,
    ) -> Result<trustkeeper_http::token::Token> {
        let protocol = |detail: String| RegistryError::Protocol {
            registry: net.registry.to_string(),
            detail,
        };
        let credential = match &self.credentials {
            Credentials::IdentityToken { token, .. } => Credential::RefreshToken(token),
            Credentials::Basic { username, password } => Credential::Basic { username, password },
            Credentials::Anonymous | Credentials::Bearer(_) => Credential::Anonymous,
        };
        let req = TokenRequest {
            realm: &realm.realm,
            service: realm.service.as_deref(),
            scope: Some(scope),
            credential,
            insecure_realm: self.insecure_realm,
            max_body: MAX_TOKEN_RESPONSE,
        };
        fetch_token(net.http, net.counters, &req)
            .await
            .map_err(|e| match e {
                TokenError::BadRealm { realm, detail } => {
                    protocol(format!("token realm {realm:?} is not a URL: {detail}"))
                }
                TokenError::Realm(refused) => protocol(realm_refused(&realm.realm, &refused)),
                TokenError::Send(e) | TokenError::Body(e) => {
                    transport_error(net.registry, e, net.timeout)
                }
                TokenError::Refused { status } => RegistryError::Unauthorized {
                    registry: net.registry.to_string(),
                    detail: format!(
                        "token endpoint {} answered HTTP {status} to {}",
                        realm.realm,
                        if self.credentials.is_anonymous() {
                            "an anonymous request (no credentials configured)"
                        } else {
                            "our credentials"
                        }
                    ),
                },
                TokenError::Status {
                    status: 429,
                    retry_after,
                    ..
                } => RegistryError::RateLimited {
                    registry: net.registry.to_string(),
                    retry_after: retry_after
                        .and_then(|v| parse_retry_after(&v, jiff::Timestamp::now())),
                },
                TokenError::Status { status, .. } if status >= 500 => RegistryError::Server {
                    registry: net.registry.to_string(),
                    status,
                },
                TokenError::Status { status, .. } => protocol(format!(
                    "token endpoint {} answered HTTP {status}",
                    realm.realm
                )),
                TokenError::TooLarge { limit } => {
                    protocol(format!("response body larger than {limit} bytes"))
                }
                TokenError::Json { source: e, .. } => {
                    protocol(format!("token endpoint sent invalid JSON: {e}"))
                }
                TokenError::NoToken { .. } => protocol("token endpoint sent no token".into()),
            })
    }
}

/// Why a token realm is refused, in the registry's words.
fn realm_refused(realm: &str, refused: &RealmRefused) -> String {
    // The URL as parsed (normalised), as the message always showed it.
    let url = reqwest::Url::parse(realm).map_or_else(|_| realm.to_string(), |u| u.to_string());
    match refused {
        RealmRefused::PlainHttp => format!(
            "its token realm {url} is plain http: credentials and tokens would travel in the \
             clear, so nothing was sent; serve the realm over https, or allow it for this \
             registry with spec.registry.insecureTokenRealm / --insecure-token-realm HOST"
        ),
        RealmRefused::Scheme(other) => {
            format!("its token realm {url} has scheme {other:?}: only https token realms are used")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::realm_refused;
    use trustkeeper_http::token::RealmRefused;

    #[test]
    fn refused_realms_say_what_to_do() {
        let m = realm_refused("http://auth.example.com/token", &RealmRefused::PlainHttp);
        assert!(
            m.contains("plain http") && m.contains("insecureTokenRealm"),
            "{m}"
        );
        let m = realm_refused(
            "ftp://auth.example.com/token",
            &RealmRefused::Scheme("ftp".into()),
        );
        assert!(m.contains(r#"scheme "ftp""#), "{m}");
    }
}
