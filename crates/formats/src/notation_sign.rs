//! Notation signatures in a registry without a referrers API (distribution 2.8, the testbed's):
//! the signature manifest is pushed by digest with its `subject`, and listed in the referrers
//! tag schema's index (`sha256-<hex>`), read-modify-write with the same guards as cosign's tag:
//! a HEAD just before the PUT, a re-read at once and after the settle time, lost entries merged
//! back. Entries of other referrers (cosign 3 bundles, other signers) are kept.
//!
//! A digest whose index lists a signature by our leaf certificate is signed already (one GET).

use std::time::Duration;

use trustkeeper_notary::Signer;
use trustkeeper_registry::manifest::{OCI_INDEX_V1, OCI_MANIFEST_V1, sha256_digest};
use trustkeeper_registry::{ImageRef, ManifestDescriptor, RegistryClient, RegistryError};

use super::cosign_sign::CosignOptions;
use super::notation::{
    EMPTY_CONFIG, MAX_ENVELOPE_BYTES, NotationError, Referrer, ReferrersIndex,
    SIGNATURE_ARTIFACT_TYPE, envelope, referrers_tag, signature_manifest, thumbprints,
    verify_envelope,
};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotationSignError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Notation(#[from] NotationError),
    #[error(
        "{tag}: after {attempts} pushes the referrers index still lacked an entry we wrote \
         (other writers keep replacing it); run sign again"
    )]
    Contended { tag: String, attempts: usize },
    #[error("{what}: read back after the push, {detail}; the signature is not confirmed")]
    ReadBack { what: String, detail: String },
}

/// What [`sign`] did for one digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotationSigned {
    pub digest: String,
    /// The signature manifest's digest (ours, or the one found).
    pub signature: String,
    pub added: bool,
}

async fn read_index(
    client: &RegistryClient,
    image: &ImageRef,
    tag: &str,
) -> Result<(Option<String>, ReferrersIndex), NotationSignError> {
    match client.get_manifest_raw(image, tag).await {
        Ok(raw) => Ok((
            Some(raw.descriptor.digest),
            ReferrersIndex::parse(tag, &raw.bytes)?,
        )),
        Err(RegistryError::NotFound { .. }) => Ok((None, ReferrersIndex::default())),
        Err(e) => Err(e.into()),
    }
}

/// Signs `target` (a manifest of `image`) with `signer` and its certificate `chain` (DER, leaf
/// first).
pub async fn sign(
    client: &RegistryClient,
    image: &ImageRef,
    target: &ManifestDescriptor,
    signer: &dyn Signer,
    chain: &[Vec<u8>],
    opts: &CosignOptions,
) -> Result<NotationSigned, NotationSignError> {
    let tag = referrers_tag(&target.digest);
    let leaf = thumbprints(chain).into_iter().next().unwrap_or_default();
    let mut ours: Option<Referrer> = None;
    let mut written: Option<ReferrersIndex> = None;
    let mut settled = false;
    let mut pushes = 0;
    for _ in 0..opts.max_reads.max(1) {
        let (seen, current) = read_index(client, image, &tag).await?;
        let lost = written.as_ref().is_some_and(|w| !current.contains_all(w));
        match &ours {
            None => {
                if let Some(found) = current.signed_by(&leaf).first() {
                    return Ok(NotationSigned {
                        digest: target.digest.clone(),
                        signature: found.digest.clone(),
                        added: false,
                    });
                }
            }
            Some(entry) if !lost && current.manifests.iter().any(|m| m.digest == entry.digest) => {
                if settled {
                    read_back(client, image, target, entry, signer).await?;
                    return Ok(NotationSigned {
                        digest: target.digest.clone(),
                        signature: entry.digest.clone(),
                        added: true,
                    });
                }
                tokio::time::sleep(opts.settle).await;
                settled = true;
                continue;
            }
            Some(_) => {}
        }
        let entry = match &ours {
            Some(e) => e.clone(),
            None => {
                let now = jiff::Timestamp::now();
                let env = envelope(signer, target, chain, now)?;
                let (manifest, annotations) = signature_manifest(target, &env, chain, now);
                client.push_blob(image, &env).await?;
                client.push_blob(image, EMPTY_CONFIG).await?;
                let digest = sha256_digest(&manifest);
                client
                    .put_manifest(image, &digest, OCI_MANIFEST_V1, &manifest)
                    .await?;
                let e = Referrer {
                    media_type: OCI_MANIFEST_V1.into(),
                    digest,
                    size: manifest.len() as u64,
                    annotations,
                    artifact_type: Some(SIGNATURE_ARTIFACT_TYPE.into()),
                    other: Default::default(),
                };
                ours = Some(e.clone());
                e
            }
        };
        let mut next = match &written {
            Some(w) => current.union(w),
            None => current,
        };
        next = next.union(&ReferrersIndex {
            manifests: vec![entry],
        });
        if pushes > 0 {
            let jitter = rand::random_range(50..400);
            tokio::time::sleep(Duration::from_millis(jitter)).await;
        }
        let now_at = match client.resolve(image, &tag).await {
            Ok(d) => Some(d.digest),
            Err(RegistryError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        if now_at != seen {
            continue;
        }
        client
            .put_manifest(image, &tag, OCI_INDEX_V1, &next.to_bytes())
            .await?;
        pushes += 1;
        written = Some(next);
        settled = false;
    }
    Err(NotationSignError::Contended {
        tag,
        attempts: pushes,
    })
}

/// The signature manifest and its envelope as served must verify under our key.
async fn read_back(
    client: &RegistryClient,
    image: &ImageRef,
    target: &ManifestDescriptor,
    entry: &Referrer,
    signer: &dyn Signer,
) -> Result<(), NotationSignError> {
    let what = format!("{}@{}", image.repository_only(), entry.digest);
    let fail = |detail: String| NotationSignError::ReadBack {
        what: what.clone(),
        detail,
    };
    let raw = client
        .get_manifest_raw(image, &entry.digest)
        .await
        .map_err(|e| fail(e.to_string()))?;
    #[derive(serde::Deserialize)]
    struct Layer {
        digest: String,
    }
    #[derive(serde::Deserialize)]
    struct M {
        layers: Vec<Layer>,
    }
    let m: M = serde_json::from_slice(&raw.bytes).map_err(|e| fail(e.to_string()))?;
    let layer = m
        .layers
        .first()
        .ok_or_else(|| fail("no envelope layer".into()))?;
    let env = client
        .get_blob(image, &layer.digest, MAX_ENVELOPE_BYTES)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let spki = signer
        .public_key()
        .spki_der()
        .map_err(|e| fail(e.to_string()))?;
    if !verify_envelope(&env, &target.digest, &spki) {
        return Err(fail("the envelope does not verify under our key".into()));
    }
    Ok(())
}
