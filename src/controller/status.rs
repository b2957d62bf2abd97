//! Status the controller computes itself (suspended, Secret problems) and the server-side apply
//! body that writes any status. Pure: the caller passes the clock and the jitter.

use crate::api::Condition;
use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::api::{READY, SignedImage, SignedImageStatus};

/// The one field manager of everything trustkeeper writes.
pub const FIELD_MANAGER: &str = "trustkeeper";

/// Server-side apply, forced: trustkeeper owns the whole status.
pub fn patch_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// The apply document for `status`: apiVersion, kind and the complete status.
pub fn apply_body(status: &SignedImageStatus) -> Value {
    json!({
        "apiVersion": "trustkeeper.dev/v1alpha1",
        "kind": "SignedImage",
        "status": status,
    })
}

/// The patch for [`kube::Api::patch_status`].
pub fn apply_patch(status: &SignedImageStatus) -> Patch<Value> {
    Patch::Apply(apply_body(status))
}

/// `status` as the API server will store it: through its JSON form, so that times lose their
/// sub-second part as `metav1.Time` does on the wire. Comparing this with the status read back
/// tells whether a write would change anything.
pub fn as_stored(status: SignedImageStatus) -> SignedImageStatus {
    serde_json::to_value(&status)
        .and_then(serde_json::from_value)
        .unwrap_or(status)
}

/// The Ready condition of a status, if any.
pub fn ready(status: Option<&SignedImageStatus>) -> Option<&Condition> {
    status.and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
}

/// Whether Ready's status or reason differs between two statuses: what is worth an Event.
pub fn ready_transition(before: Option<&SignedImageStatus>, after: &SignedImageStatus) -> bool {
    let key = |c: Option<&Condition>| c.map(|c| (c.status.clone(), c.reason.clone()));
    key(ready(before)) != key(ready(Some(after)))
}

/// `spec.suspend`: Ready False/Suspended; everything the engine recorded is kept.
pub fn suspended(
    previous: Option<&SignedImageStatus>,
    generation: Option<i64>,
    now: Timestamp,
) -> SignedImageStatus {
    crate::engine::status::suspended(previous, generation, now)
}

/// A failure found before the engine ran (a Secret problem) gets the engine's failure status:
/// Ready False, one more failed attempt (from zero after a spec change), backoff.
pub use crate::engine::status::failure;

/// `namespace/name` of a SignedImage.
pub fn id(obj: &SignedImage) -> String {
    format!(
        "{}/{}",
        obj.metadata.namespace.as_deref().unwrap_or_default(),
        obj.metadata.name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Time;
    use crate::api::{ConditionStatus, reasons, set_condition};

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn failure_keeps_transition_time_and_backs_off() {
        let t0 = t("2026-11-25T12:00:00Z");
        let (s1, n1) = failure(None, Some(1), reasons::SECRET_NOT_FOUND, "gone", t0, 0.0);
        assert_eq!(s1.failed_attempts, 1);
        assert_eq!(n1, t0 + jiff::SignedDuration::from_secs(30));
        assert_eq!(s1.observed_generation, Some(1));
        let c = ready(Some(&s1)).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "SecretNotFound")
        );

        // The same failure again: counted, backoff grows, but no transition (no Event).
        let t1 = t("2026-11-25T12:01:00Z");
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
        assert_eq!(ready(Some(&s2)).unwrap().last_transition_time.0, t0);

        // A different message: written, transition time kept (still False).
        let (s3, _) = failure(Some(&s1), Some(1), reasons::SECRET_INVALID, "key", t1, 0.0);
        assert_eq!(s3.failed_attempts, 2);
        assert_eq!(ready(Some(&s3)).unwrap().last_transition_time.0, t0);
        assert!(ready_transition(Some(&s1), &s3));

        // A spec change restarts the count.
        let (s4, _) = failure(Some(&s3), Some(2), reasons::SECRET_INVALID, "key", t1, 0.0);
        assert_eq!(s4.failed_attempts, 1);
        assert_eq!(s4.observed_generation, Some(2));
    }

    #[test]
    fn stored_form_drops_sub_seconds() {
        let mut s = SignedImageStatus {
            last_sync_time: Some(Time(t("2026-11-25T12:00:00.123456789Z"))),
            ..Default::default()
        };
        set_condition(
            &mut s.conditions,
            READY,
            ConditionStatus::True,
            reasons::SIGNED,
            "ok",
            Some(1),
            t("2026-11-25T12:00:00.5Z"),
        );
        let stored = as_stored(s.clone());
        assert_ne!(stored, s);
        assert_eq!(stored.last_sync_time, Some(Time(t("2026-11-25T12:00:00Z"))));
        assert_eq!(
            stored.conditions[0].last_transition_time,
            Time(t("2026-11-25T12:00:00Z"))
        );
        assert_eq!(as_stored(stored.clone()), stored);
    }

    #[test]
    fn suspended_keeps_engine_state() {
        let mut prev = SignedImageStatus {
            failed_attempts: 0,
            tag_summary: Some("1/1".into()),
            ..Default::default()
        };
        let t0 = t("2026-11-25T12:00:00Z");
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
        assert_eq!(ready(Some(&s)).unwrap().reason, "Suspended");
        assert!(ready_transition(Some(&prev), &s));
        assert_eq!(suspended(Some(&s), Some(2), t0), s);
    }
}
