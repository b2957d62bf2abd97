//! One reconcile with I/O at the edges: resolve (registry + notary) → plan (pure) → apply (sign,
//! one publish) → verify (read back) → status. A version conflict (another writer published
//! first) refetches and re-plans after a jittered backoff, a bounded number of times. The whole
//! run has a deadline: a server that answers slowly or never ends it with a reason, not a hang.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tracing::Instrument;

use super::clients::{ClientPool, Clients};
use super::failure::Failure;
use super::model::{Manifest, RepoView};
use super::plan::{ChangeKind, Plan, PlanInput, apply_to_view, plan};
use super::request::{
    EngineEvent, EventType, Outcome, ReconcileRequest, Reconciler, Requests, RunOptions, RunSecrets,
};
use super::view::repo_view;
use super::{schedule, status};
use crate::api::{self, SignedImageSpec, SignedImageStatus, TrustStatus, reasons};
use crate::notary::cache::{CachedFetch, Files, MetadataCache};
use crate::notary::client::update_with_memo;
use crate::notary::{self, Repository, SigningKey, TrustAnchor, TrustState};
use crate::notary::{KeySource as _, PemKeySource, Signer};
use crate::registry::{self, ImageRef, RegistryClient, TagSelector};

/// Publishes tried per run when other writers keep winning the race and none is seen to make
/// progress; each publish of another writer seen between two attempts allows one more.
pub const MAX_PUBLISH_ATTEMPTS: u32 = 4;
/// Publishes tried per run at most, however many other writers are seen.
pub const MAX_PUBLISH_ATTEMPTS_CAP: u32 = 64;

/// The reconcile engine. Holds settings only; clients are built per run from the run's
/// credentials, each with one connection pool per server.
#[derive(Clone, Debug)]
pub struct Engine {
    /// Timeout of each HTTP request.
    pub timeout: Duration,
    /// Longest time one run may take, every request, retry and backoff included.
    pub deadline: Duration,
    /// Registry requests in flight at once.
    pub registry_concurrency: usize,
    /// CA certificates (PEM) trusted for every registry and notary server, on top of the system
    /// roots and of each SignedImage's own CAs (the chart's `extraCaBundle`).
    pub extra_ca: Option<Vec<u8>>,
    /// Clients kept between runs (shared by clones).
    pub client_pool: ClientPool,
    /// Verified trust metadata kept between runs (shared by clones): an unchanged repository
    /// then costs one notary request, `timestamp.json`.
    pub cache: MetadataCache,
    /// The most trust metadata one repository update reads, every file together, whatever the
    /// server announces (`--max-metadata-size`): runs at once times this must fit the memory.
    pub max_metadata_bytes: u64,
}

/// The deadline of a run when none is configured.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);

impl Default for Engine {
    fn default() -> Self {
        Engine {
            timeout: Duration::from_secs(30),
            deadline: DEFAULT_DEADLINE,
            registry_concurrency: 8,
            extra_ca: None,
            client_pool: ClientPool::default(),
            cache: MetadataCache::default(),
            max_metadata_bytes: notary::client::DEFAULT_MAX_METADATA_BYTES,
        }
    }
}

impl Reconciler for Engine {
    fn reconcile(&self, request: ReconcileRequest<'_>) -> impl Future<Output = Outcome> + Send {
        self.run(request)
    }
}

/// The spec's values, parsed.
pub struct Settings {
    pub image: ImageRef,
    pub gun: String,
    pub notary_url: String,
    pub validity: SignedDuration,
    pub renew_before: SignedDuration,
    pub interval: SignedDuration,
    /// `spec.registry.insecureTokenRealm` / `spec.notary.insecureTokenRealm`.
    pub insecure_registry_realm: bool,
    pub insecure_notary_realm: bool,
}

fn invalid(msg: impl Into<String>) -> Failure {
    Failure::new(reasons::INVALID_SPEC, msg)
}

/// The notary server of an image when the spec names none, by docker's rules (so that
/// trustkeeper reads the trust data `docker pull` reads): `DOCKER_CONTENT_TRUST_SERVER` (https
/// only), then Docker Hub's notary for Docker Hub images, else `https://<registry host>` with
/// the registry's own port (not a notary port guessed beside it).
pub fn default_notary_url(image: &ImageRef) -> Result<String, Failure> {
    if let Ok(s) = std::env::var("DOCKER_CONTENT_TRUST_SERVER")
        && !s.trim().is_empty()
    {
        let s = s.trim();
        if !s.starts_with("https://") || s.len() == "https://".len() {
            return Err(invalid(format!(
                "DOCKER_CONTENT_TRUST_SERVER {s:?} is not an https URL: trust data is never \
                 fetched in the clear; give https://HOST[:PORT] (as docker requires)"
            )));
        }
        return Ok(s.trim_end_matches('/').to_string());
    }
    Ok(
        if registry::reference::is_docker_hub(image.registry_host()) {
            "https://notary.docker.io".into()
        } else {
            format!("https://{}", image.registry_host())
        },
    )
}

