//! The Notation format of a run (`spec.formats` lists `notation`): every desired digest is
//! signed as a Notary Project JWS signature with the key the certificate chain from
//! `spec.notation.certificateSecretRef` is for. A digest already signed by the current leaf
//! certificate costs one read of its referrers index; a renewed certificate signs again.

use std::collections::BTreeMap;

use futures::StreamExt as _;
use jiff::Timestamp;

use super::failure::Failure;
use super::model::Manifest;
use crate::api::{FormatSignature, SignatureFormat, Time, reasons};
use trustkeeper_formats::notation_sign::{
    self, NotationOptions, NotationSignError, NotationSigned,
};
use trustkeeper_notary::Signer;
use trustkeeper_registry::{ImageRef, ManifestDescriptor, RegistryClient};

/// The certificate chain a run signs with: DER, leaf first, and what the status says of it.
pub struct Chain {
    pub der: Vec<Vec<u8>>,
    /// SHA-256 thumbprint of the leaf (hex), as Notation's annotation lists it.
    pub leaf_thumbprint: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

fn bad(msg: String) -> Failure {
    Failure::new(reasons::SECRET_INVALID, msg)
}

fn time(t: x509_cert::time::Time) -> Timestamp {
    let secs = t.to_unix_duration().as_secs();
    Timestamp::from_second(i64::try_from(secs).unwrap_or(i64::MAX)).unwrap_or(Timestamp::MAX)
}

/// Parses the chain PEM (bounded by the gathering: `secrets::MAX_CHAIN_BYTES`).
pub fn parse_chain(pem_bytes: &[u8]) -> Result<Chain, Failure> {
    use x509_cert::der::Decode as _;
    let blocks = pem::parse_many(pem_bytes)
        .map_err(|e| bad(format!("spec.notation.certificateSecretRef: not PEM ({e})")))?;
    let der: Vec<Vec<u8>> = (blocks.into_iter())
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .collect();
    let Some(leaf) = der.first() else {
        return Err(bad(
            "spec.notation.certificateSecretRef holds no certificate: store the PEM chain, leaf first"
                .into(),
        ));
    };
    let cert = x509_cert::Certificate::from_der(leaf).map_err(|e| {
        bad(format!(
            "spec.notation.certificateSecretRef: the leaf certificate is not X.509 ({e})"
        ))
    })?;
    let validity = cert.tbs_certificate().validity();
    let leaf_thumbprint = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(leaf))
    };
    Ok(Chain {
        not_before: time(validity.not_before),
        not_after: time(validity.not_after),
        leaf_thumbprint,
        der,
    })
}

/// When the chain's signatures are due again: `renew_before` ahead of the leaf's notAfter, or
/// a third of its lifetime ahead when that is shorter (a short-lived certificate would
/// otherwise always be due). The certificate in the Secret is then read again: a renewed one
/// signs every digest anew.
pub fn due(chain: &Chain, renew_before: jiff::SignedDuration) -> Timestamp {
    let lifetime = chain.not_after.duration_since(chain.not_before);
    let lead = renew_before.min(lifetime / 3);
    chain.not_after - lead
}

fn pick<'k>(keys: &'k [Box<dyn Signer>], leaf: &[u8]) -> Result<&'k dyn Signer, Failure> {
    use x509_cert::der::{Decode as _, Encode as _};
    let spki = x509_cert::Certificate::from_der(leaf)
        .ok()
        .and_then(|c| c.tbs_certificate().subject_public_key_info().to_der().ok())
        .unwrap_or_default();
    (keys.iter())
        .find(|k| k.public_key().spki_der().is_ok_and(|s| s == spki))
        .map(|k| k.as_ref())
        .ok_or_else(|| {
            Failure::new(
                reasons::BAD_KEY,
                "spec.notation.certificateSecretRef: the leaf certificate is for none of the \
                 signing keys: give the certificate made for spec.signingKey's key \
                 (`trustkeeper key certificate KEY`)",
            )
        })
}

