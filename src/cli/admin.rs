//! Repository administration that `docker trust` and the notary CLI did: `delegation
//! list|add|remove` and `signer add|remove`. Each change is one publish of the parent role,
//! read back and verified; a version conflict (another writer first) re-reads and re-applies.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use jiff::Timestamp;
use secrecy::SecretString;
use serde::Serialize;

use super::common::{self, CliError};
use super::trust_dir;
use super::{Global, Output};
use crate::engine::settings::{Settings, trust_anchor};
use crate::notary::{Editor, Error as NotaryError, PublicKey, Repository, SigningKey};
use crate::registry::ImageRef;

/// Largest public key or certificate file read for `--key`.
const MAX_PUBLIC_KEY_BYTES: u64 = 64 << 10;
/// Publishes tried when other writers keep publishing first.
const PUBLISH_ATTEMPTS: u32 = 5;

#[derive(Args, Debug)]
pub struct RepoKeyArgs {
    /// The key that signs the parent role: the repository (targets) key for `targets/NAME`,
    /// as `notary key export` wrote it [default: the one the repository lists, found by ID in
    /// the docker/notary trust directory].
    #[arg(long, value_name = "FILE")]
    pub repo_key: Option<PathBuf>,
    /// File holding its passphrase [default: TRUSTKEEPER_REPO_PASSPHRASE, then
    /// DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE, then a prompt on a terminal].
    #[arg(long, value_name = "FILE")]
    pub repo_passphrase_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum DelegationCommand {
    /// List the delegations: role, paths, threshold, key IDs and expiry (`notary delegation list`).
    List {
        /// The image repository.
        image: String,
        /// Only this role.
        role: Option<String>,
    },
    /// Declare a delegation in its parent, or add keys and paths to it (`notary delegation add`).
    Add {
        /// The image repository.
        image: String,
        /// The role, e.g. targets/releases or targets/alice.
        role: String,
        /// A public key or certificate (PEM) to list for the role (repeatable).
        #[arg(long = "key", value_name = "PUB.pem")]
        keys: Vec<PathBuf>,
        /// The role may sign every tag (notary's `--all-paths`).
        #[arg(long, conflicts_with = "paths")]
        all_paths: bool,
        /// A tag prefix the role may sign (repeatable).
        #[arg(long = "path", value_name = "PREFIX")]
        paths: Vec<String>,
        /// Signatures needed from the role's keys [default: 1, or unchanged].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        threshold: Option<u64>,
        #[command(flatten)]
        repo_key: RepoKeyArgs,
    },
    /// Remove keys from a delegation, or (without --key) the delegation (`notary delegation remove`).
    Remove {
        /// The image repository.
        image: String,
        /// The role.
        role: String,
        /// A key ID to remove (as `delegation list` shows it; repeatable).
        #[arg(long = "key", value_name = "ID")]
        key_ids: Vec<String>,
        #[command(flatten)]
        repo_key: RepoKeyArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum SignerCommand {
    /// Add a signer as `docker trust signer add` does: `targets/NAME` and `targets/releases`
    /// both list its keys, for every tag.
    Add {
        /// The signer's name (role targets/NAME).
        name: String,
        /// The image repository.
        image: String,
        /// The signer's public key or certificate (PEM; repeatable).
        #[arg(long = "key", value_name = "PUB.pem", required = true)]
        keys: Vec<PathBuf>,
        #[command(flatten)]
        repo_key: RepoKeyArgs,
        /// On a repository without trust data, which is then created (as docker did): its
        /// root key, else a new one (see `init`).
        #[command(flatten)]
        root_key: super::init::RootKeyArgs,
    },
    /// Remove a signer as `docker trust signer remove` does: `targets/NAME` goes and its keys
    /// leave `targets/releases`.
    Remove {
        /// The signer's name (role targets/NAME).
        name: String,
        /// The image repository.
        image: String,
        /// Also when it leaves `targets/releases` without keys (docker pulls then fail).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        repo_key: RepoKeyArgs,
    },
    /// Replace a signer's key without downtime: in one publish `targets/NAME` and
    /// `targets/releases` list the new key instead of the old one(s), and both roles are
    /// re-signed with it, keeping every tag (the old key is not needed).
    Rotate(super::rotate::RotateArgs),
}

#[derive(Serialize)]
struct DelegationRow {
    role: String,
    paths: Vec<String>,
    threshold: u64,
    /// TUF key IDs, as the role lists them (`notary delegation list`).
    key_ids: Vec<String>,
    /// The same keys' canonical IDs (`docker trust inspect`; a certificate's public key).
    canonical_key_ids: Vec<String>,
    /// None: the role has no file yet (nobody has signed into it).
    expires: Option<Timestamp>,
}

#[derive(Serialize)]
pub(super) struct Published {
    gun: String,
    published: Vec<PublishedRole>,
}

#[derive(Serialize)]
struct PublishedRole {
    role: String,
    version: u64,
}

pub(super) fn gun_of(image: &str) -> Result<String, CliError> {
    let r = ImageRef::parse(image).map_err(|e| CliError::new(e.to_string()))?;
    if r.tag().is_some() || r.digest().is_some() {
        return Err(CliError::new(format!(
            "{image:?}: give the repository without a tag or digest (delegations are the \
             repository's)"
        ))
        .with_code(2));
    }
    Ok(r.gun())
}

pub(super) fn err(e: NotaryError) -> CliError {
    CliError::new(e.to_string())
}

/// The passphrase of the repository key: the file, TRUSTKEEPER_REPO_PASSPHRASE, docker's
/// DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE, or a prompt on a terminal.
fn repo_passphrase(a: &RepoKeyArgs) -> Result<Option<SecretString>, CliError> {
    let label = a.repo_key.as_deref().unwrap_or(std::path::Path::new(""));
    super::init::passphrase_from(
        a.repo_passphrase_file.as_deref(),
        super::init::REPO_VARS,
        &format!("the repository key {}", label.display()),
        false,
    )
}

/// The repository key of `--repo-key`, else the one `gun`'s parent role `parent` lists that
/// the docker/notary trust directory holds.
pub(super) async fn load_repo_key_for(
    g: &Global,
    gun: &str,
    parent: &str,
    a: &RepoKeyArgs,
) -> Result<Vec<SigningKey>, CliError> {
    if a.repo_key.is_some() {
        return load_repo_key(a);
    }
    let found =
        super::key_lookup::find_for_roles(g, gun, &[parent.to_string()], "--repo-key").await?;
    load_repo_key(&RepoKeyArgs {
        repo_key: Some(found),
        repo_passphrase_file: a.repo_passphrase_file.clone(),
    })
}

pub(super) fn load_repo_key(a: &RepoKeyArgs) -> Result<Vec<SigningKey>, CliError> {
    let Some(path) = &a.repo_key else {
        return Err(CliError::new("no repository key: give --repo-key FILE").with_code(2));
    };
    if common::looks_like_key_material(&path.to_string_lossy()) {
        return Err(CliError::new(
            "the --repo-key argument looks like the key itself (not shown): give a file",
        )
        .with_code(2));
    }
    let pem = common::read_file_bounded(
        "repository key",
        path,
        crate::notary::keys::MAX_KEY_BYTES as u64,
        "give the PEM `notary key export` wrote",
    )?;
    if SigningKey::pem_holds_only_root_keys(&pem) {
        return Err(CliError::new(format!(
            "{} is a root key: a delegation is signed into its parent with the repository \
             (targets) key; give that (`notary key export --role targets`)",
            path.display()
        )));
    }
    let encrypted = pem.windows(9).any(|w| w == b"ENCRYPTED");
    let pass = if encrypted { repo_passphrase(a)? } else { None };
    if encrypted && pass.is_none() {
        return Err(CliError::new(format!(
            "{} is encrypted: give its passphrase in TRUSTKEEPER_REPO_PASSPHRASE (or \
             DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE) or --repo-passphrase-file",
            path.display()
        )));
    }
    let keys = SigningKey::from_pem(&pem, pass.as_ref()).map_err(err)?;
    if keys.is_empty() {
        return Err(CliError::new(format!(
            "{} holds no private key",
            path.display()
        )));
    }
    Ok(keys)
}

fn load_public_keys(files: &[PathBuf]) -> Result<Vec<PublicKey>, CliError> {
    files
        .iter()
        .map(|f| {
            let pem = common::read_file_bounded(
                "public key",
                f,
                MAX_PUBLIC_KEY_BYTES,
                "give a PEM public key or certificate",
            )?;
            if pem.windows(11).any(|w| w == b"PRIVATE KEY") {
                return Err(CliError::new(format!(
                    "{} holds a private key: give its public key (`trustkeeper key generate` \
                     writes NAME.pub beside NAME.key)",
                    f.display()
                )));
            }
            PublicKey::from_pem(&pem).map_err(|e| CliError::new(format!("{}: {e}", f.display())))
        })
        .collect()
}

/// A verified repository and what the trust directory kept, for one command.
pub(super) struct Session {
    g: Global,
    gun: String,
    settings: Settings,
    engine: crate::engine::Engine,
    clients: crate::engine::clients::Clients,
    kept: trust_dir::Loaded,
    spec: crate::api::SignedImageSpec,
}

impl Session {
    pub(super) fn new(g: &Global, gun: &str) -> Result<Session, CliError> {
        let spec = common::spec(g, gun, vec![], vec![]);
        let settings = Settings::from_spec(&spec)?;
        settings.notary_in_service(Timestamp::now())?;
        let creds = common::credentials(g, None)?;
        let engine = common::engine(g)?;
        let clients = engine.clients(&settings, &creds)?;
        let kept = trust_dir::load_trust(g, &settings.gun)?;
        kept.seed(engine.cache.memo());
        Ok(Session {
            g: g.clone(),
            gun: settings.gun.clone(),
            settings,
            engine,
            clients,
            kept,
            spec,
        })
    }

    /// The repository as the server has it now, verified from the kept trust state; the new
    /// state is kept.
    pub(super) async fn update(&mut self) -> Result<Repository, CliError> {
        let previous = self.kept.kept.as_ref().map(trust_dir::Kept::status);
        let anchor = trust_anchor(&self.spec, previous.as_ref());
        let (repo, trust) = crate::notary::client::update_with_memo(
            &self.clients.notary,
            &self.gun,
            &anchor,
            Timestamp::now(),
            self.engine.cache.memo(),
        )
        .await
        .map_err(|e| match e {
            NotaryError::UnknownRepository { .. } => CliError::new(format!(
                "{}: the repository is not initialized on {} (no trust data): create it with \
                 `trustkeeper init {}` (or `signer add NAME {}`, which creates it with the \
                 signer)",
                self.gun, self.settings.notary_url, self.gun, self.gun
            )),
            e => err(e),
        })?;
        let status: crate::api::TrustStatus = (&trust).into();
        trust_dir::save_trust(
            &self.g,
            &self.gun,
            &self.kept,
            &trust_dir::Kept::now(status.clone(), self.engine.cache.memo()),
        )?;
        trust_dir::announce_first_use(&self.g, &self.gun, &self.kept, &status);
        self.kept = trust_dir::load_trust(&self.g, &self.gun)?;
        Ok(repo)
    }

    pub(super) fn gun(&self) -> &str {
        &self.gun
    }

    /// Whether the server has trust data for the repository (a root.json).
    pub(super) async fn exists(&self) -> Result<bool, CliError> {
        let root = self.within_deadline(self.clients.notary.get_role(&self.gun, "root"));
        Ok(root.await?.map_err(err)?.is_some())
    }

    /// Creates the repository (see [`crate::notary::NewRepository::create`]).
    pub(super) async fn create(
        &self,
        new: &crate::notary::NewRepository<'_>,
    ) -> Result<crate::notary::InitialMetadata, CliError> {
        let made = self.within_deadline(new.create(&self.clients.notary, Timestamp::now()));
        made.await?.map_err(err)
    }

    async fn within_deadline<T>(
        &self,
        f: impl std::future::Future<Output = T>,
    ) -> Result<T, CliError> {
        let late = self.late();
        (tokio::time::timeout(self.engine.deadline, f).await).map_err(|_| CliError::new(late))
    }

    /// Stages with `stage` on the current repository, signs with `keys`, publishes once, and
    /// reads back (see [`Session::publish_files`]).
    pub(super) async fn publish<F>(
        &mut self,
        keys: &[SigningKey],
        stage: F,
    ) -> Result<Published, CliError>
    where
        F: Fn(&Repository, &mut Editor<'_>) -> Result<(), CliError>,
    {
        self.publish_files(|repo| {
            let mut ed = repo.edit();
            stage(repo, &mut ed)?;
            ed.sign(keys, Timestamp::now()).map_err(err)
        })
        .await
    }

    /// Publishes what `make` signs from the current repository once, and reads back: every
    /// published role must be served at its new version and verify. A version conflict
    /// re-reads and makes the files again.
    pub(super) async fn publish_files<F>(&mut self, make: F) -> Result<Published, CliError>
    where
        F: Fn(&Repository) -> Result<Vec<crate::notary::SignedFile>, CliError>,
    {
        let deadline = self.engine.deadline;
        let late = self.late();
        let run = async {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let repo = self.update().await?;
                let files = make(&repo)?;
                // Already as asked: nothing is published, and a script run twice succeeds.
                if files.is_empty() {
                    return Ok(Published {
                        gun: self.gun.clone(),
                        published: vec![],
                    });
                }
                match self.clients.notary.publish(&self.gun, &files).await {
                    Err(NotaryError::VersionConflict { .. }) if attempt < PUBLISH_ATTEMPTS => {
                        tracing::info!(gun = %self.gun, attempt, "version conflict: another writer published first; re-reading and re-applying");
                        tokio::time::sleep(std::time::Duration::from_millis(200 * attempt as u64))
                            .await;
                        continue;
                    }
                    Err(e) => return Err(err(e)),
                    Ok(()) => {}
                }
                let after = self.update().await?;
                let published: Vec<PublishedRole> = files
                    .iter()
                    .filter(|f| f.role != "snapshot")
                    .map(|f| PublishedRole {
                        role: f.role.clone(),
                        version: f.version,
                    })
                    .collect();
                for p in &published {
                    let ok = if p.role == "root" {
                        after.root_info.version >= p.version
                    } else {
                        (after.role(&p.role)).is_some_and(|r| r.version >= p.version && r.usable())
                    };
                    if !ok {
                        return Err(CliError::new(format!(
                            "published {} v{} to {}, but reading it back does not show it \
                             verified: inspect the repository (`trustkeeper inspect {}`)",
                            p.role, p.version, self.gun, self.gun
                        )));
                    }
                }
                return Ok(Published {
                    gun: self.gun.clone(),
                    published,
                });
            }
        };
        tokio::time::timeout(deadline, run)
            .await
            .map_err(|_| CliError::new(late))?
    }

    fn late(&self) -> String {
        format!(
            "did not finish within the deadline of {} (waiting for the trust server {}): retry, \
             or raise --deadline",
            crate::api::human_duration(self.engine.deadline),
            self.settings.notary_url
        )
    }
}

pub(super) fn print_published(g: &Global, p: &Published, what: &str) {
    if g.output == Output::Json {
        common::print_json(p);
        return;
    }
    if p.published.is_empty() {
        outln!(
            "unchanged {}: already as asked ({what}), nothing published",
            p.gun
        );
    }
    for r in &p.published {
        outln!("published {} v{} of {}: {what}", r.role, r.version, p.gun);
    }
}

fn rows(repo: &Repository, only: Option<&str>) -> Vec<DelegationRow> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in repo.roles() {
        for d in &r.delegations {
            if only.is_some_and(|o| o != d.name) || !seen.insert(d.name.clone()) {
                continue;
            }
            out.push(DelegationRow {
                role: d.name.clone(),
                paths: d.paths.clone(),
                threshold: d.threshold,
                key_ids: d.keys.keys().cloned().collect(),
                canonical_key_ids: d
                    .keys
                    .values()
                    .map(|k| k.canonical_id().unwrap_or_else(|_| k.key_id()))
                    .collect(),
                expires: repo.role(&d.name).map(|x| x.expires),
            });
        }
    }
    out
}

pub async fn delegation(g: &Global, cmd: DelegationCommand) -> Result<(), CliError> {
    match cmd {
        DelegationCommand::List { image, role } => {
            let mut s = Session::new(g, &gun_of(&image)?)?;
            let repo = s.update().await?;
            let rows = rows(&repo, role.as_deref());
            if let Some(r) = &role
                && rows.is_empty()
            {
                return Err(err(NotaryError::UnknownRole { role: r.clone() }));
            }
            if g.output == Output::Json {
                common::print_json(&rows);
                return Ok(());
            }
            if rows.is_empty() {
                outln!("{} has no delegations", s.gun);
            }
            for r in &rows {
                let paths = if r.paths.iter().any(String::is_empty) {
                    "\"\" <all paths>".to_string()
                } else {
                    r.paths.join(", ")
                };
                outln!("role:      {}", r.role);
                outln!("paths:     {paths}");
                outln!("threshold: {}", r.threshold);
                outln!("key IDs:   {}", r.key_ids.join(", "));
                outln!(
                    "expires:   {}",
                    r.expires
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "no file yet (nothing signed into it)".into())
                );
                outln!();
            }
            Ok(())
        }
        DelegationCommand::Add {
            image,
            role,
            keys,
            all_paths,
            paths,
            threshold,
            repo_key,
        } => {
            let gun = gun_of(&image)?;
            crate::notary::delegations::check_delegation_name(&role).map_err(err)?;
            let parent = crate::notary::delegations::parent_of(&role).unwrap_or("targets");
            let pubs = load_public_keys(&keys)?;
            let paths: Vec<String> = if all_paths {
                vec![String::new()]
            } else {
                paths
            };
            if pubs.is_empty() && paths.is_empty() && threshold.is_none() {
                return Err(CliError::new(
                    "nothing to add: give --key, --all-paths / --path or --threshold",
                )
                .with_code(2));
            }
            let signing = load_repo_key_for(g, &gun, parent, &repo_key).await?;
            let mut s = Session::new(g, &gun)?;
            let p = s
                .publish(&signing, |repo, ed| {
                    if repo.declaration(&role).is_none() {
                        if pubs.is_empty() {
                            return Err(CliError::new(format!(
                                "{role} is new: give its keys (--key PUB.pem)"
                            )));
                        }
                        if paths.is_empty() {
                            return Err(CliError::new(format!(
                                "{role} is new: give the tags it may sign, --all-paths or \
                                 --path PREFIX (a role without paths signs nothing)"
                            )));
                        }
                    }
                    ed.add_delegation(&role, &pubs, &paths, threshold)
                        .map_err(err)?;
                    Ok(())
                })
                .await?;
            print_published(g, &p, &format!("{role} updated"));
            Ok(())
        }
        DelegationCommand::Remove {
            image,
            role,
            key_ids,
            repo_key,
        } => {
            let gun = gun_of(&image)?;
            crate::notary::delegations::check_delegation_name(&role).map_err(err)?;
            let parent = crate::notary::delegations::parent_of(&role).unwrap_or("targets");
            let signing = load_repo_key_for(g, &gun, parent, &repo_key).await?;
            let mut s = Session::new(g, &gun)?;
            let p = s
                .publish(&signing, |_, ed| {
                    if key_ids.is_empty() {
                        ed.remove_delegation(&role).map_err(err)?;
                    } else {
                        ed.remove_delegation_keys(&role, &key_ids).map_err(err)?;
                    }
                    Ok(())
                })
                .await?;
            let what = if key_ids.is_empty() {
                format!("{role} removed")
            } else {
                format!("{} key(s) removed from {role}", key_ids.len())
            };
            print_published(g, &p, &what);
            Ok(())
        }
    }
}

pub(super) const RELEASES: &str = "targets/releases";

/// A signer name as docker takes it (`targets/NAME`).
pub(super) fn signer_role(name: &str) -> Result<String, CliError> {
    if name == "releases" {
        return Err(CliError::new(
            "releases is reserved (it is targets/releases, which every signer signs into): \
             choose another signer name",
        )
        .with_code(2));
    }
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        return Err(CliError::new(format!(
            "signer name {name:?}: lower-case letters, digits, - and _, starting with a letter \
             or digit, at most 64 (docker's rule)"
        ))
        .with_code(2));
    }
    Ok(format!("targets/{name}"))
}

