//! `sign` and `witness`: one reconcile of a SignedImage that the command line stands for.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use super::common::{self, CliError};
use super::trust_dir;
use super::{Global, Output};
use crate::api::SignedImageSpec;
use crate::engine::model::Manifest;
use crate::engine::report::Surface;
use crate::engine::request::RunOptions;
use crate::engine::{Engine, Outcome, ReconcileRequest, RunSecrets};
use crate::formats::Format;
use crate::registry::ImageRef;

#[derive(Args, Debug)]
pub struct SignArgs {
    /// Images to sign, as IMAGE:TAG (all of one repository).
    #[arg(required = true, value_name = "IMAGE:TAG")]
    pub images: Vec<String>,
    /// The signing key: a PEM written by `notary key export`, or `-` to read it from standard
    /// input [default: the PEM text in TRUSTKEEPER_KEY].
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// The key ID the signing key must have (plain, or as a certificate the role lists);
    /// nothing is published when it differs.
    #[arg(long, env = "TRUSTKEEPER_KEY_ID", value_name = "ID")]
    pub key_id: Option<String>,
    /// Role to sign into (repeatable) [default: what `docker trust sign` picks].
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// Sign every tag as this manifest (sha256:HEX) without asking the registry, as `notary
    /// addhash` does: for a step that has just pushed and knows the digest. Needs --size.
    #[arg(long, requires = "size", value_name = "sha256:HEX")]
    pub digest: Option<String>,
    /// Length in bytes of the manifest --digest names (what the push printed as its size).
    #[arg(long, requires = "digest", value_name = "BYTES")]
    pub size: Option<u64>,
    /// With --digest: do not ask the registry whether it serves that manifest with that size
    /// for every tag (as `notary addhash` never does), e.g. when the registry cannot be reached.
    #[arg(long, requires = "digest")]
    pub no_registry_check: bool,
    /// Print the plan (tags to add, roles to re-sign with versions and new expiries; with
    /// cosign or notation, the digests they would sign) and publish nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Signature formats to make (repeatable or comma-separated): `notary` (Docker Content
    /// Trust, on the notary server), `cosign` (the `sha256-<hex>.sig` tag in the registry that
    /// `cosign verify --key PUB --insecure-ignore-tlog` checks; needs no notary server; the
    /// key must be ECDSA P-256), `notation` (a Notary Project signature with the registry's
    /// referrers; needs --certificate).
    #[arg(
        long = "format",
        value_name = "FORMAT",
        value_delimiter = ',',
        default_value = "notary",
        value_parser = Format::parse
    )]
    pub formats: Vec<Format>,
    /// With --format notation: the signing certificate chain (PEM, leaf first) whose leaf
    /// certifies the key (`trustkeeper key certificate` makes a self-signed one).
    #[arg(long, value_name = "CERT.pem")]
    pub certificate: Option<PathBuf>,
    /// With --format notation: the signature's own expiry (`io.cncf.notary.expiry`) this long
    /// after signing, a Go duration (e.g. 720h); a run signs again when a third of it (at most
    /// 7 days) is left [default: none, the certificate's validity bounds it].
    #[arg(long, value_name = "DURATION", value_parser = super::flag_duration)]
    pub signature_expiry: Option<std::time::Duration>,
}

