//! Mocked-API scenarios (the kube-rs controller-rs pattern): each names the exact requests one
//! reconcile makes (method, path and query, body) and answers them; anything else fails. Every
//! request seen is checked against [`super::API_CALLS`], the list the RBAC rules are made from.

use std::sync::Arc;

use crate::api::Time;
use http::{Request, Response, StatusCode};
use jiff::Timestamp;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, Resource};
use serde_json::{Value, json};

use super::fake::FakeReconciler;
use super::metrics::Metrics;
use super::reconcile::{Context, reconcile};
use super::secrets::KubeSecrets;
use crate::api::{
    ConditionStatus, READY, RoleStatus, SignedImage, SignedImageStatus, SignedTag, reasons,
    set_condition,
};
use crate::engine::{EngineEvent, EventType, Outcome};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const NOW: &str = "2026-11-25T12:00:00Z";
const PASSPHRASE: &str = "correct horse battery staple";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn image(extra_spec: Value, status: Option<Value>) -> SignedImage {
    let mut spec = json!({
        "image": "registry.example.com/team/app",
        "tags": ["v*"],
        "signingKey": {"secretRef": {"name": "signer"}, "keyField": "key.pem", "passphraseField": "passphrase"},
        "validity": "26280h", "renewBefore": "4560h", "interval": "5m", "suspend": false
    });
    for (k, v) in extra_spec.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let mut obj = json!({
        "apiVersion": "trustkeeper.dev/v1alpha1",
        "kind": "SignedImage",
        "metadata": {"name": "app", "namespace": "ns", "uid": "u-1", "generation": 2, "resourceVersion": "10"},
        "spec": spec,
    });
    if let Some(s) = status {
        obj["status"] = s;
    }
    serde_json::from_value(obj).unwrap()
}

fn outcome() -> Outcome {
    let mut status = SignedImageStatus {
        observed_generation: Some(2),
        signed_tags: vec![SignedTag {
            tag: "v1".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 1638,
            media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
            role: "targets/releases".into(),
        }],
        tag_summary: Some("1/1".into()),
        roles: vec![RoleStatus {
            name: "targets/releases".into(),
            version: 4,
            expires: Time("2029-11-25T12:00:00Z".parse().unwrap()),
            renewal_time: Some(Time("2029-05-19T12:00:00Z".parse().unwrap())),
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
        Some(2),
        now(),
    );
    Outcome {
        status,
        events: vec![EngineEvent {
            type_: EventType::Normal,
            reason: "Signed".into(),
            note: "signed v1 (sha256:aaaa…) into targets/releases".into(),
        }],
        requeue_at: Some("2026-11-25T12:05:00Z".parse().unwrap()),
        publishes: 1,
        renewed: vec![],
        signed: vec!["v1".into()],
        signed_formats: vec![],
        failure_reason: None,
        requests: Default::default(),
    }
}

fn context(client: Client, engine: FakeReconciler) -> Arc<Context<FakeReconciler, KubeSecrets>> {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "trustkeeper".into(),
            instance: Some("trustkeeper-0".into()),
        },
    );
    let mut ctx = Context::new(
        client.clone(),
        engine,
        KubeSecrets::new(client),
        recorder,
        Metrics::new(),
    );
    ctx.clock = Arc::new(now);
    ctx.jitter = Arc::new(|| 0.0);
    Arc::new(ctx)
}

fn response(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn not_found(kind: &str, name: &str) -> Value {
    json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
        "message": format!("{kind} \"{name}\" not found"),"reason":"NotFound",
        "details":{"name":name,"kind":kind},"code":404})
}

fn secret(name: &str, type_: &str, data: &[(&str, &str)]) -> Value {
    use base64::Engine as _;
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(v)),
            )
        })
        .collect();
    json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":name,"namespace":"ns"},"type":type_,"data":data})
}

