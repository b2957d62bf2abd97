//! Creating a trusted repository (`init IMAGE`, and `signer add` on one that has no trust data
//! yet), as the first `docker trust sign` or `docker trust signer add` did: root and
//! repository (targets) keys given or generated, generated ones written encrypted where docker
//! kept them, the snapshot and timestamp keys the server's. And `key rotate targets`: the
//! repository key replaced by a root-signed update.

use std::path::{Path, PathBuf};

use clap::Args;
use jiff::Timestamp;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use zeroize::Zeroizing;

use super::admin::{self, Session};
use super::common::{self, CliError};
use super::{Global, Output};
use crate::notary::{NewRepository, PublicKey, SigningKey};

#[derive(Args, Debug, Clone, Default)]
pub struct RootKeyArgs {
    /// The root key, as `notary key export --role root` wrote it [default for `init`: a new
    /// one; otherwise the one root lists, found by ID in the docker/notary trust directory].
    #[arg(long, value_name = "FILE")]
    pub root_key: Option<PathBuf>,
    /// File holding its passphrase [default: TRUSTKEEPER_ROOT_PASSPHRASE, then
    /// DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE, then a prompt on a terminal].
    #[arg(long, value_name = "FILE")]
    pub root_passphrase_file: Option<PathBuf>,
}

const ROOT_VARS: &[&str] = &[
    "TRUSTKEEPER_ROOT_PASSPHRASE",
    "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE",
];
pub(super) const REPO_VARS: &[&str] = &[
    "TRUSTKEEPER_REPO_PASSPHRASE",
    "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE",
];

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The image repository to create, e.g. registry.example.com/team/app.
    pub image: String,
    #[command(flatten)]
    pub root_key: RootKeyArgs,
    /// The repository (targets) key [default: a new one, written encrypted to the docker/notary
    /// trust directory with its passphrase from TRUSTKEEPER_REPO_PASSPHRASE or
    /// DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE].
    #[arg(long, value_name = "FILE")]
    pub repo_key: Option<PathBuf>,
    /// File holding the repository key's passphrase.
    #[arg(long, value_name = "FILE")]
    pub repo_passphrase_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct KeyRotateArgs {
    /// The role whose key is replaced: `targets` (the repository key).
    #[arg(value_parser = ["targets"])]
    pub role: String,
    /// The image repository.
    pub image: String,
    /// The new repository key (`notary key export` or `key generate` output; its passphrase
    /// from TRUSTKEEPER_REPO_PASSPHRASE, DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE or
    /// --repo-passphrase-file).
    #[arg(long, value_name = "NEW.key")]
    pub new_key: PathBuf,
    /// File holding the new key's passphrase.
    #[arg(long, value_name = "FILE")]
    pub repo_passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    pub root_key: RootKeyArgs,
}

/// A passphrase from `file`, else the first of `vars` set, else a prompt on a terminal (twice
/// for a key about to be written). `None` when none of these is at hand.
pub(super) fn passphrase_from(
    file: Option<&Path>,
    vars: &[&str],
    prompt: &str,
    confirm: bool,
) -> Result<Option<SecretString>, CliError> {
    let trimmed = |t: &str| SecretString::from(t.trim_end_matches(['\r', '\n']).to_string());
    if let Some(f) = file {
        let bytes = common::read_file_bounded(
            "passphrase file",
            f,
            common::MAX_PASSPHRASE_FILE_BYTES,
            "give a file holding only the passphrase",
        )?;
        let t = std::str::from_utf8(&bytes)
            .map_err(|_| CliError::new("the passphrase file is not UTF-8"))?;
        return Ok(Some(trimmed(t)));
    }
    for var in vars {
        if let Some(v) = std::env::var_os(var) {
            let v = Zeroizing::new(v.into_encoded_bytes());
            let t = std::str::from_utf8(&v)
                .map_err(|_| CliError::new(format!("{var} is not UTF-8")))?;
            return Ok(Some(trimmed(t)));
        }
    }
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let ask = |p: String| {
        rpassword::prompt_password(p)
            .map(SecretString::from)
            .map_err(|e| CliError::new(format!("cannot read the passphrase: {e}")))
    };
    let first = ask(format!("Passphrase for {prompt}: "))?;
    if confirm && ask("Repeat it: ".into())?.expose_secret() != first.expose_secret() {
        return Err(CliError::new("the passphrases differ: nothing was written"));
    }
    Ok(Some(first))
}

