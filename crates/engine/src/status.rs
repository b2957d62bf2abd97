//! Builds the SignedImage status from what a run found. Pure: no I/O, the clock passed in.

use std::collections::BTreeMap;

use crate::api::Time;
use jiff::{SignedDuration, Timestamp};

use super::model::{Manifest, RepoView};
use super::plan::Warning;
use crate::api::{
    ConditionStatus, READY, RoleStatus, SignedImageStatus, SignedTag, TrustStatus, reasons,
    set_condition,
};

/// What a successful run saw, after its publish (if any) was read back.
pub struct Observed<'a> {
    pub repo: &'a RepoView,
    /// Selected tags present in the registry.
    pub desired: &'a BTreeMap<String, Manifest>,
    pub key_ids: &'a [String],
    pub renew_before: SignedDuration,
    pub trust: TrustStatus,
}

impl Observed<'_> {
    /// Earliest time one of our roles needs re-signing.
    pub fn next_renewal(&self) -> Option<Timestamp> {
        self.repo
            .roles
            .iter()
            .filter(|r| self.key_ids.iter().any(|k| r.lists_key(k)) && r.threshold <= 1)
            .filter_map(|r| r.expires)
            .map(|e| e - self.renew_before)
            .min()
    }
}

fn base(prev: Option<&SignedImageStatus>, generation: Option<i64>) -> SignedImageStatus {
    let mut s = prev.cloned().unwrap_or_default();
    s.observed_generation = generation;
    // Only a dry run's status holds a plan (`crate::planned` sets it after this).
    s.planned_changes = None;
    s
}

/// Status after a run that ended with everything signed, fresh and verified.
pub fn success(
    prev: Option<&SignedImageStatus>,
    generation: Option<i64>,
    seen: &Observed<'_>,
    warnings: &[Warning],
    published: bool,
    now: Timestamp,
) -> SignedImageStatus {
    let mut s = base(prev, generation);
    s.signed_tags = seen
        .desired
        .iter()
        .filter_map(|(tag, m)| {
            let (role, t) = seen.repo.docker_winner(tag)?;
            Some(SignedTag {
                tag: tag.clone(),
                digest: format!("sha256:{}", t.sha256),
                size: t.length,
                media_type: m.media_type.clone().filter(|_| t.sha256 == m.sha256),
                role: role.name.clone(),
            })
        })
        .collect();
    let good = s
        .signed_tags
        .iter()
        .filter(|t| {
            seen.desired
                .get(&t.tag)
                .is_some_and(|m| t.digest.ends_with(&m.sha256))
        })
        .count();
    s.tag_summary = Some(format!("{good}/{}", seen.desired.len()));
    let ours = |r: &super::model::RoleView| {
        seen.key_ids.iter().any(|k| r.lists_key(k)) && r.threshold <= 1
    };
    s.roles = seen
        .repo
        .roles
        .iter()
        .filter_map(|r| {
            let expires = r.expires?;
            Some(RoleStatus {
                name: r.name.clone(),
                version: r.version,
                expires: Time(expires),
                renewal_time: ours(r).then(|| Time(expires - seen.renew_before)),
                targets: r.targets.len() as u64,
            })
        })
        .collect();
    let held: Vec<Timestamp> = seen
        .repo
        .roles
        .iter()
        .filter(|r| ours(r))
        .filter_map(|r| r.expires)
        .collect();
    let all: Vec<Timestamp> = seen.repo.roles.iter().filter_map(|r| r.expires).collect();
    s.earliest_expiry = held.iter().min().or(all.iter().min()).map(|t| Time(*t));
    s.trust = Some(seen.trust.clone());
    // No time of this run or of the next poll: a run that found nothing new writes nothing.
    s.next_sync_time = None;
    if published {
        s.last_publish_time = Some(Time(now));
    }
    s.failed_attempts = 0;
    let mut message = format!("{good}/{} selected tags signed", seen.desired.len());
    if let Some(r) = seen.next_renewal() {
        message.push_str(&format!(
            "; next renewal at {}",
            Timestamp::from_second(r.as_second()).unwrap_or(r)
        ));
    }
    for w in warnings {
        message.push_str("; warning: ");
        message.push_str(&w.message());
    }
    set_condition(
        &mut s.conditions,
        READY,
        ConditionStatus::True,
        reasons::SIGNED,
        &message,
        generation,
        now,
    );
    s
}