fn signer() -> Value {
    secret(
        "signer",
        "Opaque",
        &[
            ("key.pem", "-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            ("passphrase", PASSPHRASE),
        ],
    )
}

/// (verb, group, resource) of a request, as RBAC names it.
fn rbac_of(req: &Request<Body>) -> (String, String, String) {
    let path = req.uri().path();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = if parts[0] == "api" {
        (String::new(), &parts[2..])
    } else {
        (parts[1].to_string(), &parts[3..])
    };
    let rest = if rest.first() == Some(&"namespaces") {
        &rest[2..]
    } else {
        rest
    };
    let mut resource = rest[0].to_string();
    if rest.len() > 2 {
        resource = format!("{}/{}", rest[0], rest[2]);
    }
    let verb = match req.method().as_str() {
        "GET" if rest.len() == 1 => "list",
        "GET" => "get",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        m => panic!("unexpected method {m}"),
    };
    (verb.into(), group, resource)
}

/// An extra check of a request body.
type BodyCheck = Box<dyn Fn(&Value) + Send>;

/// One expected request and its answer.
struct Call {
    method: &'static str,
    path_and_query: String,
    /// Exact JSON body, or `None` to check nothing here.
    body: Option<Value>,
    /// Checks on the body beyond equality.
    check: Option<BodyCheck>,
    answer: (StatusCode, Value),
}

impl Call {
    fn new(method: &'static str, pq: &str, answer: (StatusCode, Value)) -> Self {
        Call {
            method,
            path_and_query: pq.into(),
            body: None,
            check: None,
            answer,
        }
    }
    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
    fn check(mut self, f: impl Fn(&Value) + Send + 'static) -> Self {
        self.check = Some(Box::new(f));
        self
    }
}

/// Serves `calls` in order, then asserts that no further request arrives.
async fn serve(mut handle: Handle, calls: Vec<Call>) {
    for (i, call) in calls.into_iter().enumerate() {
        let (req, send) = handle.next_request().await.unwrap_or_else(|| {
            panic!(
                "request {i} ({} {}) never came",
                call.method, call.path_and_query
            )
        });
        let rbac = rbac_of(&req);
        assert!(
            super::API_CALLS
                .iter()
                .any(|(v, g, r)| *v == rbac.0 && *g == rbac.1 && *r == rbac.2),
            "request {rbac:?} is not in controller::API_CALLS"
        );
        assert_eq!(req.method().as_str(), call.method, "request {i}");
        assert_eq!(
            req.uri().path_and_query().unwrap().as_str(),
            call.path_and_query,
            "request {i}"
        );
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let text = String::from_utf8_lossy(&bytes).to_string();
        assert!(
            !text.contains(PASSPHRASE),
            "a secret was sent to the API: {text}"
        );
        if call.body.is_some() || call.check.is_some() {
            let got: Value = serde_json::from_slice(&bytes).unwrap();
            if let Some(want) = &call.body {
                assert_eq!(&got, want, "request {i} body");
            }
            if let Some(check) = &call.check {
                check(&got);
            }
        }
        send.send_response(response(call.answer.0, &call.answer.1));
    }
}

async fn run_scenario(
    obj: SignedImage,
    engine: FakeReconciler,
    calls: Vec<Call>,
) -> Result<kube::runtime::controller::Action, super::Error> {
    run_scenario_after(obj, engine, calls, false).await
}

/// As [`run_scenario`]; `looked_at_before`: the process has seen the object already (a
/// scheduled requeue, not the first look after a start).
async fn run_scenario_after(
    obj: SignedImage,
    engine: FakeReconciler,
    calls: Vec<Call>,
    looked_at_before: bool,
) -> Result<kube::runtime::controller::Action, super::Error> {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let ctx = context(client, engine);
    if looked_at_before {
        ctx.looked_at.lock().unwrap().insert("ns/app".into());
    }
    let server = tokio::spawn(serve(handle, calls));
    let result = reconcile(Arc::new(obj), ctx.clone()).await;
    // Dropping the context drops the last client, so an unexpected extra request shows up as
    // a failed `serve`, and a missing one as a panic there.
    drop(ctx);
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("scenario finished")
        .expect("scenario server");
    result
}

const STATUS_URI: &str = "/apis/trustkeeper.dev/v1alpha1/namespaces/ns/signedimages/app/status?&force=true&fieldManager=trustkeeper";
const EVENTS_URI: &str = "/apis/events.k8s.io/v1/namespaces/ns/events?";
const SIGNER_URI: &str = "/api/v1/namespaces/ns/secrets/signer";

fn status_answer(status: Value) -> (StatusCode, Value) {
    let mut obj = serde_json::to_value(image(json!({}), None)).unwrap();
    obj["status"] = status;
    (StatusCode::OK, obj)
}

fn event_check(type_: &'static str, reason: &'static str, note: String) -> impl Fn(&Value) + Send {
    move |ev: &Value| {
        assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
        assert_eq!(ev["kind"], "Event");
        assert_eq!(ev["type"], type_);
        assert_eq!(ev["reason"], reason);
        assert_eq!(ev["action"], "Reconcile");
        assert_eq!(ev["note"], note.as_str());
        assert_eq!(ev["reportingController"], "trustkeeper");
        assert_eq!(ev["reportingInstance"], "trustkeeper-0");
        assert_eq!(ev["metadata"]["namespace"], "ns");
        assert!(ev["metadata"]["name"].as_str().unwrap().starts_with("app."));
        assert_eq!(
            ev["regarding"],
            json!({"apiVersion":"trustkeeper.dev/v1alpha1","kind":"SignedImage","name":"app","namespace":"ns","uid":"u-1"})
        );
    }
}

#[tokio::test]
async fn secret_missing_sets_secret_not_found() {
    let engine = FakeReconciler::new(outcome());
    let message = "Secret ns/signer (referenced by spec.signingKey.secretRef) does not exist";
    let want_status = json!({
        "observedGeneration": 2,
        "conditions": [{
            "type": "Ready", "status": "False", "reason": "SecretNotFound", "message": message,
            "observedGeneration": 2, "lastTransitionTime": NOW,
        }],
        "signedTags": [], "roles": [], "failedAttempts": 1,
        "lastFailureTime": NOW, "nextSyncTime": "2026-11-25T12:00:30Z",
    });
    let calls =
        vec![
        Call::new("GET", SIGNER_URI, (StatusCode::NOT_FOUND, not_found("secrets", "signer"))),
        Call::new("PATCH", STATUS_URI, status_answer(want_status.clone())).body(json!({
            "apiVersion": "trustkeeper.dev/v1alpha1", "kind": "SignedImage", "status": want_status,
        })),
        Call::new("POST", EVENTS_URI, (StatusCode::CREATED, json!({})))
            .check(event_check("Warning", "SecretNotFound", message.into())),
    ];
    let action = run_scenario(image(json!({}), None), engine.clone(), calls)
        .await
        .unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(30))
    );
    assert!(engine.calls().is_empty(), "the engine must not run");
}

