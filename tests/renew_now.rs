//! Renew now, against the real Kubernetes API server (kube-testbed) and, for the forced
//! re-sign, the real notary-server and registry (testbed): the request annotation reaches the
//! controller, runs one reconcile, is echoed in `status.lastHandledRenewRequest`, and our own
//! status writes never reconcile again (counted with `trustkeeper_reconciles_total`);
//! `trustkeeper renew --force --wait` re-signs every held role (the server's versions go up);
//! `status` shows what the status holds; the binary as `kubectl-trustkeeper`, run by kubectl.

mod common;
mod controller_support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Seed, Testbed};
use controller_support::{
    Running, client, config, create_image, eventually, install_crd, metrics_text, parse_metrics,
    secrets, signed_outcome, unique,
};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use trustkeeper::api::SignedImage;
use trustkeeper::controller::MapSecrets;
use trustkeeper::controller::fake::FakeReconciler;
use trustkeeper::controller::renew::{RENEW_MODE, RENEW_REQUESTED_AT};
use trustkeeper::engine::request::RunOptions;
use trustkeeper::engine::{Engine, Outcome, ReconcileRequest, Reconciler};

/// A reconciler that records the `force_renew` of each run before it delegates.
#[derive(Clone)]
struct Recording<R> {
    inner: R,
    forced: Arc<Mutex<Vec<bool>>>,
}

impl<R: Reconciler + Clone> Reconciler for Recording<R> {
    async fn reconcile(&self, request: ReconcileRequest<'_>) -> Outcome {
        self.reconcile_with(request, RunOptions::default()).await
    }
    async fn reconcile_with(&self, request: ReconcileRequest<'_>, options: RunOptions) -> Outcome {
        self.forced.lock().unwrap().push(options.force_renew);
        self.inner.reconcile_with(request, options).await
    }
}

async fn reconciles(running: &Running) -> f64 {
    let text = metrics_text(&running.url("/metrics")).await;
    parse_metrics(&text)
        .into_iter()
        .find(|(s, _)| s == "trustkeeper_reconciles_total")
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no trustkeeper_reconciles_total in\n{text}"))
}

/// Waits until the count stops moving for `quiet` (at most 30 s), and returns it.
async fn settled(running: &Running, quiet: Duration) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = reconciles(running).await;
    loop {
        tokio::time::sleep(quiet).await;
        let now = reconciles(running).await;
        if now == last || tokio::time::Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

async fn annotate(api: &Api<SignedImage>, name: &str, annotations: Value) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
    )
    .await
    .unwrap();
}

fn handled(si: &SignedImage) -> Option<String> {
    si.status
        .as_ref()
        .and_then(|s| s.last_handled_renew_request.clone())
}