impl Settings {
    pub fn from_spec(spec: &SignedImageSpec) -> Result<Settings, Failure> {
        let image =
            ImageRef::parse(&spec.image).map_err(|e| invalid(format!("spec.image: {e}")))?;
        if image.tag().is_some() || image.digest().is_some() {
            return Err(invalid(format!(
                "spec.image {:?} names a tag or digest: give the repository only and list tags in spec.tags",
                spec.image
            )));
        }
        let dur = |field: &str, v: &str| {
            api::parse_go_duration(v)
                .map(|d| d.0)
                .map_err(|e| invalid(format!("spec.{field}: {e}")))
        };
        let validity = dur("validity", &spec.validity)?;
        let renew_before = dur("renewBefore", &spec.renew_before)?;
        let interval = dur("interval", &spec.interval)?;
        if renew_before >= validity {
            return Err(invalid(
                "spec.renewBefore must be shorter than spec.validity",
            ));
        }
        let notary_url = match &spec.notary.url {
            Some(u) if u.starts_with("https://") => u.trim_end_matches('/').to_string(),
            Some(u) => {
                return Err(invalid(format!(
                    "spec.notary.url {u:?} is not https: trust data is never fetched in the clear; \
                     configure the server's CA instead"
                )));
            }
            None => default_notary_url(&image)?,
        };
        Ok(Settings {
            gun: image.gun(),
            image,
            notary_url,
            validity,
            renew_before,
            interval,
            insecure_registry_realm: spec.registry.insecure_token_realm,
            insecure_notary_realm: spec.notary.insecure_token_realm,
        })
    }
}

impl From<&TrustStatus> for TrustState {
    fn from(t: &TrustStatus) -> Self {
        TrustState {
            root_key_ids: t.root_key_ids.clone(),
            root_version: t.root_version,
            versions: t.versions.clone(),
        }
    }
}

impl From<&TrustState> for TrustStatus {
    fn from(t: &TrustState) -> Self {
        TrustStatus {
            root_key_ids: t.root_key_ids.clone(),
            root_version: t.root_version,
            versions: t.versions.clone(),
        }
    }
}

/// How to trust the repository's root this time. Pinned root keys hold also over a trust
/// already kept: the kept root must be the pinned one or reached from it by rotations.
pub fn trust_anchor(spec: &SignedImageSpec, previous: Option<&SignedImageStatus>) -> TrustAnchor {
    match previous.and_then(|p| p.trust.as_ref()) {
        Some(t) if !spec.notary.root_key_ids.is_empty() => TrustAnchor::PinnedState {
            pins: spec.notary.root_key_ids.clone(),
            state: t.into(),
        },
        Some(t) => TrustAnchor::State(t.into()),
        None if !spec.notary.root_key_ids.is_empty() => {
            TrustAnchor::PinnedKeys(spec.notary.root_key_ids.clone())
        }
        None => TrustAnchor::FirstUse,
    }
}

/// A failed read of the trust data: a 5xx or 429 answer to a GET means the server is not
/// available (`NotaryUnreachable`, retried with backoff), not that a publish was refused.
fn fetch_failure(e: notary::Error) -> Failure {
    match &e {
        notary::Error::Server { status, .. } if *status >= 500 || *status == 429 => {
            Failure::new(reasons::NOTARY_UNREACHABLE, e.to_string())
        }
        _ => e.into(),
    }
}

/// Loads the signing keys (all blocks of the PEM) on a thread of its own, beside the first
/// requests: the key derivation of an encrypted key costs about as much CPU as they do. That
/// thread runs at the lowest CPU priority. The keys are needed only once the repository is read,
/// while the TLS handshake and the timestamp fetch are on the critical path, and on a machine
/// with few cores the derivation competed with them and with the notary server for the CPU
/// (witness on the testbed: `ts fetched` 1.64-1.75 -> 1.45-1.49 ms, medians of 25).
pub async fn load_keys(creds: &RunSecrets) -> Result<Vec<Box<dyn Signer>>, Failure> {
    let input = std::sync::Arc::new((creds.signing_key_pem.clone(), creds.passphrase.clone()));
    let theirs = input.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("key-derivation".into())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(load_keys_from(&theirs.0, theirs.1.as_ref()));
        });
    match spawned {
        Ok(_) => rx.await.unwrap_or_else(|_| {
            Err(Failure::new(
                reasons::BAD_KEY,
                "loading the signing key failed: its thread ended early",
            ))
        }),
        // No thread to spare: derive here.
        Err(_) => load_keys_from(&input.0, input.1.as_ref()),
    }
}

/// Gives the calling thread the lowest CPU priority (nice 19); it runs when a core is idle.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system call. With `who` 0 it changes the calling thread only: on Linux the
    // nice value is per thread. A failure leaves the priority as it was.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