#[derive(Args, Debug)]
pub struct WitnessArgs {
    /// The image repository.
    pub image: String,
    /// The signing key: a PEM written by `notary key export`, or `-` to read it from standard
    /// input [default: the PEM text in TRUSTKEEPER_KEY].
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// The key ID the signing key must have (plain, or as a certificate the role lists);
    /// nothing is published when it differs.
    #[arg(long, env = "TRUSTKEEPER_KEY_ID", value_name = "ID")]
    pub key_id: Option<String>,
    /// Role to renew (repeatable) [default: every role the key can sign]. `root` alone renews
    /// root with the root key (`--key` or found by ID; its passphrase from --passphrase-file,
    /// TRUSTKEEPER_ROOT_PASSPHRASE or DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE).
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// Print the plan (roles to re-sign with versions and new expiries) and publish nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn sign(g: &Global, a: SignArgs) -> Result<(), CliError> {
    if a.formats.contains(&Format::Notation) && a.certificate.is_none() {
        return Err(CliError::new(
            "--format notation needs --certificate CERT.pem: the signing certificate chain \
             (PEM, leaf first) for the key; without a PKI, make a self-signed one with \
             `trustkeeper key certificate --key KEY --out cert.pem`",
        ));
    }
    let mut repo: Option<String> = None;
    let mut tags = Vec::new();
    for i in &a.images {
        let r = ImageRef::parse(i).map_err(|e| CliError::new(e.to_string()))?;
        let tag = r
            .tag()
            .ok_or_else(|| CliError::new(format!("{i:?} names no tag: give IMAGE:TAG")))?;
        if r.digest().is_some() {
            return Err(CliError::new(format!(
                "{i:?} carries a digest: give it as --digest with --size, or leave it out to sign what the registry serves for the tag"
            )));
        }
        let gun = r.gun();
        if repo.as_ref().is_some_and(|g| *g != gun) {
            return Err(CliError::new(
                "all images must be of one repository: run sign once per repository",
            ));
        }
        repo = Some(gun);
        tags.push(tag.to_string());
    }
    let gun = repo.expect("at least one image");
    let spec = common::spec(g, &gun, tags.clone(), a.roles);
    let engine = common::engine(g)?;
    let pinned = match (a.digest, a.size) {
        (Some(d), Some(size)) => {
            let m = pinned_manifest(&d, size)?;
            if !a.no_registry_check {
                check_pinned(g, &engine, &spec, &tags, &d, size).await?;
            }
            tags.iter().map(|t| (t.clone(), m.clone())).collect()
        }
        _ => BTreeMap::new(),
    };
    let options = RunOptions {
        key_id: a.key_id.clone(),
        surface: Surface::Cli,
        dry_run: a.dry_run,
        ..Default::default()
    };
    // Keys by ID are the notary roles' (the repository names them); other formats name theirs.
    let found = if a.formats.contains(&Format::Notary) {
        super::key_lookup::key_path(g, &gun, a.key.as_deref(), &spec.roles).await?
    } else {
        None
    };
    // Read once: `--key -` is standard input.
    let credentials = common::signing_credentials(g, found.as_deref().or(a.key.as_deref()))?;
    let notation = a.formats.contains(&Format::Notation);
    let for_registry = RunSecrets {
        signing_key_pem: credentials.signing_key_pem.clone(),
        passphrase: credentials.passphrase.clone(),
        registry_auth: credentials.registry_auth.clone(),
        registry_ca: credentials.registry_ca.clone(),
        notary_auth: None,
        notary_ca: None,
        notation_chain_pem: None,
    };
    // Each format is tried whatever the others' outcome (a notary that is gone must not stop
    // the signatures that replace it), all at once: they write to different servers or tags,
    // and most of a registry format's time is the wait before its read-back.
    let notary_run = async {
        if !a.formats.contains(&Format::Notary) {
            return None;
        }
        run(
            g,
            &spec,
            engine.clone(),
            &options,
            credentials,
            pinned.clone(),
        )
        .await
        .err()
    };
    let cosign_run = async {
        if !a.formats.contains(&Format::Cosign) {
            return None;
        }
        super::cosign::sign(
            g,
            &spec,
            &engine,
            &for_registry,
            a.key_id.as_deref(),
            &pinned,
            a.dry_run,
        )
        .await
        .err()
    };
    let notation_run = async {
        let cert = a.certificate.as_deref().filter(|_| notation)?;
        super::notation::sign(
            g,
            &spec,
            &engine,
            &for_registry,
            a.key_id.as_deref(),
            super::notation::NotationFlags {
                certificate: cert,
                signature_expiry: a.signature_expiry,
                dry_run: a.dry_run,
            },
            &pinned,
        )
        .await
        .err()
    };
    let (n, c, t) = tokio::join!(notary_run, cosign_run, notation_run);
    let mut errors: Vec<CliError> = [n, c, t].into_iter().flatten().collect();
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.pop().expect("one")),
        _ => Err(CliError::new(
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )),
    }
}