async fn wait_handled(api: &Api<SignedImage>, name: &str, token: &str) {
    let echoed = eventually(Duration::from_secs(30), || async {
        handled(&api.get(name).await.unwrap()).as_deref() == Some(token)
    })
    .await;
    assert!(
        echoed.is_ok(),
        "{token} not echoed: {:?}",
        api.get(name).await.unwrap().status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renew_request_runs_one_reconcile_and_is_echoed_without_a_loop() {
    let client = client().await;
    install_crd(&client).await;
    let ns = unique("renew");
    let fake = FakeReconciler::new(signed_outcome());
    let recording = Recording {
        inner: fake.clone(),
        forced: Arc::default(),
    };
    let running = Running::start(&client, recording.clone(), secrets(&ns), config(&ns, "r")).await;
    let api: Api<SignedImage> = Api::namespaced(client.clone(), &ns);
    create_image(&client, &ns, "app", "registry.example/app").await;
    eventually(Duration::from_secs(30), || async {
        controller_support::ready_of(&api.get("app").await.unwrap()).is_some()
    })
    .await
    .expect("first reconcile");
    // The creation is one reconcile; the status it wrote is none.
    let first = settled(&running, Duration::from_secs(2)).await;
    assert_eq!(first, 1.0, "reconciles after the creation");
    assert_eq!(*recording.forced.lock().unwrap(), vec![false]);

    // An annotation that is not the request is no reconcile.
    annotate(&api, "app", json!({"example.com/unrelated": "1"})).await;
    assert_eq!(settled(&running, Duration::from_secs(2)).await, first);

    // A request: one reconcile (past the not-due schedule: the status says 1 h from now), echoed,
    // and the echo (a status write) is no reconcile.
    annotate(&api, "app", json!({RENEW_REQUESTED_AT: "req-1"})).await;
    wait_handled(&api, "app", "req-1").await;
    let quiet = Duration::from_secs(5);
    let started = std::time::Instant::now();
    let after = settled(&running, quiet).await;
    assert_eq!(after, first + 1.0, "one reconcile per request");
    // Nothing more over 5 s after the echo.
    tokio::time::sleep(quiet).await;
    assert_eq!(reconciles(&running).await, after, "a reconcile loop");
    eprintln!(
        "after the echo: {} reconciles over {:.1} s",
        reconciles(&running).await - after,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(*recording.forced.lock().unwrap(), vec![false, false]);

    // Forced: the engine gets force_renew.
    annotate(
        &api,
        "app",
        json!({RENEW_REQUESTED_AT: "req-2", RENEW_MODE: "force"}),
    )
    .await;
    wait_handled(&api, "app", "req-2").await;
    assert_eq!(settled(&running, Duration::from_secs(2)).await, after + 1.0);
    assert_eq!(*recording.forced.lock().unwrap(), vec![false, false, true]);

    // An unknown mode is refused: one reconcile (the annotation changed), no engine run, no echo.
    annotate(
        &api,
        "app",
        json!({RENEW_REQUESTED_AT: "req-3", RENEW_MODE: "froce"}),
    )
    .await;
    let refused = settled(&running, Duration::from_secs(2)).await;
    assert_eq!(refused, after + 2.0);
    assert_eq!(fake.calls().len(), 3, "no engine run for a refused request");
    assert_eq!(
        handled(&api.get("app").await.unwrap()).as_deref(),
        Some("req-2")
    );
    // ... and says so in a Warning Event that names the value and the one it expects.
    let events: Api<KubeEvent> = Api::namespaced(client.clone(), &ns);
    let refused = eventually(Duration::from_secs(10), || async {
        events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("InvalidRenewRequest")
                    && e.type_.as_deref() == Some("Warning")
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.contains("\"froce\"") && n.contains("\"force\""))
            })
    })
    .await;
    assert!(refused.is_ok(), "no InvalidRenewRequest Event");
    // `status` shows it among the SignedImage's Events, and the pending request.
    let o = trustkeeper(&["status", "app", "-n", &ns]);
    let text = out(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("Events (newest last):"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("  Warning  InvalidRenewRequest") && l.contains("\"froce\"")),
        "{text}"
    );
    assert!(text.contains("last handled req-2, pending req-3"), "{text}");
    let o = trustkeeper(&["status", "app", "-n", &ns, "-o", "json"]);
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let events = doc["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["reason"] == "InvalidRenewRequest"),
        "{doc}"
    );
    assert!(events.iter().any(|e| e["reason"] == "Signed"), "{doc}");

    // A restarted controller handles what is pending and nothing else: req-3 once the mode is
    // fixed, while stopped.
    running.stop().await.unwrap();
    annotate(&api, "app", json!({RENEW_MODE: null})).await;
    let running = Running::start(&client, recording.clone(), secrets(&ns), config(&ns, "r")).await;
    wait_handled(&api, "app", "req-3").await;
    assert_eq!(settled(&running, Duration::from_secs(3)).await, 1.0);
    assert_eq!(
        *recording.forced.lock().unwrap(),
        vec![false, false, true, false]
    );
    running.stop().await.unwrap();
}

// --- the CLI and the real engine ---------------------------------------------------------

fn kubeconfig() -> PathBuf {
    PathBuf::from(std::env::var("TRUSTKEEPER_KUBE_TESTBED").expect("TRUSTKEEPER_KUBE_TESTBED"))
        .join("kubeconfig")
}

/// `program` (the binary, or a link to it) with only the kube testbed's kubeconfig.
fn run(program: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut c = Command::new(program);
    c.args(args)
        .env("KUBECONFIG", kubeconfig())
        .env("HOME", home.path())
        .env_remove("TRUSTKEEPER_TIMEOUT")
        .env_remove("TRUSTKEEPER_LOG")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn trustkeeper(args: &[&str]) -> Output {
    run(
        std::path::Path::new(env!("CARGO_BIN_EXE_trustkeeper")),
        args,
        &[],
    )
}

fn out(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The version of `role` the notary server serves for `gun`.
async fn server_version(tb: &Testbed, gun: &str, role: &str) -> u64 {
    trustkeeper::tls::install_crypto_provider();
    let http = reqwest::Client::builder()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&tb.ca_pem()).unwrap())
        .build()
        .unwrap();
    let url = format!("{}/v2/{gun}/_trust/tuf/{role}.json", tb.var("NOTARY_URL"));
    let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
    v["signed"]["version"].as_u64().unwrap()
}

