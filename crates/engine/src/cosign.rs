//! The cosign format of a run (`spec.formats` lists `cosign`): once the notary part succeeded,
//! every desired digest is signed in cosign's `sha256-<hex>.sig` layout with the run's
//! ECDSA P-256 key, appending to what is there; a digest already signed by that key costs one
//! manifest GET.

use std::collections::BTreeMap;

use futures::StreamExt as _;

use super::failure::Failure;
use super::model::Manifest;
use crate::api::{SignatureFormat, SignedImageSpec, reasons};
use trustkeeper_formats::cosign_sign::{self, CosignError, CosignOptions, CosignSigned};
use trustkeeper_notary::{SignatureAlgorithm, Signer};
use trustkeeper_registry::{ImageRef, RegistryClient};

/// Digests signed at once. Most of a signature's time is the wait before its second read
/// (no request, no permit held); the requests themselves stay within the registry client's
/// own limit of requests in flight.
pub const CONCURRENCY: usize = 64;

/// Whether the spec asks for `format`.
pub fn wants(spec: &SignedImageSpec, format: SignatureFormat) -> bool {
    spec.formats.contains(&format)
}

/// Signs every desired digest in cosign's layout when the spec asks for it; nothing otherwise.
/// The key cosign signs with: the first ECDSA P-256 one (cosign's key-based signatures are).
pub(crate) fn signer_of(keys: &[Box<dyn Signer>]) -> Option<&dyn Signer> {
    (keys.iter())
        .find(|k| k.algorithm() == SignatureAlgorithm::EcdsaP256Sha256)
        .map(|k| k.as_ref())
}

pub(crate) async fn step(
    spec: &SignedImageSpec,
    registry: &RegistryClient,
    image: &ImageRef,
    desired: &BTreeMap<String, Manifest>,
    keys: &[Box<dyn Signer>],
    dry_run: bool,
) -> Result<Vec<CosignSigned>, Failure> {
    if !wants(spec, SignatureFormat::Cosign) {
        return Ok(Vec::new());
    }
    let Some(key) = signer_of(keys) else {
        return Err(Failure::new(
            reasons::BAD_KEY,
            "formats lists cosign, whose key-based signatures are ECDSA P-256: the signing key \
             is not (give a key `notary key generate` made, or drop cosign from formats)",
        ));
    };
    let mut digests: Vec<String> = (desired.values())
        .map(|m| format!("sha256:{}", m.sha256))
        .collect();
    digests.sort();
    digests.dedup();
    let opts = CosignOptions {
        dry_run,
        ..CosignOptions::default()
    };
    let signer: &dyn Signer = key;
    let results: Vec<Result<CosignSigned, CosignError>> = futures::stream::iter(digests)
        .map(|d| {
            let opts = &opts;
            async move { cosign_sign::sign(registry, image, &d, signer, opts).await }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        out.push(r.map_err(failure)?);
    }
    out.sort_by(|a, b| a.digest.cmp(&b.digest));
    Ok(out)
}

fn failure(e: CosignError) -> Failure {
    match e {
        CosignError::Registry(e) => {
            let f = Failure::from(e);
            Failure::new(f.reason, format!("cosign signature: {}", f.message))
        }
        CosignError::UnsupportedKey { .. } => Failure::new(reasons::BAD_KEY, e.to_string()),
        CosignError::Contended { .. } => Failure::new(reasons::CONFLICT, e.to_string()),
        CosignError::ReadBack { .. } => Failure::new(reasons::VERIFY_FAILED, e.to_string()),
        other => Failure::new(
            reasons::PUBLISH_FAILED,
            format!("cosign signature: {other}"),
        ),
    }
}
