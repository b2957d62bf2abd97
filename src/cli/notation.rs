//! `key certificate` and `sign --format notation`: Notary Project signatures with the same key.

use std::path::PathBuf;

use clap::Args;

use super::Global;
use super::common::{self, CliError};
use crate::formats::notation::{self, Chain};
use crate::notary::SigningKey;

#[derive(Args, Debug)]
pub struct CertificateArgs {
    /// The key: a PEM written by `notary key export` or `notary key generate -o` (ECDSA P-256).
    #[arg(long, value_name = "PATH")]
    pub key: PathBuf,
    /// The key ID to certify when the PEM holds more than one key.
    #[arg(long, value_name = "ID")]
    pub key_id: Option<String>,
    /// The certificate's subject (and issuer), an RFC 4514 name. For a Notation trust policy
    /// to name it in `trustedIdentities` (`x509.subject: ...`) it must hold C, ST and O, e.g.
    /// `CN=builder,O=Example,ST=WA,C=US`.
    #[arg(long, default_value = "CN=trustkeeper", value_name = "NAME")]
    pub subject: String,
    /// Days the certificate is valid (Notation refuses signatures made outside them).
    #[arg(long, default_value_t = 365, value_name = "N")]
    pub days: u32,
    /// Where to write the certificate (PEM) [default: standard output]. (`-o` is the global
    /// output format.)
    #[arg(long = "out", value_name = "PATH")]
    pub out_file: Option<PathBuf>,
}

/// The key of a PEM that `key_id` names, or its only key.
pub(super) fn pick_key(
    keys: Vec<SigningKey>,
    key_id: Option<&str>,
    what: &str,
) -> Result<SigningKey, CliError> {
    let count = keys.len();
    if let Some(id) = key_id {
        return keys
            .into_iter()
            .find(|k| k.key_id() == id)
            .ok_or_else(|| CliError::new(format!("the key PEM holds no key {id}")));
    }
    match count {
        1 => Ok(keys.into_iter().next().expect("one key")),
        0 => Err(CliError::new("the key PEM holds no private key")),
        n => Err(CliError::new(format!(
            "the key PEM holds {n} keys: say which {what} with --key-id"
        ))),
    }
}

pub fn certificate(g: &Global, a: CertificateArgs) -> Result<(), CliError> {
    let creds = common::credentials(g, Some(&a.key))?;
    let keys = SigningKey::from_pem(&creds.signing_key_pem, creds.passphrase.as_ref())
        .map_err(|e| CliError::new(e.to_string()))?;
    let key = pick_key(keys, a.key_id.as_deref(), "to certify")?;
    let der =
        notation::self_signed_certificate(&key, &a.subject, a.days, std::time::SystemTime::now())
            .map_err(|e| CliError::new(format!("key {}: {e}", key.key_id())))?;
    let chain = Chain::from_der(vec![der.clone()]).map_err(|e| CliError::new(e.to_string()))?;
    let text = pem::encode(&pem::Pem::new("CERTIFICATE", der));
    match &a.out_file {
        Some(path) => {
            std::fs::write(path, &text)
                .map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))?;
            let info = chain.leaf_info();
            eprintln!(
                "wrote {}: subject {}, SHA-256 {}, valid until {}",
                path.display(),
                info.subject,
                info.thumbprint,
                info.not_after
            );
        }
        None => out!("{text}"),
    }
    Ok(())
}

/// One tag's Notation outcome, as `-o json` prints it.
#[derive(serde::Serialize)]
struct Row {
    tag: String,
    digest: String,
    added: bool,
    signature: String,
    signatures: usize,
    referrers: &'static str,
    certificate_subject: String,
    certificate_thumbprint: String,
    certificate_not_after: String,
}

/// Reads `--certificate` (bounded before it is read).
pub(super) fn read_chain(path: &std::path::Path) -> Result<Chain, CliError> {
    use std::io::Read as _;
    let f = std::fs::File::open(path)
        .map_err(|e| CliError::new(format!("--certificate {}: {e}", path.display())))?;
    let mut text = Vec::new();
    f.take(notation::MAX_CHAIN_PEM_BYTES as u64 + 1)
        .read_to_end(&mut text)
        .map_err(|e| CliError::new(format!("--certificate {}: {e}", path.display())))?;
    Chain::from_pem(&text)
        .map_err(|e| CliError::new(format!("--certificate {}: {e}", path.display())))
}

/// `sign`'s flags for the Notation format.
pub struct NotationFlags<'a> {
    pub certificate: &'a std::path::Path,
    pub signature_expiry: Option<std::time::Duration>,
    /// Read only: say which digests would be signed, push nothing.
    pub dry_run: bool,
}

