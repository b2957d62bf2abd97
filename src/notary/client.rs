//! TUF update and verification for one GUN (notary-v1.md §10): root (with rotation through
//! versioned roots), timestamp, snapshot, targets and delegations; signatures vs thresholds,
//! hashes and lengths, rollback against the caller's trusted state, expiry.
//!
//! Expired or badly signed *targets roles* are not fatal: they are loaded, flagged and hidden
//! from lookups, so that a caller holding the key can renew them with their content intact.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::keys::PublicKey;
use super::metadata::{self, Envelope, FileMeta, Meta, Root, Targets};

/// Largest `root.json` / `N.root.json` accepted (Go caps at 100 MiB; real roots are ~3 KiB).
pub const MAX_ROOT_BYTES: u64 = 10 << 20;
/// Largest `timestamp.json` accepted (Go: 1 MiB).
pub const MAX_TIMESTAMP_BYTES: u64 = 1 << 20;
/// Default of the fixed cap on the trust metadata one update reads, every file together,
/// whatever the signed metadata announces (see [`Fetch::max_metadata_bytes`]).
pub const DEFAULT_MAX_METADATA_BYTES: u64 = 4 << 20;
/// The largest version accepted for any role: the Go client's versions are `int` (int64), and
/// one above this could not be incremented by a publish. A larger one is refused before it is
/// trusted: stored as the rollback floor, it would block every later, sane version.
pub const MAX_VERSION: u64 = i64::MAX as u64 - 1;
/// Root versions walked through in one update (rotations since the trusted root, or back from
/// the current root to a pinned one).
pub const MAX_ROOT_ROTATIONS: u64 = 256;

/// What the caller trusted after the last successful update. Serializable (the operator keeps
/// it in a Kubernetes status): the root key IDs and version suffice to re-verify a root by
/// fetching `N.root.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustState {
    /// TUF key IDs of root's `root` role, sorted.
    pub root_key_ids: Vec<String>,
    pub root_version: u64,
    /// Highest version seen per role (`timestamp`, `snapshot`, `targets`, delegations).
    pub versions: BTreeMap<String, u64>,
}

/// How the first root is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustAnchor {
    /// Trust on first use: accept whatever self-signed root the server serves.
    FirstUse,
    /// Accept a root only if signatures by these root keys (TUF or canonical IDs) meet its
    /// root threshold.
    PinnedKeys(Vec<String>),
    /// Continue from an earlier update: rotations are followed through `N.root.json`.
    State(TrustState),
    /// As `State`, and the root reached must also be signed by these pinned root keys, or be
    /// reached by valid rotations from a root they sign: a pin holds also once a root is kept.
    PinnedState {
        pins: Vec<String>,
        state: TrustState,
    },
}

impl TrustAnchor {
    /// The trusted state this anchor continues from, if any.
    pub fn state(&self) -> Option<&TrustState> {
        match self {
            TrustAnchor::State(s) | TrustAnchor::PinnedState { state: s, .. } => Some(s),
            _ => None,
        }
    }
}

/// Why a targets role is not used for lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleHealth {
    Valid,
    /// Its `expires` is in the past.
    Expired,
    /// Signatures by the keys its parent lists do not meet the threshold.
    BadSignatures(String),
    /// An ancestor is expired or badly signed (Go skips the subtree).
    HiddenByAncestor(String),
}

/// A delegation as its parent declares it.
#[derive(Debug, Clone)]
pub struct Delegation {
    pub name: String,
    /// TUF key ID → key, in the parent's `delegations.keys`.
    pub keys: BTreeMap<String, PublicKey>,
    pub threshold: u64,
    /// Paths as written (`[""]` = all).
    pub paths: Vec<String>,
}

/// One verified (or flagged) targets role.
#[derive(Debug, Clone)]
pub struct TargetsRole {
    pub name: String,
    pub version: u64,
    pub expires: Timestamp,
    pub expired: bool,
    pub health: RoleHealth,
    pub targets: BTreeMap<String, FileMeta>,
    /// Children in `delegations.roles` order.
    pub delegations: Vec<Delegation>,
    /// Effective path prefixes (own paths restricted by the parent's).
    pub paths: Vec<String>,
    pub(crate) envelope: Envelope,
    pub(crate) file: Vec<u8>,
}

impl TargetsRole {
    pub fn usable(&self) -> bool {
        self.health == RoleHealth::Valid
    }

    /// Whether the name passes this role's effective paths.
    pub fn allows(&self, name: &str) -> bool {
        self.paths.iter().any(|p| name.starts_with(p.as_str()))
    }

    /// The stored file bytes.
    pub fn file_bytes(&self) -> &[u8] {
        &self.file
    }
}

/// Expiry facts of a base role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleInfo {
    pub name: String,
    pub version: u64,
    pub expires: Timestamp,
    pub expired: bool,
}

/// A verified repository.
#[derive(Debug, Clone)]
pub struct Repository {
    pub gun: String,
    pub root: Root,
    /// Earliest `notAfter` of root's certificates: re-signing root does not renew it; plan a
    /// root key rotation before it (notary-v1.md §9.1).
    pub root_cert_expires: Option<Timestamp>,
    pub root_info: RoleInfo,
    pub snapshot_info: RoleInfo,
    pub timestamp_info: RoleInfo,
    pub(crate) snapshot: Envelope,
    /// The exact bytes of `root.json` and of the snapshot, as verified.
    root_file: Vec<u8>,
    snapshot_file: Vec<u8>,
    /// The snapshot's `meta` (role → hashes + length of its current file).
    pub snapshot_meta: BTreeMap<String, FileMeta>,
    /// `targets` first, then delegations breadth first in `delegations.roles` order.
    roles: Vec<TargetsRole>,
    /// Declared delegations that have no file yet (name → declaration, effective paths).
    declared: Vec<(Delegation, Vec<String>)>,
}