fn signer_secrets(tb: &Testbed, seed: &Seed, ns: &str) -> MapSecrets {
    let key = std::fs::read(seed.var("DELEGATION_KEY")).unwrap();
    let pass = std::fs::read(seed.var("DELEGATION_PASSPHRASE_FILE")).unwrap();
    MapSecrets::default().with_secret(
        ns,
        "signer",
        None,
        &[
            ("key.pem", &key),
            ("passphrase", &pass),
            ("ca.crt", &tb.ca_pem()),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_force_wait_resigns_every_held_role_and_status_shows_it() {
    let tb = Testbed::get();
    let seed = tb.seed("renew");
    let client = client().await;
    install_crd(&client).await;
    let ns = unique("renew-cli");
    let recording = Recording {
        inner: Engine::default(),
        forced: Arc::default(),
    };
    let running = Running::start(
        &client,
        recording.clone(),
        signer_secrets(tb, &seed, &ns),
        config(&ns, "renew-cli"),
    )
    .await;
    let api: Api<SignedImage> = Api::namespaced(client.clone(), &ns);
    let obj: SignedImage = serde_json::from_value(json!({
        "apiVersion": "trustkeeper.dev/v1alpha1", "kind": "SignedImage",
        "metadata": {"name": "app", "namespace": ns},
        "spec": {
            "image": seed.gun, "tags": ["v1"],
            "signingKey": {"secretRef": {"name": "signer"}},
            "registry": {"ca": {"secretKeyRef": {"name": "signer", "key": "ca.crt"}}},
            "notary": {"url": tb.var("NOTARY_URL"), "ca": {"secretKeyRef": {"name": "signer", "key": "ca.crt"}}},
            "interval": "1h"
        }
    }))
    .unwrap();
    api.create(&Default::default(), &obj).await.unwrap();
    let ready = eventually(Duration::from_secs(60), || async {
        controller_support::ready_of(&api.get("app").await.unwrap())
            .is_some_and(|(s, _, _)| s == "True")
    })
    .await;
    assert!(
        ready.is_ok(),
        "not Ready: {:?}",
        api.get("app").await.unwrap().status
    );
    let first = settled(&running, Duration::from_secs(2)).await;
    assert_eq!(first, 1.0);

    let st = api.get("app").await.unwrap().status.unwrap();
    let held: Vec<String> = (st.roles.iter())
        .filter(|r| r.renewal_time.is_some())
        .map(|r| r.name.clone())
        .collect();
    let others: Vec<String> = (st.roles.iter())
        .filter(|r| r.renewal_time.is_none())
        .map(|r| r.name.clone())
        .collect();
    assert!(!held.is_empty(), "the key holds no role: {st:?}");
    let mut before = Vec::new();
    for r in held.iter().chain(&others) {
        before.push(server_version(tb, &seed.gun, r).await);
    }

    // A plain request on a fresh repository publishes nothing.
    let o = trustkeeper(&["renew", "app", "-n", &ns, "--wait", "--timeout", "60s"]);
    assert!(o.status.success(), "{}", out(&o));
    for (r, v) in held.iter().chain(&others).zip(&before) {
        assert_eq!(server_version(tb, &seed.gun, r).await, *v, "{r} re-signed");
    }

    // --force --wait: every held role goes up by one on the server, the others stay.
    let started = std::time::Instant::now();
    let o = trustkeeper(&[
        "renew",
        "app",
        "-n",
        &ns,
        "--force",
        "--wait",
        "--timeout",
        "60s",
    ]);
    let waited = started.elapsed();
    let text = out(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("Ready:      True"), "{text}");
    let si = api.get("app").await.unwrap();
    let token = si.metadata.annotations.as_ref().unwrap()[RENEW_REQUESTED_AT].clone();
    assert_eq!(handled(&si).as_deref(), Some(token.as_str()));
    for (i, r) in held.iter().chain(&others).enumerate() {
        let now = server_version(tb, &seed.gun, r).await;
        let want = before[i] + u64::from(i < held.len());
        assert_eq!(now, want, "{r}: version {} -> {now}", before[i]);
    }
    eprintln!("renew --force --wait returned after {waited:?}");
    // The Go client still reads the repository and the signed tag.
    let listed = tb.notary(&["list", &seed.gun, "-r", "targets/releases"]);
    assert!(listed.status.success(), "{listed:?}");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("v1"));
    assert_eq!(*recording.forced.lock().unwrap(), vec![false, false, true]);
    // No reconcile on our own status writes after that.
    let after = settled(&running, Duration::from_secs(3)).await;
    assert_eq!(after, first + 2.0);

    // status: text and JSON say what the status holds.
    let o = trustkeeper(&["status", "app", "-n", &ns]);
    let text = out(&o);
    assert!(o.status.success(), "{text}");
    let st = si.status.as_ref().unwrap();
    assert!(
        text.contains(&format!("Renew request:    last handled {token}\n")),
        "{text}"
    );
    for r in &st.roles {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("  {} ", r.name))
                    && l.contains(&format!("  version {}  expires ", r.version))),
            "{}: {text}",
            r.name
        );
    }
    assert!(text.contains("Tags:       1/1 signed"), "{text}");
    let o = trustkeeper(&["status", "app", "-n", &ns, "-o", "json"]);
    assert!(o.status.success(), "{}", out(&o));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["status"], serde_json::to_value(st).unwrap());
    assert_eq!(doc["renewRequest"]["pending"], false);
    assert_eq!(doc["renewRequest"]["mode"], "force");

    // Not found, and nothing handles a request in a namespace no controller watches.
    let o = trustkeeper(&["status", "nope", "-n", &ns]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("signedimage") && out(&o).contains("not found"));
    running.stop().await.unwrap();
    let started = std::time::Instant::now();
    let o = trustkeeper(&["renew", "app", "-n", &ns, "--wait", "--timeout", "2s"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("did not handle the renew request"),
        "{}",
        out(&o)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let o = trustkeeper(&["status", "app", "-n", &ns]);
    assert!(out(&o).contains(", pending "), "{}", out(&o));
}

// --- the kubectl plugin ------------------------------------------------------------------

fn kubectl() -> PathBuf {
    let helm = std::env::var("TRUSTKEEPER_HELM").expect(
        "TRUSTKEEPER_HELM is not set: `tests/support/kube-testbed.sh tools DIR`, then export \
         TRUSTKEEPER_HELM=DIR/bin/helm (kubectl is installed beside it)",
    );
    let k = PathBuf::from(helm).with_file_name("kubectl");
    assert!(
        k.exists(),
        "no kubectl beside TRUSTKEEPER_HELM: {}",
        k.display()
    );
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_as_kubectl_trustkeeper_is_a_kubectl_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("kubectl-trustkeeper");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_trustkeeper"), &plugin).unwrap();

    let o = run(&plugin, &["--help"], &[]);
    let text = out(&o);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("Usage: kubectl trustkeeper [OPTIONS] <COMMAND>"),
        "{text}"
    );
    let o = run(&plugin, &["renew", "--help"], &[]);
    assert!(out(&o).contains("Usage: kubectl trustkeeper renew [OPTIONS] <NAME>"));
    let o = run(&plugin, &["renew"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(
        out(&o).contains("Usage: kubectl trustkeeper renew"),
        "{}",
        out(&o)
    );
    // Under its own name, the usage is trustkeeper's.
    let o = trustkeeper(&["--help"]);
    assert!(out(&o).contains("Usage: trustkeeper [OPTIONS] <COMMAND>"));

    // kubectl finds it on PATH and runs `inspect` through it, against the real notary server.
    let tb = Testbed::get();
    let seed = tb.seed("plugin");
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let trust = tempfile::tempdir().unwrap();
    let trust_dir = trust.path().join("trust");
    let env = [
        ("PATH", path.as_str()),
        ("TRUSTKEEPER_CA_FILE", tb.var("CA_CERT")),
        ("TRUSTKEEPER_NOTARY_URL", tb.var("NOTARY_URL")),
        ("TRUSTKEEPER_TRUST_DIR", trust_dir.to_str().unwrap()),
    ];
    let o = run(&kubectl(), &["plugin", "list"], &env);
    assert!(out(&o).contains("kubectl-trustkeeper"), "{}", out(&o));
    let o = run(
        &kubectl(),
        &["trustkeeper", "inspect", &seed.gun, "-o", "json"],
        &env,
    );
    let text = out(&o);
    assert!(o.status.success(), "{text}");
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let digest = seed.var("SIGNED_DIGEST");
    assert!(
        doc.to_string()
            .contains(digest.trim_start_matches("sha256:")),
        "inspect does not show v1 = {digest}: {text}"
    );

    // And `status` through kubectl, on the kube testbed (no controller: no status yet).
    let client = client().await;
    install_crd(&client).await;
    let ns = unique("plugin");
    create_image(&client, &ns, "app", "registry.example/app").await;
    let o = run(
        &kubectl(),
        &["trustkeeper", "status", "app", "-n", &ns],
        &env,
    );
    let text = out(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains(&format!("Namespace:  {ns}")), "{text}");
    assert!(text.contains("Ready:      unknown"), "{text}");
}
