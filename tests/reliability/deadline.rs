//! Deadlines: each request has its timeout, the whole run has a deadline. A trust server or a
//! registry that answers late, or never, ends `inspect` and `sign` at the deadline with a reason
//! that names the server, not after one timeout per request. A publish cut off by the deadline
//! is whole or absent, never partial, and the next run converges.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::Testbed;
use crate::fault_proxy::{Action, FaultProxy, Rule};
use crate::hostile;
use crate::support::{Cli, digest, notary_list, passphrase, report};

/// Every request of every kind, for as long as the test runs.
fn always(method: Option<&'static str>, action: Action) -> Rule {
    Rule::new(method, action).times(u32::MAX)
}

async fn proxy(tb: &Testbed, upstream: &str) -> FaultProxy {
    let cert = std::fs::read(tb.var("TESTBED_SERVER_CERT")).unwrap();
    let key = std::fs::read(tb.var("TESTBED_SERVER_KEY")).unwrap();
    FaultProxy::start(upstream, &tb.ca_pem(), &cert, &key).await
}

struct Ran {
    took: Duration,
    code: Option<i32>,
    stderr: String,
    /// Peak RSS in KiB, from `/usr/bin/time -v` when it is installed.
    max_rss_kib: Option<u64>,
}

/// Runs the binary on a blocking thread (the proxies live on this runtime), under
/// `/usr/bin/time -v` when it is there, for the peak RSS.
async fn run(cli: Arc<Cli>, tb: &'static Testbed, args: Vec<String>) -> Ran {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let plain = cli.command(tb, &args);
        let timed = std::path::Path::new("/usr/bin/time").exists();
        let mut c = if timed {
            let mut c = std::process::Command::new("/usr/bin/time");
            c.arg("-v").arg(plain.get_program()).args(plain.get_args());
            c
        } else {
            std::process::Command::new(plain.get_program())
        };
        if !timed {
            c.args(plain.get_args());
        }
        for (k, v) in plain.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        let started = Instant::now();
        let out = c.output().unwrap();
        let took = started.elapsed();
        let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut max_rss_kib = None;
        let mut code = out.status.code();
        if timed && let Some(at) = stderr.find("\tCommand being timed:") {
            let report = stderr.split_off(at);
            max_rss_kib = report
                .lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("Maximum resident set size (kbytes): ")
                })
                .and_then(|v| v.parse().ok());
            code = report
                .lines()
                .find_map(|l| l.trim().strip_prefix("Exit status: "))
                .and_then(|v| v.parse().ok())
                .or(code);
        }
        Ran {
            took,
            code,
            stderr,
            max_rss_kib,
        }
    })
    .await
    .unwrap()
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// `sign IMAGES... --key KEY --role targets/releases --deadline DEADLINE`.
fn sign_args(images: &[&str], key: &str, deadline: &str) -> Vec<String> {
    let mut a = strings(&["sign"]);
    a.extend(strings(images));
    a.extend(strings(&[
        "--key",
        key,
        "--role",
        "targets/releases",
        "--deadline",
        deadline,
    ]));
    a
}