pub async fn signer(g: &Global, cmd: SignerCommand) -> Result<(), CliError> {
    match cmd {
        SignerCommand::Rotate(a) => super::rotate::rotate(g, a).await,
        SignerCommand::Add {
            name,
            image,
            keys,
            repo_key,
            root_key,
        } => {
            let role = signer_role(&name)?;
            let gun = gun_of(&image)?;
            let pubs = load_public_keys(&keys)?;
            let mut s = Session::new(g, &gun)?;
            // docker trust signer add's first use: the repository is created with the signer
            // in it, in one publish.
            let created = super::init::create_if_missing(
                g,
                &mut s,
                &root_key,
                (
                    repo_key.repo_key.as_deref(),
                    repo_key.repo_passphrase_file.as_deref(),
                ),
                &[
                    (role.clone(), pubs.clone()),
                    (RELEASES.into(), pubs.clone()),
                ],
            )
            .await?;
            if let Some(c) = created {
                super::init::print_created(g, &c);
                return Ok(());
            }
            let signing = load_repo_key_for(g, &gun, "targets", &repo_key).await?;
            let all = [String::new()];
            let p = s
                .publish(&signing, |_, ed| {
                    ed.add_delegation(&role, &pubs, &all, None).map_err(err)?;
                    ed.add_delegation(RELEASES, &pubs, &all, None)
                        .map_err(err)?;
                    Ok(())
                })
                .await?;
            print_published(
                g,
                &p,
                &format!("signer {name} added ({role} and {RELEASES})"),
            );
            Ok(())
        }
        SignerCommand::Remove {
            name,
            image,
            force,
            repo_key,
        } => {
            let role = signer_role(&name)?;
            let gun = gun_of(&image)?;
            let signing = load_repo_key_for(g, &gun, "targets", &repo_key).await?;
            let mut s = Session::new(g, &gun)?;
            let emptied = std::sync::atomic::AtomicBool::new(false);
            let p = s
                .publish(&signing, |repo, ed| {
                    let Some((d, _)) = repo.declaration(&role) else {
                        return Err(CliError::new(format!(
                            "no signer {name} in {}: `trustkeeper delegation list {}` shows \
                             the signers",
                            repo.gun, repo.gun
                        )));
                    };
                    let signer_keys: Vec<String> = d.keys.keys().cloned().collect();
                    ed.remove_delegation(&role).map_err(err)?;
                    if let Some((rel, _)) = repo.declaration(RELEASES) {
                        let gone: Vec<String> = rel
                            .keys
                            .keys()
                            .filter(|k| signer_keys.contains(k))
                            .cloned()
                            .collect();
                        if gone.len() == rel.keys.len() && !gone.is_empty() {
                            if !force {
                                return Err(CliError::new(format!(
                                    "signer {name} holds every key of {RELEASES}: without \
                                     them nobody can sign releases and docker pulls of signed \
                                     tags fail; add another signer first, or pass --force"
                                )));
                            }
                            emptied.store(true, std::sync::atomic::Ordering::Relaxed);
                            ed.remove_delegation_keys_leaving_none(RELEASES, &gone)
                                .map_err(err)?;
                        } else if !gone.is_empty() {
                            ed.remove_delegation_keys(RELEASES, &gone).map_err(err)?;
                        }
                    }
                    Ok(())
                })
                .await?;
            if emptied.load(std::sync::atomic::Ordering::Relaxed) {
                eprintln!(
                    "warning: {RELEASES} of {gun} has no keys left: docker pulls with content \
                     trust fail until a signer is added (`trustkeeper signer add NAME {gun}`)"
                );
            }
            print_published(g, &p, &format!("signer {name} removed"));
            Ok(())
        }
    }
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    /// The tag whose signature goes, as IMAGE:TAG.
    #[arg(value_name = "IMAGE:TAG")]
    pub image: String,
    /// Role to remove it from (repeatable) [default: every role holding the tag that the key
    /// signs].
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// The key of the role: a PEM written by `notary key export`, or `-` for standard input
    /// [default: the PEM text in TRUSTKEEPER_KEY]; its passphrase as for `sign`.
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
}

