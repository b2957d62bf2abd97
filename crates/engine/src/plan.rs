//! The plan: a pure function from (repository as verified, registry digests, policy, now) to the
//! changes to publish, or to the problems that forbid publishing. No I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};

use super::model::{Manifest, RepoView, RoleState, RoleView, TargetMeta, docker_reads};

/// Everything the plan looks at.
#[derive(Clone, Debug)]
pub struct PlanInput<'a> {
    pub repo: &'a RepoView,
    /// Selected tags that exist in the registry, with what they resolve to now.
    pub desired: &'a BTreeMap<String, Manifest>,
    /// Signed names matching the tag selection that the registry no longer has.
    pub vanished: &'a BTreeSet<String>,
    /// Remove `vanished` names from the roles we sign.
    pub prune: bool,
    /// Roles to sign into; empty = what `docker trust sign` picks.
    pub roles: &'a [String],
    /// Canonical IDs of the private keys we hold.
    pub key_ids: &'a [String],
    pub now: Timestamp,
    /// Lifetime of re-signed roles.
    pub validity: SignedDuration,
    /// Renew a role when it expires before `now + renew_before`.
    pub renew_before: SignedDuration,
    /// Renew now (notary's `witness`) every role our key can sign (only those in `roles` when
    /// that is given), due or not.
    pub force_renew: bool,
}

/// Why a role is re-signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// New or moved tags, or removed ones.
    Content,
    /// Same content, new expiry (notary's `witness`).
    Renew,
}

/// What to do to one role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleChange {
    pub kind: ChangeKind,
    /// Targets to add or overwrite.
    pub set: BTreeMap<String, TargetMeta>,
    /// Targets to remove.
    pub remove: BTreeSet<String>,
    /// Expiry of the re-signed role.
    pub expires: Timestamp,
}

/// A reason not to publish, with the facts to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The role to sign into does not exist: its parent does not declare it.
    RoleNotDeclared { role: String },
    /// Our key is not among the role's signers.
    KeyNotDelegated {
        role: String,
        accepted: Vec<String>,
        ours: Vec<String>,
    },
    /// The role needs more signatures than one key gives.
    ThresholdNotMet { role: String, threshold: u32 },
    /// The role's paths do not allow the tag.
    PathNotAllowed {
        tag: String,
        role: String,
        paths: Vec<String>,
    },
    /// Delegations exist and none of `targets`' direct children that allow the tag lists our key:
    /// docker's "no valid signing keys for delegation roles".
    NoSigningRole {
        tag: String,
        delegations: Vec<(String, Vec<String>)>,
        ours: Vec<String>,
        /// Our key is the repository key (it signs `targets`).
        repository_key: bool,
    },
    /// After the publish, docker would still resolve the tag to another digest, from `role`.
    TagShadowed {
        tag: String,
        role: String,
        sha256: String,
    },
    /// After the publish, docker would find no trust data for the tag: it was signed only into
    /// roles docker does not read.
    RoleNotRead { tag: String, roles: Vec<String> },
    /// The role to sign into would be skipped by readers because an ancestor stays expired
    /// (`expired`) or unverified, and our key cannot re-sign that ancestor.
    AncestorUnreadable {
        role: String,
        ancestor: String,
        expired: bool,
    },
}

/// Something worth saying that does not stop the publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// A role our key cannot sign expires before the renewal window ends.
    ExpiringNotOurs {
        role: String,
        expires: Option<Timestamp>,
    },
    /// `notary list` would show another digest for the tag (an earlier role holds a stale entry),
    /// though `docker pull` resolves it right.
    ListShadowed {
        tag: String,
        role: String,
        sha256: String,
    },
}

/// The outcome of planning.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Plan {
    /// Role name → change, for every role to re-sign.
    pub changes: BTreeMap<String, RoleChange>,
    /// Non-empty: publish nothing.
    pub problems: Vec<Problem>,
    pub warnings: Vec<Warning>,
    /// Tag → the roles it is (to be) signed into.
    pub signing_roles: BTreeMap<String, Vec<String>>,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Whether one of our keys can sign `role` alone.
fn can_sign(role: &RoleView, key_ids: &[String]) -> bool {
    role.threshold <= 1 && key_ids.iter().any(|k| role.lists_key(k))
}

fn accepted(role: &RoleView) -> Vec<String> {
    role.signers.iter().map(|k| k.id.clone()).collect()
}

/// Whole seconds: notary writers emit `…:SSZ`, never fractions.
fn expiry(now: Timestamp, validity: SignedDuration) -> Timestamp {
    let t = now
        .saturating_add(validity)
        .expect("validity is bounded by the schema");
    Timestamp::from_second(t.as_second()).expect("in range")
}

