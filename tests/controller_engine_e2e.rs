//! The operator for real: the controller with the real engine, against the real Kubernetes API
//! server (kube-testbed) and the real notary-server and registry (testbed), with the notary Go
//! client as referee. Secrets come from a map (the test API server has no core API); everything
//! else is real. A SignedImage is created, its tags are signed and the status shows them; a tag
//! pushed later is signed at the next poll; after the delete nothing more is published.

mod common;
mod controller_support;

use std::time::Duration;

use common::Testbed;
use controller_support::{client, config, eventually, install_crd, ready_of, unique};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use tokio::net::TcpListener;
use trustkeeper::api::SignedImage;
use trustkeeper::controller::{MapSecrets, run_with};
use trustkeeper::engine::Engine;

fn listed(tb: &Testbed, gun: &str) -> std::collections::BTreeMap<String, String> {
    tb.notary_digests(gun, Some("targets/releases"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_signs_on_the_real_notary_server_and_picks_up_a_pushed_tag() {
    let tb = Testbed::get();
    let seed = tb.seed("operator");
    let client = client().await;
    install_crd(&client).await;
    let ns = unique("op");
    let key = std::fs::read(seed.var("DELEGATION_KEY")).unwrap();
    let pass = std::fs::read(seed.var("DELEGATION_PASSPHRASE_FILE")).unwrap();
    let ca = tb.ca_pem();
    let secrets = MapSecrets::default().with_secret(
        &ns,
        "signer",
        None,
        &[("key.pem", &key), ("passphrase", &pass), ("ca.crt", &ca)],
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut cfg = config(&ns, "operator-e2e");
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

    let api: Api<SignedImage> = Api::namespaced(client.clone(), &ns);
    let obj: SignedImage = serde_json::from_value(json!({
        "apiVersion": "trustkeeper.dev/v1alpha1", "kind": "SignedImage",
        "metadata": {"name": "app", "namespace": ns},
        "spec": {
            "image": seed.gun, "tags": ["multi", "oci-*", "rc-*"], "roles": ["targets/releases"],
            "signingKey": {"secretRef": {"name": "signer"}},
            "registry": {"ca": {"secretKeyRef": {"name": "signer", "key": "ca.crt"}}},
            "notary": {"url": tb.var("NOTARY_URL"), "ca": {"secretKeyRef": {"name": "signer", "key": "ca.crt"}}},
            "interval": "2s"
        }
    }))
    .unwrap();
    // `rc-*` must match something from the start, or the glob is reported as matching nothing.
    tb.retag(&seed, "v1", "rc-1").await;
    api.create(&PostParams::default(), &obj).await.unwrap();

    let ready = eventually(Duration::from_secs(60), || async {
        ready_of(&api.get("app").await.unwrap())
            .is_some_and(|(s, r, _)| s == "True" && r == "Signed")
    })
    .await;
    let si = api.get("app").await.unwrap();
    assert!(ready.is_ok(), "not Ready: {:?}", si.status);
    let st = si.status.unwrap();
    assert_eq!(st.tag_summary.as_deref(), Some("4/4"), "{st:?}");
    let on_server = listed(tb, &seed.gun);
    for t in &st.signed_tags {
        assert_eq!(
            t.digest.trim_start_matches("sha256:"),
            on_server[&t.tag],
            "{}",
            t.tag
        );
        assert_eq!(t.role, "targets/releases");
    }
    assert!(
        st.trust
            .as_ref()
            .is_some_and(|t| !t.root_key_ids.is_empty())
    );

    // A tag pushed now is signed at the next poll (interval 2s), without any spec change.
    tb.retag(&seed, "multi", "rc-2").await;
    let want = seed
        .var("TAG_MULTI_DIGEST")
        .trim_start_matches("sha256:")
        .to_string();
    let signed = eventually(Duration::from_secs(60), || async {
        listed(tb, &seed.gun).get("rc-2") == Some(&want)
    })
    .await;
    assert!(
        signed.is_ok(),
        "rc-2 not signed: {:?}",
        api.get("app").await.unwrap().status
    );

    // Delete: nothing more is published after it.
    api.delete("app", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    tb.retag(&seed, "v1", "rc-3").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !listed(tb, &seed.gun).contains_key("rc-3"),
        "published after the delete"
    );

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
