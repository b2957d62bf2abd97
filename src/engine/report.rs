//! Words for what the plan found: one status reason per problem class, and a message that says
//! what to do. No secrets: key IDs, role names, tags and digests only.

use super::plan::{Problem, Warning};
use crate::api::reasons;

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn ids(ids: &[String]) -> String {
    if ids.is_empty() {
        "none".into()
    } else {
        ids.iter().map(|i| short(i)).collect::<Vec<_>>().join(", ")
    }
}

impl Problem {
    /// The Ready condition's reason for this problem.
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::KeyNotDelegated { .. } | Problem::NoSigningRole { .. } => {
                reasons::KEY_NOT_DELEGATED
            }
            Problem::ThresholdNotMet { .. } => reasons::THRESHOLD_NOT_MET,
            Problem::RoleNotDeclared { .. } | Problem::PathNotAllowed { .. } => {
                reasons::ROLE_NOT_USABLE
            }
            Problem::TagShadowed { .. } => reasons::TAG_SHADOWED,
            Problem::RoleNotRead { .. } => reasons::ROLE_NOT_READ,
            Problem::AncestorUnreadable { expired: true, .. } => reasons::EXPIRING,
            Problem::AncestorUnreadable { .. } => reasons::ROLE_NOT_USABLE,
        }
    }

    /// What is wrong and how to fix it, for status, events and the CLI.
    pub fn message(&self, gun: &str) -> String {
        match self {
            Problem::KeyNotDelegated {
                role,
                accepted,
                ours,
            } => format!(
                "key {} is not a signer of {role} (it accepts {}); add it with the repository key: \
                 `notary delegation add {gun} {role} <our-key-cert.pem>` and `notary publish {gun}`, \
                 or use a key {role} lists",
                ids(ours),
                ids(accepted)
            ),
            Problem::NoSigningRole {
                tag,
                delegations,
                ours,
            } => {
                let listed = delegations
                    .iter()
                    .map(|(r, k)| format!("{r} ({})", ids(k)))
                    .collect::<Vec<_>>()
                    .join("; ");
                format!(
                    "no valid signing keys for delegation roles: no direct delegation of targets that \
                     allows {tag} lists key {} (delegations: {listed}); add the key as a signer \
                     (`notary delegation add {gun} targets/releases <cert.pem> --all-paths`, what \
                     `docker trust signer add` does), or sign with a key a delegation lists",
                    ids(ours)
                )
            }
            Problem::ThresholdNotMet { role, threshold } => format!(
                "{role} needs {threshold} signatures but trustkeeper signs with one key; lower its \
                 threshold to 1 in its parent's delegation, or sign into another role"
            ),
            Problem::RoleNotDeclared { role } => format!(
                "{role} does not exist in {gun}: its parent does not declare it; create it with \
                 `notary delegation add {gun} {role} <cert.pem> --all-paths`, or fix spec.roles"
            ),
            Problem::PathNotAllowed { tag, role, paths } => format!(
                "{tag} is outside the paths of {role} ({}); sign it into a role whose paths allow it",
                paths
                    .iter()
                    .map(|p| format!("{p:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Problem::TagShadowed { tag, role, sha256 } => format!(
                "{tag} would still resolve to sha256:{} from {role}, which docker reads first; \
                 remove the stale entry (`notary remove {gun} {tag} -r {role}` and publish) or \
                 sign into {role} too",
                short(sha256)
            ),
            Problem::RoleNotRead { tag, roles } => format!(
                "{tag} would be signed only into {}, which `docker pull` does not read (it reads \
                 targets/releases, then targets); add targets/releases to spec.roles",
                if roles.is_empty() {
                    "no role".to_string()
                } else {
                    roles.join(", ")
                }
            ),
            Problem::AncestorUnreadable {
                role,
                ancestor,
                expired: true,
            } => format!(
                "{ancestor} has expired and our key cannot re-sign it, so readers skip {role} and \
                 nothing was published: the holder of the {ancestor} key must renew it \
                 (`trustkeeper witness {gun} --key <{ancestor} key> --role {ancestor}`)"
            ),
            Problem::AncestorUnreadable { role, ancestor, .. } => format!(
                "{ancestor} is not validly signed by the keys its parent lists, and our key cannot \
                 re-sign it, so readers skip {role} and nothing was published: re-sign {ancestor} \
                 with a key its parent lists (`trustkeeper witness {gun} --key <that key> --role \
                 {ancestor}`)"
            ),
        }
    }
}

impl Warning {
    pub fn message(&self) -> String {
        match self {
            Warning::ExpiringNotOurs { role, expires } => match expires {
                Some(e) => {
                    format!("{role} expires {e} and our key cannot re-sign it; its key holder must")
                }
                None => format!("{role} cannot be read and our key cannot re-sign it"),
            },
            Warning::ListShadowed { tag, role, sha256 } => format!(
                "`notary list` shows {tag} as sha256:{} from {role} (read before the role we sign); \
                 docker resolves it right",
                short(sha256)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_facts_and_the_fix() {
        let p = Problem::NoSigningRole {
            tag: "v2".into(),
            delegations: vec![("targets/releases".into(), vec!["a".repeat(64)])],
            ours: vec!["b".repeat(64)],
        };
        let m = p.message("example.com/app");
        assert!(
            m.starts_with("no valid signing keys for delegation roles"),
            "{m}"
        );
        assert!(
            m.contains("aaaaaaaaaaaa") && m.contains("bbbbbbbbbbbb"),
            "{m}"
        );
        assert!(
            m.contains("notary delegation add example.com/app targets/releases"),
            "{m}"
        );
        assert_eq!(p.reason(), "KeyNotDelegated");
        let p = Problem::TagShadowed {
            tag: "v1".into(),
            role: "targets/releases".into(),
            sha256: "c".repeat(64),
        };
        assert!(
            p.message("g")
                .contains("notary remove g v1 -r targets/releases")
        );
        assert_eq!(p.reason(), "TagShadowed");
    }
}
