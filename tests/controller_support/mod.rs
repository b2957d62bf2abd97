//! Helpers shared by the controller tests against the real API server.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use trustkeeper::api::Time;
use trustkeeper::api::{
    ConditionStatus, READY, RoleStatus, SignedImage, SignedImageStatus, SignedTag, reasons,
    set_condition,
};
use trustkeeper::controller::{ControllerConfig, Error, MapSecrets, SecretSource, run_with};
use trustkeeper::engine::{EngineEvent, EventType, Outcome, Reconciler};

pub const PASSPHRASE: &str = "pass-7f3a9c-never-log-me";
pub const TOKEN: &str = "webhook-token-5d1e";

/// All log lines of this test binary (JSON), to scan for secrets.
pub fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        trustkeeper::controller::logging::init_with_writer("debug", SharedWriter(buf.clone()));
        buf
    })
}

#[derive(Clone)]
pub struct SharedWriter(Arc<Mutex<Vec<u8>>>);

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

pub fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

/// A client, with this binary's log lines captured (see [`logs`]).
pub async fn client() -> Client {
    let _ = logs();
    plain_client().await
}

/// A client, logs not captured (nothing is logged).
pub async fn plain_client() -> Client {
    trustkeeper::tls::install_crypto_provider();
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

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub async fn install_crd(client: &Client) {
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
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> Result<(), ()>
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

pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn signed_outcome() -> Outcome {
    let now = jiff::Timestamp::now();
    let mut status = SignedImageStatus {
        next_sync_time: Some(Time(now + jiff::SignedDuration::from_hours(1))),
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
        requeue_at: Some(now + jiff::SignedDuration::from_hours(1)),
        publishes: 1,
        renewed: vec![],
        signed: vec!["v1".into()],
        signed_formats: vec![],
        failure_reason: None,
        requests: Default::default(),
    }
}

pub fn secrets(ns: &str) -> MapSecrets {
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

pub async fn create_image(client: &Client, ns: &str, name: &str, image: &str) -> SignedImage {
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
pub struct Running {
    pub addr: SocketAddr,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Running {
    pub async fn start<R: Reconciler, S: SecretSource>(
        client: &Client,
        reconciler: R,
        secrets: S,
        config: ControllerConfig,
    ) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(run_with(
            client.clone(),
            reconciler,
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

    pub async fn stop(mut self) -> Result<(), Error> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("controller stops after the signal")
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

pub fn config(ns: &str, identity: &str) -> ControllerConfig {
    let mut c = ControllerConfig::new(identity);
    c.namespaces = Some(vec![ns.to_string()]);
    c.concurrency = 4;
    c.webhook_token = Some(TOKEN.to_string().into());
    c
}

pub fn ready_of(si: &SignedImage) -> Option<(String, String, Option<i64>)> {
    si.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == READY)
            .map(|c| (c.status.clone(), c.reason.clone(), s.observed_generation))
    })
}

/// The text a `/metrics` endpoint serves.
pub async fn metrics_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// Parses OpenMetrics text into (series with labels, value).
pub fn parse_metrics(text: &str) -> Vec<(String, f64)> {
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

pub fn assert_no_secret(what: &str, text: &str) {
    assert!(
        !text.contains(PASSPHRASE),
        "the passphrase appears in {what}"
    );
}