/// The private key of a root or repository key file; `root` says which it must be.
fn load_key(
    path: &Path,
    root: bool,
    pass_file: Option<&Path>,
    vars: &[&str],
) -> Result<SigningKey, CliError> {
    let (what, flag, flag_pass) = if root {
        ("root key", "--root-key", "--root-passphrase-file")
    } else {
        ("repository key", "--repo-key", "--repo-passphrase-file")
    };
    if common::looks_like_key_material(&path.to_string_lossy()) {
        return Err(CliError::new(format!(
            "the {flag} argument looks like the key itself (not shown): give a file"
        ))
        .with_code(2));
    }
    let pem = common::read_file_bounded(
        what,
        path,
        crate::notary::keys::MAX_KEY_BYTES as u64,
        "give the PEM `notary key export` wrote",
    )?;
    if SigningKey::pem_holds_only_root_keys(&pem) != root {
        return Err(CliError::new(if root {
            format!(
                "{} is not a root key (no `role: root`): give the root key (`notary key \
                 export --role root`)",
                path.display()
            )
        } else {
            format!(
                "{} is a root key: give the repository (targets) key here",
                path.display()
            )
        }));
    }
    let encrypted = pem.windows(9).any(|w| w == b"ENCRYPTED");
    let pass = if encrypted {
        passphrase_from(pass_file, vars, &path.display().to_string(), false)?
    } else {
        None
    };
    if encrypted && pass.is_none() {
        return Err(CliError::new(format!(
            "{} is encrypted: give its passphrase in {} or {flag_pass}",
            path.display(),
            vars.join(" or "),
        )));
    }
    let mut keys = SigningKey::from_pem(&pem, pass.as_ref()).map_err(admin::err)?;
    if keys.len() != 1 {
        return Err(CliError::new(format!(
            "{} holds {} private keys: give a file with the one {what}",
            path.display(),
            keys.len()
        )));
    }
    Ok(keys.remove(0))
}

/// A key to use, and, when it is new, the file it goes to (`private/<ID>.key`) and its text.
struct Key {
    key: SigningKey,
    new_file: Option<(PathBuf, Zeroizing<String>)>,
}

fn key_or_new(
    g: &Global,
    gun: &str,
    given: Option<&Path>,
    pass_file: Option<&Path>,
    root: bool,
) -> Result<Key, CliError> {
    let vars = if root { ROOT_VARS } else { REPO_VARS };
    if let Some(p) = given {
        return Ok(Key {
            key: load_key(p, root, pass_file, vars)?,
            new_file: None,
        });
    }
    let (role, what) = if root {
        ("root", "the new root key")
    } else {
        ("targets", "the new repository key")
    };
    let key = SigningKey::generate_ecdsa(role, gun).map_err(admin::err)?;
    let pass = passphrase_from(pass_file, vars, what, true)?.ok_or_else(|| {
        CliError::new(format!(
            "no passphrase for {what}: give it in {} or --{}-passphrase-file (keys are always \
             written encrypted)",
            vars[0],
            if root { "root" } else { "repo" }
        ))
    })?;
    let text = Zeroizing::new(key.export_pem(&pass).map_err(admin::err)?);
    let dir = super::key_transfer::docker_trust_dir(g.docker_trust_dir.as_deref()).join("private");
    let file = dir.join(format!("{}.key", key.key_id()));
    Ok(Key {
        key,
        new_file: Some((file, text)),
    })
}