/// Which role's entry a lookup uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    pub role: &'a str,
    pub meta: &'a FileMeta,
}

/// Accepted signers of a role.
#[derive(Debug, Clone)]
pub struct Signers {
    pub role: String,
    /// TUF key ID → key.
    pub keys: BTreeMap<String, PublicKey>,
    pub threshold: u64,
}

impl Signers {
    /// Canonical IDs of the accepted keys (what `notary delegation list` prints).
    pub fn canonical_ids(&self) -> Vec<String> {
        self.keys
            .values()
            .filter_map(|k| k.canonical_id().ok())
            .collect()
    }
}

impl Repository {
    /// The verified `root.json` bytes.
    pub fn root_file(&self) -> &[u8] {
        &self.root_file
    }

    /// The verified snapshot bytes.
    pub fn snapshot_file(&self) -> &[u8] {
        &self.snapshot_file
    }

    /// Targets roles in reading order (`targets`, then delegations breadth first).
    pub fn roles(&self) -> &[TargetsRole] {
        &self.roles
    }

    pub fn role(&self, name: &str) -> Option<&TargetsRole> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// Names of delegations declared by their parent but without a file yet.
    pub fn declared_without_file(&self) -> Vec<&str> {
        self.declared.iter().map(|(d, _)| d.name.as_str()).collect()
    }

    pub(crate) fn declaration(&self, name: &str) -> Option<(&Delegation, &[String])> {
        self.declared
            .iter()
            .find(|(d, _)| d.name == name)
            .map(|(d, p)| (d, p.as_slice()))
            .or_else(|| {
                self.roles.iter().find_map(|r| {
                    r.delegations.iter().find(|d| d.name == name).map(|d| {
                        (
                            d,
                            self.role(name).map(|x| x.paths.as_slice()).unwrap_or(&[]),
                        )
                    })
                })
            })
    }

    /// Keys (TUF ID → key) and threshold that may sign `role` (`targets`, a delegation,
    /// `snapshot`, `root`, `timestamp`).
    pub fn signers_of(&self, role: &str) -> Result<Signers> {
        if let Some(rk) = self.root.roles.get(role)
            && matches!(role, "root" | "targets" | "snapshot" | "timestamp")
        {
            let keys = rk
                .keyids
                .iter()
                .filter_map(|id| self.root.keys.get(id).map(|k| (id.clone(), k.clone())))
                .collect();
            return Ok(Signers {
                role: role.into(),
                keys,
                threshold: rk.threshold,
            });
        }
        let (d, _) = self.declaration(role).ok_or_else(|| Error::UnknownRole {
            role: role.to_string(),
        })?;
        Ok(Signers {
            role: role.into(),
            keys: d.keys.clone(),
            threshold: d.threshold,
        })
    }

    /// `notary list GUN` / `notary list GUN -r ROLE`: first-wins walk over `start`'s subtree
    /// (parents before children, siblings in order), skipping unusable roles and names outside a
    /// role's paths.
    pub fn list(&self, start: &str) -> BTreeMap<&str, Found<'_>> {
        let mut out: BTreeMap<&str, Found<'_>> = BTreeMap::new();
        for r in &self.roles {
            if !(r.name == start || r.name.starts_with(&format!("{start}/"))) || !r.usable() {
                continue;
            }
            for (name, meta) in &r.targets {
                if r.allows(name) && !out.contains_key(name.as_str()) {
                    out.insert(
                        name,
                        Found {
                            role: &r.name,
                            meta,
                        },
                    );
                }
            }
        }
        out
    }

    /// `notary lookup`: the first role in reading order that defines `tag`.
    pub fn lookup(&self, tag: &str) -> Option<Found<'_>> {
        self.list("targets").remove(tag)
    }

    /// The entry Docker uses for `tag` (notary-v1.md §10.2): the `targets/releases` subtree
    /// first, then the rest of the tree; it counts only if the winning role is
    /// `targets/releases` or `targets`, otherwise Docker reports no trust data (`None`).
    pub fn winner(&self, tag: &str) -> Option<Found<'_>> {
        const REL: &str = "targets/releases";
        let in_rel = |n: &str| n == REL || n.starts_with("targets/releases/");
        let find = |pred: &dyn Fn(&str) -> bool| {
            self.roles.iter().find_map(|r| {
                if !pred(&r.name) || !r.usable() || !r.allows(tag) {
                    return None;
                }
                r.targets.get(tag).map(|meta| Found {
                    role: &r.name,
                    meta,
                })
            })
        };
        let found = find(&in_rel).or_else(|| find(&|n: &str| !in_rel(n)))?;
        (found.role == REL || found.role == "targets").then_some(found)
    }

    /// Every role's entry for `tag` (as `docker trust inspect` collects them).
    pub fn all_entries(&self, tag: &str) -> Vec<Found<'_>> {
        self.roles
            .iter()
            .filter_map(|r| {
                r.targets.get(tag).map(|meta| Found {
                    role: &r.name,
                    meta,
                })
            })
            .collect()
    }

    /// Expiry facts of every role: root, targets roles, snapshot, timestamp.
    pub fn expiries(&self) -> Vec<RoleInfo> {
        let mut v = vec![self.root_info.clone()];
        v.extend(self.roles.iter().map(|r| RoleInfo {
            name: r.name.clone(),
            version: r.version,
            expires: r.expires,
            expired: r.expired,
        }));
        v.push(self.snapshot_info.clone());
        v.push(self.timestamp_info.clone());
        v
    }
}

