//! The operator at scale with the real engine: N SignedImages (`TRUSTKEEPER_SCALE_N`, default
//! 1000) × T tags (`TRUSTKEEPER_SCALE_TAGS`, default 10) on the testbed's real notary-server and
//! registry, the real API server (kube-testbed) for the SignedImages and their status; Secrets
//! come from a map (that API server has no core API). The controller runs in a process of its
//! own (this binary in operator mode: `run_with` + `Engine`, what `trustkeeper controller` runs),
//! so that its RSS and CPU time are measured apart from the set-up.
//!
//! Set-up (not timed as a cycle): N repositories created through our library as Docker creates
//! them (`notary::init`: root certificate per GUN, targets key, `targets/releases` delegated to
//! one CI key, server-managed snapshot and timestamp keys), T
//! tags pushed per repository, N SignedImages. Then three cycles, each timed from its start
//! until every SignedImage has been reconciled once:
//! 1. first sign: every tag new (T signatures and one publish per SignedImage);
//! 2. nothing new: a registry notification for every repository wakes all N at once;
//! 3. 10% new: one more tag pushed per repository, then the same notification.
//!
//! Printed: cycle times, requests per SignedImage (from the controller's own
//! `trustkeeper_http_requests_total`), status writes, the operator's CPU time and peak RSS.
//! The Go client checks a sample.
//! Targets (issue #7): nothing-new ≤ 1 notary request and 0 manifest GETs per SignedImage; RSS
//! < 64 MiB. A benchmark: figures are printed, only correctness is asserted.
//!
//! Run: `TRUSTKEEPER_TESTBED=DIR TRUSTKEEPER_KUBE_TESTBED=DIR cargo bench --bench operator_scale`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/controller_support/mod.rs"]
mod controller_support;

use std::time::{Duration, Instant};

use common::Testbed;
use controller_support::{TOKEN, install_crd, metrics_text, parse_metrics, plain_client, unique};
use futures::StreamExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use secrecy::SecretString;
use serde_json::json;
use trustkeeper::api::SignedImage;
use trustkeeper::controller::{ControllerConfig, MapSecrets};
use trustkeeper::engine::Engine;
use trustkeeper::notary::{NewRepository, NotaryClient, ServerConfig, SigningKey};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces): utime and stime are the 12th
    // and 13th of them, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}

/// The operator in a process of its own (this binary, re-run in operator mode), so that its
/// RSS and CPU time are its own and not the set-up's.
struct Operator {
    child: std::process::Child,
    addr: String,
}

impl Operator {
    fn start(ns: &str, key_pem: &std::path::Path, ca: &std::path::Path) -> Operator {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .env("TRUSTKEEPER_SCALE_OPERATOR", ns)
            .env("TRUSTKEEPER_SCALE_KEY", key_pem)
            .env("TRUSTKEEPER_SCALE_CA", ca)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("operator did not start: {line:?}"))
            .trim()
            .to_string();
        Operator { child, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Stops it (stdin closed = shutdown) and returns what it printed last.
    fn stop(mut self) -> String {
        use std::io::Read;
        drop(self.child.stdin.take());
        let mut rest = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut rest)
            .unwrap();
        assert!(self.child.wait().unwrap().success(), "operator failed");
        rest
    }
}

/// Operator mode: the controller with the real engine until stdin closes.
async fn operator(ns: String) {
    let key = std::fs::read(std::env::var("TRUSTKEEPER_SCALE_KEY").unwrap()).unwrap();
    let ca = std::fs::read(std::env::var("TRUSTKEEPER_SCALE_CA").unwrap()).unwrap();
    let secrets = MapSecrets::default().with_secret(
        &ns,
        "signer",
        None,
        &[
            ("key.pem", &key),
            ("passphrase", b"scale-bench-passphrase"),
            ("ca.crt", &ca),
        ],
    );
    drop(key);
    let client = plain_client().await;
    let engine = Engine::default();
    let mut cfg = ControllerConfig::new("scale-bench");
    cfg.namespaces = Some(vec![ns.clone()]);
    cfg.concurrency = 16;
    cfg.webhook_token = Some(TOKEN.to_string().into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("listening {}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = tx.send(());
    });
    trustkeeper::controller::run_with(client, engine.clone(), secrets, cfg, listener, async {
        let _ = rx.await;
    })
    .await
    .unwrap();
    let (guns, bytes) = engine.cache.stats();
    println!(
        "metadata cache {guns} GUNs, {:.1} MiB",
        bytes as f64 / (1024.0 * 1024.0)
    );
}

