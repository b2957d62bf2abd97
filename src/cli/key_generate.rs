//! `key generate`: a new signer key, as `docker trust key generate` made one, in the file
//! layout the notary client imports.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use secrecy::SecretString;
use serde::Serialize;
use zeroize::Zeroizing;

use super::common::{self, CliError};
use super::{Global, Output};
use crate::notary::SigningKey;

#[derive(Serialize)]
struct Generated {
    key_id: String,
    role: String,
    private_key: String,
    public_key: String,
}

/// `--passphrase-file`, else TRUSTKEEPER_KEY_PASSPHRASE, else a prompt (twice) on a terminal.
fn new_passphrase(g: &Global, what: &str) -> Result<SecretString, CliError> {
    let file = g.passphrase_file.as_deref();
    let vars = ["TRUSTKEEPER_KEY_PASSPHRASE"];
    super::init::passphrase_from(file, &vars, &format!("the new key {what}"), true)?.ok_or_else(
        || {
            CliError::new(
                "no passphrase for the new key: give it in TRUSTKEEPER_KEY_PASSPHRASE or \
                 --passphrase-file (the key is always written encrypted)",
            )
        },
    )
}

/// Creates `path` with `mode`, refusing to replace an existing file.
fn create_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CliError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => CliError::new(format!(
                "{} exists: nothing was written; choose another name or --dir",
                path.display()
            )),
            _ => CliError::new(format!("cannot create {}: {e}", path.display())),
        })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))
}

pub fn generate(g: &Global, name: &str, dir: &Path) -> Result<(), CliError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        return Err(CliError::new(format!(
            "key name {name:?}: lower-case letters, digits, - and _, starting with a letter or \
             digit, at most 64 (docker's rule for signer names)"
        ))
        .with_code(2));
    }
    let key_path = dir.join(format!("{name}.key"));
    let pub_path = dir.join(format!("{name}.pub"));
    for p in [&key_path, &pub_path] {
        if p.exists() {
            return Err(CliError::new(format!(
                "{} exists: nothing was written; choose another name or --dir",
                p.display()
            )));
        }
    }
    let pass = new_passphrase(g, &key_path.display().to_string())?;
    let role = format!("targets/{name}");
    let key = SigningKey::generate_ecdsa(&role, "").map_err(|e| CliError::new(e.to_string()))?;
    let pem = Zeroizing::new(
        key.export_pem(&pass)
            .map_err(|e| CliError::new(e.to_string()))?,
    );
    let public = pem::encode_config(
        &pem::Pem::new("PUBLIC KEY", key.public().public.clone()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    create_new(&key_path, pem.as_bytes(), 0o600)?;
    if let Err(e) = create_new(&pub_path, public.as_bytes(), 0o644) {
        // Not half a pair: the private key without its public file is removed again.
        let _ = std::fs::remove_file(&key_path);
        return Err(e);
    }
    let out = Generated {
        key_id: key.key_id().to_string(),
        role,
        private_key: key_path.display().to_string(),
        public_key: pub_path.display().to_string(),
    };
    if g.output == Output::Json {
        common::print_json(&out);
    } else {
        outln!("{}", out.key_id);
        eprintln!(
            "wrote {} (encrypted, 0600) and {}; add the signer with `trustkeeper signer add \
             {name} IMAGE --key {} --repo-key FILE`",
            out.private_key, out.public_key, out.public_key
        );
    }
    Ok(())
}
