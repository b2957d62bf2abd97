//! Docker registry client: image references, credentials, tags and manifest digests.
//! Knows nothing of notary, the engine or Kubernetes.
//!
//! # Pieces
//!
//! | type | job |
//! |---|---|
//! | [`ImageRef`] | parse `name[:tag][@sha256:…]`, `host[:port]/path…`; Docker Hub defaults (`docker.io`, `library/`, API host `registry-1.docker.io`, legacy `index.docker.io`); [`ImageRef::gun`] is the notary GUN |
//! | [`DockerConfig`] / [`Credentials`] | `.dockerconfigjson` / `~/.docker/config.json` → credentials per registry (`auth`, `username`/`password`, `identitytoken`, `registrytoken`). **Credential helpers (`credsStore`, `credHelpers`) are never executed**: such hosts get anonymous access and a warning |
//! | [`RegistryClient`] | one registry's HTTP client: tag lists, manifest digests, raw manifests, auth, retries, counters |
//! | [`TagSelector`] / [`Selection`] | exact tags and globs; patterns that matched nothing are reported |
//! | [`RegistryError`] | typed errors whose messages say what to do |
//!
//! # Behaviour
//!
//! - **Digests** ([`RegistryClient::resolve`]): one `HEAD /v2/<repo>/manifests/<tag>` with
//!   `Accept` of Docker schema 2, Docker manifest list, OCI manifest and OCI index; reads
//!   `Docker-Content-Digest`, `Content-Length`, `Content-Type`. Only when the HEAD lacks the
//!   digest, the length or a known type: one GET of the raw bytes, whose sha256 must equal the
//!   digest the registry (or the reference) names ([`RegistryError::DigestMismatch`]); size =
//!   byte length. Docker schema 1 → [`RegistryError::Unsupported`].
//! - **Tags** ([`RegistryClient::select_tags`]): follows `Link: <…>; rel="next"` (relative or
//!   absolute), detects loops; `n` only if [`RegistryOptions::tags_page_size`] is set (registry
//!   2.8 ignores it and returns everything in one page). Bounded in pages, bytes (each page's
//!   too), tags and time; only tags the selector matches are kept while paging. A `Link` to
//!   another origin gets no credentials; one that leaves https is refused.
//! - **Before signing** ([`RegistryClient::verify_descriptor`]): a digest about to be signed
//!   for the first time is fetched by digest once (at most 4 MiB, as distribution limits
//!   manifests) and its sha256 and size checked against what the HEAD said.
//! - **Never in the clear**: no redirect from https to http; a plain-http token realm is
//!   refused unless [`RegistryOptions::insecure_token_realm`].
//! - **Auth**: a request goes out with what is known; a 401 is answered from its
//!   `WWW-Authenticate`: `Bearer` → token from the realm for `repository:<repo>:pull` (Basic
//!   credentials with `account=`, identity token via `grant_type=refresh_token` POST, or
//!   anonymous), cached per scope until `expires_in` (default 60 s) minus a small margin, and
//!   dropped + re-fetched when the registry answers 401 to it; `Basic` → username/password are
//!   sent from then on. 401/403 after that → [`RegistryError::Unauthorized`] naming the registry;
//!   no digest is ever returned on bad credentials.
//!   The challenge parser, the token request and cache, and the counters are the shared
//!   [`trustkeeper_http`] pieces (the notary client uses them too).
//! - **Pressure**: 429 waits `Retry-After` (seconds or HTTP date, capped by
//!   [`RetryPolicy::max_retry_after`]); 5xx, timeouts and connection errors back off
//!   exponentially with jitter (backon); attempts ([`RetryPolicy::max_attempts`]) and total time
//!   ([`RetryPolicy::max_total`]) are bounded. TLS/certificate failures, 401/403/404 are not
//!   retried. Every request has [`RegistryOptions::timeout`]; at most
//!   [`RegistryOptions::max_concurrency`] requests per client are in flight
//!   ([`RegistryClient::resolve_many`] runs the HEADs concurrently within that bound).
//! - **TLS**: [`RegistryOptions::ca_pem`] is added to the system roots, or replaces them with
//!   [`RegistryOptions::ca_only`] (see [`trustkeeper_http::tls::client_config`]).
//! - **Counters**: [`RegistryClient::stats`] counts every HEAD, manifest GET, tag-list page and
//!   token request sent (retries and 401s included), plus retries and 401s. Steady state for a
//!   glob selection: 1 tag-list request + 1 HEAD per selected tag, 0 GETs.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> trustkeeper_registry::Result<()> {
//! use trustkeeper_registry::*;
//! let image = ImageRef::parse("registry.example.com:5000/team/app")?;
//! let config = DockerConfig::from_json(br#"{"auths":{"registry.example.com:5000":{"auth":"dTpw"}}}"#)?;
//! let client = RegistryClient::new(RegistryOptions {
//!     credentials: config.credentials_for(image.registry_host()),
//!     ..Default::default()
//! })?;
//! let selection = client
//!     .select_tags(&image, &TagSelector::new(&["v1.*", "latest"])?)
//!     .await?;
//! for pattern in &selection.unmatched {
//!     eprintln!("{pattern} matched no tag");
//! }
//! for (tag, result) in client.resolve_many(&image, &selection.tags).await {
//!     let d = result?;
//!     println!("{}:{tag} {} {} {}", image.gun(), d.digest, d.size, d.media_type);
//! }
//! # Ok(()) }
//! ```
mod auth;
mod client;
pub mod credentials;
pub mod error;
pub mod manifest;
pub mod reference;
pub mod retry;
pub mod tags;
mod transport;

pub use client::{
    MAX_PUSH_BLOB_BYTES, MAX_WRITE_ANSWER, NO_REFERRERS_API_FOR, RegistryClient, RegistryOptions,
};
pub use credentials::{Credentials, DockerConfig};
pub use error::{RegistryError, Result};
pub use manifest::{ManifestDescriptor, RawManifest};
pub use reference::ImageRef;
pub use retry::RetryPolicy;
pub use tags::{Selection, TagSelector};
pub use trustkeeper_http::RequestStats;
