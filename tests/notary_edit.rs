//! Editing and signing offline, on real vector repositories with their real keys: content we
//! don't model (`custom`, escapes) survives, versions and expiries follow notary's rules,
//! signer and path refusals happen before anything is produced.

mod common;

use std::collections::BTreeMap;

use common::vectors::{Memory, now, vdir};
use secrecy::SecretString;
use trustkeeper::notary::client::{TrustAnchor, count_valid, update_with, update_with_memo};
use trustkeeper::notary::metadata::Envelope;
use trustkeeper::notary::{Error, Repository, SignatureMemo, SigningKey};

async fn repo(dir: &str, gun: &str) -> Repository {
    update_with(&Memory::load(dir), gun, &TrustAnchor::FirstUse, now())
        .await
        .unwrap()
        .0
}

fn key(file: &str, pass: &str) -> SigningKey {
    SigningKey::from_pem(
        &std::fs::read(vdir().join(file)).unwrap(),
        Some(&SecretString::from(pass.to_string())),
    )
    .unwrap()
    .remove(0)
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
