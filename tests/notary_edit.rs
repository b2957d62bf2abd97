//! Editing and signing offline, on real vector repositories with their real keys: content we
//! don't model (`custom`, escapes) survives, versions and expiries follow notary's rules,
//! signer and path refusals happen before anything is produced.

mod common;

use std::collections::BTreeMap;

use common::vectors::{Memory, key, now, vdir};
use secrecy::SecretString;
use trustkeeper::notary::client::{TrustAnchor, count_valid, update_with, update_with_memo};
use trustkeeper::notary::metadata::Envelope;
use trustkeeper::notary::{Error, Repository, SignatureMemo, SigningKey};

async fn repo(dir: &str, gun: &str) -> Repository {
    common::vectors::repository(dir, gun).await
}

fn delegation_key() -> SigningKey {
    key(
        "keys/set-a/trust-private/1aea10ffb47f0d2956c1a9bfce22976ab3145fb3e72b2456ef053131ad145383.key",
        "delegpass123",
    )
}

fn verifies(repo: &Repository, role: &str, bytes: &[u8]) -> bool {
    let env = Envelope::parse(role, bytes).unwrap();
    let s = repo.signers_of(role).unwrap();
    let listed: Vec<String> = s.keys.keys().cloned().collect();
    count_valid(&env, &s.keys, &listed) as u64 >= s.threshold
}

