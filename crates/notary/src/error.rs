//! Typed errors: one variant per class of problem a user fixes differently. Each carries the
//! facts needed to fix it; `Display` says what to do.

use jiff::Timestamp;

use super::time::display;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// None of the offered keys is listed for the role (Docker: "no valid signing keys for
    /// delegation roles"; notary: "could not find necessary signing keys").
    #[error(
        "no valid signing keys for {role}: it accepts keys {accepted:?} (canonical IDs), offered {offered:?}; \
         add the key as a signer of {role} (needs the parent role's key) or supply one of the accepted keys"
    )]
    KeyNotSigner {
        role: String,
        accepted: Vec<String>,
        offered: Vec<String>,
    },

    #[error("wrong passphrase for key {key}: supply the passphrase the key was exported with")]
    WrongPassphrase { key: String },

    #[error(
        "malformed key {key}: {reason}; supply a `notary key export` PEM or an unencrypted PKCS#8/SEC1 key"
    )]
    MalformedKey { key: String, reason: String },

    #[error("unsupported key {key}: {what}; use an ECDSA P-256 key (what notary generates)")]
    UnsupportedKey { key: String, what: String },

    /// The `path:` header (or a configured ID) names a different key than the block holds
    /// (notary then uploads "tuf: data has no signatures").
    #[error(
        "key file says it is {declared} but holds key {actual}; fix the `path:` header or the configured key ID"
    )]
    KeyIdMismatch { declared: String, actual: String },

    #[error(
        "{role}: {valid} valid signature(s) from listed keys, threshold is {threshold}; \
         re-sign {role} with keys its parent lists ({listed:?})"
    )]
    ThresholdNotMet {
        role: String,
        valid: usize,
        threshold: usize,
        listed: Vec<String>,
    },

    #[error("{role} expired at {}; re-sign (renew) {role} with its key", display(*.expires))]
    Expired { role: String, expires: Timestamp },

    #[error(
        "rollback: server offers {role} version {offered}, but version {trusted} was already trusted; \
         the server or a mirror serves stale or malicious data"
    )]
    Rollback {
        role: String,
        trusted: u64,
        offered: u64,
    },

    #[error(
        "{role} does not match what {by} announced ({what}): the data was tampered with or truncated"
    )]
    Tampered {
        role: String,
        by: String,
        what: String,
    },

    #[error("{what} exceeds the limit of {limit} bytes; the server sent more than expected")]
    TooLarge { what: String, limit: u64 },

    /// The fixed cap on trust metadata read per update, whatever the signed metadata announces.
    #[error(
        "{what} is more than the trust metadata limit of {limit} bytes (every file of one \
         repository update together), whatever the server announces; refused before more is \
         read. If the repository really is that large, raise --max-metadata-size / \
         TRUSTKEEPER_MAX_METADATA_SIZE (Helm: maxMetadataSize)"
    )]
    MetadataTooLarge { what: String, limit: u64 },

    /// A version no client can go past (it could never be incremented): refused before it is
    /// trusted, so that it cannot block later, sane versions as rollbacks.
    #[error(
        "{role} has version {version}, above the largest usable version {max}; the server serves \
         broken or malicious metadata (nothing was trusted or stored): fix the repository on the \
         server"
    )]
    AbsurdVersion {
        role: String,
        version: u64,
        max: u64,
    },

    /// The snapshot lists a role whose file the server does not have (Docker fails the same way).
    #[error(
        "the snapshot of {gun} lists {role}, but the trust server has no file for it (404): the \
         repository on the server is inconsistent; restore {role} on the server or publish it \
         again with its key (docker pull fails on this repository until then)"
    )]
    MissingRoleFile { gun: String, role: String },

    #[error("invalid metadata {role}: {reason}")]
    InvalidMetadata { role: String, reason: String },

    #[error(
        "root of {gun} is not trusted: {reason}; check the pinned root key IDs or the trusted state"
    )]
    UntrustedRoot { gun: String, reason: String },

    #[error(
        "unknown repository {gun}: the trust server has no trust data for it (404); initialize it first"
    )]
    UnknownRepository { gun: String },

    #[error("{what}: not found on the trust server (404)")]
    NotFound { what: String },

    #[error("not authorized at {url} ({status}): check the credentials for the trust server")]
    Unauthorized { url: String, status: u16 },

    #[error("trust server {url} unreachable: {reason}; check the URL, network and CA")]
    Unreachable { url: String, reason: String },

    /// One request took longer than the per-request timeout (when known).
    #[error(
        "timed out{} waiting for the trust server {url}: it is slow or overloaded; retry later \
         or raise --timeout",
        timeout.map(|t| format!(" after {}", trustkeeper_http::human_duration(t))).unwrap_or_default()
    )]
    Timeout {
        url: String,
        timeout: Option<std::time::Duration>,
    },

    #[error(
        "version conflict publishing {gun}: the server holds a newer version (another writer); \
         fetch again, re-apply the changes and retry"
    )]
    VersionConflict { gun: String },

    /// notary: "tuf: data has no signatures".
    #[error(
        "the server rejected {gun}: tuf: data has no signatures (a key does not match its ID); \
         check that each key's computed ID matches its file name / configured ID"
    )]
    NoSignatures { gun: String },

    #[error("trust server rejected the update of {gun}: {code}: {message}")]
    Rejected {
        gun: String,
        code: String,
        message: String,
    },

    #[error("trust server {url} answered {status}: {body}")]
    Server {
        url: String,
        status: u16,
        body: String,
    },

    #[error("target name {name:?} is not allowed in {role}: {reason}")]
    TargetNotAllowed {
        role: String,
        name: String,
        reason: String,
    },

    #[error("{role} is not a role of this repository: declare it first (`delegation add`)")]
    UnknownRole { role: String },

    #[error("invalid configuration: {0}")]
    Config(String),

    /// Creating a repository whose GUN already has trust data: nothing was published.
    #[error(
        "repository {gun} already exists on the trust server (it serves a root.json); nothing was \
         published. Sign into it with its existing keys, or, if it is yours and you mean to start \
         over, delete it first (`notary delete {gun} --remote`)"
    )]
    RepositoryExists { gun: String },

    /// A GUN or role name that cannot be used as given.
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        what: String,
        name: String,
        reason: String,
    },

    #[error("cannot export key {key}: {reason}")]
    KeyExport { key: String, reason: String },

    /// A key file whose encryption notary and Docker never write, or whose key derivation would
    /// cost more than any real key file's: refused before anything is derived.
    #[error(
        "key {key} is encrypted with {what}; export it again with `notary key export` \
         (PBKDF2-HMAC-SHA1, 2048 iterations, AES-256-CBC)"
    )]
    KeyEncryption { key: String, what: String },

    #[error("cannot make the root certificate for {gun}: {reason}")]
    Certificate { gun: String, reason: String },

    /// A signer that could not sign (a remote key store's refusal or outage); nothing was
    /// produced.
    #[error(
        "key {key} could not sign: {reason}; nothing was published: check that the key store \
         holding the key is reachable, lets this key sign, and answers in the signer's encoding"
    )]
    Signing { key: String, reason: String },

    /// A key named for removal that the delegation does not list.
    #[error(
        "{role} does not list key {key}: it lists {members:?}; give one of those IDs (as \
         `delegation list` shows them)"
    )]
    NotAMember {
        role: String,
        key: String,
        members: Vec<String>,
    },

    /// Removing every key of a delegation would leave a role nobody can sign.
    #[error(
        "removing every key of {role} leaves a role nobody can sign: remove the delegation \
         instead (`delegation remove IMAGE {role}`), or add the new key first"
    )]
    LastKey { role: String },

    /// A threshold of 0, or above the number of keys the delegation lists.
    #[error(
        "{role}: threshold {threshold} with {keys} key(s) listed; a threshold is between 1 and \
         the number of keys: lower it (--threshold) or add keys"
    )]
    ThresholdTooHigh {
        role: String,
        threshold: u64,
        keys: usize,
    },
}

impl Error {
    /// Worth retrying as is (after a fresh update for a version conflict): the network, the
    /// server, or a concurrent writer. Everything else needs a human or a config change.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Timeout { .. } | Error::VersionConflict { .. } => {
                true
            }
            Error::Server { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    pub(crate) fn invalid(role: &str, reason: impl Into<String>) -> Self {
        Error::InvalidMetadata {
            role: role.to_string(),
            reason: reason.into(),
        }
    }
}
