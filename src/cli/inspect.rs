//! `inspect`: what `docker trust inspect --pretty` showed, plus every role's expiry and when
//! trustkeeper would renew it.

use base64::Engine as _;
use clap::Args;
use jiff::Timestamp;
use serde::Serialize;

use super::common::{self, CliError};
use super::trust_dir;
use super::{Global, Output};
use crate::api;
use crate::engine::model::{RepoView, RoleState, RoleView, docker_reads};
use crate::engine::settings::{Settings, trust_anchor};
use crate::engine::view::repo_view;
use crate::notary::Repository;
use crate::registry::ImageRef;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The image repository, or IMAGE:TAG for one tag.
    pub image: String,
    /// Renewal lead used to show when each role would be renewed (a Go duration).
    #[arg(long, default_value = api::DEFAULT_RENEW_BEFORE)]
    pub renew_before: String,
    /// For CI and cron: after the report, exit 1 when a role has expired (or the repository is
    /// unreadable), 3 when none has but one expires within 6 months (where the notary client
    /// starts warning), 0 when every role is fine; the roles and their expiry go to stderr.
    #[arg(long)]
    pub check: bool,
    /// Which signatures to show (repeatable or comma-separated): `notary` (the trust
    /// metadata), `cosign` (the signatures on the tag's `sha256-<hex>.sig` tag) or `notation`
    /// (the Notation signatures among the tag's referrers). cosign or notation alone need
    /// IMAGE:TAG; with notary, every tag notary lists gets them, per tag.
    #[arg(long = "format", value_name = "FORMAT", default_value = "notary", value_delimiter = ',', value_parser = crate::formats::Format::parse)]
    pub format: Vec<crate::formats::Format>,
    /// With --format cosign: a public key (PEM, as `cosign verify --key` takes; repeatable) to
    /// tell which signatures verify.
    #[arg(long = "key", value_name = "PUB")]
    pub keys: Vec<std::path::PathBuf>,
}