#[derive(Serialize)]
pub(super) struct Created {
    gun: String,
    root_key_id: String,
    /// The root certificate's TUF ID, as root.json lists it (`docker trust inspect`'s "Root Key").
    root_certificate_id: String,
    repository_key_id: String,
    /// Keys made by this command, written encrypted.
    written: Vec<String>,
    delegations: Vec<String>,
}

/// Creates the session's repository, unless it has trust data already (`None`, before any key
/// is read or made), with the keys given or new ones, declaring `delegations` (name, keys) in
/// targets v1. New keys are written before the publish and removed again if it fails: a
/// repository never exists without the keys that made it.
pub(super) async fn create_if_missing(
    g: &Global,
    s: &mut Session,
    root: &RootKeyArgs,
    repo: (Option<&Path>, Option<&Path>),
    delegations: &[(String, Vec<PublicKey>)],
) -> Result<Option<Created>, CliError> {
    if s.exists().await? {
        return Ok(None);
    }
    let gun = &s.gun().to_string();
    let root_key = key_or_new(
        g,
        gun,
        root.root_key.as_deref(),
        root.root_passphrase_file.as_deref(),
        true,
    )?;
    let targets = key_or_new(g, gun, repo.0, repo.1, false)?;
    if root_key.key.key_id() == targets.key.key_id() {
        return Err(CliError::new(
            "the root key and the repository key are the same key: give two different keys",
        ));
    }
    let mut new = NewRepository::new(gun, &root_key.key, &targets.key);
    for (name, keys) in delegations {
        new = new
            .with_delegation_keys(name, keys.clone(), &[""])
            .map_err(admin::err)?;
    }
    let files: Vec<&(PathBuf, Zeroizing<String>)> = [&root_key, &targets]
        .into_iter()
        .filter_map(|k| k.new_file.as_ref())
        .collect();
    let mut written: Vec<PathBuf> = vec![];
    for (path, text) in &files {
        if let Some(dir) = path.parent()
            && !dir.is_dir()
        {
            super::trust_dir::create_private_dir(dir)
                .map_err(|e| CliError::new(format!("cannot create {}: {e}", dir.display())))?;
        }
        if let Err(e) = super::key_transfer::create_new(path, text.as_bytes()) {
            written.iter().for_each(|w| drop(std::fs::remove_file(w)));
            return Err(e);
        }
        written.push(path.clone());
    }
    let meta = match s.create(&new).await {
        Ok(m) => m,
        Err(e) => {
            written.iter().for_each(|w| drop(std::fs::remove_file(w)));
            return Err(e);
        }
    };
    // Read back as any later command will: the served root must be the one made here.
    let repo_now = s.update().await?;
    if !repo_now.root.keys.contains_key(&meta.root_key_id()) {
        return Err(CliError::new(format!(
            "created {gun}, but the trust server now serves a root without our root key {}: \
             another writer? inspect it (`trustkeeper inspect {gun}`)",
            meta.root_key_id()
        )));
    }
    Ok(Some(Created {
        gun: gun.to_string(),
        root_key_id: root_key.key.key_id().to_string(),
        root_certificate_id: meta.root_key_id(),
        repository_key_id: targets.key.key_id().to_string(),
        written: written.iter().map(|p| p.display().to_string()).collect(),
        delegations: delegations.iter().map(|(n, _)| n.clone()).collect(),
    }))
}

pub(super) fn print_created(g: &Global, c: &Created) {
    if g.output == Output::Json {
        common::print_json(c);
        return;
    }
    outln!("created {}", c.gun);
    outln!("root key:       {}", c.root_key_id);
    outln!("root cert ID:   {}", c.root_certificate_id);
    outln!("repository key: {}", c.repository_key_id);
    for d in &c.delegations {
        outln!("delegation:     {d}");
    }
    for w in &c.written {
        eprintln!("wrote {w} (encrypted, 0600): keep the root key offline and backed up");
    }
}

