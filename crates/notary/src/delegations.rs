//! Staged changes to delegations: what `notary delegation add/remove` and `docker trust signer
//! add/remove` change. Only the parent's `delegations` changes (keys, roles, paths, threshold);
//! a new delegation gets no file of its own (notary-server accepts a delegation's file only
//! when its own keys sign it, and the Go client writes it when someone first publishes into it).
//!
//! The operations are applied in order to the parent's current body when [`Editor::sign`] runs,
//! so several compose in one publish, and every refusal happens before anything is produced.

use serde_json::{Map, Value, json};

use super::canonical;
use super::edit::Editor;
use super::error::{Error, Result};
use super::keys::PublicKey;

/// The most keys one delegation lists (a real one has a handful).
pub const MAX_DELEGATION_KEYS: usize = 64;
/// The most path prefixes one delegation lists.
pub const MAX_DELEGATION_PATHS: usize = 1024;
/// The longest path prefix.
pub const MAX_PATH_BYTES: usize = 1024;

#[derive(Debug, Clone)]
pub(crate) enum DelegationOp {
    /// Declares `name`, or adds keys and paths to it (and sets the threshold when given).
    Add {
        name: String,
        keys: Vec<PublicKey>,
        paths: Vec<String>,
        threshold: Option<u64>,
    },
    /// Removes keys (TUF or canonical IDs) from `name`.
    RemoveKeys {
        name: String,
        key_ids: Vec<String>,
        /// Whether the role may be left without keys (`docker trust signer remove` of the
        /// last signer of `targets/releases`, after its warning).
        allow_empty: bool,
    },
    /// Removes `name` from its parent.
    Remove { name: String },
}

/// The parent role of a delegation (`targets/a/b` → `targets/a`).
pub fn parent_of(name: &str) -> Option<&str> {
    name.rsplit_once('/').map(|(p, _)| p)
}

/// A delegation name as notary accepts it: `targets/…`, `[-a-z0-9_/]`, under 256 bytes, no
/// empty, `.` or `..` segment.
pub fn check_delegation_name(name: &str) -> Result<()> {
    let bad = |reason: &str| Error::InvalidName {
        what: "delegation".into(),
        name: name.into(),
        reason: reason.into(),
    };
    let Some(rest) = name.strip_prefix("targets/") else {
        return Err(bad(
            "a delegation is named targets/NAME (e.g. targets/releases, targets/alice)",
        ));
    };
    if name.len() >= 256 {
        return Err(bad("longer than 255 bytes"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'/'))
    {
        return Err(bad(
            "only lower-case letters, digits, -, _ and / (notary's rule)",
        ));
    }
    if rest
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(bad("an empty segment"));
    }
    Ok(())
}

fn check_paths(name: &str, paths: &[String]) -> Result<()> {
    if paths.len() > MAX_DELEGATION_PATHS {
        return Err(Error::InvalidName {
            what: "delegation paths of".into(),
            name: name.into(),
            reason: format!("more than {MAX_DELEGATION_PATHS}"),
        });
    }
    for p in paths {
        let reason = if p.len() > MAX_PATH_BYTES {
            format!("longer than {MAX_PATH_BYTES} bytes")
        } else if canonical::has_control_char(p) {
            "control characters cannot be published".into()
        } else {
            continue;
        };
        return Err(Error::InvalidName {
            what: "delegation path".into(),
            name: p.chars().take(64).collect(),
            reason,
        });
    }
    Ok(())
}

