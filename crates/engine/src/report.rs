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

/// Where the roles to sign into were named: a SignedImage's `spec.roles`, or the command
/// line's `--role`. Messages name the one the user can change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Surface {
    #[default]
    Resource,
    Cli,
}

impl Surface {
    /// How to ask for `role`: `--role R` or `spec.roles: [R]`.
    fn ask(self, role: &str) -> String {
        match self {
            Surface::Cli => format!("`--role {role}`"),
            Surface::Resource => format!("spec.roles: [{role}]"),
        }
    }

    fn field(self) -> &'static str {
        match self {
            Surface::Cli => "--role",
            Surface::Resource => "spec.roles",
        }
    }
}

/// Who can change `role`'s delegations: the holder of its parent's key.
fn parent_key(role: &str) -> String {
    match role.rsplit_once('/') {
        Some(("targets", _)) | None => "the repository key".into(),
        Some((parent, _)) => format!("the key of {parent}"),
    }
}

/// The key that signs `role`, as a `--key` placeholder.
fn key_of(role: &str) -> String {
    if role == "targets" {
        "<repository key>".into()
    } else {
        format!("<{role} key>")
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

    /// What is wrong and how to fix it, in a resource's words (status and events).
    pub fn message(&self, gun: &str) -> String {
        self.message_for(gun, Surface::Resource)
    }

    /// `message`, naming the roles as `surface` takes them. Every command named is one the
    /// notary Go client accepts (delegations are `targets/NAME`; `targets` itself is no
    /// delegation and only the repository key signs it).
    pub fn message_for(&self, gun: &str, surface: Surface) -> String {
        match self {
            Problem::KeyNotDelegated {
                role,
                accepted,
                ours,
            } if role == "targets" => format!(
                "key {} is not a signer of targets: only the repository key signs it (root lists {}; \
                 `notary key list` shows it with role targets); sign with the repository key, or \
                 have its holder add this key as a signer: `notary delegation add {gun} \
                 targets/releases <cert.pem> --all-paths` and `notary publish {gun}`, then sign \
                 with {}",
                ids(ours),
                ids(accepted),
                surface.ask("targets/releases")
            ),
            Problem::KeyNotDelegated {
                role,
                accepted,
                ours,
            } => format!(
                "key {} is not a signer of {role} (it accepts {}); add it with {}: \
                 `notary delegation add {gun} {role} <cert.pem>` and `notary publish {gun}`, \
                 or use a key {role} lists",
                ids(ours),
                ids(accepted),
                parent_key(role)
            ),
            Problem::NoSigningRole {
                tag,
                delegations,
                ours,
                repository_key,
            } => {
                let listed = delegations
                    .iter()
                    .map(|(r, k)| format!("{r} ({})", ids(k)))
                    .collect::<Vec<_>>()
                    .join("; ");
                if *repository_key {
                    format!(
                        "no valid signing keys for delegation roles: key {} is the repository key \
                         of {gun} (it signs targets), and no direct delegation of targets that \
                         allows {tag} lists it (delegations: {listed}); sign into targets with {} \
                         (docker reads targets/releases first: a tag there wins), or sign with a \
                         key a delegation lists",
                        ids(ours),
                        surface.ask("targets")
                    )
                } else {
                    format!(
                        "no valid signing keys for delegation roles: no direct delegation of \
                         targets that allows {tag} lists key {} (delegations: {listed}); have the \
                         repository key holder add it as a signer (`notary delegation add {gun} \
                         targets/releases <cert.pem> --all-paths` and `notary publish {gun}`, what \
                         `docker trust signer add` does), or sign with a key a delegation lists",
                        ids(ours)
                    )
                }
            }
            Problem::ThresholdNotMet { role, threshold } => format!(
                "{role} needs {threshold} signatures but trustkeeper signs with one key; lower its \
                 threshold to 1 in its parent's delegation, or sign into another role"
            ),
            Problem::RoleNotDeclared { role } if !role.starts_with("targets/") => format!(
                "{role:?} is not a role name: roles are targets or targets/NAME (docker signs \
                 into targets/releases); fix {}, e.g. {}",
                surface.field(),
                surface.ask(&format!("targets/{}", role.trim_start_matches('/')))
            ),
            Problem::RoleNotDeclared { role } => format!(
                "{role} does not exist in {gun}: its parent does not declare it; create it with \
                 {}: `notary delegation add {gun} {role} <cert.pem> --all-paths` and `notary \
                 publish {gun}`, or fix {}",
                parent_key(role),
                surface.field()
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
                 remove the stale entry with the key of {role} (`trustkeeper remove {gun}:{tag} \
                 --role {role} --key <key of {role}>`, or `notary remove {gun} {tag} -r {role}` \
                 and `notary publish {gun}`; not trustkeeper revoke, which drops {tag} from every role \
                 that key signs) or sign into {role} too",
                short(sha256)
            ),
            Problem::RoleNotRead { tag, roles } => format!(
                "{tag} would be signed only into {}, which `docker pull` does not read (it reads \
                 targets/releases, then targets); sign into targets/releases too ({})",
                if roles.is_empty() {
                    "no role".to_string()
                } else {
                    roles.join(", ")
                },
                surface.ask("targets/releases")
            ),
            Problem::AncestorUnreadable {
                role,
                ancestor,
                expired: true,
            } => format!(
                "{ancestor} has expired and our key cannot re-sign it, so readers skip {role} and \
                 nothing was published: the holder of {} must renew it \
                 (`trustkeeper witness {gun} --key {} --role {ancestor}`)",
                if ancestor == "targets" {
                    "the repository key".to_string()
                } else {
                    format!("the {ancestor} key")
                },
                key_of(ancestor)
            ),
            Problem::AncestorUnreadable { role, ancestor, .. } => format!(
                "{ancestor} is not validly signed by the keys its parent lists, and our key cannot \
                 re-sign it, so readers skip {role} and nothing was published: re-sign {ancestor} \
                 with a key its parent lists (`trustkeeper witness {gun} --key {} --role \
                 {ancestor}`)",
                key_of(ancestor)
            ),
        }
    }
}

impl Warning {
    pub fn message(&self) -> String {
        match self {
            Warning::ExpiringNotOurs { role, expires } => match expires {
                Some(e) if *e <= jiff::Timestamp::now() => {
                    format!(
                        "{role} expired at {e} and our key cannot re-sign it; its key holder must"
                    )
                }
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
    use super::examples::{every_problem, quoted};
    use super::*;

    #[test]
    fn messages_name_the_facts_and_the_fix() {
        let p = Problem::NoSigningRole {
            tag: "v2".into(),
            delegations: vec![("targets/releases".into(), vec!["a".repeat(64)])],
            ours: vec!["b".repeat(64)],
            repository_key: false,
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

    fn is_delegation(role: &str) -> bool {
        role.strip_prefix("targets/")
            .is_some_and(|r| !r.is_empty() && r.split('/').all(|p| !p.is_empty()))
    }

    fn is_role(role: &str) -> bool {
        role == "targets" || is_delegation(role)
    }

    /// The notary Go client's syntax for the commands messages name (checked against the real
    /// client by `cli_e2e::remedy_commands_are_accepted_by_the_notary_client`).
    fn check_notary(gun: &str, c: &[String]) -> Result<(), String> {
        let a: Vec<&str> = c.iter().map(String::as_str).collect();
        match a[1..] {
            ["key", "list"] => Ok(()),
            ["publish", g] if g == gun => Ok(()),
            ["delegation", "add", g, role, _cert, ref rest @ ..] if g == gun => {
                if !is_delegation(role) {
                    return Err(format!("notary rejects delegation role {role:?}"));
                }
                match rest {
                    [] | ["--all-paths"] => Ok(()),
                    _ => Err(format!("flags {rest:?}")),
                }
            }
            ["remove", g, _tag, "-r", role] if g == gun && is_role(role) => Ok(()),
            _ => Err("not a notary command".into()),
        }
    }

    #[test]
    fn every_remedy_names_commands_notary_and_trustkeeper_accept() {
        let gun = "example.com/app";
        for p in every_problem() {
            for surface in [Surface::Cli, Surface::Resource] {
                let m = p.message_for(gun, surface);
                let (other, this) = match surface {
                    Surface::Cli => ("spec.roles", "--role"),
                    Surface::Resource => ("--role", "spec.roles"),
                };
                // A `trustkeeper` command quoted for the resource may well take --role.
                let prose: String = m
                    .split('`')
                    .filter(|part| !part.starts_with("trustkeeper "))
                    .collect();
                assert!(!prose.contains(other), "{surface:?} says {other}: {m}");
                for c in quoted(&m) {
                    match c[0].as_str() {
                        "notary" => {
                            if let Err(e) = check_notary(gun, &c) {
                                panic!("{e}: {c:?} in {m}");
                            }
                        }
                        // Parsed by the CLI's own parser in the binary's tests
                        // (cli::tests::remedy_commands_parse).
                        "trustkeeper" => {}
                        "--role" => {
                            assert_eq!(surface, Surface::Cli, "{m}");
                            assert!(c.len() == 2 && is_role(&c[1]), "{c:?} in {m}");
                        }
                        // Named, not proposed.
                        "docker" => assert!(
                            c == ["docker", "pull"] || c == ["docker", "trust", "signer", "add"],
                            "{c:?}"
                        ),
                        _ => panic!("unknown command {c:?} in {m}"),
                    }
                }
                if m.contains("spec.roles: [") {
                    let r = m.split("spec.roles: [").nth(1).unwrap();
                    let r = &r[..r.find(']').unwrap()];
                    assert!(is_role(r), "{r} in {m}");
                }
                // The fix is named where the user can make it.
                let names_fix = m.contains(this)
                    || quoted(&m)
                        .iter()
                        .any(|c| c[0] == "notary" || c[0] == "trustkeeper");
                let no_command = matches!(
                    p,
                    Problem::ThresholdNotMet { .. } | Problem::PathNotAllowed { .. }
                );
                assert!(names_fix || no_command, "no fix in {m}");
            }
        }
        // The two that used to be rejected by notary.
        let m = every_problem()[0].message_for(gun, Surface::Cli);
        assert!(m.contains("`--role targets/releases`"), "{m}");
        let m = every_problem()[2].message_for(gun, Surface::Cli);
        assert!(
            !m.contains("delegation add example.com/app targets "),
            "{m}"
        );
        assert!(m.contains("only the repository key"), "{m}");
        let m = every_problem()[8].message_for(gun, Surface::Cli);
        assert!(
            m.contains("is the repository key") && m.contains("`--role targets`"),
            "{m}"
        );
        let m = every_problem()[8].message_for(gun, Surface::Resource);
        assert!(m.contains("spec.roles: [targets]"), "{m}");
    }

    #[test]
    fn an_expired_role_is_said_to_have_expired() {
        let w = |d: i64| Warning::ExpiringNotOurs {
            role: "targets/alice".into(),
            expires: Some(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * d)),
        };
        assert!(w(-1).message().contains("targets/alice expired at "));
        assert!(w(30).message().contains("targets/alice expires "));
    }
}

/// One of every problem and the commands a message quotes, for the tests here and for the
/// binary's, which parse the quoted `trustkeeper` commands with its real parser.
#[doc(hidden)]
pub mod examples {
    use super::super::plan::Problem;

    /// One of every problem, with the names that used to produce commands notary rejects.
    pub fn every_problem() -> Vec<Problem> {
        let k = |c: &str| vec![c.repeat(64)];
        vec![
            Problem::RoleNotDeclared {
                role: "releases".into(),
            },
            Problem::RoleNotDeclared {
                role: "targets/a/b".into(),
            },
            Problem::KeyNotDelegated {
                role: "targets".into(),
                accepted: k("a"),
                ours: k("b"),
            },
            Problem::KeyNotDelegated {
                role: "targets/releases".into(),
                accepted: k("a"),
                ours: k("b"),
            },
            Problem::KeyNotDelegated {
                role: "targets/a/b".into(),
                accepted: k("a"),
                ours: k("b"),
            },
            Problem::ThresholdNotMet {
                role: "targets/releases".into(),
                threshold: 2,
            },
            Problem::PathNotAllowed {
                tag: "v1".into(),
                role: "targets/releases".into(),
                paths: vec!["prod/".into()],
            },
            Problem::NoSigningRole {
                tag: "v1".into(),
                delegations: vec![("targets/releases".into(), k("a"))],
                ours: k("b"),
                repository_key: false,
            },
            Problem::NoSigningRole {
                tag: "v1".into(),
                delegations: vec![("targets/releases".into(), k("a"))],
                ours: k("b"),
                repository_key: true,
            },
            Problem::TagShadowed {
                tag: "v1".into(),
                role: "targets".into(),
                sha256: "c".repeat(64),
            },
            Problem::RoleNotRead {
                tag: "v1".into(),
                roles: vec!["targets/ci".into()],
            },
            Problem::AncestorUnreadable {
                role: "targets/releases".into(),
                ancestor: "targets".into(),
                expired: true,
            },
            Problem::AncestorUnreadable {
                role: "targets/a/b".into(),
                ancestor: "targets/a".into(),
                expired: false,
            },
        ]
    }

    /// The commands a message quotes (`...`).
    /// A `<placeholder>` (which may hold spaces) is one word.
    pub fn quoted(m: &str) -> Vec<Vec<String>> {
        m.split('`')
            .skip(1)
            .step_by(2)
            .map(|c| {
                let mut words: Vec<String> = Vec::new();
                let mut open = false;
                for w in c.split_whitespace() {
                    if open {
                        let last = words.last_mut().expect("opened");
                        last.push(' ');
                        last.push_str(w);
                    } else {
                        words.push(w.to_string());
                    }
                    open = (open || w.starts_with('<')) && !w.ends_with('>');
                }
                words
            })
            .collect()
    }
}