/// Computes the plan.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let mut out = Plan::default();
    let repo = input.repo;
    let new_expiry = expiry(input.now, input.validity);
    let horizon = input
        .now
        .saturating_add(input.renew_before)
        .expect("bounded");

    // 1. Which roles each tag goes into; tags with a problem there are not checked again below.
    let mut troubled = BTreeSet::new();
    for tag in input.desired.keys() {
        let mut found = Vec::new();
        let roles = signing_roles(input, tag, &mut found);
        if !found.is_empty() {
            troubled.insert(tag.clone());
        }
        for p in found {
            if !out.problems.contains(&p) {
                out.problems.push(p);
            }
        }
        out.signing_roles.insert(tag.clone(), roles);
    }

    // 2. Content changes.
    let mut touched: BTreeMap<String, (BTreeMap<String, TargetMeta>, BTreeSet<String>)> =
        BTreeMap::new();
    for (tag, roles) in &out.signing_roles {
        let want = input.desired[tag].target();
        for role in roles {
            let r = repo.role(role).expect("signing roles exist");
            if r.targets.get(tag) != Some(&want) {
                touched
                    .entry(role.clone())
                    .or_default()
                    .0
                    .insert(tag.clone(), want.clone());
            }
        }
    }
    if input.prune {
        for role in repo.roles.iter().filter(|r| can_sign(r, input.key_ids)) {
            for name in input
                .vanished
                .iter()
                .filter(|n| role.targets.contains_key(*n))
            {
                touched
                    .entry(role.name.clone())
                    .or_default()
                    .1
                    .insert(name.clone());
            }
        }
    }
    for (role, (set, remove)) in touched {
        out.changes.insert(
            role,
            RoleChange {
                kind: ChangeKind::Content,
                set,
                remove,
                expires: new_expiry,
            },
        );
    }

    // 3. Renewals: every role our key can sign that has a file and is due (or unusable as served).
    // A forced renewal of named roles (`trustkeeper witness --role R`) must be able to renew
    // each of them: one our key cannot sign is a problem, not a warning and success.
    if input.force_renew {
        for name in input.roles {
            match repo.role(name) {
                None => out
                    .problems
                    .push(Problem::RoleNotDeclared { role: name.clone() }),
                Some(role) if !role.lists_key_any(input.key_ids) => {
                    out.problems.push(Problem::KeyNotDelegated {
                        role: name.clone(),
                        accepted: accepted(role),
                        ours: input.key_ids.to_vec(),
                    })
                }
                Some(role) if role.threshold > 1 => out.problems.push(Problem::ThresholdNotMet {
                    role: name.clone(),
                    threshold: role.threshold,
                }),
                Some(_) => {}
            }
        }
    }
    for role in &repo.roles {
        let forced =
            input.force_renew && (input.roles.is_empty() || input.roles.contains(&role.name));
        let needed = matches!(role.state, RoleState::Expired | RoleState::Unverified)
            || role.expires.is_none_or(|e| e < horizon);
        if role.state == RoleState::Missing
            || !(forced || needed)
            || out.changes.contains_key(&role.name)
        {
            continue;
        }
        if can_sign(role, input.key_ids) {
            out.changes.insert(
                role.name.clone(),
                RoleChange {
                    kind: ChangeKind::Renew,
                    set: BTreeMap::new(),
                    remove: BTreeSet::new(),
                    expires: new_expiry,
                },
            );
        } else if needed {
            // A forced renewal says nothing of roles it cannot sign that are far from expiry.
            out.warnings.push(Warning::ExpiringNotOurs {
                role: role.name.clone(),
                expires: role.expires,
            });
        }
    }

    // 4. Read the result back the way docker and notary would, before anything is published.
    let after = apply_to_view(repo, &out.changes);
    // A renewal that readers would still skip (an ancestor, e.g. `targets`, stays expired and
    // our key cannot sign it) fixes nothing: `docker pull` keeps failing. Say so and stop.
    let renewed: Vec<String> = out
        .changes
        .iter()
        .filter(|(_, c)| c.kind == ChangeKind::Renew)
        .map(|(n, _)| n.clone())
        .collect();
    if let Some(p) = hidden_by(&after, &renewed)
        && !out.problems.contains(&p)
    {
        out.problems.push(p);
    }
    for (tag, want) in input.desired {
        if troubled.contains(tag) {
            continue;
        }
        let want_sha = &want.sha256;
        match after.docker_winner(tag) {
            Some((r, t)) if docker_reads(&r.name) && &t.sha256 == want_sha => {}
            Some((r, t)) if docker_reads(&r.name) => out.problems.push(Problem::TagShadowed {
                tag: tag.clone(),
                role: r.name.clone(),
                sha256: t.sha256.clone(),
            }),
            _ => {
                let roles = out.signing_roles.get(tag).cloned().unwrap_or_default();
                match hidden_by(&after, &roles) {
                    Some(p) if out.problems.contains(&p) => {}
                    Some(p) => out.problems.push(p),
                    None => out.problems.push(Problem::RoleNotRead {
                        tag: tag.clone(),
                        roles,
                    }),
                }
            }
        }
        if let Some((r, t)) = after.notary_winner(tag)
            && &t.sha256 != want_sha
        {
            out.warnings.push(Warning::ListShadowed {
                tag: tag.clone(),
                role: r.name.clone(),
                sha256: t.sha256.clone(),
            });
        }
    }
    out
}