impl Editor<'_> {
    /// Stages declaring delegation `name` in its parent with `keys`, `paths` (`""` = every
    /// path, notary's `--all-paths`) and `threshold` (default 1); if the parent declares it
    /// already, the keys and paths are added to it and the threshold set when given.
    pub fn add_delegation(
        &mut self,
        name: &str,
        keys: &[PublicKey],
        paths: &[String],
        threshold: Option<u64>,
    ) -> Result<&mut Self> {
        check_delegation_name(name)?;
        check_paths(name, paths)?;
        if keys.len() > MAX_DELEGATION_KEYS {
            return Err(Error::InvalidName {
                what: "delegation".into(),
                name: name.into(),
                reason: format!("more than {MAX_DELEGATION_KEYS} keys"),
            });
        }
        for k in keys {
            k.canonical_id()?;
        }
        if threshold == Some(0) {
            return Err(Error::ThresholdTooHigh {
                role: name.into(),
                threshold: 0,
                keys: keys.len(),
            });
        }
        let parent = parent_of(name).expect("checked: has a /");
        self.entry(parent)?.delegations.push(DelegationOp::Add {
            name: name.into(),
            keys: keys.to_vec(),
            paths: paths.to_vec(),
            threshold,
        });
        Ok(self)
    }

    /// Stages removing keys (TUF IDs or canonical IDs, as `delegation list` shows either)
    /// from delegation `name`. Refused when one is not listed, or when the keys left cannot
    /// meet the threshold (remove the delegation instead, or lower the threshold).
    pub fn remove_delegation_keys(&mut self, name: &str, key_ids: &[String]) -> Result<&mut Self> {
        check_delegation_name(name)?;
        self.declared(name)?;
        let parent = parent_of(name).expect("checked: has a /");
        self.entry(parent)?
            .delegations
            .push(DelegationOp::RemoveKeys {
                name: name.into(),
                key_ids: key_ids.to_vec(),
                allow_empty: false,
            });
        Ok(self)
    }

    /// Like [`Editor::remove_delegation_keys`], but the role may be left without keys (and
    /// then signs nothing): what `docker trust signer remove` does to `targets/releases` when
    /// its last signer goes. The caller warns.
    pub fn remove_delegation_keys_leaving_none(
        &mut self,
        name: &str,
        key_ids: &[String],
    ) -> Result<&mut Self> {
        self.remove_delegation_keys(name, key_ids)?;
        let parent = parent_of(name).expect("checked: has a /");
        if let Some(DelegationOp::RemoveKeys { allow_empty, .. }) =
            self.entry(parent)?.delegations.last_mut()
        {
            *allow_empty = true;
        }
        Ok(self)
    }

    /// Stages removing delegation `name` from its parent (its file, if any, is left on the
    /// server, unreachable, as notary leaves it).
    pub fn remove_delegation(&mut self, name: &str) -> Result<&mut Self> {
        check_delegation_name(name)?;
        self.declared(name)?;
        let parent = parent_of(name).expect("checked: has a /");
        self.entry(parent)?
            .delegations
            .push(DelegationOp::Remove { name: name.into() });
        Ok(self)
    }

    fn declared(&self, name: &str) -> Result<()> {
        // Staged additions in this edit count too.
        let staged = parent_of(name)
            .and_then(|p| self.staged_delegations(p))
            .is_some_and(|ops| {
                ops.iter()
                    .any(|op| matches!(op, DelegationOp::Add { name: n, .. } if n == name))
            });
        if staged || self.repo.declaration(name).is_some() {
            Ok(())
        } else {
            Err(Error::UnknownRole { role: name.into() })
        }
    }
}

/// The keys and threshold `parent_body` (a targets body) declares for delegation `name`.
pub(crate) fn declared_in(name: &str, parent_body: &Value) -> Result<super::client::Signers> {
    let d: super::metadata::Delegations = parent_body
        .get("delegations")
        .filter(|v| !v.is_null())
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()
        .map_err(|e| invalid(parent_of(name).unwrap_or(name), &e.to_string()))?
        .unwrap_or_default();
    let r = d
        .roles
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| Error::UnknownRole { role: name.into() })?;
    Ok(super::client::Signers {
        role: name.into(),
        keys: r
            .keyids
            .iter()
            .filter_map(|id| d.keys.get(id).map(|k| (id.clone(), k.clone())))
            .collect(),
        threshold: r.threshold,
    })
}

fn invalid(role: &str, reason: &str) -> Error {
    Error::invalid(role, reason)
}