/// Signs every tag's digest (or the pinned one) in the Notation format.
pub async fn sign(
    g: &Global,
    spec: &crate::api::SignedImageSpec,
    engine: &crate::engine::Engine,
    credentials: &crate::engine::RunSecrets,
    key_id: Option<&str>,
    notation_args: NotationFlags<'_>,
    pinned: &std::collections::BTreeMap<String, crate::engine::model::Manifest>,
) -> Result<(), CliError> {
    let NotationFlags {
        certificate,
        signature_expiry,
        dry_run,
    } = notation_args;
    use crate::formats::notation_sign::{self, NotationOptions, ReferrersStore};
    use futures::StreamExt as _;

    let chain = read_chain(certificate)?;
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
    let leaf_spki = chain.leaf_spki();
    let signer = match key_id {
        Some(id) => keys
            .into_iter()
            .find(|k| k.key_id() == id)
            .ok_or_else(|| CliError::new(format!("the signing key PEM holds no key {id}")))?,
        // The key the certificate certifies.
        None => keys
            .into_iter()
            .find(|k| k.public_key().spki_der().is_ok_and(|s| s == leaf_spki))
            .ok_or_else(|| {
                CliError::new(format!(
                    "--certificate {}: its leaf certifies none of the keys in the signing key \
                     PEM; make one for the key with `trustkeeper key certificate --key KEY --out \
                     cert.pem`",
                    certificate.display()
                ))
            })?,
    };
    let spki = signer
        .public_key()
        .spki_der()
        .map_err(|e| CliError::new(e.to_string()))?;
    chain
        .check_key(&spki)
        .map_err(|e| CliError::new(format!("--certificate {}: {e}", certificate.display())))?;

    // tag → descriptor: what the registry serves for the tag, or for the pinned digest
    let mut targets: Vec<(String, crate::registry::manifest::ManifestDescriptor)> = Vec::new();
    if pinned.is_empty() {
        for (tag, r) in registry.resolve_many(image, &spec.tags).await {
            targets.push((tag, r.map_err(|e| CliError::new(format!("notation: {e}")))?));
        }
    } else {
        for (tag, m) in pinned {
            let d = format!("sha256:{}", m.sha256);
            let r = registry
                .resolve(image, &d)
                .await
                .map_err(|e| CliError::new(format!("notation: {e}")))?;
            targets.push((tag.clone(), r));
        }
    }
    let mut unique: Vec<_> = targets.iter().map(|(_, d)| d.clone()).collect();
    unique.sort_by(|a, b| a.digest.cmp(&b.digest));
    unique.dedup();
    let opts = NotationOptions {
        expiry: signature_expiry,
        dry_run,
        ..Default::default()
    };
    let leaf = chain.leaf_info();
    let left = leaf.not_after_unix - jiff::Timestamp::now().as_second();
    if left < 30 * 86_400 {
        // Signing with it still helps until then; after, notation refuses every signature
        // it made.
        eprintln!(
            "warning: --certificate {}: the certificate ({}) ends at {}: renew it (e.g. \
             `trustkeeper key certificate`) and sign again before then",
            certificate.display(),
            leaf.subject,
            leaf.not_after
        );
    }
    let signer_ref: &dyn crate::notary::Signer = signer.as_ref();
    if let Some(first) = unique.first() {
        registry.learn_referrers_api(image, &first.digest).await;
    }
    let results: Vec<_> = futures::stream::iter(unique)
        .map(|d| {
            let (registry, opts, chain) = (&registry, &opts, &chain);
            async move {
                let r = notation_sign::sign(registry, image, &d, signer_ref, chain, opts).await;
                (d.digest, r)
            }
        })
        // Most of a digest's time is the settle wait after its push: the registry client's
        // own permits bound the requests, so the waits overlap freely.
        .buffer_unordered(crate::engine::cosign::CONCURRENCY)
        .collect()
        .await;
    let (by_digest, failures) = super::common::split_by_digest(results);
    let rows: Vec<Row> = targets
        .iter()
        .filter_map(|(tag, d)| {
            by_digest.get(&d.digest).map(|s| Row {
                tag: tag.clone(),
                digest: d.digest.clone(),
                added: s.added,
                signature: s.signature.clone(),
                signatures: s.signatures,
                referrers: match s.store {
                    ReferrersStore::Api => "api",
                    ReferrersStore::Tag => "tag",
                },
                certificate_subject: leaf.subject.clone(),
                certificate_thumbprint: leaf.thumbprint.clone(),
                certificate_not_after: leaf.not_after.clone(),
            })
        })
        .collect();
    if g.output == super::Output::Json {
        common::print_json(&serde_json::json!({ "notation": rows, "dry_run": dry_run }));
    } else {
        let repo = image.gun();
        for r in &rows {
            let what = super::common::signed_word(r.added, dry_run);
            outln!(
                "{what:9} {repo}:{} {} in notation ({} signature{}, {}; certificate {} until {})",
                r.tag,
                r.digest,
                r.signatures,
                if r.signatures == 1 { "" } else { "s" },
                r.signature,
                r.certificate_subject,
                r.certificate_not_after
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
