//! The CRD and the examples against a REAL Kubernetes API server (the upstream
//! apiextensions-apiserver with etcd, started by `tests/support/kube-testbed.sh up DIR`;
//! `TRUSTKEEPER_KUBE_TESTBED=DIR`). The CRD must be accepted and Established, every valid example
//! created with its defaults filled in, and every invalid example refused with the server's
//! message naming the field its `# expect:` comment names.

mod controller_support;

use std::path::{Path, PathBuf};

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use trustkeeper::api::SignedImage;

const MANAGER: &str = "trustkeeper-tests";

async fn client() -> Client {
    controller_support::plain_client().await
}

fn root() -> PathBuf {
    controller_support::root()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

use controller_support::install_crd;

fn api(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<SignedImage>(&()))
}

fn load(path: &Path) -> (DynamicObject, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let obj: DynamicObject = serde_saphyr::from_str(&text).unwrap();
    (obj, text)
}

#[tokio::test]
async fn crd_and_examples_on_a_real_api_server() {
    let client = client().await;
    install_crd(&client).await;
    let ns = format!("examples-{}", std::process::id());
    let api = api(&client, &ns);
    let pp = PatchParams::apply(MANAGER).validation_strict();

    // Valid examples: created, defaults filled in by the server's schema.
    let valid = yaml_files(&root().join("examples"));
    assert!(valid.len() >= 3);
    for path in &valid {
        let (obj, _) = load(path);
        let name = obj.metadata.name.clone().unwrap();
        let created = api
            .patch(&name, &pp, &Patch::Apply(&obj))
            .await
            .unwrap_or_else(|e| panic!("{} was refused: {e}", path.display()));
        let spec = &created.data["spec"];
        for field in ["validity", "renewBefore", "interval"] {
            assert!(
                spec[field].is_string(),
                "{}: default {field} missing",
                path.display()
            );
        }
        assert_eq!(spec["suspend"], false);
        assert!(spec["signingKey"]["keyField"].is_string());
        // The typed view reads back what the server stored.
        let typed: SignedImage =
            serde_json::from_value(serde_json::to_value(&created).unwrap()).unwrap();
        assert_eq!(
            typed.spec.image,
            obj.data["spec"]["image"].as_str().unwrap()
        );
    }
    let renew_only: Api<SignedImage> = Api::namespaced(client.clone(), &ns);
    let r = renew_only.get("legacy-base").await.unwrap();
    assert_eq!(r.spec.validity, "26280h");
    assert_eq!(r.spec.renew_before, "4560h");
    assert_eq!(r.spec.interval, "5m");
    assert!(r.spec.tags.is_empty() && r.spec.roles.is_empty());

    // Invalid examples: refused, and the message names the field.
    let invalid = yaml_files(&root().join("examples/invalid"));
    assert!(invalid.len() >= 10);
    for path in &invalid {
        let (obj, text) = load(path);
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks an `# expect:` line", path.display()))
            .trim()
            .to_string();
        let name = obj.metadata.name.clone().unwrap();
        match api.patch(&name, &pp, &Patch::Apply(&obj)).await {
            Ok(_) => panic!("{} was accepted but must be refused", path.display()),
            Err(kube::Error::Api(status)) => {
                // 422 for schema and CEL rules; an unknown field under server-side apply is a
                // 500 whose message names it.
                assert!(
                    status.code == 422
                        || (status.code == 500
                            && status.message.contains("not declared in schema")),
                    "{}: HTTP {} {}",
                    path.display(),
                    status.code,
                    status.message
                );
                assert!(
                    status.message.contains(&expect),
                    "{}: message does not name {expect}: {}",
                    path.display(),
                    status.message
                );
            }
            Err(e) => panic!("{}: unexpected error {e}", path.display()),
        }
    }
}

#[tokio::test]
async fn status_subresource_round_trips() {
    use trustkeeper::api::{SignedImageStatus, TrustStatus};
    let client = client().await;
    install_crd(&client).await;
    let ns = format!("status-{}", std::process::id());
    let api: Api<SignedImage> = Api::namespaced(client.clone(), &ns);
    let (obj, _) = load(&root().join("examples/renew-only.yaml"));
    let dynamic = self::api(&client, &ns);
    dynamic
        .patch(
            "legacy-base",
            &PatchParams::apply(MANAGER),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap();
    let mut status = SignedImageStatus {
        observed_generation: Some(1),
        failed_attempts: 2,
        tag_summary: Some("0/0".into()),
        trust: Some(TrustStatus {
            root_key_ids: vec!["a".repeat(64)],
            root_version: 2,
            versions: [("timestamp".to_string(), 41u64)].into(),
        }),
        ..Default::default()
    };
    trustkeeper::api::set_condition(
        &mut status.conditions,
        "Ready",
        trustkeeper::api::ConditionStatus::False,
        trustkeeper::api::reasons::PENDING,
        "first reconcile",
        Some(1),
        jiff::Timestamp::now(),
    );
    let patch = serde_json::json!({
        "apiVersion": "trustkeeper.dev/v1alpha1",
        "kind": "SignedImage",
        "status": status,
    });
    api.patch_status(
        "legacy-base",
        &PatchParams::apply("trustkeeper").force(),
        &Patch::Apply(&patch),
    )
    .await
    .expect("status accepted");
    let got = api.get_status("legacy-base").await.unwrap();
    let got_status = got.status.unwrap();
    assert_eq!(got_status.trust, status.trust);
    assert_eq!(got_status.failed_attempts, 2);
    assert_eq!(got_status.conditions[0].reason, "Pending");
}
