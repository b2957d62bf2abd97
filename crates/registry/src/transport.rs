//! Mapping transport failures to [`RegistryError`], and bounded body reads.

use std::time::Duration;

use super::error::{RegistryError, Result};

/// Classifies a reqwest error: timeout, TLS/certificate problem, or unreachable.
pub(crate) fn transport_error(
    registry: &str,
    e: reqwest::Error,
    timeout: Duration,
) -> RegistryError {
    if e.is_timeout() {
        return RegistryError::Timeout {
            registry: registry.to_string(),
            timeout,
        };
    }
    let detail = trustkeeper_http::tls::with_causes(&e);
    if e.is_redirect() {
        // not transient: the same redirect comes back
        return RegistryError::Protocol {
            registry: registry.to_string(),
            detail,
        };
    }
    let lower = detail.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") {
        return RegistryError::Tls {
            registry: registry.to_string(),
            detail,
        };
    }
    RegistryError::Unreachable {
        registry: registry.to_string(),
        detail,
    }
}

/// Reads a response body, refusing more than `limit` bytes.
pub(crate) async fn read_limited(
    resp: reqwest::Response,
    limit: usize,
    registry: &str,
    timeout: Duration,
) -> Result<Vec<u8>> {
    use trustkeeper_http::body::{self, BodyError};
    body::read_limited(resp, limit as u64)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge { limit } => RegistryError::Protocol {
                registry: registry.to_string(),
                detail: format!("response body larger than {limit} bytes"),
            },
            BodyError::Transport(e) => transport_error(registry, e, timeout),
        })
}