/// The controller's counters that a cycle is measured by.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    done: f64,
    publishes: f64,
    status_writes: f64,
    notary_get: f64,
    notary_post: f64,
    registry_head: f64,
    registry_get: f64,
    registry_tag_list: f64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, o: Counters) -> Counters {
        Counters {
            done: self.done - o.done,
            publishes: self.publishes - o.publishes,
            status_writes: self.status_writes - o.status_writes,
            notary_get: self.notary_get - o.notary_get,
            notary_post: self.notary_post - o.notary_post,
            registry_head: self.registry_head - o.registry_head,
            registry_get: self.registry_get - o.registry_get,
            registry_tag_list: self.registry_tag_list - o.registry_tag_list,
        }
    }
}

async fn counters(running: &Operator) -> Counters {
    let text = metrics_text(&running.url("/metrics")).await;
    let m = parse_metrics(&text);
    let get = |name: &str| m.iter().find(|(s, _)| s == name).map_or(0.0, |(_, v)| *v);
    let req = |server: &str, kind: &str| {
        m.iter()
            .find(|(s, _)| {
                s.starts_with("trustkeeper_http_requests_total{")
                    && s.contains(&format!("server=\"{server}\""))
                    && s.contains(&format!("kind=\"{kind}\""))
            })
            .map_or(0.0, |(_, v)| *v)
    };
    Counters {
        done: get("trustkeeper_reconcile_duration_seconds_count"),
        publishes: get("trustkeeper_publishes_total"),
        status_writes: get("trustkeeper_status_writes_total"),
        notary_get: req("notary", "get"),
        notary_post: req("notary", "post"),
        registry_head: req("registry", "head"),
        registry_get: req("registry", "get"),
        registry_tag_list: req("registry", "tag_list"),
    }
}

/// Waits until `n` more reconciles have finished than `before` (and, if given, `publishes` more
/// publishes), and the counters stay put for a moment (nothing else in flight).
async fn cycle(running: &Operator, before: Counters, n: f64, publishes: f64) -> Duration {
    let t = Instant::now();
    loop {
        let c = counters(running).await - before;
        if c.done >= n && c.publishes >= publishes {
            let elapsed = t.elapsed();
            tokio::time::sleep(Duration::from_millis(300)).await;
            return elapsed;
        }
        assert!(
            t.elapsed() < Duration::from_secs(1800),
            "cycle stalled: {c:?}"
        );
        // Not too often: each scrape renders the gauges of every SignedImage.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An OCI index without children: the cheapest distinct manifest the registry accepts.
fn manifest(id: &str) -> Vec<u8> {
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [],
        "annotations": {"trustkeeper.bench": id}
    })
    .to_string()
    .into_bytes()
}

async fn push(http: &reqwest::Client, tb: &Testbed, repo: &str, tag: &str) {
    let url = format!("{}/v2/{repo}/manifests/{tag}", tb.var("REGISTRY_URL"));
    let r = http
        .put(&url)
        .header("Content-Type", "application/vnd.oci.image.index.v1+json")
        .body(manifest(&format!("{repo}:{tag}:{}", std::process::id())))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "PUT {url}: {}", r.status());
}

