//! What the subcommands share: credentials from files and the environment, the trust directory,
//! the spec a command line stands for, and the error type.

use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::Global;
use crate::api::{self, NotarySpec, SignedImageSpec, SigningKeyRef};
use crate::engine::{Credentials, Engine, NotaryAuth};

/// A failure with a one-line cause that says what to do.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<crate::engine::Failure> for CliError {
    fn from(f: crate::engine::Failure) -> Self {
        CliError::new(f.to_string())
    }
}

pub fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn read_file(what: &str, path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path)
        .map_err(|e| CliError::new(format!("cannot read {what} {}: {e}", path.display())))
}

/// The passphrase: `TRUSTKEEPER_PASSPHRASE`, `--passphrase-file`, or a prompt on a terminal.
/// Never a plain argument (it would show in `ps` and shell history).
pub fn passphrase(g: &Global, prompt_for: &str) -> Result<Option<SecretString>, CliError> {
    if let Ok(p) = std::env::var("TRUSTKEEPER_PASSPHRASE") {
        return Ok(Some(SecretString::from(p)));
    }
    if let Some(f) = &g.passphrase_file {
        let bytes = Zeroizing::new(read_file("passphrase file", f)?);
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| CliError::new("the passphrase file is not UTF-8"))?;
        return Ok(Some(SecretString::from(
            text.trim_end_matches(['\r', '\n']).to_string(),
        )));
    }
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password(format!("Passphrase for {prompt_for}: "))
            .map_err(|e| CliError::new(format!("cannot read the passphrase: {e}")))?;
        return Ok(Some(SecretString::from(p)));
    }
    Ok(None)
}

fn ca(g: &Global) -> Result<Option<Vec<u8>>, CliError> {
    g.ca_file
        .as_deref()
        .map(|p| read_file("CA file", p))
        .transpose()
}

/// Credentials for a run from the key file, docker config, CA file and `NOTARY_AUTH`.
pub fn credentials(g: &Global, key: Option<&Path>) -> Result<Credentials, CliError> {
    let (signing_key_pem, passphrase) = match key {
        Some(k) => {
            let pem = Zeroizing::new(read_file("key", k)?);
            let encrypted = pem.windows(9).any(|w| w == b"ENCRYPTED");
            let pass = if encrypted {
                passphrase(g, &k.display().to_string())?
            } else {
                None
            };
            if encrypted && pass.is_none() {
                return Err(CliError::new(format!(
                    "{} is encrypted: give its passphrase in TRUSTKEEPER_PASSPHRASE or --passphrase-file",
                    k.display()
                )));
            }
            (pem, pass)
        }
        None => (Zeroizing::new(Vec::new()), None),
    };
    let docker_config_path = g
        .docker_config
        .clone()
        .unwrap_or_else(|| home().join(".docker/config.json"));
    let registry_auth = match std::fs::read(&docker_config_path) {
        Ok(b) => Some(Zeroizing::new(b)),
        Err(_) if g.docker_config.is_none() => None,
        Err(e) => {
            return Err(CliError::new(format!(
                "cannot read docker config {}: {e}",
                docker_config_path.display()
            )));
        }
    };
    let notary_auth = match std::env::var("NOTARY_AUTH") {
        Ok(v) if !v.is_empty() => {
            let raw = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(v.trim())
                    .map_err(|_| CliError::new("NOTARY_AUTH is not base64 of user:password"))?,
            );
            let text =
                std::str::from_utf8(&raw).map_err(|_| CliError::new("NOTARY_AUTH is not UTF-8"))?;
            let (user, pass) = text
                .split_once(':')
                .ok_or_else(|| CliError::new("NOTARY_AUTH must be base64 of user:password"))?;
            Some(NotaryAuth::Basic {
                username: user.to_string(),
                password: SecretString::from(pass.to_string()),
            })
        }
        _ => None,
    };
    Ok(Credentials {
        signing_key_pem,
        passphrase,
        registry_auth,
        registry_ca: None,
        notary_auth,
        notary_ca: None,
    })
}

/// The SignedImage a command line stands for.
pub fn spec(g: &Global, image: &str, tags: Vec<String>, roles: Vec<String>) -> SignedImageSpec {
    SignedImageSpec {
        image: image.to_string(),
        tags,
        roles,
        prune_vanished_tags: false,
        signing_key: SigningKeyRef {
            secret_ref: api::SecretRef { name: "cli".into() },
            key_field: api::DEFAULT_KEY_FIELD.into(),
            passphrase_field: api::DEFAULT_PASSPHRASE_FIELD.into(),
        },
        registry: Default::default(),
        notary: NotarySpec {
            url: g.notary_url.clone(),
            root_key_ids: g.root_key_ids.clone(),
            ..Default::default()
        },
        validity: api::DEFAULT_VALIDITY.into(),
        renew_before: api::DEFAULT_RENEW_BEFORE.into(),
        interval: api::DEFAULT_INTERVAL.into(),
        suspend: false,
    }
}

/// The engine for a command. `--ca-file` is trusted for every server beside the system roots
/// (as `docker --tlscacert` and the notary client's `root_ca` are); a SignedImage's own CA
/// (`reconcile -f`) is trusted alone for its server.
pub fn engine(g: &Global) -> Result<Engine, CliError> {
    let t =
        api::parse_go_duration(&g.timeout).map_err(|e| CliError::new(format!("--timeout: {e}")))?;
    let d = api::parse_go_duration(&g.deadline)
        .map_err(|e| CliError::new(format!("--deadline: {e}")))?;
    Ok(Engine {
        timeout: t.0.unsigned_abs(),
        deadline: d.0.unsigned_abs(),
        extra_ca: ca(g)?,
        ..Default::default()
    })
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    write_replacing(path, bytes, true)
}

/// Replaces `path` by a rename; with `durable`, the data and the rename reach the disk first
/// (fsync), which the metadata cache skips: a file lost or torn by a crash is only fetched again.
pub(super) fn write_replacing(path: &Path, bytes: &[u8], durable: bool) -> Result<(), CliError> {
    use std::io::Write;
    let err = |e: std::io::Error| CliError::new(format!("cannot write {}: {e}", path.display()));
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    if durable {
        f.sync_all().map_err(err)?;
    }
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    // Make the rename itself durable (a power cut after it must not bring the old file back);
    // best effort: some filesystems refuse to sync a directory.
    if durable && let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    remove_stale_temporaries(dir, &tmp);
    Ok(())
}

/// Removes temporary files of `write_atomic` that a killed process left beside the target (same
/// `.NAME.` prefix, `.tmp` suffix), once they are old enough that no live writer can own them.
fn remove_stale_temporaries(dir: &Path, ours: &Path) {
    const STALE: std::time::Duration = std::time::Duration::from_secs(600);
    let Some(name) = ours.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    // `.NAME.PID.tmp` → `.NAME.`
    let Some(prefix) = name
        .strip_suffix(".tmp")
        .and_then(|n| n.rsplit_once('.'))
        .map(|(p, _)| format!("{p}."))
    else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name();
        let Some(n) = n.to_str() else { continue };
        // The name first: a stat of every file of the directory on each write is not free.
        if !(n.starts_with(&prefix) && n.ends_with(".tmp")) {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

pub fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializable"));
}
