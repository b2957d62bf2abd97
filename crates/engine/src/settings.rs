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

/// Docker Hub's notary service (`notary.docker.io`) ends on 8 December 2026.
pub const DOCKER_HUB_NOTARY_END: &str = "2026-12-08T00:00:00Z";

impl Settings {
    /// Whether the notary server can still hold trust data at `now`: Docker Hub's was shut
    /// down for good, which is a reason of its own that says the way on, not a server to wait
    /// for (`NotaryUnreachable` and its backoff).
    pub fn notary_in_service(&self, now: jiff::Timestamp) -> Result<(), Failure> {
        let end: jiff::Timestamp = DOCKER_HUB_NOTARY_END.parse().expect("a valid timestamp");
        let host = self
            .notary_url
            .strip_prefix("https://")
            .and_then(|rest| rest.split(['/', ':']).next())
            .unwrap_or_default();
        if now < end || !host.eq_ignore_ascii_case("notary.docker.io") {
            return Ok(());
        }
        Err(Failure::new(
            reasons::NOTARY_SHUT_DOWN,
            format!(
                "Docker Hub's notary service ({}) was shut down on 8 December 2026: Docker \
                 Content Trust can no longer be read or published for {}. Sign the same digests \
                 with cosign or Notation instead, which Docker Hub stores beside the image \
                 (spec.formats / --format cosign, notation), or keep Content Trust on a notary \
                 server of your own (spec.notary.url / --notary-url)",
                self.notary_url, self.gun
            ),
        ))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(image: &str, notary: Option<&str>) -> Settings {
        let mut yaml = format!("image: {image}\nsigningKey: {{secretRef: {{name: k}}}}\n");
        if let Some(u) = notary {
            yaml.push_str(&format!("notary: {{url: \"{u}\"}}\n"));
        }
        Settings::from_spec(&serde_saphyr::from_str(&yaml).unwrap()).unwrap()
    }

    #[test]
    fn docker_hubs_notary_is_shut_down_from_8_december_2026() {
        let before: jiff::Timestamp = "2026-12-07T23:59:59Z".parse().unwrap();
        let after: jiff::Timestamp = "2026-12-08T00:00:00Z".parse().unwrap();
        let hub = settings("docker.io/acme/app", Some("https://notary.docker.io"));
        assert!(hub.notary_in_service(before).is_ok());
        let f = hub.notary_in_service(after).unwrap_err();
        assert_eq!(f.reason, reasons::NOTARY_SHUT_DOWN);
        assert!(f.message.contains("8 December 2026"), "{}", f.message);
        assert!(f.message.contains("cosign") && f.message.contains("Notation"));
        assert!(f.message.contains("spec.notary.url"));
        let port = settings("acme/app", Some("https://NOTARY.docker.io:443/"));
        assert!(port.notary_in_service(after).is_err());
        // A self-hosted notary for a Docker Hub image goes on.
        let own = settings("docker.io/acme/app", Some("https://notary.example.com"));
        assert!(own.notary_in_service(after).is_ok());
        let other = settings("registry.example.com/app", None);
        assert!(other.notary_in_service(after).is_ok());
    }
}
