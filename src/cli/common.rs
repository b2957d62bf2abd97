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
use crate::engine::{Engine, NotaryAuth, RunSecrets};

/// A failure with a one-line cause that says what to do.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    /// The process's exit status: 1, or a documented other one (`inspect --check`: 3).
    pub code: u8,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: 1,
        }
    }

    pub fn with_code(mut self, code: u8) -> Self {
        self.code = code;
        self
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

/// Largest CA file read: a whole system bundle is a few hundred KiB.
pub const MAX_CA_FILE_BYTES: u64 = 4 << 20;
/// Largest passphrase file read.
pub const MAX_PASSPHRASE_FILE_BYTES: u64 = 64 << 10;

/// Reads at most `limit` bytes from `r`; more is refused (a 100 MB file, `/dev/zero`) without
/// reading further than one byte past the bound.
fn read_bounded(
    what: &str,
    mut r: impl std::io::Read,
    limit: u64,
    hint: &str,
) -> Result<Zeroizing<Vec<u8>>, CliError> {
    use std::io::Read as _;
    let mut buf = Zeroizing::new(Vec::new());
    (&mut r)
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CliError::new(format!("cannot read {what}: {e}")))?;
    if buf.len() as u64 > limit {
        return Err(CliError::new(format!(
            "{what} is larger than {limit} bytes (read no further): {hint}"
        )));
    }
    Ok(buf)
}

/// A file of at most `limit` bytes.
pub fn read_file_bounded(
    what: &str,
    path: &Path,
    limit: u64,
    hint: &str,
) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let label = format!("{what} {}", path.display());
    let f = std::fs::File::open(path)
        .map_err(|e| CliError::new(format!("cannot read {label}: {e}")))?;
    read_bounded(&label, f, limit, hint)
}

const KEY_HINT: &str = "give the PEM `notary key export` wrote (under 2 KiB)";

/// Whether a command line argument looks like key material (a PEM block, or a line of one), so
/// that no message repeats it: `--key "$(cat key.pem)"` is what CI steps write.
pub fn looks_like_key_material(arg: &str) -> bool {
    // A PEM body without its armour (or one line of it): base64 of mixed case and digits, which
    // a file name, image or flag of that length hardly is.
    let base64_body = arg.len() >= 64
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        && arg.bytes().any(|b| b.is_ascii_uppercase())
        && arg.bytes().any(|b| b.is_ascii_lowercase())
        && arg.bytes().any(|b| b.is_ascii_digit());
    arg.contains("-----BEGIN")
        || arg.contains("-----END")
        || arg.contains("PRIVATE KEY")
        || arg.contains(['\n', '\r'])
        || arg.len() > 1024
        || base64_body
}

/// The signing key's PEM and what to call it in messages.
pub struct KeyInput {
    pub pem: Zeroizing<Vec<u8>>,
    pub label: String,
}

