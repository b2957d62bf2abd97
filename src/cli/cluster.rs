//! The cmctl-like commands on a SignedImage in a cluster: `renew` sets the renew-now
//! annotation through the API server (and waits for the controller's echo), `status` shows what
//! the status holds. The kubeconfig is found as kubectl finds it (`KUBECONFIG`,
//! `~/.kube/config`, in-cluster).

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::common::CliError;
use super::{Global, Output};
use crate::api::SignedImage;
use crate::controller::renew::{MODE_FORCE, RENEW_MODE, RENEW_REQUESTED_AT, check_token};

/// Where the SignedImage is.
#[derive(clap::Args, Debug)]
pub struct Target {
    /// The SignedImage's name.
    pub name: String,
    /// Its namespace [default: the kubeconfig context's, else `default`].
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct RenewArgs {
    #[command(flatten)]
    pub target: Target,
    /// Also re-sign every role the key holds, due or not (as `witness` does).
    #[arg(long)]
    pub force: bool,
    /// Wait until the controller handled the request (bounded by --timeout), then show the
    /// status; exit 1 unless Ready is True.
    #[arg(long)]
    pub wait: bool,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: Target,
}

/// How often `renew --wait` reads the SignedImage.
const POLL: Duration = Duration::from_millis(250);

async fn api(target: &Target) -> Result<(Api<SignedImage>, String), CliError> {
    let client = Client::try_default().await.map_err(|e| {
        CliError::new(format!(
            "cannot reach the cluster: {e}: set KUBECONFIG or write ~/.kube/config, as for kubectl"
        ))
    })?;
    let ns = target
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    Ok((Api::namespaced(client, &ns), ns))
}

fn api_error(e: kube::Error, what: &str, ns: &str, name: &str) -> CliError {
    match &e {
        kube::Error::Api(s) if s.code == 404 => CliError::new(format!(
            "signedimage {ns}/{name} not found: check the name and the namespace \
             (`kubectl get signedimages -n {ns}`)"
        )),
        kube::Error::Api(s) if s.code == 403 => CliError::new(format!(
            "not allowed to {what} signedimage {ns}/{name}: {}; ask for a role that grants it",
            s.message
        )),
        _ => CliError::new(format!("cannot {what} signedimage {ns}/{name}: {e}")),
    }
}

fn bounded<T>(
    r: Result<Result<T, CliError>, tokio::time::error::Elapsed>,
    global: &Global,
    what: &str,
) -> Result<T, CliError> {
    r.unwrap_or_else(|_| {
        Err(CliError::new(format!(
            "{what}: no answer within {} (--timeout)",
            crate::api::human_duration(global.timeout)
        )))
    })
}

/// `trustkeeper renew NAME`: sets the request annotation (and the mode: `force`, or removed).
pub async fn renew(global: &Global, args: RenewArgs) -> Result<(), CliError> {
    let start = tokio::time::Instant::now();
    let name = &args.target.name;
    let token = jiff::Timestamp::now().to_string();
    check_token(&token).map_err(CliError::new)?;
    let mode = if args.force {
        json!(MODE_FORCE)
    } else {
        Value::Null
    };
    let patch = json!({"metadata": {"annotations": {RENEW_REQUESTED_AT: token, RENEW_MODE: mode}}});
    let (api, ns) = bounded(
        tokio::time::timeout(global.timeout, async {
            let (api, ns) = api(&args.target).await?;
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| api_error(e, "patch", &ns, name))?;
            Ok((api, ns))
        })
        .await,
        global,
        "renew",
    )?;
    if !args.wait {
        if global.output == Output::Json {
            outln!(
                "{}",
                json!({"namespace": ns, "name": name, "requested": token, "force": args.force})
            );
        } else {
            outln!(
                "renew{} requested for signedimage {ns}/{name} ({RENEW_REQUESTED_AT}={token})",
                if args.force { " (forced)" } else { "" }
            );
        }
        return Ok(());
    }
    let deadline = start + global.timeout;
    let si = loop {
        let si = tokio::time::timeout_at(deadline, api.get(name))
            .await
            .ok()
            .map(|r| r.map_err(|e| api_error(e, "get", &ns, name)))
            .transpose()?;
        if let Some(si) = &si
            && si
                .status
                .as_ref()
                .and_then(|s| s.last_handled_renew_request.as_deref())
                == Some(token.as_str())
        {
            break si.clone();
        }
        if tokio::time::Instant::now() + POLL >= deadline {
            return Err(CliError::new(format!(
                "the controller did not handle the renew request {token} of signedimage \
                 {ns}/{name} within {} (--timeout): is trustkeeper running and watching {ns}? \
                 (`kubectl get pods -n trustkeeper`); the request stays set and is handled \
                 when it runs",
                crate::api::human_duration(global.timeout)
            )));
        }
        tokio::time::sleep(POLL).await;
    };
    show(global, &si, None)?;
    match ready(&si) {
        Some((s, _, _)) if s == "True" => Ok(()),
        Some((s, reason, message)) => Err(CliError::new(format!(
            "signedimage {ns}/{name} handled the renew request and is not Ready ({s}, \
             {reason}): {message}"
        ))),
        None => Err(CliError::new(format!(
            "signedimage {ns}/{name} handled the renew request but has no Ready condition"
        ))),
    }
}

