//! Stage 6, outcome: the one owner of what a run reports: the status (conditions, Ready and its
//! transitions, via `status`), the Events, when to run again, and the counts. The controller
//! and the CLI build every outcome here, the ones decided before the engine runs (suspended, a
//! Secret missing) included.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::api::{ConditionStatus, SignedImageSpec, SignedImageStatus};
use crate::failure::Failure;
use crate::model::{Manifest, RepoView};
use crate::plan::{ChangeKind, Plan};
use crate::request::{EngineEvent, EventType, Outcome, Requests};
use crate::settings::Settings;
use crate::{schedule, status};
use trustkeeper_notary::TrustState;

/// What a successful attempt produced.
pub(crate) struct Done {
    pub(crate) repo: RepoView,
    pub(crate) desired: BTreeMap<String, Manifest>,
    pub(crate) key_ids: Vec<String>,
    pub(crate) trust: TrustState,
    pub(crate) plan: Plan,
    pub(crate) publishes: u32,
    /// The cosign signatures of the desired digests (`spec.formats`), empty without cosign.
    pub(crate) cosign: Vec<trustkeeper_formats::cosign_sign::CosignSigned>,
    pub(crate) cosign_key_id: Option<String>,
    /// The Notation signatures of the desired digests and the chain they were made with.
    pub(crate) notation: Vec<trustkeeper_formats::notation_sign::NotationSigned>,
    pub(crate) chain: Option<crate::notation::Chain>,
}

/// The one place `spec.suspend` is decided: the outcome of a suspended SignedImage, or `None`
/// when it is to run. Nothing is read for it, not even its Secrets.
pub fn suspension(
    spec: &SignedImageSpec,
    prev: Option<&SignedImageStatus>,
    gen_: Option<i64>,
    now: Timestamp,
) -> Option<Outcome> {
    spec.suspend.then(|| Outcome::suspended(prev, gen_, now))
}

impl Outcome {
    /// Ready False/Suspended, everything recorded kept, nothing scheduled until the spec
    /// changes; an Event when Ready changes.
    pub fn suspended(
        prev: Option<&SignedImageStatus>,
        gen_: Option<i64>,
        now: Timestamp,
    ) -> Outcome {
        let st = status::suspended(prev, gen_, now);
        let events = match st.ready() {
            Some(c) if status::ready_transition(prev, &st) => vec![EngineEvent {
                type_: EventType::Normal,
                reason: c.reason.clone(),
                note: c.message.clone(),
            }],
            _ => vec![],
        };
        Outcome {
            status: st,
            events,
            requeue_at: None,
            publishes: 0,
            renewed: vec![],
            signed: vec![],
            signed_formats: vec![],
            failure_reason: None,
            requests: Requests::default(),
        }
    }

    /// The outcome of an attempt: status, schedule, Events.
    pub(crate) fn of_attempt(
        prev: Option<&SignedImageStatus>,
        gen_: Option<i64>,
        settings: &Settings,
        result: Result<Done, Failure>,
        now: Timestamp,
        jitter: f64,
    ) -> Outcome {
        let prev_ready = prev.and_then(SignedImageStatus::ready);
        match result {
            Ok(done) => {
                let seen = status::Observed {
                    repo: &done.repo,
                    desired: &done.desired,
                    key_ids: &done.key_ids,
                    renew_before: settings.renew_before,
                    trust: (&done.trust).into(),
                };
                let renewal = (seen.next_renewal().into_iter())
                    .chain(crate::notation::next_due(
                        done.chain.as_ref(),
                        settings,
                        now,
                    ))
                    .min();
                let next = schedule::next_after_success(now, settings.interval, renewal, jitter);
                let published = !done.plan.changes.is_empty();
                let mut st =
                    status::success(prev, gen_, &seen, &done.plan.warnings, published, now);
                st.signatures = crate::without_notary::signatures(
                    &done.desired,
                    &done.cosign,
                    &done.cosign_key_id,
                );
                st.signatures.extend(crate::notation::signatures(
                    &done.desired,
                    &done.notation,
                    done.chain.as_ref(),
                ));
                st.signatures
                    .sort_by(|a, b| (&a.tag, a.format as u8).cmp(&(&b.tag, b.format as u8)));
                st.signatures
                    .truncate(crate::without_notary::MAX_STATUS_SIGNATURES);
                crate::notation::warn_in_ready(&mut st, done.chain.as_ref(), settings, now);
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
                events.extend(crate::without_notary::cosign_events(&done.cosign));
                events.extend(crate::notation::events(&done.notation));
                if prev_ready.is_some_and(|c| c.is(ConditionStatus::False)) && events.is_empty() {
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
                    requeue_at: Some(next),
                    publishes: done.publishes,
                    renewed,
                    signed,
                    signed_formats: crate::without_notary::signed_formats(
                        &done.cosign,
                        &done.notation,
                    ),
                    failure_reason: None,
                    requests: Requests::default(),
                }
            }
            Err(f) => Outcome::failed(prev, gen_, f, now, jitter),
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
        let was = prev.and_then(SignedImageStatus::ready);
        let transition = !was.is_some_and(|c| c.is(ConditionStatus::False) && c.reason == f.reason);
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
            requeue_at: Some(next),
            publishes: 0,
            renewed: vec![],
            signed: vec![],
            signed_formats: vec![],
            failure_reason: Some(f.reason),
            requests: Requests::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::reasons;

    fn now() -> Timestamp {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn suspension_is_decided_by_the_spec_alone_and_says_so_once() {
        let mut spec: SignedImageSpec =
            serde_saphyr::from_str("image: r.example/app\nsigningKey: {secretRef: {name: k}}\n")
                .unwrap();
        assert!(suspension(&spec, None, Some(1), now()).is_none());
        spec.suspend = true;
        let first = suspension(&spec, None, Some(1), now()).unwrap();
        assert_eq!(
            first.requeue_at, None,
            "nothing scheduled until the spec changes"
        );
        assert_eq!(first.status.ready().unwrap().reason, reasons::SUSPENDED);
        assert_eq!(first.events.len(), 1);
        assert_eq!(first.events[0].type_, EventType::Normal);
        // Still suspended: no second Event.
        let again = suspension(&spec, Some(&first.status), Some(1), now()).unwrap();
        assert!(again.events.is_empty());
        assert_eq!(again.status, first.status);
    }

    #[test]
    fn a_failure_is_an_event_only_when_ready_changes() {
        let f = || Failure::new(reasons::SECRET_NOT_FOUND, "Secret ns/k is gone");
        let first = Outcome::failed(None, Some(1), f(), now(), 0.0);
        assert_eq!(first.failure_reason, Some(reasons::SECRET_NOT_FOUND));
        assert_eq!(first.events.len(), 1);
        assert_eq!(first.events[0].type_, EventType::Warning);
        assert!(first.requeue_at.is_some_and(|t| t > now()));
        let again = Outcome::failed(Some(&first.status), Some(1), f(), now(), 0.0);
        assert!(again.events.is_empty());
        assert_eq!(again.status.failed_attempts, 2);
        let other = Failure::new(reasons::BAD_KEY, "not a key");
        let changed = Outcome::failed(Some(&again.status), Some(1), other, now(), 0.0);
        assert_eq!(changed.events.len(), 1);
    }
}
