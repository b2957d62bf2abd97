//! [`RegistryClient`]: tag lists, manifest digests and raw manifests over the distribution API.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, LINK, RETRY_AFTER,
};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use tokio::sync::Semaphore;

use super::auth::{Auth, Net};
use super::credentials::Credentials;
use super::error::{RegistryError, Result};
use super::manifest::{
    ManifestDescriptor, RawManifest, accept_header, clean_media_type, is_schema1, is_supported,
    media_type_of, sha256_digest,
};
use super::reference::{ImageRef, looks_like_digest, validate_digest, validate_tag};
use super::retry::{RetryPolicy, parse_retry_after};
use super::tags::{Selection, TagSelector, parse_next_link};
use super::transport::{read_limited, transport_error};
use trustkeeper_http::counters::{Counters, Kind, RequestStats};

// Writes (blob upload, manifest PUT): a child module, so that it shares the request state.
#[path = "push.rs"]
mod push;
pub use push::NO_REFERRERS_API_FOR;
pub use push::{MAX_PUSH_BLOB_BYTES, MAX_WRITE_ANSWER};

/// Largest manifest read or signed (distribution itself refuses manifests over 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Largest tag-list page (registry 2.8 sends every tag in one page).
const MAX_TAG_PAGE_BYTES: usize = 16 << 20;
/// Bounds of one tag-list walk: pages, bytes and tags read, tags kept (matching the selector),
/// and time. A registry that pages forever is refused once one is reached.
const MAX_TAG_PAGES: usize = 1_000;
const MAX_TAG_LIST_BYTES: usize = 64 << 20;
const MAX_TAGS_LISTED: usize = 1_000_000;
const MAX_TAGS_KEPT: usize = 10_000;
const MAX_TAG_LIST_TIME: Duration = Duration::from_secs(300);
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// Settings of one [`RegistryClient`]. Build one client per registry: it holds that registry's
/// CA, credentials and connection pool.
#[derive(Clone)]
pub struct RegistryOptions {
    /// Extra CA certificates (PEM bundle) trusted for this registry and its token endpoint.
    pub ca_pem: Option<Vec<u8>>,
    /// Trust only `ca_pem`, not the system roots.
    pub ca_only: bool,
    /// Credentials for the registry (and its token endpoint).
    pub credentials: Credentials,
    /// Per-request timeout (connect + response + body).
    pub timeout: Duration,
    /// Requests in flight at once (HEADs of `resolve_many` and everything else).
    pub max_concurrency: usize,
    /// Retries of 429, 5xx, timeouts and connection errors.
    pub retry: RetryPolicy,
    /// Talk plain HTTP instead of HTTPS (local registries, tests).
    pub plain_http: bool,
    /// `n` for tag-list pages; `None` lets the registry choose (registry 2.8 ignores it anyway).
    pub tags_page_size: Option<u32>,
    /// Accept a plain-`http://` token realm (credentials then travel in the clear). Off: such
    /// a realm is refused before anything is sent to it.
    pub insecure_token_realm: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            ca_pem: None,
            ca_only: false,
            credentials: Credentials::Anonymous,
            timeout: Duration::from_secs(30),
            max_concurrency: 8,
            retry: RetryPolicy::default(),
            plain_http: false,
            tags_page_size: None,
            insecure_token_realm: false,
        }
    }
}

impl fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryOptions")
            .field(
                "ca_pem",
                &self.ca_pem.as_ref().map(|p| format!("{} bytes", p.len())),
            )
            .field("ca_only", &self.ca_only)
            .field("credentials", &self.credentials)
            .field("timeout", &self.timeout)
            .field("max_concurrency", &self.max_concurrency)
            .field("retry", &self.retry)
            .field("plain_http", &self.plain_http)
            .field("tags_page_size", &self.tags_page_size)
            .field("insecure_token_realm", &self.insecure_token_realm)
            .finish()
    }
}

/// A registry API client. Cheap to clone (shares pool, token cache, counters and the limit of
/// requests in flight); [`RegistryClient::fork`] shares the connections and tokens only.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
    local: Arc<Local>,
}

/// What one user of a shared client counts and limits on its own.
struct Local {
    counters: Counters,
    permits: Semaphore,
}

struct Inner {
    http: reqwest::Client,
    auth: Auth,
    timeout: Duration,
    max_concurrency: usize,
    retry: RetryPolicy,
    plain_http: bool,
    tags_page_size: Option<u32>,
    /// Per host, whether it serves the referrers API, and since when that is known: a host
    /// without it is not asked again for [`NO_REFERRERS_API_FOR`] (every digest's read would
    /// repeat the 404).
    pub(crate) referrers_api:
        std::sync::Mutex<std::collections::HashMap<String, (bool, std::time::Instant)>>,
}