/// `trustkeeper status NAME`.
pub async fn status(global: &Global, args: StatusArgs) -> Result<(), CliError> {
    let name = &args.target.name;
    let (si, events) = bounded(
        tokio::time::timeout(global.timeout, async {
            let (api, ns) = api(&args.target).await?;
            let si = api
                .get(name)
                .await
                .map_err(|e| api_error(e, "get", &ns, name))?;
            let events = recent_events(Api::namespaced(api.into_client(), &ns), name).await;
            Ok((si, events))
        })
        .await,
        global,
        "status",
    )?;
    show(global, &si, Some(&events))
}

/// Events listed at most; the newest [`EVENTS_SHOWN`] of the SignedImage's are shown.
const EVENTS_LISTED: u32 = 500;
const EVENTS_SHOWN: usize = 8;

/// The SignedImage's newest Events as JSON (type, reason, note, time), newest last; `Err` with
/// why they cannot be read (the command still shows the status).
async fn recent_events(api: Api<Event>, name: &str) -> Result<Vec<Value>, String> {
    let selector = format!("regarding.kind=SignedImage,regarding.name={name}");
    let by_field = ListParams::default().fields(&selector).limit(EVENTS_LISTED);
    let list = match api.list(&by_field).await {
        Ok(l) => l,
        // An API server without that field selector: filter here.
        Err(kube::Error::Api(s)) if s.code == 400 => api
            .list(&ListParams::default().limit(EVENTS_LISTED))
            .await
            .map_err(|e| e.to_string())?,
        Err(kube::Error::Api(s)) if s.code == 403 => {
            return Err("not allowed to list events.k8s.io events".into());
        }
        Err(e) => return Err(e.to_string()),
    };
    let mut rows: Vec<(jiff::Timestamp, Value)> = (list.items.iter())
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("SignedImage") && r.name.as_deref() == Some(name)
            })
        })
        .filter_map(|e| serde_json::to_value(e).ok())
        .map(|v| {
            let at = [
                &v["series"]["lastObservedTime"],
                &v["eventTime"],
                &v["deprecatedLastTimestamp"],
                &v["metadata"]["creationTimestamp"],
            ]
            .iter()
            .find_map(|t| t.as_str().and_then(|t| t.parse().ok()))
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            (at, v)
        })
        .collect();
    rows.sort_by_key(|(at, _)| *at);
    let skip = rows.len().saturating_sub(EVENTS_SHOWN);
    Ok(rows
        .into_iter()
        .skip(skip)
        .map(|(at, v)| {
            json!({"time": at.to_string(), "type": v["type"], "reason": v["reason"], "note": v["note"],
                   "count": v["series"]["count"]})
        })
        .collect())
}

fn show_events(events: &Result<Vec<Value>, String>) {
    match events {
        Err(why) => outln!("Events:           not shown ({why})"),
        Ok(list) if list.is_empty() => outln!("Events:           none"),
        Ok(list) => {
            outln!("Events (newest last):");
            for e in list {
                let count = e["count"]
                    .as_u64()
                    .filter(|n| *n > 1)
                    .map_or(String::new(), |n| format!(" (x{n})"));
                let field = |k: &str| printable(e[k].as_str().unwrap_or("-"));
                outln!(
                    "  {}  {:7}  {}{count}: {}",
                    field("time"),
                    field("type"),
                    field("reason"),
                    field("note")
                );
            }
        }
    }
}