/// Signs every desired digest in Notation's layout when the spec asks for it.
pub(crate) async fn step(
    req: &crate::request::ReconcileRequest<'_>,
    registry: &RegistryClient,
    image: &ImageRef,
    desired: &BTreeMap<String, Manifest>,
    keys: &[Box<dyn Signer>],
    now: Timestamp,
    dry_run: bool,
) -> Result<(Vec<NotationSigned>, Option<Chain>), Failure> {
    let (spec, previous) = (req.spec, req.previous);
    let chain_pem = req.credentials.notation_chain_pem.as_deref();
    if !crate::cosign::wants(spec, SignatureFormat::Notation) {
        return Ok((Vec::new(), None));
    }
    let Some(pem_bytes) = chain_pem else {
        return Err(Failure::new(
            reasons::INVALID_SPEC,
            "formats lists notation: give spec.notation.certificateSecretRef, the Secret with \
             the signing certificate chain (PEM, leaf first)",
        ));
    };
    let chain = parse_chain(pem_bytes)?;
    if now >= chain.not_after {
        return Err(Failure::new(
            reasons::BAD_KEY,
            format!(
                "spec.notation.certificateSecretRef: the signing certificate ended at {}: \
                 renew it in the Secret (notation verify refuses signatures by an expired \
                 certificate)",
                chain.not_after
            ),
        ));
    }
    let signer = pick(keys, &chain.der[0])?;
    let mut targets: Vec<ManifestDescriptor> = Vec::new();
    for m in desired.values() {
        let digest = format!("sha256:{}", m.sha256);
        let media_type = match &m.media_type {
            Some(t) => t.clone(),
            None => {
                // A pinned tag: Notation signs the media type too, so ask the registry.
                registry
                    .resolve(image, &digest)
                    .await
                    .map_err(Failure::from)?
                    .media_type
            }
        };
        targets.push(ManifestDescriptor {
            digest,
            size: m.size,
            media_type,
        });
    }
    targets.sort_by(|a, b| a.digest.cmp(&b.digest));
    targets.dedup();
    // Signatures of the current leaf that an earlier run verified are not read again.
    let known = (previous.into_iter())
        .flat_map(|p| &p.signatures)
        .filter(|f| f.format == SignatureFormat::Notation && f.signer == chain.leaf_thumbprint)
        .filter_map(|f| f.signature.clone())
        .collect();
    let opts = NotationOptions {
        known,
        dry_run,
        ..NotationOptions::default()
    };
    let der = &trustkeeper_formats::notation::Chain {
        der: chain.der.clone(),
    };
    if let Some(first) = targets.first() {
        registry.learn_referrers_api(image, &first.digest).await;
    }
    let results: Vec<Result<NotationSigned, NotationSignError>> = futures::stream::iter(targets)
        .map(|d| {
            let opts = &opts;
            async move { notation_sign::sign(registry, image, &d, signer, der, opts).await }
        })
        .buffer_unordered(crate::cosign::CONCURRENCY)
        .collect()
        .await;
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        out.push(r.map_err(failure)?);
    }
    out.sort_by(|a, b| a.digest.cmp(&b.digest));
    Ok((out, Some(chain)))
}

/// `status.signatures` entries of the Notation signatures, one per selected tag.
pub(crate) fn signatures(
    desired: &BTreeMap<String, Manifest>,
    signed: &[NotationSigned],
    chain: Option<&Chain>,
) -> Vec<FormatSignature> {
    let Some(chain) = chain else {
        return Vec::new();
    };
    (desired.iter())
        .filter_map(|(tag, m)| {
            let d = format!("sha256:{}", m.sha256);
            let s = signed.iter().find(|s| s.digest == d)?;
            Some(FormatSignature {
                tag: tag.clone(),
                digest: d,
                format: SignatureFormat::Notation,
                signer: chain.leaf_thumbprint.clone(),
                until: Some(Time(chain.not_after)),
                signature: Some(s.signature.clone()),
            })
        })
        .collect()
}

fn failure(e: NotationSignError) -> Failure {
    match e {
        NotationSignError::Registry(e) => {
            let f = Failure::from(e);
            Failure::new(f.reason, format!("notation signature: {}", f.message))
        }
        NotationSignError::Contended { .. } => Failure::new(reasons::CONFLICT, e.to_string()),
        NotationSignError::ReadBack { .. } => Failure::new(reasons::VERIFY_FAILED, e.to_string()),
        other => Failure::new(
            reasons::PUBLISH_FAILED,
            format!("notation signature: {other}"),
        ),
    }
}

/// When to run again for the chain: [`due`], once it is ahead. Inside the window the Secret is
/// read at every poll (a renewed certificate signs again), not in a loop.
pub(crate) fn next_due(
    chain: Option<&Chain>,
    settings: &crate::settings::Settings,
    now: Timestamp,
) -> Option<Timestamp> {
    chain
        .map(|c| due(c, settings.renew_before))
        .filter(|t| *t > now)
}

/// What the Ready message says once the chain is due and the Secret still holds it: signing
/// again with the same certificate would not outlive it, so the way on is to renew it.
pub(crate) fn window_warning(
    chain: Option<&Chain>,
    settings: &crate::settings::Settings,
    now: Timestamp,
) -> Option<String> {
    let chain = chain?;
    (due(chain, settings.renew_before) <= now).then(|| {
        format!(
            "warning: the Notation signing certificate (SHA-256 {}) ends at {}: renew it in \
             spec.notation.certificateSecretRef (its signatures stop verifying then); the next \
             run signs with the renewed one",
            chain.leaf_thumbprint, chain.not_after
        )
    })
}

