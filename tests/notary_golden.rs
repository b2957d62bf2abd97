//! Golden tests over the real vectors in `tests/vectors/notary-v1/` (made by the notary 0.7.0
//! Go client and server): byte-exact re-encoding, canonical JSON, key IDs, key import, and a
//! full verification of every stored repository from an in-memory source.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::vectors::{self, Memory, now, vdir};
use secrecy::SecretString;
use serde_json::Value;
use sha2::{Digest, Sha256};
use trustkeeper::notary::client::{RoleHealth, TrustAnchor, TrustState, update_with};
use trustkeeper::notary::keys::{PublicKey, SigningKey};
use trustkeeper::notary::metadata::Envelope;
use trustkeeper::notary::{Error, canonical};

#[test]
fn every_repo_file_reencodes_byte_for_byte() {
    let mut n = 0;
    for entry in walk(&vdir().join("repos")) {
        let bytes = std::fs::read(&entry).unwrap();
        let env = Envelope::parse("x", &bytes).unwrap();
        assert_eq!(
            env.to_file_bytes().unwrap(),
            bytes,
            "{} does not re-encode",
            entry.display()
        );
        n += 1;
    }
    assert!(n >= 50, "only {n} files");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
    out
}

#[test]
fn canonical_cases() {
    let dir = vdir().join("canonical");
    let cases: Value =
        serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 16);
    for c in cases {
        let id = c["id"].as_str().unwrap();
        let input = std::fs::read(dir.join(format!("{id}.input"))).unwrap();
        let expect = std::fs::read(dir.join(format!("{id}.canonical"))).unwrap();
        let mut v: Value = serde_json::from_slice(&input).unwrap();
        if c["canonicalise"].as_str().unwrap().contains("/signed") {
            v = v["signed"].take();
        }
        let got = canonical::to_vec(&v).unwrap();
        assert_eq!(got, expect, "case {id}");
        assert_eq!(
            hex::encode(Sha256::digest(&got)),
            c["canonical_sha256"].as_str().unwrap(),
            "case {id}"
        );
        if let Some(kid) = c.get("expected_key_id").and_then(Value::as_str) {
            let pk: PublicKey = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(pk.key_id(), kid, "case {id}");
        }
    }
    // The four encodings the server rejected are not ours.
    let ours = canonical::to_vec(
        &serde_json::from_slice(&std::fs::read(dir.join("upload-synthetic.input")).unwrap())
            .unwrap(),
    )
    .unwrap();
    for wrong in [
        "upload-wrong-ascii-escaped.bin",
        "upload-wrong-html-escaped.bin",
        "upload-wrong-numbers-as-written.bin",
        "upload-wrong-utf16-key-order.bin",
    ] {
        assert_ne!(ours, std::fs::read(dir.join(wrong)).unwrap(), "{wrong}");
    }
}

#[test]
fn canonical_and_tuf_ids_of_certificates() {
    let root = Envelope::parse(
        "root",
        &std::fs::read(vdir().join("repos/basic-local-signer/root.json")).unwrap(),
    )
    .unwrap();
    let k: PublicKey = serde_json::from_value(
        root.signed["keys"]["1b3451a42fba0f1f2bed80f35aad098c939ce66ad13160e73ff77e4a50f1f9ce"]
            .clone(),
    )
    .unwrap();
    assert_eq!(
        k.key_id(),
        "1b3451a42fba0f1f2bed80f35aad098c939ce66ad13160e73ff77e4a50f1f9ce"
    );
    assert_eq!(
        k.canonical_id().unwrap(),
        "99b40f9f341051732add457c640e97033a3918ef69220a4b195452d0d7b08292"
    );
    let cert = std::fs::read(vdir().join("keys/set-a/certsigner.crt")).unwrap();
    let k = PublicKey {
        keytype: "ecdsa-x509".into(),
        public: cert,
    };
    assert_eq!(&k.key_id()[..8], "cef1ad7c");
    assert_eq!(&k.canonical_id().unwrap()[..8], "67059483");
}

