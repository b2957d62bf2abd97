//! The controller against a REAL Kubernetes API server (the upstream apiextensions-apiserver with
//! etcd, `tests/support/kube-testbed.sh up DIR`, `TRUSTKEEPER_KUBE_TESTBED=DIR`), with a fake
//! Reconciler in place of the engine and Secrets served from a map (the test server has no core
//! API). Events and the Lease go to the server's shim CRDs.

mod controller_support;

use std::time::Duration;

use controller_support::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use trustkeeper::api::SignedImage;
use trustkeeper::controller::fake::FakeReconciler;
use trustkeeper::controller::{Error, LeaseConfig, MapSecrets};

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
    let text = metrics_text(&running.url("/metrics")).await;
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
    let ready = format!(
        "trustkeeper_signedimage_ready{{namespace=\"{ns}\",name=\"app\",reason=\"Signed\"}}"
    );
    assert!(
        series.iter().any(|(s, v)| *s == ready && *v == 1.0),
        "{text}"
    );
    let info = format!("trustkeeper_signedimage_info{{namespace=\"{ns}\",name=\"app\",repository=");
    assert!(
        series
            .iter()
            .any(|(s, v)| s.starts_with(&info) && *v == 1.0),
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
    let text = metrics_text(&running.url("/metrics")).await;
    assert!(!text.contains(&format!("namespace=\"{ns}\"")), "{text}");

    running.stop().await.unwrap();

    // No secret anywhere we write.
    let events_json =
        serde_json::to_string(&events.list(&ListParams::default()).await.unwrap()).unwrap();
    assert_no_secret("Events", &events_json);
    let all: Api<SignedImage> = Api::namespaced(client.clone(), &ns);
    let objects = serde_json::to_string(&all.list(&ListParams::default()).await.unwrap()).unwrap();
    assert_no_secret("SignedImages", &objects);
    assert_no_secret("status", &serde_json::to_string(&st).unwrap());
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
    // before the 4 s lease duration would expire). It keeps the schedule the status holds (not
    // due for an hour), and reconciles on the next spec change.
    let stopped = std::time::Instant::now();
    a.stop().await.unwrap();
    assert_eq!(holder(&leases, "trustkeeper-test").await, None);
    eventually(Duration::from_secs(10), || async {
        holder(&leases, "trustkeeper-test").await.as_deref() == Some("replica-b")
    })
    .await
    .expect("replica-b takes over");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(fake_b.calls().is_empty(), "not due yet");
    let api: Api<SignedImage> = Api::namespaced(client.clone(), &ns);
    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"tags": ["v*", "latest"]}})),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(30), || async {
        !fake_b.calls().is_empty()
    })
    .await
    .expect("the new leader reconciles");
    assert_eq!(fake_b.calls()[0].generation, Some(2));
    assert!(stopped.elapsed() < Duration::from_secs(15));
    let lease_obj = leases.get("trustkeeper-test").await.unwrap();
    assert_eq!(lease_obj.spec.unwrap().lease_transitions, Some(1));

    // Someone else takes the Lease: replica-b stops with LeadershipLost (no zombie controller).
    // The intruder writes as any client does, read-modify-write: a renewal by replica-b
    // between its read and its write is a 409 Conflict, and it reads again.
    let mut taken = false;
    for _ in 0..20 {
        let mut l = leases.get("trustkeeper-test").await.unwrap();
        l.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
        match leases
            .replace("trustkeeper-test", &PostParams::default(), &l)
            .await
        {
            Ok(_) => {
                taken = true;
                break;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => panic!("taking the lease: {e}"),
        }
    }
    assert!(taken, "the intruder takes the lease");
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
    assert_eq!(body["triggered"], json!([format!("{ns}/app")]));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leaders_lease_is_taken_over_after_its_duration() {
    let client = client().await;
    let ns = unique("ctl-expired");
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    // A Lease whose holder is gone: nobody renews it any more.
    let ghost: Lease = serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "trustkeeper", "namespace": ns},
        "spec": {"holderIdentity": "ghost", "leaseDurationSeconds": 2,
                 "renewTime": "2026-01-01T00:00:00.000000Z", "leaseTransitions": 3}
    }))
    .unwrap();
    leases.create(&PostParams::default(), &ghost).await.unwrap();
    let mut lease = LeaseConfig::new(&ns, "heir");
    lease.lease_duration = Duration::from_secs(3);
    lease.renew_deadline = Duration::from_secs(2);
    lease.retry_period = Duration::from_millis(200);
    let mut elector = trustkeeper::controller::LeaderElector::new(client.clone(), lease);
    // Not at first sight: expiry is measured on our clock from when we first saw the record.
    assert!(!elector.try_acquire().await.unwrap());
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), elector.acquire())
        .await
        .expect("takes over")
        .unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1800), "{waited:?}");
    let spec = leases.get("trustkeeper").await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("heir"));
    assert_eq!(spec.lease_transitions, Some(4));
    assert_eq!(spec.lease_duration_seconds, Some(3));
    // Renewing keeps it; releasing clears the holder.
    assert!(elector.try_acquire().await.unwrap());
    elector.release().await.unwrap();
    assert_eq!(holder(&leases, "trustkeeper").await, None);
}

