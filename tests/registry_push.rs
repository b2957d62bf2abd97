//! Registry writes against the real testbed registries (docker-registry 2.8): blob upload
//! (skipped when the blob exists), manifest PUT by tag and by digest, over anonymous, Basic and
//! token auth; writes without push rights refused with a reason.
//!
//! Needs `TRUSTKEEPER_TESTBED` and `TRUSTKEEPER_TESTBED_TOKEN` (`tests/support/testbed.sh`).

mod common;

use std::time::Duration;

use common::Testbed;
use trustkeeper::registry::manifest::{OCI_MANIFEST_V1, sha256_digest};
use trustkeeper::registry::{
    Credentials, ImageRef, RegistryClient, RegistryError, RegistryOptions,
};

fn client(tb: &Testbed, credentials: Credentials) -> RegistryClient {
    trustkeeper::tls::install_crypto_provider();
    RegistryClient::new(RegistryOptions {
        ca_pem: Some(tb.ca_pem()),
        credentials,
        timeout: Duration::from_secs(20),
        ..Default::default()
    })
    .expect("client")
}

/// A repository name no other test uses, on `host`.
fn fresh_image(host: &str, name: &str) -> ImageRef {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    ImageRef::parse(&format!(
        "{host}/test/push-{name}-{}-{nanos:x}",
        std::process::id()
    ))
    .unwrap()
}

/// An OCI manifest over one config and one layer of its own (bytes differ per call).
fn oci_manifest(config: &[u8], layer: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_V1,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256_digest(config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256_digest(layer), "size": layer.len()}],
    }))
    .unwrap()
}

/// Pushes both blobs and the manifest by tag and by digest, and checks what the registry serves.
async fn push_and_read_back(c: &RegistryClient, image: &ImageRef) {
    let config = format!("{{\"t\":\"{}\"}}", image.repository()).into_bytes();
    let layer = format!("layer of {}", image.repository()).into_bytes();
    let before = c.stats();
    for blob in [&config, &layer] {
        let d = c.push_blob(image, blob).await.expect("push blob");
        assert_eq!(d, sha256_digest(blob));
        assert!(c.blob_exists(image, &d).await.unwrap());
        assert_eq!(&c.get_blob(image, &d, 1 << 20).await.unwrap(), blob);
    }
    let pushed = c.stats();
    // per blob: HEAD (absent), POST, PUT
    assert_eq!(pushed.post - before.post, 2, "{pushed:?}");
    assert!(pushed.put - before.put >= 2, "{pushed:?}");
    // again: one HEAD each, nothing uploaded
    for blob in [&config, &layer] {
        c.push_blob(image, blob).await.unwrap();
    }
    let again = c.stats();
    assert_eq!(
        again.post, pushed.post,
        "an existing blob was uploaded again"
    );
    assert_eq!(again.put, pushed.put);

    let manifest = oci_manifest(&config, &layer);
    let digest = c
        .put_manifest(image, "v1", OCI_MANIFEST_V1, &manifest)
        .await
        .expect("put manifest by tag");
    assert_eq!(digest, sha256_digest(&manifest));
    let raw = c.get_manifest_raw(image, "v1").await.unwrap();
    assert_eq!(raw.bytes, manifest);
    assert_eq!(raw.descriptor.media_type, OCI_MANIFEST_V1);
    let d = c.resolve(image, "v1").await.unwrap();
    assert_eq!(d.digest, digest);
    // by digest: the same bytes, and a digest that is not theirs refused before sending
    assert_eq!(
        c.put_manifest(image, &digest, OCI_MANIFEST_V1, &manifest)
            .await
            .unwrap(),
        digest
    );
    let other = format!("sha256:{}", "0".repeat(64));
    let sent = c.stats().put;
    assert!(matches!(
        c.put_manifest(image, &other, OCI_MANIFEST_V1, &manifest)
            .await,
        Err(RegistryError::DigestMismatch { .. })
    ));
    assert_eq!(c.stats().put, sent, "a mismatching digest was sent");
}

#[tokio::test]
async fn anonymous_registry_takes_blobs_and_manifests() {
    let tb = Testbed::get();
    let c = client(tb, Credentials::Anonymous);
    let image = fresh_image(tb.var("REGISTRY_HOST"), "anon");
    push_and_read_back(&c, &image).await;
}

#[tokio::test]
async fn basic_auth_registry_takes_writes_with_credentials_only() {
    let tb = Testbed::get();
    let host = tb.var("REGISTRY_BASIC_HOST");
    let good = Credentials::basic(
        tb.var("REGISTRY_BASIC_USER"),
        tb.var("REGISTRY_BASIC_PASSWORD"),
    );
    let c = client(tb, good);
    push_and_read_back(&c, &fresh_image(host, "basic")).await;

    let anon = client(tb, Credentials::Anonymous);
    let image = fresh_image(host, "basic-anon");
    let e = anon.push_blob(&image, b"never stored").await.unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
    // nothing was stored under the name
    assert!(
        !c.blob_exists(&image, &sha256_digest(b"never stored"))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn token_registry_asks_for_push_scope() {
    let tb = Testbed::token();
    let host = tb.var("REGISTRY_HOST");
    let good = Credentials::basic(tb.var("TOKEN_USER"), tb.var("TOKEN_PASSWORD"));
    let c = client(tb, good);
    push_and_read_back(&c, &fresh_image(host, "token")).await;
    // anonymous tokens carry no actions: a write is refused, naming push rights
    let anon = client(tb, Credentials::Anonymous);
    let image = fresh_image(host, "token-anon");
    let e = anon
        .put_manifest(&image, "v1", OCI_MANIFEST_V1, b"{}")
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{msg}");
    assert!(msg.contains("push"), "{msg}");
}

/// docker-registry 2.8 has no referrers API: the first ask finds the 404, and the client does
/// not ask that host again (for `NO_REFERRERS_API_FOR`), for any repository or digest.
#[tokio::test]
async fn a_registry_without_the_referrers_api_is_asked_once() {
    let tb = Testbed::get();
    let c = client(tb, Credentials::Anonymous);
    let image = fresh_image(tb.var("REGISTRY_HOST"), "referrers");
    let other = fresh_image(tb.var("REGISTRY_HOST"), "referrers-other");
    assert_eq!(c.referrers_api(&image), None);
    let d = |n: u8| format!("sha256:{}", hex::encode([n; 32]));
    let before = c.stats().get;
    assert_eq!(c.get_referrers(&image, &d(1)).await.unwrap(), None);
    assert_eq!(c.stats().get, before + 1);
    assert_eq!(c.referrers_api(&image), Some(false));
    assert_eq!(c.referrers_api(&other), Some(false), "it is the host's");
    for n in 2..6 {
        assert_eq!(c.get_referrers(&other, &d(n)).await.unwrap(), None);
        c.learn_referrers_api(&image, &d(n)).await;
    }
    assert_eq!(c.stats().get, before + 1, "asked again");
}