#[tokio::test]
async fn repeated_secret_problem_backs_off_without_event() {
    let engine = FakeReconciler::new(outcome());
    let message = "Secret ns/signer (referenced by spec.signingKey.secretRef) does not exist";
    let before = json!({
        "observedGeneration": 2,
        "conditions": [{"type": "Ready", "status": "False", "reason": "SecretNotFound", "message": message,
            "observedGeneration": 2, "lastTransitionTime": "2026-11-25T11:59:00Z"}],
        "signedTags": [], "roles": [], "failedAttempts": 1,
        "lastFailureTime": "2026-11-25T11:59:00Z", "nextSyncTime": "2026-11-25T11:59:30Z",
    });
    let mut after = before.clone();
    after["failedAttempts"] = json!(2);
    after["lastFailureTime"] = json!(NOW);
    after["nextSyncTime"] = json!("2026-11-25T12:01:00Z");
    let calls = vec![
        Call::new(
            "GET",
            SIGNER_URI,
            (StatusCode::NOT_FOUND, not_found("secrets", "signer")),
        ),
        Call::new("PATCH", STATUS_URI, status_answer(after.clone())).body(json!({
            "apiVersion": "trustkeeper.dev/v1alpha1", "kind": "SignedImage", "status": after,
        })),
        // No Event: Ready did not change.
    ];
    let action = run_scenario(image(json!({}), Some(before)), engine, calls)
        .await
        .unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(60))
    );
}

#[tokio::test]
async fn registry_secret_of_wrong_type_is_secret_invalid() {
    let engine = FakeReconciler::new(outcome());
    let message = "Secret ns/hub (referenced by spec.registry.credentialsSecretRef) has type \"Opaque\", expected kubernetes.io/dockerconfigjson";
    let calls = vec![
        Call::new("GET", SIGNER_URI, (StatusCode::OK, signer())),
        Call::new(
            "GET",
            "/api/v1/namespaces/ns/secrets/hub",
            (
                StatusCode::OK,
                secret("hub", "Opaque", &[(".dockerconfigjson", "{}")]),
            ),
        ),
        Call::new("PATCH", STATUS_URI, status_answer(json!({}))).check(move |body| {
            assert_eq!(body["apiVersion"], "trustkeeper.dev/v1alpha1");
            let c = &body["status"]["conditions"][0];
            assert_eq!(c["reason"], "SecretInvalid");
            assert_eq!(c["status"], "False");
            assert_eq!(c["message"], message);
        }),
        Call::new("POST", EVENTS_URI, (StatusCode::CREATED, json!({}))).check(event_check(
            "Warning",
            "SecretInvalid",
            message.into(),
        )),
    ];
    let obj = image(
        json!({"registry": {"credentialsSecretRef": {"name": "hub"}}}),
        None,
    );
    run_scenario(obj, engine.clone(), calls).await.unwrap();
    assert!(engine.calls().is_empty());
}