/// Source of metadata files by server name (`root.json`, `2.root.json`,
/// `targets/releases.<sha256>.json`); `Ok(None)` = 404. [`NotaryClient`](super::NotaryClient)
/// is one; tests plug in-memory sources.
#[allow(async_fn_in_trait)]
pub trait Fetch {
    /// Returns at most `limit` bytes, else [`Error::TooLarge`].
    async fn fetch(&self, gun: &str, name: &str, limit: u64) -> Result<Option<Vec<u8>>>;

    /// The most bytes of trust metadata one update reads from this source, every file
    /// together, whatever the signed metadata announces (the operator runs several updates at
    /// once: their number times this must fit its memory).
    fn max_metadata_bytes(&self) -> u64 {
        DEFAULT_MAX_METADATA_BYTES
    }

    /// The root file verified by an earlier update, if the source keeps one. With a trusted
    /// state it stands in for `GET root.json`, as the Go client's cached root does; a rotation
    /// shows in the snapshot's root hash (or a failed check) and the root is then fetched.
    fn cached_root(&self, _gun: &str) -> Option<Vec<u8>> {
        None
    }
}

/// Signatures found valid in this process, by digest of (message, key, signature): a pure
/// function's results, so a hit is as good as a check. A run reads the same root, targets and
/// delegations twice (before and after its publish), and the operator reads them every
/// cycle; an ECDSA verification is ~0.1 ms. Cleared when full.
static VERIFIED: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<[u8; 32]>>> =
    std::sync::LazyLock::new(Default::default);
const VERIFIED_MAX: usize = 8192;

/// The memo entries checked in this process (found valid, or found in the memo): what a caller
/// that keeps the memo between processes saves (see [`remember_signatures`]). Recorded only
/// once such a caller asked: a long-running process has no use for it.
static CHECKED: std::sync::LazyLock<std::sync::Mutex<std::collections::BTreeSet<[u8; 32]>>> =
    std::sync::LazyLock::new(Default::default);
static RECORD_CHECKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Adds memo entries that an earlier process checked ([`signatures_checked`], hex), so that the
/// signatures of files it kept are not checked again, and starts the record that
/// [`signatures_checked`] reads. Only for a caller whose store is as trusted as its trust
/// anchor: whoever can write such entries could as well replace the trusted root keys.
/// Malformed entries are ignored.
pub fn remember_signatures<'a>(entries: impl IntoIterator<Item = &'a str>) {
    RECORD_CHECKED.store(true, std::sync::atomic::Ordering::Relaxed);
    let Ok(mut v) = VERIFIED.lock() else { return };
    for e in entries {
        let mut k = [0u8; 32];
        if hex::decode_to_slice(e, &mut k).is_ok() && v.len() < VERIFIED_MAX {
            v.insert(k);
        }
    }
}

/// The memo entries (hex, sorted) of every signature checked in this process so far: those of
/// the files a run read and published, to be given to [`remember_signatures`] next time.
pub fn signatures_checked() -> Vec<String> {
    CHECKED
        .lock()
        .map(|c| c.iter().map(hex::encode).collect())
        .unwrap_or_default()
}

