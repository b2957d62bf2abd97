//! Condition types, reasons, and the one rule for updating them: `lastTransitionTime` moves only
//! when a condition's status flips (cert-manager and stackable keep the same rule).

use super::meta::{Condition, Time};

/// The condition type that carries the overall state.
pub const READY: &str = "Ready";

/// Status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// Reasons of the Ready condition, one per class of problem a user fixes differently.
pub mod reasons {
    /// Everything selected is signed, fresh and verified.
    pub const SIGNED: &str = "Signed";
    /// `spec.suspend` is true.
    pub const SUSPENDED: &str = "Suspended";
    /// `spec.dryRun` is true: the plan is in `status.plannedChanges`, nothing is published.
    pub const DRY_RUN: &str = "DryRun";
    /// The first reconcile has not finished yet.
    pub const PENDING: &str = "Pending";
    /// The spec is valid for the schema but not usable (bad duration, reference, URL).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A referenced Secret does not exist.
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// A referenced Secret lacks the data key, or has the wrong type.
    pub const SECRET_INVALID: &str = "SecretInvalid";
    /// The key PEM cannot be parsed, or is of a type notary cannot sign with.
    pub const BAD_KEY: &str = "BadKey";
    /// The passphrase does not decrypt the key.
    pub const WRONG_PASSPHRASE: &str = "WrongPassphrase";
    /// Our key is not a signer of the role to sign into.
    pub const KEY_NOT_DELEGATED: &str = "KeyNotDelegated";
    /// The role to sign into is not declared by its parent, or its paths exclude the tag.
    pub const ROLE_NOT_USABLE: &str = "RoleNotUsable";
    /// The role needs more signatures than one key gives.
    pub const THRESHOLD_NOT_MET: &str = "ThresholdNotMet";
    /// An entry in a role docker reads first hides the newly signed digest.
    pub const TAG_SHADOWED: &str = "TagShadowed";
    /// The role to sign into is one `docker pull` never reads.
    pub const ROLE_NOT_READ: &str = "RoleNotReadByDocker";
    /// A selected tag or glob names nothing in the registry.
    pub const TAG_NOT_FOUND: &str = "TagNotFound";
    /// The manifest type cannot be signed (Docker schema 1).
    pub const UNSUPPORTED_MANIFEST: &str = "UnsupportedManifest";
    /// The registry cannot be reached.
    pub const REGISTRY_UNREACHABLE: &str = "RegistryUnreachable";
    /// The registry's answer was refused: content that does not match its digest or size,
    /// more than the bounds allow, or a link, realm or redirect off its https origin.
    pub const REGISTRY_REFUSED: &str = "RegistryRefused";
    /// The notary server cannot be reached.
    pub const NOTARY_UNREACHABLE: &str = "NotaryUnreachable";
    /// The notary server is one that was shut down for good (Docker Hub's, on 8 December
    /// 2026): Docker Content Trust cannot be published there any more.
    pub const NOTARY_SHUT_DOWN: &str = "NotaryShutDown";
    /// Credentials were refused.
    pub const UNAUTHORIZED: &str = "Unauthorized";
    /// The repository has no trust data on the notary server.
    pub const REPOSITORY_NOT_FOUND: &str = "RepositoryNotFound";
    /// The root does not match the pinned key IDs or the root trusted before.
    pub const ROOT_MISMATCH: &str = "RootMismatch";
    /// Metadata failed verification: bad signature, hash or length (tampered).
    pub const METADATA_INVALID: &str = "MetadataInvalid";
    /// The server served an older version than seen before.
    pub const ROLLBACK: &str = "RollbackDetected";
    /// A role that only another key holder can renew has expired or nears expiry.
    pub const EXPIRING: &str = "Expiring";
    /// The server refused the publish.
    pub const PUBLISH_FAILED: &str = "PublishFailed";
    /// What the server serves after a publish is not what was planned.
    pub const VERIFY_FAILED: &str = "VerifyFailed";
    /// Another writer kept publishing concurrently; retries were exhausted.
    pub const CONFLICT: &str = "Conflict";
    /// The run did not finish within its deadline (a server answered too slowly or not at all).
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
}

/// Sets condition `type_` in `conditions`, keeping its `lastTransitionTime` unless the status
/// flips. Returns whether anything changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> bool {
    let new = |transition: Time| Condition {
        type_: type_.to_string(),
        status: status.as_str().to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: transition,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let transition = if c.status == status.as_str() {
                c.last_transition_time
            } else {
                Time(now)
            };
            let updated = new(transition);
            if *c == updated {
                false
            } else {
                *c = updated;
                true
            }
        }
        None => {
            conditions.push(new(Time(now)));
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn transition_time_moves_only_on_flip() {
        let mut c = Vec::new();
        let t0 = ts("2026-01-01T00:00:00Z");
        let t1 = ts("2026-01-02T00:00:00Z");
        let t2 = ts("2026-01-03T00:00:00Z");
        assert!(set_condition(
            &mut c,
            READY,
            ConditionStatus::False,
            reasons::PENDING,
            "x",
            Some(1),
            t0
        ));
        // Same status, new reason: changed, but the transition time stays.
        assert!(set_condition(
            &mut c,
            READY,
            ConditionStatus::False,
            reasons::BAD_KEY,
            "y",
            Some(1),
            t1
        ));
        assert_eq!(c[0].last_transition_time.0, t0);
        assert_eq!(c[0].reason, reasons::BAD_KEY);
        // Identical: no change.
        assert!(!set_condition(
            &mut c,
            READY,
            ConditionStatus::False,
            reasons::BAD_KEY,
            "y",
            Some(1),
            t2
        ));
        // Flip.
        assert!(set_condition(
            &mut c,
            READY,
            ConditionStatus::True,
            reasons::SIGNED,
            "ok",
            Some(2),
            t2
        ));
        assert_eq!(c[0].last_transition_time.0, t2);
        assert_eq!(c[0].observed_generation, Some(2));
        assert_eq!(c.len(), 1);
    }
}