fn load_keys_from(
    pem: &[u8],
    passphrase: Option<&secrecy::SecretString>,
) -> Result<Vec<Box<dyn Signer>>, Failure> {
    if pem.is_empty() {
        return Err(Failure::new(
            reasons::BAD_KEY,
            "the signing key is empty: give the PEM `notary key export` wrote",
        ));
    }
    if SigningKey::pem_holds_only_root_keys(pem) {
        return Err(Failure::new(
            reasons::BAD_KEY,
            "the signing key is the root key (its header says role: root): it signs only the \
             root role and is never a signer of tags or targets; give the repository key (role \
             targets) or a delegation key (`notary key list` shows each key's role)",
        ));
    }
    let keys = PemKeySource { pem, passphrase }.signers()?;
    if keys.is_empty() {
        return Err(Failure::new(
            reasons::BAD_KEY,
            "the PEM holds no private key (only certificates or public keys?): give the private key `notary key export` wrote",
        ));
    }
    Ok(keys)
}

/// The configured key ID names one of the keys given: its plain ID, or the ID of a
/// certificate a role lists for it.
fn check_key_id(expected: &str, key_ids: &[String], view: &RepoView) -> Result<(), Failure> {
    let expected = expected.trim();
    let cert_ids: BTreeSet<&str> = (view.roles.iter().flat_map(|r| &r.signers))
        .filter(|s| s.id != s.canonical_id && key_ids.contains(&s.canonical_id))
        .map(|s| s.id.as_str())
        .collect();
    if key_ids.iter().any(|k| k == expected) || cert_ids.contains(expected) {
        return Ok(());
    }
    let certs = if cert_ids.is_empty() {
        String::new()
    } else {
        format!(
            " (as a certificate: {})",
            cert_ids.into_iter().collect::<Vec<_>>().join(", ")
        )
    };
    Err(Failure::new(
        reasons::BAD_KEY,
        format!(
            "the signing key is {}{certs}, not the expected key ID {expected}; nothing was \
             published: give the key with ID {expected}, or fix the key ID (--key-id, \
             private-key-id)",
            key_ids.join(", ")
        ),
    ))
}

/// What the registry holds for the selection.
pub struct Resolved {
    /// Selected tags present in the registry.
    pub desired: BTreeMap<String, Manifest>,
    /// Exact names in the selection that the registry lacks.
    pub absent: BTreeSet<String>,
    /// The full tag list, when it was fetched (globs).
    pub listed: Option<BTreeSet<String>>,
    pub selector: Option<TagSelector>,
}

/// Resolves the selected tags to what a pull by tag gets now.
pub async fn resolve_tags(
    reg: &RegistryClient,
    image: &ImageRef,
    patterns: &[String],
) -> Result<Resolved, Failure> {
    let mut out = Resolved {
        desired: BTreeMap::new(),
        absent: BTreeSet::new(),
        listed: None,
        selector: None,
    };
    if patterns.is_empty() {
        return Ok(out);
    }
    let selector = TagSelector::new(patterns).map_err(|e| invalid(format!("spec.tags: {e}")))?;
    let names = if selector.is_exact_only() {
        selector.exact_tags()
    } else {
        // Only the matching tags are kept while paging.
        let sel = reg.select_tags(image, &selector).await?;
        if let Some(glob) = sel
            .unmatched
            .iter()
            .find(|p| !selector.exact_tags().contains(p))
        {
            return Err(Failure::new(
                reasons::TAG_NOT_FOUND,
                format!(
                    "the pattern {glob:?} matches no tag of {}: push a matching tag or fix spec.tags",
                    image.gun()
                ),
            ));
        }
        out.absent.extend(sel.unmatched.iter().cloned());
        out.listed = Some(sel.tags.iter().cloned().collect());
        sel.tags
    };
    for (tag, res) in reg.resolve_many(image, &names).await {
        match res {
            Ok(d) => {
                out.desired.insert(
                    tag,
                    Manifest {
                        sha256: d.sha256_hex().to_string(),
                        size: d.size,
                        media_type: Some(d.media_type),
                    },
                );
            }
            Err(registry::RegistryError::NotFound { .. }) => {
                out.absent.insert(tag);
            }
            Err(e) => return Err(e.into()),
        }
    }
    out.selector = Some(selector);
    Ok(out)
}

/// Checks what the registry's HEADs announced before it is signed for the first time: a
/// digest and size that some role already holds is trusted as signed before (the steady
/// state: HEADs only); any other is fetched once by digest (bounded) and its sha256 and size
/// must match. A lying registry or CDN is refused before anything is signed or published.
pub async fn check_new_manifests(
    reg: &RegistryClient,
    image: &ImageRef,
    desired: &BTreeMap<String, Manifest>,
    view: &RepoView,
) -> Result<(), Failure> {
    use futures::StreamExt as _;
    let signed: BTreeSet<(&str, u64)> = (view.roles.iter())
        .flat_map(|r| r.targets.values())
        .map(|t| (t.sha256.as_str(), t.length))
        .collect();
    let mut fresh: Vec<registry::ManifestDescriptor> = (desired.values())
        .filter(|m| !signed.contains(&(m.sha256.as_str(), m.size)))
        .map(|m| registry::ManifestDescriptor {
            digest: format!("sha256:{}", m.sha256),
            size: m.size,
            media_type: m.media_type.clone().unwrap_or_default(),
        })
        .collect();
    fresh.sort_by(|a, b| a.digest.cmp(&b.digest));
    fresh.dedup();
    let mut checks = futures::stream::iter(fresh)
        .map(|d| async move { reg.verify_descriptor(image, &d).await })
        .buffer_unordered(8);
    while let Some(r) = checks.next().await {
        r?;
    }
    Ok(())
}

