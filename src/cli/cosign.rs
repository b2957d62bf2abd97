//! `sign --format cosign`: the tags' digests signed in cosign's `sha256-<hex>.sig` layout with
//! the same key, no notary server involved.

use std::collections::BTreeMap;

use futures::StreamExt as _;
use serde::Serialize;

use super::common::{self, CliError};
use super::{Global, Output};
use crate::api::SignedImageSpec;
use crate::engine::model::Manifest;
use crate::engine::{Engine, RunSecrets};
use crate::formats::cosign_sign::{self, CosignOptions, CosignSigned};
use crate::notary::Signer;

/// One tag's cosign outcome, as `-o json` prints it.
#[derive(Serialize)]
struct Row {
    tag: String,
    digest: String,
    signature_tag: String,
    added: bool,
    signatures: usize,
    key_id: String,
}

/// Signs every tag's digest (or the pinned ones) in the cosign format.
pub async fn sign(
    g: &Global,
    spec: &SignedImageSpec,
    engine: &Engine,
    credentials: &RunSecrets,
    key_id: Option<&str>,
    pinned: &BTreeMap<String, Manifest>,
    dry_run: bool,
) -> Result<(), CliError> {
    let settings =
        crate::engine::Settings::from_spec(spec).map_err(|f| CliError::new(f.message))?;
    let image = &settings.image;
    let registry = engine
        .clients(&settings, credentials)
        .map_err(|f| CliError::new(f.message))?
        .registry;
    let signer = pick_signer(
        crate::engine::keys::load_keys(credentials)
            .await
            .map_err(|f| CliError::new(f.message))?,
        key_id,
    )?;
    cosign_sign::signer_spki(signer.as_ref()).map_err(|e| CliError::new(e.to_string()))?;

    // tag → digest: pinned, else what the registry serves now
    let mut digests: Vec<(String, String)> = Vec::new();
    if pinned.is_empty() {
        for (tag, r) in registry.resolve_many(image, &spec.tags).await {
            let d = r.map_err(|e| CliError::new(format!("cosign: {e}")))?;
            digests.push((tag, d.digest));
        }
    } else {
        for (tag, m) in pinned {
            digests.push((tag.clone(), format!("sha256:{}", m.sha256)));
        }
    }
    let mut unique: Vec<String> = digests.iter().map(|(_, d)| d.clone()).collect();
    unique.sort();
    unique.dedup();
    let opts = CosignOptions {
        dry_run,
        ..Default::default()
    };
    let signer_ref: &dyn Signer = signer.as_ref();
    let results: Vec<(String, Result<CosignSigned, cosign_sign::CosignError>)> =
        futures::stream::iter(unique)
            .map(|d| {
                let (registry, opts) = (&registry, &opts);
                async move {
                    let r = cosign_sign::sign(registry, image, &d, signer_ref, opts).await;
                    (d, r)
                }
            })
            .buffer_unordered(crate::engine::cosign::CONCURRENCY)
            .collect()
            .await;
    let (by_digest, failures) = super::common::split_by_digest(results);
    let rows: Vec<Row> = digests
        .iter()
        .filter_map(|(tag, d)| {
            by_digest.get(d).map(|s| Row {
                tag: tag.clone(),
                digest: d.clone(),
                signature_tag: s.tag.clone(),
                added: s.added,
                signatures: s.signatures,
                key_id: signer.key_id().to_string(),
            })
        })
        .collect();
    if g.output == Output::Json {
        common::print_json(&serde_json::json!({ "cosign": rows, "dry_run": dry_run }));
    } else {
        let repo = image.gun();
        for r in &rows {
            let what = common::signed_word(r.added, dry_run);
            outln!(
                "{what:9} {repo}:{} {} in cosign ({} signature{} on {})",
                r.tag,
                r.digest,
                r.signatures,
                if r.signatures == 1 { "" } else { "s" },
                r.signature_tag
            );
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CliError::new(format!(
            "cosign signing failed for {} digest(s): {}",
            failures.len(),
            failures.join("; ")
        )))
    }
}

/// The key to sign with: the one `--key-id` names, else the only (non-root) key of the PEM.
fn pick_signer(
    keys: Vec<Box<dyn Signer>>,
    key_id: Option<&str>,
) -> Result<Box<dyn Signer>, CliError> {
    let count = keys.len();
    if let Some(id) = key_id {
        return keys
            .into_iter()
            .find(|k| k.key_id() == id)
            .ok_or_else(|| CliError::new(format!("the signing key PEM holds no key {id}")));
    }
    if count == 1 {
        return Ok(keys.into_iter().next().expect("one key"));
    }
    Err(CliError::new(format!(
        "the signing key PEM holds {count} keys: say which signs for cosign with --key-id"
    )))
}