/// Appends [`window_warning`] to the Ready condition's message.
pub(crate) fn warn_in_ready(
    status: &mut crate::api::SignedImageStatus,
    chain: Option<&Chain>,
    settings: &crate::settings::Settings,
    now: Timestamp,
) {
    if let Some(w) = window_warning(chain, settings, now)
        && let Some(c) = (status.conditions.iter_mut()).find(|c| c.type_ == crate::api::READY)
    {
        c.message.push_str("; ");
        c.message.push_str(&w);
    }
}

/// Events of the Notation signatures pushed in this run.
pub(crate) fn events(signed: &[NotationSigned]) -> Vec<crate::request::EngineEvent> {
    (signed.iter().filter(|s| s.added))
        .map(|s| crate::request::EngineEvent {
            type_: crate::request::EventType::Normal,
            reason: "SignedNotation".into(),
            note: format!(
                "signed {} in Notation (signature {})",
                s.digest, s.signature
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SignedImageSpec;
    use crate::secrets::{MAX_CHAIN_BYTES, MapSecrets, gather};

    fn spec() -> SignedImageSpec {
        serde_saphyr::from_str(
            "image: r.example/app\nsigningKey: {secretRef: {name: k}}\nformats: [notation]\n\
             notation: {certificateSecretRef: {name: c}}\n",
        )
        .unwrap()
    }

    fn source(chain: &[u8]) -> MapSecrets {
        MapSecrets::default()
            .with_secret("ns", "k", None, &[("key.pem", b"k")])
            .with_secret("ns", "c", None, &[("tls.crt", chain)])
    }

    #[tokio::test]
    async fn the_chain_is_bounded_and_must_hold_a_certificate() {
        let big = vec![b'A'; MAX_CHAIN_BYTES + 1];
        let e = gather(&source(&big), "ns", &spec()).await.err().unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains("more than the 65536") && msg.contains("tls.crt"),
            "{msg}"
        );
        let e = gather(
            &source(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
            "ns",
            &spec(),
        )
        .await
        .err()
        .unwrap();
        assert!(e.to_string().contains("no CERTIFICATE block"), "{e}");
        let gone = MapSecrets::default().with_secret("ns", "k", None, &[("key.pem", b"k")]);
        let e = gather(&gone, "ns", &spec()).await.err().unwrap();
        assert!(
            e.to_string().contains("spec.notation.certificateSecretRef"),
            "{e}"
        );
    }

    #[test]
    fn a_certificate_inside_its_window_is_a_warning_and_no_loop() {
        let s: SignedImageSpec = spec();
        let settings = crate::settings::Settings::from_spec(&s).unwrap();
        let t = |x: &str| x.parse::<Timestamp>().unwrap();
        let c = Chain {
            der: vec![],
            leaf_thumbprint: "ab".repeat(32),
            not_before: t("2026-01-01T00:00:00Z"),
            not_after: t("2026-04-01T00:00:00Z"),
        };
        let before = t("2026-02-01T00:00:00Z");
        assert!(window_warning(Some(&c), &settings, before).is_none());
        assert_eq!(
            next_due(Some(&c), &settings, before),
            Some(t("2026-03-02T00:00:00Z"))
        );
        let inside = t("2026-03-15T00:00:00Z");
        let w = window_warning(Some(&c), &settings, inside).unwrap();
        assert!(
            w.contains("renew it in spec.notation.certificateSecretRef"),
            "{w}"
        );
        // inside the window the next run is the poll, not an immediate retry
        assert_eq!(next_due(Some(&c), &settings, inside), None);
    }

    #[test]
    fn a_short_lived_certificate_is_due_a_third_of_its_life_ahead() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let chain = |nb: &str, na: &str| Chain {
            der: vec![],
            leaf_thumbprint: String::new(),
            not_before: t(nb),
            not_after: t(na),
        };
        let long = chain("2026-01-01T00:00:00Z", "2036-01-01T00:00:00Z");
        let lead = jiff::SignedDuration::from_hours(4560);
        assert_eq!(due(&long, lead), t("2036-01-01T00:00:00Z") - lead);
        // cert-manager's default: 90 days, renewed 30 days ahead
        let short = chain("2026-01-01T00:00:00Z", "2026-04-01T00:00:00Z");
        assert_eq!(
            due(&short, lead),
            t("2026-04-01T00:00:00Z") - jiff::SignedDuration::from_hours(24 * 30)
        );
    }
}
