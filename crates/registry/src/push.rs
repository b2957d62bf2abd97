//! Registry writes: blob upload and manifest PUT, and the blob reads that checking what was
//! pushed needs. A child of `client` (it shares that module's private request state).
//!
//! - **Blobs**: `HEAD /v2/<repo>/blobs/<digest>` first (an existing blob is not sent again);
//!   else `POST /v2/<repo>/blobs/uploads/` and one monolithic `PUT <Location>?digest=…`. The
//!   `Location` may be relative; it is followed only on the registry's own origin, so that our
//!   credentials and the bytes never go elsewhere.
//! - **Manifests**: `PUT /v2/<repo>/manifests/<tag or digest>` with the manifest's media type;
//!   a `Docker-Content-Digest` answer must name the digest of the bytes sent.
//! - **Auth**: the token scope is `repository:<repo>:pull,push` (a token cached for `pull` is
//!   not reused); Basic credentials as for reads.
//! - **Bounds and retries**: answers are read to at most [`MAX_WRITE_ANSWER`] bytes (a blob GET
//!   to the caller's limit); transient failures are retried by the same [`RetryPolicy`]
//!   (a retried upload starts again with a new POST: an upload session is not resumed).

use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION,
};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;

use std::time::{Duration, Instant};

use super::super::auth::Net;
use super::super::error::{RegistryError, Result};
use super::super::manifest::sha256_digest;
use super::super::reference::{ImageRef, validate_digest};
use super::super::transport::{read_limited, transport_error};
use super::{DOCKER_CONTENT_DIGEST, Fetched, RegistryClient, header_str};
use trustkeeper_http::counters::Kind;

/// How long a registry host that answered 404 to the referrers API is taken to lack it: an
/// upgrade that adds the API is seen within this; until then the referrers tag schema, which
/// Notation reads too, serves.
pub const NO_REFERRERS_API_FOR: Duration = Duration::from_secs(3600);

/// Largest answer to a write (distribution sends an empty body or a short error).
pub const MAX_WRITE_ANSWER: usize = 64 << 10;
/// Largest blob pushed in one monolithic PUT: what this client uploads is small (signature
/// payloads, configs); anything larger is refused before a byte is sent.
pub const MAX_PUSH_BLOB_BYTES: usize = 4 << 20;

/// One request of a write (or a blob read).
struct Call<'a> {
    method: Method,
    url: &'a str,
    kind: Kind,
    what: &'a str,
    content_type: Option<&'a str>,
    accept: Option<&'a str>,
    body: Option<&'a [u8]>,
    scope: &'a str,
    limit: usize,
}

/// `repository:<repo>:pull,push`, the scope every write asks a token for.
fn push_scope(image: &ImageRef) -> String {
    format!("repository:{}:pull,push", image.repository())
}

