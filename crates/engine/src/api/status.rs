//! `SignedImage.status`: what is signed, when each role expires and will be renewed, the trust
//! anchor, and the conditions. Computed by the engine, written by the controller.

use std::collections::BTreeMap;

use super::conditions::READY;
use super::meta::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a SignedImage.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedImageStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` is True when every selected tag is signed with its current digest, every role the
    /// key can sign is valid past now + renewBefore, and the last publish was read back and
    /// verified. Its reason says what is wrong otherwise.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Selected tags and the digest docker resolves for each through content trust.
    #[serde(default)]
    pub signed_tags: Vec<SignedTag>,
    /// Signed over selected tags, e.g. `3/4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_summary: Option<String>,
    /// Every targets role of the repository with its version, expiry and renewal time.
    #[serde(default)]
    pub roles: Vec<RoleStatus>,
    /// The earliest expiry among the roles this SignedImage keeps renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest_expiry: Option<Time>,
    /// After a failure, when the next attempt runs (exponential backoff). Absent while the
    /// SignedImage is Ready: the registry is then polled every `spec.interval` and each role
    /// is re-signed at its `renewalTime`, so a check that finds nothing new writes no status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_sync_time: Option<Time>,
    /// When trustkeeper last published to the notary server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_publish_time: Option<Time>,
    /// Consecutive failed reconciles; reset by a success or a spec change.
    #[serde(default)]
    pub failed_attempts: u32,
    /// When the last failure happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<Time>,
    /// The trust anchor and the last versions seen, kept here so that trust on first use and
    /// rollback protection survive restarts and replicas without local disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustStatus>,
    /// The value of the `trustkeeper.dev/renew-requested-at` annotation the last reconcile
    /// handled: a script that set it waits until this equals what it set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_renew_request: Option<String>,
    /// While `spec.dryRun` is true: what the next run would publish. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_changes: Option<super::planned::PlannedChanges>,
    /// Per selected tag, its signatures in the registry formats (`cosign`, `notation`) of
    /// `spec.formats`: digest, signer and until when. At most 1024 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub signatures: Vec<FormatSignature>,
}

/// One tag's signature in one registry format.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FormatSignature {
    /// Tag name.
    pub tag: String,
    /// Signed manifest digest, `sha256:<hex>`.
    pub digest: String,
    /// `cosign` or `notation`.
    pub format: super::spec::SignatureFormat,
    /// Who signed: the key ID (cosign) or the signing certificate's SHA-256 thumbprint
    /// (notation).
    pub signer: String,
    /// When the signature stops verifying: the signing certificate's notAfter (notation);
    /// absent for cosign, whose key-based signatures do not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<super::meta::Time>,
    /// The digest of the signature manifest (notation), verified when it was made or first
    /// found: a later run that finds it listed needs not read it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl SignedImageStatus {
    /// The Ready condition, if any: the one lookup of it.
    pub fn ready(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == READY)
    }
}

/// A selected tag as content trust resolves it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedTag {
    /// Tag name.
    pub tag: String,
    /// Signed manifest digest, `sha256:<hex>`.
    pub digest: String,
    /// Signed manifest size in bytes.
    pub size: u64,
    /// Manifest media type as the registry serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The role whose entry docker uses for this tag.
    pub role: String,
}

/// One targets role (`targets` or a delegation).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleStatus {
    /// Role name, e.g. `targets/releases`.
    pub name: String,
    /// Metadata version.
    pub version: u64,
    /// When the role's metadata expires.
    pub expires: Time,
    /// When trustkeeper re-signs it (expires - renewBefore); absent for roles our key cannot sign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<Time>,
    /// Number of targets in the role.
    pub targets: u64,
}

/// Trust anchor and rollback state (no secret material: key IDs and versions only).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustStatus {
    /// Key IDs of the trusted root (pinned in the spec, or seen first).
    #[serde(default, rename = "rootKeyIDs")]
    pub root_key_ids: Vec<String>,
    /// Version of the trusted root.
    pub root_version: u64,
    /// Last version seen of every other role, for rollback protection.
    #[serde(default)]
    pub versions: BTreeMap<String, u64>,
}