/// Names signed in the repository that match the selection but are gone from the registry.
fn vanished(resolved: &Resolved, view: &RepoView) -> BTreeSet<String> {
    let Some(selector) = &resolved.selector else {
        return BTreeSet::new();
    };
    let signed: BTreeSet<&String> = view.roles.iter().flat_map(|r| r.targets.keys()).collect();
    signed
        .into_iter()
        .filter(|n| match &resolved.listed {
            Some(listed) => selector.matches(n) && !listed.contains(*n),
            None => resolved.absent.contains(*n),
        })
        .cloned()
        .collect()
}

/// Stages and signs the plan's changes.
pub fn sign_changes(
    repo: &Repository,
    plan: &Plan,
    keys: &[impl Signer],
    now: Timestamp,
) -> Result<Vec<notary::SignedFile>, Failure> {
    let mut editor = repo.edit();
    for (role, change) in &plan.changes {
        for (tag, t) in &change.set {
            let mut sha = [0u8; 32];
            hex::decode_to_slice(&t.sha256, &mut sha).map_err(|_| {
                Failure::new(reasons::REGISTRY_REFUSED, format!("bad digest for {tag}"))
            })?;
            editor.add_target(role, tag, &sha, t.length)?;
        }
        for tag in &change.remove {
            editor.remove_target(role, tag)?;
        }
        match change.kind {
            ChangeKind::Renew => editor.witness(role, Some(change.expires))?,
            ChangeKind::Content => editor.set_expiry(role, change.expires)?,
        };
    }
    Ok(editor.sign(keys, now)?)
}

/// Checks that the repository as served now holds what the plan meant to publish.
pub fn verify(
    planned: &RepoView,
    plan: &Plan,
    served: &RepoView,
    desired: &BTreeMap<String, Manifest>,
) -> Result<(), Failure> {
    let fail = |m: String| Err(Failure::new(reasons::VERIFY_FAILED, m));
    for (role, change) in &plan.changes {
        let Some(want) = planned.role(role) else {
            continue;
        };
        let Some(got) = served.role(role) else {
            return fail(format!("{role} is missing after the publish"));
        };
        if got.version < want.version {
            return fail(format!(
                "{role} is at version {} after publishing version {}",
                got.version, want.version
            ));
        }
        if got.version == want.version && got.expires != Some(change.expires) {
            return fail(format!(
                "{role} does not carry the new expiry after the publish"
            ));
        }
        for (tag, t) in &change.set {
            if got.targets.get(tag) != Some(t) {
                return fail(format!(
                    "{role} does not hold {tag} = sha256:{} after the publish",
                    t.sha256
                ));
            }
        }
        if let Some(tag) = change.remove.iter().find(|t| got.targets.contains_key(*t)) {
            return fail(format!("{role} still holds {tag} after the publish"));
        }
        // Nothing we did not mean to drop went missing.
        if let Some(lost) = want
            .targets
            .keys()
            .find(|t| !got.targets.contains_key(*t) && !change.remove.contains(*t))
        {
            return fail(format!("{role} lost {lost} in the publish"));
        }
    }
    for (tag, m) in desired {
        match served.docker_winner(tag) {
            Some((_, t)) if t.sha256 == m.sha256 => {}
            Some((r, t)) => {
                return fail(format!(
                    "docker resolves {tag} to sha256:{} from {}",
                    t.sha256, r.name
                ));
            }
            None => {
                return fail(format!(
                    "docker finds no trust data for {tag} after the publish"
                ));
            }
        }
    }
    Ok(())
}

/// What a successful attempt produced.
struct Done {
    repo: RepoView,
    desired: BTreeMap<String, Manifest>,
    key_ids: Vec<String>,
    trust: TrustState,
    plan: Plan,
    publishes: u32,
    /// The cosign signatures of the desired digests (`spec.formats`), empty without cosign.
    cosign: Vec<crate::formats::cosign_sign::CosignSigned>,
}

/// What a run is doing, for the message when its deadline passes.
#[derive(Default)]
struct Progress {
    /// `REGISTRY_DONE | NOTARY_DONE | KEYS_DONE` of the first, concurrent steps.
    done: AtomicU8,
    phase: AtomicU8,
    /// Publishes lost to other writers so far.
    conflicts: AtomicU32,
}

const REGISTRY_DONE: u8 = 1;
const NOTARY_DONE: u8 = 2;
const KEYS_DONE: u8 = 4;

