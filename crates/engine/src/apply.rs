//! Stage 4, apply: the plan's changes staged and signed into files for one publish (no I/O), and
//! how many publishes a run may try while other writers win the race.

use jiff::Timestamp;

use crate::api::reasons;
use crate::failure::Failure;
use crate::plan::{ChangeKind, Plan};
use trustkeeper_notary::{Repository, Signer, TrustState};

/// Publishes tried per run when other writers keep winning the race and none is seen to make
/// progress; each publish of another writer seen between two attempts allows one more.
pub const MAX_PUBLISH_ATTEMPTS: u32 = 4;
/// Publishes tried per run at most, however many other writers are seen.
pub const MAX_PUBLISH_ATTEMPTS_CAP: u32 = 64;

/// Stages and signs the plan's changes.
pub fn sign_changes(
    repo: &Repository,
    plan: &Plan,
    keys: &[impl Signer],
    now: Timestamp,
) -> Result<Vec<trustkeeper_notary::SignedFile>, Failure> {
    let mut editor = repo.edit();
    for (role, change) in &plan.changes {
        for (tag, t) in &change.set {
            let mut sha = [0u8; 32];
            hex::decode_to_slice(&t.sha256, &mut sha).map_err(|_| {
                Failure::new(reasons::REGISTRY_REFUSED, format!("bad digest for {tag}"))
            })?;
            editor.add_target(role, tag, &sha, t.length)?;
        }
        for tag in &change.remove {
            editor.remove_target(role, tag)?;
        }
        match change.kind {
            ChangeKind::Renew => editor.witness(role, Some(change.expires))?,
            ChangeKind::Content => editor.set_expiry(role, change.expires)?,
        };
    }
    Ok(editor.sign(keys, now)?)
}

/// Publishes allowed in one run when other writers published `others` times since its first
/// fetch: a lost race to a writer that made progress is contention, not a fault.
pub(crate) fn publish_attempts_allowed(others: u64) -> u32 {
    MAX_PUBLISH_ATTEMPTS
        .saturating_add(u32::try_from(others).unwrap_or(u32::MAX))
        .min(MAX_PUBLISH_ATTEMPTS_CAP)
}

/// The snapshot's version: every publish, ours or another writer's, makes a new one.
pub(crate) fn snapshot_version(t: &TrustState) -> u64 {
    t.versions.get("snapshot").copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_attempts_scale_with_the_writers_seen() {
        assert_eq!(publish_attempts_allowed(0), MAX_PUBLISH_ATTEMPTS);
        assert_eq!(publish_attempts_allowed(7), MAX_PUBLISH_ATTEMPTS + 7);
        assert_eq!(publish_attempts_allowed(u64::MAX), MAX_PUBLISH_ATTEMPTS_CAP);
    }
}
