//! `spec.dryRun` in the cluster: the controller with the real engine, against the real
//! Kubernetes API server (kube-testbed) and the real notary-server and registry (testbed). A
//! SignedImage in dry run with a tag not signed yet gets the plan in `status.plannedChanges`
//! (Ready False, reason DryRun), the server's versions stay as they were over several polls,
//! and an unchanged plan is no status write; `dryRun: false` then publishes exactly that plan
//! (each planned role at its planned version, the tag listed by the Go client) and clears it.

mod common;
mod controller_support;

use std::time::Duration;

use common::{Seed, Testbed, timestamp_version};
use controller_support::{
    Running, client, config, eventually, install_crd, metrics_text, parse_metrics, ready_of, unique,
};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use trustkeeper::api::{PlannedChanges, SignedImage};
use trustkeeper::controller::MapSecrets;
use trustkeeper::engine::Engine;

const ROLES: [&str; 3] = ["targets", "targets/releases", "targets/ci-bot"];

async fn role_version(tb: &Testbed, gun: &str, role: &str) -> u64 {
    let http = reqwest::Client::builder()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&tb.ca_pem()).unwrap())
        .build()
        .unwrap();
    let url = format!("{}/v2/{gun}/_trust/tuf/{role}.json", tb.var("NOTARY_URL"));
    let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
    v["signed"]["version"].as_u64().unwrap()
}

