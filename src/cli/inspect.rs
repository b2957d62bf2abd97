//! `inspect`: what `docker trust inspect --pretty` showed, plus every role's expiry and when
//! trustkeeper would renew it.

use clap::Args;
use jiff::Timestamp;
use serde::Serialize;

use super::common::{self, CliError};
use super::trust_dir;
use super::{Global, Output};
use crate::api;
use crate::engine::model::{RoleState, docker_reads};
use crate::engine::run::{Settings, trust_anchor};
use crate::engine::view::repo_view;
use crate::registry::ImageRef;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The image repository, or IMAGE:TAG for one tag.
    pub image: String,
    /// Renewal lead used to show when each role would be renewed (a Go duration).
    #[arg(long, default_value = api::DEFAULT_RENEW_BEFORE)]
    pub renew_before: String,
}

#[derive(Serialize)]
struct TagRow {
    tag: String,
    digest: String,
    size: u64,
    /// The role docker takes the digest from.
    role: String,
    /// Other roles holding the same digest (signers).
    signers: Vec<String>,
    /// Roles that hold another digest for the tag (stale entries).
    disagreeing: Vec<String>,
}

#[derive(Serialize)]
struct SignerRow {
    name: String,
    key_ids: Vec<String>,
}

#[derive(Serialize)]
struct RoleRow {
    name: String,
    version: u64,
    expires: Option<Timestamp>,
    renew_at: Option<Timestamp>,
    state: String,
}

#[derive(Serialize)]
struct Inspection {
    gun: String,
    notary_url: String,
    tags: Vec<TagRow>,
    signers: Vec<SignerRow>,
    repository_key_ids: Vec<String>,
    root_key_ids: Vec<String>,
    roles: Vec<RoleRow>,
}

