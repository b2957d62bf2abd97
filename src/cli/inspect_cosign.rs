//! `inspect --format cosign`: the cosign signatures on a tag's `sha256-<hex>.sig` tag, and
//! whether each verifies under the public keys given with `--key`.

use std::path::PathBuf;

use futures::StreamExt as _;
use serde::Serialize;

use super::common::{self, CliError};
use super::{Global, Output};
use crate::formats::cosign::{self, MAX_PAYLOAD_BYTES, payload_digest, verify_p256_der};
use crate::formats::cosign_sign;
use crate::notary::PublicKey;
use crate::registry::{ImageRef, RegistryClient};

/// Public keys given: more than this many is a mistake, not a key set.
const MAX_KEYS: usize = 64;

#[derive(Serialize)]
pub(super) struct Signature {
    /// The payload blob's digest.
    pub(super) layer: String,
    /// Whether the payload names this tag's digest (a signature copied from elsewhere does not).
    pub(super) signs_digest: bool,
    /// The `--key` files it verifies under (empty: none given, or none matches).
    pub(super) verified_by: Vec<String>,
    /// Other signature material on the layer (certificate, bundle), by annotation name.
    other: Vec<String>,
}

#[derive(Serialize)]
pub(super) struct TagSignatures {
    tag: String,
    digest: String,
    signature_tag: String,
    pub(super) signatures: Vec<Signature>,
}

/// `inspect IMAGE:TAG --format cosign [--key PUB]...`.
pub async fn inspect(g: &Global, image: &ImageRef, keys: &[PathBuf]) -> Result<(), CliError> {
    let spkis = public_keys(keys)?;
    let t = super::inspect_formats::one_tag(g, image, "cosign").await?;
    let out = read(&t.registry, &t.image, &t.tag, &t.descriptor.digest, &spkis).await?;
    if g.output == Output::Json {
        common::print_json(&out);
        return Ok(());
    }
    print(&t.gun, &out, !spkis.is_empty());
    Ok(())
}

/// The `--key` files as (name, SubjectPublicKeyInfo DER).
pub(super) fn public_keys(keys: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>, CliError> {
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
    Ok(spkis)
}

/// The cosign signatures on `digest` (the manifest `tag` names now), each checked against
/// `spkis`.
pub(super) async fn read(
    registry: &RegistryClient,
    image: &ImageRef,
    tag: &str,
    digest: &str,
    spkis: &[(String, Vec<u8>)],
) -> Result<TagSignatures, CliError> {
    let m = cosign_sign::read(registry, image, digest)
        .await
        .map_err(|e| CliError::new(e.to_string()))?;
    let layers: Vec<_> = m.layers.iter().filter(|l| l.is_simple_signing()).collect();
    let rows: Vec<Signature> = futures::stream::iter(layers)
        .map(|l| async move {
            let payload = registry
                .get_blob(image, &l.digest, MAX_PAYLOAD_BYTES)
                .await
                .ok();
            let signs_digest = payload
                .as_deref()
                .and_then(payload_digest)
                .is_some_and(|p| p == digest);
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
        })
        .buffered(8)
        .collect()
        .await;
    Ok(TagSignatures {
        tag: tag.to_string(),
        digest: digest.to_string(),
        signature_tag: cosign::signature_tag(digest),
        signatures: rows,
    })
}

/// The text report of one tag; `checked`: keys were given.
pub(super) fn print(gun: &str, out: &TagSignatures, checked: bool) {
    outln!(
        "{gun}:{} {} cosign signatures on {}: {}",
        out.tag,
        out.digest,
        out.signature_tag,
        out.signatures.len()
    );
    for s in &out.signatures {
        outln!("  {} {}", s.layer, s.state(checked));
    }
}

impl Signature {
    /// Whether it signs the digest and under which keys it verifies, with other material.
    pub(super) fn state(&self, checked: bool) -> String {
        let state = if !self.signs_digest {
            "does not sign this digest".to_string()
        } else if self.verified_by.is_empty() {
            if checked {
                "verifies under no --key".to_string()
            } else {
                "not checked (no --key)".to_string()
            }
        } else {
            format!("verifies under {}", self.verified_by.join(", "))
        };
        if self.other.is_empty() {
            state
        } else {
            format!("{state} [{}]", self.other.join(", "))
        }
    }
}
