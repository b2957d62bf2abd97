//! The CRD checked into `crds/` is exactly what the Rust types generate.

use std::path::Path;

#[test]
fn checked_in_crd_matches_the_rust_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/signedimages.trustkeeper.dev.yaml");
    let on_disk = std::fs::read_to_string(&path).expect("crds/ holds the CRD");
    let generated = trustkeeper::api::crd_yaml();
    assert!(
        on_disk == generated,
        "crds/signedimages.trustkeeper.dev.yaml is stale: the API types changed. Regenerate it with\n  \
         cargo run -- crd > crds/signedimages.trustkeeper.dev.yaml"
    );
}

#[test]
fn crd_describes_every_spec_field() {
    // Doc comments become `kubectl explain` text: no spec property may lack a description.
    let crd =
        serde_json::to_value(<trustkeeper::api::SignedImage as kube::CustomResourceExt>::crd())
            .unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let props = spec["properties"].as_object().expect("spec has properties");
    assert!(
        props.len() >= 10,
        "spec fields: {:?}",
        props.keys().collect::<Vec<_>>()
    );
    for (name, schema) in props {
        assert!(
            schema
                .get("description")
                .and_then(|d| d.as_str())
                .is_some_and(|d| !d.is_empty()),
            "spec.{name} has no description"
        );
    }
    assert_eq!(spec["required"], serde_json::json!(["image", "signingKey"]));
}

#[test]
fn helm_chart_ships_the_same_crd() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let crd = std::fs::read(root.join("crds/signedimages.trustkeeper.dev.yaml")).unwrap();
    let chart =
        std::fs::read(root.join("charts/trustkeeper/crds/signedimages.trustkeeper.dev.yaml"))
            .expect("charts/trustkeeper/crds holds the CRD");
    assert!(
        crd == chart,
        "charts/trustkeeper/crds/ differs from crds/: copy crds/ into the chart"
    );
}
