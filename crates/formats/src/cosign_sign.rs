//! cosign signatures in a registry: read the `.sig` tag, append ours, push, and check.
//!
//! **Append, never replace**: the tag's manifest is read, every layer in it is kept, ours is
//! added, and the whole is pushed. A layer with our payload that verifies under our key means
//! the digest is signed already: nothing is pushed (steady state: one manifest GET).
//!
//! **Read-modify-write races**: distribution has no conditional PUT, so a concurrent writer
//! (another trustkeeper, `cosign sign`) that read the tag before our push overwrites it
//! without our layer, or we overwrite theirs. After a push the tag is read again at once and
//! once more after [`CosignOptions::settle`] (longer than the read-to-write time of a signer);
//! if any layer we wrote (ours or one we had read) is missing, the tag is merged with what we
//! wrote and pushed again. Just before our PUT a HEAD checks that the tag is still what we
//! read (else we read and merge again), so that we overwrite another writer only if it writes
//! within that one round trip. What is pushed is read back and verified before success.

use std::time::Duration;

use trustkeeper_notary::keys::{SignatureAlgorithm, Signer, ecdsa_fixed_to_der};
use trustkeeper_registry::manifest::sha256_digest;
use trustkeeper_registry::{ImageRef, RegistryClient, RegistryError};

use super::cosign::{
    LayoutError, MAX_PAYLOAD_BYTES, SignatureManifest, payload, signature_tag, verify_p256_der,
};

/// Why a cosign signature was not made (or not confirmed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CosignError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// cosign's key-based verification takes ECDSA P-256 keys (as notary's delegation keys are).
    #[error(
        "key {key_id} is {algorithm:?}: the cosign format signs with ECDSA P-256 keys only (as \
         `notary key generate` and `cosign generate-key-pair` make); give such a key"
    )]
    UnsupportedKey {
        key_id: String,
        algorithm: SignatureAlgorithm,
    },
    #[error("the signing key failed to sign the cosign payload: {0}")]
    Signing(String),
    /// Concurrent writers kept replacing the tag.
    #[error(
        "{tag}: after {attempts} pushes the signature tag still lacked a signature we wrote \
         (other writers keep replacing it); run sign again"
    )]
    Contended { tag: String, attempts: usize },
    /// What was pushed is not what the registry serves back.
    #[error("{tag}: read back after the push, {detail}; the signature is not confirmed")]
    ReadBack { tag: String, detail: String },
}

/// How hard a signer checks that its push survived concurrent writers.
#[derive(Clone, Debug)]
pub struct CosignOptions {
    /// Wait before the second read after a push.
    pub settle: Duration,
    /// Reads of the tag in all, before [`CosignError::Contended`].
    pub max_reads: usize,
    /// Read only: say whether a signature would be added (`added`), push nothing.
    pub dry_run: bool,
}

impl Default for CosignOptions {
    fn default() -> Self {
        CosignOptions {
            settle: Duration::from_millis(1500),
            max_reads: 12,
            dry_run: false,
        }
    }
}

/// What [`sign`] did for one digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignSigned {
    /// The manifest digest signed.
    pub digest: String,
    /// `sha256-<hex>.sig`.
    pub tag: String,
    /// Whether our layer was pushed now (false: it was there and verified); in a dry run,
    /// whether it would be.
    pub added: bool,
    /// Signatures (layers) on the tag afterwards, ours included.
    pub signatures: usize,
}

/// The SubjectPublicKeyInfo of a signer cosign can verify, or why not.
pub fn signer_spki(signer: &dyn Signer) -> Result<Vec<u8>, CosignError> {
    if signer.algorithm() != SignatureAlgorithm::EcdsaP256Sha256 {
        return Err(CosignError::UnsupportedKey {
            key_id: signer.key_id().to_string(),
            algorithm: signer.algorithm(),
        });
    }
    signer
        .public_key()
        .spki_der()
        .map_err(|e| CosignError::Signing(e.to_string()))
}

/// The signature manifest of `digest` (empty when the tag does not exist).
pub async fn read(
    client: &RegistryClient,
    image: &ImageRef,
    digest: &str,
) -> Result<SignatureManifest, CosignError> {
    Ok(read_seen(client, image, digest).await?.1)
}

/// The signature manifest with the digest of its bytes (`None`: no tag yet).
async fn read_seen(
    client: &RegistryClient,
    image: &ImageRef,
    digest: &str,
) -> Result<(Option<String>, SignatureManifest), CosignError> {
    let tag = signature_tag(digest);
    match client.get_manifest_raw(image, &tag).await {
        Ok(raw) => Ok((
            Some(raw.descriptor.digest),
            SignatureManifest::parse(&tag, &raw.bytes)?,
        )),
        Err(RegistryError::NotFound { .. }) => Ok((None, SignatureManifest::default())),
        Err(e) => Err(e.into()),
    }
}

