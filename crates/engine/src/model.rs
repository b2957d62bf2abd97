//! The engine's view of a repository and of the registry: plain data, filled from the notary and
//! registry clients by `resolve`, read by the pure `plan`. Keeping it apart from the protocol types
//! lets the plan be tested as a table, and keeps protocol details out of the decisions.

use std::collections::BTreeMap;

use jiff::Timestamp;

/// A signed target: what a role holds for one tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetMeta {
    /// Lower-case hex sha256 of the manifest bytes.
    pub sha256: String,
    /// Length of the manifest bytes.
    pub length: u64,
}

/// What the registry serves for a tag now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Lower-case hex sha256 (the digest without `sha256:`).
    pub sha256: String,
    pub size: u64,
    /// `None` when the caller gave the digest and size without asking the registry.
    pub media_type: Option<String>,
}

impl Manifest {
    pub fn target(&self) -> TargetMeta {
        TargetMeta {
            sha256: self.sha256.clone(),
            length: self.size,
        }
    }
}

/// A key a parent role lists for a child (or root lists for `targets`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignerKey {
    /// The key ID as the parent lists it (a certificate's ID for x509 keys).
    pub id: String,
    /// The ID of the public key inside (equal to `id` for plain keys); a private key is
    /// matched by this one.
    pub canonical_id: String,
}

/// Whether a role's metadata is usable as served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleState {
    /// Verified and unexpired.
    Valid,
    /// Verified but expired: readers skip it (or fail, for `targets`) until it is re-signed.
    Expired,
    /// Declared by its parent but has no file yet (nothing was ever signed into it).
    Missing,
    /// Its signatures do not meet the threshold of the keys its parent lists now (a removed
    /// signer): readers skip it until a listed key re-signs it.
    Unverified,
    /// Fine itself, but an ancestor is expired or unverified, so readers skip it.
    Hidden,
}

/// One targets role (`targets` or a delegation) as the engine sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleView {
    pub name: String,
    /// Version of the stored file (0 when it has none).
    pub version: u64,
    /// Expiry of the stored file (`None` when it has none).
    pub expires: Option<Timestamp>,
    pub state: RoleState,
    pub targets: BTreeMap<String, TargetMeta>,
    /// Effective path prefixes (`[""]` = every name).
    pub paths: Vec<String>,
    /// Keys that may sign this role, and how many signatures it needs.
    pub signers: Vec<SignerKey>,
    pub threshold: u32,
}

impl RoleView {
    pub fn is_delegation(&self) -> bool {
        self.name != "targets"
    }

    /// Parent role name (`None` for `targets`).
    pub fn parent(&self) -> Option<&str> {
        self.name.rsplit_once('/').map(|(p, _)| p)
    }

    pub fn allows(&self, name: &str) -> bool {
        self.paths.iter().any(|p| name.starts_with(p.as_str()))
    }

    /// Whether `key_id` (a private key's canonical ID) is one of this role's signers.
    pub fn lists_key(&self, key_id: &str) -> bool {
        self.signers
            .iter()
            .any(|k| k.canonical_id == key_id || k.id == key_id)
    }
}

/// The whole repository: every targets role in notary's reading order (breadth first from
/// `targets`, children in their parent's `delegations.roles` order).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RepoView {
    pub roles: Vec<RoleView>,
}

impl RepoView {
    pub fn role(&self, name: &str) -> Option<&RoleView> {
        self.roles.iter().find(|r| r.name == name)
    }

    pub fn has_delegations(&self) -> bool {
        self.roles.iter().any(RoleView::is_delegation)
    }

    /// Resolves `tag` the way `notary list` does: the first readable role that defines it wins.
    pub fn notary_winner(&self, tag: &str) -> Option<(&RoleView, &TargetMeta)> {
        self.roles
            .iter()
            .filter(|r| readable(r) && r.allows(tag))
            .find_map(|r| r.targets.get(tag).map(|t| (r, t)))
    }

    /// Resolves `tag` the way `docker pull` with content trust does: the `targets/releases`
    /// subtree first, then the rest of the tree. The answer only counts when it comes from
    /// `targets/releases` or `targets`; otherwise docker reports "No trust data".
    pub fn docker_winner(&self, tag: &str) -> Option<(&RoleView, &TargetMeta)> {
        let in_releases =
            |r: &&RoleView| r.name == RELEASES || r.name.starts_with("targets/releases/");
        self.roles
            .iter()
            .filter(in_releases)
            .chain(self.roles.iter().filter(|r| !in_releases(r)))
            .filter(|r| readable(r) && r.allows(tag))
            .find_map(|r| r.targets.get(tag).map(|t| (r, t)))
    }
}

/// The delegation docker signs into and reads first.
pub const RELEASES: &str = "targets/releases";

/// Whether `docker pull` accepts an answer from this role.
pub fn docker_reads(role: &str) -> bool {
    role == "targets" || role == RELEASES
}

fn readable(r: &RoleView) -> bool {
    r.state == RoleState::Valid
}