fn verified_key(msg_digest: &[u8], key_id: &str, method: &str, sig: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    // Fixed-length digest and ID first, then length-prefixed variable parts: unambiguous.
    h.update(msg_digest);
    h.update(key_id.as_bytes());
    for part in [method.as_bytes(), sig] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// Counts distinct listed keys with a valid signature over `env`'s canonical `signed`.
pub fn count_valid(env: &Envelope, keys: &BTreeMap<String, PublicKey>, listed: &[String]) -> usize {
    use sha2::Digest;
    let Ok(msg) = env.signed_bytes() else {
        return 0;
    };
    let msg_digest = sha2::Sha256::digest(&msg);
    let mut ok = BTreeSet::new();
    for s in &env.signatures {
        if !listed.contains(&s.keyid) || ok.contains(&s.keyid) {
            continue;
        }
        let Some(k) = keys.get(&s.keyid) else {
            continue;
        };
        if k.key_id() != s.keyid {
            continue;
        }
        let Ok(sig) = B64.decode(&s.sig) else {
            continue;
        };
        // The key ID is a digest of the key's type and bytes (checked just above), so it
        // stands for the key in the memo.
        let memo = verified_key(&msg_digest, &s.keyid, &s.method, &sig);
        let known = VERIFIED.lock().map(|v| v.contains(&memo)).unwrap_or(false);
        if known || k.verify(&s.method, &msg, &sig) {
            if !known && let Ok(mut v) = VERIFIED.lock() {
                if v.len() >= VERIFIED_MAX {
                    v.clear();
                }
                v.insert(memo);
            }
            if RECORD_CHECKED.load(std::sync::atomic::Ordering::Relaxed)
                && let Ok(mut c) = CHECKED.lock()
                && c.len() < VERIFIED_MAX
            {
                c.insert(memo);
            }
            ok.insert(s.keyid.clone());
        }
    }
    ok.len()
}

fn check_threshold(
    role: &str,
    env: &Envelope,
    keys: &BTreeMap<String, PublicKey>,
    listed: &[String],
    threshold: u64,
) -> Result<()> {
    if threshold < 1 {
        return Err(Error::invalid(role, "threshold below 1"));
    }
    let valid = count_valid(env, keys, listed);
    if (valid as u64) < threshold {
        return Err(Error::ThresholdNotMet {
            role: role.to_string(),
            valid,
            threshold: threshold as usize,
            listed: listed.to_vec(),
        });
    }
    Ok(())
}

fn check_root_role(root: &Root, env: &Envelope, signer: &Root, role_name: &str) -> Result<()> {
    let rk = signer
        .roles
        .get("root")
        .ok_or_else(|| Error::invalid(role_name, "no root role"))?;
    check_threshold(role_name, env, &signer.keys, &rk.keyids, rk.threshold)?;
    let _ = root;
    Ok(())
}

fn root_key_ids(root: &Root) -> Vec<String> {
    let mut ids = root
        .roles
        .get("root")
        .map(|r| r.keyids.clone())
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Checks root's roles and certificates; returns the earliest expiry of its valid certificates.
fn check_root_shape(root: &Root, gun: &str, now: Timestamp) -> Result<Option<Timestamp>> {
    for role in ["root", "targets", "snapshot", "timestamp"] {
        let rk = root
            .roles
            .get(role)
            .ok_or_else(|| Error::invalid("root", format!("no {role} role")))?;
        if rk.threshold < 1 {
            return Err(Error::invalid("root", format!("{role} threshold below 1")));
        }
        for id in &rk.keyids {
            if !root.keys.contains_key(id) {
                return Err(Error::invalid(
                    "root",
                    format!("{role} lists unknown key {id}"),
                ));
            }
        }
    }
    // Root certificates: CN = GUN, inside validity (notary's ValidateCertificate).
    let mut good = 0;
    let mut earliest: Option<Timestamp> = None;
    let mut why = String::new();
    for id in &root.roles["root"].keyids {
        let k = &root.keys[id];
        if !k.keytype.ends_with("-x509") {
            continue;
        }
        let cert = match k.certificate() {
            Ok(c) => c,
            Err(e) => {
                why = e.to_string();
                continue;
            }
        };
        let tbs = cert.tbs_certificate();
        let cn_ok = tbs.subject().to_string() == format!("CN={gun}");
        let v = tbs.validity();
        let nb = v.not_before.to_unix_duration().as_secs() as i64;
        let na = v.not_after.to_unix_duration().as_secs() as i64;
        let now_s = now.as_second();
        if !cn_ok {
            why = format!("certificate {id} is for {}, not CN={gun}", tbs.subject());
        } else if is_ca_certificate(tbs) {
            // The Go client takes a root key's certificate only as a leaf: a CA one is no key.
            why = format!(
                "certificate {id} is a CA certificate (basicConstraints CA:TRUE), and the Go \
                 client accepts only a leaf certificate as a root key; re-create the root with \
                 a CA:FALSE certificate (what `notary init` makes)"
            );
        } else if now_s > na {
            why = format!("certificate {id} expired");
        } else if nb > now_s + 86_400 {
            why = format!("certificate {id} is not valid yet");
        } else {
            good += 1;
            if let Ok(t) = Timestamp::from_second(na) {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
        }
    }
    if good == 0 {
        return Err(Error::UntrustedRoot {
            gun: gun.into(),
            reason: if why.is_empty() {
                "no root certificate".into()
            } else {
                why
            },
        });
    }
    Ok(earliest)
}

/// Whether the certificate says it is a CA (basicConstraints cA TRUE); an extension that does
/// not decode counts as one, so that it is not trusted as a leaf either.
fn is_ca_certificate(tbs: &x509_cert::TbsCertificate) -> bool {
    use x509_cert::der::{Decode, oid::AssociatedOid};
    use x509_cert::ext::pkix::BasicConstraints;
    tbs.extensions()
        .into_iter()
        .flatten()
        .filter(|e| e.extn_id == BasicConstraints::OID)
        .any(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).map_or(true, |b| b.ca))
}

fn rollback(state: Option<&TrustState>, role: &str, offered: u64) -> Result<()> {
    // A floor above MAX_VERSION was stored by an earlier release that accepted absurd
    // versions; no server can go past it, so keeping it would block the repository for good.
    if let Some(st) = state
        && let Some(&trusted) = st.versions.get(role)
        && trusted <= MAX_VERSION
        && offered < trusted
    {
        return Err(Error::Rollback {
            role: role.into(),
            trusted,
            offered,
        });
    }
    Ok(())
}

/// Refuses a version that could not be incremented (see [`MAX_VERSION`]).
fn check_version(role: &str, version: u64) -> Result<()> {
    if version > MAX_VERSION {
        return Err(Error::AbsurdVersion {
            role: role.into(),
            version,
            max: MAX_VERSION,
        });
    }
    Ok(())
}

/// What one update may still read (see [`Fetch::max_metadata_bytes`]).
struct Budget {
    cap: u64,
    left: u64,
}

impl Budget {
    fn of<F: Fetch>(f: &F) -> Budget {
        let cap = f.max_metadata_bytes();
        Budget { cap, left: cap }
    }
}

/// Fetches `name` with at most `own_max` bytes, and no more than the budget has left; what it
/// returns is taken from the budget. Too large for the budget is [`Error::MetadataTooLarge`];
/// too large for `own_max` stays [`Error::TooLarge`] (the caller knows what that bound was).
async fn fetch_within<F: Fetch>(
    f: &F,
    gun: &str,
    name: &str,
    own_max: u64,
    budget: &mut Budget,
) -> Result<Option<Vec<u8>>> {
    let limit = own_max.min(budget.left);
    match f.fetch(gun, name, limit).await {
        Ok(got) => {
            let used = got.as_ref().map_or(0, |b| b.len() as u64);
            budget.left = budget.left.saturating_sub(used);
            Ok(got)
        }
        Err(Error::TooLarge { .. }) if limit < own_max => Err(Error::MetadataTooLarge {
            what: format!("{gun} {name}"),
            limit: budget.cap,
        }),
        Err(e) => Err(e),
    }
}

/// Fetches a role by the hash `meta` announces. Its length is a download limit (a longer body
/// is cut there and refused), the hashes are checked in full.
async fn fetch_meta<F: Fetch>(
    f: &F,
    gun: &str,
    role: &str,
    meta: &FileMeta,
    by: &str,
    budget: &mut Budget,
) -> Result<Option<Vec<u8>>> {
    let hex = meta.sha256_hex().ok_or_else(|| Error::Tampered {
        role: role.into(),
        by: by.into(),
        what: "no sha256 announced".into(),
    })?;
    let name = format!("{role}.{hex}.json");
    let got = match fetch_within(f, gun, &name, meta.length, budget).await {
        Err(Error::TooLarge { .. }) => Err(Error::Tampered {
            role: role.into(),
            by: by.into(),
            what: format!("longer than the announced {} bytes", meta.length),
        }),
        other => other,
    };
    let Some(bytes) = got? else {
        return Ok(None);
    };
    meta.check(&bytes).map_err(|what| Error::Tampered {
        role: role.into(),
        by: by.into(),
        what,
    })?;
    Ok(Some(bytes))
}

fn is_direct_child(parent: &str, child: &str) -> bool {
    child
        .strip_prefix(parent)
        .and_then(|r| r.strip_prefix('/'))
        .is_some_and(|r| !r.is_empty() && !r.contains('/'))
}

/// Effective prefixes: the child's own prefixes that start with one of the parent's.
fn restrict(parent: &[String], own: &[String]) -> Vec<String> {
    own.iter()
        .filter(|p| parent.iter().any(|pp| p.starts_with(pp.as_str())))
        .cloned()
        .collect()
}

/// The update algorithm over any file source. If root changes while reading (the snapshot
/// announces another root than the one fetched), the update runs once more. With a trusted
/// state and a cached root, the root is not downloaded; if anything then fails to verify except
/// the network, the update runs again on a freshly fetched root (the Go client's order: a
/// rotated root shows as a failed timestamp or snapshot check).
pub async fn update_with<F: Fetch>(
    f: &F,
    gun: &str,
    anchor: &TrustAnchor,
    now: Timestamp,
) -> Result<(Repository, TrustState)> {
    if let Some(st) = anchor.state()
        && let Some(root) = f.cached_root(gun)
    {
        match update_once(f, gun, anchor, now, Some((root, st))).await {
            // A fresh root cannot make an oversized, absurd, missing or mis-hashed file right
            // (its hash comes from a file the root verified): not read again.
            Err(
                e @ (Error::MetadataTooLarge { .. }
                | Error::TooLarge { .. }
                | Error::AbsurdVersion { .. }
                | Error::MissingRoleFile { .. }),
            ) => return Err(e),
            Err(e @ Error::Tampered { .. }) if !matches!(&e, Error::Tampered { role, .. } if role == "root") =>
            {
                return Err(e);
            }
            Err(e) if !e.is_transient() => {
                tracing::debug!(gun, error = %e, "cached root did not verify the update; fetching root");
            }
            other => return other,
        }
    }
    let result = match update_once(f, gun, anchor, now, None).await {
        Err(Error::Tampered { role, by, .. }) if role == "root" && by == "snapshot" => {
            update_once(f, gun, anchor, now, None).await
        }
        other => other,
    };
    if let (TrustAnchor::FirstUse, Ok((_, st))) = (anchor, &result) {
        // The operator's log; the command line says it on stderr once the trust is kept.
        tracing::info!(
            gun,
            root_key_ids = ?st.root_key_ids,
            root_version = st.root_version,
            "trusting the root of {gun} on first use: root key ID(s) {}; pin it with --root-key-id (TRUSTKEEPER_ROOT_KEY_ID) or spec.notary.rootKeyIDs",
            st.root_key_ids.join(", ")
        );
    }
    result
}

/// The pinned keys among root's `root` keys (by TUF or canonical ID).
fn pinned_in(root: &Root, pins: &[String]) -> Vec<String> {
    root.roles["root"]
        .keyids
        .iter()
        .filter(|id| {
            pins.contains(id)
                || root
                    .keys
                    .get(*id)
                    .is_some_and(|k| k.canonical_id().is_ok_and(|c| pins.contains(&c)))
        })
        .cloned()
        .collect()
}

/// Whether signatures by pinned keys alone meet `root`'s root threshold.
fn check_pinned(gun: &str, root: &Root, env: &Envelope, pins: &[String]) -> Result<()> {
    let rk = &root.roles["root"];
    let listed = pinned_in(root, pins);
    if listed.is_empty() {
        return Err(Error::UntrustedRoot {
            gun: gun.into(),
            reason: format!(
                "root keys {:?} are not among the pinned keys {pins:?}",
                rk.keyids
            ),
        });
    }
    check_threshold("root", env, &root.keys, &listed, rk.threshold)
}

/// A pin holds over a kept state: `root` is signed by the pinned keys, or is reached from a root
/// they sign by valid rotations (each older root's keys sign the next one), found by walking
/// back through `N.root.json`.
async fn check_pins_reach<F: Fetch>(
    f: &F,
    gun: &str,
    pins: &[String],
    root: &Root,
    env: &Envelope,
    budget: &mut Budget,
) -> Result<()> {
    if check_pinned(gun, root, env, pins).is_ok() {
        return Ok(());
    }
    let (mut newer, mut newer_env) = (root.clone(), env.clone());
    let oldest = root.version.saturating_sub(MAX_ROOT_ROTATIONS).max(1);
    let mut v = root.version;
    while v > oldest {
        v -= 1;
        let Some(b) =
            fetch_within(f, gun, &format!("{v}.root.json"), MAX_ROOT_BYTES, budget).await?
        else {
            break;
        };
        let e = Envelope::parse("root", &b)?;
        let r: Root = metadata::view(&e, "root", "Root")?;
        if r.version != v || !r.roles.contains_key("root") {
            break;
        }
        if check_root_role(&newer, &newer_env, &r, "root").is_err() {
            break;
        }
        if check_pinned(gun, &r, &e, pins).is_ok() {
            return Ok(());
        }
        (newer, newer_env) = (r, e);
    }
    Err(Error::UntrustedRoot {
        gun: gun.into(),
        reason: format!(
            "its root (version {}, root keys {:?}, continuing the kept trust) is not signed by \
             the pinned root keys {pins:?}, nor reached by valid rotations from a root they sign",
            root.version,
            root_key_ids(root)
        ),
    })
}

async fn update_once<F: Fetch>(
    f: &F,
    gun: &str,
    anchor: &TrustAnchor,
    now: Timestamp,
    cached: Option<(Vec<u8>, &TrustState)>,
) -> Result<(Repository, TrustState)> {
    let state = anchor.state();
    let mut budget = Budget::of(f);
    // 1. Root: the cached one only if it is exactly the trusted version.
    let root_bytes = match cached {
        Some((bytes, st)) => {
            let env = Envelope::parse("root", &bytes)?;
            let r: Root = metadata::view(&env, "root", "Root")?;
            if r.version != st.root_version {
                return Err(Error::invalid(
                    "root",
                    "cached root is not the trusted version",
                ));
            }
            bytes
        }
        None => fetch_within(f, gun, "root.json", MAX_ROOT_BYTES, &mut budget)
            .await?
            .ok_or_else(|| Error::UnknownRepository { gun: gun.into() })?,
    };
    let root_env = Envelope::parse("root", &root_bytes)?;
    let root: Root = metadata::view(&root_env, "root", "Root")?;
    check_version("root", root.version)?;
    let root_cert_expires = check_root_shape(&root, gun, now)?;
    match anchor {
        TrustAnchor::FirstUse => check_root_role(&root, &root_env, &root, "root")?,
        TrustAnchor::PinnedKeys(pins) => check_pinned(gun, &root, &root_env, pins)?,
        TrustAnchor::State(st) | TrustAnchor::PinnedState { state: st, .. } => {
            if root.version < st.root_version {
                return Err(Error::Rollback {
                    role: "root".into(),
                    trusted: st.root_version,
                    offered: root.version,
                });
            }
            // Re-establish the trusted root, then walk every version up to the current one.
            if root.version - st.root_version > MAX_ROOT_ROTATIONS {
                return Err(Error::UntrustedRoot {
                    gun: gun.into(),
                    reason: format!(
                        "root jumps from the trusted version {} to {}, more than {MAX_ROOT_ROTATIONS} rotations at once",
                        st.root_version, root.version
                    ),
                });
            }
            let mut prev: Root = if root.version == st.root_version {
                root.clone()
            } else {
                let b = fetch_within(
                    f,
                    gun,
                    &format!("{}.root.json", st.root_version),
                    MAX_ROOT_BYTES,
                    &mut budget,
                )
                .await?
                .ok_or_else(|| Error::NotFound {
                    what: format!("{gun} {}.root.json", st.root_version),
                })?;
                let e = Envelope::parse("root", &b)?;
                metadata::view(&e, "root", "Root")?
            };
            if root_key_ids(&prev) != st.root_key_ids {
                return Err(Error::UntrustedRoot {
                    gun: gun.into(),
                    reason: format!(
                        "root version {} lists keys {:?}, the trusted state says {:?}",
                        prev.version,
                        root_key_ids(&prev),
                        st.root_key_ids
                    ),
                });
            }
            for v in st.root_version + 1..=root.version {
                let (e, r) = if v == root.version {
                    (root_env.clone(), root.clone())
                } else {
                    let b = fetch_within(
                        f,
                        gun,
                        &format!("{v}.root.json"),
                        MAX_ROOT_BYTES,
                        &mut budget,
                    )
                    .await?
                    .ok_or_else(|| Error::NotFound {
                        what: format!("{gun} {v}.root.json"),
                    })?;
                    let e = Envelope::parse("root", &b)?;
                    let r: Root = metadata::view(&e, "root", "Root")?;
                    (e, r)
                };
                if r.version != v {
                    return Err(Error::invalid(
                        "root",
                        format!("{v}.root.json has version {}", r.version),
                    ));
                }
                check_root_role(&r, &e, &prev, "root")?;
                prev = r;
            }
            check_root_role(&root, &root_env, &root, "root")?;
            if let TrustAnchor::PinnedState { pins, .. } = anchor {
                check_pins_reach(f, gun, pins, &root, &root_env, &mut budget).await?;
            }
        }
    }
    if root.expires < now {
        return Err(Error::Expired {
            role: "root".into(),
            expires: root.expires,
        });
    }
    let base_check = |role: &str, env: &Envelope| -> Result<()> {
        let rk = &root.roles[role];
        check_threshold(role, env, &root.keys, &rk.keyids, rk.threshold)
    };

    // 2. Timestamp.
    let ts_bytes = fetch_within(f, gun, "timestamp.json", MAX_TIMESTAMP_BYTES, &mut budget)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: format!("{gun} timestamp.json"),
        })?;
    let ts_env = Envelope::parse("timestamp", &ts_bytes)?;
    let ts: Meta = metadata::view(&ts_env, "timestamp", "Timestamp")?;
    base_check("timestamp", &ts_env)?;
    check_version("timestamp", ts.version)?;
    rollback(state, "timestamp", ts.version)?;
    if ts.expires < now {
        return Err(Error::Expired {
            role: "timestamp".into(),
            expires: ts.expires,
        });
    }

    // 3. Snapshot.
    let snap_meta = ts
        .meta
        .get("snapshot")
        .ok_or_else(|| Error::invalid("timestamp", "no snapshot entry"))?;
    let snap_bytes = fetch_meta(f, gun, "snapshot", snap_meta, "timestamp", &mut budget)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: format!("{gun} snapshot"),
        })?;
    let snap_env = Envelope::parse("snapshot", &snap_bytes)?;
    let snap: Meta = metadata::view(&snap_env, "snapshot", "Snapshot")?;
    base_check("snapshot", &snap_env)?;
    check_version("snapshot", snap.version)?;
    rollback(state, "snapshot", snap.version)?;
    if snap.expires < now {
        return Err(Error::Expired {
            role: "snapshot".into(),
            expires: snap.expires,
        });
    }
    if let Some(m) = snap.meta.get("root") {
        m.check(&root_bytes).map_err(|what| Error::Tampered {
            role: "root".into(),
            by: "snapshot".into(),
            what: format!("{what} (root changed while reading? retry)"),
        })?;
    }

    // 4. Targets.
    let t_meta = snap
        .meta
        .get("targets")
        .ok_or_else(|| Error::invalid("snapshot", "no targets entry"))?;
    let t_bytes = fetch_meta(f, gun, "targets", t_meta, "snapshot", &mut budget)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: format!("{gun} targets"),
        })?;
    let t_env = Envelope::parse("targets", &t_bytes)?;
    let t: Targets = metadata::view(&t_env, "targets", "Targets")?;
    base_check("targets", &t_env)?;
    check_version("targets", t.version)?;
    rollback(state, "targets", t.version)?;

    let mut roles = Vec::new();
    let mut declared = Vec::new();
    let top = make_role("targets", t, t_env, t_bytes, vec![String::new()], now, None);
    let mut queue: VecDeque<usize> = VecDeque::new();
    roles.push(top);
    queue.push_back(0);

    // 5. Delegations, breadth first.
    while let Some(pi) = queue.pop_front() {
        let parent_name = roles[pi].name.clone();
        let parent_paths = roles[pi].paths.clone();
        let parent_hidden = match &roles[pi].health {
            RoleHealth::Valid => None,
            RoleHealth::HiddenByAncestor(a) => Some(a.clone()),
            _ => Some(parent_name.clone()),
        };
        let children = roles[pi].delegations.clone();
        for d in children {
            if !is_direct_child(&parent_name, &d.name)
                || roles.iter().any(|r: &TargetsRole| r.name == d.name)
            {
                continue;
            }
            let eff = restrict(&parent_paths, &d.paths);
            let Some(m) = snap.meta.get(&d.name) else {
                declared.push((d.clone(), eff));
                continue;
            };
            // Listed by the snapshot but absent: the Go client (and so `docker pull`) fails.
            let bytes = fetch_meta(f, gun, &d.name, m, "snapshot", &mut budget)
                .await?
                .ok_or_else(|| Error::MissingRoleFile {
                    gun: gun.into(),
                    role: d.name.clone(),
                })?;
            let env = Envelope::parse(&d.name, &bytes)?;
            let body: Targets = metadata::view(&env, &d.name, "Targets")?;
            check_version(&d.name, body.version)?;
            rollback(state, &d.name, body.version)?;
            let sig_err = check_threshold(
                &d.name,
                &env,
                &d.keys,
                &d.keys.keys().cloned().collect::<Vec<_>>(),
                d.threshold,
            )
            .err()
            .map(|e| e.to_string());
            let mut role = make_role(&d.name, body, env, bytes, eff, now, sig_err);
            if let Some(a) = &parent_hidden
                && role.health == RoleHealth::Valid
            {
                role.health = RoleHealth::HiddenByAncestor(a.clone());
            }
            roles.push(role);
            queue.push_back(roles.len() - 1);
        }
    }

    let mut versions = BTreeMap::new();
    versions.insert("timestamp".to_string(), ts.version);
    versions.insert("snapshot".to_string(), snap.version);
    for r in &roles {
        versions.insert(r.name.clone(), r.version);
    }
    // Never lower what was trusted (a role may have vanished from the snapshot).
    if let Some(st) = state {
        // Absurd floors (see `rollback`) are dropped.
        for (k, v) in st.versions.iter().filter(|(_, v)| **v <= MAX_VERSION) {
            let e = versions.entry(k.clone()).or_insert(*v);
            *e = (*e).max(*v);
        }
    }
    let new_state = TrustState {
        root_key_ids: root_key_ids(&root),
        root_version: root.version,
        versions,
    };
    let repo = Repository {
        gun: gun.into(),
        root_cert_expires,
        root_info: RoleInfo {
            name: "root".into(),
            version: root.version,
            expires: root.expires,
            expired: root.expires < now,
        },
        root,
        snapshot_info: RoleInfo {
            name: "snapshot".into(),
            version: snap.version,
            expires: snap.expires,
            expired: snap.expires < now,
        },
        timestamp_info: RoleInfo {
            name: "timestamp".into(),
            version: ts.version,
            expires: ts.expires,
            expired: ts.expires < now,
        },
        snapshot: snap_env,
        root_file: root_bytes,
        snapshot_file: snap_bytes,
        snapshot_meta: snap.meta,
        roles,
        declared,
    };
    Ok((repo, new_state))
}