fn pass(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

fn set_a_pass(h: &BTreeMap<String, String>) -> Option<SecretString> {
    Some(pass(match h.get("role").map(String::as_str) {
        Some("root") => "rootpass123",
        Some("targets") => "targetspass123",
        Some("snapshot") => "snapshotpass123",
        _ => "delegpass123",
    }))
}

fn set_b_pass(h: &BTreeMap<String, String>) -> Option<SecretString> {
    Some(pass(match h.get("role").map(String::as_str) {
        Some("root") => "vectors-root",
        Some("targets") => "vectors-targets",
        Some("snapshot") => "vectors-snapshot",
        _ => "vectors-delegation",
    }))
}

#[test]
fn key_store_files_hold_the_key_their_name_says() {
    let dir = vdir().join("keys/set-a/trust-private");
    let mut ok = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let id = p.file_stem().unwrap().to_str().unwrap().to_string();
        let bytes = std::fs::read(&p).unwrap();
        match SigningKey::from_pem_with(&bytes, set_a_pass) {
            Ok(keys) => {
                assert_eq!(keys.len(), 1);
                assert_eq!(keys[0].key_id(), id);
                assert_eq!(format!("{:?}", keys[0]), format!("SigningKey({id})"));
                ok += 1;
            }
            // The 2048-bit RSA delegation key: readable, not a signing key here.
            Err(Error::UnsupportedKey { .. }) => {
                assert_eq!(&id[..8], "9099bff7")
            }
            Err(e) => panic!("{id}: {e}"),
        }
    }
    assert_eq!(ok, 4);
}

#[test]
fn whole_store_export_with_legacy_block() {
    let bytes = std::fs::read(vdir().join("keys/set-b/trust-export-all.pem")).unwrap();
    let keys = SigningKey::from_pem_with(&bytes, set_b_pass).unwrap();
    assert_eq!(keys.len(), 13);
    for k in &keys {
        // from_pem_with refuses a block whose `path:` names another key.
        assert_eq!(k.headers()["path"], k.key_id());
        assert!(k.role().is_some());
    }
    assert!(keys.iter().any(|k| k.role() == Some("targets/l2")));
}

#[test]
fn export_files_and_legacy_inputs() {
    let keys = SigningKey::from_pem(
        &std::fs::read(vdir().join("keys/set-a/export-releases.pem")).unwrap(),
        Some(&pass("delegpass123")),
    )
    .unwrap();
    assert_eq!(keys[0].role(), Some("targets/releases"));
    for (f, id) in [
        ("l1-input.pem", "a90bf570"),
        ("l2-input.pem", "61d67456"),
        ("l3-input.pem", "4a3c39f3"),
        ("l4-input.pem", "a3095e99"),
    ] {
        let keys = SigningKey::from_pem(
            &std::fs::read(vdir().join("keys/legacy").join(f)).unwrap(),
            Some(&pass("vectors-delegation")),
        )
        .unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(&keys[0].key_id()[..8], id, "{f}");
        // l4 is encrypted with OpenSSL 3 defaults (hmacWithSHA256): readable here, not by notary.
        assert_eq!(keys[0].notary_compatible(), f != "l4-input.pem", "{f}");
    }
}

