//! Keys found by ID in the docker/notary trust directory, as docker found them: when a command
//! is given no key (no `--key`, no TRUSTKEEPER_KEY), the repository says which key IDs its
//! roles accept, and the first of them the trust directory holds is used.

use std::path::{Path, PathBuf};

use super::Global;
use super::admin::{RELEASES, Session};
use super::common::CliError;
use super::key_transfer::{docker_trust_dir, find_key};

/// Whether a key was named: `--key`, or a non-empty TRUSTKEEPER_KEY.
fn key_named(key: Option<&Path>) -> bool {
    key.is_some() || std::env::var_os("TRUSTKEEPER_KEY").is_some_and(|v| !v.is_empty())
}

/// The key file to use when none is named: the first key of the trust directory whose ID one of
/// `roles` (or, when empty, targets/releases, the other delegations, then targets) accepts.
/// `None` when a key is named (the caller reads that one).
pub async fn key_path(
    g: &Global,
    gun: &str,
    key: Option<&Path>,
    roles: &[String],
) -> Result<Option<PathBuf>, CliError> {
    if key_named(key) {
        return Ok(None);
    }
    find_for_roles(g, gun, roles, "--key or TRUSTKEEPER_KEY")
        .await
        .map(Some)
}

/// The first key of the trust directory whose ID one of `roles` (or, when empty,
/// targets/releases, the other delegations, then targets) accepts; `flag` is the option that
/// would have named it.
pub async fn find_for_roles(
    g: &Global,
    gun: &str,
    roles: &[String],
    flag: &str,
) -> Result<PathBuf, CliError> {
    let dir = docker_trust_dir(g.docker_trust_dir.as_deref());
    let unread = |e: CliError| {
        CliError::new(format!(
            "no key given ({flag}), and the keys the repository accepts could not be read to \
             find one in {}: {e}",
            dir.display()
        ))
    };
    let mut s = Session::new(g, gun).map_err(unread)?;
    let repo = s.update().await.map_err(unread)?;
    let order: Vec<String> = if roles.is_empty() {
        let mut v = vec![RELEASES.to_string()];
        v.extend(
            repo.roles()
                .iter()
                .flat_map(|r| r.delegations.iter().map(|d| d.name.clone()))
                .chain(repo.declared_without_file().into_iter().map(str::to_string))
                .filter(|n| n != RELEASES),
        );
        v.push("targets".into());
        v
    } else {
        roles.to_vec()
    };
    let mut accepted = vec![];
    for role in &order {
        if let Ok(s) = repo.signers_of(role) {
            for id in s.canonical_ids().into_iter().chain(s.keys.keys().cloned()) {
                if !accepted.contains(&id) {
                    accepted.push(id);
                }
            }
        }
    }
    match find_key(&dir, &accepted)? {
        Some((path, id)) => {
            eprintln!(
                "using key {id} ({}), found by ID in the trust directory {}",
                path.display(),
                dir.display()
            );
            Ok(path)
        }
        None => Err(CliError::new(format!(
            "no key given ({flag}) and {} holds none of the keys {} accept {accepted:?}: give \
             {flag}, or import the key (`trustkeeper key import FILE`), or name the trust \
             directory (--docker-trust-dir)",
            dir.join("private").display(),
            order.join(", ")
        ))),
    }
}