/// Status after a failed run: what was known before is kept (signed tags, roles, trust), the
/// failure counted (from zero again after a spec change: a new generation resets the backoff),
/// Ready set False with the reason and message, and the next run after backoff. Returns the
/// status and when to run again.
pub fn failure(
    prev: Option<&SignedImageStatus>,
    generation: Option<i64>,
    reason: &str,
    message: &str,
    now: Timestamp,
    jitter: f64,
) -> (SignedImageStatus, Timestamp) {
    let before = prev
        .filter(|p| p.observed_generation == generation)
        .map_or(0, |p| p.failed_attempts);
    let attempts = before.saturating_add(1);
    let next = super::schedule::next_after_failure(now, attempts, jitter);
    let mut s = base(prev, generation);
    s.failed_attempts = attempts;
    s.last_failure_time = Some(Time(now));
    s.next_sync_time = Some(Time(next));
    set_condition(
        &mut s.conditions,
        READY,
        ConditionStatus::False,
        reason,
        message,
        generation,
        now,
    );
    (s, next)
}

/// `spec.suspend`: Ready False/Suspended; everything recorded before is kept, no next run.
pub fn suspended(
    prev: Option<&SignedImageStatus>,
    generation: Option<i64>,
    now: Timestamp,
) -> SignedImageStatus {
    let mut s = base(prev, generation);
    s.next_sync_time = None;
    set_condition(
        &mut s.conditions,
        READY,
        ConditionStatus::False,
        reasons::SUSPENDED,
        "spec.suspend is true: nothing is signed or renewed until it is set back to false",
        generation,
        now,
    );
    s
}

