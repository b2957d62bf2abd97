//! The formats signed in the registry (cosign, Notation), after notary's part of a run or, for
//! a SignedImage without notary, instead of it: one place that runs both steps.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::failure::Failure;
use crate::model::Manifest;
use crate::request::ReconcileRequest;
use trustkeeper_formats::cosign_sign::CosignSigned;
use trustkeeper_formats::notation_sign::NotationSigned;
use trustkeeper_notary::Signer;
use trustkeeper_registry::{ImageRef, RegistryClient};

/// What the registry formats' steps signed (empty for a format the spec does not list).
pub(crate) struct RegistrySigned {
    pub(crate) cosign: Vec<CosignSigned>,
    pub(crate) notation: Vec<NotationSigned>,
    pub(crate) chain: Option<crate::notation::Chain>,
}

/// Signs every desired digest in each registry format the spec lists.
pub(crate) async fn sign(
    req: &ReconcileRequest<'_>,
    registry: &RegistryClient,
    image: &ImageRef,
    desired: &BTreeMap<String, Manifest>,
    keys: &[Box<dyn Signer>],
    now: Timestamp,
) -> Result<RegistrySigned, Failure> {
    let cosign = crate::cosign::step(req.spec, registry, image, desired, keys).await?;
    let (notation, chain) = crate::notation::step(req, registry, image, desired, keys, now).await?;
    Ok(RegistrySigned {
        cosign,
        notation,
        chain,
    })
}
