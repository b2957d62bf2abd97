//! Staged changes to targets roles and their signing (notary-v1.md §8, §4.6).
//!
//! Every change is based on the server's current content of the role, valid or not (expired,
//! badly signed), with `version = stored + 1`, so a renewal never drops targets (trap 5).
//! [`Editor::sign`] does no I/O and refuses before producing anything when a changed role
//! cannot be signed.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::canonical;
use super::client::{Repository, Signers, count_valid_with};
use super::error::{Error, Result};
use super::keys::{SignatureAlgorithm, Signer};
use super::metadata::{FileMeta, Signature, file_bytes};
use super::time;

/// The TUF `method` of a signature made with `alg`.
pub(crate) fn tuf_method(alg: SignatureAlgorithm) -> &'static str {
    match alg {
        SignatureAlgorithm::EcdsaP256Sha256 => "ecdsa",
        SignatureAlgorithm::Ed25519 => "eddsa",
    }
}

/// `signer`'s signature over `msg` (canonical bytes) as a TUF signature labelled
/// `label_key_id` (the TUF ID the role lists, which differs from the signer's for a
/// certificate key).
pub(crate) fn tuf_signature(
    signer: &dyn Signer,
    label_key_id: &str,
    msg: &[u8],
) -> Result<Signature> {
    let raw = signer.sign(msg)?;
    let alg = signer.algorithm();
    // A signer outside this crate (a KMS answers ECDSA in DER) is told so here, not by a
    // verification failure later.
    if raw.len() != alg.signature_len() {
        return Err(Error::Signing {
            key: signer.key_id().to_string(),
            reason: format!(
                "it returned {} signature bytes, not the {} of {alg:?} (ECDSA as r‖s, not DER)",
                raw.len(),
                alg.signature_len()
            ),
        });
    }
    Ok(Signature {
        keyid: label_key_id.to_string(),
        method: tuf_method(alg).to_string(),
        sig: B64.encode(raw),
    })
}

/// One file to upload: `role` is the multipart filename.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedFile {
    pub role: String,
    pub version: u64,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for SignedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SignedFile({} v{}, {} bytes)",
            self.role,
            self.version,
            self.bytes.len()
        )
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct StagedRole {
    add: BTreeMap<String, (String, u64)>,
    remove: BTreeSet<String>,
    witness: bool,
    expires: Option<Timestamp>,
    /// Changes to the role's `delegations`, applied in order (see `delegations.rs`).
    pub(crate) delegations: Vec<super::delegations::DelegationOp>,
}

/// Staged changes on a verified [`Repository`].
#[derive(Debug)]
pub struct Editor<'a> {
    pub(crate) repo: &'a Repository,
    changes: BTreeMap<String, StagedRole>,
}

impl Repository {
    /// Starts staging changes.
    pub fn edit(&self) -> Editor<'_> {
        Editor {
            repo: self,
            changes: BTreeMap::new(),
        }
    }
}

/// The version after `old`, refused past [`MAX_VERSION`](super::client::MAX_VERSION).
pub(crate) fn next_version(role: &str, old: u64) -> Result<u64> {
    old.checked_add(1)
        .filter(|v| *v <= super::client::MAX_VERSION + 1)
        .ok_or_else(|| Error::AbsurdVersion {
            role: role.into(),
            version: old,
            max: super::client::MAX_VERSION,
        })
}

fn check_name(role: &str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty name"
    } else if canonical::has_control_char(name) {
        "control characters cannot be published"
    } else {
        return Ok(());
    };
    Err(Error::TargetNotAllowed {
        role: role.into(),
        name: name.into(),
        reason: reason.into(),
    })
}

impl<'a> Editor<'a> {
    fn role_paths(&self, role: &str) -> Result<Vec<String>> {
        if let Some(r) = self.repo.role(role) {
            return Ok(r.paths.clone());
        }
        self.repo
            .declaration(role)
            .map(|(_, p)| p.to_vec())
            .ok_or_else(|| Error::UnknownRole { role: role.into() })
    }

    pub(crate) fn entry(&mut self, role: &str) -> Result<&mut StagedRole> {
        if !(role == "targets" || role.starts_with("targets/")) {
            return Err(Error::UnknownRole { role: role.into() });
        }
        self.role_paths(role)?;
        Ok(self.changes.entry(role.to_string()).or_default())
    }

    /// Stages `name` → (sha256, length) in `role`. The name must pass the role's paths.
    pub fn add_target(
        &mut self,
        role: &str,
        name: &str,
        sha256: &[u8; 32],
        length: u64,
    ) -> Result<&mut Self> {
        check_name(role, name)?;
        let paths = self.role_paths(role)?;
        if !paths.iter().any(|p| name.starts_with(p.as_str())) {
            return Err(Error::TargetNotAllowed {
                role: role.into(),
                name: name.into(),
                reason: format!("outside the role's paths {paths:?}"),
            });
        }
        let c = self.entry(role)?;
        c.remove.remove(name);
        c.add.insert(name.to_string(), (B64.encode(sha256), length));
        Ok(self)
    }