/// The signing key: `--key PATH`, `--key -` (standard input) or, without `--key`, the PEM text
/// in `TRUSTKEEPER_KEY` (how CI secrets arrive; a path there is read as a file, as before).
/// Each is bounded to [`crate::notary::keys::MAX_KEY_BYTES`] before anything looks at it.
pub fn key_input(key: Option<&Path>) -> Result<KeyInput, CliError> {
    let limit = crate::notary::keys::MAX_KEY_BYTES as u64;
    match key {
        Some(p) if p.as_os_str() == "-" => Ok(KeyInput {
            pem: read_bounded(
                "the key on standard input",
                std::io::stdin().lock(),
                limit,
                KEY_HINT,
            )?,
            label: "the key on standard input".into(),
        }),
        Some(p) if looks_like_key_material(&p.to_string_lossy()) => Err(CliError::new(
            "the --key argument looks like the key itself (not shown): an argument shows in \
             `ps` and in logs; give the PEM in TRUSTKEEPER_KEY or on standard input (--key -), \
             or a file (--key PATH)",
        )),
        Some(p) => Ok(KeyInput {
            pem: read_file_bounded("key", p, limit, KEY_HINT)?,
            label: p.display().to_string(),
        }),
        None => {
            let Some(v) = std::env::var_os("TRUSTKEEPER_KEY").filter(|v| !v.is_empty()) else {
                return Err(CliError::new(
                    "no signing key: give --key PATH, --key - (the PEM on standard input) or the \
                     PEM in TRUSTKEEPER_KEY",
                ));
            };
            let bytes = Zeroizing::new(v.into_encoded_bytes());
            if bytes.windows(10).any(|w| w == b"-----BEGIN") {
                let pem = read_bounded("TRUSTKEEPER_KEY", bytes.as_slice(), limit, KEY_HINT)?;
                Ok(KeyInput {
                    pem,
                    label: "the key in TRUSTKEEPER_KEY".into(),
                })
            } else {
                // Never shown: it may be key material without its armour.
                let not_a_file = || {
                    CliError::new(
                        "TRUSTKEEPER_KEY holds neither a PEM block nor the path of a readable \
                         file (its value is not shown): give the PEM `notary key export` wrote, \
                         BEGIN and END lines included",
                    )
                };
                let text = std::str::from_utf8(&bytes).map_err(|_| not_a_file())?;
                if looks_like_key_material(text) {
                    return Err(not_a_file());
                }
                let path = Path::new(text);
                let f = std::fs::File::open(path).map_err(|_| not_a_file())?;
                Ok(KeyInput {
                    pem: read_bounded("the key file TRUSTKEEPER_KEY names", f, limit, KEY_HINT)?,
                    label: "the key file TRUSTKEEPER_KEY names".into(),
                })
            }
        }
    }
}

/// The passphrase: `--passphrase-file` (or `TRUSTKEEPER_PASSPHRASE_FILE`), else
/// `TRUSTKEEPER_PASSPHRASE`, else a prompt on a terminal; the explicit file wins. Never a plain
/// argument (it would show in `ps` and shell history). A trailing line end is dropped from the
/// file and the environment alike, as from a Secret.
pub fn passphrase(g: &Global, prompt_for: &str) -> Result<Option<SecretString>, CliError> {
    let trimmed = |text: &str| SecretString::from(text.trim_end_matches(['\r', '\n']).to_string());
    if let Some(f) = &g.passphrase_file {
        let bytes = read_file_bounded(
            "passphrase file",
            f,
            MAX_PASSPHRASE_FILE_BYTES,
            "give a file holding only the passphrase",
        )?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| CliError::new("the passphrase file is not UTF-8"))?;
        return Ok(Some(trimmed(text)));
    }
    if let Some(p) = std::env::var_os("TRUSTKEEPER_PASSPHRASE") {
        let p = Zeroizing::new(p.into_encoded_bytes());
        let text = std::str::from_utf8(&p)
            .map_err(|_| CliError::new("TRUSTKEEPER_PASSPHRASE is not UTF-8"))?;
        return Ok(Some(trimmed(text)));
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
        .map(|p| {
            read_file_bounded(
                "CA file",
                p,
                MAX_CA_FILE_BYTES,
                "give a PEM bundle of the CA certificates",
            )
            .map(|b| b.to_vec())
        })
        .transpose()
}

/// Credentials for a run from the key file, docker config, CA file and `NOTARY_AUTH`.
pub fn credentials(g: &Global, key: Option<&Path>) -> Result<RunSecrets, CliError> {
    credentials_with(g, key.map(|k| key_input(Some(k))).transpose()?)
}

/// Like [`credentials`] for a command that signs: without `--key` the key comes from
/// `TRUSTKEEPER_KEY`.
pub fn signing_credentials(g: &Global, key: Option<&Path>) -> Result<RunSecrets, CliError> {
    credentials_with(g, Some(key_input(key)?))
}