/// Ends at the deadline (3 s), not after the slow requests one by one.
fn assert_deadline(r: &Ran, what: &str) {
    assert_eq!(r.code, Some(1), "{what}: {}", r.stderr);
    assert!(
        r.stderr.contains("DeadlineExceeded") && r.stderr.contains("deadline of 3s"),
        "{what}: {}",
        r.stderr
    );
    assert!(
        r.took >= Duration::from_millis(2900) && r.took < Duration::from_millis(5000),
        "{what}: took {:?}",
        r.took
    );
    report(&format!(
        "deadline: {what}: {:?}, peak RSS {:?} KiB",
        r.took, r.max_rss_kib
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_ends_at_the_deadline_when_every_answer_is_late() {
    let tb = Testbed::get();
    let seed = tb.seed("deadline-inspect");
    let notary = proxy(tb, tb.var("NOTARY_URL")).await;
    // Each answer 2 s late, within the 6 s timeout: only the deadline ends the run early.
    notary.add(always(None, Action::Delay(Duration::from_secs(2))));
    let mut cli = Cli::new(None);
    cli.extra_env
        .push(("TRUSTKEEPER_NOTARY_URL".into(), notary.url.clone()));
    let r = run(
        Arc::new(cli),
        tb,
        strings(&["inspect", &seed.gun, "--timeout", "6s", "--deadline", "3s"]),
    )
    .await;
    assert_deadline(&r, "inspect, every answer late");
    assert!(
        r.stderr.contains(&format!("trust server {}", notary.url)),
        "{}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ends_at_the_deadline_when_the_trust_server_never_answers() {
    let tb = Testbed::get();
    let seed = tb.seed("deadline-notary");
    let before = notary_list(tb, &seed.gun, None);
    tb.retag(&seed, "multi", "dl-new").await;
    let notary = proxy(tb, tb.var("NOTARY_URL")).await;
    notary.add(always(None, Action::Delay(Duration::from_secs(3600))));
    let mut cli = Cli::new(Some(passphrase(&seed)));
    cli.extra_env
        .push(("TRUSTKEEPER_NOTARY_URL".into(), notary.url.clone()));
    let image = format!("{}:dl-new", seed.gun);
    let r = run(
        Arc::new(cli),
        tb,
        sign_args(&[&image], seed.var("DELEGATION_KEY"), "3s"),
    )
    .await;
    assert_deadline(&r, "sign, trust server never answers");
    assert!(
        r.stderr
            .contains(&format!("waiting for the trust server {}", notary.url))
            && r.stderr.contains("nothing was published"),
        "{}",
        r.stderr
    );
    assert_eq!(notary_list(tb, &seed.gun, None), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ends_at_the_deadline_when_the_registry_never_answers() {
    let tb = Testbed::get();
    let registry = proxy(tb, tb.var("REGISTRY_URL")).await;
    let gun =
        tb.unique_gun("deadline-registry")
            .replacen(tb.var("REGISTRY_HOST"), &registry.host, 1);
    let seed = tb.seed_gun(&gun);
    let before = notary_list(tb, &gun, None);
    registry.add(always(None, Action::Delay(Duration::from_secs(3600))));
    let cli = Cli::new(Some(passphrase(&seed)));
    let image = format!("{gun}:latest");
    let r = run(
        Arc::new(cli),
        tb,
        sign_args(&[&image], seed.var("DELEGATION_KEY"), "3s"),
    )
    .await;
    assert_deadline(&r, "sign, registry never answers");
    assert!(
        r.stderr
            .contains(&format!("waiting for the registry {}", registry.host)),
        "{}",
        r.stderr
    );
    assert_eq!(notary_list(tb, &gun, None), before);
}

/// The publish reaches the server, its answer does not come before the deadline: the tag is
/// then signed whole or not at all, the message says the publish was cut off, and the next run
/// converges with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_cut_off_by_the_deadline_is_whole_or_absent() {
    let tb = Testbed::get();
    let seed = tb.seed("deadline-publish");
    let before = notary_list(tb, &seed.gun, None);
    tb.retag(&seed, "oci-multi", "dl-a").await;
    tb.retag(&seed, "multi", "dl-b").await;
    let notary = proxy(tb, tb.var("NOTARY_URL")).await;
    notary.add(always(
        Some("POST"),
        Action::Delay(Duration::from_secs(3600)),
    ));
    let key = seed.var("DELEGATION_KEY").to_string();
    let mut cli = Cli::new(Some(passphrase(&seed)));
    cli.extra_env
        .push(("TRUSTKEEPER_NOTARY_URL".into(), notary.url.clone()));
    let cli = Arc::new(cli);
    let images = [format!("{}:dl-a", seed.gun), format!("{}:dl-b", seed.gun)];
    let sign = |deadline: &str| sign_args(&[&images[0], &images[1]], &key, deadline);
    let r = run(cli.clone(), tb, sign("3s")).await;
    assert_deadline(&r, "sign, publish answer held");
    assert!(r.stderr.contains("the publish was cut off"), "{}", r.stderr);
    // The rule matches POSTs only: one publish, none after the deadline.
    assert_eq!(notary.injected(), 1, "publishes sent");
    let after = notary_list(tb, &seed.gun, None);
    let new: Vec<&String> = after.keys().filter(|t| !before.contains_key(*t)).collect();
    assert!(
        new.is_empty() || new == ["dl-a", "dl-b"],
        "a partial publish: {new:?}"
    );
    for (tag, d) in &before {
        assert_eq!(after.get(tag), Some(d), "{tag} lost");
    }

    notary.clear();
    let r = run(cli, tb, sign("30s")).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let last = notary_list(tb, &seed.gun, None);
    assert_eq!(last.get("dl-a"), Some(&digest(&seed, "oci-multi")));
    assert_eq!(last.get("dl-b"), Some(&digest(&seed, "multi")));
    for (tag, d) in &before {
        assert_eq!(last.get(tag), Some(d), "{tag} lost");
    }
}

/// A per-request timeout says what timed out and where, for the trust server and the registry,
/// also when the headers came and the body stalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_reads_as_a_timeout_of_that_server() {
    let tb = Testbed::get();
    let (host, _task) = hostile::stalling(tb, None).await;
    let url = format!("https://{host}");
    let mut cli = Cli::new(None);
    cli.extra_env
        .push(("TRUSTKEEPER_NOTARY_URL".into(), url.clone()));
    let cli = Arc::new(cli);
    let gun = format!("{host}/team/app");
    let r = run(
        cli.clone(),
        tb,
        strings(&["inspect", &gun, "--timeout", "1s", "--deadline", "20s"]),
    )
    .await;
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "timed out after 1s waiting for the trust server {url}"
        )) && !r.stderr.contains("error decoding"),
        "{}",
        r.stderr
    );
    assert!(r.took < Duration::from_secs(10), "took {:?}", r.took);
    report(&format!(
        "deadline: stalled notary body, 1s timeout: {:?}, peak RSS {:?} KiB",
        r.took, r.max_rss_kib
    ));

    // The registry: headers, then a stalled body, on every attempt of its retries.
    let seed = tb.seed("deadline-stall");
    let mut cli = Cli::new(Some(passphrase(&seed)));
    cli.extra_env.push(("TRUSTKEEPER_NOTARY_URL".into(), url));
    let image = format!("{gun}:v1");
    let r = run(
        Arc::new(cli),
        tb,
        strings(&[
            "sign",
            &image,
            "--key",
            seed.var("DELEGATION_KEY"),
            "--timeout",
            "1s",
            "--deadline",
            "20s",
        ]),
    )
    .await;
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "timed out after 1s waiting for the registry {host}"
        )) && !r.stderr.contains("error decoding"),
        "{}",
        r.stderr
    );
    assert!(r.took < Duration::from_secs(15), "took {:?}", r.took);
    report(&format!(
        "deadline: stalled registry body, 1s timeout: {:?}, peak RSS {:?} KiB",
        r.took, r.max_rss_kib
    ));
}

