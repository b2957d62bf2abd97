//! Typed errors of the registry module. Each message says what went wrong and what to do.

use std::time::Duration;

/// Result alias of the registry module.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The image reference (or a tag / glob) could not be parsed.
    #[error("invalid image reference {input:?}: {reason}")]
    BadReference { input: String, reason: String },

    /// The registry rejected our credentials (or anonymous access). Never carries a digest.
    #[error(
        "registry {registry} refused access ({detail}): check the pull secret / docker config \
         credentials for {registry} and that they may pull this repository"
    )]
    Unauthorized { registry: String, detail: String },

    /// The repository, tag or manifest does not exist.
    #[error("{reference} not found: check the repository name and that the tag was pushed")]
    NotFound { reference: String },

    /// The registry could not be reached (DNS, TCP, TLS), even after retries.
    #[error(
        "registry {registry} is unreachable ({detail}): check the host name, port, network \
         policy and CA certificate"
    )]
    Unreachable { registry: String, detail: String },

    /// The registry kept answering 429 Too Many Requests.
    #[error(
        "registry {registry} is rate limiting us (429{}): lower the concurrency or the refresh \
         frequency, or authenticate to get a higher limit",
        retry_after.map(|d| format!(", Retry-After {}s", d.as_secs())).unwrap_or_default()
    )]
    RateLimited {
        registry: String,
        retry_after: Option<Duration>,
    },

    /// TLS failed (unknown CA, wrong host name in the certificate, …). Not retried.
    #[error(
        "TLS with registry {registry} failed ({detail}): configure the registry's CA \
         certificate, or check that the host name matches its certificate"
    )]
    Tls { registry: String, detail: String },

    /// A request took longer than the per-request timeout, even after retries.
    #[error(
        "timed out after {} waiting for the registry {registry}: it is slow or overloaded; \
         retry later or raise --timeout",
        trustkeeper_http::human_duration(*timeout)
    )]
    Timeout { registry: String, timeout: Duration },

    /// The registry answered with a server error (5xx), even after retries.
    #[error("registry {registry} failed with HTTP {status}: retry later")]
    Server { registry: String, status: u16 },

    /// The manifest bytes do not hash to the digest the registry (or the reference) claims.
    #[error(
        "digest mismatch for {reference}: expected {expected}, the bytes hash to {actual}; the \
         registry or a proxy is serving inconsistent content, do not sign it"
    )]
    DigestMismatch {
        reference: String,
        expected: String,
        actual: String,
    },

    /// The manifest has a media type we cannot sign (e.g. Docker schema 1).
    #[error(
        "{reference} has manifest media type {media_type:?}, which is not supported: re-push \
         the image as a Docker schema 2 or OCI manifest"
    )]
    Unsupported {
        reference: String,
        media_type: String,
    },

    /// The registry answered something that does not follow the distribution API.
    #[error("registry {registry} answered unexpectedly: {detail}")]
    Protocol { registry: String, detail: String },

    /// Bad client configuration (CA PEM, docker config JSON, tag glob).
    #[error("invalid registry configuration: {detail}")]
    Config { detail: String },
}

impl RegistryError {
    pub fn bad_reference(input: &str, reason: impl Into<String>) -> Self {
        RegistryError::BadReference {
            input: input.to_string(),
            reason: reason.into(),
        }
    }

    /// Whether a later retry may succeed (used by the retry loop).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RegistryError::Unreachable { .. }
                | RegistryError::RateLimited { .. }
                | RegistryError::Timeout { .. }
                | RegistryError::Server { .. }
        )
    }
}
