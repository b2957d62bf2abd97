//! Dry run: the plan a run would publish, as its user reads it (tags to add or remove, roles
//! re-signed with their versions and expiries). Pure: built from the repository as verified and
//! the plan; nothing is signed or published.

use jiff::Timestamp;
use serde::Serialize;

use crate::model::RepoView;
use crate::plan::{ChangeKind, Plan};

/// One role the run would re-sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedRole {
    pub role: String,
    /// `sign` (content changes) or `renew` (same content, new expiry).
    pub action: &'static str,
    /// The version the server holds now (0: the role has no file yet) and the one published.
    pub version: u64,
    pub new_version: u64,
    pub expires: Option<Timestamp>,
    pub new_expires: Timestamp,
    /// `tag sha256:HEX (N bytes)` of each tag added or moved.
    pub set: Vec<PlannedTarget>,
    pub remove: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedTarget {
    pub tag: String,
    pub digest: String,
    pub size: u64,
}

/// What a dry run prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    pub gun: String,
    /// Empty: the run would publish nothing.
    pub roles: Vec<PlannedRole>,
    /// What the run would warn about (roles near expiry that the key cannot sign, ...).
    pub warnings: Vec<String>,
    /// Signatures the registry formats would push: (digest, format), none signed yet.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<PlannedSignature>,
}

/// A signature a registry format (cosign, Notation) would push.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedSignature {
    pub digest: String,
    pub format: crate::api::SignatureFormat,
}

impl DryRun {
    pub fn of(gun: &str, repo: &RepoView, plan: &Plan) -> DryRun {
        let roles = (plan.changes.iter())
            .map(|(name, c)| {
                let now = repo.role(name);
                let version = now.map_or(0, |r| r.version);
                PlannedRole {
                    role: name.clone(),
                    action: match c.kind {
                        ChangeKind::Content => "sign",
                        ChangeKind::Renew => "renew",
                    },
                    version,
                    new_version: version + 1,
                    expires: now.and_then(|r| r.expires),
                    new_expires: c.expires,
                    set: (c.set.iter())
                        .map(|(tag, t)| PlannedTarget {
                            tag: tag.clone(),
                            digest: format!("sha256:{}", t.sha256),
                            size: t.length,
                        })
                        .collect(),
                    remove: c.remove.iter().cloned().collect(),
                }
            })
            .collect();
        DryRun {
            gun: gun.to_string(),
            roles,
            warnings: (plan.warnings.iter()).map(|w| w.message()).collect(),
            signatures: Vec::new(),
        }
    }

    /// The plan with the registry formats' part: what their dry run found to add.
    pub(crate) fn with_signatures(
        mut self,
        made: Vec<(String, crate::api::SignatureFormat)>,
    ) -> DryRun {
        self.signatures = (made.into_iter())
            .map(|(digest, format)| PlannedSignature { digest, format })
            .collect();
        self
    }

    /// The plan as lines of text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if self.roles.is_empty() && self.signatures.is_empty() {
            out.push_str(&format!(
                "dry run: nothing to publish for {}: every selected tag is signed and every held \
                 role is fresh\n",
                self.gun
            ));
        }
        for r in &self.roles {
            let was = r.expires.map_or("none".to_string(), |e| e.to_string());
            out.push_str(&format!(
                "would {:5} {}: version {} -> {}, expires {} -> {}\n",
                r.action, r.role, r.version, r.new_version, was, r.new_expires
            ));
            for t in &r.set {
                out.push_str(&format!(
                    "  add    {}:{} {} ({} bytes)\n",
                    self.gun, t.tag, t.digest, t.size
                ));
            }
            for t in &r.remove {
                out.push_str(&format!("  remove {}:{t}\n", self.gun));
            }
        }
        for p in &self.signatures {
            out.push_str(&format!(
                "would sign {}@{} in {}\n",
                self.gun,
                p.digest,
                format!("{:?}", p.format).to_lowercase()
            ));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        if !self.roles.is_empty() || !self.signatures.is_empty() {
            out.push_str("dry run: nothing was signed or published\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RoleState, RoleView, TargetMeta};
    use crate::plan::RoleChange;
    use std::collections::{BTreeMap, BTreeSet};

    fn role(name: &str, version: u64, expires: &str) -> RoleView {
        RoleView {
            name: name.into(),
            version,
            expires: Some(expires.parse().unwrap()),
            state: RoleState::Valid,
            targets: BTreeMap::new(),
            paths: vec![String::new()],
            signers: vec![],
            threshold: 1,
        }
    }

    #[test]
    fn versions_expiries_and_tags_of_each_planned_role() {
        let repo = RepoView {
            roles: vec![
                role("targets", 4, "2027-01-01T00:00:00Z"),
                role("targets/releases", 9, "2027-02-01T00:00:00Z"),
            ],
        };
        let mut plan = Plan::default();
        let new: Timestamp = "2029-12-03T00:00:00Z".parse().unwrap();
        plan.changes.insert(
            "targets/releases".into(),
            RoleChange {
                kind: ChangeKind::Content,
                set: BTreeMap::from([(
                    "v2".to_string(),
                    TargetMeta {
                        sha256: "ab".repeat(32),
                        length: 527,
                    },
                )]),
                remove: BTreeSet::from(["old".to_string()]),
                expires: new,
            },
        );
        plan.changes.insert(
            "targets".into(),
            RoleChange {
                kind: ChangeKind::Renew,
                set: BTreeMap::new(),
                remove: BTreeSet::new(),
                expires: new,
            },
        );
        let d = DryRun::of("r.example/app", &repo, &plan);
        assert_eq!(d.roles.len(), 2);
        let t = &d.roles[0];
        assert_eq!(
            (t.role.as_str(), t.action, t.version, t.new_version),
            ("targets", "renew", 4, 5)
        );
        let text = d.text();
        assert!(text.contains(
            "would renew targets: version 4 -> 5, expires 2027-01-01T00:00:00Z -> 2029-12-03T00:00:00Z\n"
        ), "{text}");
        assert!(
            text.contains("would sign  targets/releases: version 9 -> 10"),
            "{text}"
        );
        assert!(text.contains(&format!(
            "  add    r.example/app:v2 sha256:{} (527 bytes)\n",
            "ab".repeat(32)
        )));
        assert!(text.contains("  remove r.example/app:old\n"), "{text}");
        assert!(text.ends_with("dry run: nothing was signed or published\n"));

        let none = DryRun::of("r.example/app", &repo, &Plan::default());
        assert!(none.text().starts_with("dry run: nothing to publish"));
    }
}
