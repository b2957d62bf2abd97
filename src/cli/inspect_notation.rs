//! `inspect --format notation`: the Notation signatures among a tag's referrers (the referrers
//! API, else the `sha256-<hex>` tag), each checked against its own leaf certificate and the
//! tag's manifest descriptor. Which certificates to trust is the verifier's trust store.

use futures::StreamExt as _;
use serde::Serialize;

use super::common::{self, CliError};
use super::{Global, Output};
use crate::formats::notation::{ARTIFACT_TYPE, Descriptor};
use crate::formats::notation_sign::{self, ReferrersStore};
use crate::registry::{ImageRef, ManifestDescriptor, RegistryClient};

/// Signatures read and checked at most (an index may list thousands of referrers).
const MAX_SHOWN: usize = 100;

#[derive(Serialize)]
pub(super) struct Signature {
    /// The signature manifest's digest.
    pub(super) manifest: String,
    /// Whether the envelope verifies under its leaf and signs this tag's manifest descriptor.
    pub(super) valid: bool,
    /// Why not, when it is not.
    problem: Option<String>,
    pub(super) certificate_subject: Option<String>,
    certificate_thumbprint: Option<String>,
    pub(super) certificate_not_after: Option<String>,
    signing_time: Option<String>,
    expiry: Option<String>,
}

#[derive(Serialize)]
pub(super) struct TagSignatures {
    tag: String,
    digest: String,
    referrers: &'static str,
    pub(super) signatures: Vec<Signature>,
    /// Notation signatures listed beyond the ones read.
    not_shown: usize,
}

/// `inspect IMAGE:TAG --format notation`.
pub async fn inspect(g: &Global, image: &ImageRef) -> Result<(), CliError> {
    let t = super::inspect_formats::one_tag(g, image, "notation").await?;
    let out = read(&t.registry, &t.image, &t.tag, &t.descriptor).await?;
    if g.output == Output::Json {
        common::print_json(&out);
        return Ok(());
    }
    print(&t.gun, &out);
    Ok(())
}

/// The Notation signatures among the referrers of `d` (the manifest `tag` names now), each
/// checked against its own leaf and `d`.
pub(super) async fn read(
    registry: &RegistryClient,
    image: &ImageRef,
    tag: &str,
    d: &ManifestDescriptor,
) -> Result<TagSignatures, CliError> {
    let target = Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
    };
    let (store, _, index) = notation_sign::referrers(registry, image, &d.digest)
        .await
        .map_err(|e| CliError::new(e.to_string()))?;
    let listed: Vec<_> = index
        .entries
        .iter()
        .filter(|e| e.artifact_type.as_deref() == Some(ARTIFACT_TYPE))
        .collect();
    let not_shown = listed.len().saturating_sub(MAX_SHOWN);
    let target = &target;
    let rows: Vec<Signature> = futures::stream::iter(listed.into_iter().take(MAX_SHOWN))
        .map(|e| async move {
            match notation_sign::read_signature(registry, image, &e.digest, target).await {
                Ok(v) => {
                    let leaf = v.chain.leaf_info();
                    Signature {
                        manifest: e.digest.clone(),
                        valid: true,
                        problem: None,
                        certificate_subject: Some(leaf.subject),
                        certificate_thumbprint: Some(leaf.thumbprint),
                        certificate_not_after: Some(leaf.not_after),
                        signing_time: Some(v.signing_time),
                        expiry: v.expiry,
                    }
                }
                Err(err) => Signature {
                    manifest: e.digest.clone(),
                    valid: false,
                    problem: Some(err.to_string()),
                    certificate_subject: None,
                    certificate_thumbprint: e.thumbprints.first().cloned(),
                    certificate_not_after: None,
                    signing_time: None,
                    expiry: None,
                },
            }
        })
        .buffered(8)
        .collect()
        .await;
    Ok(TagSignatures {
        tag: tag.to_string(),
        digest: d.digest.clone(),
        referrers: match store {
            ReferrersStore::Api => "api",
            ReferrersStore::Tag => "tag",
        },
        signatures: rows,
        not_shown,
    })
}

/// The text report of one tag.
pub(super) fn print(gun: &str, out: &TagSignatures) {
    outln!(
        "{gun}:{} {} notation signatures ({}): {}",
        out.tag,
        out.digest,
        match out.referrers {
            "api" => "referrers API".to_string(),
            _ => format!("referrers tag {}", out.digest.replacen(':', "-", 1)),
        },
        out.signatures.len() + out.not_shown
    );
    for s in &out.signatures {
        outln!("  {} {}", s.manifest, s.state());
    }
    if out.not_shown > 0 {
        outln!("  ... and {} more not read", out.not_shown);
    }
}

impl Signature {
    /// Who signed and until when, or why it is not valid.
    pub(super) fn state(&self) -> String {
        if !self.valid {
            return format!("INVALID: {}", self.problem.as_deref().unwrap_or("-"));
        }
        format!(
            "signed {} by {} (SHA-256 {}, certificate until {}{})",
            self.signing_time.as_deref().unwrap_or("-"),
            self.certificate_subject.as_deref().unwrap_or("-"),
            self.certificate_thumbprint.as_deref().unwrap_or("-"),
            self.certificate_not_after.as_deref().unwrap_or("-"),
            self.expiry
                .as_deref()
                .map(|e| format!(", signature until {e}"))
                .unwrap_or_default()
        )
    }
}