/// The timestamp's version and each of [`ROLES`]'s, as the notary server serves them.
async fn versions(tb: &Testbed, gun: &str) -> (u64, Vec<u64>) {
    let mut v = Vec::new();
    for r in ROLES {
        v.push(role_version(tb, gun, r).await);
    }
    (timestamp_version(tb, gun).await, v)
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

async fn counter(running: &Running, name: &str) -> f64 {
    let text = metrics_text(&running.url("/metrics")).await;
    parse_metrics(&text)
        .into_iter()
        .find(|(s, _)| s == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// `trustkeeper status app -n NS` with the kube testbed's kubeconfig.
fn trustkeeper_status(ns: &str) -> std::process::Output {
    let dir = std::env::var("TRUSTKEEPER_KUBE_TESTBED").expect("TRUSTKEEPER_KUBE_TESTBED");
    let home = tempfile::tempdir().unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_trustkeeper"))
        .args(["status", "app", "-n", ns])
        .env("KUBECONFIG", std::path::Path::new(&dir).join("kubeconfig"))
        .env("HOME", home.path())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_in_the_status_and_publishes_it_when_switched_off() {
    let tb = Testbed::get();
    let seed = tb.seed("dry-cluster");
    let client = client().await;
    install_crd(&client).await;
    let ns = unique("dry-run");
    let running = Running::start(
        &client,
        Engine::default(),
        signer_secrets(tb, &seed, &ns),
        config(&ns, "dry-run"),
    )
    .await;
    let api: Api<SignedImage> = Api::namespaced(client.clone(), &ns);
    let before = versions(tb, &seed.gun).await;
    // v1 is signed by the seed, multi is not; polled every 2 s to see several dry runs.
    let obj: SignedImage = serde_json::from_value(json!({
        "apiVersion": "trustkeeper.dev/v1alpha1", "kind": "SignedImage",
        "metadata": {"name": "app", "namespace": ns},
        "spec": {
            "image": seed.gun, "tags": ["v1", "multi"], "dryRun": true,
            "signingKey": {"secretRef": {"name": "signer"}},
            "registry": {"ca": {"secretKeyRef": {"name": "signer", "key": "ca.crt"}}},
            "notary": {"url": tb.var("NOTARY_URL"), "ca": {"secretKeyRef": {"name": "signer", "key": "ca.crt"}}},
            "interval": "2s"
        }
    }))
    .unwrap();
    api.create(&Default::default(), &obj).await.unwrap();
    let planned = eventually(Duration::from_secs(60), || async {
        ready_of(&api.get("app").await.unwrap())
            .is_some_and(|(s, r, _)| s == "False" && r == "DryRun")
    })
    .await;
    let si = api.get("app").await.unwrap();
    assert!(planned.is_ok(), "no dry run: {:?}", si.status);
    let st = si.status.clone().unwrap();
    let plan: PlannedChanges = st.planned_changes.clone().expect("the plan in the status");

    // The plan: multi into targets/releases at the next version, v1 (signed) not in it.
    let digest = format!("sha256:{}", seed.digest("multi"));
    let releases = (plan.roles.iter())
        .find(|r| r.role == "targets/releases")
        .unwrap_or_else(|| panic!("targets/releases not planned: {plan:?}"));
    assert_eq!(releases.action, "sign");
    assert_eq!(
        (releases.version, releases.new_version),
        (before.1[1], before.1[1] + 1)
    );
    assert_eq!(releases.valid_for, "26280h");
    assert!(
        (releases.add.iter()).any(|t| t.tag == "multi" && t.digest == digest && t.size > 0),
        "{plan:?}"
    );
    assert!(
        plan.roles
            .iter()
            .all(|r| r.add.iter().all(|t| t.tag != "v1")),
        "{plan:?}"
    );
    assert_eq!(plan.tags_to_sign, 1, "{plan:?}");
    assert_eq!(plan.omitted, 0);
    let ready = st.ready().unwrap();
    assert!(
        ready.message.contains("nothing published")
            && ready.message.contains("set spec.dryRun to false"),
        "{}",
        ready.message
    );
    assert_eq!(st.tag_summary.as_deref(), Some("1/2"), "{st:?}");
    // `trustkeeper status` shows the plan.
    let o = trustkeeper_status(&ns);
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{o:?}");
    assert!(
        shown.contains("Planned (dry run, nothing published): 1 tag to sign, 0 to remove, ")
            && shown.contains(&format!(
                "  sign   targets/releases  version {} -> {}  expires ",
                before.1[1],
                before.1[1] + 1
            ))
            && shown.contains(&format!("    add     multi  {digest}  ")),
        "{shown}"
    );

    // Several polls later: still nothing published, and the unchanged plan was not rewritten.
    let (runs, writes) = (
        counter(&running, "trustkeeper_reconciles_total").await,
        counter(&running, "trustkeeper_status_writes_total").await,
    );
    tokio::time::sleep(Duration::from_secs(7)).await;
    let polls = counter(&running, "trustkeeper_reconciles_total").await - runs;
    let rewrites = counter(&running, "trustkeeper_status_writes_total").await - writes;
    eprintln!("dry run: {polls} polls over 7 s, {rewrites} status writes");
    assert!(polls >= 2.0, "{polls} polls in 7 s at a 2 s interval");
    assert_eq!(rewrites, 0.0, "an unchanged plan was written again");
    assert_eq!(
        versions(tb, &seed.gun).await,
        before,
        "the dry run published"
    );
    assert!(!tb.notary_digests(&seed.gun, None).contains_key("multi"));
    assert_eq!(api.get("app").await.unwrap().status.unwrap(), st);
    // One Event for the dry run starting, not one per poll.
    let events: Api<KubeEvent> = Api::namespaced(client.clone(), &ns);
    let dry_events = (events.list(&Default::default()).await.unwrap().items.iter())
        .filter(|e| e.reason.as_deref() == Some("DryRun"))
        .count();
    assert_eq!(dry_events, 1);

    // dryRun false: exactly the plan is published, and the plan is gone from the status.
    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"dryRun": false}})),
    )
    .await
    .unwrap();
    let signed = eventually(Duration::from_secs(60), || async {
        ready_of(&api.get("app").await.unwrap())
            .is_some_and(|(s, r, g)| s == "True" && r == "Signed" && g == Some(2))
    })
    .await;
    let st = api.get("app").await.unwrap().status.unwrap();
    assert!(signed.is_ok(), "not published: {st:?}");
    assert_eq!(st.planned_changes, None);
    let o = trustkeeper_status(&ns);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("Planned"),
        "{o:?}"
    );
    let after = versions(tb, &seed.gun).await;
    assert!(after.0 > before.0, "no new timestamp");
    for (i, role) in ROLES.iter().enumerate() {
        let want = (plan.roles.iter())
            .find(|r| r.role == *role)
            .map_or(before.1[i], |r| r.new_version);
        assert_eq!(
            after.1[i], want,
            "{role}: {} -> {}",
            before.1[i], after.1[i]
        );
    }
    assert_eq!(
        tb.notary_digests(&seed.gun, Some("targets/releases"))["multi"],
        seed.digest("multi")
    );
    assert_eq!(st.tag_summary.as_deref(), Some("2/2"));
    running.stop().await.unwrap();
}
