//! Notation signatures in a registry: find ours, push a new one, register it as a referrer, and
//! check what was pushed.
//!
//! - **Steady state**: the referrers of the digest are listed (the referrers API, else the
//!   `sha256-<hex>` tag); a Notation signature whose leaf thumbprint is our certificate's is
//!   read and verified (signature, target descriptor, not expired): then nothing is pushed.
//! - **Push**: the envelope blob, the empty config, the signature manifest (by digest). A
//!   registry with the referrers API indexes it by its `subject`; otherwise the tag index is
//!   read-modify-written.
//! - **Read-modify-write races** (no conditional PUT in distribution): a HEAD just before the
//!   PUT checks that the tag is what we read (else read and merge again); after the PUT the tag
//!   is read at once and again after [`NotationOptions::settle`]; entries we wrote (ours and
//!   the ones we had read) that are gone are merged back and the index pushed again.
//! - **Read back**: the signature manifest and the envelope are fetched again and verified
//!   before success is reported.

use std::time::Duration;

use trustkeeper_notary::keys::{SignatureAlgorithm, Signer};
use trustkeeper_registry::manifest::{
    ManifestDescriptor, OCI_INDEX_V1, OCI_MANIFEST_V1, sha256_digest,
};
use trustkeeper_registry::{ImageRef, RegistryClient, RegistryError};

use super::notation::{
    Chain, Descriptor, EMPTY_CONFIG, MAX_ENVELOPE_BYTES, NotationError, ReferrersIndex, envelope,
    envelope_layer, referrers_tag, signature_manifest, verify_envelope,
};

/// Why a Notation signature was not made (or not confirmed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotationSignError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Notation(#[from] NotationError),
    #[error(
        "key {key_id} is {algorithm:?}: Notation signatures are made with ECDSA P-256 keys here \
         (as `notary key generate` makes); give such a key"
    )]
    UnsupportedKey {
        key_id: String,
        algorithm: SignatureAlgorithm,
    },
    #[error(
        "{tag}: after {attempts} pushes the referrers index still lacked an entry we wrote \
         (other writers keep replacing it); run sign again"
    )]
    Contended { tag: String, attempts: usize },
    #[error("{what}: read back after the push, {detail}; the signature is not confirmed")]
    ReadBack { what: String, detail: String },
}

/// How the signer registers and checks referrers.
#[derive(Clone, Debug)]
pub struct NotationOptions {
    /// Wait before the second read after a push.
    pub settle: Duration,
    /// Reads of the referrers index in all, before [`NotationSignError::Contended`].
    pub max_reads: usize,
    /// `io.cncf.notary.expiry` this long after signing (none: the certificate's validity).
    pub expiry: Option<Duration>,
    /// A signature of ours whose own expiry is within this (or a third of
    /// [`NotationOptions::expiry`], if shorter) is made again.
    pub renew_before: Duration,
    /// Digests of signature manifests of ours verified by an earlier run (the caller keeps
    /// them, e.g. in a status). Content-addressed, so one listed under our certificate in the
    /// referrers is taken as it was verified, without reading it again; only without an own
    /// expiry, which would have to be read.
    pub known: Vec<String>,
    /// Read only: say whether a signature would be added (`added`), push nothing.
    pub dry_run: bool,
}

impl Default for NotationOptions {
    fn default() -> Self {
        NotationOptions {
            settle: Duration::from_millis(1500),
            max_reads: 12,
            expiry: None,
            renew_before: Duration::from_secs(7 * 86_400),
            known: Vec::new(),
            dry_run: false,
        }
    }
}

/// Where the registry keeps the referrers of a digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferrersStore {
    /// `GET /v2/<repo>/referrers/<digest>`.
    Api,
    /// The `sha256-<hex>` tag (referrers tag schema).
    Tag,
}

/// What [`sign`] did for one digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotationSigned {
    pub digest: String,
    /// Whether a signature was pushed now (false: a valid one of ours was there).
    pub added: bool,
    /// The digest of our signature manifest (empty in a dry run that would add one).
    pub signature: String,
    /// Notation signatures among the digest's referrers afterwards, ours included.
    pub signatures: usize,
    pub store: ReferrersStore,
}

