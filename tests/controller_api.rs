//! The controller against a REAL Kubernetes API server (the upstream apiextensions-apiserver with
//! etcd, `tests/support/kube-testbed.sh up DIR`, `TRUSTKEEPER_KUBE_TESTBED=DIR`), with a fake
//! Reconciler in place of the engine and Secrets served from a map (the test server has no core
//! API). Events and the Lease go to the server's shim CRDs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use trustkeeper::api::{
    ConditionStatus, READY, RoleStatus, SignedImage, SignedImageStatus, SignedTag, reasons,
    set_condition,
};
use trustkeeper::controller::fake::FakeReconciler;
use trustkeeper::controller::{ControllerConfig, Error, LeaseConfig, MapSecrets, run_with};
use trustkeeper::engine::{EngineEvent, EventType, Outcome};

const PASSPHRASE: &str = "pass-7f3a9c-never-log-me";
const TOKEN: &str = "webhook-token-5d1e";

/// All log lines of this test binary (JSON), to scan for secrets.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        trustkeeper::controller::logging::init_with_writer("debug", SharedWriter(buf.clone()));
        buf
    })
}

#[derive(Clone)]
struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for SharedWriter {
    type Writer = SharedWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

async fn client() -> Client {
    trustkeeper::tls::install_crypto_provider();
    let _ = logs();
    let dir = std::env::var("TRUSTKEEPER_KUBE_TESTBED").expect(
        "TRUSTKEEPER_KUBE_TESTBED is not set: run scripts/test.sh, or start \
         `tests/support/kube-testbed.sh up DIR` and export TRUSTKEEPER_KUBE_TESTBED=DIR",
    );
    let kubeconfig = Kubeconfig::read_from(Path::new(&dir).join("kubeconfig")).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

async fn install_crd(client: &Client) {
    let text =
        std::fs::read_to_string(root().join("crds/signedimages.trustkeeper.dev.yaml")).unwrap();
    let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().unwrap();
    crds.patch(
        &name,
        &PatchParams::apply("trustkeeper-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    let si: Api<SignedImage> = Api::namespaced(client.clone(), "default");
    eventually(Duration::from_secs(60), || async {
        let c = crds.get(&name).await.unwrap();
        let established = c
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        established && si.list(&ListParams::default()).await.is_ok()
    })
    .await
    .expect("CRD established");
}

/// Polls `f` every 100 ms until true; `Err` after `timeout`.
async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> Result<(), ()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn signed_outcome() -> Outcome {
    let now = jiff::Timestamp::now();
    let mut status = SignedImageStatus {
        signed_tags: vec![SignedTag {
            tag: "v1".into(),
            digest: format!("sha256:{}", "b".repeat(64)),
            size: 1234,
            media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
            role: "targets/releases".into(),
        }],
        tag_summary: Some("1/1".into()),
        roles: vec![RoleStatus {
            name: "targets/releases".into(),
            version: 7,
            expires: Time("2029-11-25T00:00:00Z".parse().unwrap()),
            renewal_time: Some(Time("2029-05-19T00:00:00Z".parse().unwrap())),
            targets: 1,
        }],
        ..Default::default()
    };
    set_condition(
        &mut status.conditions,
        READY,
        ConditionStatus::True,
        reasons::SIGNED,
        "1/1 tags signed",
        None,
        now,
    );
    Outcome {
        status,
        events: vec![EngineEvent {
            type_: EventType::Normal,
            reason: "Signed".into(),
            note: "signed v1 into targets/releases".into(),
        }],
        requeue_at: now + jiff::SignedDuration::from_hours(1),
        publishes: 1,
        renewed: vec![],
        signed: vec!["v1".into()],
        failure_reason: None,
    }
}

fn secrets(ns: &str) -> MapSecrets {
    MapSecrets::default().with_secret(
        ns,
        "signer",
        None,
        &[
            ("key.pem", b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n"),
            ("passphrase", PASSPHRASE.as_bytes()),
        ],
    )
}

async fn create_image(client: &Client, ns: &str, name: &str, image: &str) -> SignedImage {
    let api: Api<SignedImage> = Api::namespaced(client.clone(), ns);
    let obj: SignedImage = serde_json::from_value(json!({
        "apiVersion": "trustkeeper.dev/v1alpha1", "kind": "SignedImage",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"image": image, "tags": ["v*"], "signingKey": {"secretRef": {"name": "signer"}}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap()
}

/// A running controller in this process.
struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Running {
    async fn start(
        client: &Client,
        fake: FakeReconciler,
        secrets: MapSecrets,
        config: ControllerConfig,
    ) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(run_with(
            client.clone(),
            fake,
            secrets,
            config,
            listener,
            async move {
                let _ = rx.await;
            },
        ));
        Running {
            addr,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) -> Result<(), Error> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("controller stops after the signal")
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn config(ns: &str, identity: &str) -> ControllerConfig {
    let mut c = ControllerConfig::new(identity);
    c.namespaces = Some(vec![ns.to_string()]);
    c.concurrency = 4;
    c.webhook_token = Some(TOKEN.to_string().into());
    c
}

fn ready_of(si: &SignedImage) -> Option<(String, String, Option<i64>)> {
    si.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == READY)
            .map(|c| (c.status.clone(), c.reason.clone(), s.observed_generation))
    })
}

/// Parses OpenMetrics text into (series with labels, value).
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("series value");
            (
                series.to_string(),
                value.parse::<f64>().expect("numeric value"),
            )
        })
        .collect()
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(
        !text.contains(PASSPHRASE),
        "the passphrase appears in {what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciles_spec_changes_and_stops_after_delete() {
    let client = client().await;
    install_crd(&client).await;
    let ns = unique("ctl");
    let mut fake = FakeReconciler::new(signed_outcome());
    fake.expect_passphrase = Some(PASSPHRASE.into());
    let running = Running::start(&client, fake.clone(), secrets(&ns), config(&ns, "solo")).await;
    let api: Api<SignedImage> = Api::namespaced(client.clone(), &ns);
    create_image(&client, &ns, "app", "registry.example.com:5000/team/app").await;

    eventually(Duration::from_secs(30), || async {
        ready_of(&api.get("app").await.unwrap()) == Some(("True".into(), "Signed".into(), Some(1)))
    })
    .await
    .expect("status Ready=True for generation 1");
    let si = api.get("app").await.unwrap();
    let st = si.status.clone().unwrap();
    assert_eq!(
        st.signed_tags[0].digest,
        format!("sha256:{}", "b".repeat(64))
    );
    assert_eq!(st.conditions[0].observed_generation, Some(1));
    let managers: Vec<_> = si
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.subresource.as_deref() == Some("status"))
        .map(|m| {
            (
                m.manager.unwrap_or_default(),
                m.operation.unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        managers,
        vec![("trustkeeper".to_string(), "Apply".to_string())]
    );

    // The Event of the outcome, on the shim events.k8s.io.
    let events: Api<KubeEvent> = Api::namespaced(client.clone(), &ns);
    eventually(Duration::from_secs(10), || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Signed"))
    })
    .await
    .expect("a Signed Event");

    // Our own status write does not trigger another run (generation filter): one call only.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.calls().len(), 1, "{:?}", fake.calls());
    let call = &fake.calls()[0];
    assert_eq!(call.id, format!("{ns}/app"));
    assert!(call.had_passphrase && call.key_len > 0);

    // Metrics.
    let text = reqwest::get(running.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = parse_metrics(&text);
    let expiry = format!(
        "trustkeeper_role_expiry_timestamp_seconds{{namespace=\"{ns}\",name=\"app\",role=\"targets/releases\"}}"
    );
    let got = series.iter().find(|(s, _)| *s == expiry).map(|(_, v)| *v);
    assert_eq!(got, Some(1890259200.0), "{text}");
    let tags = format!("trustkeeper_signed_tags{{namespace=\"{ns}\",name=\"app\"}}");
    assert!(
        series.iter().any(|(s, v)| *s == tags && *v == 1.0),
        "{text}"
    );
    assert!(
        series
            .iter()
            .any(|(s, v)| s == "trustkeeper_publishes_total" && *v >= 1.0)
    );
    assert!(
        series
            .iter()
            .any(|(s, _)| s.starts_with("trustkeeper_role_time_to_renewal_seconds{"))
    );
    assert!(
        series
            .iter()
            .any(|(s, v)| s == "trustkeeper_reconcile_duration_seconds_count" && *v >= 1.0)
    );
    assert_eq!(
        reqwest::get(running.url("/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(running.url("/readyz")).await.unwrap().status(),
        200
    );

    // Edit the spec: re-reconciled with the new generation. Short requeues from now on.
    fake.set_requeue_after(Duration::from_millis(500));
    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"tags": ["v*", "latest"]}})),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(30), || async {
        ready_of(&api.get("app").await.unwrap()) == Some(("True".into(), "Signed".into(), Some(2)))
    })
    .await
    .expect("re-reconciled for generation 2");
    assert!(fake.calls().iter().any(|c| c.generation == Some(2)));

    // Delete: no reconcile of it runs any more, and its series go.
    api.delete("app", &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(10), || async {
        api.get_opt("app").await.unwrap().is_none()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after_delete = fake.calls().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        fake.calls().len(),
        after_delete,
        "reconciles continued after delete"
    );
    let text = reqwest::get(running.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains(&format!("namespace=\"{ns}\"")), "{text}");

    running.stop().await.unwrap();

    // No secret anywhere we write.
    let events_json =
        serde_json::to_string(&events.list(&ListParams::default()).await.unwrap()).unwrap();
    assert_no_secret("Events", &events_json);
    assert_no_secret("metrics", &text);
    assert_no_secret("logs", &log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_problem_is_a_status_reason_and_not_a_storm() {
    let client = client().await;
    install_crd(&client).await;
    let ns = unique("ctl-secret");
    let fake = FakeReconciler::new(signed_outcome());
    let running = Running::start(
        &client,
        fake.clone(),
        MapSecrets::default(),
        config(&ns, "solo"),
    )
    .await;
    let api: Api<SignedImage> = Api::namespaced(client.clone(), &ns);
    create_image(&client, &ns, "app", "registry.example.com/team/app").await;
    eventually(Duration::from_secs(30), || async {
        ready_of(&api.get("app").await.unwrap())
            == Some(("False".into(), "SecretNotFound".into(), Some(1)))
    })
    .await
    .expect("SecretNotFound");
    let si = api.get("app").await.unwrap();
    let st = si.status.unwrap();
    assert!(
        st.conditions[0]
            .message
            .contains(&format!("Secret {ns}/signer"))
    );
    assert_eq!(st.failed_attempts, 1);
    let rv = si.metadata.resource_version.clone();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Backoff (≥ 30 s): nothing more was written, the engine never ran.
    assert_eq!(api.get("app").await.unwrap().metadata.resource_version, rv);
    assert!(fake.calls().is_empty());
    running.stop().await.unwrap();
}

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases
        .get_opt(name)
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_hands_over_on_shutdown() {
    let client = client().await;
    install_crd(&client).await;
    let ns = unique("ctl-lease");
    let lease = |id: &str| {
        let mut l = LeaseConfig::new(&ns, id);
        l.name = "trustkeeper-test".into();
        l.lease_duration = Duration::from_secs(4);
        l.renew_deadline = Duration::from_secs(3);
        l.retry_period = Duration::from_millis(300);
        l
    };
    let fake_a = FakeReconciler::new(signed_outcome());
    let fake_b = FakeReconciler::new(signed_outcome());
    let mut ca = config(&ns, "replica-a");
    ca.lease = Some(lease("replica-a"));
    let mut cb = config(&ns, "replica-b");
    cb.lease = Some(lease("replica-b"));
    let a = Running::start(&client, fake_a.clone(), secrets(&ns), ca).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    eventually(Duration::from_secs(10), || async {
        holder(&leases, "trustkeeper-test").await.as_deref() == Some("replica-a")
    })
    .await
    .expect("replica-a leads");
    let b = Running::start(&client, fake_b.clone(), secrets(&ns), cb).await;

    create_image(&client, &ns, "app", "registry.example.com/team/app").await;
    eventually(Duration::from_secs(30), || async {
        !fake_a.calls().is_empty()
    })
    .await
    .expect("the leader reconciles");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(fake_b.calls().is_empty(), "the standby must not reconcile");
    assert_eq!(
        holder(&leases, "trustkeeper-test").await.as_deref(),
        Some("replica-a")
    );
    // The standby refuses notifications (503): the registry retries, the leader gets them.
    let r = reqwest::Client::new()
        .post(b.url("/notifications"))
        .bearer_auth(TOKEN)
        .body(r#"{"events":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);

    // SIGTERM to the leader: it releases the Lease, and the standby takes over at once (well
    // before the 4 s lease duration would expire) and reconciles.
    let stopped = std::time::Instant::now();
    a.stop().await.unwrap();
    assert_eq!(holder(&leases, "trustkeeper-test").await, None);
    eventually(Duration::from_secs(10), || async {
        holder(&leases, "trustkeeper-test").await.as_deref() == Some("replica-b")
    })
    .await
    .expect("replica-b takes over");
    eventually(Duration::from_secs(30), || async {
        !fake_b.calls().is_empty()
    })
    .await
    .expect("the new leader reconciles");
    assert!(stopped.elapsed() < Duration::from_secs(15));
    let lease_obj = leases.get("trustkeeper-test").await.unwrap();
    assert_eq!(lease_obj.spec.unwrap().lease_transitions, Some(1));

    // Someone else takes the Lease: replica-b stops with LeadershipLost (no zombie controller).
    let mut l = leases.get("trustkeeper-test").await.unwrap();
    l.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
    leases
        .replace("trustkeeper-test", &PostParams::default(), &l)
        .await
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), b.task)
        .await
        .expect("replica-b exits when leadership is lost")
        .unwrap();
    assert!(matches!(res, Err(Error::LeadershipLost(_))), "{res:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_notification_triggers_an_immediate_reconcile() {
    let client = client().await;
    install_crd(&client).await;
    let ns = unique("ctl-notify");
    let fake = FakeReconciler::new(signed_outcome()); // requeue in 1 h: only a push wakes it
    let running = Running::start(&client, fake.clone(), secrets(&ns), config(&ns, "solo")).await;
    let api: Api<SignedImage> = Api::namespaced(client.clone(), &ns);
    create_image(&client, &ns, "app", "registry.example.com:5000/team/app").await;
    create_image(
        &client,
        &ns,
        "other",
        "registry.example.com:5000/team/other",
    )
    .await;
    eventually(Duration::from_secs(30), || async {
        fake.calls().len() == 2
    })
    .await
    .expect("both reconciled once");
    eventually(Duration::from_secs(10), || async {
        ready_of(&api.get("app").await.unwrap()).is_some()
    })
    .await
    .unwrap();

    let http = reqwest::Client::new();
    let envelope = json!({"events": [{
        "id": "e1", "timestamp": "2026-11-25T21:00:00Z", "action": "push",
        "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                   "repository": "team/app", "tag": "v2", "digest": "sha256:0123", "size": 528},
        "request": {"host": "registry.example.com:5000", "method": "PUT"}
    }]});
    let post = |auth: Option<&str>| {
        let mut r = http
            .post(running.url("/notifications"))
            .header(
                "Content-Type",
                "application/vnd.docker.distribution.events.v1+json",
            )
            .body(envelope.to_string());
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        r.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(post(Some("Bearer wrong")).await.unwrap().status(), 401);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fake.calls().len(),
        2,
        "a refused notification triggers nothing"
    );

    let started = std::time::Instant::now();
    let r = post(Some(&format!("Bearer {TOKEN}"))).await.unwrap();
    assert_eq!(r.status(), 202);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["triggered"],
        json!([format!("SignedImage.v1alpha1.trustkeeper.dev/app.{ns}")])
    );
    eventually(Duration::from_secs(5), || async { fake.calls().len() == 3 })
        .await
        .expect("the push triggered a reconcile");
    assert!(started.elapsed() < Duration::from_secs(5));
    let calls = fake.calls();
    assert_eq!(
        calls[2].id,
        format!("{ns}/app"),
        "only the pushed repository"
    );
    running.stop().await.unwrap();
    assert_no_secret("logs", &log_text());
    assert!(
        !log_text().contains(TOKEN),
        "the webhook token appears in the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_of_a_reconcile_carry_namespace_and_name() {
    let client = client().await;
    install_crd(&client).await;
    let ns = unique("ctl-logs");
    let fake = FakeReconciler::new(signed_outcome());
    let running = Running::start(&client, fake.clone(), secrets(&ns), config(&ns, "solo")).await;
    create_image(&client, &ns, "app", "registry.example.com/team/app").await;
    eventually(Duration::from_secs(30), || async {
        !fake.calls().is_empty()
    })
    .await
    .unwrap();
    running.stop().await.unwrap();
    let text = log_text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|v: &serde_json::Value| v["namespace"] == ns.as_str())
        .collect();
    assert!(
        lines.iter().any(|l| l["message"] == "engine run finished"),
        "{text}"
    );
    if std::env::var_os("TRUSTKEEPER_SHOW_LOGS").is_some() {
        for l in &lines {
            println!("{l}");
        }
    }
    for l in &lines {
        assert_eq!(l["name"], "app", "{l}");
        assert!(l["level"].is_string() && l["timestamp"].is_string(), "{l}");
    }
}
