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

/// The off-ramp: `formats: [cosign]` names no notary server and none is asked; the tags are
/// resolved from the registry and signed, the status says so per tag, a quiet run writes the
/// same status, and a new key signs every digest again (ours-current is "verifies under the
/// current key").
#[tokio::test]
async fn cosign_alone_signs_with_no_notary_server_and_a_new_key_signs_again() {
    let tb = Testbed::get();
    let seed = tb.seed("engine-cosign-only");
    let tags = ["v1", "multi", "oci-multi"];
    let yaml = format!(
        "image: {}\ntags: {tags:?}\nsigningKey: {{secretRef: {{name: k}}}}\nformats: [cosign]\n",
        seed.gun
    );
    let only: SignedImageSpec = serde_saphyr::from_str(&yaml).unwrap();
    assert!(only.notary.url.is_none());
    let o = common::run_engine_as(
        Engine::default(),
        "t",
        &only,
        common::seed_creds(tb, &seed),
        None,
    )
    .await;
    let (status, _, message) = ready(&o);
    assert_eq!(status, "True", "{message}");
    assert!(
        message.contains("3/3 selected tags signed in cosign"),
        "{message}"
    );
    assert_eq!(o.requests.notary.total(), 0, "{:?}", o.requests.notary);
    assert_eq!(o.status.tag_summary.as_deref(), Some("3/3"));
    assert!(o.status.trust.is_none() && o.status.roles.is_empty());
    let delegation_id =
        std::fs::read_to_string(Path::new(tb.var("TESTBED_KEYS_DIR")).join("delegation.keyid"))
            .unwrap();
    let mut expected: Vec<(String, String)> = tags
        .iter()
        .map(|t| (t.to_string(), format!("sha256:{}", seed.digest(t))))
        .collect();
    expected.sort();
    let got: Vec<(String, String)> = (o.status.signatures.iter())
        .map(|s| (s.tag.clone(), s.digest.clone()))
        .collect();
    assert_eq!(got, expected);
    assert!(
        o.status
            .signatures
            .iter()
            .all(|s| s.format == SignatureFormat::Cosign
                && s.signer == delegation_id.trim()
                && s.until.is_none())
    );
    let cosign_events = |o: &trustkeeper::engine::Outcome| {
        o.events
            .iter()
            .filter(|e| e.reason == "SignedCosign")
            .count()
    };
    assert_eq!(cosign_events(&o), tags.len(), "{:?}", o.events);
    let home = tempfile::tempdir().unwrap();
    let public = Path::new(tb.var("TESTBED_KEYS_DIR")).join("delegation.pub.pem");
    for tag in tags {
        let image = format!("{}@sha256:{}", seed.gun, seed.digest(tag));
        let v = cosign_verify("COSIGN", home.path(), &public, &image);
        assert!(
            v.status.success(),
            "{tag}: {}",
            String::from_utf8_lossy(&v.stderr)
        );
    }

    // quiet: nothing pushed, the same status (no time that moves), still no notary request
    let again = common::run_engine_as(
        Engine::default(),
        "t",
        &only,
        common::seed_creds(tb, &seed),
        Some(&o.status),
    )
    .await;
    assert_eq!(again.status, o.status);
    assert!(again.events.is_empty(), "{:?}", again.events);
    let r = again.requests.registry;
    assert_eq!(
        (r.post, r.put, again.requests.notary.total()),
        (0, 0, 0),
        "{r:?}"
    );
    // a HEAD per tag and cosign's one GET per digest: no manifest fetched again
    assert_eq!((r.head, r.get), (3, 3), "{r:?}");

    // a new key: our signature under the old key is not current; every digest is signed again
    let dir = tempfile::tempdir().unwrap();
    let key =
        trustkeeper::notary::SigningKey::generate_ecdsa("targets/releases", "rotated").unwrap();
    let pass = secrecy::SecretString::from("rotated-passphrase".to_string());
    std::fs::write(dir.path().join("k.pem"), key.export_pem(&pass).unwrap()).unwrap();
    std::fs::write(dir.path().join("k.pass"), "rotated-passphrase").unwrap();
    let new_public = dir.path().join("k.pub");
    let spki = key.public().spki_der().unwrap();
    std::fs::write(&new_public, pem::encode(&pem::Pem::new("PUBLIC KEY", spki))).unwrap();
    let rotated = common::run_engine_as(
        Engine::default(),
        "t",
        &only,
        common::key_file_creds(tb, dir.path().join("k.pem"), dir.path().join("k.pass")),
        Some(&again.status),
    )
    .await;
    assert_eq!(ready(&rotated).0, "True", "{:?}", ready(&rotated));
    assert_eq!(cosign_events(&rotated), tags.len(), "{:?}", rotated.events);
    assert!(
        rotated
            .status
            .signatures
            .iter()
            .all(|s| s.signer == trustkeeper::notary::Signer::key_id(&key))
    );
    for tag in tags {
        let image = format!("{}@sha256:{}", seed.gun, seed.digest(tag));
        for pubkey in [&new_public, &public] {
            let v = cosign_verify("COSIGN", home.path(), pubkey, &image);
            assert!(
                v.status.success(),
                "{tag} {pubkey:?}: {}",
                String::from_utf8_lossy(&v.stderr)
            );
        }
    }
}