    /// Stages removal of `name` from `role` (no path check, as notary).
    pub fn remove_target(&mut self, role: &str, name: &str) -> Result<&mut Self> {
        let c = self.entry(role)?;
        c.add.remove(name);
        c.remove.insert(name.to_string());
        Ok(self)
    }

    /// Re-sign `role` even if its content is unchanged (renewal): version + 1, new expiry
    /// (`None` = now + 3 years).
    pub fn witness(&mut self, role: &str, expires: Option<Timestamp>) -> Result<&mut Self> {
        let c = self.entry(role)?;
        c.witness = true;
        if expires.is_some() {
            c.expires = expires;
        }
        Ok(self)
    }

    /// Sets the expiry a changed role gets (default now + 3 years).
    pub fn set_expiry(&mut self, role: &str, expires: Timestamp) -> Result<&mut Self> {
        self.entry(role)?.expires = Some(expires);
        Ok(self)
    }

    /// The delegation changes staged on `role`.
    pub(crate) fn staged_delegations(
        &self,
        role: &str,
    ) -> Option<&[super::delegations::DelegationOp]> {
        self.changes.get(role).map(|c| c.delegations.as_slice())
    }

    /// Roles with staged changes.
    pub fn staged_roles(&self) -> Vec<&str> {
        self.changes.keys().map(String::as_str).collect()
    }

    /// Signs every changed role (and the snapshot if one of `keys` is root's snapshot key).
    /// Unchanged roles (identical adds, absent removes, no witness) produce nothing. Refuses
    /// before producing anything if a changed role cannot be signed with `keys`.
    /// Any [`Signer`] signs: `&[SigningKey]`, `&[Box<dyn Signer>]` (a [`super::keys::KeySource`]'s).
    pub fn sign<S: Signer>(&self, keys: &[S], now: Timestamp) -> Result<Vec<SignedFile>> {
        let mut out = Vec::new();
        // Pass 1: build bodies and check signers for all roles.
        let mut planned = Vec::new();
        // Delegations removed from their parent: the snapshot no longer lists them.
        let mut dropped = Vec::new();
        // Parents' bodies as this edit leaves them: a delegation is signed, and checked,
        // against its staged declaration (a key rotated in the same publish). Parents sort
        // before their children (a prefix), so each is recorded before it is needed.
        let mut staged_parents: BTreeMap<String, Value> = BTreeMap::new();
        for (role, change) in &self.changes {
            let (mut body, old_version) = match self.repo.role(role) {
                Some(r) => (r.envelope.signed.clone(), r.version),
                None => (
                    json!({"_type":"Targets","delegations":{"keys":{},"roles":[]},"expires":"","targets":{},"version":0}),
                    0,
                ),
            };
            let obj = body
                .as_object_mut()
                .ok_or_else(|| Error::invalid(role, "not an object"))?;
            let targets = obj
                .entry("targets")
                .or_insert_with(|| Value::Object(Map::new()));
            if targets.is_null() {
                *targets = Value::Object(Map::new());
            }
            let mut changed = change.witness || change.expires.is_some();
            changed |= super::delegations::apply(role, obj, &change.delegations, &mut dropped)?;
            let tmap = obj
                .get_mut("targets")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| Error::invalid(role, "targets is not an object"))?;
            for name in &change.remove {
                changed |= tmap.remove(name).is_some();
            }
            for (name, (sha, len)) in &change.add {
                let same = tmap.get(name).is_some_and(|v| {
                    serde_json::from_value::<FileMeta>(v.clone()).is_ok_and(|m| {
                        m.length == *len
                            && m.hashes.len() == 1
                            && m.hashes.get("sha256") == Some(sha)
                            && m.custom.is_none()
                    })
                });
                if !same {
                    tmap.insert(
                        name.clone(),
                        json!({"hashes": {"sha256": sha}, "length": len}),
                    );
                    changed = true;
                }
            }
            if !changed {
                continue;
            }
            let expires = change.expires.unwrap_or_else(|| {
                now.saturating_add(time::TARGETS_LIFETIME)
                    .expect("in range")
            });
            if expires <= now {
                return Err(Error::Config(format!(
                    "{role}: expiry {} is not in the future; the server refuses expired uploads",
                    time::format(expires)
                )));
            }
            let version = next_version(role, old_version)?;
            obj.insert("expires".into(), Value::String(time::format(expires)));
            obj.insert("version".into(), json!(version));
            let declared = self.staged_signers(role, &staged_parents)?;
            let signers = pick_signers(role, &declared, keys)?;
            if !change.delegations.is_empty() {
                staged_parents.insert(role.clone(), body.clone());
            }
            planned.push((role.clone(), version, body, signers, declared));
        }
        let snapshot_signers = if planned.is_empty() {
            None
        } else {
            self.repo
                .signers_of("snapshot")
                .ok()
                .and_then(|s| pick_signers("snapshot", &s, keys).ok())
        };

