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
    /// The key the cosign signatures are by (see `cosign::signer_of`).
    pub(crate) cosign_key_id: Option<String>,
    pub(crate) notation: Vec<NotationSigned>,
    pub(crate) chain: Option<crate::notation::Chain>,
}

/// Signs every desired digest in each registry format the spec lists; with `dry_run`, only
/// tells which it would sign (`added`) and pushes nothing.
pub(crate) async fn sign(
    req: &ReconcileRequest<'_>,
    registry: &RegistryClient,
    image: &ImageRef,
    desired: &BTreeMap<String, Manifest>,
    keys: &[Box<dyn Signer>],
    now: Timestamp,
    dry_run: bool,
) -> Result<RegistrySigned, Failure> {
    // Both at once: different tags, and each waits out its settle before the read-back.
    let (cosign, notation) = futures::join!(
        crate::cosign::step(req.spec, registry, image, desired, keys, dry_run),
        crate::notation::step(req, registry, image, desired, keys, now, dry_run)
    );
    let (cosign, (notation, chain)) = (cosign?, notation?);
    Ok(RegistrySigned {
        cosign,
        cosign_key_id: crate::cosign::signer_of(keys).map(|k| k.key_id().to_string()),
        notation,
        chain,
    })
}

impl crate::outcome::Done {
    /// What notary's part of an attempt saw and did, before the registry formats' part.
    pub(crate) fn of_notary(
        repo: crate::model::RepoView,
        desired: BTreeMap<String, Manifest>,
        key_ids: Vec<String>,
        trust: trustkeeper_notary::TrustState,
        plan: crate::plan::Plan,
        publishes: u32,
    ) -> Self {
        crate::outcome::Done {
            repo,
            desired,
            key_ids,
            trust,
            plan,
            publishes,
            cosign: Vec::new(),
            cosign_key_id: None,
            notation: Vec::new(),
            chain: None,
        }
    }

    /// The attempt ended by the registry formats' part on the desired digests ([`sign`]).
    pub(crate) async fn signed_in_registry(
        mut self,
        req: &ReconcileRequest<'_>,
        registry: &RegistryClient,
        image: &ImageRef,
        keys: &[Box<dyn Signer>],
        now: Timestamp,
        dry_run: bool,
    ) -> Result<Self, Failure> {
        let r = sign(req, registry, image, &self.desired, keys, now, dry_run).await?;
        (self.cosign, self.cosign_key_id) = (r.cosign, r.cosign_key_id);
        (self.notation, self.chain) = (r.notation, r.chain);
        Ok(self)
    }
}
