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
    /// The certificate's subject (and issuer), an RFC 4514 name; a Notation trust policy's
    /// `trustedIdentities` can name it as `x509.subject: ...`.
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
