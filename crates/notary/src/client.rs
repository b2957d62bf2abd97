//! TUF update and verification for one GUN (notary-v1.md §10): root (with rotation through
//! versioned roots), timestamp, snapshot, targets and delegations; signatures vs thresholds,
//! hashes and lengths, rollback against the caller's trusted state, expiry.
//!
//! [`update_with_memo`] (and [`update_with`], without a memo) runs one step per role, each a
//! method of `Update`: `root` (cached or trusted root, `rotations`, `pins_reach`), `timestamp`,
//! `snapshot`, `targets`, `delegations`; signatures go through the caller's [`SignatureMemo`].
//!
//! Expired or badly signed *targets roles* are not fatal: they are loaded, flagged and hidden
//! from lookups, so that a caller holding the key can renew them with their content intact.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::keys::PublicKey;
use super::memo::{self, SignatureMemo};
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
    /// The memo the update verified through, if any: an edit's check of its own signatures
    /// goes through it too, so the read-back after a publish finds them there.
    pub(crate) memo: Option<SignatureMemo>,
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

    pub fn declaration(&self, name: &str) -> Option<(&Delegation, &[String])> {
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

/// Counts distinct listed keys with a valid signature over `env`'s canonical `signed`, every
/// signature verified.
pub fn count_valid(env: &Envelope, keys: &BTreeMap<String, PublicKey>, listed: &[String]) -> usize {
    count_valid_with(env, keys, listed, None)
}

/// As [`count_valid`], through the caller's memo if given: a signature it holds is not verified
/// again, one found valid is added.
pub fn count_valid_with(
    env: &Envelope,
    keys: &BTreeMap<String, PublicKey>,
    listed: &[String],
    memo: Option<&SignatureMemo>,
) -> usize {
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
        let verify = || k.verify(&s.method, &msg, &sig);
        let valid = match memo {
            // The key ID is a digest of the key's type and bytes (checked just above), so it
            // stands for the key in the memo.
            Some(m) => m.check(memo::entry(&msg_digest, &s.keyid, &s.method, &sig), verify),
            None => verify(),
        };
        if valid {
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
    memo: Option<&SignatureMemo>,
) -> Result<()> {
    if threshold < 1 {
        return Err(Error::invalid(role, "threshold below 1"));
    }
    let valid = count_valid_with(env, keys, listed, memo);
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

/// Whether `env` (a root) meets the root threshold of `signer` (itself, or the root before it).
fn check_root_role(env: &Envelope, signer: &Root, memo: Option<&SignatureMemo>) -> Result<()> {
    let rk = signer
        .roles
        .get("root")
        .ok_or_else(|| Error::invalid("root", "no root role"))?;
    check_threshold("root", env, &signer.keys, &rk.keyids, rk.threshold, memo)
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

/// The update algorithm over any file source, every signature verified (see
/// [`update_with_memo`]).
pub async fn update_with<F: Fetch>(
    f: &F,
    gun: &str,
    anchor: &TrustAnchor,
    now: Timestamp,
) -> Result<(Repository, TrustState)> {
    update(f, gun, anchor, now, None).await
}

/// The update algorithm over any file source, through the caller's signature memo (signatures
/// it holds are not verified again; those found valid are added). If root changes while
/// reading (the snapshot announces another root than the one fetched), the update runs once
/// more. With a trusted state and a cached root, the root is not downloaded; if anything then
/// fails to verify except the network, the update runs again on a freshly fetched root (the Go
/// client's order: a rotated root shows as a failed timestamp or snapshot check).
pub async fn update_with_memo<F: Fetch>(
    f: &F,
    gun: &str,
    anchor: &TrustAnchor,
    now: Timestamp,
    memo: &SignatureMemo,
) -> Result<(Repository, TrustState)> {
    update(f, gun, anchor, now, Some(memo)).await
}

async fn update<F: Fetch>(
    f: &F,
    gun: &str,
    anchor: &TrustAnchor,
    now: Timestamp,
    memo: Option<&SignatureMemo>,
) -> Result<(Repository, TrustState)> {
    if let Some(st) = anchor.state()
        && let Some(root) = f.cached_root(gun)
    {
        match update_once(Update::new(f, gun, anchor, now, memo), Some((root, st))).await {
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
    let result = match update_once(Update::new(f, gun, anchor, now, memo), None).await {
        Err(Error::Tampered { role, by, .. }) if role == "root" && by == "snapshot" => {
            update_once(Update::new(f, gun, anchor, now, memo), None).await
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

/// One pass: root, timestamp, snapshot, targets, delegations, each verified before the next is
/// read.
async fn update_once<F: Fetch>(
    mut u: Update<'_, F>,
    cached: Option<(Vec<u8>, &TrustState)>,
) -> Result<(Repository, TrustState)> {
    let root = u.root(cached).await?;
    let ts = u.timestamp(&root.root).await?;
    let snap = u.snapshot(&root, &ts).await?;
    let mut roles = vec![u.targets(&root.root, &snap.body).await?];
    let declared = u.delegations(&snap.body, &mut roles).await?;
    Ok(u.assemble(root, ts, snap, roles, declared))
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
fn check_pinned(
    gun: &str,
    root: &Root,
    env: &Envelope,
    pins: &[String],
    memo: Option<&SignatureMemo>,
) -> Result<()> {
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
    check_threshold("root", env, &root.keys, &listed, rk.threshold, memo)
}

fn parse_root(bytes: &[u8]) -> Result<(Envelope, Root)> {
    let env = Envelope::parse("root", bytes)?;
    let root = metadata::view(&env, "root", "Root")?;
    Ok((env, root))
}

/// One update of one GUN: the file source, the anchor it continues from, the caller's memo and
/// what it may still read. One method per role.
struct Update<'a, F> {
    f: &'a F,
    gun: &'a str,
    anchor: &'a TrustAnchor,
    now: Timestamp,
    memo: Option<&'a SignatureMemo>,
    budget: Budget,
}

/// The verified root: its exact file and body.
struct RootFile {
    bytes: Vec<u8>,
    root: Root,
    cert_expires: Option<Timestamp>,
}

/// The verified snapshot: its exact file, envelope and body.
struct SnapshotFile {
    bytes: Vec<u8>,
    env: Envelope,
    body: Meta,
}

impl<'a, F: Fetch> Update<'a, F> {
    fn new(
        f: &'a F,
        gun: &'a str,
        anchor: &'a TrustAnchor,
        now: Timestamp,
        memo: Option<&'a SignatureMemo>,
    ) -> Self {
        Update {
            f,
            gun,
            anchor,
            now,
            memo,
            budget: Budget::of(f),
        }
    }

    async fn fetch(&mut self, name: &str, own_max: u64) -> Result<Option<Vec<u8>>> {
        fetch_within(self.f, self.gun, name, own_max, &mut self.budget).await
    }

    async fn fetch_meta(
        &mut self,
        role: &str,
        meta: &FileMeta,
        by: &str,
    ) -> Result<Option<Vec<u8>>> {
        fetch_meta(self.f, self.gun, role, meta, by, &mut self.budget).await
    }

    /// `N.root.json`.
    async fn fetch_root_version(&mut self, v: u64) -> Result<Option<Vec<u8>>> {
        self.fetch(&format!("{v}.root.json"), MAX_ROOT_BYTES).await
    }

    /// A base role's signatures against root's keys and threshold for it.
    fn base_check(&self, root: &Root, role: &str, env: &Envelope) -> Result<()> {
        let rk = &root.roles[role];
        check_threshold(role, env, &root.keys, &rk.keyids, rk.threshold, self.memo)
    }

    /// A version that can be incremented and is not below the trusted one.
    fn check_versions(&self, role: &str, version: u64) -> Result<()> {
        check_version(role, version)?;
        rollback(self.anchor.state(), role, version)
    }

    fn check_expiry(&self, role: &str, expires: Timestamp) -> Result<()> {
        if expires < self.now {
            return Err(Error::Expired {
                role: role.into(),
                expires,
            });
        }
        Ok(())
    }

    /// Root (step 1): the cached one only if it is exactly the trusted version, else `root.json`;
    /// well formed, trusted by the anchor, not expired.
    async fn root(&mut self, cached: Option<(Vec<u8>, &TrustState)>) -> Result<RootFile> {
        let (bytes, env, root) = match cached {
            Some((bytes, st)) => {
                let (env, root) = parse_root(&bytes)?;
                if root.version != st.root_version {
                    return Err(Error::invalid(
                        "root",
                        "cached root is not the trusted version",
                    ));
                }
                (bytes, env, root)
            }
            None => {
                let bytes = self
                    .fetch("root.json", MAX_ROOT_BYTES)
                    .await?
                    .ok_or_else(|| Error::UnknownRepository {
                        gun: self.gun.into(),
                    })?;
                let (env, root) = parse_root(&bytes)?;
                (bytes, env, root)
            }
        };
        check_version("root", root.version)?;
        let cert_expires = check_root_shape(&root, self.gun, self.now)?;
        match self.anchor {
            TrustAnchor::FirstUse => check_root_role(&env, &root, self.memo)?,
            TrustAnchor::PinnedKeys(pins) => check_pinned(self.gun, &root, &env, pins, self.memo)?,
            TrustAnchor::State(st) | TrustAnchor::PinnedState { state: st, .. } => {
                self.rotations(st, &root, &env).await?;
                if let TrustAnchor::PinnedState { pins, .. } = self.anchor {
                    self.pins_reach(pins, &root, &env).await?;
                }
            }
        }
        self.check_expiry("root", root.expires)?;
        Ok(RootFile {
            bytes,
            root,
            cert_expires,
        })
    }

    /// Re-establishes the trusted root, then walks every version up to the current one: each
    /// signed by the root before it, the current one also by itself.
    async fn rotations(&mut self, st: &TrustState, root: &Root, env: &Envelope) -> Result<()> {
        if root.version < st.root_version {
            return Err(Error::Rollback {
                role: "root".into(),
                trusted: st.root_version,
                offered: root.version,
            });
        }
        if root.version - st.root_version > MAX_ROOT_ROTATIONS {
            return Err(Error::UntrustedRoot {
                gun: self.gun.into(),
                reason: format!(
                    "root jumps from the trusted version {} to {}, more than {MAX_ROOT_ROTATIONS} rotations at once",
                    st.root_version, root.version
                ),
            });
        }
        let mut prev: Cow<'_, Root> = if root.version == st.root_version {
            Cow::Borrowed(root)
        } else {
            let b = self
                .fetch_root_version(st.root_version)
                .await?
                .ok_or_else(|| Error::NotFound {
                    what: format!("{} {}.root.json", self.gun, st.root_version),
                })?;
            Cow::Owned(parse_root(&b)?.1)
        };
        if root_key_ids(&prev) != st.root_key_ids {
            return Err(Error::UntrustedRoot {
                gun: self.gun.into(),
                reason: format!(
                    "root version {} lists keys {:?}, the trusted state says {:?}",
                    prev.version,
                    root_key_ids(&prev),
                    st.root_key_ids
                ),
            });
        }
        for v in st.root_version + 1..root.version {
            let b = self
                .fetch_root_version(v)
                .await?
                .ok_or_else(|| Error::NotFound {
                    what: format!("{} {v}.root.json", self.gun),
                })?;
            let (e, r) = parse_root(&b)?;
            if r.version != v {
                return Err(Error::invalid(
                    "root",
                    format!("{v}.root.json has version {}", r.version),
                ));
            }
            check_root_role(&e, &prev, self.memo)?;
            prev = Cow::Owned(r);
        }
        if root.version > st.root_version {
            check_root_role(env, &prev, self.memo)?;
        }
        check_root_role(env, root, self.memo)
    }

    /// A pin holds over a kept state: `root` is signed by the pinned keys, or is reached from a
    /// root they sign by valid rotations (each older root's keys sign the next one), found by
    /// walking back through `N.root.json`.
    async fn pins_reach(&mut self, pins: &[String], root: &Root, env: &Envelope) -> Result<()> {
        if check_pinned(self.gun, root, env, pins, self.memo).is_ok() {
            return Ok(());
        }
        let mut newer_env: Cow<'_, Envelope> = Cow::Borrowed(env);
        let oldest = root.version.saturating_sub(MAX_ROOT_ROTATIONS).max(1);
        let mut v = root.version;
        while v > oldest {
            v -= 1;
            let Some(b) = self.fetch_root_version(v).await? else {
                break;
            };
            let (e, r) = parse_root(&b)?;
            if r.version != v || !r.roles.contains_key("root") {
                break;
            }
            if check_root_role(&newer_env, &r, self.memo).is_err() {
                break;
            }
            if check_pinned(self.gun, &r, &e, pins, self.memo).is_ok() {
                return Ok(());
            }
            newer_env = Cow::Owned(e);
        }
        Err(Error::UntrustedRoot {
            gun: self.gun.into(),
            reason: format!(
                "its root (version {}, root keys {:?}, continuing the kept trust) is not signed by \
                 the pinned root keys {pins:?}, nor reached by valid rotations from a root they sign",
                root.version,
                root_key_ids(root)
            ),
        })
    }

    /// Timestamp (step 2): signed by root's timestamp keys, no rollback, not expired.
    async fn timestamp(&mut self, root: &Root) -> Result<Meta> {
        let bytes = self
            .fetch("timestamp.json", MAX_TIMESTAMP_BYTES)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("{} timestamp.json", self.gun),
            })?;
        let env = Envelope::parse("timestamp", &bytes)?;
        let ts: Meta = metadata::view(&env, "timestamp", "Timestamp")?;
        self.base_check(root, "timestamp", &env)?;
        self.check_versions("timestamp", ts.version)?;
        self.check_expiry("timestamp", ts.expires)?;
        Ok(ts)
    }

    /// Snapshot (step 3), by the hash the timestamp names: signed by root's snapshot keys, no
    /// rollback, not expired, and naming the root read (if it names one).
    async fn snapshot(&mut self, root: &RootFile, ts: &Meta) -> Result<SnapshotFile> {
        let m = ts
            .meta
            .get("snapshot")
            .ok_or_else(|| Error::invalid("timestamp", "no snapshot entry"))?;
        let bytes = self
            .fetch_meta("snapshot", m, "timestamp")
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("{} snapshot", self.gun),
            })?;
        let env = Envelope::parse("snapshot", &bytes)?;
        let body: Meta = metadata::view(&env, "snapshot", "Snapshot")?;
        self.base_check(&root.root, "snapshot", &env)?;
        self.check_versions("snapshot", body.version)?;
        self.check_expiry("snapshot", body.expires)?;
        if let Some(m) = body.meta.get("root") {
            m.check(&root.bytes).map_err(|what| Error::Tampered {
                role: "root".into(),
                by: "snapshot".into(),
                what: format!("{what} (root changed while reading? retry)"),
            })?;
        }
        Ok(SnapshotFile { bytes, env, body })
    }

    /// Targets (step 4), by the hash the snapshot names: signed by root's targets keys, no
    /// rollback. Expired is flagged, not refused.
    async fn targets(&mut self, root: &Root, snap: &Meta) -> Result<TargetsRole> {
        let m = snap
            .meta
            .get("targets")
            .ok_or_else(|| Error::invalid("snapshot", "no targets entry"))?;
        let bytes = self
            .fetch_meta("targets", m, "snapshot")
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("{} targets", self.gun),
            })?;
        let env = Envelope::parse("targets", &bytes)?;
        let t: Targets = metadata::view(&env, "targets", "Targets")?;
        self.base_check(root, "targets", &env)?;
        self.check_versions("targets", t.version)?;
        Ok(make_role(
            "targets",
            t,
            env,
            bytes,
            vec![String::new()],
            self.now,
            None,
        ))
    }

    /// Delegations (step 5), breadth first from `roles` (the targets role), each appended to it;
    /// returns those declared but absent from the snapshot. A role under an expired or badly
    /// signed one is hidden (Go skips the subtree).
    async fn delegations(
        &mut self,
        snap: &Meta,
        roles: &mut Vec<TargetsRole>,
    ) -> Result<Vec<(Delegation, Vec<String>)>> {
        let mut declared = Vec::new();
        let mut queue: VecDeque<usize> = (0..roles.len()).collect();
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
                let mut role = self.delegation(&d, m, eff).await?;
                if let Some(a) = &parent_hidden
                    && role.health == RoleHealth::Valid
                {
                    role.health = RoleHealth::HiddenByAncestor(a.clone());
                }
                roles.push(role);
                queue.push_back(roles.len() - 1);
            }
        }
        Ok(declared)
    }

    /// One delegation listed by the snapshot: no rollback; signatures below its threshold are
    /// flagged, not refused.
    async fn delegation(
        &mut self,
        d: &Delegation,
        m: &FileMeta,
        eff: Vec<String>,
    ) -> Result<TargetsRole> {
        // Listed by the snapshot but absent: the Go client (and so `docker pull`) fails.
        let bytes = self
            .fetch_meta(&d.name, m, "snapshot")
            .await?
            .ok_or_else(|| Error::MissingRoleFile {
                gun: self.gun.into(),
                role: d.name.clone(),
            })?;
        let env = Envelope::parse(&d.name, &bytes)?;
        let body: Targets = metadata::view(&env, &d.name, "Targets")?;
        self.check_versions(&d.name, body.version)?;
        let sig_err = check_threshold(
            &d.name,
            &env,
            &d.keys,
            &d.keys.keys().cloned().collect::<Vec<_>>(),
            d.threshold,
            self.memo,
        )
        .err()
        .map(|e| e.to_string());
        Ok(make_role(&d.name, body, env, bytes, eff, self.now, sig_err))
    }

    /// The repository and the new trusted state: never lower than what was trusted.
    fn assemble(
        self,
        root: RootFile,
        ts: Meta,
        snap: SnapshotFile,
        roles: Vec<TargetsRole>,
        declared: Vec<(Delegation, Vec<String>)>,
    ) -> (Repository, TrustState) {
        let now = self.now;
        let mut versions = BTreeMap::new();
        versions.insert("timestamp".to_string(), ts.version);
        versions.insert("snapshot".to_string(), snap.body.version);
        for r in &roles {
            versions.insert(r.name.clone(), r.version);
        }
        // Never lower what was trusted (a role may have vanished from the snapshot).
        if let Some(st) = self.anchor.state() {
            // Absurd floors (see `rollback`) are dropped.
            for (k, v) in st.versions.iter().filter(|(_, v)| **v <= MAX_VERSION) {
                let e = versions.entry(k.clone()).or_insert(*v);
                *e = (*e).max(*v);
            }
        }
        let RootFile {
            bytes: root_bytes,
            root,
            cert_expires,
        } = root;
        let new_state = TrustState {
            root_key_ids: root_key_ids(&root),
            root_version: root.version,
            versions,
        };
        let repo = Repository {
            gun: self.gun.into(),
            root_cert_expires: cert_expires,
            root_info: RoleInfo {
                name: "root".into(),
                version: root.version,
                expires: root.expires,
                expired: root.expires < now,
            },
            root,
            snapshot_info: RoleInfo {
                name: "snapshot".into(),
                version: snap.body.version,
                expires: snap.body.expires,
                expired: snap.body.expires < now,
            },
            timestamp_info: RoleInfo {
                name: "timestamp".into(),
                version: ts.version,
                expires: ts.expires,
                expired: ts.expires < now,
            },
            snapshot: snap.env,
            root_file: root_bytes,
            snapshot_file: snap.bytes,
            snapshot_meta: snap.body.meta,
            roles,
            declared,
            memo: self.memo.cloned(),
        };
        (repo, new_state)
    }
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
        let key = crate::SigningKey::generate_ecdsa("targets/releases", "").unwrap();
        let id = key.key_id().to_string();
        let keys = BTreeMap::from([(id.clone(), key.public().clone())]);
        let listed = [id.clone()];
        let signed = serde_json::json!({"_type": "Targets", "version": 7});
        let msg = crate::canonical::to_vec(&signed).unwrap();
        let good = Envelope {
            signed,
            signatures: vec![key.sign(&msg, &id)],
        };
        let memo = SignatureMemo::default();
        let count = |env: &Envelope, keys: &BTreeMap<String, PublicKey>| {
            count_valid_with(env, keys, &listed, Some(&memo))
        };
        // Twice: the second answer comes from the memo.
        assert_eq!(count(&good, &keys), 1);
        assert_eq!(count(&good, &keys), 1);
        let mut other_content = good.clone();
        other_content.signed["version"] = 8.into();
        assert_eq!(count(&other_content, &keys), 0);
        let mut other_sig = good.clone();
        let mut raw = B64.decode(&other_sig.signatures[0].sig).unwrap();
        raw[40] ^= 1;
        other_sig.signatures[0].sig = B64.encode(raw);
        assert_eq!(count(&other_sig, &keys), 0);
        let stranger = crate::SigningKey::generate_ecdsa("targets/releases", "").unwrap();
        let stranger_keys = BTreeMap::from([(id.clone(), stranger.public().clone())]);
        assert_eq!(count(&good, &stranger_keys), 0);
    }

    /// The memo a caller keeps between processes: what a run checked comes back out, and what
    /// is handed back in is taken as checked (so its store must be as trusted as the root).
    #[test]
    fn the_memo_kept_between_processes() {
        use sha2::Digest;
        let key = crate::SigningKey::generate_ecdsa("targets/releases", "").unwrap();
        let id = key.key_id().to_string();
        let keys = BTreeMap::from([(id.clone(), key.public().clone())]);
        let listed = [id.clone()];
        let signed = serde_json::json!({"_type": "Targets", "version": 3});
        let msg = crate::canonical::to_vec(&signed).unwrap();
        let entry = |env: &Envelope| {
            let s = &env.signatures[0];
            hex::encode(memo::entry(
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
        // Each test (and each caller) has its own memo: nothing another one remembered counts.
        let memo = SignatureMemo::default();
        let count = |env: &Envelope| count_valid_with(env, &keys, &listed, Some(&memo));
        assert_eq!(count(&good), 1);
        assert!(
            memo.checked().is_empty(),
            "no record before one is asked for"
        );
        memo.remember([]);
        assert_eq!(count(&good), 1);
        assert!(memo.checked().contains(&entry(&good)));

        let mut forged = good.clone();
        let mut raw = B64.decode(&forged.signatures[0].sig).unwrap();
        raw[10] ^= 1;
        forged.signatures[0].sig = B64.encode(raw);
        assert_eq!(count(&forged), 0);
        assert!(!memo.checked().contains(&entry(&forged)));
        // Malformed entries are ignored; a well-formed one is believed.
        memo.remember(["zz", "00", &entry(&forged)[1..]]);
        assert_eq!(count(&forged), 0);
        memo.remember([entry(&forged).as_str()]);
        assert_eq!(count(&forged), 1);
        assert!(memo.checked().contains(&entry(&forged)));
        // Believed by that memo only: another caller's memo, and no memo, check it.
        let other = SignatureMemo::default();
        assert_eq!(count_valid_with(&forged, &keys, &listed, Some(&other)), 0);
        assert_eq!(count_valid(&forged, &keys, &listed), 0);
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
