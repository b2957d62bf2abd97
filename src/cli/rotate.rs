//! `signer rotate NAME IMAGE --new-key NEW.key --repo-key FILE`: a signer's key replaced
//! without downtime, which neither notary nor docker offers. One publish changes the
//! declarations in `targets` (the new key instead of the old in `targets/NAME` and
//! `targets/releases`) and re-signs both roles with the new key, so a reader sees either the
//! old state or the new one, each valid. The old key is not needed: it may be lost or leaked.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

use clap::Args;
use secrecy::SecretString;
use serde::Serialize;
use zeroize::Zeroizing;

use super::admin::{self, Published, RELEASES, RepoKeyArgs, Session};
use super::common::{self, CliError};
use super::{Global, Output};
use crate::notary::SigningKey;

#[derive(Args, Debug)]
pub struct RotateArgs {
    /// The signer's name (role targets/NAME).
    pub name: String,
    /// The image repository.
    pub image: String,
    /// The signer's new private key (what `key generate` writes; its passphrase from
    /// --passphrase-file, TRUSTKEEPER_PASSPHRASE, TRUSTKEEPER_KEY_PASSPHRASE or a prompt).
    #[arg(long, value_name = "NEW.key")]
    pub new_key: PathBuf,
    #[command(flatten)]
    pub repo_key: RepoKeyArgs,
}

#[derive(Serialize)]
struct Rotated<'a> {
    #[serde(flatten)]
    published: &'a Published,
    signer: String,
    /// The signer's key IDs before (TUF IDs, as `notary delegation list` shows them).
    old_key_ids: Vec<String>,
    new_key_id: String,
    /// The roles re-signed with the new key.
    resigned: Vec<String>,
}

#[derive(Default)]
struct Plan {
    old: Vec<String>,
    resigned: Vec<String>,
}

/// The new key's passphrase: as `sign`'s (`--passphrase-file`, TRUSTKEEPER_PASSPHRASE), else
/// the TRUSTKEEPER_KEY_PASSPHRASE `key generate` wrote it with, else a prompt.
fn new_key_passphrase(g: &Global, label: &str) -> Result<Option<SecretString>, CliError> {
    if g.passphrase_file.is_none()
        && std::env::var_os("TRUSTKEEPER_PASSPHRASE").is_none()
        && let Some(v) = std::env::var_os("TRUSTKEEPER_KEY_PASSPHRASE")
    {
        let v = Zeroizing::new(v.into_encoded_bytes());
        let t = std::str::from_utf8(&v)
            .map_err(|_| CliError::new("TRUSTKEEPER_KEY_PASSPHRASE is not UTF-8"))?;
        return Ok(Some(SecretString::from(
            t.trim_end_matches(['\r', '\n']).to_string(),
        )));
    }
    common::passphrase(g, label)
}

fn load_new_key(g: &Global, path: &std::path::Path) -> Result<SigningKey, CliError> {
    let input = common::key_input(Some(path))?;
    if SigningKey::pem_holds_only_root_keys(&input.pem) {
        return Err(CliError::new(format!(
            "{} is a root key: give the signer's new key (`trustkeeper key generate NAME`)",
            input.label
        )));
    }
    let encrypted = input.pem.windows(9).any(|w| w == b"ENCRYPTED");
    let pass = if encrypted {
        new_key_passphrase(g, &input.label)?
    } else {
        None
    };
    if encrypted && pass.is_none() {
        return Err(CliError::new(format!(
            "{} is encrypted: give its passphrase in TRUSTKEEPER_PASSPHRASE (or \
             TRUSTKEEPER_KEY_PASSPHRASE) or --passphrase-file",
            input.label
        )));
    }
    let mut keys = SigningKey::from_pem(&input.pem, pass.as_ref()).map_err(admin::err)?;
    if keys.len() != 1 {
        return Err(CliError::new(format!(
            "{} holds {} private keys: give a file with the one new key",
            input.label,
            keys.len()
        )));
    }
    Ok(keys.remove(0))
}