#[tokio::test]
async fn add_keeps_custom_and_escapes_and_follows_version_rules() {
    let repo = repo("html-escape-and-custom", "example.com/research/app").await;
    let old = repo.role("targets/releases").unwrap();
    let mut ed = repo.edit();
    ed.add_target("targets/releases", "new<tag>", &[7u8; 32], 42)
        .unwrap();
    let files = ed.sign(&[delegation_key()], now()).unwrap();
    assert_eq!(files.len(), 1, "no snapshot key held: only the role");
    let f = &files[0];
    assert_eq!(
        (f.role.as_str(), f.version),
        ("targets/releases", old.version + 1)
    );
    let text = String::from_utf8(f.bytes.clone()).unwrap();
    assert!(text.contains(r#""custom":{"a":"xy","b":1}"#), "{text}");
    assert!(text.contains(r#""new\u003ctag\u003e":{"hashes":{"sha256":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="},"length":42}"#));
    assert!(
        text.contains(r#""expires":"2029-11-24T21:00:00Z""#),
        "now + 3 × 365 days"
    );
    assert!(verifies(&repo, "targets/releases", &f.bytes));
    // Everything else in the role is unchanged.
    let blank = |mut v: serde_json::Value| {
        v["targets"].as_object_mut().unwrap().remove("new<tag>");
        v["version"] = serde_json::json!(0);
        v["expires"] = serde_json::json!("");
        v
    };
    let after = Envelope::parse("targets/releases", &f.bytes)
        .unwrap()
        .signed;
    let before = Envelope::parse("x", old.file_bytes()).unwrap().signed;
    assert_eq!(blank(after), blank(before));
}

#[tokio::test]
async fn refusals_before_signing() {
    let repo = repo("basic-local-signer", "example.com/research/app").await;
    let targets_key = key(
        "keys/set-a/trust-private/ce4b7cbfd642685848c6fce5e02cc45b8dcc123a22e64e4f024733fc8ead6122.key",
        "targetspass123",
    );
    // A targets key is not a signer of targets/releases; nothing is produced.
    let mut ed = repo.edit();
    ed.add_target("targets/releases", "x", &[1; 32], 1).unwrap();
    ed.add_target("targets", "y", &[1; 32], 1).unwrap();
    let e = ed
        .sign(std::slice::from_ref(&targets_key), now())
        .unwrap_err();
    match e {
        Error::KeyNotSigner {
            role,
            accepted,
            offered,
        } => {
            assert_eq!(role, "targets/releases");
            assert_eq!(
                accepted,
                vec!["1aea10ffb47f0d2956c1a9bfce22976ab3145fb3e72b2456ef053131ad145383"]
            );
            assert_eq!(offered, vec![targets_key.key_id().to_string()]);
        }
        other => panic!("{other}"),
    }
    // With both keys both roles are signed.
    let files = ed.sign(&[targets_key, delegation_key()], now()).unwrap();
    let roles: Vec<&str> = files.iter().map(|f| f.role.as_str()).collect();
    assert_eq!(roles, ["targets", "targets/releases"]);
    for f in &files {
        assert!(verifies(&repo, &f.role, &f.bytes), "{}", f.role);
    }
    // Witness re-signs unchanged content; an identical add changes nothing.
    let mut ed = repo.edit();
    ed.witness("targets/releases", None).unwrap();
    let f = ed.sign(&[delegation_key()], now()).unwrap();
    let old = repo.role("targets/releases").unwrap();
    let new = Envelope::parse("r", &f[0].bytes).unwrap();
    assert_eq!(
        new.signed["targets"],
        serde_json::to_value(
            old.targets
                .iter()
                .map(|(k, m)| (
                    k.clone(),
                    serde_json::json!({"hashes": m.hashes, "length": m.length})
                ))
                .collect::<BTreeMap<_, _>>()
        )
        .unwrap()
    );
    let (name, meta) = old.targets.iter().next().unwrap();
    let sha: [u8; 32] = meta.sha256().unwrap().try_into().unwrap();
    let mut ed = repo.edit();
    ed.add_target("targets/releases", name, &sha, meta.length)
        .unwrap();
    assert!(ed.sign(&[delegation_key()], now()).unwrap().is_empty());
    // Past expiry, root and unknown roles.
    let mut ed = repo.edit();
    ed.witness(
        "targets/releases",
        Some("2020-01-01T00:00:00Z".parse().unwrap()),
    )
    .unwrap();
    assert!(matches!(
        ed.sign(&[delegation_key()], now()).unwrap_err(),
        Error::Config(_)
    ));
    assert!(matches!(
        repo.edit().witness("root", None).unwrap_err(),
        Error::UnknownRole { .. }
    ));
    assert!(matches!(
        repo.edit().witness("targets/x", None).unwrap_err(),
        Error::UnknownRole { .. }
    ));
}

#[tokio::test]
async fn nested_delegation_paths() {
    let repo = repo("delegation-paths", "example.com/vectors/paths").await;
    let all = std::fs::read(vdir().join("keys/set-b/trust-export-all.pem")).unwrap();
    let keys = SigningKey::from_pem_with(&all, |h| {
        Some(SecretString::from(
            match h.get("role").map(String::as_str) {
                Some("root") => "vectors-root".to_string(),
                Some("targets") => "vectors-targets".to_string(),
                _ => "vectors-delegation".to_string(),
            },
        ))
    })
    .unwrap();
    let e = repo
        .edit()
        .add_target("targets/team/qa", "team/app:2", &[1; 32], 1)
        .unwrap_err();
    assert!(matches!(e, Error::TargetNotAllowed { .. }), "{e}");
    let mut ed = repo.edit();
    ed.add_target("targets/team/qa", "team/qa/app:rc2", &[1; 32], 1)
        .unwrap();
    let files = ed.sign(&keys, now()).unwrap();
    assert_eq!(files[0].role, "targets/team/qa");
    assert!(verifies(&repo, "targets/team/qa", &files[0].bytes));
}

/// The memo is the caller's value: an update through it records every signature it checked,
/// an edit of the repository it verified records its own new signatures there (the read-back
/// after a publish finds them), and an update without it, or through another memo, leaves it
/// as it was.
#[tokio::test]
async fn the_callers_memo_records_the_update_and_the_edit() {
    let m = Memory::load("html-escape-and-custom");
    let gun = "example.com/research/app";
    let memo = SignatureMemo::default();
    memo.remember([]);
    let (repo, _) = update_with_memo(&m, gun, &TrustAnchor::FirstUse, now(), &memo)
        .await
        .unwrap();
    let read = memo.checked();
    assert!(
        read.len() >= 4,
        "root, timestamp, snapshot, targets: {read:?}"
    );

    let mut ed = repo.edit();
    ed.add_target("targets/releases", "memo", &[9u8; 32], 9)
        .unwrap();
    let files = ed.sign(&[delegation_key()], now()).unwrap();
    assert_eq!(files.len(), 1);
    let after = memo.checked();
    assert_eq!(after.len(), read.len() + 1, "the new file's one signature");
    assert!(read.iter().all(|e| after.contains(e)), "{read:?} {after:?}");

    update_with(&m, gun, &TrustAnchor::FirstUse, now())
        .await
        .unwrap();
    let other = SignatureMemo::default();
    other.remember([]);
    update_with_memo(&m, gun, &TrustAnchor::FirstUse, now(), &other)
        .await
        .unwrap();
    assert_eq!(
        other.checked(),
        read,
        "the same signatures, in its own record"
    );
    assert_eq!(memo.checked(), after, "untouched by the others");
}

/// A signer that is not a [`SigningKey`]: a fresh P-256 key held by the p256 crate, the way a
/// KMS-backed or another format's signer plugs in.
struct OtherSigner {
    sk: p256::ecdsa::SigningKey,
    public: trustkeeper::notary::PublicKey,
    id: String,
}

impl std::fmt::Debug for OtherSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OtherSigner({})", self.id)
    }
}

impl OtherSigner {
    fn fresh() -> OtherSigner {
        use p256::pkcs8::EncodePublicKey;
        let sk = loop {
            if let Ok(sk) = p256::ecdsa::SigningKey::from_slice(&rand::random::<[u8; 32]>()) {
                break sk;
            }
        };
        let spki = sk.verifying_key().to_public_key_der().unwrap();
        let public = trustkeeper::notary::PublicKey {
            keytype: "ecdsa".into(),
            public: spki.as_bytes().to_vec(),
        };
        OtherSigner {
            id: public.key_id(),
            public,
            sk,
        }
    }
}

impl trustkeeper::notary::Signer for OtherSigner {
    fn key_id(&self) -> &str {
        &self.id
    }
    fn public_key(&self) -> &trustkeeper::notary::PublicKey {
        &self.public
    }
    fn algorithm(&self) -> trustkeeper::notary::SignatureAlgorithm {
        trustkeeper::notary::SignatureAlgorithm::EcdsaP256Sha256
    }
    fn sign(&self, msg: &[u8]) -> trustkeeper::notary::Result<Vec<u8>> {
        let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&self.sk, msg);
        Ok(sig.to_bytes().to_vec())
    }
}

/// Serves `bytes` as the current `role` under every name a client asks for.
fn serve(mem: &mut Memory, role: &str, bytes: &[u8]) {
    use sha2::Digest;
    mem.put(&format!("{role}.json"), bytes.to_vec());
    let hash = hex::encode(sha2::Sha256::digest(bytes));
    mem.put(&format!("{role}.{hash}.json"), bytes.to_vec());
}

/// A snapshot or timestamp body `meta` signed by `key` (the server's role, done by hand here).
fn server_signed(kind: &str, meta: serde_json::Value, version: u64, key: &SigningKey) -> Vec<u8> {
    use trustkeeper::notary::{canonical, metadata::file_bytes, time};
    let expires = now()
        .saturating_add(jiff::SignedDuration::from_hours(24 * 14))
        .unwrap();
    let body = serde_json::json!({"_type": kind, "expires": time::format(expires), "meta": meta, "version": version});
    let msg = canonical::to_vec(&body).unwrap();
    file_bytes(&msg, &[key.sign(&msg, key.key_id())])
}

/// Another `Signer` than `SigningKey` signs a new repository's targets v1 and then, through the
/// editor, targets v2: the TUF update verifies both against the key root lists, and the
/// signature is notary's (method `ecdsa`, 64-byte r‖s, labelled with the key's ID).
#[tokio::test]
async fn another_signer_signs_through_the_editor_and_verifies() {
    use trustkeeper::notary::metadata::FileMeta;
    use trustkeeper::notary::{NewRepository, Signer};
    let gun = "example.com/team/other-signer";
    let root = SigningKey::generate_ecdsa("root", "").unwrap();
    let snapshot = SigningKey::generate_ecdsa("snapshot", gun).unwrap();
    let timestamp = SigningKey::generate_ecdsa("timestamp", gun).unwrap();
    let other = OtherSigner::fresh();
    let meta = NewRepository::new(gun, &root, &other)
        .sign(snapshot.public().clone(), timestamp.public().clone(), now())
        .unwrap();
    let (root_file, targets_v1) = (&meta.files[0].bytes, &meta.files[1].bytes);
    let mut mem = Memory::default();
    serve(&mut mem, "root", root_file);
    mem.put("1.root.json", root_file.clone());
    serve(&mut mem, "targets", targets_v1);
    let snap_meta = serde_json::json!({"root": FileMeta::of_file(root_file), "targets": FileMeta::of_file(targets_v1)});
    let snap = server_signed("Snapshot", snap_meta, 1, &snapshot);
    serve(&mut mem, "snapshot", &snap);
    let ts = server_signed(
        "Timestamp",
        serde_json::json!({"snapshot": FileMeta::of_file(&snap)}),
        1,
        &timestamp,
    );
    serve(&mut mem, "timestamp", &ts);

    let (repo, _) = update_with(&mem, gun, &TrustAnchor::FirstUse, now())
        .await
        .unwrap();
    assert_eq!(repo.role("targets").unwrap().version, 1);
    let mut ed = repo.edit();
    ed.add_target("targets", "v2", &[9u8; 32], 1234).unwrap();
    // Through the seam as the engine holds keys: boxed, with the snapshot key beside it.
    let keys: Vec<Box<dyn Signer>> = vec![Box::new(other), Box::new(snapshot)];
    let files = ed.sign(&keys, now()).unwrap();
    let roles: Vec<&str> = files.iter().map(|f| f.role.as_str()).collect();
    assert_eq!(roles, ["targets", "snapshot"]);
    assert!(verifies(&repo, "targets", &files[0].bytes));
    let env = Envelope::parse("targets", &files[0].bytes).unwrap();
    let sig = &env.signatures[0];
    assert_eq!(
        (sig.keyid.as_str(), sig.method.as_str()),
        (keys[0].key_id(), "ecdsa")
    );
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&sig.sig)
        .unwrap();
    assert_eq!(raw.len(), 64, "r‖s, not DER");

    // The client's update accepts what was signed and serves the new target.
    serve(&mut mem, "targets", &files[0].bytes);
    serve(&mut mem, "snapshot", &files[1].bytes);
    let ts2 = server_signed(
        "Timestamp",
        serde_json::json!({"snapshot": FileMeta::of_file(&files[1].bytes)}),
        2,
        &timestamp,
    );
    serve(&mut mem, "timestamp", &ts2);
    let (after, _) = update_with(&mem, gun, &TrustAnchor::FirstUse, now())
        .await
        .unwrap();
    let t = after.role("targets").unwrap();
    assert_eq!(t.version, 2);
    assert!(t.targets.contains_key("v2"));
    assert!(after.lookup("v2").is_some(), "the new target is served");
}

/// A signer that fails, or that answers ECDSA in DER (as KMSs do), makes the editor refuse with
/// the key's ID and what to fix, producing no file.
#[tokio::test]
async fn a_signer_that_fails_or_answers_der_produces_nothing() {
    use trustkeeper::notary::{PublicKey, SignatureAlgorithm, Signer};
    #[derive(Debug)]
    struct Misbehaving(SigningKey, bool);
    impl Signer for Misbehaving {
        fn key_id(&self) -> &str {
            self.0.key_id()
        }
        fn public_key(&self) -> &PublicKey {
            self.0.public()
        }
        fn algorithm(&self) -> SignatureAlgorithm {
            Signer::algorithm(&self.0)
        }
        fn sign(&self, msg: &[u8]) -> trustkeeper::notary::Result<Vec<u8>> {
            if self.1 {
                return Err(Error::Signing {
                    key: self.key_id().into(),
                    reason: "the key store did not answer".into(),
                });
            }
            let raw = Signer::sign(&self.0, msg)?;
            let sig = p256::ecdsa::Signature::from_slice(&raw).unwrap();
            Ok(sig.to_der().as_bytes().to_vec())
        }
    }
    let repo = repo("html-escape-and-custom", "example.com/research/app").await;
    let mut ed = repo.edit();
    ed.witness("targets/releases", None).unwrap();
    let id = delegation_key().key_id().to_string();
    for (fails, says) in [
        (true, "the key store did not answer"),
        (
            false,
            "not the 64 of EcdsaP256Sha256 (ECDSA as r‖s, not DER)",
        ),
    ] {
        let e = ed
            .sign(&[Misbehaving(delegation_key(), fails)], now())
            .unwrap_err();
        assert!(
            matches!(&e, Error::Signing { key, .. } if *key == id),
            "{e}"
        );
        let text = e.to_string();
        assert!(text.contains(says) && text.contains(&id), "{text}");
    }
    // The same key through the seam as it is signs.
    assert_eq!(ed.sign(&[delegation_key()], now()).unwrap().len(), 1);
}
