//! From the notary client's verified repository to the engine's protocol-free view.

use super::model::{RepoView, RoleState, RoleView, SignerKey, TargetMeta};
use trustkeeper_notary::Repository;
use trustkeeper_notary::client::RoleHealth;

fn signers(repo: &Repository, role: &str) -> (Vec<SignerKey>, u32) {
    match repo.signers_of(role) {
        Ok(s) => (
            s.keys
                .iter()
                .map(|(id, k)| SignerKey {
                    id: id.clone(),
                    canonical_id: k.canonical_id().unwrap_or_else(|_| id.clone()),
                })
                .collect(),
            u32::try_from(s.threshold).unwrap_or(u32::MAX),
        ),
        Err(_) => (Vec::new(), u32::MAX),
    }
}

/// Every targets role in reading order, then the declared delegations that have no file yet.
pub fn repo_view(repo: &Repository) -> RepoView {
    let mut roles = Vec::new();
    for r in repo.roles() {
        let (signers, threshold) = signers(repo, &r.name);
        roles.push(RoleView {
            name: r.name.clone(),
            version: r.version,
            expires: Some(r.expires),
            state: match r.health {
                RoleHealth::Valid => RoleState::Valid,
                RoleHealth::Expired => RoleState::Expired,
                RoleHealth::BadSignatures(_) => RoleState::Unverified,
                RoleHealth::HiddenByAncestor(_) => RoleState::Hidden,
            },
            targets: r
                .targets
                .iter()
                .filter_map(|(name, meta)| {
                    let sha = meta.sha256()?;
                    Some((
                        name.clone(),
                        TargetMeta {
                            sha256: hex::encode(sha),
                            length: meta.length,
                        },
                    ))
                })
                .collect(),
            paths: r.paths.clone(),
            signers,
            threshold,
        });
    }
    for name in repo.declared_without_file() {
        let paths = repo
            .declaration(name)
            .map(|(_, p)| p.to_vec())
            .unwrap_or_default();
        let (signers, threshold) = signers(repo, name);
        roles.push(RoleView {
            name: name.to_string(),
            version: 0,
            expires: None,
            state: RoleState::Missing,
            targets: Default::default(),
            paths,
            signers,
            threshold,
        });
    }
    RepoView { roles }
}