#[tokio::test]
async fn suspended_reads_nothing_and_says_so() {
    let engine = FakeReconciler::new(outcome());
    let message =
        "spec.suspend is true: nothing is signed or renewed until it is set back to false";
    let want_status = json!({
        "observedGeneration": 2,
        "conditions": [{"type": "Ready", "status": "False", "reason": "Suspended", "message": message,
            "observedGeneration": 2, "lastTransitionTime": NOW}],
        "signedTags": [], "roles": [], "failedAttempts": 0,
    });
    let calls =
        vec![
        Call::new("PATCH", STATUS_URI, status_answer(want_status.clone())).body(json!({
            "apiVersion": "trustkeeper.dev/v1alpha1", "kind": "SignedImage", "status": want_status,
        })),
        Call::new("POST", EVENTS_URI, (StatusCode::CREATED, json!({})))
            .check(event_check("Normal", "Suspended", message.into())),
    ];
    let action = run_scenario(image(json!({"suspend": true}), None), engine.clone(), calls)
        .await
        .unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    assert!(engine.calls().is_empty());
}

#[tokio::test]
async fn success_writes_the_engine_status_and_its_events() {
    let mut engine = FakeReconciler::new(outcome());
    engine.expect_passphrase = Some(PASSPHRASE.into());
    let want_status = serde_json::to_value(outcome().status).unwrap();
    assert_eq!(want_status["conditions"][0]["lastTransitionTime"], NOW);
    let calls = vec![
        Call::new("GET", SIGNER_URI, (StatusCode::OK, signer())),
        Call::new("PATCH", STATUS_URI, status_answer(want_status.clone())).body(json!({
            "apiVersion": "trustkeeper.dev/v1alpha1", "kind": "SignedImage", "status": want_status,
        })),
        Call::new("POST", EVENTS_URI, (StatusCode::CREATED, json!({}))).check(event_check(
            "Normal",
            "Signed",
            "signed v1 (sha256:aaaa…) into targets/releases".into(),
        )),
    ];
    let action = run_scenario(image(json!({}), None), engine.clone(), calls)
        .await
        .unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(300))
    );
    let calls = engine.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].id, "ns/app");
    assert_eq!(calls[0].generation, Some(2));
    assert!(calls[0].had_passphrase && calls[0].key_len > 0 && !calls[0].had_registry_auth);
}

#[tokio::test]
async fn unchanged_status_is_not_written() {
    let mut quiet = outcome();
    quiet.events.clear();
    quiet.publishes = 0;
    quiet.signed.clear();
    let engine = FakeReconciler::new(quiet.clone());
    let current = serde_json::to_value(&quiet.status).unwrap();
    let calls = vec![Call::new("GET", SIGNER_URI, (StatusCode::OK, signer()))];
    // The requeue fired (the process has seen it before): run, and write nothing.
    run_scenario_after(image(json!({}), Some(current)), engine.clone(), calls, true)
        .await
        .unwrap();
    assert_eq!(engine.calls().len(), 1);
    assert!(engine.calls()[0].had_previous);
}