        // Pass 2: sign.
        let mut snap_updates = Vec::new();
        for (role, version, body, signers, declared) in planned {
            let msg = canonical::to_vec(&body).map_err(|e| Error::invalid(&role, e.to_string()))?;
            let sigs = signers
                .iter()
                .map(|(label, k)| tuf_signature(*k, label, &msg))
                .collect::<Result<Vec<_>>>()?;
            let bytes = file_bytes(&msg, &sigs);
            self.self_check(&role, &declared, &bytes)?;
            snap_updates.push((role.clone(), FileMeta::of_file(&bytes)));
            out.push(SignedFile {
                role,
                version,
                bytes,
            });
        }
        if let Some(signers) = snapshot_signers {
            let mut body = self.repo.snapshot.signed.clone();
            let old = self.repo.snapshot_info.version;
            let obj = body
                .as_object_mut()
                .ok_or_else(|| Error::invalid("snapshot", "not an object"))?;
            let meta = obj
                .entry("meta")
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .ok_or_else(|| Error::invalid("snapshot", "meta is not an object"))?;
            for role in &dropped {
                meta.remove(role);
            }
            for (role, m) in snap_updates {
                meta.insert(role, m);
            }
            let expires = now
                .saturating_add(time::SNAPSHOT_LIFETIME)
                .expect("in range");
            obj.insert("expires".into(), Value::String(time::format(expires)));
            let next = next_version("snapshot", old)?;
            obj.insert("version".into(), json!(next));
            let msg =
                canonical::to_vec(&body).map_err(|e| Error::invalid("snapshot", e.to_string()))?;
            let sigs = signers
                .iter()
                .map(|(label, k)| tuf_signature(*k, label, &msg))
                .collect::<Result<Vec<_>>>()?;
            out.push(SignedFile {
                role: "snapshot".into(),
                version: next,
                bytes: file_bytes(&msg, &sigs),
            });
        }
        Ok(out)
    }

    /// The keys and threshold that sign `role`: its parent's declaration as staged in this
    /// edit when the parent changes, else the repository's.
    fn staged_signers(
        &self,
        role: &str,
        staged_parents: &BTreeMap<String, Value>,
    ) -> Result<Signers> {
        let parent = role
            .strip_prefix("targets/")
            .and_then(|_| super::delegations::parent_of(role))
            .and_then(|p| staged_parents.get(p));
        match parent {
            Some(body) => super::delegations::declared_in(role, body),
            None => self.repo.signers_of(role),
        }
    }

    /// Re-verifies what we produced (Go's second pass), so a bad signature never leaves.
    fn self_check(&self, role: &str, s: &Signers, bytes: &[u8]) -> Result<()> {
        let env = super::metadata::Envelope::parse(role, bytes)?;
        let listed: Vec<String> = s.keys.keys().cloned().collect();
        let valid = count_valid_with(&env, &s.keys, &listed, self.repo.memo.as_ref());
        if (valid as u64) < s.threshold {
            return Err(Error::ThresholdNotMet {
                role: role.into(),
                valid,
                threshold: s.threshold as usize,
                listed,
            });
        }
        Ok(())
    }
}

/// (label TUF ID, key) for each listed key we hold, matched by canonical ID; errors if none
/// or fewer than the threshold.
fn pick_signers<'k, S: Signer>(
    role: &str,
    signers: &Signers,
    keys: &'k [S],
) -> Result<Vec<(String, &'k S)>> {
    let mut picked = Vec::new();
    let mut used = BTreeSet::new();
    for (tuf_id, pk) in &signers.keys {
        let Ok(cid) = pk.canonical_id() else {
            continue;
        };
        if let Some(k) = keys.iter().find(|k| k.key_id() == cid)
            && used.insert(tuf_id.clone())
        {
            picked.push((tuf_id.clone(), k));
        }
    }
    if picked.is_empty() {
        return Err(Error::KeyNotSigner {
            role: role.into(),
            accepted: signers.canonical_ids(),
            offered: keys.iter().map(|k| k.key_id().to_string()).collect(),
        });
    }
    if (picked.len() as u64) < signers.threshold {
        return Err(Error::ThresholdNotMet {
            role: role.into(),
            valid: picked.len(),
            threshold: signers.threshold as usize,
            listed: signers.keys.keys().cloned().collect(),
        });
    }
    Ok(picked)
}
