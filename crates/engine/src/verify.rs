//! Stage 5, verify: the repository as served after a publish holds what the plan meant, and
//! docker resolves every selected tag to its digest. No I/O: the read-back is the caller's.

use std::collections::BTreeMap;

use crate::api::reasons;
use crate::failure::Failure;
use crate::model::{Manifest, RepoView};
use crate::plan::Plan;

/// Checks that the repository as served now holds what the plan meant to publish.
pub fn verify(
    planned: &RepoView,
    plan: &Plan,
    served: &RepoView,
    desired: &BTreeMap<String, Manifest>,
) -> Result<(), Failure> {
    let fail = |m: String| Err(Failure::new(reasons::VERIFY_FAILED, m));
    for (role, change) in &plan.changes {
        let Some(want) = planned.role(role) else {
            continue;
        };
        let Some(got) = served.role(role) else {
            return fail(format!("{role} is missing after the publish"));
        };
        if got.version < want.version {
            return fail(format!(
                "{role} is at version {} after publishing version {}",
                got.version, want.version
            ));
        }
        if got.version == want.version && got.expires != Some(change.expires) {
            return fail(format!(
                "{role} does not carry the new expiry after the publish"
            ));
        }
        for (tag, t) in &change.set {
            if got.targets.get(tag) != Some(t) {
                return fail(format!(
                    "{role} does not hold {tag} = sha256:{} after the publish",
                    t.sha256
                ));
            }
        }
        if let Some(tag) = change.remove.iter().find(|t| got.targets.contains_key(*t)) {
            return fail(format!("{role} still holds {tag} after the publish"));
        }
        // Nothing we did not mean to drop went missing.
        if let Some(lost) = want
            .targets
            .keys()
            .find(|t| !got.targets.contains_key(*t) && !change.remove.contains(*t))
        {
            return fail(format!("{role} lost {lost} in the publish"));
        }
    }
    for (tag, m) in desired {
        match served.docker_winner(tag) {
            Some((_, t)) if t.sha256 == m.sha256 => {}
            Some((r, t)) => {
                return fail(format!(
                    "docker resolves {tag} to sha256:{} from {}",
                    t.sha256, r.name
                ));
            }
            None => {
                return fail(format!(
                    "docker finds no trust data for {tag} after the publish"
                ));
            }
        }
    }
    Ok(())
}
