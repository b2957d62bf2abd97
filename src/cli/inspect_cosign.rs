//! `inspect --format cosign`: the cosign signatures on a tag's `sha256-<hex>.sig` tag, and
//! whether each verifies under the public keys given with `--key`.

use std::path::PathBuf;

use futures::StreamExt as _;
use serde::Serialize;

use super::common::{self, CliError};
use super::{Global, Output};
use crate::engine::Settings;
use crate::formats::cosign::{self, MAX_PAYLOAD_BYTES, payload_digest, verify_p256_der};
use crate::formats::cosign_sign;
use crate::notary::PublicKey;
use crate::registry::ImageRef;

/// Public keys given: more than this many is a mistake, not a key set.
const MAX_KEYS: usize = 64;

#[derive(Serialize)]
struct Signature {
    /// The payload blob's digest.
    layer: String,
    /// Whether the payload names this tag's digest (a signature copied from elsewhere does not).
    signs_digest: bool,
    /// The `--key` files it verifies under (empty: none given, or none matches).
    verified_by: Vec<String>,
    /// Other signature material on the layer (certificate, bundle), by annotation name.
    other: Vec<String>,
}

#[derive(Serialize)]
struct TagSignatures {
    tag: String,
    digest: String,
    signature_tag: String,
    signatures: Vec<Signature>,
}

/// `inspect IMAGE:TAG --format cosign [--key PUB]...`.
pub async fn inspect(g: &Global, image: &ImageRef, keys: &[PathBuf]) -> Result<(), CliError> {
    let tag = image.tag().ok_or_else(|| {
        CliError::new("inspect --format cosign needs IMAGE:TAG (the tag whose signatures to show)")
    })?;
    if keys.len() > MAX_KEYS {
        return Err(CliError::new(format!(
            "{} --key files: at most {MAX_KEYS}",
            keys.len()
        )));
    }
    let mut spkis = Vec::new();
    for k in keys {
        let pem = common::read_file_bounded(
            "public key",
            k,
            64 << 10,
            "give a PEM PUBLIC KEY (cosign.pub, `trustkeeper key public`)",
        )?;
        let public = PublicKey::from_pem(&pem).map_err(|e| {
            CliError::new(format!(
                "{}: {e}; give a PEM PUBLIC KEY (cosign.pub)",
                k.display()
            ))
        })?;
        let spki = public
            .spki_der()
            .map_err(|e| CliError::new(format!("{}: {e}", k.display())))?;
        spkis.push((k.display().to_string(), spki));
    }
    let repo = image.repository_only();
    let spec = common::spec(g, &repo.gun(), vec![], vec![]);
    let settings = Settings::from_spec(&spec)?;
    let creds = common::credentials(g, None)?;
    let engine = common::engine(g)?;
    let registry = engine.clients(&settings, &creds)?.registry;
    let image = &settings.image;
    let d = registry
        .resolve(image, tag)
        .await
        .map_err(|e| CliError::new(e.to_string()))?;
    let m = cosign_sign::read(&registry, image, &d.digest)
        .await
        .map_err(|e| CliError::new(e.to_string()))?;
    let layers: Vec<_> = m.layers.iter().filter(|l| l.is_simple_signing()).collect();
    let rows: Vec<Signature> = futures::stream::iter(layers)
        .map(|l| {
            let (registry, spkis, digest) = (&registry, &spkis, &d.digest);
            async move {
                let payload = registry
                    .get_blob(image, &l.digest, MAX_PAYLOAD_BYTES)
                    .await
                    .ok();
                let signs_digest = payload
                    .as_deref()
                    .and_then(payload_digest)
                    .is_some_and(|p| &p == digest);
                let verified_by = match (&payload, l.signature()) {
                    (Some(p), Some(sig)) if signs_digest => spkis
                        .iter()
                        .filter(|(_, spki)| verify_p256_der(spki, p, &sig))
                        .map(|(name, _)| name.clone())
                        .collect(),
                    _ => Vec::new(),
                };
                Signature {
                    layer: l.digest.clone(),
                    signs_digest,
                    verified_by,
                    other: l
                        .annotations
                        .keys()
                        .filter(|k| k.as_str() != cosign::SIGNATURE_ANNOTATION)
                        .cloned()
                        .collect(),
                }
            }
        })
        .buffered(8)
        .collect()
        .await;
    let out = TagSignatures {
        tag: tag.to_string(),
        digest: d.digest.clone(),
        signature_tag: cosign::signature_tag(&d.digest),
        signatures: rows,
    };
    if g.output == Output::Json {
        common::print_json(&out);
        return Ok(());
    }
    outln!(
        "{}:{} {} cosign signatures on {}: {}",
        repo.gun(),
        out.tag,
        out.digest,
        out.signature_tag,
        out.signatures.len()
    );
    for s in &out.signatures {
        let state = if !s.signs_digest {
            "does not sign this digest".to_string()
        } else if s.verified_by.is_empty() {
            if spkis.is_empty() {
                "not checked (no --key)".to_string()
            } else {
                "verifies under no --key".to_string()
            }
        } else {
            format!("verifies under {}", s.verified_by.join(", "))
        };
        let other = if s.other.is_empty() {
            String::new()
        } else {
            format!(" [{}]", s.other.join(", "))
        };
        outln!("  {} {state}{other}", s.layer);
    }
    Ok(())
}
