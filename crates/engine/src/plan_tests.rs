//! Plan table: each case a repository, registry state and policy, and the exact outcome.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::model::{Manifest, RepoView, RoleState, RoleView, SignerKey, TargetMeta};

const OURS: &str = "k-ours";
const OTHER: &str = "k-other";

fn now() -> Timestamp {
    "2026-11-25T12:00:00Z".parse().unwrap()
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

fn t(hex: char, len: u64) -> TargetMeta {
    TargetMeta {
        sha256: hex.to_string().repeat(64),
        length: len,
    }
}

fn m(hex: char, len: u64) -> Manifest {
    Manifest {
        sha256: hex.to_string().repeat(64),
        size: len,
        media_type: Some("application/vnd.oci.image.index.v1+json".into()),
    }
}

fn role(
    name: &str,
    keys: &[&str],
    expires_in_days: i64,
    targets: &[(&str, TargetMeta)],
) -> RoleView {
    RoleView {
        name: name.into(),
        version: 3,
        expires: Some(now() + days(expires_in_days)),
        state: RoleState::Valid,
        targets: targets
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        paths: vec![String::new()],
        signers: keys
            .iter()
            .map(|k| SignerKey {
                id: format!("{k}-x509"),
                canonical_id: k.to_string(),
            })
            .collect(),
        threshold: 1,
    }
}

struct Case {
    repo: RepoView,
    desired: BTreeMap<String, Manifest>,
    vanished: BTreeSet<String>,
    prune: bool,
    roles: Vec<String>,
    force: bool,
}

impl Case {
    fn new(roles: Vec<RoleView>) -> Self {
        Case {
            repo: RepoView { roles },
            desired: BTreeMap::new(),
            vanished: BTreeSet::new(),
            prune: false,
            roles: vec![],
            force: false,
        }
    }
    fn want(mut self, tag: &str, man: Manifest) -> Self {
        self.desired.insert(tag.into(), man);
        self
    }
    fn only(mut self, roles: &[&str]) -> Self {
        self.roles = roles.iter().map(|s| s.to_string()).collect();
        self
    }
    fn run(&self) -> Plan {
        let keys = vec![OURS.to_string()];
        plan(&PlanInput {
            repo: &self.repo,
            desired: &self.desired,
            vanished: &self.vanished,
            prune: self.prune,
            roles: &self.roles,
            key_ids: &keys,
            now: now(),
            validity: SignedDuration::from_hours(26280),
            renew_before: SignedDuration::from_hours(4560),
            force_renew: self.force,
        })
    }
}

fn fresh_repo() -> Vec<RoleView> {
    vec![
        role("targets", &[OTHER], 900, &[]),
        role("targets/releases", &[OURS], 900, &[("v1", t('a', 10))]),
        role("targets/ci-bot", &[OURS], 900, &[("v1", t('a', 10))]),
    ]
}

fn expected_expiry() -> Timestamp {
    "2029-11-24T12:00:00Z".parse().unwrap()
}

#[test]
fn nothing_new_is_a_noop() {
    let p = Case::new(fresh_repo()).want("v1", m('a', 10)).run();
    assert!(p.is_noop(), "{p:?}");
    assert!(p.problems.is_empty() && p.warnings.is_empty());
    assert_eq!(
        p.signing_roles["v1"],
        ["targets/releases", "targets/ci-bot"]
    );
}

#[test]
fn new_tag_goes_into_every_direct_child_listing_our_key() {
    let p = Case::new(fresh_repo())
        .want("v1", m('a', 10))
        .want("v2", m('b', 20))
        .run();
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(
        p.changes.keys().collect::<Vec<_>>(),
        ["targets/ci-bot", "targets/releases"]
    );
    for c in p.changes.values() {
        assert_eq!(c.kind, ChangeKind::Content);
        assert_eq!(c.set, BTreeMap::from([("v2".to_string(), t('b', 20))]));
        assert!(c.remove.is_empty());
        assert_eq!(c.expires, expected_expiry());
    }
}

#[test]
fn moved_tag_is_re_signed() {
    let p = Case::new(fresh_repo()).want("v1", m('c', 30)).run();
    assert_eq!(p.changes["targets/releases"].set["v1"], t('c', 30));
    assert!(p.problems.is_empty() && !p.is_noop(), "publishes");
}

#[test]
fn vanished_tag_stays_signed_unless_pruning() {
    let mut c = Case::new(fresh_repo());
    c.vanished.insert("v1".into());
    assert!(c.run().is_noop());
    c.prune = true;
    let p = c.run();
    assert_eq!(
        p.changes["targets/releases"].remove,
        BTreeSet::from(["v1".to_string()])
    );
    assert_eq!(
        p.changes["targets/ci-bot"].remove,
        BTreeSet::from(["v1".to_string()])
    );
    assert!(
        !p.changes.contains_key("targets"),
        "targets is not ours to prune"
    );
}

#[test]
fn near_expiry_roles_we_hold_are_renewed_others_warned() {
    let mut roles = fresh_repo();
    roles[0].expires = Some(now() + days(90)); // targets: not our key
    roles[1].expires = Some(now() + days(90)); // releases: ours, inside the 190-day window
    roles[2].expires = Some(now() + days(200)); // ci-bot: ours, outside
    let p = Case::new(roles).want("v1", m('a', 10)).run();
    assert_eq!(p.changes.keys().collect::<Vec<_>>(), ["targets/releases"]);
    let c = &p.changes["targets/releases"];
    assert_eq!(c.kind, ChangeKind::Renew);
    assert!(c.set.is_empty() && c.remove.is_empty());
    assert_eq!(
        p.warnings,
        [Warning::ExpiringNotOurs {
            role: "targets".into(),
            expires: Some(now() + days(90))
        }]
    );
}

#[test]
fn expired_delegation_keeps_its_targets_and_gets_the_new_one() {
    let mut roles = fresh_repo();
    roles[1].state = RoleState::Expired;
    roles[1].expires = Some(now() - days(1));
    let c = Case::new(roles)
        .want("v1", m('a', 10))
        .want("v2", m('b', 20));
    let p = c.run();
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    let ch = &p.changes["targets/releases"];
    assert_eq!(ch.kind, ChangeKind::Content);
    let after = apply_to_view(&c.repo, &p.changes);
    let rel = after.role("targets/releases").unwrap();
    assert_eq!(rel.targets.len(), 2, "old v1 kept, v2 added");
    assert_eq!(rel.version, 4);
    assert_eq!(rel.state, RoleState::Valid);
}

#[test]
fn expired_top_level_targets_is_renewed_when_ours() {
    let roles = vec![role("targets", &[OURS], -1, &[("v1", t('a', 10))])];
    let mut roles = roles;
    roles[0].state = RoleState::Expired;
    let p = Case::new(roles).want("v1", m('a', 10)).run();
    assert_eq!(p.changes["targets"].kind, ChangeKind::Renew);
    assert!(p.problems.is_empty() && !p.is_noop(), "publishes");
}

#[test]
fn key_not_delegated_lists_accepted_keys() {
    let roles = vec![
        role("targets", &[OTHER], 900, &[]),
        role("targets/releases", &[OTHER], 900, &[]),
    ];
    let p = Case::new(roles.clone()).want("v2", m('b', 20)).run();
    assert_eq!(
        p.problems,
        [Problem::NoSigningRole {
            tag: "v2".into(),
            delegations: vec![("targets/releases".into(), vec![format!("{OTHER}-x509")])],
            ours: vec![OURS.into()],
            repository_key: false,
        }]
    );
    assert!(!p.problems.is_empty() || p.is_noop(), "publishes nothing");
    let p = Case::new(roles)
        .want("v2", m('b', 20))
        .only(&["targets/releases"])
        .run();
    assert_eq!(
        p.problems,
        [Problem::KeyNotDelegated {
            role: "targets/releases".into(),
            accepted: vec![format!("{OTHER}-x509")],
            ours: vec![OURS.into()],
        }]
    );
}

#[test]
fn no_delegations_signs_into_targets_with_the_repository_key() {
    let p = Case::new(vec![role("targets", &[OURS], 900, &[])])
        .want("v1", m('a', 10))
        .run();
    assert_eq!(p.signing_roles["v1"], ["targets"]);
    assert!(p.problems.is_empty() && !p.is_noop(), "publishes");
    let p = Case::new(vec![role("targets", &[OTHER], 900, &[])])
        .want("v1", m('a', 10))
        .run();
    assert!(
        matches!(&p.problems[..], [Problem::KeyNotDelegated { role, .. }] if role == "targets")
    );
}

#[test]
fn threshold_above_one_key() {
    let mut roles = fresh_repo();
    roles[1].threshold = 2;
    let p = Case::new(roles)
        .want("v2", m('b', 20))
        .only(&["targets/releases"])
        .run();
    assert_eq!(
        p.problems,
        [Problem::ThresholdNotMet {
            role: "targets/releases".into(),
            threshold: 2
        }]
    );
}

#[test]
fn stale_entry_in_targets_shadows_a_role_docker_reads_later() {
    // We sign into `targets/ci-bot` only (explicit), but docker reads targets/releases first,
    // which holds the old digest.
    let p = Case::new(fresh_repo())
        .want("v1", m('c', 30))
        .only(&["targets/ci-bot"])
        .run();
    assert_eq!(
        p.problems,
        [Problem::TagShadowed {
            tag: "v1".into(),
            role: "targets/releases".into(),
            sha256: "a".repeat(64)
        }]
    );
}

#[test]
fn signing_only_into_a_role_docker_does_not_read() {
    let roles = vec![
        role("targets", &[OTHER], 900, &[]),
        role("targets/alice", &[OURS], 900, &[]),
        role("targets/releases", &[OTHER], 900, &[]),
    ];
    let p = Case::new(roles)
        .want("v9", m('d', 40))
        .only(&["targets/alice"])
        .run();
    assert_eq!(
        p.problems,
        [Problem::RoleNotRead {
            tag: "v9".into(),
            roles: vec!["targets/alice".into()]
        }]
    );
}

#[test]
fn earlier_sibling_shadows_for_notary_list_only() {
    // docker trust signer add creates targets/alice before targets/releases: `notary list`
    // shows alice's stale digest, docker reads releases first and is right: a warning.
    let roles = vec![
        role("targets", &[OTHER], 900, &[]),
        role("targets/alice", &[OTHER], 900, &[("latest", t('a', 10))]),
        role("targets/releases", &[OURS], 900, &[("latest", t('a', 10))]),
    ];
    let p = Case::new(roles).want("latest", m('e', 50)).run();
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(p.signing_roles["latest"], ["targets/releases"]);
    assert_eq!(
        p.warnings,
        [Warning::ListShadowed {
            tag: "latest".into(),
            role: "targets/alice".into(),
            sha256: "a".repeat(64)
        }]
    );
}

#[test]
fn multiple_explicit_roles_and_paths() {
    let mut roles = fresh_repo();
    roles[2].paths = vec!["rc-".into()];
    let c = Case::new(roles)
        .want("v2", m('b', 20))
        .only(&["targets/releases", "targets/ci-bot"]);
    let p = c.run();
    assert_eq!(
        p.problems,
        [Problem::PathNotAllowed {
            tag: "v2".into(),
            role: "targets/ci-bot".into(),
            paths: vec!["rc-".into()]
        }]
    );
    // Default selection skips the role whose paths exclude the tag.
    let p = Case { roles: vec![], ..c }.run();
    assert!(p.problems.is_empty());
    assert_eq!(p.signing_roles["v2"], ["targets/releases"]);
}

#[test]
fn undeclared_role() {
    let p = Case::new(fresh_repo())
        .want("v1", m('a', 10))
        .only(&["targets/nope"])
        .run();
    assert_eq!(
        p.problems,
        [Problem::RoleNotDeclared {
            role: "targets/nope".into()
        }]
    );
}

#[test]
fn role_signed_by_a_removed_key_is_re_signed() {
    let mut roles = fresh_repo();
    roles[2].state = RoleState::Unverified;
    let p = Case::new(roles).want("v1", m('a', 10)).run();
    assert_eq!(p.changes.keys().collect::<Vec<_>>(), ["targets/ci-bot"]);
}

#[test]
fn forced_renewal_witnesses_every_role_we_hold_or_the_named_ones() {
    let mut c = Case::new(fresh_repo());
    c.force = true;
    let p = c.run();
    assert_eq!(
        p.changes.keys().collect::<Vec<_>>(),
        ["targets/ci-bot", "targets/releases"]
    );
    assert!(p.changes.values().all(|c| c.kind == ChangeKind::Renew));
    // `targets` (not ours) is years from expiry: no warning about it.
    assert_eq!(p.warnings, []);
    let p = c.only(&["targets/releases"]).run();
    assert_eq!(p.changes.keys().collect::<Vec<_>>(), ["targets/releases"]);
}

#[test]
fn expired_targets_we_cannot_renew_stops_the_publish_with_its_reason() {
    // `targets` (repository key, not ours) expired: readers skip every delegation, so signing
    // into releases would publish something nobody reads (found by the reliability tests).
    let mut roles = fresh_repo();
    roles[0].state = RoleState::Expired;
    roles[0].expires = Some(now() - days(1));
    for r in &mut roles[1..] {
        r.state = RoleState::Hidden;
    }
    let p = Case::new(roles).want("v2", m('b', 20)).run();
    assert!(!p.problems.is_empty() || p.is_noop(), "publishes nothing");
    assert_eq!(
        p.problems,
        [Problem::AncestorUnreadable {
            role: "targets/releases".into(),
            ancestor: "targets".into(),
            expired: true,
        }]
    );
    assert_eq!(p.problems[0].reason(), crate::api::reasons::EXPIRING);
}

#[test]
fn forced_renewal_of_a_named_role_we_cannot_sign_is_a_problem() {
    // `trustkeeper witness --role targets` with a delegation key used to warn and succeed.
    let forced = |roles: &[&str]| {
        let mut c = Case::new(fresh_repo()).only(roles);
        c.force = true;
        c.run()
    };
    let p = forced(&["targets"]);
    assert!(!p.problems.is_empty() || p.is_noop(), "publishes nothing");
    assert!(
        matches!(&p.problems[..], [Problem::KeyNotDelegated { role, .. }] if role == "targets"),
        "{:?}",
        p.problems
    );
    let p = forced(&["targets/nosuch"]);
    assert_eq!(
        p.problems,
        [Problem::RoleNotDeclared {
            role: "targets/nosuch".into()
        }]
    );
}

#[test]
fn forced_renewal_under_an_expired_targets_we_cannot_sign_fails() {
    // `trustkeeper witness` with a delegation key used to renew releases and exit 0 while
    // `targets` stayed expired and every `docker pull` kept failing.
    let mut roles = fresh_repo();
    roles[0].state = RoleState::Expired;
    roles[0].expires = Some(now() - days(1));
    for r in &mut roles[1..] {
        r.state = RoleState::Hidden;
    }
    let mut c = Case::new(roles);
    c.force = true;
    let p = c.run();
    assert!(!p.problems.is_empty() || p.is_noop(), "publishes nothing");
    assert_eq!(
        p.problems,
        [Problem::AncestorUnreadable {
            role: "targets/ci-bot".into(),
            ancestor: "targets".into(),
            expired: true,
        }]
    );
    assert!(
        p.problems[0]
            .message("g")
            .contains("trustkeeper witness g --key <repository key> --role targets"),
        "{}",
        p.problems[0].message("g")
    );
}

/// A role at the largest version does not overflow the plan (the update refuses such versions
/// before a plan is made; the plan must not panic on one either).
#[test]
fn a_role_at_the_largest_version_does_not_overflow() {
    let mut roles = fresh_repo();
    roles[1].version = u64::MAX;
    let c = Case::new(roles).want("v2", m('b', 20));
    let p = c.run();
    let after = apply_to_view(&c.repo, &p.changes);
    assert_eq!(after.role("targets/releases").unwrap().version, u64::MAX);
}
