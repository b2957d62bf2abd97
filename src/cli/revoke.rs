//! Dropping signatures: `remove IMAGE:TAG` (`notary remove` + `publish`) and `revoke
//! IMAGE[:TAG]` (`docker trust revoke`), one publish each, from the roles the key signs.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;

use clap::Args;

use super::Global;
use super::admin::{self, Published, Session};
use super::common::{self, CliError};
use crate::notary::SigningKey;
use crate::registry::ImageRef;

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// The repository, or IMAGE:TAG for one tag.
    #[arg(value_name = "IMAGE[:TAG]")]
    pub image: String,
    /// The key whose signatures go: a PEM written by `notary key export`, or `-` for standard
    /// input [default: the PEM text in TRUSTKEEPER_KEY]; its passphrase as for `sign`.
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// Do not ask for confirmation (docker's -y).
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// The private keys of `--key` (or TRUSTKEEPER_KEY) for removing tags: no root key.
/// Without one, the trust directory's key that `roles` (any role when empty) accept.
pub(super) async fn role_keys(
    g: &Global,
    gun: &str,
    key: Option<&std::path::Path>,
    roles: &[String],
) -> Result<Vec<SigningKey>, CliError> {
    let found = super::key_lookup::key_path(g, gun, key, roles).await?;
    let creds = common::signing_credentials(g, found.as_deref().or(key))?;
    if SigningKey::pem_holds_only_root_keys(&creds.signing_key_pem) {
        return Err(CliError::new(
            "that is a root key: a tag is removed with the key of the role that holds it",
        ));
    }
    SigningKey::from_pem(&creds.signing_key_pem, creds.passphrase.as_ref()).map_err(admin::err)
}

/// What was dropped: role → tags.
pub(super) type Dropped = Vec<(String, Vec<String>)>;

/// Drops `tag` (or, without one, every tag) from `roles` (or, when empty, from every role
/// holding it that `keys` sign), in one publish.
pub(super) async fn drop_signatures(
    g: &Global,
    gun: &str,
    keys: &[SigningKey],
    tag: Option<&str>,
    roles: &[String],
) -> Result<(Published, Dropped), CliError> {
    let ids: Vec<String> = keys.iter().map(|k| k.key_id().to_string()).collect();
    let mut s = Session::new(g, gun)?;
    let chosen = Mutex::new(Dropped::new());
    let p = s
        .publish(keys, |repo, ed| {
            let signs = |role: &str| {
                repo.signers_of(role)
                    .is_ok_and(|s| s.canonical_ids().iter().any(|c| ids.contains(c)))
            };
            let mut dropped = Dropped::new();
            match tag {
                Some(tag) => {
                    let holding: Vec<&str> =
                        repo.all_entries(tag).into_iter().map(|f| f.role).collect();
                    let roles: Vec<String> = if roles.is_empty() {
                        holding
                            .iter()
                            .filter(|role| signs(role))
                            .map(|r| r.to_string())
                            .collect()
                    } else {
                        roles.to_vec()
                    };
                    if holding.is_empty() {
                        return Err(CliError::new(format!(
                            "no role of {} holds {tag}: nothing to remove",
                            repo.gun
                        )));
                    }
                    if roles.is_empty() {
                        return Err(CliError::new(format!(
                            "{tag} is in {holding:?}, none of which the key {ids:?} signs: give \
                             the key of the role (--key) and --role"
                        )));
                    }
                    for role in &roles {
                        if !holding.contains(&role.as_str()) {
                            return Err(CliError::new(format!(
                                "{role} does not hold {tag} (it is in {holding:?}): nothing to \
                                 remove there"
                            )));
                        }
                        ed.remove_target(role, tag).map_err(admin::err)?;
                        dropped.push((role.clone(), vec![tag.to_string()]));
                    }
                }
                None => {
                    let signed: Vec<_> = repo.roles().iter().filter(|r| signs(&r.name)).collect();
                    if signed.is_empty() {
                        return Err(CliError::new(format!(
                            "the key {ids:?} signs no role of {} that holds tags: nothing to \
                             revoke (`trustkeeper delegation list {}` shows each role's keys)",
                            repo.gun, repo.gun
                        )));
                    }
                    for r in signed {
                        let tags: Vec<String> = r.targets.keys().cloned().collect();
                        for t in &tags {
                            ed.remove_target(&r.name, t).map_err(admin::err)?;
                        }
                        if !tags.is_empty() {
                            dropped.push((r.name.clone(), tags));
                        }
                    }
                    if dropped.is_empty() {
                        return Err(CliError::new(format!(
                            "the roles the key {ids:?} signs in {} hold no tags: nothing to revoke",
                            repo.gun
                        )));
                    }
                }
            }
            *chosen.lock().unwrap_or_else(|e| e.into_inner()) = dropped;
            Ok(())
        })
        .await?;
    Ok((p, chosen.into_inner().unwrap_or_else(|e| e.into_inner())))
}

/// docker's question before a revoke; off a terminal `--yes` is needed.
fn confirm(what: &str) -> Result<(), CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::new(format!(
            "revoke removes {what}: not on a terminal to confirm, pass --yes"
        ))
        .with_code(2));
    }
    eprint!("Remove {what}? [y/N] ");
    let mut line = String::new();
    use std::io::{BufRead as _, Read as _};
    std::io::stdin()
        .lock()
        .take(64)
        .read_line(&mut line)
        .map_err(|e| CliError::new(format!("cannot read the answer: {e}")))?;
    if matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(CliError::new("not confirmed: nothing was removed"))
    }
}

/// `revoke IMAGE[:TAG]`: the key's signatures of one tag, or of every tag, go.
pub async fn revoke(g: &Global, a: RevokeArgs) -> Result<(), CliError> {
    let r = ImageRef::parse(&a.image).map_err(|e| CliError::new(e.to_string()))?;
    if r.digest().is_some() {
        return Err(
            CliError::new(format!("{:?}: give IMAGE or IMAGE:TAG, no digest", a.image))
                .with_code(2),
        );
    }
    let tag = r.tag().map(str::to_string);
    let keys = role_keys(g, &r.gun(), a.key.as_deref(), &[]).await?;
    if !a.yes {
        let ids: Vec<&str> = keys.iter().map(|k| k.key_id()).collect();
        let what = match &tag {
            Some(t) => format!(
                "the signatures of {}:{t} made with key {}",
                r.gun(),
                ids.join(", ")
            ),
            None => format!(
                "every signature in {} made with key {}",
                r.gun(),
                ids.join(", ")
            ),
        };
        confirm(&what)?;
    }
    let (p, dropped) = drop_signatures(g, &r.gun(), &keys, tag.as_deref(), &[]).await?;
    let n: usize = dropped.iter().map(|(_, t)| t.len()).sum();
    let roles: Vec<&str> = dropped.iter().map(|(r, _)| r.as_str()).collect();
    let what = match &tag {
        Some(t) => format!("{t} revoked from {}", roles.join(", ")),
        None => format!("{n} signature(s) revoked from {}", roles.join(", ")),
    };
    admin::print_published(g, &p, &what);
    Ok(())
}
