//! Docker-style bearer token auth against the real testbed in `--token` mode
//! (`TRUSTKEEPER_TESTBED_TOKEN`): challenge, scope, token, retry; anonymous and wrong
//! credentials are refused as `Unauthorized`.

mod common;

use std::time::Duration;

use common::Testbed;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use trustkeeper::notary::{Auth, Error, NotaryClient, ServerConfig, SigningKey, TrustAnchor};

fn client(tb: &Testbed, auth: Auth) -> NotaryClient {
    trustkeeper::tls::install_crypto_provider();
    NotaryClient::new(ServerConfig {
        url: tb.var("NOTARY_URL").to_string(),
        ca_pem: Some(tb.ca_pem()),
        ca_only: false,
        auth,
        timeout: Duration::from_secs(20),
    })
    .unwrap()
}

fn basic(tb: &Testbed, password: &str) -> Auth {
    Auth::Basic {
        username: tb.var("TOKEN_USER").to_string(),
        password: SecretString::from(password.to_string()),
    }
}

#[tokio::test]
async fn token_auth_read_and_publish() {
    let tb = Testbed::token();
    let seed = tb.seed("token");
    let now = jiff::Timestamp::now();

    let e = client(tb, Auth::Anonymous)
        .update(&seed.gun, &TrustAnchor::FirstUse, now)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    let e = client(tb, basic(tb, "wrong"))
        .update(&seed.gun, &TrustAnchor::FirstUse, now)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");

    let c = client(tb, basic(tb, tb.var("TOKEN_PASSWORD")));
    let (repo, st) = c
        .update(&seed.gun, &TrustAnchor::FirstUse, now)
        .await
        .unwrap();
    assert!(
        repo.role("targets/releases")
            .unwrap()
            .targets
            .contains_key("v1")
    );
    // Cached pull token: a second update needs no new challenge round.
    c.update(&seed.gun, &TrustAnchor::State(st), now)
        .await
        .unwrap();

    let keys_dir = std::path::Path::new(tb.var("TESTBED_KEYS_DIR"));
    let pass = std::fs::read_to_string(keys_dir.join("delegation.passphrase")).unwrap();
    let key = SigningKey::from_pem(
        &std::fs::read(keys_dir.join("delegation.key.pem")).unwrap(),
        Some(&SecretString::from(pass.trim_end().to_string())),
    )
    .unwrap();
    let m = seed.manifest("multi");
    let mut ed = repo.edit();
    ed.add_target(
        "targets/releases",
        "multi",
        &Sha256::digest(&m).into(),
        m.len() as u64,
    )
    .unwrap();
    c.publish(&seed.gun, &ed.sign(&key, now).unwrap())
        .await
        .unwrap();
    let out = tb.notary(&["list", &seed.gun, "-r", "targets/releases"]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && s.contains("multi"), "{s}");
    // The server-managed timestamp key is the one root lists.
    let ts = c.server_key(&seed.gun, "timestamp").await.unwrap();
    assert!(
        repo.signers_of("timestamp")
            .unwrap()
            .keys
            .contains_key(&ts.key_id())
    );
}
