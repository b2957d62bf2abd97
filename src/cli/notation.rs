//! `sign --format notation --certificate FILE`: Notary Project signatures (JWS) of the tags'
//! digests, with the key the certificate is for.

use std::collections::BTreeMap;
use std::path::Path;

use futures::StreamExt as _;
use serde::Serialize;

use super::common::{self, CliError};
use super::{Global, Output};
use crate::api::SignedImageSpec;
use crate::engine::model::Manifest;
use crate::engine::{Engine, RunSecrets};
use crate::formats::cosign_sign::CosignOptions;
use crate::formats::notation_sign::{self, NotationSigned};
use crate::notary::Signer;

/// Largest certificate chain file read.
const MAX_CHAIN_BYTES: u64 = 1 << 20;

/// The `CERTIFICATE` blocks of a PEM file, in order (leaf first), as DER.
pub fn read_chain(path: &Path) -> Result<Vec<Vec<u8>>, CliError> {
    let bytes = common::read_file_bounded(
        "certificate",
        path,
        MAX_CHAIN_BYTES,
        "give the PEM certificate chain, leaf first",
    )?;
    let blocks = pem::parse_many(&bytes[..])
        .map_err(|e| CliError::new(format!("{}: not PEM: {e}", path.display())))?;
    let chain: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .collect();
    if chain.is_empty() {
        return Err(CliError::new(format!(
            "{} holds no CERTIFICATE block: give the PEM certificate chain, leaf first",
            path.display()
        )));
    }
    Ok(chain)
}

#[derive(Serialize)]
struct Row {
    tag: String,
    digest: String,
    signature: String,
    added: bool,
}

pub async fn sign(
    g: &Global,
    spec: &SignedImageSpec,
    engine: &Engine,
    credentials: &RunSecrets,
    key_id: Option<&str>,
    pinned: &BTreeMap<String, Manifest>,
    chain: &[Vec<u8>],
) -> Result<(), CliError> {
    let settings =
        crate::engine::Settings::from_spec(spec).map_err(|f| CliError::new(f.message))?;
    let image = &settings.image;
    let registry = engine
        .clients(&settings, credentials)
        .map_err(|f| CliError::new(f.message))?
        .registry;
    let keys = crate::engine::keys::load_keys(credentials)
        .await
        .map_err(|f| CliError::new(f.message))?;
    let signer = pick_for_certificate(keys, key_id, &chain[0])?;
    // tag → descriptor (Notation signs the media type and size too)
    let mut targets = Vec::new();
    let lookups: Vec<(String, String)> = if pinned.is_empty() {
        spec.tags.iter().map(|t| (t.clone(), t.clone())).collect()
    } else {
        (pinned.iter())
            .map(|(t, m)| (t.clone(), format!("sha256:{}", m.sha256)))
            .collect()
    };
    for (tag, reference) in lookups {
        let d = registry
            .resolve(image, &reference)
            .await
            .map_err(|e| CliError::new(format!("notation: {e}")))?;
        targets.push((tag, d));
    }
    let mut unique: Vec<_> = targets.iter().map(|(_, d)| d.clone()).collect();
    unique.sort_by(|a, b| a.digest.cmp(&b.digest));
    unique.dedup();
    let opts = CosignOptions::default();
    let signer_ref: &dyn Signer = signer.as_ref();
    let results: Vec<(
        String,
        Result<NotationSigned, notation_sign::NotationSignError>,
    )> = futures::stream::iter(unique)
        .map(|d| {
            let (registry, opts) = (&registry, &opts);
            async move {
                let r = notation_sign::sign(registry, image, &d, signer_ref, chain, opts).await;
                (d.digest, r)
            }
        })
        .buffer_unordered(crate::engine::cosign::CONCURRENCY)
        .collect()
        .await;
    let mut done = BTreeMap::new();
    let mut failures = Vec::new();
    for (d, r) in results {
        match r {
            Ok(s) => {
                done.insert(d, s);
            }
            Err(e) => failures.push(format!("{d}: {e}")),
        }
    }
    let rows: Vec<Row> = targets
        .iter()
        .filter_map(|(tag, d)| {
            done.get(&d.digest).map(|s| Row {
                tag: tag.clone(),
                digest: d.digest.clone(),
                signature: s.signature.clone(),
                added: s.added,
            })
        })
        .collect();
    if g.output == Output::Json {
        common::print_json(&serde_json::json!({ "notation": rows }));
    } else {
        for r in &rows {
            let what = if r.added { "signed" } else { "unchanged" };
            outln!(
                "{what:9} {}:{} {} in notation (signature {})",
                image.gun(),
                r.tag,
                r.digest,
                r.signature
            );
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CliError::new(format!(
            "notation signing failed for {} digest(s): {}",
            failures.len(),
            failures.join("; ")
        )))
    }
}

/// The key the leaf certificate is for (and the one --key-id names, if given).
fn pick_for_certificate(
    keys: Vec<Box<dyn Signer>>,
    key_id: Option<&str>,
    leaf: &[u8],
) -> Result<Box<dyn Signer>, CliError> {
    use x509_cert::der::{Decode, Encode};
    let cert = x509_cert::Certificate::from_der(leaf)
        .map_err(|e| CliError::new(format!("--certificate: the leaf is not X.509: {e}")))?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| CliError::new(format!("--certificate: {e}")))?;
    keys.into_iter()
        .filter(|k| key_id.is_none_or(|id| k.key_id() == id))
        .find(|k| k.public_key().spki_der().is_ok_and(|s| s == spki))
        .ok_or_else(|| {
            CliError::new(
                "--certificate: its leaf is for none of the signing keys given: give the \
                 certificate made for this key (`trustkeeper key certificate KEY`)",
            )
        })
}