#[tokio::test]
async fn not_due_yet_runs_nothing_and_keeps_the_schedule() {
    // What a restarted controller or a new leader sees: a current, Ready status. No Secret
    // read, no engine run, no write; requeued within its poll interval (5m), spread by the
    // jitter so that a restart is no thundering herd.
    let engine = FakeReconciler::new(outcome());
    let current = serde_json::to_value(outcome().status).unwrap();
    for (jitter, secs) in [(0.5, 150), (0.9, 270)] {
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(svc, "default");
        let ctx = context(client, engine.clone());
        let mut ctx = Arc::into_inner(ctx).unwrap();
        ctx.jitter = Arc::new(move || jitter);
        let ctx = Arc::new(ctx);
        let server = tokio::spawn(serve(handle, vec![]));
        let first = reconcile(
            Arc::new(image(json!({}), Some(current.clone()))),
            ctx.clone(),
        );
        assert_eq!(
            first.await.unwrap(),
            kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(secs))
        );
        assert!(engine.calls().is_empty());
        drop(ctx);
        server.await.unwrap();
    }
    // A failing one waits for its backoff.
    let mut failing = outcome().status;
    failing.next_sync_time = Some(Time("2026-11-25T12:02:00Z".parse().unwrap()));
    let action = run_scenario(
        image(json!({}), Some(serde_json::to_value(&failing).unwrap())),
        engine.clone(),
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(120))
    );
    assert!(engine.calls().is_empty());

    // A spec change (new generation) runs at once.
    let mut changed = image(json!({}), Some(current.clone()));
    changed.metadata.generation = Some(3);
    let calls = vec![
        Call::new("GET", SIGNER_URI, (StatusCode::OK, signer())),
        Call::new("PATCH", STATUS_URI, status_answer(json!({}))),
        Call::new("POST", EVENTS_URI, (StatusCode::CREATED, json!({}))),
    ];
    run_scenario(changed, engine.clone(), calls).await.unwrap();
    assert_eq!(engine.calls().len(), 1);
    assert_eq!(engine.calls()[0].generation, Some(3));
}

#[tokio::test]
async fn a_push_notification_runs_it_even_when_not_due() {
    let engine = FakeReconciler::new(outcome());
    let mut quiet = outcome();
    quiet.events.clear();
    engine.set_outcome(quiet.clone());
    let current = serde_json::to_value(&quiet.status).unwrap();
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let ctx = context(client, engine.clone());
    ctx.forced.lock().unwrap().insert("ns/app".into());
    let calls = vec![Call::new("GET", SIGNER_URI, (StatusCode::OK, signer()))];
    let server = tokio::spawn(serve(handle, calls));
    reconcile(Arc::new(image(json!({}), Some(current))), ctx.clone())
        .await
        .unwrap();
    drop(ctx);
    server.await.unwrap();
    assert_eq!(engine.calls().len(), 1);
}

#[tokio::test]
async fn api_error_on_secret_read_is_an_error_not_a_status() {
    let engine = FakeReconciler::new(outcome());
    let forbidden = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
        "message":"secrets \"signer\" is forbidden","reason":"Forbidden","code":403});
    let calls = vec![Call::new(
        "GET",
        SIGNER_URI,
        (StatusCode::FORBIDDEN, forbidden),
    )];
    let err = run_scenario(image(json!({}), None), engine, calls)
        .await
        .unwrap_err();
    assert_eq!(err.metric_label(), "SecretReadError");
    // The typed read error names the object; the API's answer is its source.
    let text = err.to_string();
    assert!(
        text.contains("cannot read Secret ns/signer") && text.contains("forbidden"),
        "{text}"
    );
}

#[test]
fn object_ref_is_what_events_point_at() {
    let r = image(json!({}), None).object_ref(&());
    assert_eq!(r.kind.as_deref(), Some("SignedImage"));
}

#[tokio::test]
async fn missing_ca_config_map_names_it() {
    let engine = FakeReconciler::new(outcome());
    let message =
        "ConfigMap ns/notary-ca (referenced by spec.notary.ca.configMapKeyRef) does not exist";
    let calls = vec![
        Call::new("GET", SIGNER_URI, (StatusCode::OK, signer())),
        Call::new(
            "GET",
            "/api/v1/namespaces/ns/configmaps/notary-ca",
            (StatusCode::NOT_FOUND, not_found("configmaps", "notary-ca")),
        ),
        Call::new("PATCH", STATUS_URI, status_answer(json!({}))).check(move |body| {
            let c = &body["status"]["conditions"][0];
            assert_eq!(c["reason"], "SecretNotFound");
            assert_eq!(c["message"], message);
        }),
        Call::new("POST", EVENTS_URI, (StatusCode::CREATED, json!({}))).check(event_check(
            "Warning",
            "SecretNotFound",
            message.into(),
        )),
    ];
    let obj = image(
        json!({"notary": {"ca": {"configMapKeyRef": {"name": "notary-ca", "key": "ca.crt"}}}}),
        None,
    );
    run_scenario(obj, engine.clone(), calls).await.unwrap();
    assert!(engine.calls().is_empty());
}