/// Expired = `expires` before `now` (Go's `IsExpired`).
fn make_role(
    name: &str,
    body: Targets,
    envelope: Envelope,
    file: Vec<u8>,
    paths: Vec<String>,
    now: Timestamp,
    sig_err: Option<String>,
) -> TargetsRole {
    let expired = body.expires < now;
    let health = match sig_err {
        Some(e) => RoleHealth::BadSignatures(e),
        None if expired => RoleHealth::Expired,
        None => RoleHealth::Valid,
    };
    let delegations = body
        .delegations
        .roles
        .iter()
        .map(|r| Delegation {
            name: r.name.clone(),
            keys: r
                .keyids
                .iter()
                .filter_map(|id| {
                    body.delegations
                        .keys
                        .get(id)
                        .map(|k| (id.clone(), k.clone()))
                })
                .collect(),
            threshold: r.threshold,
            paths: r.paths.clone(),
        })
        .collect();
    TargetsRole {
        name: name.into(),
        version: body.version,
        expires: body.expires,
        expired,
        health,
        targets: body.targets,
        delegations,
        paths,
        envelope,
        file,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_signatures_do_not_vouch_for_other_content() {
        let key = crate::notary::SigningKey::generate_ecdsa("targets/releases", "").unwrap();
        let id = key.key_id().to_string();
        let keys = BTreeMap::from([(id.clone(), key.public().clone())]);
        let listed = [id.clone()];
        let signed = serde_json::json!({"_type": "Targets", "version": 7});
        let msg = crate::notary::canonical::to_vec(&signed).unwrap();
        let good = Envelope {
            signed,
            signatures: vec![key.sign(&msg, &id)],
        };
        // Twice: the second answer comes from the memo.
        assert_eq!(count_valid(&good, &keys, &listed), 1);
        assert_eq!(count_valid(&good, &keys, &listed), 1);
        let mut other_content = good.clone();
        other_content.signed["version"] = 8.into();
        assert_eq!(count_valid(&other_content, &keys, &listed), 0);
        let mut other_sig = good.clone();
        let mut raw = B64.decode(&other_sig.signatures[0].sig).unwrap();
        raw[40] ^= 1;
        other_sig.signatures[0].sig = B64.encode(raw);
        assert_eq!(count_valid(&other_sig, &keys, &listed), 0);
        let stranger = crate::notary::SigningKey::generate_ecdsa("targets/releases", "").unwrap();
        let stranger_keys = BTreeMap::from([(id.clone(), stranger.public().clone())]);
        assert_eq!(count_valid(&good, &stranger_keys, &listed), 0);
    }

    /// The memo a caller keeps between processes: what a run checked comes back out, and what
    /// is handed back in is taken as checked (so its store must be as trusted as the root).
    #[test]
    fn the_memo_kept_between_processes() {
        use sha2::Digest;
        let key = crate::notary::SigningKey::generate_ecdsa("targets/releases", "").unwrap();
        let id = key.key_id().to_string();
        let keys = BTreeMap::from([(id.clone(), key.public().clone())]);
        let listed = [id.clone()];
        let signed = serde_json::json!({"_type": "Targets", "version": 3});
        let msg = crate::notary::canonical::to_vec(&signed).unwrap();
        let entry = |env: &Envelope| {
            let s = &env.signatures[0];
            hex::encode(verified_key(
                &sha2::Sha256::digest(&msg),
                &s.keyid,
                &s.method,
                &B64.decode(&s.sig).unwrap(),
            ))
        };
        let good = Envelope {
            signed,
            signatures: vec![key.sign(&msg, &id)],
        };
        remember_signatures([]);
        assert_eq!(count_valid(&good, &keys, &listed), 1);
        assert!(signatures_checked().contains(&entry(&good)));

        let mut forged = good.clone();
        let mut raw = B64.decode(&forged.signatures[0].sig).unwrap();
        raw[10] ^= 1;
        forged.signatures[0].sig = B64.encode(raw);
        assert_eq!(count_valid(&forged, &keys, &listed), 0);
        assert!(!signatures_checked().contains(&entry(&forged)));
        // Malformed entries are ignored; a well-formed one is believed.
        remember_signatures(["zz", "00", &entry(&forged)[1..]]);
        assert_eq!(count_valid(&forged, &keys, &listed), 0);
        remember_signatures([entry(&forged).as_str()]);
        assert_eq!(count_valid(&forged, &keys, &listed), 1);
    }

    #[test]
    fn paths() {
        assert!(is_direct_child("targets", "targets/releases"));
        assert!(!is_direct_child("targets", "targets/a/b"));
        assert!(!is_direct_child("targets", "targetsx/a"));
        assert_eq!(
            restrict(&["team/".into()], &["team/qa/".into(), "prod/".into()]),
            vec!["team/qa/".to_string()]
        );
        assert_eq!(restrict(&["".into()], &["".into()]), vec![String::new()]);
    }
}
