//! `SignedImage.status.plannedChanges`: what a dry run (`spec.dryRun`) would publish. Bounded:
//! a repository with thousands of tags to sign cannot push the status past what etcd stores
//! (1.5 MiB per object by default); what is left out is counted.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::meta::Time;

/// The most entries (roles, tags to add, tags to remove) listed in a plan.
pub const MAX_PLANNED_ENTRIES: usize = 256;
/// The most warnings listed in a plan.
pub const MAX_PLANNED_WARNINGS: usize = 16;
/// The longest role or tag name listed, in characters (longer ones are cut, ending in `…`).
pub const MAX_PLANNED_NAME: usize = 255;
/// The longest warning listed, in characters.
pub const MAX_PLANNED_WARNING: usize = 1024;

/// The plan of a dry run: present exactly while Ready's reason is `DryRun`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChanges {
    /// The roles the run would re-sign and publish, with the tags it would add or remove (the
    /// first 256 entries, roles and tags together).
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub roles: Vec<PlannedRoleChange>,
    /// Roles the run would re-sign, listed or not.
    #[serde(default)]
    pub roles_to_resign: u64,
    /// Tags the run would sign (new or moved), listed or not.
    #[serde(default)]
    pub tags_to_sign: u64,
    /// Tags the run would remove (`spec.pruneVanishedTags`), listed or not.
    #[serde(default)]
    pub tags_to_remove: u64,
    /// Signatures the registry formats (cosign, notation) would push, one per digest and
    /// format.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub signatures_to_make: u64,
    /// Entries (roles, tags, warnings) not listed past the bounds: `trustkeeper reconcile -f
    /// FILE --dry-run` prints the whole plan.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted: u64,
    /// What the run would warn about (roles near expiry that the key cannot re-sign, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 1024)))]
    pub warnings: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One role the run would re-sign.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedRoleChange {
    /// Role name, e.g. `targets/releases`.
    #[schemars(length(max = 255))]
    pub role: String,
    /// `sign` (tags added or removed) or `renew` (same content, new expiry).
    pub action: String,
    /// The version the server holds now (0: the role has no file yet).
    pub version: u64,
    /// The version the run would publish.
    pub new_version: u64,
    /// When the role held now expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Time>,
    /// How long the re-signed role is valid from its publish (`spec.validity`): its new expiry
    /// is the publish time plus this. A duration, not a time, so that an unchanged plan is not
    /// rewritten at every poll.
    pub valid_for: String,
    /// Tags the run would sign into the role, with the manifest each would name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub add: Vec<PlannedTag>,
    /// Tags the run would remove from the role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 255)))]
    pub remove: Vec<String>,
}

/// A tag the run would sign.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedTag {
    /// Tag name.
    #[schemars(length(max = 255))]
    pub tag: String,
    /// Manifest digest, `sha256:<hex>`.
    #[schemars(length(max = 71))]
    pub digest: String,
    /// Manifest size in bytes.
    pub size: u64,
}