fn ready_in(status_file: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(status_file).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    docs.iter()
        .filter(|d| !d.is_null())
        .map(|d| {
            let ready = d["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Ready")
                .unwrap();
            (
                d["metadata"]["name"].as_str().unwrap().to_string(),
                format!(
                    "{}/{}",
                    ready["status"].as_str().unwrap(),
                    ready["reason"].as_str().unwrap()
                ),
            )
        })
        .collect()
}

/// `reconcile -f` with several resources in one file, two of them pointing at hostile servers
/// (silent, trickling), and a second file whose status file is corrupt: the good resources are
/// signed and their status written, the hostile ones end at the deadline with theirs, all in
/// about one deadline (they run side by side), and the corrupt status file is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_files_one_slow_resource_never_loses_the_others() {
    let tb = Testbed::get();
    let seed = tb.seed("deadline-files");
    tb.retag(&seed, "multi", "f-good").await;
    let (silent, _silent) = hostile::silent().await;
    let (trickle, _trickle) = hostile::stalling(tb, Some(Duration::from_millis(500))).await;
    let real = tb.var("NOTARY_URL");
    let good = crate::support::resource(tb, &seed, "[f-good]");
    let named = |name: &str, url: &str| {
        good.replace("name: app,", &format!("name: {name},"))
            .replace(real, url)
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("many.yaml");
    std::fs::write(
        &file,
        [
            named("silent", &format!("https://{silent}")),
            good.clone(),
            named("trickle", &format!("https://{trickle}")),
        ]
        .join("---\n"),
    )
    .unwrap();
    let other = dir.path().join("other.yaml");
    std::fs::write(&other, named("other", real)).unwrap();
    let corrupt = dir.path().join("other.yaml.status.yaml");
    std::fs::write(&corrupt, "{ not: [yaml").unwrap();

    let cli = Arc::new(Cli::new(None));
    let r = run(
        cli,
        tb,
        strings(&[
            "reconcile",
            "-f",
            file.to_str().unwrap(),
            "-f",
            other.to_str().unwrap(),
            "--deadline",
            "3s",
        ]),
    )
    .await;
    report(&format!(
        "deadline: reconcile -f, 4 resources: {:?}, peak RSS {:?} KiB",
        r.took, r.max_rss_kib
    ));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("3 of 4 SignedImages are not Ready"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("ci/other") && r.stderr.contains("is corrupt"),
        "{}",
        r.stderr
    );
    assert!(
        r.took < Duration::from_secs(6),
        "not side by side: {:?}",
        r.took
    );
    let ready = ready_in(&dir.path().join("many.yaml.status.yaml"));
    assert_eq!(ready["app"], "True/Signed", "{ready:?}");
    assert_eq!(ready["silent"], "False/DeadlineExceeded", "{ready:?}");
    assert_eq!(ready["trickle"], "False/DeadlineExceeded", "{ready:?}");
    assert_eq!(std::fs::read_to_string(&corrupt).unwrap(), "{ not: [yaml");
    assert_eq!(
        notary_list(tb, &seed.gun, None).get("f-good"),
        Some(&digest(&seed, "multi"))
    );
}