/// The referrers of `digest`: where, the tag's digest (tag schema), and the index.
pub async fn referrers(
    client: &RegistryClient,
    image: &ImageRef,
    digest: &str,
) -> Result<(ReferrersStore, Option<String>, ReferrersIndex), NotationSignError> {
    read_referrers(client, image, digest, None).await
}

/// [`referrers`], asking only the store `known` when it is known (a re-read in one run).
async fn read_referrers(
    client: &RegistryClient,
    image: &ImageRef,
    digest: &str,
    known: Option<ReferrersStore>,
) -> Result<(ReferrersStore, Option<String>, ReferrersIndex), NotationSignError> {
    if known != Some(ReferrersStore::Tag) {
        match client.get_referrers(image, digest).await? {
            Some(body) => return Ok((ReferrersStore::Api, None, ReferrersIndex::parse(&body)?)),
            None if known == Some(ReferrersStore::Api) => {
                return Err(NotationSignError::ReadBack {
                    what: image.repository_only().to_string(),
                    detail: "the registry's referrers API went away during the run".into(),
                });
            }
            None => {}
        }
    }
    let tag = referrers_tag(digest);
    match client.get_manifest_raw(image, &tag).await {
        Ok(raw) => Ok((
            ReferrersStore::Tag,
            Some(raw.descriptor.digest),
            ReferrersIndex::parse(&raw.bytes)?,
        )),
        Err(RegistryError::NotFound { .. }) => {
            Ok((ReferrersStore::Tag, None, ReferrersIndex::default()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Reads and verifies the Notation signature manifest `sig` about `target`.
pub async fn read_signature(
    client: &RegistryClient,
    image: &ImageRef,
    sig: &str,
    target: &Descriptor,
) -> Result<super::notation::Verified, NotationSignError> {
    let raw = client.get_manifest_raw(image, sig).await?;
    let layer = envelope_layer(&raw.bytes, &target.digest)?;
    if layer.size > MAX_ENVELOPE_BYTES as u64 {
        return Err(NotationError::Malformed {
            what: format!("signature {sig}"),
            detail: format!("its envelope is {} bytes, over the limit", layer.size),
        }
        .into());
    }
    let bytes = client
        .get_blob(image, &layer.digest, MAX_ENVELOPE_BYTES)
        .await?;
    let v = verify_envelope(&bytes)?;
    if v.target != *target {
        return Err(NotationError::Malformed {
            what: format!("signature {sig}"),
            detail: format!(
                "it signs {} ({}, {} bytes), not {} ({}, {} bytes)",
                v.target.digest,
                v.target.media_type,
                v.target.size,
                target.digest,
                target.media_type,
                target.size
            ),
        }
        .into());
    }
    Ok(v)
}

/// Whether a verified signature of ours still stands at `now`: its certificate has not ended,
/// and its own expiry (if any) is more than the renewal lead away. A certificate that nears
/// its end is not a reason to sign again with it (the new signature would end with it too):
/// a renewed certificate has another thumbprint and is signed with anew.
fn still_good(v: &super::notation::Verified, now: i64, opts: &NotationOptions) -> bool {
    if v.chain.leaf_info().not_after_unix <= now {
        return false;
    }
    let Some(expiry) = v.expiry.as_deref() else {
        return true;
    };
    let Ok(e) = expiry.parse::<jiff::Timestamp>() else {
        return false;
    };
    // Within a third of its own lifetime, or the lead, whichever is shorter.
    let lead = match opts.expiry {
        Some(life) => opts.renew_before.min(life / 3),
        None => opts.renew_before,
    };
    e.as_second() > now + lead.as_secs() as i64
}

/// Signs `target` of `image` in the Notation format with `signer` and `chain` (leaf first,
/// the leaf certifying the signer's key), keeping every other referrer.
pub async fn sign(
    client: &RegistryClient,
    image: &ImageRef,
    target: &ManifestDescriptor,
    signer: &dyn Signer,
    chain: &Chain,
    opts: &NotationOptions,
) -> Result<NotationSigned, NotationSignError> {
    let digest = target.digest.clone();
    trustkeeper_registry::reference::validate_digest(&digest)
        .map_err(|r| RegistryError::bad_reference(&digest, r))?;
    if signer.algorithm() != SignatureAlgorithm::EcdsaP256Sha256 {
        return Err(NotationSignError::UnsupportedKey {
            key_id: signer.key_id().to_string(),
            algorithm: signer.algorithm(),
        });
    }
    let spki = signer
        .public_key()
        .spki_der()
        .map_err(|e| NotationError::Signing(e.to_string()))?;
    chain.check_key(&spki)?;
    let subject = Descriptor {
        media_type: target.media_type.clone(),
        digest: digest.clone(),
        size: target.size,
    };
    let leaf = chain.leaf_info();
    let now = jiff::Timestamp::now();
    if leaf.not_after_unix <= now.as_second() {
        return Err(NotationError::Chain(format!("leaf expired at {}", leaf.not_after)).into());
    }

    let (store, mut seen, current) = referrers(client, image, &digest).await?;
    for e in current.signatures_by(&leaf.thumbprint) {
        if opts.expiry.is_none() && opts.known.contains(&e.digest) {
            return Ok(NotationSigned {
                digest,
                added: false,
                signature: e.digest.clone(),
                signatures: count(&current),
                store,
            });
        }
        match read_signature(client, image, &e.digest, &subject).await {
            Ok(v) if still_good(&v, now.as_second(), opts) => {
                return Ok(NotationSigned {
                    digest,
                    added: false,
                    signature: e.digest.clone(),
                    signatures: count(&current),
                    store,
                });
            }
            Ok(_) => {}
            Err(err) => {
                tracing::info!(signature = %e.digest, %err, "a signature listed with our certificate does not verify; signing again")
            }
        }
    }

    if opts.dry_run {
        return Ok(NotationSigned {
            digest,
            added: true,
            signature: String::new(),
            signatures: count(&current) + 1,
            store,
        });
    }
    let expiry = opts
        .expiry
        .map(|d| now + jiff::SignedDuration::from_secs(d.as_secs() as i64));
    let env = envelope(&subject, chain, now, expiry, |input| {
        signer.sign(input).map_err(|e| e.to_string())
    })?;
    let manifest = signature_manifest(&env, &subject, chain, now);
    // Independent uploads: one round trip chain instead of two.
    futures::try_join!(
        client.push_blob(image, &env),
        client.push_blob(image, EMPTY_CONFIG)
    )?;
    let sig = sha256_digest(&manifest);
    client
        .put_manifest(image, &sig, OCI_MANIFEST_V1, &manifest)
        .await?;

    let mut index = current;
    let mut settled = false;
    let mut pushes = 0;
    let mut written: Option<ReferrersIndex> = None;
    let tag = referrers_tag(&digest);
    for turn in 0..opts.max_reads.max(1) {
        if turn > 0 {
            let (_, d, i) = read_referrers(client, image, &digest, Some(store)).await?;
            seen = d;
            index = i;
        }
        let lost = written.as_ref().is_some_and(|w| !index.contains_all(w));
        if index.contains(&sig) && !lost {
            if settled || (store == ReferrersStore::Api && turn > 0) {
                read_signature(client, image, &sig, &subject)
                    .await
                    .map_err(|e| NotationSignError::ReadBack {
                        what: format!("signature {sig}"),
                        detail: e.to_string(),
                    })?;
                return Ok(NotationSigned {
                    digest,
                    added: true,
                    signature: sig,
                    signatures: count(&index),
                    store,
                });
            }
            tokio::time::sleep(opts.settle).await;
            settled = true;
            continue;
        }
        if store == ReferrersStore::Api {
            // The registry indexes the subject itself, perhaps a moment later.
            tokio::time::sleep(opts.settle / 4).await;
            continue;
        }
        if lost {
            tracing::info!(%tag, "a concurrent writer replaced the referrers index; merging and pushing again");
        }
        let next = match &written {
            Some(w) => index.union(w),
            None => index.clone(),
        }
        .with_signature(&manifest, chain);
        if pushes > 0 {
            // Two writers that lost each other's entry must not retry in lockstep.
            let jitter = rand::random_range(50..400);
            tokio::time::sleep(Duration::from_millis(jitter)).await;
        }
        // Narrows the race to one round trip: a writer that replaced the index since our read
        // is merged on the next turn instead of overwritten.
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

fn count(index: &ReferrersIndex) -> usize {
    index
        .entries
        .iter()
        .filter(|e| e.artifact_type.as_deref() == Some(super::notation::ARTIFACT_TYPE))
        .count()
}