/// The TUF IDs a role entry lists.
fn key_ids_of(entry: &Value) -> Vec<String> {
    entry
        .get("keyids")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Applies `ops` to the targets body `obj` of `parent`; returns whether it changed. Names of
/// removed delegations are pushed to `dropped`.
pub(crate) fn apply(
    parent: &str,
    obj: &mut Map<String, Value>,
    ops: &[DelegationOp],
    dropped: &mut Vec<String>,
) -> Result<bool> {
    if ops.is_empty() {
        return Ok(false);
    }
    let d = obj
        .entry("delegations")
        .or_insert_with(|| json!({"keys": {}, "roles": []}));
    if d.is_null() {
        *d = json!({"keys": {}, "roles": []});
    }
    let before = d.clone();
    let d = d
        .as_object_mut()
        .ok_or_else(|| invalid(parent, "delegations is not an object"))?;
    for field in ["keys", "roles"] {
        let v = d.entry(field).or_insert(Value::Null);
        if v.is_null() {
            *v = if field == "keys" {
                json!({})
            } else {
                json!([])
            };
        }
    }
    let mut keys = d
        .remove("keys")
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .ok_or_else(|| invalid(parent, "delegations.keys is not an object"))?;
    let mut roles = d
        .remove("roles")
        .and_then(|v| match v {
            Value::Array(a) => Some(a),
            _ => None,
        })
        .ok_or_else(|| invalid(parent, "delegations.roles is not an array"))?;
    let find = |roles: &[Value], name: &str| {
        roles
            .iter()
            .position(|r| r.get("name").and_then(Value::as_str) == Some(name))
    };
    for op in ops {
        match op {
            DelegationOp::Add {
                name,
                keys: new_keys,
                paths,
                threshold,
            } => {
                let idx = match find(&roles, name) {
                    Some(i) => i,
                    None => {
                        roles
                            .push(json!({"keyids": [], "name": name, "paths": [], "threshold": 1}));
                        roles.len() - 1
                    }
                };
                let entry = roles[idx]
                    .as_object_mut()
                    .ok_or_else(|| invalid(parent, "a delegation is not an object"))?;
                let mut ids = key_ids_of(&Value::Object(entry.clone()));
                for k in new_keys {
                    let id = k.key_id();
                    keys.insert(id.clone(), k.to_value());
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                if ids.len() > MAX_DELEGATION_KEYS {
                    return Err(Error::InvalidName {
                        what: "delegation".into(),
                        name: name.clone(),
                        reason: format!("more than {MAX_DELEGATION_KEYS} keys"),
                    });
                }
                let mut all_paths: Vec<String> = entry
                    .get("paths")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                for p in paths {
                    if !all_paths.contains(p) {
                        all_paths.push(p.clone());
                    }
                }
                check_paths(name, &all_paths)?;
                let t = threshold
                    .or_else(|| entry.get("threshold").and_then(Value::as_u64))
                    .unwrap_or(1);
                if t == 0 || t as usize > ids.len() {
                    return Err(Error::ThresholdTooHigh {
                        role: name.clone(),
                        threshold: t,
                        keys: ids.len(),
                    });
                }
                entry.insert("keyids".into(), json!(ids));
                entry.insert("paths".into(), json!(all_paths));
                entry.insert("threshold".into(), json!(t));
            }
            DelegationOp::RemoveKeys {
                name,
                key_ids,
                allow_empty,
            } => {
                let idx =
                    find(&roles, name).ok_or_else(|| Error::UnknownRole { role: name.clone() })?;
                let mut ids = key_ids_of(&roles[idx]);
                let canonical = |tuf: &str| {
                    keys.get(tuf)
                        .and_then(|v| serde_json::from_value::<PublicKey>(v.clone()).ok())
                        .and_then(|k| k.canonical_id().ok())
                };
                for gone in key_ids {
                    let Some(pos) = ids
                        .iter()
                        .position(|t| t == gone || canonical(t).as_deref() == Some(gone.as_str()))
                    else {
                        return Err(Error::NotAMember {
                            role: name.clone(),
                            key: gone.clone(),
                            members: ids
                                .iter()
                                .map(|t| canonical(t).unwrap_or_else(|| t.clone()))
                                .collect(),
                        });
                    };
                    ids.remove(pos);
                }
                if ids.is_empty() && !allow_empty {
                    return Err(Error::LastKey { role: name.clone() });
                }
                let t = roles[idx]
                    .get("threshold")
                    .and_then(Value::as_u64)
                    .unwrap_or(1);
                if t as usize > ids.len() && !(ids.is_empty() && *allow_empty) {
                    return Err(Error::ThresholdTooHigh {
                        role: name.clone(),
                        threshold: t,
                        keys: ids.len(),
                    });
                }
                roles[idx]["keyids"] = json!(ids);
            }
            DelegationOp::Remove { name } => {
                let idx =
                    find(&roles, name).ok_or_else(|| Error::UnknownRole { role: name.clone() })?;
                roles.remove(idx);
                dropped.push(name.clone());
            }
        }
    }
    // Keys no delegation lists any more go (Go's client keeps the map to what roles use).
    let used: std::collections::BTreeSet<String> = roles.iter().flat_map(key_ids_of).collect();
    keys.retain(|id, _| used.contains(id));
    d.insert("keys".into(), Value::Object(keys));
    d.insert("roles".into(), Value::Array(roles));
    let after = obj.get("delegations").expect("inserted above");
    Ok(*after != before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    fn key() -> PublicKey {
        SigningKey::generate_ecdsa("targets/x", "")
            .unwrap()
            .public()
            .clone()
    }

    fn body() -> Map<String, Value> {
        json!({"_type": "Targets", "delegations": null, "expires": "", "targets": {}, "version": 3})
            .as_object()
            .unwrap()
            .clone()
    }

    fn add(name: &str, keys: &[PublicKey], paths: &[&str], t: Option<u64>) -> DelegationOp {
        DelegationOp::Add {
            name: name.into(),
            keys: keys.to_vec(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            threshold: t,
        }
    }

    #[test]
    fn add_declares_then_merges_keys_and_paths() {
        let (a, b) = (key(), key());
        let mut obj = body();
        let mut dropped = vec![];
        let ops = [
            add("targets/releases", std::slice::from_ref(&a), &[""], None),
            add(
                "targets/releases",
                &[a.clone(), b.clone()],
                &["v1"],
                Some(2),
            ),
        ];
        assert!(apply("targets", &mut obj, &ops, &mut dropped).unwrap());
        let d = &obj["delegations"];
        assert_eq!(d["roles"].as_array().unwrap().len(), 1);
        let r = &d["roles"][0];
        assert_eq!(r["name"], "targets/releases");
        assert_eq!(r["keyids"], json!([a.key_id(), b.key_id()]));
        assert_eq!(r["paths"], json!(["", "v1"]));
        assert_eq!(r["threshold"], 2);
        assert_eq!(d["keys"].as_object().unwrap().len(), 2);
        assert_eq!(d["keys"][a.key_id()], a.to_value());
        // The same again changes nothing.
        let again = [add("targets/releases", &[a, b], &["v1"], Some(2))];
        assert!(!apply("targets", &mut obj, &again, &mut dropped).unwrap());
    }

    #[test]
    fn remove_keys_by_either_id_and_refuse_what_breaks_the_role() {
        let (a, b) = (key(), key());
        let mut obj = body();
        let mut dropped = vec![];
        let setup = [add("targets/ci", &[a.clone(), b.clone()], &[""], None)];
        apply("targets", &mut obj, &setup, &mut dropped).unwrap();
        let not_member = DelegationOp::RemoveKeys {
            name: "targets/ci".into(),
            key_ids: vec!["00".repeat(32)],
            allow_empty: false,
        };
        let e = apply("targets", &mut obj.clone(), &[not_member], &mut dropped).unwrap_err();
        assert!(
            matches!(&e, Error::NotAMember { members, .. } if members.len() == 2),
            "{e}"
        );
        let both = DelegationOp::RemoveKeys {
            name: "targets/ci".into(),
            key_ids: vec![a.key_id(), b.canonical_id().unwrap()],
            allow_empty: false,
        };
        let e = apply("targets", &mut obj.clone(), &[both], &mut dropped).unwrap_err();
        assert!(matches!(e, Error::LastKey { .. }), "{e}");
        let high = add("targets/ci", &[], &[], Some(2));
        let one = DelegationOp::RemoveKeys {
            name: "targets/ci".into(),
            key_ids: vec![a.key_id()],
            allow_empty: false,
        };
        let e = apply(
            "targets",
            &mut obj.clone(),
            &[high, one.clone()],
            &mut dropped,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                Error::ThresholdTooHigh {
                    threshold: 2,
                    keys: 1,
                    ..
                }
            ),
            "{e}"
        );
        assert!(apply("targets", &mut obj, &[one], &mut dropped).unwrap());
        assert_eq!(
            obj["delegations"]["roles"][0]["keyids"],
            json!([b.key_id()])
        );
        // The key no role lists any more is gone from the map.
        assert!(obj["delegations"]["keys"].get(a.key_id()).is_none());
    }

    #[test]
    fn remove_drops_the_role_and_its_unused_keys() {
        let (a, b) = (key(), key());
        let mut obj = body();
        let mut dropped = vec![];
        let setup = [
            add("targets/releases", std::slice::from_ref(&a), &[""], None),
            add("targets/alice", &[a.clone(), b.clone()], &[""], None),
        ];
        apply("targets", &mut obj, &setup, &mut dropped).unwrap();
        let rm = DelegationOp::Remove {
            name: "targets/alice".into(),
        };
        assert!(apply("targets", &mut obj, std::slice::from_ref(&rm), &mut dropped).unwrap());
        assert_eq!(dropped, ["targets/alice"]);
        let keys = obj["delegations"]["keys"].as_object().unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), [&a.key_id()]);
        let e = apply("targets", &mut obj, &[rm], &mut dropped).unwrap_err();
        assert!(matches!(e, Error::UnknownRole { .. }), "{e}");
    }

    #[test]
    fn bad_thresholds_names_and_paths_are_refused() {
        let a = key();
        let e = apply(
            "targets",
            &mut body(),
            &[add("targets/x", std::slice::from_ref(&a), &[""], Some(2))],
            &mut vec![],
        )
        .unwrap_err();
        assert!(matches!(e, Error::ThresholdTooHigh { .. }), "{e}");
        for bad in [
            "releases",
            "targets/",
            "targets/A",
            "targets/a//b",
            "targets/../x",
            "targets/a b",
        ] {
            assert!(check_delegation_name(bad).is_err(), "{bad}");
        }
        for good in ["targets/releases", "targets/a/b-c_1"] {
            check_delegation_name(good).unwrap();
        }
        assert!(check_paths("targets/x", &["a\nb".into()]).is_err());
        assert!(check_paths("targets/x", &["x".repeat(MAX_PATH_BYTES + 1)]).is_err());
        let many: Vec<String> = (0..=MAX_DELEGATION_PATHS).map(|i| i.to_string()).collect();
        assert!(check_paths("targets/x", &many).is_err());
    }
}