/// `--digest` and `--size` checked against the registry: it must serve that manifest with
/// that length, and each tag must point at it. The registry client is the one the run then
/// uses (kept in the engine's pool).
async fn check_pinned(
    g: &Global,
    engine: &Engine,
    spec: &SignedImageSpec,
    tags: &[String],
    digest: &str,
    size: u64,
) -> Result<(), CliError> {
    use crate::registry::RegistryError;
    let settings =
        crate::engine::Settings::from_spec(spec).map_err(|f| CliError::new(f.message))?;
    let creds = common::credentials(g, None)?;
    let reg = engine
        .clients(&settings, &creds)
        .map_err(|f| CliError::new(f.message))?
        .registry;
    let image = &settings.image;
    let repo = image.repository_only();
    let skip = "or pass --no-registry-check to sign it without asking the registry";
    let raw = match reg.get_manifest_raw(image, digest).await {
        Ok(r) => r,
        Err(RegistryError::NotFound { .. }) => {
            return Err(CliError::new(format!(
                "--digest {digest}: the registry has no such manifest in {repo}: check the \
                 digest the push printed, {skip}"
            )));
        }
        Err(e) => {
            return Err(CliError::new(format!(
                "--digest {digest} cannot be checked: {e}; {skip}"
            )));
        }
    };
    if raw.descriptor.size != size {
        return Err(CliError::new(format!(
            "--size {size}: the manifest {digest} is {} bytes in the registry: give its exact \
             length, {skip}",
            raw.descriptor.size
        )));
    }
    for tag in tags {
        let d = match reg.resolve(image, tag).await {
            Ok(d) => d,
            Err(RegistryError::NotFound { .. }) => {
                return Err(CliError::new(format!(
                    "{repo}:{tag} is not in the registry, so it cannot be checked to be {digest}: \
                     push the tag first, {skip}"
                )));
            }
            Err(e) => {
                return Err(CliError::new(format!(
                    "{repo}:{tag} cannot be checked: {e}; {skip}"
                )));
            }
        };
        if d.digest == digest {
            continue;
        }
        let is_index = d.media_type == crate::registry::manifest::DOCKER_MANIFEST_LIST_V2
            || d.media_type == crate::registry::manifest::OCI_INDEX_V1;
        let contains = is_index
            && reg
                .get_manifest_raw(image, &d.digest)
                .await
                .is_ok_and(|list| index_contains(&list.bytes, digest));
        if contains {
            return Err(CliError::new(format!(
                "{repo}:{tag} is a multi-platform manifest list/index ({}, {} bytes) and \
                 {digest} is one platform's manifest inside it: docker pulls the tag by the \
                 list's digest, so signing the platform's would fail every pull with content \
                 trust; sign the list (leave out --digest/--size, or give --digest {} --size {})",
                d.digest, d.size, d.digest, d.size
            )));
        }
        return Err(CliError::new(format!(
            "{repo}:{tag} points at {} ({} bytes) in the registry, not at {digest}: give the \
             tag's own digest and size, {skip}",
            d.digest, d.size
        )));
    }
    Ok(())
}

/// Whether a manifest list / OCI index names `digest` among its manifests.
fn index_contains(bytes: &[u8], digest: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Index {
        manifests: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        digest: String,
    }
    serde_json::from_slice::<Index>(bytes)
        .is_ok_and(|i| i.manifests.iter().any(|m| m.digest == digest))
}

/// The manifest `--digest` and `--size` name, checked as an image reference's digest is.
fn pinned_manifest(digest: &str, size: u64) -> Result<Manifest, CliError> {
    crate::registry::reference::validate_digest(digest)
        .map_err(|e| CliError::new(format!("--digest: {e}")))?;
    let hex = digest.trim_start_matches("sha256:");
    if size == 0 {
        return Err(CliError::new(
            "--size 0: give the manifest's length in bytes",
        ));
    }
    Ok(Manifest {
        sha256: hex.to_string(),
        size,
        media_type: None,
    })
}

pub async fn witness(g: &Global, a: WitnessArgs) -> Result<(), CliError> {
    let r = ImageRef::parse(&a.image).map_err(|e| CliError::new(e.to_string()))?;
    if a.roles.iter().any(|x| x == "root") {
        // Root is signed by the root key, offline, never the key that renews the rest.
        if a.roles.len() > 1 {
            return Err(CliError::new(
                "renew root on its own (`witness IMAGE --role root --key ROOT.key`), then the \
                 other roles with their key",
            )
            .with_code(2));
        }
        return super::init::renew_root(g, &r.gun(), a.key.as_deref(), a.dry_run).await;
    }
    let spec = common::spec(g, &r.gun(), vec![], a.roles);
    let options = RunOptions {
        force_renew: true,
        key_id: a.key_id,
        surface: Surface::Cli,
        dry_run: a.dry_run,
    };
    let engine = common::engine(g)?;
    let found = super::key_lookup::key_path(g, &r.gun(), a.key.as_deref(), &spec.roles).await?;
    let credentials = common::signing_credentials(g, found.as_deref().or(a.key.as_deref()))?;
    run(g, &spec, engine, &options, credentials, BTreeMap::new()).await
}