fn credentials_with(g: &Global, key: Option<KeyInput>) -> Result<RunSecrets, CliError> {
    let (signing_key_pem, passphrase) = match key {
        Some(KeyInput { pem, label }) => {
            let encrypted = pem.windows(9).any(|w| w == b"ENCRYPTED");
            let pass = if encrypted {
                passphrase(g, &label)?
            } else {
                None
            };
            if encrypted && pass.is_none() {
                return Err(CliError::new(format!(
                    "{label} is encrypted: give its passphrase in TRUSTKEEPER_PASSPHRASE or --passphrase-file",
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
    Ok(RunSecrets {
        signing_key_pem,
        passphrase,
        registry_auth,
        registry_ca: None,
        notary_auth,
        notary_ca: None,
        notation_chain_pem: None,
    })
}

/// The SignedImage a command line stands for.
pub fn spec(g: &Global, image: &str, tags: Vec<String>, roles: Vec<String>) -> SignedImageSpec {
    let mut spec = SignedImageSpec {
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
        formats: api::default_formats(),
        notation: None,
        dry_run: false,
    };
    allow_insecure_realms(g, &mut spec);
    spec
}

/// `--insecure-token-realm HOST`: the opt-in of the registry or notary server it names (the
/// hosts as the run will use them).
fn allow_insecure_realms(g: &Global, spec: &mut SignedImageSpec) {
    if g.insecure_token_realm.is_empty() {
        return;
    }
    let Ok(settings) = crate::engine::Settings::from_spec(spec) else {
        return;
    };
    let named = |host: &str| (g.insecure_token_realm.iter()).any(|a| a.eq_ignore_ascii_case(host));
    let notary_host = (settings.notary_url.split_once("://"))
        .map_or(settings.notary_url.as_str(), |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    spec.registry.insecure_token_realm = named(settings.image.registry_host());
    spec.notary.insecure_token_realm = named(notary_host);
}

/// The engine for a command. `--ca-file` is trusted for every server beside the system roots
/// (as `docker --tlscacert` and the notary client's `root_ca` are); a SignedImage's own CA
/// (`reconcile -f`) is trusted alone for its server.
pub fn engine(g: &Global) -> Result<Engine, CliError> {
    Ok(Engine {
        timeout: g.timeout,
        deadline: g.deadline,
        extra_ca: ca(g)?,
        max_metadata_bytes: g.max_metadata_size,
        ..Default::default()
    })
}

/// A byte size: digits, optionally followed by `KiB`, `MiB` or `GiB` (also `K`, `M`, `G`: the
/// same binary units); at least 1 KiB, at most 4 GiB.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| "give a number of bytes, e.g. 4194304 or 4MiB".to_string())?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        u => return Err(format!("unknown unit {u:?}: use KiB, MiB or GiB")),
    };
    let bytes = n
        .checked_mul(1 << shift)
        .filter(|b| (1 << 10..=4 << 30).contains(b))
        .ok_or_else(|| "must be between 1KiB and 4GiB".to_string())?;
    Ok(bytes)
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    write_replacing(path, bytes, true, 0o666)
}

/// Replaces `path` by a rename; with `durable`, the data and the rename reach the disk first
/// (fsync), which the metadata cache skips: a file lost or torn by a crash is only fetched again.
/// A new file gets `mode` (less the umask); the trust directory's files are 0600, and missing
/// directories are created 0700.
pub(super) fn write_replacing(
    path: &Path,
    bytes: &[u8],
    durable: bool,
    mode: u32,
) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| CliError::new(format!("cannot write {}: {e}", path.display()));
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.as_os_str().is_empty() && !dir.is_dir() {
        super::trust_dir::create_private_dir(dir).map_err(err)?;
    }
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
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

/// Writes to stdout. A reader that has gone (`trustkeeper inspect | head`) ends the process
/// the way it ends a C or Go tool: by SIGPIPE, quietly, and never with a success code that
/// could hide a failed run. Rust ignores SIGPIPE (so that sockets report EPIPE as an error,
/// which the HTTP clients rely on), which would make `println!` panic instead.
pub fn write_stdout(args: fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let Err(e) = out.write_fmt(args) else {
        return;
    };
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        // SAFETY: restoring the default action of a signal and raising it; no handler runs.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::raise(libc::SIGPIPE);
        }
    }
    eprintln!("error: cannot write the output: {e}");
    std::process::exit(1);
}

/// Per-digest results of a signing step, split into what was signed (by digest) and one
/// `digest: error` line per failure.
pub fn split_by_digest<T, E: std::fmt::Display>(
    results: Vec<(String, Result<T, E>)>,
) -> (std::collections::BTreeMap<String, T>, Vec<String>) {
    let mut by_digest = std::collections::BTreeMap::new();
    let mut failures = Vec::new();
    for (d, r) in results {
        match r {
            Ok(s) => {
                by_digest.insert(d, s);
            }
            Err(e) => failures.push(format!("{d}: {e}")),
        }
    }
    (by_digest, failures)
}

pub fn print_json<T: serde::Serialize>(v: &T) {
    outln!("{}", serde_json::to_string_pretty(v).expect("serializable"));
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("4194304"), Ok(4 << 20));
        assert_eq!(parse_size(" 512K "), Ok(512 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        for bad in ["", "MiB", "4MB", "-1", "1", "5GiB", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod key_input_tests {
    use super::looks_like_key_material;

    #[test]
    fn key_material_is_told_from_paths_images_and_flags() {
        let body = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgevZzL1gdAFr88hb2";
        for key in [
            "-----BEGIN PRIVATE KEY-----",
            "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----",
            body,
            &body.repeat(3),
            "line\nbreak",
        ] {
            assert!(looks_like_key_material(key), "{key}");
        }
        for arg in [
            "--key",
            "delegation.key.pem",
            "/home/runner/work/project/project/secrets/delegation/targets.key",
            "registry.example.com/team/app:v1.2",
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "targets/releases",
            "-",
        ] {
            assert!(!looks_like_key_material(arg), "{arg}");
        }
    }
}

#[cfg(test)]
mod insecure_realm_tests {
    use clap::Parser as _;

    use super::spec;
    use crate::cli::Cli;

    #[test]
    fn insecure_token_realm_names_the_registry_or_the_notary_host() {
        let cli = Cli::try_parse_from([
            "trustkeeper",
            "inspect",
            "r.example:5000/team/app",
            "--notary-url",
            "https://notary.example",
            "--insecure-token-realm",
            "r.example:5000",
        ])
        .unwrap();
        let s = spec(&cli.global, "r.example:5000/team/app", vec![], vec![]);
        assert!(s.registry.insecure_token_realm);
        assert!(!s.notary.insecure_token_realm);

        let cli = Cli::try_parse_from([
            "trustkeeper",
            "inspect",
            "r.example:5000/team/app",
            "--notary-url",
            "https://notary.example/",
            "--insecure-token-realm",
            "notary.example",
        ])
        .unwrap();
        let s = spec(&cli.global, "r.example:5000/team/app", vec![], vec![]);
        assert!(!s.registry.insecure_token_realm);
        assert!(s.notary.insecure_token_realm);

        let cli =
            Cli::try_parse_from(["trustkeeper", "inspect", "r.example:5000/team/app"]).unwrap();
        let s = spec(&cli.global, "r.example:5000/team/app", vec![], vec![]);
        assert!(!s.registry.insecure_token_realm && !s.notary.insecure_token_realm);
    }
}

/// The first word of a signing line: `signed`, `unchanged`, or in a dry run `would sign`.
pub fn signed_word(added: bool, dry_run: bool) -> &'static str {
    match (added, dry_run) {
        (false, _) => "unchanged",
        (true, false) => "signed",
        (true, true) => "would sign",
    }
}

/// The settings and a registry client for reading `repo` (no notary, no signing key): what
/// `inspect --format cosign|notation` use.
pub fn registry_reader(
    g: &Global,
    repo: &crate::registry::ImageRef,
) -> Result<(crate::engine::Settings, crate::registry::RegistryClient), CliError> {
    let spec = spec(g, &repo.gun(), vec![], vec![]);
    let settings = crate::engine::Settings::from_spec(&spec)?;
    let creds = credentials(g, None)?;
    let registry = engine(g)?.clients(&settings, &creds)?.registry;
    Ok((settings, registry))
}