/// One registry notification naming a push to every repository.
async fn notify_all(running: &Operator, host: &str, repos: &[String], tag: &str) {
    let events: Vec<_> = repos
        .iter()
        .map(|r| {
            json!({"action": "push",
                "target": {"mediaType": "application/vnd.oci.image.index.v1+json",
                           "repository": r, "tag": tag},
                "request": {"host": host}})
        })
        .collect();
    let r = reqwest::Client::new()
        .post(running.url("/notifications"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .body(json!({ "events": events }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

fn main() {
    trustkeeper::tls::install_crypto_provider();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            match std::env::var("TRUSTKEEPER_SCALE_OPERATOR") {
                Ok(ns) => operator(ns).await,
                Err(_) => bench().await,
            }
        });
}

async fn bench() {
    let n = env_usize("TRUSTKEEPER_SCALE_N", 1000);
    let tags = env_usize("TRUSTKEEPER_SCALE_TAGS", 10);
    let tb = Testbed::get();
    let client = plain_client().await;
    install_crd(&client).await;
    let ns = unique("scale");
    let host = tb
        .var("REGISTRY_URL")
        .trim_start_matches("https://")
        .to_string();
    let repos: Vec<String> = (0..n).map(|i| format!("scale/{ns}/img-{i}")).collect();
    let ca = tb.ca_pem();
    let http = reqwest::Client::builder()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&ca).unwrap())
        .build()
        .unwrap();

    // --- set-up -------------------------------------------------------------------------------
    let t = Instant::now();
    let root = SigningKey::generate_ecdsa("root", "").unwrap();
    let ci = SigningKey::generate_ecdsa("ci", "").unwrap();
    let pass = SecretString::from("scale-bench-passphrase");
    let ci_pem = ci.export_pem(&pass).unwrap();
    let notary = NotaryClient::new(ServerConfig {
        url: tb.var("NOTARY_URL").to_string(),
        ca_pem: Some(ca.clone()),
        ca_only: true,
        auth: Default::default(),
        timeout: Duration::from_secs(60),
        max_metadata_bytes: trustkeeper::notary::client::DEFAULT_MAX_METADATA_BYTES,
    })
    .unwrap();
    // Key creation one at a time (notary-signer's memory store crashes on concurrent key
    // creation), signing and publishing 8 at a time.
    let keys_lock = tokio::sync::Mutex::new(());
    futures::stream::iter(&repos)
        .map(|repo| {
            let (notary, root, ci, host, keys_lock) = (&notary, &root, &ci, &host, &keys_lock);
            async move {
                let gun = format!("{host}/{repo}");
                let targets = SigningKey::generate_ecdsa("targets", &gun).unwrap();
                let new = NewRepository::new(&gun, root, &targets)
                    .with_delegation("targets/releases", ci.public().clone(), &[""])
                    .unwrap();
                let (snapshot, timestamp) = {
                    let _one = keys_lock.lock().await;
                    (
                        notary.server_key(&gun, "snapshot").await.unwrap(),
                        notary.server_key(&gun, "timestamp").await.unwrap(),
                    )
                };
                let meta = new
                    .sign(snapshot, timestamp, jiff::Timestamp::now())
                    .unwrap();
                notary.publish(&gun, &meta.files).await.unwrap();
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let created = t.elapsed();
    let t = Instant::now();
    futures::stream::iter(repos.iter().flat_map(|r| (0..tags).map(move |j| (r, j))))
        .map(|(repo, j)| {
            let http = &http;
            async move { push(http, tb, repo, &format!("v{j}")).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let pushed = t.elapsed();
    let api: Api<SignedImage> = Api::namespaced(client.clone(), &ns);
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let gun = format!("{host}/{}", repos[i]);
            let ns = ns.clone();
            let url = tb.var("NOTARY_URL").to_string();
            async move {
                let obj: SignedImage = serde_json::from_value(json!({
                    "apiVersion": "trustkeeper.dev/v1alpha1", "kind": "SignedImage",
                    "metadata": {"name": format!("img-{i}"), "namespace": ns},
                    "spec": {
                        "image": gun, "tags": ["v*"],
                        "signingKey": {"secretRef": {"name": "signer"}},
                        "registry": {"ca": {"secretKeyRef": {"name": "signer", "key": "ca.crt"}}},
                        "notary": {"url": url, "ca": {"secretKeyRef": {"name": "signer", "key": "ca.crt"}}},
                        "interval": "1h"
                    }
                }))
                .unwrap();
                api.create(&PostParams::default(), &obj).await.unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let objects = t.elapsed();
    let files = tempfile::tempdir().unwrap();
    let (key_file, ca_file) = (files.path().join("key.pem"), files.path().join("ca.crt"));
    std::fs::write(&key_file, &ci_pem).unwrap();
    std::fs::write(&ca_file, &ca).unwrap();

    // --- the operator ---------------------------------------------------------------------------
    let zero = Counters::default();
    let running = Operator::start(&ns, &key_file, &ca_file);
    let pid = running.pid();

    // 1. Every tag new.
    let cpu0 = cpu_seconds(&pid);
    let c1 = cycle(&running, zero, n as f64, n as f64).await;
    let cpu1 = cpu_seconds(&pid) - cpu0;
    let peak1 = status_kib(&pid, "VmHWM:");
    let after1 = counters(&running).await;
    let ready = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|si| {
            si.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
                    && s.signed_tags.len() == tags
            })
        })
        .count();
    assert_eq!(ready, n, "every SignedImage Ready with {tags} signed tags");

    // 2. Nothing new, all woken at once.
    let cpu0 = cpu_seconds(&pid);
    notify_all(&running, &host, &repos, "v0").await;
    let c2 = cycle(&running, after1, n as f64, 0.0).await;
    let cpu2 = cpu_seconds(&pid) - cpu0;
    let peak2 = status_kib(&pid, "VmHWM:");
    let after2 = counters(&running).await;

    // 3. One new tag per repository (10% with the default 10 tags).
    let new_tag = format!("v{tags}");
    futures::stream::iter(&repos)
        .map(|repo| {
            let (http, new_tag) = (&http, &new_tag);
            async move { push(http, tb, repo, new_tag).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let before3 = counters(&running).await;
    let cpu0 = cpu_seconds(&pid);
    notify_all(&running, &host, &repos, &new_tag).await;
    let c3 = cycle(&running, before3, n as f64, n as f64).await;
    let cpu3 = cpu_seconds(&pid) - cpu0;
    let after3 = counters(&running).await;
    let peak = status_kib(&pid, "VmHWM:");
    let rss_end = status_kib(&pid, "VmRSS:");
    let last_words = running.stop();

    // The Go client agrees on a sample.
    for i in [0, n / 2, n - 1] {
        let gun = format!("{host}/{}", repos[i]);
        let listed = tb.notary_list(&gun, None);
        assert_eq!(listed.len(), tags + 1, "{gun}: {listed:?}");
        assert!(listed.values().all(|r| r.role == "targets/releases"));
    }

    // --- report ---------------------------------------------------------------------------------
    let per = |v: f64| v / n as f64;
    println!(
        "\noperator scale bench: {n} SignedImages x {tags} tags, real engine, real notary-server, registry and API server"
    );
    println!(
        "set-up: {n} repositories created via our library in {:.1} s, {} tags pushed in {:.1} s, {n} objects in {:.1} s",
        created.as_secs_f64(),
        n * tags,
        pushed.as_secs_f64(),
        objects.as_secs_f64()
    );
    println!(
        "{:<30} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "cycle (per SignedImage)",
        "time",
        "CPU ms",
        "notary GET",
        "notary POST",
        "reg HEAD",
        "reg GET",
        "tag lists",
        "publishes",
        "writes"
    );
    for (name, d, cpu, c) in [
        ("1 first sign (all new)", c1, cpu1, after1 - zero),
        ("2 nothing new", c2, cpu2, after2 - after1),
        ("3 10% new tags", c3, cpu3, after3 - before3),
    ] {
        println!(
            "{name:<30} {:>7.2} s {:>9.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>9.2}",
            d.as_secs_f64(),
            per(cpu * 1000.0),
            per(c.notary_get),
            per(c.notary_post),
            per(c.registry_head),
            per(c.registry_get),
            per(c.registry_tag_list),
            per(c.publishes),
            per(c.status_writes)
        );
    }
    let quiet = after2 - after1;
    let notary_per = per(quiet.notary_get + quiet.notary_post);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "time: until all {n} were reconciled once, 16 at a time, on 2 cores shared with the notary-server, registry, API server and etcd; CPU ms: the operator process's CPU time per SignedImage"
    );
    println!(
        "nothing-new: {notary_per:.2} notary requests per SignedImage (target <= 1: {}), {:.2} manifest GETs (target 0: {}), {:.2} status writes (target 0: {})",
        verdict(notary_per <= 1.0),
        per(quiet.registry_get),
        verdict(quiet.registry_get == 0.0),
        per(quiet.status_writes),
        verdict(quiet.status_writes == 0.0)
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "peak RSS of the operator process: {:.1} MiB (target < 64 MiB: {}); peak after cycle 1 {:.1} MiB, after cycle 2 {:.1} MiB, RSS at the end {:.1} MiB; {}",
        mib(peak),
        verdict(peak < 64 * 1024),
        mib(peak1),
        mib(peak2),
        mib(rss_end),
        last_words.trim()
    );

    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
}
