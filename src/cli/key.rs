//! `key inspect`: key IDs, type and headers of an exported key, so nobody guesses a key ID.

use std::path::PathBuf;

use clap::Subcommand;
use serde::Serialize;

use super::common::{self, CliError};
use super::{Global, Output};
use crate::notary::SigningKey;

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Show the key ID, type and `role`/`gun`/`path` headers of each key in a PEM file.
    Inspect {
        /// A PEM file written by `notary key export` or `notary key generate -o`.
        file: PathBuf,
    },
    /// Print the public key (PEM `PUBLIC KEY`) of each private key in a PEM file: what
    /// `cosign verify --key` takes to check the signatures `sign --format cosign` makes.
    Public {
        /// A PEM file written by `notary key export` or `notary key generate -o`.
        file: PathBuf,
    },
    /// Make a self-signed signing certificate for an ECDSA P-256 key, as Notation's rules want
    /// a leaf (keyUsage digitalSignature, extKeyUsage codeSigning, CA:FALSE): what `sign
    /// --format notation --certificate` takes and a `notation verify` trust store of type `ca`
    /// holds. Only the certificate is written; the key is not.
    Certificate(super::notation::CertificateArgs),
    /// Make a new ECDSA P-256 key as DIR/NAME.key, encrypted as `notary key export` writes it
    /// (passphrase from TRUSTKEEPER_KEY_PASSPHRASE, --passphrase-file or a prompt), and its
    /// public key as DIR/NAME.pub (what `signer add --key` takes); prints the key ID.
    Generate {
        /// The signer's name: the key is for targets/NAME.
        name: String,
        /// Where to write the two files [default: the current directory].
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Replace the repository (targets) key in one root-signed publish, every target kept
    /// (`notary key rotate GUN targets` without the window between its steps).
    Rotate(super::init::KeyRotateArgs),
    /// Copy a key out of a docker/notary trust directory into a file, with its `path:`
    /// (key ID) header, as `notary key export` does; the key stays encrypted.
    Export {
        /// The key's ID (its file name in TRUST_DIR/private).
        #[arg(long = "key-id", value_name = "ID")]
        key_id: String,
        /// The trust directory [default: $DOCKER_CONFIG/trust, else ~/.docker/trust].
        #[arg(long, value_name = "TRUST_DIR")]
        dir: Option<PathBuf>,
        /// The file to write (0600; an existing file is never replaced).
        #[arg(long = "output-file", value_name = "FILE")]
        file: PathBuf,
    },
    /// List the keys of a docker/notary trust directory with their roles and repositories
    /// (`notary key list`); nothing is decrypted.
    List {
        /// The trust directory [default: $DOCKER_CONFIG/trust, else ~/.docker/trust].
        #[arg(long, value_name = "TRUST_DIR")]
        dir: Option<PathBuf>,
    },
    /// Copy the keys of a file (`notary key export` or `key generate` output) into a
    /// docker/notary trust directory as TRUST_DIR/private/<key ID>.key, as `notary key import`
    /// does: the Go client and docker then use them.
    Import {
        /// The PEM file.
        file: PathBuf,
        /// The trust directory [default: $DOCKER_CONFIG/trust, else ~/.docker/trust].
        #[arg(long, value_name = "TRUST_DIR")]
        dir: Option<PathBuf>,
        /// The key's role when the file has no `role:` header.
        #[arg(long)]
        role: Option<String>,
        /// The repository of a targets or snapshot key when the file has no `gun:` header.
        #[arg(long)]
        gun: Option<String>,
    },
}

#[derive(Serialize)]
struct KeyInfo {
    key_id: String,
    key_type: String,
    role: Option<String>,
    gun: Option<String>,
    path: Option<String>,
}

pub fn run(g: &Global, cmd: KeyCommand) -> Result<(), CliError> {
    let file = match cmd {
        KeyCommand::Inspect { file } => file,
        KeyCommand::Public { file } => return public(g, &file),
        KeyCommand::Certificate(a) => return super::notation::certificate(g, a),
        KeyCommand::Generate { name, dir } => return super::key_generate::generate(g, &name, &dir),
        KeyCommand::Rotate(_) => unreachable!("async: run by cli::run"),
        KeyCommand::Export { key_id, dir, file } => {
            return super::key_transfer::export(g, &key_id, dir.as_deref(), &file);
        }
        KeyCommand::List { dir } => return super::key_transfer::list(g, dir.as_deref()),
        KeyCommand::Import {
            file,
            dir,
            role,
            gun,
        } => {
            return super::key_transfer::import(
                g,
                &file,
                dir.as_deref(),
                role.as_deref(),
                gun.as_deref(),
            );
        }
    };
    let creds = common::credentials(g, Some(&file))?;
    let keys = SigningKey::from_pem(&creds.signing_key_pem, creds.passphrase.as_ref())
        .map_err(|e| CliError::new(e.to_string()))?;
    if keys.is_empty() {
        return Err(CliError::new(format!(
            "{} holds no private key",
            file.display()
        )));
    }
    let infos: Vec<KeyInfo> = keys
        .iter()
        .map(|k| KeyInfo {
            key_id: k.key_id().to_string(),
            key_type: k.public().keytype.clone(),
            role: k.role().map(str::to_string),
            gun: k.gun().map(str::to_string),
            path: k.headers().get("path").cloned(),
        })
        .collect();
    if g.output == Output::Json {
        common::print_json(&infos);
        return Ok(());
    }
    for k in &infos {
        outln!("key ID:   {}", k.key_id);
        outln!("type:     {}", k.key_type);
        outln!("role:     {}", k.role.as_deref().unwrap_or("-"));
        if let Some(gun) = &k.gun {
            outln!("gun:      {gun}");
        }
        if let Some(path) = &k.path {
            outln!("path:     {path}");
        }
        outln!();
    }
    Ok(())
}

/// `key public`: the SubjectPublicKeyInfo of each key, as PEM (no secret is printed).
fn public(g: &Global, file: &std::path::Path) -> Result<(), CliError> {
    let creds = common::credentials(g, Some(file))?;
    let keys = SigningKey::from_pem(&creds.signing_key_pem, creds.passphrase.as_ref())
        .map_err(|e| CliError::new(e.to_string()))?;
    if keys.is_empty() {
        return Err(CliError::new(format!(
            "{} holds no private key",
            file.display()
        )));
    }
    for k in &keys {
        let spki = k
            .public()
            .spki_der()
            .map_err(|e| CliError::new(format!("key {}: {e}", k.key_id())))?;
        out!("{}", pem::encode(&pem::Pem::new("PUBLIC KEY", spki)));
    }
    Ok(())
}
