//! A failed run: the Ready reason and a message that says what to do. Every protocol and registry
//! error maps to exactly one reason, so a user (and an alert) can tell the classes apart.

use std::fmt;

use crate::api::reasons;
use trustkeeper_notary::Error as NotaryError;
use trustkeeper_registry::RegistryError;

/// Why a run did not reach Ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: &'static str,
    pub message: String,
}

impl Failure {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Failure {
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for Failure {}

impl From<NotaryError> for Failure {
    fn from(e: NotaryError) -> Self {
        use NotaryError as E;
        let reason = match &e {
            E::KeyNotSigner { .. } => reasons::KEY_NOT_DELEGATED,
            E::WrongPassphrase { .. } => reasons::WRONG_PASSPHRASE,
            E::MalformedKey { .. }
            | E::UnsupportedKey { .. }
            | E::KeyIdMismatch { .. }
            | E::NoSignatures { .. } => reasons::BAD_KEY,
            E::ThresholdNotMet { .. }
            | E::Tampered { .. }
            | E::TooLarge { .. }
            | E::MetadataTooLarge { .. }
            | E::AbsurdVersion { .. }
            | E::MissingRoleFile { .. }
            | E::InvalidMetadata { .. } => reasons::METADATA_INVALID,
            E::Expired { .. } => reasons::EXPIRING,
            E::Rollback { .. } => reasons::ROLLBACK,
            E::UntrustedRoot { .. } => reasons::ROOT_MISMATCH,
            E::UnknownRepository { .. } | E::NotFound { .. } => reasons::REPOSITORY_NOT_FOUND,
            E::Unauthorized { .. } => reasons::UNAUTHORIZED,
            E::Unreachable { .. } | E::Timeout { .. } => reasons::NOTARY_UNREACHABLE,
            E::VersionConflict { .. } => reasons::CONFLICT,
            E::Rejected { .. } | E::Server { .. } => reasons::PUBLISH_FAILED,
            E::TargetNotAllowed { .. } | E::UnknownRole { .. } => reasons::ROLE_NOT_USABLE,
            E::Config(_) | E::InvalidName { .. } => reasons::INVALID_SPEC,
            // Errors of repository creation and key export, which a reconcile does not do;
            // listed so that a new error class cannot fall into another's reason unseen.
            E::RepositoryExists { .. } => reasons::CONFLICT,
            E::KeyExport { .. } | E::Certificate { .. } => reasons::BAD_KEY,
            E::KeyEncryption { .. } => reasons::BAD_KEY,
            E::Signing { .. } => reasons::BAD_KEY,
            // Delegation administration (`delegation`, `signer`), which a reconcile does not do.
            E::NotAMember { .. } | E::LastKey { .. } | E::ThresholdTooHigh { .. } => {
                reasons::INVALID_SPEC
            }
        };
        Failure::new(reason, e.to_string())
    }
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        use RegistryError as E;
        let reason = match &e {
            E::BadReference { .. } | E::Config { .. } => reasons::INVALID_SPEC,
            E::Unauthorized { .. } => reasons::UNAUTHORIZED,
            E::NotFound { .. } => reasons::TAG_NOT_FOUND,
            E::Unsupported { .. } => reasons::UNSUPPORTED_MANIFEST,
            // The registry cannot be used now; the message says which way.
            E::Unreachable { .. }
            | E::RateLimited { .. }
            | E::Tls { .. }
            | E::Timeout { .. }
            | E::Server { .. } => reasons::REGISTRY_UNREACHABLE,
            // The registry answered, with something that must not be signed or followed.
            E::DigestMismatch { .. } | E::Protocol { .. } => reasons::REGISTRY_REFUSED,
        };
        Failure::new(reason, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hostile or unreadable key file ends in one of these two (the notary crate's key tests
    /// check which); the user fixes either by exporting the key again, so both are BadKey.
    #[test]
    fn key_decoding_errors_are_bad_key() {
        for e in [
            NotaryError::KeyEncryption {
                key: "key.pem".into(),
                what: "scrypt N=2^32 is over the bound".into(),
            },
            NotaryError::MalformedKey {
                key: "key.pem".into(),
                reason: "not PKCS#8".into(),
            },
        ] {
            assert_eq!(Failure::from(e).reason, reasons::BAD_KEY);
        }
    }
}