#[test]
fn wrong_passphrase_and_mismatched_path() {
    let bytes = std::fs::read(vdir().join("keys/set-a/export-releases.pem")).unwrap();
    let e = SigningKey::from_pem(&bytes, Some(&pass("nope"))).unwrap_err();
    assert!(matches!(e, Error::WrongPassphrase { .. }), "{e}");
    let e = SigningKey::from_pem(&bytes, None).unwrap_err();
    assert!(matches!(e, Error::WrongPassphrase { .. }), "{e}");
    let bytes = std::fs::read(vdir().join("keys/legacy/l2-input.pem")).unwrap();
    let e = SigningKey::from_pem(&bytes, Some(&pass("nope"))).unwrap_err();
    assert!(matches!(e, Error::WrongPassphrase { .. }), "{e}");
    let text =
        String::from_utf8(std::fs::read(vdir().join("keys/set-a/export-releases.pem")).unwrap())
            .unwrap();
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("path: "))
        .unwrap()
        .to_string();
    let forged = text.replace(&path, &"0".repeat(64));
    let e = SigningKey::from_pem(forged.as_bytes(), Some(&pass("delegpass123"))).unwrap_err();
    assert!(matches!(e, Error::KeyIdMismatch { .. }), "{e}");
    let e = SigningKey::from_pem(b"garbage", None).unwrap_err();
    assert!(matches!(e, Error::MalformedKey { .. }), "{e}");
}

#[tokio::test]
async fn every_vector_repository_verifies() {
    for (dir, gun) in vectors::REPOS {
        let m = Memory::load(dir);
        let (repo, state) = update_with(&m, gun, &TrustAnchor::FirstUse, now())
            .await
            .unwrap_or_else(|e| panic!("{dir}: {e}"));
        for r in repo.roles() {
            assert_eq!(r.health, RoleHealth::Valid, "{dir} {}", r.name);
        }
        assert_eq!(state.root_version, repo.root_info.version);
        // The state re-verifies.
        update_with(&m, gun, &TrustAnchor::State(state), now())
            .await
            .unwrap_or_else(|e| panic!("{dir} again: {e}"));
    }
}

#[tokio::test]
async fn precedence_and_paths() {
    let m = Memory::load("key-types-rsa-x509");
    let (repo, _) = update_with(
        &m,
        "example.com/research/order",
        &TrustAnchor::FirstUse,
        now(),
    )
    .await
    .unwrap();
    let names: Vec<&str> = repo.roles().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names[0], "targets");
    assert_eq!(names[1], "targets/alice");
    let alice = repo.role("targets/alice").unwrap().targets["latest"].clone();
    let rel = repo.role("targets/releases").unwrap().targets["latest"].clone();
    assert_ne!(alice, rel);
    assert_eq!(repo.lookup("latest").unwrap().role, "targets/alice");
    assert_eq!(repo.winner("latest").unwrap().role, "targets/releases");
    assert_eq!(repo.winner("latest").unwrap().meta, &rel);
    let rsa = repo.role("targets/rsa").unwrap();
    assert!(rsa.usable(), "rsapss-signed role verifies");

    let m = Memory::load("delegation-paths");
    let (repo, _) = update_with(
        &m,
        "example.com/vectors/paths",
        &TrustAnchor::FirstUse,
        now(),
    )
    .await
    .unwrap();
    let all = repo.list("targets");
    assert_eq!(all["team/app:1.0"].role, "targets/team");
    assert_eq!(all["team/qa/app:rc1"].role, "targets/team/qa");
    assert_eq!(
        repo.role("targets/team/qa").unwrap().paths,
        vec!["team/qa/"]
    );
    // Docker only counts targets/releases or targets.
    assert!(repo.winner("team/app:1.0").is_none());
}