async fn run(
    g: &Global,
    spec: &SignedImageSpec,
    engine: Engine,
    options: &RunOptions,
    // A root key is refused by the engine's key loading (its header), before any derivation.
    credentials: RunSecrets,
    pinned: BTreeMap<String, Manifest>,
) -> Result<(), CliError> {
    let gun = ImageRef::parse(&spec.image)
        .map_err(|e| CliError::new(e.to_string()))?
        .gun();
    let kept_trust = trust_dir::load_trust(g, &gun)?;
    kept_trust.seed(engine.cache.memo());
    let previous = kept_trust.kept.as_ref().map(trust_dir::Kept::status);
    // The metadata kept from the last run stands in for downloads (only when the trust state
    // it was verified under is kept too).
    let server = crate::engine::Settings::from_spec(spec)
        .map(|s| s.notary_url)
        .unwrap_or_default();
    let kept = if previous.is_some() {
        trust_dir::load_metadata(g, &gun)
    } else {
        trust_dir::Metadata::default()
    };
    engine.cache.put(&server, &gun, kept.files.clone());
    if options.dry_run {
        // Nothing is kept either: the trust directory stays as it was.
        let plan = engine
            .dry_run(
                ReconcileRequest {
                    id: &gun,
                    spec,
                    generation: None,
                    previous: previous.as_ref(),
                    credentials,
                    pinned,
                },
                options,
            )
            .await?;
        if g.output == Output::Json {
            common::print_json(&plan);
        } else {
            out!("{}", plan.text());
        }
        return Ok(());
    }
    let outcome = engine
        .run_with(
            ReconcileRequest {
                id: &gun,
                spec,
                generation: None,
                previous: previous.as_ref(),
                credentials,
                pinned,
            },
            options,
        )
        .await;
    if let Some(t) = &outcome.status.trust {
        let now = engine.cache.get(&server, &gun);
        let files_changed = outcome.failure_reason.is_none() && now != kept.files;
        // The metadata files are only used under a trust state that matches them, so their
        // order does not matter.
        trust_dir::save_trust(
            g,
            &gun,
            &kept_trust,
            &trust_dir::Kept::now(t.clone(), engine.cache.memo()),
        )?;
        trust_dir::announce_first_use(g, &gun, &kept_trust, t);
        if files_changed {
            trust_dir::save_metadata(g, &gun, &kept, &now)?;
        }
    }
    report(g, &gun, &outcome)
}

/// Prints the outcome; a failed run is an error with its reason and message.
pub fn report(g: &Global, gun: &str, o: &Outcome) -> Result<(), CliError> {
    let ready = o.status.ready();
    if g.output == Output::Json {
        common::print_json(&JsonReport {
            status: &o.status,
            signed: &o.signed,
            renewed: &o.renewed,
        });
    } else if o.failure_reason.is_none() {
        for t in &o.status.signed_tags {
            let new = if o.signed.contains(&t.tag) {
                "signed"
            } else {
                "unchanged"
            };
            outln!(
                "{new:9} {gun}:{} {} ({} bytes) in {}",
                t.tag,
                t.digest,
                t.size,
                t.role
            );
        }
        for f in &o.status.signatures {
            let new = if (o.signed_formats.iter()).any(|(d, x)| *d == f.digest && *x == f.format) {
                "signed"
            } else {
                "unchanged"
            };
            let until = (f.until.as_ref()).map_or(String::new(), |u| format!(" until {}", u.0));
            outln!(
                "{new:9} {gun}:{} {} in {} by {}{until}",
                f.tag,
                f.digest,
                format!("{:?}", f.format).to_lowercase(),
                f.signer
            );
        }
        for r in &o.renewed {
            let until = o
                .status
                .roles
                .iter()
                .find(|x| &x.name == r)
                .map(|x| x.expires.0.to_string())
                .unwrap_or_default();
            outln!("renewed   {r} until {until}");
        }
        if let Some(c) = ready {
            outln!("{}", c.message);
        }
    }
    match (o.failure_reason, ready) {
        (Some(reason), Some(c)) => Err(CliError::new(format!("{reason}: {}", c.message))),
        (Some(reason), None) => Err(CliError::new(reason)),
        _ => Ok(()),
    }
}

/// `-o json`: the status, and what this run changed (the Action's `signed` and `renewed`
/// outputs).
#[derive(serde::Serialize)]
struct JsonReport<'a> {
    #[serde(flatten)]
    status: &'a crate::api::SignedImageStatus,
    /// Tags this run signed or moved.
    signed: &'a [String],
    /// Roles this run re-signed.
    renewed: &'a [String],
}