#[derive(Serialize)]
pub(super) struct TagRow {
    pub(super) tag: String,
    pub(super) digest: String,
    size: u64,
    /// The role docker takes the digest from.
    role: String,
    /// The delegations holding the same digest, named as `docker trust inspect` names them
    /// (`targets/` cut; `targets` and `targets/releases` are not signers but "Repo Admin").
    signers: Vec<String>,
    /// Roles that hold another digest for the tag (stale entries).
    disagreeing: Vec<String>,
    /// Why docker would not use this tag (absent when it does).
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
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
pub(super) struct Inspection {
    gun: String,
    notary_url: String,
    pub(super) tags: Vec<TagRow>,
    signers: Vec<SignerRow>,
    repository_key_ids: Vec<String>,
    root_key_ids: Vec<String>,
    roles: Vec<RoleRow>,
}

pub async fn inspect(g: &Global, a: InspectArgs) -> Result<(), CliError> {
    use crate::formats::Format;
    let r = ImageRef::parse(&a.image).map_err(|e| CliError::new(e.to_string()))?;
    let mut formats = a.format.clone();
    formats.sort_by_key(|f| Format::ALL.iter().position(|x| x == f));
    formats.dedup();
    if !a.keys.is_empty() && !formats.contains(&Format::Cosign) {
        return Err(CliError::new("--key is for --format cosign"));
    }
    match formats.as_slice() {
        [Format::Cosign] => return super::inspect_cosign::inspect(g, &r, &a.keys).await,
        [Format::Notation] => return super::inspect_notation::inspect(g, &r).await,
        [Format::Notary] => {}
        _ => return super::inspect_formats::inspect(g, &a, &r, &formats).await,
    }
    let (out, readable) = notary(g, &a, &r).await?;
    if g.output == Output::Json {
        common::print_json(&out);
    } else {
        print_text(&out);
    }
    finish(&a, &out, readable)
}

/// `--check`'s verdict, or whether the repository is readable.
pub(super) fn finish(
    a: &InspectArgs,
    out: &Inspection,
    readable: Result<(), CliError>,
) -> Result<(), CliError> {
    if !a.check {
        return readable;
    }
    check(&out.gun, &out.roles, readable)
}

/// The notary inspection of `r`'s repository, and whether readers can use it.
pub(super) async fn notary(
    g: &Global,
    a: &InspectArgs,
    r: &ImageRef,
) -> Result<(Inspection, Result<(), CliError>), CliError> {
    let renew_before = api::parse_go_duration(&a.renew_before)
        .map_err(|e| CliError::new(e.to_string()))?
        .0;
    let spec = common::spec(g, &r.gun(), vec![], vec![]);
    let settings = Settings::from_spec(&spec)?;
    settings.notary_in_service(Timestamp::now())?;
    let creds = common::credentials(g, None)?;
    let engine = common::engine(g)?;
    let clients = engine.clients(&settings, &creds)?;
    let kept = trust_dir::load_trust(g, &settings.gun)?;
    kept.seed(engine.cache.memo());
    let previous = kept.kept.as_ref().map(trust_dir::Kept::status);
    // Each request has its timeout; the deadline bounds them all (a repository with many
    // delegations answered slowly one by one).
    let anchor = trust_anchor(&spec, previous.as_ref());
    let update = crate::notary::client::update_with_memo(
        &clients.notary,
        &settings.gun,
        &anchor,
        Timestamp::now(),
        engine.cache.memo(),
    );
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
        &trust_dir::Kept::now((&trust).into(), engine.cache.memo()),
    )?;
    trust_dir::announce_first_use(g, &settings.gun, &kept, &(&trust).into());
    let view = repo_view(&repo);
    let now = Timestamp::now();
    let soon = nearing_expiry(now);
    let tags = tag_rows(&repo, &view, r.tag());
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
        } else if repo.root_info.expires < soon {
            "expiring"
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
                RoleState::Valid if x.expires.is_some_and(|e| e < soon) => "expiring",
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
            // The timestamp lives 14 days and is re-signed by the server all along: never
            // "expiring".
            state: if info.expired {
                "expired"
            } else if info.name != "timestamp" && info.expires < soon {
                "expiring (server-managed)"
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
    let readable = unreadable(&settings.gun, &repo, &view);
    Ok((out, readable))
}

/// `--check`: exit 3 when a role is inside the notary client's warning window.
pub const CHECK_EXPIRING: u8 = 3;

/// `--check`'s verdict on the roles `inspect` printed: expired (or unreadable) is 1, inside the
/// 6-month window is [`CHECK_EXPIRING`]; every such role named with its expiry.
fn check(gun: &str, roles: &[RoleRow], readable: Result<(), CliError>) -> Result<(), CliError> {
    let list = |prefix: &str| -> Vec<String> {
        roles
            .iter()
            .filter(|r| r.state.starts_with(prefix))
            .map(|r| {
                let who = match r.name.as_str() {
                    "root" => " (re-sign it with the root key)",
                    "snapshot" | "timestamp" => " (the notary server signs it)",
                    _ => "",
                };
                format!("{} at {}{who}", r.name, secs(r.expires))
            })
            .collect()
    };
    let (expired, expiring) = (list("expired"), list("expiring"));
    if expired.is_empty() && expiring.is_empty() {
        return readable;
    }
    let mut parts = Vec::new();
    if !expired.is_empty() {
        parts.push(format!("expired: {}", expired.join(", ")));
    }
    if !expiring.is_empty() {
        parts.push(format!(
            "expiring within 6 months, where the notary client warns: {}",
            expiring.join(", ")
        ));
    }
    let mut message = format!(
        "check of {gun} failed: {}; renew a role with its key: `trustkeeper witness {gun} --key \
         <key> --role ROLE`",
        parts.join("; ")
    );
    if let Err(e) = &readable {
        message = format!("{message}. {e}");
    }
    let code = if expired.is_empty() && readable.is_ok() {
        CHECK_EXPIRING
    } else {
        1
    };
    Err(CliError::new(message).with_code(code))
}

/// Where the notary client starts warning "nearing expiry": six months ahead.
fn nearing_expiry(now: Timestamp) -> Timestamp {
    use jiff::ToSpan;
    now.to_zoned(jiff::tz::TimeZone::UTC)
        .checked_add(6.months())
        .map_or(now, |z| z.timestamp())
}

/// The refusal of the notary client (and of `docker pull`) when a role every reader needs is
/// expired or not validly signed: inspect shows what it found, then fails the same way.
fn unreadable(gun: &str, repo: &Repository, view: &RepoView) -> Result<(), CliError> {
    let at = |t: Timestamp| Timestamp::from_second(t.as_second()).unwrap_or(t);
    if let Some(t) = view.role("targets") {
        let expires = t.expires.map(at).map(|e| e.to_string()).unwrap_or_default();
        match t.state {
            RoleState::Expired => {
                return Err(CliError::new(format!(
                    "targets expired at {expires}: `docker pull` and the notary client refuse \
                     every tag of {gun} (\"targets expired\") until it is re-signed; renew it \
                     with the repository key: `trustkeeper witness {gun} --key <repository key> \
                     --role targets`"
                )));
            }
            RoleState::Unverified => {
                return Err(CliError::new(format!(
                    "targets is not validly signed by the repository key root lists: readers \
                     refuse every tag of {gun}; re-sign it with that key: `trustkeeper witness \
                     {gun} --key <repository key> --role targets`"
                )));
            }
            _ => {}
        }
    }
    for info in [&repo.snapshot_info, &repo.timestamp_info] {
        if info.expired {
            return Err(CliError::new(format!(
                "{} expired at {}: readers refuse every tag of {gun}; the notary server signs \
                 it, so check notary-server and notary-signer (their logs, and that the signer \
                 holds the {} key)",
                info.name,
                at(info.expires),
                info.name
            )));
        }
    }
    Ok(())
}

/// Every tag any role holds, as `docker trust inspect` shows it: the digest docker resolves
/// (`targets/releases`, then `targets`), and as signers the other delegations holding that
/// digest (`releases` and `targets` are the repository administrators: "(Repo Admin)").
/// A tag docker would not use is listed with the reason, never dropped.
fn tag_rows(repo: &Repository, view: &RepoView, only: Option<&str>) -> Vec<TagRow> {
    let mut names: Vec<&String> = repo.roles().iter().flat_map(|r| r.targets.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| only.is_none_or(|t| t == n.as_str()))
        .filter_map(|name| tag_row(repo, view, name))
        .collect()
}

fn tag_row(repo: &Repository, view: &RepoView, name: &str) -> Option<TagRow> {
    let valid = |x: &&RoleView| x.state == RoleState::Valid && x.allows(name);
    if let Some((winner, t)) = view.docker_winner(name)
        && docker_reads(&winner.name)
    {
        let holders = view
            .roles
            .iter()
            .filter(valid)
            .filter_map(|x| x.targets.get(name).map(|m| (x, m)));
        let (same, other): (Vec<_>, Vec<_>) = holders.partition(|(_, m)| m.sha256 == t.sha256);
        let mut signers: Vec<String> = same
            .iter()
            .filter(|(x, _)| !docker_reads(&x.name))
            .map(|(x, _)| x.name.trim_start_matches("targets/").to_string())
            .collect();
        signers.sort();
        return Some(TagRow {
            tag: name.to_string(),
            digest: format!("sha256:{}", t.sha256),
            size: t.length,
            role: winner.name.clone(),
            signers,
            disagreeing: other
                .iter()
                .map(|(x, m)| format!("{} (sha256:{})", x.name, &m.sha256[..12]))
                .collect(),
            note: None,
        });
    }
    // Not used by docker: say why, from the first role (in reading order) that holds it.
    let holders: Vec<_> = repo
        .roles()
        .iter()
        .filter_map(|r| r.targets.get(name).map(|m| (r, m)))
        .collect();
    let (role, meta) = holders
        .iter()
        .find(|(r, m)| m.sha256().is_some() && view.role(&r.name).is_some_and(|v| valid(&v)))
        .or_else(|| holders.iter().find(|(_, m)| m.sha256().is_some()))
        .or_else(|| holders.first())?;
    let digest = match meta.sha256_hex() {
        Some(h) => format!("sha256:{h}"),
        None => meta
            .hashes
            .get("sha512")
            .and_then(|h| base64::engine::general_purpose::STANDARD.decode(h).ok())
            .map(|h| format!("sha512:{}", hex::encode(h)))
            .unwrap_or_else(|| "-".into()),
    };
    let v = view.role(&role.name);
    let note = if meta.sha256().is_none() {
        format!(
            "{} holds it with no sha256 hash (only {}), which docker needs; sign it again: \
             `trustkeeper sign IMAGE:{name} --key <key> --role {}`",
            role.name,
            meta.hashes.keys().cloned().collect::<Vec<_>>().join(", "),
            role.name
        )
    } else {
        match v.map(|v| v.state) {
            Some(RoleState::Expired) => format!("{} has expired, so readers skip it", role.name),
            Some(RoleState::Unverified) => format!(
                "{} is not validly signed by the keys its parent lists, so readers skip it",
                role.name
            ),
            Some(RoleState::Hidden) => {
                let mut up = role.name.as_str();
                let mut why = String::from("an ancestor is expired or not validly signed");
                while let Some((parent, _)) = up.rsplit_once('/') {
                    match view.role(parent).map(|p| p.state) {
                        Some(RoleState::Expired) => why = format!("{parent} has expired"),
                        Some(RoleState::Unverified) => {
                            why = format!("{parent} is not validly signed")
                        }
                        _ => {}
                    }
                    up = parent;
                }
                format!("readers skip {} because {why}", role.name)
            }
            _ if !role.allows(name) => format!("{name} is outside the paths of {}", role.name),
            _ => format!(
                "only in {}, which docker does not read (it reads targets/releases, then \
                 targets); sign it into targets/releases",
                role.name
            ),
        }
    };
    Some(TagRow {
        tag: name.to_string(),
        digest,
        size: meta.length,
        role: role.name.clone(),
        signers: Vec::new(),
        disagreeing: Vec::new(),
        note: Some(note),
    })
}

fn secs(t: Option<Timestamp>) -> String {
    t.and_then(|t| Timestamp::from_second(t.as_second()).ok())
        .map(|t| t.to_string())
        .unwrap_or_else(|| "-".into())
}

pub(super) fn print_text(i: &Inspection) {
    outln!("Signatures for {} ({})\n", i.gun, i.notary_url);
    outln!(
        "{:<24} {:<71} {:>8}  {:<18} SIGNERS",
        "SIGNED TAG",
        "DIGEST",
        "SIZE",
        "ROLE"
    );
    for t in &i.tags {
        let mut signers = if let Some(note) = &t.note {
            format!("(not used by docker: {note})")
        } else if t.signers.is_empty() {
            "(Repo Admin)".to_string()
        } else {
            t.signers.join(", ")
        };
        if !t.disagreeing.is_empty() {
            signers.push_str(&format!("  [stale: {}]", t.disagreeing.join(", ")));
        }
        outln!(
            "{:<24} {:<71} {:>8}  {:<18} {}",
            t.tag,
            t.digest,
            t.size,
            t.role,
            signers
        );
    }
    outln!("\nList of signers and their keys:");
    for s in &i.signers {
        outln!("  {:<22} {}", s.name, s.key_ids.join(", "));
    }
    outln!("\nAdministrative keys:");
    outln!("  Repository key: {}", i.repository_key_ids.join(", "));
    outln!("  Root key:       {}", i.root_key_ids.join(", "));
    outln!(
        "\n{:<24} {:>7}  {:<21} {:<21} STATE",
        "ROLE",
        "VERSION",
        "EXPIRES",
        "RENEW AT"
    );
    for r in &i.roles {
        outln!(
            "{:<24} {:>7}  {:<21} {:<21} {}",
            r.name,
            r.version,
            secs(r.expires),
            secs(r.renew_at),
            r.state
        );
    }
}