pub async fn inspect(g: &Global, a: InspectArgs) -> Result<(), CliError> {
    let r = ImageRef::parse(&a.image).map_err(|e| CliError::new(e.to_string()))?;
    let renew_before = api::parse_go_duration(&a.renew_before)
        .map_err(|e| CliError::new(e.to_string()))?
        .0;
    let spec = common::spec(g, &r.gun(), vec![], vec![]);
    let settings = Settings::from_spec(&spec)?;
    let creds = common::credentials(g, None)?;
    let engine = common::engine(g)?;
    let clients = engine.clients(&settings, &creds)?;
    let kept = trust_dir::load_trust(g, &settings.gun)?;
    let previous = kept.kept.as_ref().map(trust_dir::Kept::status);
    // Each request has its timeout; the deadline bounds them all (a repository with many
    // delegations answered slowly one by one).
    let anchor = trust_anchor(&spec, previous.as_ref());
    let update = clients
        .notary
        .update(&settings.gun, &anchor, Timestamp::now());
    let (repo, trust) = tokio::time::timeout(engine.deadline, update)
        .await
        .map_err(|_| {
            crate::engine::Failure::new(
                api::reasons::DEADLINE_EXCEEDED,
                format!(
                    "inspect did not finish within its deadline of {} (waiting for the trust \
                     server {}): retry when it answers in time, or raise the deadline \
                     (--deadline, TRUSTKEEPER_DEADLINE)",
                    api::human_duration(engine.deadline),
                    settings.notary_url
                ),
            )
        })?
        .map_err(|e| CliError::new(e.to_string()))?;
    trust_dir::save_trust(
        g,
        &settings.gun,
        &kept,
        &trust_dir::Kept::now((&trust).into()),
    )?;
    let view = repo_view(&repo);

    let mut names: Vec<&String> = view.roles.iter().flat_map(|r| r.targets.keys()).collect();
    names.sort();
    names.dedup();
    let tags = names
        .into_iter()
        .filter(|n| r.tag().is_none_or(|t| t == n.as_str()))
        .filter_map(|name| {
            let (winner, t) = view.docker_winner(name)?;
            if !docker_reads(&winner.name) {
                return None;
            }
            let holders = view
                .roles
                .iter()
                .filter_map(|x| x.targets.get(name).map(|m| (x, m)));
            let (same, other): (Vec<_>, Vec<_>) = holders.partition(|(_, m)| m.sha256 == t.sha256);
            Some(TagRow {
                tag: name.clone(),
                digest: format!("sha256:{}", t.sha256),
                size: t.length,
                role: winner.name.clone(),
                signers: same
                    .iter()
                    .filter(|(x, _)| x.name != winner.name)
                    .map(|(x, _)| x.name.trim_start_matches("targets/").to_string())
                    .collect(),
                disagreeing: other
                    .iter()
                    .map(|(x, m)| format!("{} (sha256:{})", x.name, &m.sha256[..12]))
                    .collect(),
            })
        })
        .collect();
    let signers = view
        .roles
        .iter()
        .filter(|x| x.is_delegation())
        .map(|x| SignerRow {
            name: x.name.trim_start_matches("targets/").to_string(),
            key_ids: x.signers.iter().map(|k| k.canonical_id.clone()).collect(),
        })
        .collect();
    let root_ids = |role: &str| {
        repo.root
            .roles
            .get(role)
            .map(|k| k.keyids.clone())
            .unwrap_or_default()
    };
    let mut roles: Vec<RoleRow> = vec![RoleRow {
        name: "root".into(),
        version: repo.root_info.version,
        expires: Some(repo.root_info.expires),
        renew_at: None,
        state: if repo.root_info.expired {
            "expired"
        } else {
            "valid"
        }
        .into(),
    }];
    roles.extend(view.roles.iter().map(|x| {
        RoleRow {
            name: x.name.clone(),
            version: x.version,
            expires: x.expires,
            renew_at: x.expires.map(|e| e - renew_before),
            state: match x.state {
                RoleState::Valid => "valid",
                RoleState::Expired => "expired",
                RoleState::Missing => "no file yet",
                RoleState::Unverified => "bad signatures",
                RoleState::Hidden => "hidden by an ancestor",
            }
            .into(),
        }
    }));
    for info in [&repo.snapshot_info, &repo.timestamp_info] {
        roles.push(RoleRow {
            name: info.name.clone(),
            version: info.version,
            expires: Some(info.expires),
            renew_at: None,
            state: if info.expired {
                "expired"
            } else {
                "valid (server-managed)"
            }
            .into(),
        });
    }
    let out = Inspection {
        gun: settings.gun.clone(),
        notary_url: settings.notary_url.clone(),
        tags,
        signers,
        repository_key_ids: root_ids("targets"),
        root_key_ids: root_ids("root"),
        roles,
    };
    if g.output == Output::Json {
        common::print_json(&out);
        return Ok(());
    }
    print_text(&out);
    Ok(())
}

fn secs(t: Option<Timestamp>) -> String {
    t.and_then(|t| Timestamp::from_second(t.as_second()).ok())
        .map(|t| t.to_string())
        .unwrap_or_else(|| "-".into())
}

fn print_text(i: &Inspection) {
    println!("Signatures for {} ({})\n", i.gun, i.notary_url);
    println!(
        "{:<24} {:<71} {:>8}  {:<18} SIGNERS",
        "SIGNED TAG", "DIGEST", "SIZE", "ROLE"
    );
    for t in &i.tags {
        let mut signers = t.signers.join(", ");
        if !t.disagreeing.is_empty() {
            signers.push_str(&format!("  [stale: {}]", t.disagreeing.join(", ")));
        }
        println!(
            "{:<24} {:<71} {:>8}  {:<18} {}",
            t.tag, t.digest, t.size, t.role, signers
        );
    }
    println!("\nList of signers and their keys:");
    for s in &i.signers {
        println!("  {:<22} {}", s.name, s.key_ids.join(", "));
    }
    println!("\nAdministrative keys:");
    println!("  Repository key: {}", i.repository_key_ids.join(", "));
    println!("  Root key:       {}", i.root_key_ids.join(", "));
    println!(
        "\n{:<24} {:>7}  {:<21} {:<21} STATE",
        "ROLE", "VERSION", "EXPIRES", "RENEW AT"
    );
    for r in &i.roles {
        println!(
            "{:<24} {:>7}  {:<21} {:<21} {}",
            r.name,
            r.version,
            secs(r.expires),
            secs(r.renew_at),
            r.state
        );
    }
}