/// Whether Ready's status or reason differs between two statuses: what is worth an Event.
pub fn ready_transition(before: Option<&SignedImageStatus>, after: &SignedImageStatus) -> bool {
    let key = |c: Option<&crate::api::Condition>| c.map(|c| (c.status.clone(), c.reason.clone()));
    key(before.and_then(SignedImageStatus::ready)) != key(after.ready())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RoleState, RoleView, SignerKey, TargetMeta};

    fn now() -> Timestamp {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn success_then_failure_keeps_what_was_known() {
        let exp: Timestamp = "2029-11-24T12:00:00Z".parse().unwrap();
        let repo = RepoView {
            roles: vec![
                RoleView {
                    name: "targets".into(),
                    version: 2,
                    expires: Some("2028-01-01T00:00:00Z".parse().unwrap()),
                    state: RoleState::Valid,
                    targets: BTreeMap::new(),
                    paths: vec![String::new()],
                    signers: vec![SignerKey {
                        id: "o".into(),
                        canonical_id: "o".into(),
                    }],
                    threshold: 1,
                },
                RoleView {
                    name: "targets/releases".into(),
                    version: 5,
                    expires: Some(exp),
                    state: RoleState::Valid,
                    targets: [(
                        "v1".to_string(),
                        TargetMeta {
                            sha256: "a".repeat(64),
                            length: 9,
                        },
                    )]
                    .into(),
                    paths: vec![String::new()],
                    signers: vec![SignerKey {
                        id: "k".into(),
                        canonical_id: "k".into(),
                    }],
                    threshold: 1,
                },
            ],
        };
        let desired: BTreeMap<_, _> = [(
            "v1".to_string(),
            Manifest {
                sha256: "a".repeat(64),
                size: 9,
                media_type: Some("m".into()),
            },
        )]
        .into();
        let keys = vec!["k".to_string()];
        let seen = Observed {
            repo: &repo,
            desired: &desired,
            key_ids: &keys,
            renew_before: SignedDuration::from_hours(4560),
            trust: TrustStatus {
                root_key_ids: vec!["r".into()],
                root_version: 1,
                versions: Default::default(),
            },
        };
        let s = success(None, Some(3), &seen, &[], true, now());
        assert_eq!(s.next_sync_time, None, "no schedule while Ready");
        // Nothing new an hour later: the very same status, so nothing to write.
        let again = success(
            Some(&s),
            Some(3),
            &seen,
            &[],
            false,
            now() + SignedDuration::from_hours(1),
        );
        assert_eq!(again, s);
        assert_eq!(s.tag_summary.as_deref(), Some("1/1"));
        assert_eq!(s.signed_tags[0].role, "targets/releases");
        assert_eq!(
            s.signed_tags[0].digest,
            format!("sha256:{}", "a".repeat(64))
        );
        assert_eq!(s.roles.len(), 2);
        assert_eq!(s.roles[0].renewal_time, None, "targets is not ours");
        assert_eq!(
            s.roles[1].renewal_time.as_ref().unwrap().0,
            exp - SignedDuration::from_hours(4560)
        );
        assert_eq!(
            s.earliest_expiry.as_ref().unwrap().0,
            exp,
            "earliest among held roles"
        );
        assert_eq!(s.conditions[0].reason, "Signed");
        assert_eq!(s.last_publish_time.as_ref().unwrap().0, now());

        let later = now() + SignedDuration::from_mins(5);
        let (f, _) = failure(
            Some(&s),
            Some(3),
            reasons::NOTARY_UNREACHABLE,
            "down",
            later,
            0.0,
        );
        let (f2, next) = failure(
            Some(&f),
            Some(3),
            reasons::NOTARY_UNREACHABLE,
            "down",
            later,
            0.0,
        );
        assert_eq!(
            next,
            later + SignedDuration::from_secs(60),
            "second failure: 2 min, jitter floor 0.5"
        );
        // A spec change starts the count again.
        let (f3, _) = failure(
            Some(&f2),
            Some(4),
            reasons::NOTARY_UNREACHABLE,
            "down",
            later,
            0.0,
        );
        assert_eq!(f3.failed_attempts, 1);
        assert_eq!(f2.failed_attempts, 2);
        assert_eq!(f2.signed_tags, s.signed_tags);
        assert_eq!(f2.trust, s.trust);
        assert_eq!(f2.conditions[0].status, "False");
        assert_eq!(f2.conditions[0].last_transition_time.0, later);
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn failure_keeps_transition_time_and_backs_off() {
        let t0 = ts("2026-11-25T12:00:00Z");
        let (s1, n1) = failure(None, Some(1), reasons::SECRET_NOT_FOUND, "gone", t0, 0.0);
        assert_eq!(s1.failed_attempts, 1);
        assert_eq!(n1, t0 + jiff::SignedDuration::from_secs(30));
        assert_eq!(s1.observed_generation, Some(1));
        let c = s1.ready().unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "SecretNotFound")
        );

        // The same failure again: counted, backoff grows, but no transition (no Event).
        let t1 = ts("2026-11-25T12:01:00Z");
        let (s2, n2) = failure(
            Some(&s1),
            Some(1),
            reasons::SECRET_NOT_FOUND,
            "gone",
            t1,
            0.0,
        );
        assert_eq!(s2.failed_attempts, 2);
        assert_eq!(n2, t1 + jiff::SignedDuration::from_secs(60));
        assert!(!ready_transition(Some(&s1), &s2));
        assert_eq!(s2.ready().unwrap().last_transition_time.0, t0);

        // A different message: written, transition time kept (still False).
        let (s3, _) = failure(Some(&s1), Some(1), reasons::SECRET_INVALID, "key", t1, 0.0);
        assert_eq!(s3.failed_attempts, 2);
        assert_eq!(s3.ready().unwrap().last_transition_time.0, t0);
        assert!(ready_transition(Some(&s1), &s3));

        // A spec change restarts the count.
        let (s4, _) = failure(Some(&s3), Some(2), reasons::SECRET_INVALID, "key", t1, 0.0);
        assert_eq!(s4.failed_attempts, 1);
        assert_eq!(s4.observed_generation, Some(2));
    }

    #[test]
    fn suspended_keeps_engine_state() {
        let mut prev = SignedImageStatus {
            failed_attempts: 0,
            tag_summary: Some("1/1".into()),
            ..Default::default()
        };
        let t0 = ts("2026-11-25T12:00:00Z");
        set_condition(
            &mut prev.conditions,
            READY,
            ConditionStatus::True,
            reasons::SIGNED,
            "ok",
            Some(1),
            t0,
        );
        let s = suspended(Some(&prev), Some(2), t0);
        assert_eq!(s.tag_summary.as_deref(), Some("1/1"));
        assert_eq!(s.ready().unwrap().reason, "Suspended");
        assert!(ready_transition(Some(&prev), &s));
        assert_eq!(suspended(Some(&s), Some(2), t0), s);
    }
}