// 0: reading (the registry, the trust data and the key, at once).
const PHASE_RETRYING: u8 = 1;
const PHASE_PUBLISHING: u8 = 2;
const PHASE_VERIFYING: u8 = 3;

impl Progress {
    fn mark(&self, step: u8) {
        self.done.fetch_or(step, Ordering::Relaxed);
    }

    fn set_phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::Relaxed);
    }

    /// Why the run did not finish within `deadline`: what it was waiting for, and what state it
    /// leaves the repository in.
    fn deadline_failure(&self, deadline: Duration, settings: &Settings) -> Failure {
        let done = self.done.load(Ordering::Relaxed);
        let conflicts = self.conflicts.load(Ordering::Relaxed);
        let notary = &settings.notary_url;
        let registry = settings.image.registry_host();
        let waiting = match self.phase.load(Ordering::Relaxed) {
            PHASE_PUBLISHING => format!(
                "while publishing to the trust server {notary}: the publish was cut off; the \
                 server applies a publish whole or not at all, and the next run reads back which"
            ),
            PHASE_VERIFYING => format!(
                "while reading the publish back from the trust server {notary}: it was sent, \
                 the next run verifies it"
            ),
            PHASE_RETRYING => format!(
                "while retrying after {conflicts} version conflicts with other writers; nothing \
                 was published"
            ),
            _ => {
                let mut parts = Vec::new();
                if done & REGISTRY_DONE == 0 {
                    parts.push(format!("the registry {registry}"));
                }
                if done & NOTARY_DONE == 0 {
                    parts.push(format!("the trust server {notary}"));
                }
                if done & KEYS_DONE == 0 {
                    parts.push("the signing key's decryption".to_string());
                }
                if parts.is_empty() {
                    parts.push("the run".to_string());
                }
                format!("waiting for {}; nothing was published", parts.join(" and "))
            }
        };
        // Only the key outstanding: no server is to blame, the key's own parameters are.
        let only_key = self.phase.load(Ordering::Relaxed) == 0
            && done & (REGISTRY_DONE | NOTARY_DONE) == REGISTRY_DONE | NOTARY_DONE
            && done & KEYS_DONE == 0;
        let remedy = if only_key {
            "its key derivation is too expensive: export the key again with `notary key \
             export`, or raise the deadline (--deadline, TRUSTKEEPER_DEADLINE)"
        } else {
            "retry when the server answers in time, or raise the deadline (--deadline, \
             TRUSTKEEPER_DEADLINE)"
        };
        Failure::new(
            reasons::DEADLINE_EXCEEDED,
            format!(
                "the run did not finish within its deadline of {} ({waiting}): {remedy}",
                api::human_duration(deadline)
            ),
        )
    }
}

/// Publishes allowed in one run when other writers published `others` times since its first
/// fetch: a lost race to a writer that made progress is contention, not a fault.
fn publish_attempts_allowed(others: u64) -> u32 {
    MAX_PUBLISH_ATTEMPTS
        .saturating_add(u32::try_from(others).unwrap_or(u32::MAX))
        .min(MAX_PUBLISH_ATTEMPTS_CAP)
}

/// The snapshot's version: every publish, ours or another writer's, makes a new one.
fn snapshot_version(t: &TrustState) -> u64 {
    t.versions.get("snapshot").copied().unwrap_or(0)
}