/// `remove IMAGE:TAG`: drops the tag from roles (`notary remove GUN TAG -r ROLE` + `publish`),
/// e.g. a stale entry in a role docker reads first (TagShadowed).
pub async fn remove(g: &Global, a: RemoveArgs) -> Result<(), CliError> {
    let r = ImageRef::parse(&a.image).map_err(|e| CliError::new(e.to_string()))?;
    let Some(tag) = r.tag().map(str::to_string) else {
        return Err(
            CliError::new(format!("{:?} names no tag: give IMAGE:TAG", a.image)).with_code(2),
        );
    };
    if r.digest().is_some() {
        return Err(
            CliError::new(format!("{:?}: give IMAGE:TAG without a digest", a.image)).with_code(2),
        );
    }
    let keys = super::revoke::role_keys(g, &r.gun(), a.key.as_deref(), &a.roles).await?;
    let (p, dropped) =
        super::revoke::drop_signatures(g, &r.gun(), &keys, Some(&tag), &a.roles).await?;
    let roles: Vec<&str> = dropped.iter().map(|(r, _)| r.as_str()).collect();
    print_published(g, &p, &format!("{tag} removed from {}", roles.join(", ")));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signer_names_follow_docker() {
        assert_eq!(signer_role("alice").unwrap(), "targets/alice");
        assert_eq!(signer_role("ci-bot_2").unwrap(), "targets/ci-bot_2");
        for bad in ["releases", "", "Alice", "-x", "a/b", "a b", &"a".repeat(65)] {
            let e = signer_role(bad).unwrap_err();
            assert_eq!(e.code, 2, "{bad:?}: {e}");
        }
    }

    #[test]
    fn delegations_are_of_a_repository_not_a_tag() {
        assert_eq!(
            gun_of("registry.example.com/team/app").unwrap(),
            "registry.example.com/team/app"
        );
        assert_eq!(
            gun_of("registry.example.com/team/app:v1").unwrap_err().code,
            2
        );
    }
}
