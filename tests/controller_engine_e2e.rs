//! The operator for real: the controller with the real engine, against the real Kubernetes API
//! server (kube-testbed) and the real notary-server and registry (testbed), with the notary Go
//! client as referee. Secrets come from a map (the test API server has no core API); everything
//! else is real. A SignedImage is created, its tags are signed and the status shows them; a tag
//! pushed later is signed at the next poll; after the delete nothing more is published. One
//! tenant's hostile server (silent, or trickling its answer forever) never stops the others.

mod common;
mod controller_support;
#[path = "common/hostile.rs"]
mod hostile;

use std::time::Duration;

use common::{Seed, Testbed};
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

/// The Secret `signer` in `ns`: the seed's delegation key, its passphrase and the testbed's CA.
fn signer_secrets(tb: &Testbed, seed: &Seed, ns: &str) -> MapSecrets {
    let key = std::fs::read(seed.var("DELEGATION_KEY")).unwrap();
    let pass = std::fs::read(seed.var("DELEGATION_PASSPHRASE_FILE")).unwrap();
    let ca = tb.ca_pem();
    MapSecrets::default().with_secret(
        ns,
        "signer",
        None,
        &[("key.pem", &key), ("passphrase", &pass), ("ca.crt", &ca)],
    )
}

/// The controller with `engine` and `secrets`, running on a task until `stop`.
struct Running {
    task: tokio::task::JoinHandle<Result<(), trustkeeper::controller::Error>>,
    stop_tx: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    async fn start(
        client: &kube::Client,
        engine: Engine,
        secrets: MapSecrets,
        cfg: trustkeeper::controller::ControllerConfig,
    ) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_with(
            client.clone(),
            engine,
            secrets,
            cfg,
            listener,
            async move {
                let _ = stop_rx.await;
            },
        ));
        Running { task, stop_tx }
    }

    /// Asks it to stop; it ends cleanly within 20 s.
    async fn stop(self) {
        let _ = self.stop_tx.send(());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_signs_on_the_real_notary_server_and_picks_up_a_pushed_tag() {
    let tb = Testbed::get();
    let seed = tb.seed("operator");
    let client = client().await;
    install_crd(&client).await;
    let ns = unique("op");
    let secrets = signer_secrets(tb, &seed, &ns);
    let mut cfg = config(&ns, "operator-e2e");
    cfg.lease = None;
    let running = Running::start(&client, Engine::default(), secrets, cfg).await;

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

    running.stop().await;
}

/// An encrypted key whose decryption is as expensive as the key loader allows (PBKDF2 just
/// under its iteration bound) and then fails: random ciphertext.
fn expensive_key() -> Vec<u8> {
    use pkcs8::der::Encode as _;
    use pkcs8::pkcs5::pbes2;
    let kdf = pbes2::Pbkdf2Params {
        salt: [7u8; 8].as_slice().try_into().unwrap(),
        iteration_count: 9_999_999,
        key_length: None,
        prf: pbes2::Pbkdf2Prf::HmacWithSha1,
    };
    let params = pbes2::Parameters {
        kdf: kdf.into(),
        encryption: pbes2::EncryptionScheme::Aes256Cbc { iv: [9u8; 16] },
    };
    let ct = [0x42u8; 48];
    let der = pkcs8::EncryptedPrivateKeyInfoRef {
        encryption_algorithm: params.into(),
        encrypted_data: pkcs8::der::asn1::OctetStringRef::new(&ct).unwrap(),
    }
    .to_der()
    .unwrap();
    pem::encode(&pem::Pem::new("ENCRYPTED PRIVATE KEY", der)).into_bytes()
}

/// Three tenants are hostile: two point at hostile trust servers (one silent, one trickling a
/// body forever), one has a key whose decryption is expensive; two point at the real server.
/// With three workers, all busy with the hostile tenants when the good ones arrive, each hostile
/// reconcile ends by its deadline, so the good SignedImages become Ready soon after instead of
/// waiting behind them for the request timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_servers_and_keys_never_stop_the_other_tenants() {
    let tb = Testbed::get();
    let seed = tb.seed("tenants");
    let client = client().await;
    install_crd(&client).await;
    let ns = unique("tenants");
    let secrets = signer_secrets(tb, &seed, &ns);
    let secrets = secrets.with_secret(
        &ns,
        "expensive",
        None,
        &[
            ("key.pem", &expensive_key()),
            ("passphrase", b"hostile"),
            ("ca.crt", &tb.ca_pem()),
        ],
    );
    let (silent, _silent) = hostile::silent().await;
    let (trickle, _trickle) = hostile::stalling(tb, Some(Duration::from_millis(500))).await;
    let mut cfg = config(&ns, "tenants-e2e");
    cfg.lease = None;
    cfg.concurrency = 3;
    let engine = Engine {
        timeout: Duration::from_secs(120),
        deadline: Duration::from_secs(3),
        ..Engine::default()
    };
    let running = Running::start(&client, engine, secrets, cfg).await;
    let api: Api<SignedImage> = Api::namespaced(client.clone(), &ns);
    let started = std::time::Instant::now();
    let real = tb.var("NOTARY_URL").to_string();
    let silent = format!("https://{silent}");
    let trickle = format!("https://{trickle}");
    for (name, url, tags, secret) in [
        ("hostile-silent", &silent, json!(["v1"]), "signer"),
        ("hostile-trickle", &trickle, json!(["v1"]), "signer"),
        ("hostile-key", &real, json!(["latest"]), "expensive"),
        ("good-a", &real, json!(["multi"]), "signer"),
        ("good-b", &real, json!(["oci-v1"]), "signer"),
    ] {
        let obj: SignedImage = serde_json::from_value(json!({
            "apiVersion": "trustkeeper.dev/v1alpha1", "kind": "SignedImage",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "image": seed.gun, "tags": tags, "roles": ["targets/releases"],
                "signingKey": {"secretRef": {"name": secret}},
                "registry": {"ca": {"secretKeyRef": {"name": "signer", "key": "ca.crt"}}},
                "notary": {"url": url, "ca": {"secretKeyRef": {"name": "signer", "key": "ca.crt"}}},
                "interval": "1h"
            }
        }))
        .unwrap();
        api.create(&PostParams::default(), &obj).await.unwrap();
        if name == "hostile-key" {
            // Both workers are busy with the hostile tenants before the good ones arrive.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let good = eventually(Duration::from_secs(40), || async {
        let mut ok = true;
        for n in ["good-a", "good-b"] {
            ok &= ready_of(&api.get(n).await.unwrap())
                .is_some_and(|(s, r, _)| s == "True" && r == "Signed");
        }
        ok
    })
    .await;
    let took = started.elapsed();
    let statuses: Vec<_> = futures::future::join_all(
        [
            "good-a",
            "good-b",
            "hostile-silent",
            "hostile-trickle",
            "hostile-key",
        ]
        .map(|n| {
            let api = api.clone();
            async move { (n, api.get(n).await.unwrap().status) }
        }),
    )
    .await;
    assert!(
        good.is_ok(),
        "the good tenants are not Ready: {statuses:#?}"
    );
    eprintln!("tenants: good SignedImages Ready after {took:?}");
    // A worker frees at the 3 s deadline; the silent server's 10 s connect timeout, or the
    // trickle's request timeout, would come later.
    assert!(
        took < Duration::from_secs(8),
        "the good tenants waited {took:?}: {statuses:#?}"
    );
    let hostile_done = eventually(Duration::from_secs(30), || async {
        let mut ok = true;
        for n in ["hostile-silent", "hostile-trickle"] {
            ok &= ready_of(&api.get(n).await.unwrap())
                .is_some_and(|(s, r, _)| s == "False" && r == "DeadlineExceeded");
        }
        ok
    })
    .await;
    assert!(
        hostile_done.is_ok(),
        "{:#?}",
        api.get("hostile-trickle").await.unwrap().status
    );
    // The expensive key: refused by its bound, found wrong, or cut off by the deadline.
    let key_done = eventually(Duration::from_secs(30), || async {
        ready_of(&api.get("hostile-key").await.unwrap()).is_some_and(|(s, r, _)| {
            s == "False" && ["BadKey", "WrongPassphrase", "DeadlineExceeded"].contains(&r.as_str())
        })
    })
    .await;
    let key_status = api.get("hostile-key").await.unwrap().status;
    assert!(key_done.is_ok(), "{key_status:#?}");
    eprintln!(
        "tenants: the expensive key ended as {:?} after {:?}",
        key_status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| (&c.reason, &c.message)),
        started.elapsed()
    );
    let listed = listed(tb, &seed.gun);
    assert_eq!(listed.get("multi"), Some(&seed.digest("multi")));
    assert_eq!(listed.get("oci-v1"), Some(&seed.digest("oci-v1")));

    running.stop().await;
}
