//! A SignedImage with `formats: [notary, cosign]` on the real testbed: one reconcile signs the
//! selected tags in both formats with the same delegation key; the Go notary client and both
//! cosign versions agree; a steady-state run costs one registry GET per digest for cosign.
//!
//! Needs `TRUSTKEEPER_TESTBED` and `TRUSTKEEPER_REFEREES` (its `env` names COSIGN, COSIGN_2_5).

mod common;

use std::path::Path;
use std::process::Command;

use common::{Testbed, ready};
use trustkeeper::api::{SignatureFormat, SignedImageSpec};
use trustkeeper::engine::Engine;

fn spec(tb: &Testbed, gun: &str, tags: &[&str], formats: &str) -> SignedImageSpec {
    let yaml = format!(
        "image: {gun}\ntags: {tags:?}\nsigningKey: {{secretRef: {{name: k}}}}\nnotary: {{url: {:?}}}\nformats: {formats}\n",
        tb.var("NOTARY_URL")
    );
    serde_saphyr::from_str(&yaml).unwrap()
}

fn cosign_verify(name: &str, home: &Path, public: &Path, image: &str) -> std::process::Output {
    let dir = std::env::var("TRUSTKEEPER_REFEREES")
        .expect("TRUSTKEEPER_REFEREES is not set: these tests need the real cosign binaries");
    let env = common::parse_env_file(&Path::new(&dir).join("env"));
    let tool = env
        .get(name)
        .unwrap_or_else(|| panic!("{dir}/env names no {name}: reinstall the referees"));
    assert!(Path::new(tool).is_file(), "{name}={tool} is missing");
    Command::new(tool)
        .args(["verify", "--insecure-ignore-tlog", "--key"])
        .arg(public)
        .arg(image)
        .env("SSL_CERT_FILE", Testbed::get().var("CA_CERT"))
        .env("HOME", home)
        .output()
        .unwrap()
}

#[tokio::test]
async fn one_reconcile_signs_notary_and_cosign_and_both_referees_agree() {
    let tb = Testbed::get();
    let seed = tb.seed("engine-cosign");
    let tags = ["v1", "multi", "oci-multi"];
    let both = spec(tb, &seed.gun, &tags, "[notary, cosign]");
    assert_eq!(
        both.formats,
        vec![SignatureFormat::Notary, SignatureFormat::Cosign]
    );
    let o = common::run_engine_as(
        Engine::default(),
        "t",
        &both,
        common::seed_creds(tb, &seed),
        None,
    )
    .await;
    assert_eq!(ready(&o).0, "True", "{:?}", ready(&o));
    let cosign_events: Vec<_> = o
        .events
        .iter()
        .filter(|e| e.reason == "SignedCosign")
        .collect();
    assert_eq!(cosign_events.len(), tags.len(), "{:?}", o.events);

    let listed = tb.notary_digests(&seed.gun, None);
    let home = tempfile::tempdir().unwrap();
    let public = Path::new(tb.var("TESTBED_KEYS_DIR")).join("delegation.pub.pem");
    for tag in tags {
        assert_eq!(listed[tag], seed.digest(tag), "notary {tag}");
        let image = format!("{}@sha256:{}", seed.gun, seed.digest(tag));
        for name in ["COSIGN", "COSIGN_2_5"] {
            let v = cosign_verify(name, home.path(), &public, &image);
            assert!(
                v.status.success(),
                "{name} {tag}: {}",
                String::from_utf8_lossy(&v.stderr)
            );
        }
    }

    // steady state: nothing to do in either format; cosign's part is one GET per digest
    let again = common::run_engine_as(
        Engine::default(),
        "t",
        &both,
        common::seed_creds(tb, &seed),
        Some(&o.status),
    )
    .await;
    assert_eq!(ready(&again).0, "True", "{:?}", ready(&again));
    assert!(again.events.iter().all(|e| e.reason != "SignedCosign"));
    let notary_only = spec(tb, &seed.gun, &tags, "[notary]");
    let base = common::run_engine_as(
        Engine::default(),
        "t",
        &notary_only,
        common::seed_creds(tb, &seed),
        Some(&again.status),
    )
    .await;
    assert_eq!(ready(&base).0, "True", "{:?}", ready(&base));
    let (with, without) = (again.requests.registry, base.requests.registry);
    assert_eq!(
        with.get,
        without.get + tags.len() as u64,
        "{with:?} vs {without:?}"
    );
    assert_eq!((with.head, with.post, with.put), (without.head, 0, 0));
}

#[tokio::test]
async fn formats_without_notary_are_refused_before_any_request() {
    let tb = Testbed::get();
    let gun = format!("{}/test/engine-cosign-only", tb.var("REGISTRY_HOST"));
    let only = spec(tb, &gun, &["v1"], "[cosign]");
    let o = common::run_engine_as(Engine::default(), "t", &only, Default::default(), None).await;
    let (status, reason, message) = ready(&o);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("keep notary in formats"), "{message}");
    assert_eq!(o.requests.registry.total(), 0);
}