#[tokio::test]
async fn follows_root_rotation_from_trusted_state() {
    let m = Memory::load("client-run");
    let old = Envelope::parse(
        "root",
        &std::fs::read(vdir().join("repos/client-run/history/1.root.json")).unwrap(),
    )
    .unwrap();
    let mut ids: Vec<String> = old.signed["roles"]["root"]["keyids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let st = TrustState {
        root_key_ids: ids.clone(),
        root_version: 1,
        versions: BTreeMap::new(),
    };
    let (repo, st2) = update_with(
        &m,
        "example.com/vectors/wire",
        &TrustAnchor::State(st),
        now(),
    )
    .await
    .unwrap();
    assert_eq!(repo.root_info.version, 3);
    // notary init: certificate valid 3650 days, the root itself 10 × 365 days.
    let cert = repo.root_cert_expires.unwrap();
    assert!(cert > now() && cert <= repo.root_info.expires);
    assert_eq!(st2.root_version, 3);
    assert_ne!(st2.root_key_ids, ids);
    // Pinning the old root key no longer admits the rotated root.
    let e = update_with(
        &m,
        "example.com/vectors/wire",
        &TrustAnchor::PinnedKeys(ids),
        now(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::UntrustedRoot { .. }), "{e}");
    // Pinning the current one does.
    update_with(
        &m,
        "example.com/vectors/wire",
        &TrustAnchor::PinnedKeys(st2.root_key_ids.clone()),
        now(),
    )
    .await
    .unwrap();
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(vdir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn public_key_pems_and_what_notary_stored() {
    // Certificates are stored as PEM text: our re-encoding gives notary's IDs.
    let k = PublicKey::from_pem(&read("keys/set-a/certsigner.crt")).unwrap();
    assert_eq!(
        (k.keytype.as_str(), &k.key_id()[..8]),
        ("ecdsa-x509", "cef1ad7c")
    );
    let k = PublicKey::from_pem(&read("keys/set-a/root-cert.pem")).unwrap();
    assert_eq!(
        k.canonical_id().unwrap(),
        "99b40f9f341051732add457c640e97033a3918ef69220a4b195452d0d7b08292"
    );
    for (n, id) in [
        ("l1", "a90bf570"),
        ("l2", "61d67456"),
        ("l3", "4a3c39f3"),
        ("l4", "a3095e99"),
    ] {
        let p = PublicKey::from_pem(&read(&format!("keys/legacy/{n}-public.pem"))).unwrap();
        assert_eq!(&p.key_id()[..8], id, "{n}");
        // What `notary key import` stored (re-encrypted, or verbatim for l2/l4) reads back.
        let k = SigningKey::from_pem(
            &read(&format!("keys/legacy/{n}-stored-by-notary.key")),
            Some(&pass("vectors-delegation")),
        )
        .unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_eq!(k[0].key_id(), p.key_id(), "{n}");
    }
    // `key generate -o`: private (no path header) and public halves agree.
    for (private, public, set) in [
        (
            "keys/set-a/releases-key.pem",
            "keys/set-a/releases.pem",
            "delegpass123",
        ),
        (
            "keys/set-b/key-generate-output-key.pem",
            "keys/set-b/key-generate-output.pem",
            "vectors-delegation",
        ),
    ] {
        let k = SigningKey::from_pem(&read(private), Some(&pass(set))).unwrap();
        assert_eq!(
            k[0].key_id(),
            PublicKey::from_pem(&read(public)).unwrap().key_id()
        );
    }
    for f in [
        "keys/set-b/client-run-export.pem",
        "keys/set-b/canonical-upload-releases-key.pem",
    ] {
        assert!(
            !SigningKey::from_pem_with(&read(f), set_b_pass)
                .unwrap()
                .is_empty(),
            "{f}"
        );
    }
    let keys = SigningKey::from_pem_with(&read("keys/set-a/export-gun.pem"), set_a_pass).unwrap();
    assert!(
        keys.iter()
            .any(|k| k.gun() == Some("example.com/research/app"))
    );
}

#[test]
fn manifest_target_meta() {
    let m = read("manifests/schema2-v1.json");
    assert_eq!(
        hex::encode(Sha256::digest(&m)),
        "c512d672400a70f985a0b560012538262a2d5803ecde325dcf0162d3616cddeb"
    );
    let t = Envelope::parse("t", &read("repos/client-run/targets_releases.json")).unwrap();
    assert_eq!(t.signed["targets"]["v1"]["length"], m.len());
    assert_eq!(
        t.signed["targets"]["v1"]["hashes"]["sha256"],
        "xRLWckAKcPmFoLVgASU4JiotWAPs3jJdzwFi02Fs3es="
    );
}
