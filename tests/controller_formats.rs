//! The operator on the real API server with `formats: [cosign, notation]` and no notary: the
//! certificate chain comes from a `kubernetes.io/tls`-shaped Secret (`tls.crt`), the status the
//! API server stores says per tag and format what is signed, cosign and notation verify it, and
//! a renewed certificate in the Secret signs again on the next reconcile.
//!
//! Needs `TRUSTKEEPER_KUBE_TESTBED`, `TRUSTKEEPER_TESTBED` and `TRUSTKEEPER_REFEREES`.

mod common;
mod controller_support;

use std::path::Path;
use std::time::Duration;

use common::notation::{notation, text, trust};
use common::{Seed, Testbed};
use controller_support::{client, config, eventually, install_crd, ready_of, unique};
use kube::api::{Api, PostParams};
use secrecy::SecretString;
use serde_json::json;
use tokio::net::TcpListener;
use trustkeeper::api::{SignatureFormat, SignedImage};
use trustkeeper::controller::{MapSecrets, run_with};
use trustkeeper::engine::Engine;
use trustkeeper::notary::SigningKey;

fn secrets(tb: &Testbed, seed: &Seed, ns: &str, cert: &str) -> MapSecrets {
    let key = std::fs::read(seed.var("DELEGATION_KEY")).unwrap();
    let pass = std::fs::read(seed.var("DELEGATION_PASSPHRASE_FILE")).unwrap();
    let ca = tb.ca_pem();
    MapSecrets::default()
        .with_secret(
            ns,
            "signer",
            None,
            &[("key.pem", &key), ("passphrase", &pass), ("ca.crt", &ca)],
        )
        .with_secret(
            ns,
            "signer-cert",
            Some("kubernetes.io/tls"),
            &[("tls.crt", cert.as_bytes()), ("tls.key", b"not read")],
        )
}

/// Runs the controller until `done` holds for SignedImage `app` (or 60 s), then stops it.
async fn operate(
    client: &kube::Client,
    ns: &str,
    secrets: MapSecrets,
    done: impl Fn(&SignedImage) -> bool,
) -> SignedImage {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut cfg = config(ns, "formats-e2e");
    cfg.lease = None;
    let task = tokio::spawn(run_with(
        client.clone(),
        Engine::default(),
        secrets,
        cfg,
        listener,
        async move {
            let _ = stop_rx.await;
        },
    ));
    let api: Api<SignedImage> = Api::namespaced(client.clone(), ns);
    let _ = eventually(Duration::from_secs(60), || async {
        api.get("app").await.is_ok_and(|si| done(&si))
    })
    .await;
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    api.get("app").await.unwrap()
}

fn notation_signers(si: &SignedImage) -> Vec<String> {
    (si.status.iter().flat_map(|s| s.signatures.iter()))
        .filter(|s| s.format == SignatureFormat::Notation)
        .map(|s| s.signer.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_signs_cosign_and_notation_without_notary_and_follows_a_renewed_certificate() {
    let tb = Testbed::get();
    let seed = tb.seed("operator-formats");
    let client = client().await;
    install_crd(&client).await;
    let ns = unique("fmt");
    let pass = std::fs::read_to_string(seed.var("DELEGATION_PASSPHRASE_FILE")).unwrap();
    let key = SigningKey::from_pem(
        &std::fs::read(seed.var("DELEGATION_KEY")).unwrap(),
        Some(&SecretString::from(pass.trim().to_string())),
    )
    .unwrap()
    .remove(0);
    let now = jiff::Timestamp::now();
    let cert1 = common::notation::self_signed_pem(&key, "tk-op-1", now);

    let api: Api<SignedImage> = Api::namespaced(client.clone(), &ns);
    let tags = ["v1", "multi", "oci-multi"];
    let obj: SignedImage = serde_json::from_value(json!({
        "apiVersion": "trustkeeper.dev/v1alpha1", "kind": "SignedImage",
        "metadata": {"name": "app", "namespace": ns},
        "spec": {
            "image": seed.gun, "tags": tags,
            "formats": ["cosign", "notation"],
            "notation": {"certificateSecretRef": {"name": "signer-cert"}},
            "signingKey": {"secretRef": {"name": "signer"}},
            "registry": {"ca": {"secretKeyRef": {"name": "signer", "key": "ca.crt"}}},
            "interval": "2s"
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    let si = operate(&client, &ns, secrets(tb, &seed, &ns, &cert1), |si| {
        ready_of(si).is_some_and(|(s, r, _)| s == "True" && r == "Signed")
    })
    .await;
    let st = si.status.clone().unwrap();
    assert_eq!(
        ready_of(&si).map(|(s, _, _)| s).as_deref(),
        Some("True"),
        "{st:?}"
    );
    assert_eq!(st.tag_summary.as_deref(), Some("3/3"), "{st:?}");
    assert!(st.trust.is_none() && st.signed_tags.is_empty(), "{st:?}");
    assert_eq!(st.signatures.len(), 2 * tags.len(), "{st:?}");
    let first = notation_signers(&si);
    assert!(first.iter().all(|s| s.len() == 64), "{first:?}");

    let dir = tempfile::tempdir().unwrap();
    let cert1_path = dir.path().join("cert1.pem");
    std::fs::write(&cert1_path, &cert1).unwrap();
    let home = dir.path().join("home1");
    trust(&home, "op1", &cert1_path);
    let referees = std::env::var("TRUSTKEEPER_REFEREES").unwrap();
    let cosign = common::parse_env_file(&Path::new(&referees).join("env"))["COSIGN"].clone();
    let public = Path::new(tb.var("TESTBED_KEYS_DIR")).join("delegation.pub.pem");
    for tag in tags {
        let image = format!("{}@sha256:{}", seed.gun, seed.digest(tag));
        let v = notation(&home).arg("verify").arg(&image).output().unwrap();
        assert!(v.status.success(), "notation {tag}: {}", text(&v));
        let v = std::process::Command::new(&cosign)
            .args(["verify", "--insecure-ignore-tlog", "--key"])
            .arg(&public)
            .arg(&image)
            .env("SSL_CERT_FILE", tb.var("CA_CERT"))
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert!(v.status.success(), "cosign {tag}: {}", text(&v));
    }

    // cert-manager renewed the certificate: the next reconcile signs with the new leaf
    let cert2 = common::notation::self_signed_pem(
        &key,
        "tk-op-2",
        now - jiff::SignedDuration::from_mins(5),
    );
    let si = operate(&client, &ns, secrets(tb, &seed, &ns, &cert2), |si| {
        let s = notation_signers(si);
        s.len() == tags.len() && s.iter().all(|x| !first.contains(x))
    })
    .await;
    let second = notation_signers(&si);
    assert!(
        second.len() == tags.len() && second.iter().all(|x| !first.contains(x)),
        "{:?}",
        si.status
    );
    let cert2_path = dir.path().join("cert2.pem");
    std::fs::write(&cert2_path, &cert2).unwrap();
    let home2 = dir.path().join("home2");
    trust(&home2, "op2", &cert2_path);
    for tag in tags {
        let image = format!("{}@sha256:{}", seed.gun, seed.digest(tag));
        let v = notation(&home2).arg("verify").arg(&image).output().unwrap();
        assert!(v.status.success(), "notation (renewed) {tag}: {}", text(&v));
    }
}