/// A real docker-registry (distribution 2.8, Debian's package) configured with a notifications
/// endpoint pointing at the controller: pushing a tag triggers the matching SignedImage at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_registry_push_notification_triggers_the_reconcile() {
    const REGISTRY: &str = "/usr/bin/docker-registry";
    if !std::path::Path::new(REGISTRY).exists() {
        panic!(
            "{REGISTRY} is missing: apt-get install docker-registry (tests/support/testbed.sh does)"
        );
    }
    let client = client().await;
    install_crd(&client).await;
    let ns = unique("ctl-registry");
    let fake = FakeReconciler::new(signed_outcome()); // next run in 1 h: only the push wakes it
    let running = Running::start(&client, fake.clone(), secrets(&ns), config(&ns, "solo")).await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.yml");
    std::fs::write(
        &config_path,
        format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\n\
             http: {{addr: '127.0.0.1:{port}', secret: testsecret}}\n\
             notifications:\n  endpoints:\n  - name: trustkeeper\n    url: {}\n    \
             headers: {{Authorization: ['Bearer {TOKEN}']}}\n    timeout: 2s\n    threshold: 5\n    backoff: 1s\n",
            dir.path().join("data").display(),
            running.url("/notifications"),
        ),
    )
    .unwrap();
    let registry = std::process::Command::new(REGISTRY)
        .arg("serve")
        .arg(&config_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
        .spawn()
        .unwrap();
    let _registry = KillOnDrop(registry);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(15), || async {
        http.get(format!("{base}/v2/"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
    .expect("registry up");

    let image = format!("127.0.0.1:{port}/team/app");
    create_image(&client, &ns, "app", &image).await;
    create_image(
        &client,
        &ns,
        "other",
        &format!("127.0.0.1:{port}/team/other"),
    )
    .await;
    eventually(Duration::from_secs(30), || async {
        fake.calls().len() == 2
    })
    .await
    .expect("first reconciles");

    // Push an image: two blobs, then the manifest by tag.
    use sha2::Digest as _;
    let mut digests = Vec::new();
    for blob in [
        b"{\"architecture\":\"amd64\",\"os\":\"linux\"}".to_vec(),
        b"layer".to_vec(),
    ] {
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&blob)));
        let r = http
            .post(format!("{base}/v2/team/app/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = if location.starts_with("http") {
            location.clone()
        } else {
            format!("{base}{location}")
        };
        let r = http
            .put(format!("{url}{sep}digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        digests.push((digest, blob.len()));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": digests[0].1, "digest": digests[0].0},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": digests[1].1, "digest": digests[1].0}]
    });
    let pushed = std::time::Instant::now();
    let r = http
        .put(format!("{base}/v2/team/app/manifests/v2"))
        .header(
            "Content-Type",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .body(serde_json::to_vec(&manifest).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    eventually(Duration::from_secs(10), || async {
        fake.calls().len() >= 3
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no reconcile after the push; registry log:\n{}",
            std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        )
    });
    let waited = pushed.elapsed();
    let calls = fake.calls();
    assert_eq!(calls[2].id, format!("{ns}/app"));
    assert!(
        calls[2..].iter().all(|c| c.id == format!("{ns}/app")),
        "{calls:?}"
    );
    println!("push → reconcile: {waited:?}");
    assert!(waited < Duration::from_secs(10));

    running.stop().await.unwrap();
}

/// Stops the child process we started (by its handle) when the test ends, pass or fail.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Concurrency is bounded across all watched namespaces (one Controller each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_bounded_across_namespaces() {
    let client = client().await;
    install_crd(&client).await;
    let ns1 = unique("ctl-conc-a");
    let ns2 = unique("ctl-conc-b");
    let fake = FakeReconciler::new(signed_outcome());
    *fake.delay.lock().unwrap() = Some(Duration::from_millis(300));
    let mut cfg = config(&ns1, "solo");
    cfg.namespaces = Some(vec![ns1.clone(), ns2.clone()]);
    cfg.concurrency = 2;
    let mut all = secrets(&ns1);
    all.secrets.extend(secrets(&ns2).secrets);
    for i in 0..4 {
        create_image(
            &client,
            &ns1,
            &format!("a{i}"),
            "registry.example.com/team/a",
        )
        .await;
        create_image(
            &client,
            &ns2,
            &format!("b{i}"),
            "registry.example.com/team/b",
        )
        .await;
    }
    let running = Running::start(&client, fake.clone(), all, cfg).await;
    eventually(Duration::from_secs(30), || async {
        fake.calls().len() == 8
    })
    .await
    .expect("all 8 reconciled");
    let max = fake.max_in_flight.load(std::sync::atomic::Ordering::SeqCst);
    assert!(max <= 2, "{max} engine runs at once");
    assert_eq!(max, 2, "two at once were allowed");
    running.stop().await.unwrap();
}

/// A restarted controller (or a new leader) keeps the schedule in the status: nothing is run
/// before its next run time, but a push notification still runs it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_schedule_in_the_status() {
    let client = client().await;
    install_crd(&client).await;
    let ns = unique("ctl-restart");
    let fake = FakeReconciler::new(signed_outcome()); // next run in 1 h
    let first = Running::start(&client, fake.clone(), secrets(&ns), config(&ns, "solo")).await;
    let api: Api<SignedImage> = Api::namespaced(client.clone(), &ns);
    create_image(&client, &ns, "app", "registry.example.com/team/app").await;
    eventually(Duration::from_secs(30), || async {
        ready_of(&api.get("app").await.unwrap()).is_some()
    })
    .await
    .unwrap();
    first.stop().await.unwrap();
    assert_eq!(fake.calls().len(), 1);

    let second = Running::start(&client, fake.clone(), secrets(&ns), config(&ns, "solo")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        fake.calls().len(),
        1,
        "not due: the restart must not run it"
    );
    // Its metrics are there all the same (from the status).
    let text = metrics_text(&second.url("/metrics")).await;
    assert!(
        text.contains(&format!(
            "trustkeeper_signed_tags{{namespace=\"{ns}\",name=\"app\"}} 1"
        )),
        "{text}"
    );

    let envelope = json!({"events": [{"action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "repository": "team/app", "tag": "v9"},
        "request": {"host": "registry.example.com"}}]});
    let r = reqwest::Client::new()
        .post(second.url("/notifications"))
        .bearer_auth(TOKEN)
        .body(envelope.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    eventually(Duration::from_secs(5), || async { fake.calls().len() == 2 })
        .await
        .expect("the push runs it although not due");
    second.stop().await.unwrap();
}
