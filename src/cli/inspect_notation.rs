//! `inspect --format notation`: the Notation signatures among a tag's referrers (the referrers
//! API, else the `sha256-<hex>` tag), each checked against its own leaf certificate and the
//! tag's manifest descriptor. Which certificates to trust is the verifier's trust store.

use futures::StreamExt as _;
use serde::Serialize;

use super::common::{self, CliError};
use super::{Global, Output};
use crate::engine::Settings;
use crate::formats::notation::{ARTIFACT_TYPE, Descriptor};
use crate::formats::notation_sign::{self, ReferrersStore};
use crate::registry::ImageRef;

/// Signatures read and checked at most (an index may list thousands of referrers).
const MAX_SHOWN: usize = 100;

#[derive(Serialize)]
struct Signature {
    /// The signature manifest's digest.
    manifest: String,
    /// Whether the envelope verifies under its leaf and signs this tag's manifest descriptor.
    valid: bool,
    /// Why not, when it is not.
    problem: Option<String>,
    certificate_subject: Option<String>,
    certificate_thumbprint: Option<String>,
    certificate_not_after: Option<String>,
    signing_time: Option<String>,
    expiry: Option<String>,
}

#[derive(Serialize)]
struct TagSignatures {
    tag: String,
    digest: String,
    referrers: &'static str,
    signatures: Vec<Signature>,
    /// Notation signatures listed beyond the ones read.
    not_shown: usize,
}

/// `inspect IMAGE:TAG --format notation`.
pub async fn inspect(g: &Global, image: &ImageRef) -> Result<(), CliError> {
    let tag = image.tag().ok_or_else(|| {
        CliError::new(
            "inspect --format notation needs IMAGE:TAG (the tag whose signatures to show)",
        )
    })?;
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
    let target = Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
    };
    let (store, _, index) = notation_sign::referrers(&registry, image, &d.digest)
        .await
        .map_err(|e| CliError::new(e.to_string()))?;
    let listed: Vec<_> = index
        .entries
        .iter()
        .filter(|e| e.artifact_type.as_deref() == Some(ARTIFACT_TYPE))
        .collect();
    let not_shown = listed.len().saturating_sub(MAX_SHOWN);
    let rows: Vec<Signature> = futures::stream::iter(listed.into_iter().take(MAX_SHOWN))
        .map(|e| {
            let (registry, target) = (&registry, &target);
            async move {
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
            }
        })
        .buffered(8)
        .collect()
        .await;
    let out = TagSignatures {
        tag: tag.to_string(),
        digest: d.digest.clone(),
        referrers: match store {
            ReferrersStore::Api => "api",
            ReferrersStore::Tag => "tag",
        },
        signatures: rows,
        not_shown,
    };
    if g.output == Output::Json {
        common::print_json(&out);
        return Ok(());
    }
    outln!(
        "{}:{} {} notation signatures ({}): {}",
        repo.gun(),
        out.tag,
        out.digest,
        match store {
            ReferrersStore::Api => "referrers API".to_string(),
            ReferrersStore::Tag => format!("referrers tag {}", d.digest.replacen(':', "-", 1)),
        },
        out.signatures.len() + not_shown
    );
    for s in &out.signatures {
        if s.valid {
            outln!(
                "  {} signed {} by {} (SHA-256 {}, certificate until {}{})",
                s.manifest,
                s.signing_time.as_deref().unwrap_or("-"),
                s.certificate_subject.as_deref().unwrap_or("-"),
                s.certificate_thumbprint.as_deref().unwrap_or("-"),
                s.certificate_not_after.as_deref().unwrap_or("-"),
                s.expiry
                    .as_deref()
                    .map(|e| format!(", signature until {e}"))
                    .unwrap_or_default()
            );
        } else {
            outln!(
                "  {} INVALID: {}",
                s.manifest,
                s.problem.as_deref().unwrap_or("-")
            );
        }
    }
    if not_shown > 0 {
        outln!("  ... and {not_shown} more not read");
    }
    Ok(())
}