/// The elector's requests: get, create, then get and replace (PUT with resourceVersion); never
/// a PATCH, which a custom-resource Lease would refuse as strategic merge.
#[tokio::test]
async fn lease_is_created_then_renewed_by_replace() {
    use super::lease::{LeaderElector, LeaseConfig};
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let lease_uri = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/trustkeeper";
    let held = json!({"apiVersion":"coordination.k8s.io/v1","kind":"Lease",
        "metadata":{"name":"trustkeeper","namespace":"ops","resourceVersion":"5"},
        "spec":{"holderIdentity":"pod-1","leaseDurationSeconds":15,"leaseTransitions":0,
                "acquireTime":"2026-11-25T12:00:00.000000Z","renewTime":"2026-11-25T12:00:00.000000Z"}});
    let calls = vec![
        Call::new(
            "GET",
            lease_uri,
            (StatusCode::NOT_FOUND, not_found("leases", "trustkeeper")),
        ),
        Call::new(
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/ops/leases?",
            (StatusCode::CREATED, held.clone()),
        )
        .check(|b| {
            assert_eq!(b["metadata"]["name"], "trustkeeper");
            assert_eq!(b["spec"]["holderIdentity"], "pod-1");
            assert_eq!(b["spec"]["leaseDurationSeconds"], 15);
            assert_eq!(b["spec"]["leaseTransitions"], 0);
        }),
        Call::new("GET", lease_uri, (StatusCode::OK, held.clone())),
        Call::new(
            "PUT",
            &format!("{lease_uri}?"),
            (StatusCode::OK, held.clone()),
        )
        .check(|b| {
            assert_eq!(b["metadata"]["resourceVersion"], "5");
            assert_eq!(b["spec"]["holderIdentity"], "pod-1");
            // Renewal by the holder: no new transition.
            assert_eq!(b["spec"]["leaseTransitions"], 0);
        }),
    ];
    let server = tokio::spawn(serve(handle, calls));
    let mut elector = LeaderElector::new(client, LeaseConfig::new("ops", "pod-1"));
    assert!(elector.try_acquire().await.unwrap());
    assert!(elector.try_acquire().await.unwrap());
    assert!(elector.is_leader());
    drop(elector);
    server.await.unwrap();
}

#[tokio::test]
async fn failed_status_write_is_retried_with_backoff() {
    let engine = FakeReconciler::new(outcome());
    let boom = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
        "message":"etcdserver: request timed out","reason":"InternalError","code":500});
    let calls = vec![
        Call::new("GET", SIGNER_URI, (StatusCode::OK, signer())),
        Call::new(
            "PATCH",
            STATUS_URI,
            (StatusCode::INTERNAL_SERVER_ERROR, boom),
        ),
        // No Event for a status that was not written.
    ];
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let ctx = context(client, engine);
    let server = tokio::spawn(serve(handle, calls));
    let obj = Arc::new(image(json!({}), None));
    let err = reconcile(obj.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(err.metric_label(), "StatusWriteError");
    // Consecutive API errors back off along engine::schedule's curve (jitter 0: 30 s, 60 s).
    let first = super::error_policy(obj.clone(), &err, ctx.clone());
    let second = super::error_policy(obj, &err, ctx.clone());
    assert_eq!(
        first,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(30))
    );
    assert_eq!(
        second,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(60))
    );
    drop(ctx);
    server.await.unwrap();
}

#[tokio::test]
async fn a_dry_run_is_spread_over_its_interval_on_the_first_look() {
    // A restarted controller sees a current dry run (Ready False/DryRun, no nextSyncTime): no
    // Secret read, no engine run, no write; requeued within its poll interval, as a Ready one.
    let engine = FakeReconciler::new(outcome());
    let mut st = outcome().status;
    set_condition(
        &mut st.conditions,
        READY,
        ConditionStatus::False,
        reasons::DRY_RUN,
        "dry run: 1 change planned",
        Some(2),
        now(),
    );
    st.planned_changes = Some(Default::default());
    let current = serde_json::to_value(&st).unwrap();
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context(Client::new(svc, "default"), engine.clone());
    let mut ctx = Arc::into_inner(ctx).unwrap();
    ctx.jitter = Arc::new(|| 0.5);
    let ctx = Arc::new(ctx);
    let server = tokio::spawn(serve(handle, vec![]));
    let action = reconcile(
        Arc::new(image(json!({"dryRun": true}), Some(current))),
        ctx.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(150))
    );
    assert!(engine.calls().is_empty());
    drop(ctx);
    server.await.unwrap();
}