/// Ready's (status, reason, message).
fn ready(si: &SignedImage) -> Option<(String, String, String)> {
    let c = si
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == crate::api::READY)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The status as the API server holds it, through its JSON form (the field names users see in
/// `kubectl get -o yaml`).
fn show(
    global: &Global,
    si: &SignedImage,
    events: Option<&Result<Vec<Value>, String>>,
) -> Result<(), CliError> {
    let status = serde_json::to_value(&si.status).unwrap_or(Value::Null);
    let annotations = si.annotations();
    let requested = annotations.get(RENEW_REQUESTED_AT);
    let handled = status["lastHandledRenewRequest"].as_str();
    let pending = requested.filter(|r| Some(r.as_str()) != handled);
    if global.output == Output::Json {
        let doc = json!({
            "namespace": si.namespace(),
            "name": si.name_any(),
            "generation": si.metadata.generation,
            "renewRequest": {
                "requested": requested,
                "mode": annotations.get(RENEW_MODE),
                "pending": pending.is_some(),
            },
            "status": status,
            "events": events.map(|e| e.as_ref().ok()),
        });
        outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    outln!("Name:       {}", si.name_any());
    outln!("Namespace:  {}", si.namespace().unwrap_or_default());
    outln!("Image:      {}", si.spec.image);
    match ready(si) {
        Some((st, reason, message)) => outln!("Ready:      {st} ({reason}): {message}"),
        None => outln!("Ready:      unknown (no status yet: is the controller running?)"),
    }
    let observed = status["observedGeneration"].as_i64();
    let generation = si.metadata.generation;
    outln!(
        "Generation: {} (status for {}{})",
        generation.map_or("-".into(), |g| g.to_string()),
        observed.map_or("none".into(), |g| g.to_string()),
        if observed.is_some() && observed != generation {
            ", not yet the current spec"
        } else {
            ""
        }
    );
    outln!(
        "Tags:       {} signed",
        status["tagSummary"].as_str().unwrap_or("0/0")
    );
    let tags = status["signedTags"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let width = tags.iter().map(|t| s(&t["tag"]).len()).max().unwrap_or(0);
    for t in tags {
        outln!(
            "  {:width$}  {}  {} bytes  {}",
            s(&t["tag"]),
            s(&t["digest"]),
            t["size"].as_u64().unwrap_or(0),
            s(&t["role"])
        );
    }
    outln!("Roles:");
    let roles = status["roles"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let width = roles.iter().map(|r| s(&r["name"]).len()).max().unwrap_or(0);
    for r in roles {
        outln!(
            "  {:width$}  version {}  expires {}  renewal {}  {} targets",
            s(&r["name"]),
            r["version"].as_u64().unwrap_or(0),
            s(&r["expires"]),
            r["renewalTime"].as_str().unwrap_or("- (not our key)"),
            r["targets"].as_u64().unwrap_or(0)
        );
    }
    show_plan(&status["plannedChanges"]);
    outln!("Earliest expiry:  {}", s(&status["earliestExpiry"]));
    outln!("Last sync:        {}", s(&status["lastSyncTime"]));
    outln!("Next sync:        {}", s(&status["nextSyncTime"]));
    outln!("Last publish:     {}", s(&status["lastPublishTime"]));
    outln!(
        "Renew request:    last handled {}{}",
        handled.unwrap_or("-"),
        match pending {
            Some(p) => format!(", pending {p}"),
            None => String::new(),
        }
    );
    let failed = status["failedAttempts"].as_u64().unwrap_or(0);
    if failed > 0 {
        outln!(
            "Failures:         {failed} in a row, the last at {}",
            s(&status["lastFailureTime"])
        );
    } else {
        outln!("Failures:         none since the last success");
    }
    if let Some(events) = events {
        show_events(events);
    }
    Ok(())
}

/// `status.plannedChanges` (spec.dryRun), when there is one: what the next run would publish.
fn show_plan(plan: &Value) {
    if !plan.is_object() {
        return;
    }
    let n = |k: &str| plan[k].as_u64().unwrap_or(0);
    let s = |v: &Value| printable(v.as_str().unwrap_or("-"));
    let count = |k: &str, what: &str| match n(k) {
        1 => format!("1 {what}"),
        c => format!("{c} {what}s"),
    };
    outln!(
        "Planned (dry run, nothing published): {} to sign, {} to remove, {} to re-sign",
        count("tagsToSign", "tag"),
        n("tagsToRemove"),
        count("rolesToResign", "role")
    );
    for r in plan["roles"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        outln!(
            "  {:5}  {}  version {} -> {}  expires {} -> publish + {}",
            s(&r["action"]),
            s(&r["role"]),
            r["version"].as_u64().unwrap_or(0),
            r["newVersion"].as_u64().unwrap_or(0),
            s(&r["expires"]),
            s(&r["validFor"])
        );
        for t in r["add"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            outln!(
                "    add     {}  {}  {} bytes",
                s(&t["tag"]),
                s(&t["digest"]),
                t["size"].as_u64().unwrap_or(0)
            );
        }
        for t in r["remove"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            outln!("    remove  {}", s(t));
        }
    }
    if n("omitted") > 0 {
        outln!(
            "  ... and {} more, not listed in the status (`trustkeeper reconcile -f FILE --dry-run` prints them all)",
            n("omitted")
        );
    }
}

/// Anyone allowed to create Events writes their text: no terminal control sequences from it.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
