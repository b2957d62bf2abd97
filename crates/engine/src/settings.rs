//! Stage 1, settings: the spec's values parsed and checked (image, notary server, durations),
//! and the trust anchor the status keeps. No I/O.

use jiff::SignedDuration;

use crate::api::{self, SignedImageSpec, SignedImageStatus, TrustStatus, reasons};
use crate::failure::Failure;
use trustkeeper_notary::{TrustAnchor, TrustState};
use trustkeeper_registry::ImageRef;

/// The spec's values, parsed.
pub struct Settings {
    pub image: ImageRef,
    pub gun: String,
    pub notary_url: String,
    pub validity: SignedDuration,
    pub renew_before: SignedDuration,
    pub interval: SignedDuration,
    /// `spec.registry.insecureTokenRealm` / `spec.notary.insecureTokenRealm`.
    pub insecure_registry_realm: bool,
    pub insecure_notary_realm: bool,
}

pub(crate) fn invalid(msg: impl Into<String>) -> Failure {
    Failure::new(reasons::INVALID_SPEC, msg)
}

/// The notary server of an image when the spec names none, by docker's rules (so that
/// trustkeeper reads the trust data `docker pull` reads): `DOCKER_CONTENT_TRUST_SERVER` (https
/// only), then Docker Hub's notary for Docker Hub images, else `https://<registry host>` with
/// the registry's own port (not a notary port guessed beside it).
pub fn default_notary_url(image: &ImageRef) -> Result<String, Failure> {
    if let Ok(s) = std::env::var("DOCKER_CONTENT_TRUST_SERVER")
        && !s.trim().is_empty()
    {
        let s = s.trim();
        if !s.starts_with("https://") || s.len() == "https://".len() {
            return Err(invalid(format!(
                "DOCKER_CONTENT_TRUST_SERVER {s:?} is not an https URL: trust data is never \
                 fetched in the clear; give https://HOST[:PORT] (as docker requires)"
            )));
        }
        return Ok(s.trim_end_matches('/').to_string());
    }
    Ok(
        if trustkeeper_registry::reference::is_docker_hub(image.registry_host()) {
            "https://notary.docker.io".into()
        } else {
            format!("https://{}", image.registry_host())
        },
    )
}

impl Settings {
    pub fn from_spec(spec: &SignedImageSpec) -> Result<Settings, Failure> {
        let image =
            ImageRef::parse(&spec.image).map_err(|e| invalid(format!("spec.image: {e}")))?;
        if image.tag().is_some() || image.digest().is_some() {
            return Err(invalid(format!(
                "spec.image {:?} names a tag or digest: give the repository only and list tags in spec.tags",
                spec.image
            )));
        }
        let dur = |field: &str, v: &str| {
            api::parse_go_duration(v)
                .map(|d| d.0)
                .map_err(|e| invalid(format!("spec.{field}: {e}")))
        };
        let validity = dur("validity", &spec.validity)?;
        let renew_before = dur("renewBefore", &spec.renew_before)?;
        let interval = dur("interval", &spec.interval)?;
        if renew_before >= validity {
            return Err(invalid(
                "spec.renewBefore must be shorter than spec.validity",
            ));
        }
        let notary_url = match &spec.notary.url {
            Some(u) if u.starts_with("https://") => u.trim_end_matches('/').to_string(),
            Some(u) => {
                return Err(invalid(format!(
                    "spec.notary.url {u:?} is not https: trust data is never fetched in the clear; \
                     configure the server's CA instead"
                )));
            }
            None => default_notary_url(&image)?,
        };
        Ok(Settings {
            gun: image.gun(),
            image,
            notary_url,
            validity,
            renew_before,
            interval,
            insecure_registry_realm: spec.registry.insecure_token_realm,
            insecure_notary_realm: spec.notary.insecure_token_realm,
        })
    }
}

impl From<&TrustStatus> for TrustState {
    fn from(t: &TrustStatus) -> Self {
        TrustState {
            root_key_ids: t.root_key_ids.clone(),
            root_version: t.root_version,
            versions: t.versions.clone(),
        }
    }
}

impl From<&TrustState> for TrustStatus {
    fn from(t: &TrustState) -> Self {
        TrustStatus {
            root_key_ids: t.root_key_ids.clone(),
            root_version: t.root_version,
            versions: t.versions.clone(),
        }
    }
}

/// How to trust the repository's root this time. Pinned root keys hold also over a trust
/// already kept: the kept root must be the pinned one or reached from it by rotations.
pub fn trust_anchor(spec: &SignedImageSpec, previous: Option<&SignedImageStatus>) -> TrustAnchor {
    match previous.and_then(|p| p.trust.as_ref()) {
        Some(t) if !spec.notary.root_key_ids.is_empty() => TrustAnchor::PinnedState {
            pins: spec.notary.root_key_ids.clone(),
            state: t.into(),
        },
        Some(t) => TrustAnchor::State(t.into()),
        None if !spec.notary.root_key_ids.is_empty() => {
            TrustAnchor::PinnedKeys(spec.notary.root_key_ids.clone())
        }
        None => TrustAnchor::FirstUse,
    }
}