struct Fetched {
    headers: HeaderMap,
    body: Vec<u8>,
}

impl RegistryClient {
    /// Builds the client and its connection pool. Fails only on a bad CA bundle.
    pub fn new(opts: RegistryOptions) -> Result<RegistryClient> {
        let tls = trustkeeper_http::tls::client_config(opts.ca_pem.as_deref(), opts.ca_only)
            .map_err(|e| RegistryError::Config {
                detail: format!("the registry CA bundle cannot be used: {e}"),
            })?;
        let http = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("trustkeeper/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(opts.max_concurrency.max(1))
            .redirect(trustkeeper_http::tls::redirect_policy())
            .tls_backend_preconfigured(tls);
        let http = http.build().map_err(|e| RegistryError::Config {
            detail: format!("cannot build the HTTP client: {e}"),
        })?;
        let max_concurrency = opts.max_concurrency.max(1);
        Ok(RegistryClient {
            local: Arc::new(Local {
                counters: Counters::default(),
                permits: Semaphore::new(max_concurrency),
            }),
            inner: Arc::new(Inner {
                http,
                auth: Auth::new(opts.credentials, opts.insecure_token_realm),
                timeout: opts.timeout,
                max_concurrency,
                retry: opts.retry,
                plain_http: opts.plain_http,
                tags_page_size: opts.tags_page_size,
                referrers_api: Default::default(),
            }),
        })
    }

    /// Requests sent so far, by kind.
    pub fn stats(&self) -> RequestStats {
        self.local.counters.snapshot()
    }

    /// A client on the same connections and token cache, with its own counters and its own
    /// limit of requests in flight (one per reconcile: the TLS handshakes are not repeated).
    pub fn fork(&self) -> RegistryClient {
        RegistryClient {
            inner: self.inner.clone(),
            local: Arc::new(Local {
                counters: Counters::default(),
                permits: Semaphore::new(self.inner.max_concurrency),
            }),
        }
    }

    /// `https://<api host>` of the image's registry (`https://registry-1.docker.io` for Hub).
    pub fn base_url(&self, image: &ImageRef) -> String {
        let scheme = if self.inner.plain_http {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", image.api_host())
    }

    /// Every tag of the repository, following `Link: <…>; rel="next"` pages, in registry
    /// order without duplicates. Bounded: see [`RegistryClient::select_tags`].
    pub async fn list_tags(&self, image: &ImageRef) -> Result<Vec<String>> {
        self.walk_tags(image, |_| true).await
    }

    /// Lists the tags and applies a selector (one tag-list walk). Only tags the selector
    /// matches are kept while paging; pages, bytes, tags and time of the walk are bounded,
    /// and a `Link` to another origin is followed without credentials (`http://` is refused).
    pub async fn select_tags(&self, image: &ImageRef, selector: &TagSelector) -> Result<Selection> {
        let tags = self.walk_tags(image, |t| selector.matches(t)).await?;
        Ok(selector.select(&tags))
    }

    async fn walk_tags(
        &self,
        image: &ImageRef,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>> {
        let registry = image.registry_host();
        let base =
            reqwest::Url::parse(&self.base_url(image)).map_err(|e| RegistryError::Config {
                detail: format!("bad registry URL: {e}"),
            })?;
        let mut url = format!(
            "{}/v2/{}/tags/list",
            self.base_url(image),
            image.repository()
        );
        if let Some(n) = self.inner.tags_page_size {
            url.push_str(&format!("?n={n}"));
        }
        let what = image.repository_only().to_string();
        let refuse = |detail: String| RegistryError::Protocol {
            registry: registry.to_string(),
            detail: format!("tag list of {what}: {detail}"),
        };
        let started = std::time::Instant::now();
        let mut tags: Vec<String> = Vec::new();
        let mut seen_urls = std::collections::HashSet::new();
        let mut seen_tags = std::collections::HashSet::new();
        let (mut bytes, mut listed) = (0usize, 0usize);
        let mut same_origin = true;
        let mut page_no = 0;
        loop {
            page_no += 1;
            if page_no > MAX_TAG_PAGES {
                return Err(refuse(format!(
                    "more than {MAX_TAG_PAGES} pages; the registry keeps paging (a broken or \
                     hostile registry): use exact tag names, which need no list, or fix the \
                     registry"
                )));
            }
            if started.elapsed() > MAX_TAG_LIST_TIME {
                return Err(refuse(format!(
                    "not complete after {}s ({} pages); the registry is too slow or keeps \
                     paging: use exact tag names, which need no list",
                    MAX_TAG_LIST_TIME.as_secs(),
                    page_no - 1
                )));
            }
            seen_urls.insert(url.clone());
            let f = self
                .request(image, Kind::TagList, &url, &what, None, same_origin)
                .await?;
            bytes += f.body.len();
            if bytes > MAX_TAG_LIST_BYTES {
                return Err(refuse(format!(
                    "more than {} MiB over {page_no} pages; refused: use exact tag names, \
                     which need no list",
                    MAX_TAG_LIST_BYTES >> 20
                )));
            }
            #[derive(serde::Deserialize)]
            struct Page {
                tags: Option<Vec<String>>,
            }
            let page: Page = serde_json::from_slice(&f.body)
                .map_err(|e| refuse(format!("not valid JSON: {e}")))?;
            drop(f.body);
            for t in page.tags.unwrap_or_default() {
                listed += 1;
                if listed > MAX_TAGS_LISTED {
                    return Err(refuse(format!(
                        "more than {MAX_TAGS_LISTED} tags; refused: use exact tag names, which \
                         need no list"
                    )));
                }
                if keep(&t) && seen_tags.insert(t.clone()) {
                    if tags.len() >= MAX_TAGS_KEPT {
                        return Err(refuse(format!(
                            "more than {MAX_TAGS_KEPT} tags match the selection; narrow spec.tags"
                        )));
                    }
                    tags.push(t);
                }
            }
            let next = f
                .headers
                .get_all(LINK)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(parse_next_link);
            let Some(next) = next else {
                return Ok(tags);
            };
            let next_url = base
                .join(&next)
                .map_err(|e| refuse(format!("bad Link URL {next:?}: {e}")))?;
            if next_url.scheme() != base.scheme() {
                return Err(refuse(format!(
                    "the next page's Link leads to {next_url}, off {}: refused, tags are \
                     never listed in the clear; fix the registry's (or proxy's) Link header",
                    base.scheme()
                )));
            }
            // Credentials belong to the registry's own origin only (as go-containerregistry
            // keeps them): another host gets the request without them.
            same_origin = next_url.origin() == base.origin();
            let next = next_url.to_string();
            if seen_urls.contains(&next) {
                return Err(refuse(format!("pagination loops back to {next}")));
            }
            url = next;
        }
    }

    /// Digest, size and media type of a tag (or `sha256:` digest): one HEAD with the four
    /// supported `Accept` types; one GET of the raw bytes only if the HEAD lacks the digest or
    /// the length. Docker schema 1 gives [`RegistryError::Unsupported`].
    pub async fn resolve(&self, image: &ImageRef, reference: &str) -> Result<ManifestDescriptor> {
        check_reference(reference)?;
        let what = describe(image, reference);
        let url = self.manifest_url(image, reference);
        let f = self
            .request(image, Kind::Head, &url, &what, Some(&accept_header()), true)
            .await?;
        let digest = header_str(&f.headers, DOCKER_CONTENT_DIGEST)
            .filter(|d| validate_digest(d).is_ok())
            .map(str::to_string);
        let size = header_str(&f.headers, CONTENT_LENGTH.as_str())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&s| s > 0);
        if let Some(size) = size
            && size > MAX_MANIFEST_BYTES as u64
        {
            return Err(RegistryError::Protocol {
                registry: image.registry_host().to_string(),
                detail: format!(
                    "{what} is {size} bytes by its HEAD, over the {} MiB a manifest may have: \
                     refused, not signed (a broken registry or proxy)",
                    MAX_MANIFEST_BYTES >> 20
                ),
            });
        }
        let media_type = header_str(&f.headers, CONTENT_TYPE.as_str()).map(clean_media_type);
        if let Some(mt) = &media_type
            && is_schema1(mt)
        {
            return Err(RegistryError::Unsupported {
                reference: what,
                media_type: mt.clone(),
            });
        }
        if let (Some(digest), Some(size), Some(media_type)) = (&digest, size, &media_type)
            && is_supported(media_type)
        {
            if looks_like_digest(reference) && reference != digest {
                return Err(RegistryError::DigestMismatch {
                    reference: what,
                    expected: reference.to_string(),
                    actual: digest.clone(),
                });
            }
            return Ok(ManifestDescriptor {
                digest: digest.clone(),
                size,
                media_type: media_type.clone(),
            });
        }
        tracing::debug!(reference = %what, "HEAD lacks digest, length or media type; fetching the manifest");
        Ok(self
            .fetch_manifest(image, reference, digest.as_deref())
            .await?
            .descriptor)
    }

    /// Resolves many tags with at most `max_concurrency` requests in flight. Results keep the
    /// order of `tags`.
    pub async fn resolve_many(
        &self,
        image: &ImageRef,
        tags: &[String],
    ) -> Vec<(String, Result<ManifestDescriptor>)> {
        // Owned items: a stream of futures borrowing `tags` is not `Send` for callers that hold
        // this future across an await in a spawned task (higher-ranked lifetime inference).
        let mut out: Vec<(usize, String, Result<ManifestDescriptor>)> =
            futures::stream::iter(tags.iter().cloned().enumerate())
                .map(|(i, tag)| {
                    let (this, image) = (self.clone(), image.clone());
                    async move {
                        let r = this.resolve(&image, &tag).await;
                        (i, tag, r)
                    }
                })
                .buffer_unordered(self.inner.max_concurrency)
                .collect()
                .await;
        out.sort_by_key(|(i, _, _)| *i);
        out.into_iter().map(|(_, t, r)| (t, r)).collect()
    }

    /// Checks what a HEAD said before it is signed: one GET of the manifest by its digest
    /// (at most [`MAX_MANIFEST_BYTES`]), whose bytes must hash to that digest and have that
    /// size. Returns the descriptor of the bytes.
    pub async fn verify_descriptor(
        &self,
        image: &ImageRef,
        claimed: &ManifestDescriptor,
    ) -> Result<ManifestDescriptor> {
        check_reference(&claimed.digest)?;
        let got = match self
            .fetch_manifest(image, &claimed.digest, Some(&claimed.digest))
            .await
        {
            Ok(m) => m.descriptor,
            Err(RegistryError::NotFound { reference }) => {
                return Err(RegistryError::Protocol {
                    registry: image.registry_host().to_string(),
                    detail: format!(
                        "a HEAD named {} but {reference} is not served: the registry or a \
                         proxy is inconsistent; not signed",
                        claimed.digest
                    ),
                });
            }
            Err(e) => return Err(e),
        };
        if got.size != claimed.size {
            return Err(RegistryError::Protocol {
                registry: image.registry_host().to_string(),
                detail: format!(
                    "{}@{} was announced as {} bytes but is {} bytes: the registry or a proxy \
                     serves inconsistent content; not signed",
                    image.repository_only(),
                    claimed.digest,
                    claimed.size,
                    got.size
                ),
            });
        }
        Ok(got)
    }

    /// The exact manifest bytes of a tag or digest, checked against `Docker-Content-Digest` and
    /// (for a digest reference) the digest asked for.
    pub async fn get_manifest_raw(&self, image: &ImageRef, reference: &str) -> Result<RawManifest> {
        check_reference(reference)?;
        self.fetch_manifest(image, reference, None).await
    }

    async fn fetch_manifest(
        &self,
        image: &ImageRef,
        reference: &str,
        expected: Option<&str>,
    ) -> Result<RawManifest> {
        let what = describe(image, reference);
        let url = self.manifest_url(image, reference);
        let f = self
            .request(image, Kind::Get, &url, &what, Some(&accept_header()), true)
            .await?;
        let actual = sha256_digest(&f.body);
        let header_digest = header_str(&f.headers, DOCKER_CONTENT_DIGEST)
            .filter(|d| d.starts_with("sha256:"))
            .map(str::to_string);
        let by_reference = looks_like_digest(reference).then(|| reference.to_string());
        for want in [header_digest, by_reference, expected.map(str::to_string)]
            .into_iter()
            .flatten()
        {
            if want != actual {
                return Err(RegistryError::DigestMismatch {
                    reference: what,
                    expected: want,
                    actual,
                });
            }
        }
        let content_type = header_str(&f.headers, CONTENT_TYPE.as_str()).map(clean_media_type);
        let media_type = media_type_of(&what, content_type.as_deref(), &f.body)?;
        Ok(RawManifest {
            descriptor: ManifestDescriptor {
                digest: actual,
                size: f.body.len() as u64,
                media_type,
            },
            bytes: f.body,
        })
    }

    fn manifest_url(&self, image: &ImageRef, reference: &str) -> String {
        format!(
            "{}/v2/{}/manifests/{reference}",
            self.base_url(image),
            image.repository()
        )
    }

    /// One logical request: retried on transient failures, authenticated on challenges;
    /// without `credentials` nothing of ours is sent (another origin).
    async fn request(
        &self,
        image: &ImageRef,
        kind: Kind,
        url: &str,
        what: &str,
        accept: Option<&str>,
        credentials: bool,
    ) -> Result<Fetched> {
        let scope = format!("repository:{}:pull", image.repository());
        let registry = image.registry_host();
        self.inner
            .retry
            .run(&self.local.counters, || {
                self.attempt(registry, kind, url, what, accept, &scope, credentials)
            })
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        registry: &str,
        kind: Kind,
        url: &str,
        what: &str,
        accept: Option<&str>,
        scope: &str,
        credentials: bool,
    ) -> Result<Fetched> {
        let inner = &*self.inner;
        let local = &*self.local;
        let _permit = local
            .permits
            .acquire()
            .await
            .expect("semaphore never closed");
        let net = Net {
            http: &inner.http,
            counters: &local.counters,
            registry,
            timeout: inner.timeout,
        };
        let method = match kind {
            Kind::Head => Method::HEAD,
            _ => Method::GET,
        };
        let limit = match kind {
            Kind::TagList => MAX_TAG_PAGE_BYTES,
            _ => MAX_MANIFEST_BYTES,
        };
        let mut reauthenticated = false;
        loop {
            let authorization = if credentials {
                inner.auth.header(&net, scope).await?
            } else {
                None
            };
            let mut req = inner.http.request(method.clone(), url);
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            if let Some(a) = &authorization {
                let mut v = HeaderValue::from_str(a.expose_secret()).map_err(|_| {
                    RegistryError::Config {
                        detail: "credentials contain characters not allowed in HTTP headers".into(),
                    }
                })?;
                v.set_sensitive(true);
                req = req.header(AUTHORIZATION, v);
            }
            local.counters.sent(kind);
            let resp = req
                .send()
                .await
                .map_err(|e| transport_error(registry, e, inner.timeout))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            if status == StatusCode::UNAUTHORIZED {
                local.counters.unauthorized();
                if !reauthenticated
                    && credentials
                    && inner
                        .auth
                        .challenged(&headers, scope, authorization.as_ref())
                        .await
                {
                    reauthenticated = true;
                    continue;
                }
            }
            let body = if method == Method::HEAD {
                Vec::new()
            } else if status.is_success() {
                read_limited(resp, limit, registry, inner.timeout).await?
            } else {
                // error bodies only feed messages; don't fail on them
                read_limited(resp, 64 << 10, registry, inner.timeout)
                    .await
                    .unwrap_or_default()
            };
            if status.is_success() {
                return Ok(Fetched { headers, body });
            }
            return Err(self.status_error(registry, what, status, &headers, &body));
        }
    }

    fn status_error(
        &self,
        registry: &str,
        what: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> RegistryError {
        let detail = error_detail(status, body);
        match status.as_u16() {
            401 | 403 => RegistryError::Unauthorized {
                registry: registry.to_string(),
                detail: if self.inner.auth.has_credentials() {
                    detail
                } else {
                    format!("{detail}; no credentials are configured")
                },
            },
            404 => RegistryError::NotFound {
                reference: what.to_string(),
            },
            429 => RegistryError::RateLimited {
                registry: registry.to_string(),
                retry_after: header_str(headers, RETRY_AFTER.as_str())
                    .and_then(|v| parse_retry_after(v, jiff::Timestamp::now())),
            },
            500..=599 => RegistryError::Server {
                registry: registry.to_string(),
                status: status.as_u16(),
            },
            _ => RegistryError::Protocol {
                registry: registry.to_string(),
                detail: format!("{detail} for {what}"),
            },
        }
    }
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn check_reference(reference: &str) -> Result<()> {
    let r = if looks_like_digest(reference) {
        validate_digest(reference)
    } else {
        validate_tag(reference)
    };
    r.map_err(|reason| RegistryError::BadReference {
        input: reference.to_string(),
        reason,
    })
}

fn describe(image: &ImageRef, reference: &str) -> String {
    let sep = if looks_like_digest(reference) {
        '@'
    } else {
        ':'
    };
    format!("{}{sep}{reference}", image.repository_only())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `HTTP 401 (UNAUTHORIZED: authentication required)` from a distribution error body.
fn error_detail(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    let mut s = format!("HTTP {}", status.as_u16());
    if let Ok(e) = serde_json::from_slice::<Errors>(body)
        && let Some(first) = e.errors.first()
    {
        let parts: Vec<&str> = [first.code.as_deref(), first.message.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if !parts.is_empty() {
            s.push_str(&format!(" ({})", parts.join(": ")));
        }
    }
    s
}
