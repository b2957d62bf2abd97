//! `key generate`: a new signer key, as `docker trust key generate` made one, in the file
//! layout the notary client imports.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use secrecy::{ExposeSecret as _, SecretString};
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

/// TRUSTKEEPER_KEY_PASSPHRASE, else `--passphrase-file`, else a prompt (twice) on a terminal.
fn new_passphrase(g: &Global, what: &str) -> Result<SecretString, CliError> {
    let trimmed = |t: &str| SecretString::from(t.trim_end_matches(['\r', '\n']).to_string());
    if let Some(v) = std::env::var_os("TRUSTKEEPER_KEY_PASSPHRASE") {
        let v = Zeroizing::new(v.into_encoded_bytes());
        let t = std::str::from_utf8(&v)
            .map_err(|_| CliError::new("TRUSTKEEPER_KEY_PASSPHRASE is not UTF-8"))?;
        return Ok(trimmed(t));
    }
    if let Some(f) = &g.passphrase_file {
        let bytes = common::read_file_bounded(
            "passphrase file",
            f,
            common::MAX_PASSPHRASE_FILE_BYTES,
            "give a file holding only the passphrase",
        )?;
        let t = std::str::from_utf8(&bytes)
            .map_err(|_| CliError::new("the passphrase file is not UTF-8"))?;
        return Ok(trimmed(t));
    }
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(CliError::new(
            "no passphrase for the new key: give it in TRUSTKEEPER_KEY_PASSPHRASE or \
             --passphrase-file (the key is always written encrypted)",
        ));
    }
    let ask = |prompt: String| {
        rpassword::prompt_password(prompt)
            .map(SecretString::from)
            .map_err(|e| CliError::new(format!("cannot read the passphrase: {e}")))
    };
    let first = ask(format!("Passphrase for the new key {what}: "))?;
    let again = ask("Repeat it: ".into())?;
    if first.expose_secret() != again.expose_secret() {
        return Err(CliError::new("the passphrases differ: nothing was written"));
    }
    Ok(first)
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
