//! Replacing the repository (targets) key, which `notary key rotate GUN targets` does in two
//! steps a reader can fall between and Docker never did: root v(n+1), signed by the root key,
//! lists the new targets key, and targets v(n+1), the same targets and delegations, is signed
//! with it; both go in one publish, so a reader sees the old pair or the new, each valid. The
//! snapshot stays the server's (it re-makes it for the new files), as in every repository
//! Docker created. And root renewed: the same root, version + 1, a new expiry.

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::canonical;
use super::client::{Repository, count_valid};
use super::edit::{SignedFile, next_version, tuf_signature};
use super::error::{Error, Result};
use super::keys::Signer;
use super::metadata::{Envelope, file_bytes};
use super::time;

impl Repository {
    /// Root and targets, re-signed for `new_targets` as the repository key (see the module
    /// comment); nothing when it already is the only one. Refuses, before producing anything,
    /// when `root` is not a root key the repository lists (or fewer than its threshold), or
    /// `targets` has no file to carry over.
    pub fn rotate_targets_key(
        &self,
        root: &dyn Signer,
        new_targets: &dyn Signer,
        now: Timestamp,
    ) -> Result<Vec<SignedFile>> {
        let new_pub = new_targets.public_key().clone();
        let new_id = new_pub.key_id();
        let current = self.signers_of("targets")?;
        let already = current.keys.len() == 1
            && current
                .keys
                .values()
                .all(|k| k.canonical_id().is_ok_and(|c| c == new_targets.key_id()));
        if already {
            return Ok(vec![]);
        }
        let targets = self.role("targets").ok_or_else(|| Error::UnknownRole {
            role: "targets".into(),
        })?;
        let old_ids: Vec<String> = current.keys.keys().cloned().collect();
        let root_file = self.resigned_root(root, now, |obj| {
            let roles = obj
                .get_mut("roles")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| Error::invalid("root", "roles is not an object"))?;
            roles.insert(
                "targets".into(),
                json!({"keyids": [new_id], "threshold": 1}),
            );
            // An old targets key another role still lists stays listed.
            let still_used: Vec<String> = roles
                .values()
                .filter_map(|r| r.get("keyids").and_then(Value::as_array))
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            let keys = obj
                .get_mut("keys")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| Error::invalid("root", "keys is not an object"))?;
            for id in old_ids.iter().filter(|id| !still_used.contains(id)) {
                keys.remove(id);
            }
            keys.insert(new_id.clone(), new_pub.to_value());
            Ok(())
        })?;

        let mut targets_body = targets.envelope.signed.clone();
        let t = targets_body
            .as_object_mut()
            .ok_or_else(|| Error::invalid("targets", "not an object"))?;
        let targets_version = next_version("targets", targets.version)?;
        t.insert("version".into(), json!(targets_version));
        let targets_expires = now
            .saturating_add(time::TARGETS_LIFETIME)
            .expect("in range");
        t.insert("expires".into(), json!(time::format(targets_expires)));
        let msg = canonical::to_vec(&targets_body)
            .map_err(|e| Error::invalid("targets", e.to_string()))?;
        let targets_file = file_bytes(&msg, &[tuf_signature(new_targets, &new_id, &msg)?]);
        let env = Envelope::parse("targets", &targets_file)?;
        let listed = [(new_id.clone(), new_targets.public_key().clone())].into();
        if count_valid(&env, &listed, std::slice::from_ref(&new_id)) != 1 {
            return Err(Error::KeyNotSigner {
                role: "targets".into(),
                accepted: vec![new_id],
                offered: vec![new_targets.key_id().to_string()],
            });
        }
        Ok(vec![
            root_file,
            SignedFile {
                role: "targets".into(),
                version: targets_version,
                bytes: targets_file,
            },
        ])
    }

    /// Root re-signed by `root` as it is (keys and roles unchanged), version + 1, expiring
    /// [`time::ROOT_LIFETIME`] from `now`: what renews a root near its expiry. Its
    /// certificates' own `notAfter` is not moved by this (a root key rotation does that).
    pub fn renew_root(&self, root: &dyn Signer, now: Timestamp) -> Result<Vec<SignedFile>> {
        Ok(vec![self.resigned_root(root, now, |_| Ok(()))?])
    }

    /// Root after `edit`, version + 1, a new expiry, signed by `root` (which root must list
    /// by its certificate or key) and checked as a reader checks it, against the root keys of
    /// the current root: neither edit changes those.
    fn resigned_root(
        &self,
        root: &dyn Signer,
        now: Timestamp,
        edit: impl FnOnce(&mut Map<String, Value>) -> Result<()>,
    ) -> Result<SignedFile> {
        let root_signers = self.signers_of("root")?;
        // The TUF ID a root key signs as: the certificate's that root lists for it.
        let labels: Vec<&String> = (root_signers.keys.iter())
            .filter(|(_, k)| k.canonical_id().is_ok_and(|c| c == root.key_id()))
            .map(|(id, _)| id)
            .collect();
        if labels.is_empty() {
            return Err(Error::KeyNotSigner {
                role: "root".into(),
                accepted: root_signers.canonical_ids(),
                offered: vec![root.key_id().to_string()],
            });
        }
        let mut body = Envelope::parse("root", self.root_file())?.signed;
        let obj = body
            .as_object_mut()
            .ok_or_else(|| Error::invalid("root", "not an object"))?;
        edit(obj)?;
        let version = next_version("root", self.root_info.version)?;
        obj.insert("version".into(), json!(version));
        let expires = now.saturating_add(time::ROOT_LIFETIME).expect("in range");
        obj.insert("expires".into(), json!(time::format(expires)));
        let msg = canonical::to_vec(&body).map_err(|e| Error::invalid("root", e.to_string()))?;
        let sigs = (labels.iter())
            .map(|label| tuf_signature(root, label, &msg))
            .collect::<Result<Vec<_>>>()?;
        let bytes = file_bytes(&msg, &sigs);
        let env = Envelope::parse("root", &bytes)?;
        let ids: Vec<String> = root_signers.keys.keys().cloned().collect();
        let valid = count_valid(&env, &root_signers.keys, &ids);
        if (valid as u64) < root_signers.threshold {
            return Err(Error::ThresholdNotMet {
                role: "root".into(),
                valid,
                threshold: root_signers.threshold as usize,
                listed: ids,
            });
        }
        Ok(SignedFile {
            role: "root".into(),
            version,
            bytes,
        })
    }
}