/// What the tag points at now (one HEAD), `None` when it does not exist.
async fn tag_digest(
    client: &RegistryClient,
    image: &ImageRef,
    tag: &str,
) -> Result<Option<String>, CosignError> {
    match client.resolve(image, tag).await {
        Ok(d) => Ok(Some(d.digest)),
        Err(RegistryError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether the tag of `digest` holds a signature of our payload that verifies under `spki`.
pub async fn is_signed(
    client: &RegistryClient,
    image: &ImageRef,
    digest: &str,
    spki: &[u8],
) -> Result<bool, CosignError> {
    let p = payload(image, digest);
    let m = read(client, image, digest).await?;
    Ok(m.find(&p, |s| verify_p256_der(spki, &p, s)).is_some())
}

/// Signs `digest` of `image` in the cosign layout with `signer`, keeping every other signature.
pub async fn sign(
    client: &RegistryClient,
    image: &ImageRef,
    digest: &str,
    signer: &dyn Signer,
    opts: &CosignOptions,
) -> Result<CosignSigned, CosignError> {
    trustkeeper_registry::reference::validate_digest(digest)
        .map_err(|r| RegistryError::bad_reference(digest, r))?;
    let spki = signer_spki(signer)?;
    let tag = signature_tag(digest);
    let p = payload(image, digest);
    let verify = |s: &[u8]| verify_p256_der(&spki, &p, s);
    let mut der: Option<Vec<u8>> = None;
    let mut written: Option<SignatureManifest> = None;
    let mut settled = false;
    let mut pushes = 0;
    let mut payload_pushed = false;
    for _ in 0..opts.max_reads.max(1) {
        let (seen, current) = read_seen(client, image, digest).await?;
        let lost = written.as_ref().is_some_and(|w| !current.contains_all(w));
        let ours = current.find(&p, verify).is_some();
        if ours && !lost {
            if written.is_none() {
                return Ok(CosignSigned {
                    digest: digest.to_string(),
                    tag,
                    added: false,
                    signatures: current.layers.len(),
                });
            }
            if settled {
                read_back(client, image, &tag, &p).await?;
                return Ok(CosignSigned {
                    digest: digest.to_string(),
                    tag,
                    added: true,
                    signatures: current.layers.len(),
                });
            }
            tokio::time::sleep(opts.settle).await;
            settled = true;
            continue;
        }
        if opts.dry_run {
            return Ok(CosignSigned {
                digest: digest.to_string(),
                tag,
                added: true,
                signatures: current.layers.len() + 1,
            });
        }
        if lost {
            tracing::info!(%tag, "a concurrent writer replaced the cosign signature tag; merging and pushing again");
        }
        let mut next = match &written {
            Some(w) => current.union(w),
            None => current,
        };
        if next.find(&p, verify).is_none() {
            let sig = match &der {
                Some(d) => d.clone(),
                None => {
                    let raw = signer
                        .sign(&p)
                        .map_err(|e| CosignError::Signing(e.to_string()))?;
                    let d = ecdsa_fixed_to_der(&raw);
                    der = Some(d.clone());
                    d
                }
            };
            next = next.with_layer(&p, &sig);
        }
        if pushes > 0 {
            // Two writers that lost each other's layer must not retry in lockstep.
            let jitter = rand::random_range(50..400);
            tokio::time::sleep(Duration::from_millis(jitter)).await;
        }
        let config = next.config();
        // Independent uploads: one round trip chain instead of two.
        let payload_push = async {
            if !payload_pushed {
                client.push_blob(image, &p).await?;
            }
            Ok::<_, RegistryError>(())
        };
        futures::try_join!(payload_push, client.push_blob(image, &config))?;
        payload_pushed = true;
        // Narrows the race to one round trip: a writer that replaced the tag since our read
        // is merged on the next turn instead of overwritten.
        if tag_digest(client, image, &tag).await? != seen {
            continue;
        }
        client
            .put_manifest(image, &tag, &next.media_type, &next.to_bytes(&config))
            .await?;
        pushes += 1;
        written = Some(next);
        settled = false;
    }
    Err(CosignError::Contended {
        tag,
        attempts: pushes,
    })
}

/// Our payload blob as the registry serves it must be the bytes signed.
async fn read_back(
    client: &RegistryClient,
    image: &ImageRef,
    tag: &str,
    payload: &[u8],
) -> Result<(), CosignError> {
    let digest = sha256_digest(payload);
    let got = client
        .get_blob(image, &digest, MAX_PAYLOAD_BYTES)
        .await
        .map_err(|e| CosignError::ReadBack {
            tag: tag.to_string(),
            detail: format!("the payload blob {digest}: {e}"),
        })?;
    if got != payload {
        return Err(CosignError::ReadBack {
            tag: tag.to_string(),
            detail: format!("the payload blob {digest} differs from what was signed"),
        });
    }
    Ok(())
}
