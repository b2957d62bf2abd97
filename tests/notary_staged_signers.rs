//! A delegation re-signed in the same edit as its parent's change of its keys (a key
//! rotation) is signed by, and checked against, the parent's staged declaration: the new key
//! signs it and the result verifies against the staged parent; the old key is refused.
//! Offline, on a real vector repository with its real keys.

mod common;

use common::vectors::{key, now};
use trustkeeper::notary::client::count_valid;
use trustkeeper::notary::metadata::Envelope;
use trustkeeper::notary::{Error, PublicKey, Repository, SigningKey};

const GUN: &str = "example.com/research/app";

async fn repo() -> Repository {
    common::vectors::repository("basic-local-signer", GUN).await
}

fn targets_key() -> SigningKey {
    key(
        "keys/set-a/trust-private/ce4b7cbfd642685848c6fce5e02cc45b8dcc123a22e64e4f024733fc8ead6122.key",
        "targetspass123",
    )
}

fn old_key() -> SigningKey {
    key(
        "keys/set-a/trust-private/1aea10ffb47f0d2956c1a9bfce22976ab3145fb3e72b2456ef053131ad145383.key",
        "delegpass123",
    )
}

/// Whether `bytes` meets the threshold of the keys `parent`'s body declares for `role`.
fn verifies_against(parent: &[u8], role: &str, bytes: &[u8]) -> bool {
    let parent = Envelope::parse("targets", parent).unwrap();
    let d = &parent.signed["delegations"];
    let entry = d["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == role)
        .unwrap();
    let listed: Vec<String> = entry["keyids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let keys = listed
        .iter()
        .map(|id| {
            let k: PublicKey = serde_json::from_value(d["keys"][id].clone()).unwrap();
            (id.clone(), k)
        })
        .collect();
    let env = Envelope::parse(role, bytes).unwrap();
    count_valid(&env, &keys, &listed) as u64 >= entry["threshold"].as_u64().unwrap()
}

/// Stages the rotation of targets/releases from the old key to `new` and a re-sign of it.
fn stage_rotation<'a>(repo: &'a Repository, new: &SigningKey) -> trustkeeper::notary::Editor<'a> {
    let mut ed = repo.edit();
    let all = [String::new()];
    ed.add_delegation(
        "targets/releases",
        std::slice::from_ref(new.public()),
        &all,
        None,
    )
    .unwrap();
    ed.remove_delegation_keys("targets/releases", &[old_key().key_id().to_string()])
        .unwrap();
    ed.witness("targets/releases", None).unwrap();
    ed
}

#[tokio::test]
async fn a_rotated_delegation_is_signed_by_the_new_key_against_the_staged_parent() {
    let repo = repo().await;
    let old_targets = repo.role("targets/releases").unwrap().targets.clone();
    assert!(!old_targets.is_empty(), "the vector holds targets");
    let keys = [
        targets_key(),
        SigningKey::generate_ecdsa("targets/releases", GUN).unwrap(),
    ];
    let new = &keys[1];
    let ed = stage_rotation(&repo, new);
    let files = ed.sign(&keys, now()).unwrap();
    let roles: Vec<&str> = files.iter().map(|f| f.role.as_str()).collect();
    assert_eq!(roles, ["targets", "targets/releases"]);
    let (parent, child) = (&files[0].bytes, &files[1].bytes);
    // Signed by the new key only, and valid under the parent as published with it.
    let env = Envelope::parse("targets/releases", child).unwrap();
    let ids: Vec<&str> = env.signatures.iter().map(|s| s.keyid.as_str()).collect();
    assert_eq!(ids, [new.public().key_id()]);
    assert!(verifies_against(parent, "targets/releases", child));
    // Not valid under the repository's current declaration (the old key): the check used
    // the staged one.
    let s = repo.signers_of("targets/releases").unwrap();
    let listed: Vec<String> = s.keys.keys().cloned().collect();
    assert_eq!(count_valid(&env, &s.keys, &listed), 0);
    // Every target the role held is still there.
    let after: serde_json::Map<String, serde_json::Value> =
        env.signed["targets"].as_object().unwrap().clone();
    for name in old_targets.keys() {
        assert!(after.contains_key(name), "{name} dropped");
    }
    assert_eq!(after.len(), old_targets.len());
}

#[tokio::test]
async fn the_old_key_is_refused_once_the_staged_parent_drops_it() {
    let repo = repo().await;
    let new = SigningKey::generate_ecdsa("targets/releases", GUN).unwrap();
    let ed = stage_rotation(&repo, &new);
    let e = ed.sign(&[targets_key(), old_key()], now()).unwrap_err();
    match e {
        Error::KeyNotSigner {
            role,
            accepted,
            offered,
        } => {
            assert_eq!(role, "targets/releases");
            assert_eq!(accepted, [new.key_id().to_string()]);
            assert!(offered.contains(&old_key().key_id().to_string()));
        }
        other => panic!("{other}"),
    }
    // Without the parent's change the old key still signs (the repository's declaration).
    let mut ed = repo.edit();
    ed.witness("targets/releases", None).unwrap();
    let files = ed.sign(&[old_key()], now()).unwrap();
    assert_eq!(files[0].role, "targets/releases");
}