impl Engine {
    async fn attempt(
        &self,
        req: &ReconcileRequest<'_>,
        options: &RunOptions,
        settings: &Settings,
        clients: &Clients,
        now: Timestamp,
        progress: &Progress,
    ) -> Result<Done, Failure> {
        let mut anchor = trust_anchor(req.spec, req.previous);
        // Files verified by earlier runs, read or published in this one are not downloaded
        // again (an unchanged repository, the read-back after a publish, a refetch after a
        // conflict).
        let notary = CachedFetch::with_files(
            &clients.notary,
            self.cache.get(&settings.notary_url, &settings.gun),
        );
        // Pinned tags are not looked up: the registry is not asked at all when every tag is.
        let lookup: Vec<String> = (req.spec.tags.iter())
            .filter(|t| !req.pinned.contains_key(*t))
            .cloned()
            .collect();
        // The registry, the notary server and the key are independent: all at once. A bad key
        // ends the run as soon as it is found, without waiting for the servers, and is the
        // error reported.
        let servers = async {
            Ok(tokio::join!(
                async {
                    let r = resolve_tags(&clients.registry, &settings.image, &lookup).await;
                    progress.mark(REGISTRY_DONE);
                    r
                },
                async {
                    let r =
                        update_with_memo(&notary, &settings.gun, &anchor, now, self.cache.memo())
                            .await;
                    progress.mark(NOTARY_DONE);
                    r
                }
            ))
        };
        let keys = async {
            let k = load_keys(&req.credentials).await;
            progress.mark(KEYS_DONE);
            k
        };
        let (keys, (resolved, first)) = tokio::try_join!(keys, servers)?;
        let key_ids: Vec<String> = keys.iter().map(|k| k.key_id().to_string()).collect();
        let resolved = resolved?;
        let first = first.map_err(fetch_failure)?;
        check_new_manifests(
            &clients.registry,
            &settings.image,
            &resolved.desired,
            &repo_view(&first.0),
        )
        .await?;
        let mut resolved = resolved;
        resolved.desired.extend(req.pinned.clone());
        let mut first = Some(first);
        let first_snapshot = first.as_ref().map_or(0, |(_, t)| snapshot_version(t));
        let mut publishes = 0;
        loop {
            let (repo, trust) = match first.take() {
                Some(r) => r,
                None => update_with_memo(&notary, &settings.gun, &anchor, now, self.cache.memo())
                    .await
                    .map_err(fetch_failure)?,
            };
            notary.remember(&repo);
            let view = repo_view(&repo);
            if let Some(expected) = &options.key_id {
                check_key_id(expected, &key_ids, &view)?;
            }
            let vanished = vanished(&resolved, &view);
            if let Some(tag) = resolved.absent.iter().find(|t| !vanished.contains(*t)) {
                return Err(Failure::new(
                    reasons::TAG_NOT_FOUND,
                    format!(
                        "tag {tag} is not in the registry ({}) and was never signed: push it, or remove it from the tags",
                        settings.image.gun()
                    ),
                ));
            }
            let p = plan(&PlanInput {
                repo: &view,
                desired: &resolved.desired,
                vanished: &vanished,
                prune: req.spec.prune_vanished_tags,
                roles: &req.spec.roles,
                key_ids: &key_ids,
                now,
                validity: settings.validity,
                renew_before: settings.renew_before,
                force_renew: options.force_renew,
            });
            if let Some(first) = p.problems.first() {
                let message = p
                    .problems
                    .iter()
                    .map(|x| x.message_for(&settings.gun, options.surface))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(Failure::new(first.reason(), message));
            }
            if p.is_noop() {
                self.cache
                    .put(&settings.notary_url, &settings.gun, Files::of(&repo));
                let cosign = super::cosign::step(
                    req.spec,
                    &clients.registry,
                    &settings.image,
                    &resolved.desired,
                    &keys,
                )
                .await?;
                return Ok(Done {
                    repo: view,
                    desired: resolved.desired,
                    key_ids,
                    trust,
                    plan: p,
                    publishes,
                    cosign,
                });
            }
            // None of our publishes went through yet: every snapshot since the first fetch is
            // another writer's. While they make progress, losing to them is contention, not a
            // fault, and one more attempt is allowed per publish of theirs.
            let others = snapshot_version(&trust).saturating_sub(first_snapshot);
            let allowed = publish_attempts_allowed(others);
            if publishes >= allowed {
                return Err(Failure::new(
                    reasons::CONFLICT,
                    format!(
                        "gave up publishing {} after {publishes} attempts: other writers \
                         published {others} times meanwhile and won each race (version \
                         conflicts); nothing was published or lost: retry",
                        settings.gun
                    ),
                ));
            }
            let files = sign_changes(&repo, &p, &keys, now)?;
            publishes += 1;
            progress.set_phase(PHASE_PUBLISHING);
            match clients.notary.publish(&settings.gun, &files).await {
                Ok(()) => {}
                Err(notary::Error::VersionConflict { .. }) => {
                    progress.conflicts.fetch_add(1, Ordering::Relaxed);
                    progress.set_phase(PHASE_RETRYING);
                    // Jittered: signers that lost together do not refetch and collide again in
                    // step.
                    let wait = schedule::conflict_backoff(publishes, rand::random());
                    tracing::info!(gun = %settings.gun, attempt = publishes, wait_ms = wait.as_millis() as u64, "version conflict: another writer published first; refetching");
                    tokio::time::sleep(wait).await;
                    anchor = TrustAnchor::State(trust);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            progress.set_phase(PHASE_VERIFYING);
            notary.remember_published(&files);
            let planned = apply_to_view(&view, &p.changes);
            let (served_repo, served_trust) = update_with_memo(
                &notary,
                &settings.gun,
                &TrustAnchor::State(trust),
                Timestamp::now(),
                self.cache.memo(),
            )
            .await
            .map_err(fetch_failure)?;
            let served = repo_view(&served_repo);
            verify(&planned, &p, &served, &resolved.desired)?;
            self.cache
                .put(&settings.notary_url, &settings.gun, Files::of(&served_repo));
            let cosign = super::cosign::step(
                req.spec,
                &clients.registry,
                &settings.image,
                &resolved.desired,
                &keys,
            )
            .await?;
            return Ok(Done {
                repo: served,
                desired: resolved.desired,
                key_ids,
                trust: served_trust,
                plan: p,
                publishes,
                cosign,
            });
        }
    }

    /// Runs one reconcile with the default [`RunOptions`] (the operator's). Never fails: a
    /// failure is a status reason.
    pub async fn run(&self, req: ReconcileRequest<'_>) -> Outcome {
        self.run_with(req, &RunOptions::default()).await
    }

    /// Runs one reconcile under the caller's per-run policy. Never fails: a failure is a status
    /// reason.
    pub async fn run_with(&self, req: ReconcileRequest<'_>, options: &RunOptions) -> Outcome {
        let now = Timestamp::now();
        let jitter: f64 = rand::random();
        let prev = req.previous;
        let gen_ = req.generation;
        let settings = match Settings::from_spec(req.spec) {
            Ok(s) => s,
            Err(f) => return Engine::failed(prev, gen_, f, now, jitter),
        };
        if !super::cosign::wants(req.spec, api::SignatureFormat::Notary) {
            return Engine::failed(
                prev,
                gen_,
                Failure::new(
                    reasons::INVALID_SPEC,
                    "formats lacks notary: the operator signs cosign beside notary for now; \
                     keep notary in formats (`trustkeeper sign --format cosign` signs cosign \
                     alone)",
                ),
                now,
                jitter,
            );
        }
        if req.spec.suspend {
            return Outcome {
                status: status::suspended(prev, gen_, now),
                events: vec![],
                requeue_at: now + settings.interval,
                publishes: 0,
                renewed: vec![],
                signed: vec![],
                failure_reason: None,
                requests: Requests::default(),
            };
        }
        let span = tracing::info_span!("reconcile", id = req.id, gun = %settings.gun);
        let clients = match self.clients(&settings, &req.credentials) {
            Ok(c) => c,
            Err(f) => return Engine::failed(prev, gen_, f, now, jitter),
        };
        let progress = Progress::default();
        // Dropping the attempt at the deadline cancels whatever request is in flight; nothing
        // is sent after it.
        let result = tokio::time::timeout(
            self.deadline,
            self.attempt(&req, options, &settings, &clients, now, &progress)
                .instrument(span),
        )
        .await
        .unwrap_or_else(|_| Err(progress.deadline_failure(self.deadline, &settings)));
        let requests = Requests {
            notary: clients.notary.stats(),
            registry: clients.registry.stats(),
        };
        tracing::debug!(
            gun = %settings.gun,
            notary_get = requests.notary.get,
            notary_post = requests.notary.post,
            registry_head = requests.registry.head,
            registry_get = requests.registry.get,
            registry_tag_list = requests.registry.tag_list,
            "requests sent"
        );
        let mut outcome = self.outcome(prev, gen_, &settings, result, now, jitter);
        outcome.requests = requests;
        outcome
    }

    /// The outcome of an attempt: status, schedule, Events.
    fn outcome(
        &self,
        prev: Option<&SignedImageStatus>,
        gen_: Option<i64>,
        settings: &Settings,
        result: Result<Done, Failure>,
        now: Timestamp,
        jitter: f64,
    ) -> Outcome {
        let prev_ready = prev.and_then(|s| s.conditions.iter().find(|c| c.type_ == api::READY));
        match result {
            Ok(done) => {
                let seen = status::Observed {
                    repo: &done.repo,
                    desired: &done.desired,
                    key_ids: &done.key_ids,
                    renew_before: settings.renew_before,
                    trust: (&done.trust).into(),
                };
                let next = schedule::next_after_success(
                    now,
                    settings.interval,
                    seen.next_renewal(),
                    jitter,
                );
                let published = !done.plan.changes.is_empty();
                let st =
                    status::success(prev, gen_, &seen, &done.plan.warnings, published, now, next);
                let mut events = Vec::new();
                let mut signed = Vec::new();
                let mut renewed = Vec::new();
                for (role, c) in &done.plan.changes {
                    match c.kind {
                        ChangeKind::Content => {
                            for (tag, t) in &c.set {
                                signed.push(tag.clone());
                                events.push(EngineEvent {
                                    type_: EventType::Normal,
                                    reason: "Signed".into(),
                                    note: format!(
                                        "signed {tag} = sha256:{} ({} bytes) into {role}",
                                        t.sha256, t.length
                                    ),
                                });
                            }
                            for tag in &c.remove {
                                events.push(EngineEvent {
                                    type_: EventType::Normal,
                                    reason: "Removed".into(),
                                    note: format!("removed vanished tag {tag} from {role}"),
                                });
                            }
                        }
                        ChangeKind::Renew => {
                            renewed.push(role.clone());
                            events.push(EngineEvent {
                                type_: EventType::Normal,
                                reason: "Renewed".into(),
                                note: format!("re-signed {role}, now valid until {}", c.expires),
                            });
                        }
                    }
                }
                for c in done.cosign.iter().filter(|c| c.added) {
                    events.push(EngineEvent {
                        type_: EventType::Normal,
                        reason: "SignedCosign".into(),
                        note: format!(
                            "signed {} in cosign ({} signatures on {})",
                            c.digest, c.signatures, c.tag
                        ),
                    });
                }
                if prev_ready.is_some_and(|c| c.status == "False") && events.is_empty() {
                    events.push(EngineEvent {
                        type_: EventType::Normal,
                        reason: "Recovered".into(),
                        note: "every selected tag is signed and every held role is fresh again"
                            .into(),
                    });
                }
                signed.sort();
                signed.dedup();
                Outcome {
                    status: st,
                    events,
                    requeue_at: next,
                    publishes: done.publishes,
                    renewed,
                    signed,
                    failure_reason: None,
                    requests: Requests::default(),
                }
            }
            Err(f) => Engine::failed(prev, gen_, f, now, jitter),
        }
    }

    /// The outcome of a run that failed with `f` (also for failures found before the engine
    /// ran, such as a missing Secret): status, backoff, and an Event when Ready changes.
    pub fn failed(
        prev: Option<&SignedImageStatus>,
        gen_: Option<i64>,
        f: Failure,
        now: Timestamp,
        jitter: f64,
    ) -> Outcome {
        let was = prev.and_then(|s| s.conditions.iter().find(|c| c.type_ == api::READY));
        let transition = !was.is_some_and(|c| c.status == "False" && c.reason == f.reason);
        let (st, next) = status::failure(prev, gen_, f.reason, &f.message, now, jitter);
        tracing::warn!(reason = f.reason, message = %f.message, failures = st.failed_attempts, "reconcile failed");
        let mut note = f.message.clone();
        if note.len() > 1000 {
            let mut cut = 1000;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
        Outcome {
            status: st,
            events: if transition {
                vec![EngineEvent {
                    type_: EventType::Warning,
                    reason: f.reason.to_string(),
                    note,
                }]
            } else {
                vec![]
            },
            requeue_at: next,
            publishes: 0,
            renewed: vec![],
            signed: vec![],
            failure_reason: Some(f.reason),
            requests: Requests::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key derivation's thread gives way; the thread that started it keeps its priority.
    #[cfg(target_os = "linux")]
    #[test]
    fn only_the_key_thread_is_lowered() {
        // SAFETY: plain system calls on the calling thread.
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let before = nice();
        let lowered = std::thread::spawn(move || {
            lower_priority();
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, 19);
        assert_eq!(nice(), before);
    }

    #[test]
    fn publish_attempts_scale_with_the_writers_seen() {
        assert_eq!(publish_attempts_allowed(0), MAX_PUBLISH_ATTEMPTS);
        assert_eq!(publish_attempts_allowed(7), MAX_PUBLISH_ATTEMPTS + 7);
        assert_eq!(publish_attempts_allowed(u64::MAX), MAX_PUBLISH_ATTEMPTS_CAP);
    }

    /// A server that accepts connections and never answers, and a spec pointing both the
    /// registry and the notary server at it.
    async fn silent_server() -> (
        std::net::SocketAddr,
        SignedImageSpec,
        tokio::task::JoinHandle<()>,
    ) {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let keep = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = silent.accept().await {
                held.push(conn);
            }
        });
        let yaml = format!(
            "image: {addr}/team/app\ntags: [v1]\nsigningKey: {{secretRef: {{name: k}}}}\nnotary: {{url: \"https://{addr}\"}}\n"
        );
        (addr, serde_saphyr::from_str(&yaml).unwrap(), keep)
    }

    async fn run_with_key(engine: &Engine, spec: &SignedImageSpec, pem: &[u8]) -> Outcome {
        engine
            .run(ReconcileRequest {
                id: "t",
                spec,
                generation: None,
                previous: None,
                credentials: RunSecrets {
                    signing_key_pem: zeroize::Zeroizing::new(pem.to_vec()),
                    ..Default::default()
                },
                pinned: Default::default(),
            })
            .await
    }

    /// Silent servers end the run at its deadline, with a reason that names both.
    #[tokio::test]
    async fn silent_servers_end_the_run_at_its_deadline() {
        let (addr, spec, _keep) = silent_server().await;
        let engine = Engine {
            timeout: Duration::from_secs(20),
            deadline: Duration::from_millis(500),
            ..Engine::default()
        };
        let started = std::time::Instant::now();
        // A valid P-256 key (of the bad-input corpus: it signs for no role).
        let key = include_bytes!("../../tests/bad_input/keys/not-a-signer.pem");
        let outcome = run_with_key(&engine, &spec, key).await;
        let took = started.elapsed();
        assert_eq!(outcome.failure_reason, Some(reasons::DEADLINE_EXCEEDED));
        let (_, message) = outcome
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == api::READY)
            .map(|c| (c.reason.clone(), c.message.clone()))
            .unwrap();
        assert!(
            message.contains(&format!(
                "waiting for the registry {addr} and the trust server https://{addr}; nothing was published"
            )) && message.contains("deadline of 500ms"),
            "{message}"
        );
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }

    /// A bad key is reported at once, not after the servers answer or time out.
    #[tokio::test]
    async fn a_bad_key_does_not_wait_for_a_silent_server() {
        let (_, spec, _keep) = silent_server().await;
        let engine = Engine {
            timeout: Duration::from_secs(20),
            ..Engine::default()
        };
        let started = std::time::Instant::now();
        let outcome = run_with_key(&engine, &spec, b"not a key").await;
        assert_eq!(outcome.failure_reason, Some(reasons::BAD_KEY));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }
}