pub async fn rotate(g: &Global, a: RotateArgs) -> Result<(), CliError> {
    let role = admin::signer_role(&a.name)?;
    let gun = admin::gun_of(&a.image)?;
    let new = load_new_key(g, &a.new_key)?;
    let new_pub = new.public().clone();
    let new_id = new.key_id().to_string();
    let mut keys = admin::load_repo_key_for(g, &gun, "targets", &a.repo_key).await?;
    keys.push(new);
    let mut s = Session::new(g, &gun)?;
    let plan = Mutex::new(Plan::default());
    let name = a.name.as_str();
    let p = s
        .publish(&keys, |repo, ed| {
            let Some((d, _)) = repo.declaration(&role) else {
                return Err(CliError::new(format!(
                    "no signer {name} in {}: `trustkeeper delegation list {}` shows the \
                     signers (`signer add` adds one)",
                    repo.gun, repo.gun
                )));
            };
            let old: Vec<String> = d.keys.keys().cloned().collect();
            let old_canonical: Vec<String> = d
                .keys
                .values()
                .filter_map(|k| k.canonical_id().ok())
                .collect();
            if old_canonical.contains(&new_id) || old.contains(&new_pub.key_id()) {
                return Err(CliError::new(format!(
                    "the new key {new_id} is already signer {name}'s key: give a new one \
                     (`trustkeeper key generate {name}`)"
                )));
            }
            let pubs = std::slice::from_ref(&new_pub);
            ed.add_delegation(&role, pubs, &[], None)
                .map_err(admin::err)?;
            ed.remove_delegation_keys(&role, &old).map_err(admin::err)?;
            let mut resigned = vec![];
            if repo.role(&role).is_some() {
                ed.witness(&role, None).map_err(admin::err)?;
                resigned.push(role.clone());
            }
            if let Some((rel, _)) = repo.declaration(RELEASES) {
                // An old key another signer also holds stays in releases (that signer's).
                let others: BTreeSet<&String> = repo
                    .role("targets")
                    .map(|t| {
                        t.delegations
                            .iter()
                            .filter(|o| o.name != role && o.name != RELEASES)
                            .flat_map(|o| o.keys.keys())
                            .collect()
                    })
                    .unwrap_or_default();
                let gone: Vec<String> = rel
                    .keys
                    .keys()
                    .filter(|k| old.contains(k) && !others.contains(k))
                    .cloned()
                    .collect();
                if !gone.is_empty() {
                    ed.add_delegation(RELEASES, pubs, &[], None)
                        .map_err(admin::err)?;
                    ed.remove_delegation_keys(RELEASES, &gone)
                        .map_err(admin::err)?;
                    if repo.role(RELEASES).is_some() {
                        ed.witness(RELEASES, None).map_err(admin::err)?;
                        resigned.push(RELEASES.to_string());
                    }
                }
            }
            *plan.lock().unwrap_or_else(|e| e.into_inner()) = Plan { old, resigned };
            Ok(())
        })
        .await
        .map_err(|e| explain(e, name))?;
    let plan = plan.into_inner().unwrap_or_else(|e| e.into_inner());
    if g.output == Output::Json {
        common::print_json(&Rotated {
            published: &p,
            signer: a.name.clone(),
            old_key_ids: plan.old,
            new_key_id: new_pub.key_id(),
            resigned: plan.resigned,
        });
        return Ok(());
    }
    admin::print_published(
        g,
        &p,
        &format!(
            "signer {name}'s key {} replaced by {} ({} re-signed with it)",
            plan.old.join(", "),
            new_pub.key_id(),
            if plan.resigned.is_empty() {
                "no role file yet".to_string()
            } else {
                plan.resigned.join(" and ")
            }
        ),
    );
    Ok(())
}

/// A signing refusal said in the rotation's terms: releases' threshold needs other signers'
/// keys, which a rotation does not hold.
fn explain(e: CliError, name: &str) -> CliError {
    if e.message.contains(RELEASES) && e.message.contains("threshold") {
        return CliError::new(format!(
            "{}; {RELEASES} needs more signatures than signer {name}'s new key gives: lower \
             its threshold first (`trustkeeper delegation add IMAGE {RELEASES} --threshold 1`)",
            e.message
        ));
    }
    e
}