/// The first of `roles` that readers skip because of an ancestor, and that ancestor.
fn hidden_by(after: &RepoView, roles: &[String]) -> Option<Problem> {
    let find = |name: &str| after.roles.iter().find(|r| r.name == name);
    for role in roles {
        if find(role).is_none_or(|r| r.state != RoleState::Hidden) {
            continue;
        }
        let mut name = role.as_str();
        while let Some((parent, _)) = name.rsplit_once('/') {
            if let Some(p) = find(parent).filter(|p| p.state != RoleState::Valid)
                && p.state != RoleState::Hidden
            {
                return Some(Problem::AncestorUnreadable {
                    role: role.clone(),
                    ancestor: parent.to_string(),
                    expired: p.state == RoleState::Expired,
                });
            }
            name = parent;
        }
    }
    None
}

/// Roles `tag` goes into, recording problems on the way.
fn signing_roles(input: &PlanInput<'_>, tag: &str, problems: &mut Vec<Problem>) -> Vec<String> {
    let repo = input.repo;
    let ours = || input.key_ids.to_vec();
    if !input.roles.is_empty() {
        let mut out = Vec::new();
        for name in input.roles {
            let Some(role) = repo.role(name) else {
                problems.push(Problem::RoleNotDeclared { role: name.clone() });
                continue;
            };
            if !role.lists_key_any(input.key_ids) {
                problems.push(Problem::KeyNotDelegated {
                    role: name.clone(),
                    accepted: accepted(role),
                    ours: ours(),
                });
            } else if role.threshold > 1 {
                problems.push(Problem::ThresholdNotMet {
                    role: name.clone(),
                    threshold: role.threshold,
                });
            } else if !role.allows(tag) {
                problems.push(Problem::PathNotAllowed {
                    tag: tag.into(),
                    role: name.clone(),
                    paths: role.paths.clone(),
                });
            } else {
                out.push(name.clone());
            }
        }
        return out;
    }
    if !repo.has_delegations() {
        let Some(targets) = repo.role("targets") else {
            problems.push(Problem::RoleNotDeclared {
                role: "targets".into(),
            });
            return Vec::new();
        };
        if !targets.lists_key_any(input.key_ids) {
            problems.push(Problem::KeyNotDelegated {
                role: "targets".into(),
                accepted: accepted(targets),
                ours: ours(),
            });
        } else if targets.threshold > 1 {
            problems.push(Problem::ThresholdNotMet {
                role: "targets".into(),
                threshold: targets.threshold,
            });
        } else {
            return vec!["targets".into()];
        }
        return Vec::new();
    }
    // docker trust sign: every direct child of `targets` that allows the tag and lists our key.
    let children: Vec<&RoleView> = repo
        .roles
        .iter()
        .filter(|r| r.parent() == Some("targets"))
        .collect();
    let picked: Vec<String> = children
        .iter()
        .filter(|r| r.allows(tag) && can_sign(r, input.key_ids))
        .map(|r| r.name.clone())
        .collect();
    if picked.is_empty() {
        if let Some(r) = children
            .iter()
            .find(|r| r.allows(tag) && r.lists_key_any(input.key_ids))
        {
            problems.push(Problem::ThresholdNotMet {
                role: r.name.clone(),
                threshold: r.threshold,
            });
        } else {
            problems.push(Problem::NoSigningRole {
                tag: tag.into(),
                delegations: children
                    .iter()
                    .map(|r| (r.name.clone(), accepted(r)))
                    .collect(),
                ours: ours(),
                repository_key: repo
                    .role("targets")
                    .is_some_and(|t| t.lists_key_any(input.key_ids)),
            });
        }
    }
    picked
}

impl RoleView {
    fn lists_key_any(&self, key_ids: &[String]) -> bool {
        key_ids.iter().any(|k| self.lists_key(k))
    }
}

/// The repository as it will read after `changes` are published.
pub fn apply_to_view(repo: &RepoView, changes: &BTreeMap<String, RoleChange>) -> RepoView {
    let mut after = repo.clone();
    for role in &mut after.roles {
        if let Some(c) = changes.get(&role.name) {
            for (k, v) in &c.set {
                role.targets.insert(k.clone(), v.clone());
            }
            for k in &c.remove {
                role.targets.remove(k);
            }
            // Never past u64::MAX: the update refuses versions that cannot be incremented.
            role.version = role.version.saturating_add(1);
            role.expires = Some(c.expires);
            role.state = RoleState::Valid;
        }
    }
    // A re-signed role is valid itself, but readers still skip it while an ancestor stays
    // expired or unverified (a `targets` role only the repository key holder can renew): parents
    // first, so that each role sees its parent's state after the changes.
    let mut order: Vec<usize> = (0..after.roles.len()).collect();
    order.sort_by_key(|&i| after.roles[i].name.matches('/').count());
    for i in order {
        if !changes.contains_key(&after.roles[i].name) {
            continue;
        }
        let parent_readable = after.roles[i]
            .name
            .rsplit_once('/')
            .and_then(|(parent, _)| after.roles.iter().find(|r| r.name == parent))
            .is_none_or(|p| p.state == RoleState::Valid);
        if !parent_readable {
            after.roles[i].state = RoleState::Hidden;
        }
    }
    after
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