pub async fn init(g: &Global, a: InitArgs) -> Result<(), CliError> {
    let gun = admin::gun_of(&a.image)?;
    crate::notary::init::check_gun(&gun).map_err(admin::err)?;
    let mut s = Session::new(g, &gun)?;
    let repo_key = (a.repo_key.as_deref(), a.repo_passphrase_file.as_deref());
    match create_if_missing(g, &mut s, &a.root_key, repo_key, &[]).await? {
        Some(c) => {
            print_created(g, &c);
            Ok(())
        }
        None => Err(admin::err(crate::notary::Error::RepositoryExists { gun })),
    }
}

#[derive(Serialize)]
struct KeyRotated<'a> {
    #[serde(flatten)]
    published: &'a admin::Published,
    role: &'static str,
    old_key_ids: Vec<String>,
    new_key_id: String,
}

/// `key rotate targets IMAGE --new-key NEW.key [--root-key FILE]`: one publish of root and
/// targets (see `notary::rotate`), read back; every target and delegation stays.
pub async fn rotate(g: &Global, a: KeyRotateArgs) -> Result<(), CliError> {
    let gun = admin::gun_of(&a.image)?;
    let new = load_key(
        &a.new_key,
        false,
        a.repo_passphrase_file.as_deref(),
        REPO_VARS,
    )?;
    let root_path = match &a.root_key.root_key {
        Some(p) => p.clone(),
        None => {
            super::key_lookup::find_for_roles(g, &gun, &["root".to_string()], "--root-key").await?
        }
    };
    let root = load_key(
        &root_path,
        true,
        a.root_key.root_passphrase_file.as_deref(),
        ROOT_VARS,
    )?;
    let mut s = Session::new(g, &gun)?;
    let old = std::sync::Mutex::new(vec![]);
    let p = s
        .publish_files(|repo| {
            let ids = repo
                .signers_of("targets")
                .map_err(admin::err)?
                .canonical_ids();
            *old.lock().expect("not poisoned") = ids;
            repo.rotate_targets_key(&root, &new, Timestamp::now())
                .map_err(admin::err)
        })
        .await?;
    let old_key_ids = old.into_inner().expect("not poisoned");
    if g.output == Output::Json {
        common::print_json(&KeyRotated {
            published: &p,
            role: "targets",
            old_key_ids,
            new_key_id: new.key_id().to_string(),
        });
        return Ok(());
    }
    admin::print_published(
        g,
        &p,
        &format!(
            "repository key {} replaced by {} (root-signed), every target kept",
            old_key_ids.join(", "),
            new.key_id()
        ),
    );
    Ok(())
}

/// `witness IMAGE --role root [--key ROOT.key]`: root re-signed as it is, a new version and
/// expiry, one publish read back (`Repository::renew_root`). The root key's passphrase comes
/// from `--passphrase-file`, TRUSTKEEPER_ROOT_PASSPHRASE or DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE.
pub async fn renew_root(
    g: &Global,
    gun: &str,
    key: Option<&Path>,
    dry_run: bool,
) -> Result<(), CliError> {
    let path = match key {
        Some(p) => p.to_path_buf(),
        None => super::key_lookup::find_for_roles(g, gun, &["root".to_string()], "--key").await?,
    };
    let root = load_key(&path, true, g.passphrase_file.as_deref(), ROOT_VARS)?;
    let mut s = Session::new(g, gun)?;
    if dry_run {
        let repo = s.update().await?;
        let files = repo
            .renew_root(&root, Timestamp::now())
            .map_err(admin::err)?;
        outln!(
            "would renew root of {gun}: v{} -> v{} (expires {}, then {} from the publish); \
             dry run: nothing was published",
            repo.root_info.version,
            files[0].version,
            repo.root_info.expires,
            crate::api::human_duration(crate::notary::time::ROOT_LIFETIME.unsigned_abs()),
        );
        return Ok(());
    }
    let p = s
        .publish_files(|repo| repo.renew_root(&root, Timestamp::now()).map_err(admin::err))
        .await?;
    admin::print_published(g, &p, "root renewed, keys unchanged");
    Ok(())
}