impl RegistryClient {
    /// Whether the repository holds the blob `digest` (`HEAD /v2/<repo>/blobs/<digest>`).
    pub async fn blob_exists(&self, image: &ImageRef, digest: &str) -> Result<bool> {
        validate_digest(digest).map_err(|r| RegistryError::bad_reference(digest, r))?;
        let url = self.blob_url(image, digest);
        let what = format!("{}@{digest} (blob)", image.repository_only());
        let scope = format!("repository:{}:pull", image.repository());
        let call = Call {
            method: Method::HEAD,
            url: &url,
            kind: Kind::Head,
            what: &what,
            content_type: None,
            accept: None,
            body: None,
            scope: &scope,
            limit: 0,
        };
        match self.call(image, &call).await {
            Ok(_) => Ok(true),
            Err(RegistryError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The bytes of blob `digest`, at most `limit` of them, checked to hash to `digest`.
    pub async fn get_blob(&self, image: &ImageRef, digest: &str, limit: usize) -> Result<Vec<u8>> {
        validate_digest(digest).map_err(|r| RegistryError::bad_reference(digest, r))?;
        let url = self.blob_url(image, digest);
        let what = format!("{}@{digest} (blob)", image.repository_only());
        let scope = format!("repository:{}:pull", image.repository());
        let call = Call {
            method: Method::GET,
            url: &url,
            kind: Kind::Get,
            what: &what,
            content_type: None,
            accept: None,
            body: None,
            scope: &scope,
            limit,
        };
        let f = self.call(image, &call).await?;
        let actual = sha256_digest(&f.body);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                reference: what,
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(f.body)
    }

    /// Uploads `bytes` as a blob unless the repository has it already; returns its digest.
    pub async fn push_blob(&self, image: &ImageRef, bytes: &[u8]) -> Result<String> {
        let digest = sha256_digest(bytes);
        if bytes.len() > MAX_PUSH_BLOB_BYTES {
            return Err(RegistryError::Config {
                detail: format!(
                    "blob {digest} is {} bytes, over the {} MiB this client uploads",
                    bytes.len(),
                    MAX_PUSH_BLOB_BYTES >> 20
                ),
            });
        }
        if self.blob_exists(image, &digest).await? {
            return Ok(digest);
        }
        let what = format!("upload of blob {digest} to {}", image.repository_only());
        let scope = push_scope(image);
        let start = format!(
            "{}/v2/{}/blobs/uploads/",
            self.base_url(image),
            image.repository()
        );
        let registry = image.registry_host();
        // The POST and the PUT retry as one: a failed PUT's session may be gone.
        self.inner
            .retry
            .run(&self.local.counters, || async {
                let post = Call {
                    method: Method::POST,
                    url: &start,
                    kind: Kind::Post,
                    what: &what,
                    content_type: None,
                    accept: None,
                    body: Some(&[]),
                    scope: &scope,
                    limit: MAX_WRITE_ANSWER,
                };
                let f = self.attempt_call(registry, &post, true).await?;
                let put_url = self.upload_url(image, &start, &f.headers, &digest)?;
                let put = Call {
                    method: Method::PUT,
                    url: put_url.as_str(),
                    kind: Kind::Put,
                    what: &what,
                    content_type: Some("application/octet-stream"),
                    accept: None,
                    body: Some(bytes),
                    scope: &scope,
                    limit: MAX_WRITE_ANSWER,
                };
                let f = self.attempt_call(registry, &put, true).await?;
                check_answered_digest(registry, &what, &f.headers, &digest)
            })
            .await?;
        Ok(digest)
    }

    /// `PUT`s manifest `bytes` of `media_type` under `reference` (a tag, or its own digest);
    /// returns the digest of the bytes, which the registry's answer must confirm.
    pub async fn put_manifest(
        &self,
        image: &ImageRef,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String> {
        super::check_reference(reference)?;
        let digest = sha256_digest(bytes);
        if bytes.len() > super::MAX_MANIFEST_BYTES {
            return Err(RegistryError::Config {
                detail: format!(
                    "manifest {digest} is {} bytes, over the {} MiB a registry accepts",
                    bytes.len(),
                    super::MAX_MANIFEST_BYTES >> 20
                ),
            });
        }
        if super::super::reference::looks_like_digest(reference) && reference != digest {
            return Err(RegistryError::DigestMismatch {
                reference: super::describe(image, reference),
                expected: reference.to_string(),
                actual: digest,
            });
        }
        let url = self.manifest_url(image, reference);
        let what = super::describe(image, reference);
        let scope = push_scope(image);
        let call = Call {
            method: Method::PUT,
            url: &url,
            kind: Kind::Put,
            what: &what,
            content_type: Some(media_type),
            accept: None,
            body: Some(bytes),
            scope: &scope,
            limit: MAX_WRITE_ANSWER,
        };
        let f = self.call(image, &call).await?;
        check_answered_digest(image.registry_host(), &what, &f.headers, &digest)?;
        Ok(digest)
    }

    /// `GET /v2/<repo>/referrers/<digest>` (the OCI referrers API): its index, or `None` when
    /// the registry does not serve that API (404), as distribution 2 does not.
    /// A host found without the API is not asked again for [`NO_REFERRERS_API_FOR`].
    pub async fn get_referrers(&self, image: &ImageRef, digest: &str) -> Result<Option<Vec<u8>>> {
        validate_digest(digest).map_err(|r| RegistryError::bad_reference(digest, r))?;
        if self.referrers_api(image) == Some(false) {
            return Ok(None);
        }
        let url = format!(
            "{}/v2/{}/referrers/{digest}",
            self.base_url(image),
            image.repository()
        );
        let what = format!("{}@{digest} (referrers)", image.repository_only());
        let scope = format!("repository:{}:pull", image.repository());
        let call = Call {
            method: Method::GET,
            url: &url,
            kind: Kind::Get,
            what: &what,
            content_type: None,
            accept: Some(super::super::manifest::OCI_INDEX_V1),
            body: None,
            scope: &scope,
            limit: super::MAX_MANIFEST_BYTES,
        };
        let (known, answer) = match self.call(image, &call).await {
            Ok(f) => (true, Ok(Some(f.body))),
            Err(RegistryError::NotFound { .. }) => (false, Ok(None)),
            Err(e) => return Err(e),
        };
        (self.inner.referrers_api.lock())
            .unwrap_or_else(|e| e.into_inner())
            .insert(image.api_host().to_string(), (known, Instant::now()));
        answer
    }

    /// Whether `image`'s registry serves the referrers API, when a recent answer told
    /// ([`NO_REFERRERS_API_FOR`]); `None` until one did.
    pub fn referrers_api(&self, image: &ImageRef) -> Option<bool> {
        let m = self
            .inner
            .referrers_api
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        (m.get(image.api_host()))
            .filter(|(_, at)| at.elapsed() < NO_REFERRERS_API_FOR)
            .map(|(has, _)| *has)
    }

    /// Asks the referrers API about `digest` when whether the registry has it is not known:
    /// callers about to read many digests at once call this first, so that the others need
    /// not all ask (and, on a registry without it, all find the 404). Errors are left to the
    /// reads that follow.
    pub async fn learn_referrers_api(&self, image: &ImageRef, digest: &str) {
        if self.referrers_api(image).is_none() {
            self.get_referrers(image, digest).await.ok();
        }
    }

    fn blob_url(&self, image: &ImageRef, digest: &str) -> String {
        format!(
            "{}/v2/{}/blobs/{digest}",
            self.base_url(image),
            image.repository()
        )
    }

    /// The upload's `Location` (relative to the POST, or absolute on the same origin) with
    /// `digest=` added to its query.
    fn upload_url(
        &self,
        image: &ImageRef,
        post_url: &str,
        headers: &HeaderMap,
        digest: &str,
    ) -> Result<reqwest::Url> {
        let registry = image.registry_host();
        let protocol = |detail: String| RegistryError::Protocol {
            registry: registry.to_string(),
            detail,
        };
        let base = reqwest::Url::parse(post_url)
            .map_err(|e| protocol(format!("bad upload URL {post_url}: {e}")))?;
        let location = header_str(headers, LOCATION.as_str()).ok_or_else(|| {
            protocol("a blob upload was started without a Location to send it to".into())
        })?;
        let mut url = base
            .join(location)
            .map_err(|e| protocol(format!("upload Location {location:?} is not a URL: {e}")))?;
        if url.origin() != base.origin() {
            return Err(protocol(format!(
                "the upload Location points at another origin ({}): refused, neither the \
                 credentials nor the bytes are sent there",
                url.origin().ascii_serialization()
            )));
        }
        url.query_pairs_mut().append_pair("digest", digest);
        Ok(url)
    }

    /// One logical request with our credentials, retried on transient failures.
    async fn call(&self, image: &ImageRef, call: &Call<'_>) -> Result<Fetched> {
        let registry = image.registry_host();
        self.inner
            .retry
            .run(&self.local.counters, || {
                self.attempt_call(registry, call, true)
            })
            .await
    }

    /// One attempt (answering a 401 challenge once), as `attempt` does for reads.
    async fn attempt_call(
        &self,
        registry: &str,
        call: &Call<'_>,
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
        let mut reauthenticated = false;
        loop {
            let authorization = if credentials {
                inner.auth.header(&net, call.scope).await?
            } else {
                None
            };
            let mut req = inner.http.request(call.method.clone(), call.url);
            if let Some(a) = call.accept {
                req = req.header(ACCEPT, a);
            }
            if let Some(ct) = call.content_type {
                req = req.header(CONTENT_TYPE, ct);
            }
            if let Some(body) = call.body {
                req = req.header(CONTENT_LENGTH, body.len()).body(body.to_vec());
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
            local.counters.sent(call.kind);
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
                        .challenged(&headers, call.scope, authorization.as_ref())
                        .await
                {
                    reauthenticated = true;
                    continue;
                }
            }
            let body = if call.method == Method::HEAD {
                Vec::new()
            } else if status.is_success() {
                read_limited(resp, call.limit, registry, inner.timeout).await?
            } else {
                read_limited(resp, MAX_WRITE_ANSWER, registry, inner.timeout)
                    .await
                    .unwrap_or_default()
            };
            if status.is_success() {
                return Ok(Fetched { headers, body });
            }
            let err = self.status_error(registry, call.what, status, &headers, &body);
            return Err(match err {
                RegistryError::Unauthorized { registry, detail }
                    if call.method != Method::GET && call.method != Method::HEAD =>
                {
                    RegistryError::Unauthorized {
                        detail: format!(
                            "{detail} to the {} of {}; writing needs credentials allowed to push",
                            call.method, call.what
                        ),
                        registry,
                    }
                }
                e => e,
            });
        }
    }
}

/// A `Docker-Content-Digest` answer, when sent, must name what we sent.
fn check_answered_digest(
    registry: &str,
    what: &str,
    headers: &HeaderMap,
    digest: &str,
) -> Result<()> {
    match header_str(headers, DOCKER_CONTENT_DIGEST) {
        Some(d) if d != digest => Err(RegistryError::Protocol {
            registry: registry.to_string(),
            detail: format!(
                "{what}: the registry stored {d}, not the {digest} that was sent (a proxy \
                 rewrote the bytes?)"
            ),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_location_relative_absolute_and_foreign() {
        let client = RegistryClient::new(Default::default()).unwrap();
        let image = ImageRef::parse("registry.example.com:5000/team/app").unwrap();
        let post = "https://registry.example.com:5000/v2/team/app/blobs/uploads/";
        let headers = |loc: &str| {
            let mut h = HeaderMap::new();
            h.insert(LOCATION, HeaderValue::from_str(loc).unwrap());
            h
        };
        let d = "sha256:".to_string() + &"a".repeat(64);
        let u = client
            .upload_url(
                &image,
                post,
                &headers("/v2/team/app/blobs/uploads/u1?_state=x%3D"),
                &d,
            )
            .unwrap();
        assert_eq!(
            u.as_str(),
            format!(
                "https://registry.example.com:5000/v2/team/app/blobs/uploads/u1?_state=x%3D&digest=sha256%3A{}",
                "a".repeat(64)
            )
        );
        let u = client
            .upload_url(
                &image,
                post,
                &headers("https://registry.example.com:5000/up/2"),
                &d,
            )
            .unwrap();
        assert!(
            u.as_str()
                .starts_with("https://registry.example.com:5000/up/2?digest=")
        );
        for foreign in [
            "https://evil.example.com/v2/team/app/blobs/uploads/u1",
            "http://registry.example.com:5000/v2/team/app/blobs/uploads/u1",
            "https://registry.example.com:5001/u1",
        ] {
            let e = client
                .upload_url(&image, post, &headers(foreign), &d)
                .unwrap_err();
            assert!(e.to_string().contains("another origin"), "{foreign}: {e}");
        }
        let e = client
            .upload_url(&image, post, &HeaderMap::new(), &d)
            .unwrap_err();
        assert!(e.to_string().contains("without a Location"), "{e}");
    }
}
