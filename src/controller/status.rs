//! How the controller writes a status: the server-side apply body, and the stored form that
//! tells whether a write would change anything. What the status says is the engine's
//! (`engine::outcome`, `engine::status`).

use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::api::{SignedImage, SignedImageStatus};

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
    use crate::api::{ConditionStatus, READY, Time, reasons, set_condition};

    fn t(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn stored_form_drops_sub_seconds() {
        let mut s = SignedImageStatus {
            last_failure_time: Some(Time(t("2026-11-25T12:00:00.123456789Z"))),
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
        assert_eq!(
            stored.last_failure_time,
            Some(Time(t("2026-11-25T12:00:00Z")))
        );
        assert_eq!(
            stored.conditions[0].last_transition_time,
            Time(t("2026-11-25T12:00:00Z"))
        );
        assert_eq!(as_stored(stored.clone()), stored);
    }
}
