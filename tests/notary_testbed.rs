//! Against the real testbed (notary-server + notary-signer + the Go client as referee):
//! the Go client writes, we read; we write, the Go client reads; and both on top of each other.
//! Needs `TRUSTKEEPER_TESTBED` (see tests/common/mod.rs).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{Seed, Testbed};
use jiff::Timestamp;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use trustkeeper::notary::cache::{CachedFetch, Files};
use trustkeeper::notary::client::RoleHealth;
use trustkeeper::notary::client::update_with;
use trustkeeper::notary::metadata::Envelope;
use trustkeeper::notary::{
    Error, NotaryClient, Repository, SignedFile, SigningKey, TrustAnchor, TrustState,
};

/// (digest hex, size, role) per name.
type Listing = BTreeMap<String, (String, u64, String)>;

fn client(tb: &Testbed) -> NotaryClient {
    common::notary_client_at(tb, tb.var("NOTARY_URL"))
}

fn passphrase(tb: &Testbed, name: &str) -> SecretString {
    let p = std::path::Path::new(tb.var("TESTBED_KEYS_DIR")).join(format!("{name}.passphrase"));
    SecretString::from(std::fs::read_to_string(p).unwrap().trim_end().to_string())
}

fn delegation_key(tb: &Testbed) -> SigningKey {
    let p = std::path::Path::new(tb.var("TESTBED_KEYS_DIR")).join("delegation.key.pem");
    let mut k = SigningKey::from_pem(
        &std::fs::read(p).unwrap(),
        Some(&passphrase(tb, "delegation")),
    )
    .unwrap();
    assert_eq!(k.len(), 1);
    k.remove(0)
}

fn targets_key(tb: &Testbed, seed: &Seed) -> SigningKey {
    let mut k = SigningKey::from_pem(
        &std::fs::read(seed.var("TARGETS_KEY")).unwrap(),
        Some(&passphrase(tb, "targets")),
    )
    .unwrap();
    assert_eq!(k[0].key_id(), seed.var("TARGETS_KEY_ID"));
    k.remove(0)
}

/// The real Go client's `notary list GUN [-r ROLE]`, from a fresh trust dir (no cache).
fn go_list(tb: &Testbed, gun: &str, role: Option<&str>) -> Listing {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["list", gun];
    if let Some(r) = role {
        args.extend(["-r", r]);
    }
    let out = Command::new(tb.var("NOTARY_CLIENT"))
        .env("TESTBED_TRUST_DIR", dir.path())
        .args(&args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "notary {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut m = Listing::new();
    for line in stdout.lines().skip(2) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 4 {
            m.insert(
                f[0].to_string(),
                (f[1].to_string(), f[2].parse().unwrap(), f[3].to_string()),
            );
        }
    }
    m
}

fn go_cmd(tb: &Testbed, args: &[&str]) -> String {
    let out = tb.notary(args);
    let s = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "notary {args:?}: {s}");
    s
}

fn our_list(repo: &Repository, role: &str) -> Listing {
    repo.list(role)
        .into_iter()
        .map(|(name, f)| {
            (
                name.to_string(),
                (
                    hex::encode(f.meta.sha256().unwrap()),
                    f.meta.length,
                    f.role.to_string(),
                ),
            )
        })
        .collect()
}

fn assert_same_as_go(tb: &Testbed, repo: &Repository, gun: &str) {
    assert_eq!(
        our_list(repo, "targets"),
        go_list(tb, gun, None),
        "notary list"
    );
    for r in repo.roles() {
        assert_eq!(
            our_list(repo, &r.name),
            go_list(tb, gun, Some(&r.name)),
            "notary list -r {}",
            r.name
        );
    }
}

fn manifest(seed: &Seed, tag: &str) -> ([u8; 32], u64) {
    let b = seed.manifest(tag);
    (Sha256::digest(&b).into(), b.len() as u64)
}

fn now() -> Timestamp {
    Timestamp::now()
}

async fn update(c: &NotaryClient, gun: &str, st: Option<TrustState>) -> (Repository, TrustState) {
    let anchor = st.map_or(TrustAnchor::FirstUse, TrustAnchor::State);
    c.update(gun, &anchor, now()).await.unwrap()
}

#[tokio::test]
async fn go_client_repo_reads_exactly_as_notary_lists_it() {
    let tb = Testbed::get();
    let seed = tb.seed("read");
    let c = client(tb);
    let (repo, st) = update(&c, &seed.gun, None).await;
    let names: Vec<&str> = repo.roles().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["targets", "targets/releases", "targets/ci-bot"]);
    for r in repo.roles() {
        assert_eq!(r.health, RoleHealth::Valid, "{}", r.name);
    }
    assert_same_as_go(tb, &repo, &seed.gun);
    let v1 = repo.winner("v1").unwrap();
    assert_eq!(v1.role, "targets/releases");
    assert_eq!(
        format!("sha256:{}", hex::encode(v1.meta.sha256().unwrap())),
        seed.var("SIGNED_DIGEST")
    );
    // The delegation key signs releases and ci-bot; the canonical IDs are what notary prints.
    let s = repo.signers_of("targets/releases").unwrap();
    assert_eq!(s.canonical_ids(), vec![tb.var_keys_delegation_id()]);
    assert!(st.versions.contains_key("timestamp") && st.versions.contains_key("snapshot"));
    // The state re-verifies (root by version + key IDs).
    let (_, st2) = update(&c, &seed.gun, Some(st.clone())).await;
    assert_eq!(st2.root_version, st.root_version);
    // Pinned to the seed's root key (canonical ID) works; another pin is refused.
    c.update(
        &seed.gun,
        &TrustAnchor::PinnedKeys(vec![seed.var("ROOT_KEY_ID").to_string()]),
        now(),
    )
    .await
    .unwrap();
    let e = c
        .update(
            &seed.gun,
            &TrustAnchor::PinnedKeys(vec!["00".repeat(32)]),
            now(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UntrustedRoot { .. }), "{e}");
}

trait KeysId {
    fn var_keys_delegation_id(&self) -> String;
}
impl KeysId for Testbed {
    fn var_keys_delegation_id(&self) -> String {
        let p = std::path::Path::new(self.var("TESTBED_KEYS_DIR")).join("delegation.keyid");
        std::fs::read_to_string(p).unwrap().trim().to_string()
    }
}

fn version_of(files: &[SignedFile], role: &str) -> u64 {
    files.iter().find(|f| f.role == role).unwrap().version
}

#[tokio::test]
async fn we_write_go_client_reads_and_both_build_on_each_other() {
    let tb = Testbed::get();
    let seed = tb.seed("write");
    let gun = seed.gun.clone();
    let c = client(tb);
    let dkey = delegation_key(tb);
    let tkey = targets_key(tb, &seed);
    let (repo, st) = update(&c, &gun, None).await;
    let rel_v = repo.role("targets/releases").unwrap().version;

    // 1. Four image kinds into targets/releases with the exported delegation key.
    let mut ed = repo.edit();
    for tag in ["latest", "multi", "oci-v1", "oci-multi"] {
        let (h, n) = manifest(&seed, tag);
        ed.add_target("targets/releases", tag, &h, n).unwrap();
    }
    let files = ed.sign(std::slice::from_ref(&dkey), now()).unwrap();
    assert_eq!(
        files.len(),
        1,
        "only the changed role; snapshot is the server's"
    );
    assert_eq!(version_of(&files, "targets/releases"), rel_v + 1);
    c.publish(&gun, &files).await.unwrap();
    let (repo, st) = update(&c, &gun, Some(st)).await;
    let go = go_list(tb, &gun, Some("targets/releases"));
    assert_eq!(go.len(), 5);
    for tag in ["v1", "latest", "multi", "oci-v1", "oci-multi"] {
        let (h, n) = manifest(&seed, tag);
        assert_eq!(
            go[tag],
            (hex::encode(h), n, "targets/releases".into()),
            "{tag}"
        );
    }
    assert_same_as_go(tb, &repo, &gun);
    // Our file is what the server stores, byte for byte.
    let stored = c.get_role(&gun, "targets/releases").await.unwrap().unwrap();
    assert_eq!(stored, files[0].bytes);

    // 2. Into `targets` with the repository key.
    let (h, n) = manifest(&seed, "oci-v1");
    let mut ed = repo.edit();
    ed.add_target("targets", "top-oci", &h, n).unwrap();
    let files = ed.sign(std::slice::from_ref(&tkey), now()).unwrap();
    c.publish(&gun, &files).await.unwrap();
    let (repo, st) = update(&c, &gun, Some(st)).await;
    assert_eq!(go_list(tb, &gun, None)["top-oci"].2, "targets");
    assert_same_as_go(tb, &repo, &gun);

    // 3. Witness targets/ci-bot: version + 1, same targets, new whole-second expiry.
    let before = repo.role("targets/ci-bot").unwrap().clone();
    let exp: Timestamp = "2029-06-01T12:00:00Z".parse().unwrap();
    let mut ed = repo.edit();
    ed.witness("targets/ci-bot", Some(exp)).unwrap();
    let files = ed.sign(std::slice::from_ref(&dkey), now()).unwrap();
    c.publish(&gun, &files).await.unwrap();
    let (repo, st) = update(&c, &gun, Some(st)).await;
    let after = repo.role("targets/ci-bot").unwrap();
    assert_eq!(after.version, before.version + 1);
    assert_eq!(after.targets, before.targets);
    assert_eq!(after.expires, exp);
    let raw = String::from_utf8(after.file_bytes().to_vec()).unwrap();
    assert!(raw.contains(r#""expires":"2029-06-01T12:00:00Z""#));
    assert_same_as_go(tb, &repo, &gun);

    // 4. Remove a target.
    let mut ed = repo.edit();
    ed.remove_target("targets/releases", "multi").unwrap();
    let files = ed.sign(std::slice::from_ref(&dkey), now()).unwrap();
    c.publish(&gun, &files).await.unwrap();
    let (repo, st) = update(&c, &gun, Some(st)).await;
    assert!(!go_list(tb, &gun, Some("targets/releases")).contains_key("multi"));
    assert_same_as_go(tb, &repo, &gun);
    // An identical add changes nothing: nothing to sign.
    let (h, n) = manifest(&seed, "latest");
    let mut ed = repo.edit();
    ed.add_target("targets/releases", "latest", &h, n).unwrap();
    assert!(
        ed.sign(std::slice::from_ref(&dkey), now())
            .unwrap()
            .is_empty()
    );

    // 5. The Go client publishes on top of ours…
    let hexd = "ab".repeat(32);
    go_cmd(
        tb,
        &[
            "addhash",
            &gun,
            "go-tag",
            "3",
            "--sha256",
            &hexd,
            "-r",
            "targets/releases",
        ],
    );
    go_cmd(tb, &["publish", &gun]);
    assert!(go_cmd(tb, &["status", &gun]).contains("No unpublished changes"));
    // …and we on top of theirs, continuing from our trusted state.
    let (repo, st) = update(&c, &gun, Some(st)).await;
    assert_eq!(
        repo.role("targets/releases").unwrap().targets["go-tag"].length,
        3
    );
    let (h, n) = manifest(&seed, "multi");
    let mut ed = repo.edit();
    ed.add_target("targets/releases", "multi-again", &h, n)
        .unwrap();
    c.publish(&gun, &ed.sign(std::slice::from_ref(&dkey), now()).unwrap())
        .await
        .unwrap();
    let (repo, _) = update(&c, &gun, Some(st)).await;
    let go = go_list(tb, &gun, Some("targets/releases"));
    assert!(go.contains_key("go-tag") && go.contains_key("multi-again"));
    assert_same_as_go(tb, &repo, &gun);
}

#[tokio::test]
async fn refusals_before_io_and_server_errors() {
    let tb = Testbed::get();
    let seed = tb.seed("refuse");
    let gun = seed.gun.clone();
    let c = client(tb);
    let dkey = delegation_key(tb);
    let (repo, _) = update(&c, &gun, None).await;
    let (h, n) = manifest(&seed, "latest");

    // The delegation key is not a signer of `targets`: refused before any I/O.
    let mut ed = repo.edit();
    ed.add_target("targets", "x", &h, n).unwrap();
    let e = ed.sign(std::slice::from_ref(&dkey), now()).unwrap_err();
    match &e {
        Error::KeyNotSigner { role, accepted, .. } => {
            assert_eq!(role, "targets");
            assert_eq!(accepted, &vec![seed.var("TARGETS_KEY_ID").to_string()]);
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("no valid signing keys"));
    // Unknown role, control characters.
    assert!(matches!(
        repo.edit()
            .add_target("targets/nope", "x", &h, n)
            .unwrap_err(),
        Error::UnknownRole { .. }
    ));
    assert!(matches!(
        repo.edit()
            .add_target("targets/releases", "a\tb", &h, n)
            .unwrap_err(),
        Error::TargetNotAllowed { .. }
    ));

    // Version conflict: two writers from the same base.
    let mut ed = repo.edit();
    ed.witness("targets/releases", None).unwrap();
    let files = ed.sign(std::slice::from_ref(&dkey), now()).unwrap();
    c.publish(&gun, &files).await.unwrap();
    let e = c.publish(&gun, &files).await.unwrap_err();
    assert!(matches!(e, Error::VersionConflict { .. }), "{e}");

    // An unsigned upload: the server's "tuf: data has no signatures".
    let (repo, _) = update(&c, &gun, None).await;
    let mut ed = repo.edit();
    ed.witness("targets/releases", None).unwrap();
    let mut files = ed.sign(std::slice::from_ref(&dkey), now()).unwrap();
    let mut env = Envelope::parse("targets/releases", &files[0].bytes).unwrap();
    env.signatures.clear();
    files[0].bytes = env.to_file_bytes().unwrap();
    let e = c.publish(&gun, &files).await.unwrap_err();
    assert!(matches!(e, Error::NoSignatures { .. }), "{e}");
    // A tampered signature: rejected, nothing stored.
    let mut files = ed.sign(std::slice::from_ref(&dkey), now()).unwrap();
    let mut env = Envelope::parse("targets/releases", &files[0].bytes).unwrap();
    let mut sig = env.signatures[0].sig.clone().into_bytes();
    sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
    env.signatures[0].sig = String::from_utf8(sig).unwrap();
    files[0].bytes = env.to_file_bytes().unwrap();
    let e = c.publish(&gun, &files).await.unwrap_err();
    assert!(
        matches!(&e, Error::Rejected { code, message, .. } if code == "INVALID_UPDATE" && message.contains("threshold")),
        "{e}"
    );
    let (after, _) = update(&c, &gun, None).await;
    assert_eq!(
        after.role("targets/releases").unwrap().version,
        repo.role("targets/releases").unwrap().version
    );

    // Unknown repository.
    let e = c
        .update(&tb.unique_gun("never"), &TrustAnchor::FirstUse, now())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UnknownRepository { .. }), "{e}");
}

#[tokio::test]
async fn expired_delegation_is_renewed_with_all_its_targets() {
    let tb = Testbed::get();
    let seed = tb.seed("expired");
    let gun = seed.gun.clone();
    let dir = tb.dir.to_str().unwrap().to_string();
    tb.run(&["age", &dir, &gun, "targets/releases", "-1d"]);
    let c = client(tb);
    let dkey = delegation_key(tb);
    let (repo, _) = update(&c, &gun, None).await;
    let rel = repo.role("targets/releases").unwrap();
    assert!(rel.expired);
    assert_eq!(rel.health, RoleHealth::Expired);
    assert!(
        rel.targets.contains_key("v1"),
        "expired targets stay available"
    );
    assert!(
        repo.expiries()
            .iter()
            .any(|e| e.name == "targets/releases" && e.expired)
    );
    // Hidden from lookups, as the Go client hides it.
    assert!(go_list(tb, &gun, Some("targets/releases")).is_empty());
    assert!(our_list(&repo, "targets/releases").is_empty());
    assert_eq!(repo.lookup("v1").unwrap().role, "targets/ci-bot");

    let (h, n) = manifest(&seed, "oci-multi");
    let mut ed = repo.edit();
    ed.add_target("targets/releases", "renewed", &h, n).unwrap();
    let files = ed.sign(std::slice::from_ref(&dkey), now()).unwrap();
    assert_eq!(version_of(&files, "targets/releases"), rel.version + 1);
    c.publish(&gun, &files).await.unwrap();
    let go = go_list(tb, &gun, Some("targets/releases"));
    assert_eq!(
        go.keys().cloned().collect::<Vec<_>>(),
        vec!["renewed".to_string(), "v1".to_string()]
    );
    let (repo, _) = update(&c, &gun, None).await;
    assert!(repo.role("targets/releases").unwrap().usable());
    assert_same_as_go(tb, &repo, &gun);
}

#[tokio::test]
async fn expired_top_level_targets_is_renewed_directly() {
    let tb = Testbed::get();
    let seed = tb.seed("expired-top");
    let gun = seed.gun.clone();
    let dir = tb.dir.to_str().unwrap().to_string();
    tb.run(&["age", &dir, &gun, "targets", "-1d"]);
    let c = client(tb);
    let tkey = targets_key(tb, &seed);
    let (repo, _) = update(&c, &gun, None).await;
    assert!(repo.role("targets").unwrap().expired);
    // The Go client is locked out now.
    assert!(!tb.notary(&["list", &gun]).status.success());
    let mut ed = repo.edit();
    ed.witness("targets", None).unwrap();
    c.publish(&gun, &ed.sign(std::slice::from_ref(&tkey), now()).unwrap())
        .await
        .unwrap();
    let (repo, _) = update(&c, &gun, None).await;
    assert!(repo.role("targets").unwrap().usable());
    assert_same_as_go(tb, &repo, &gun);
}

/// A repository whose snapshot key the client holds (`notary init` + `publish`, no rotation
/// to the server): we publish the changed role **and** a snapshot we sign.
#[tokio::test]
async fn client_held_snapshot_is_signed_and_uploaded() {
    let tb = Testbed::get();
    let gun = tb.unique_gun("snapheld");
    let trust = tempfile::tempdir().unwrap();
    let go_in = |args: &[&str]| {
        let out = Command::new(tb.var("NOTARY_CLIENT"))
            .env("TESTBED_TRUST_DIR", trust.path())
            .args(args)
            .output()
            .unwrap();
        let s = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "notary {args:?}: {s}");
        s
    };
    go_in(&["init", &gun]);
    go_in(&["publish", &gun]);
    // The store's key files, each with its role's passphrase.
    let mut keys = Vec::new();
    for e in std::fs::read_dir(trust.path().join("private")).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        keys.extend(
            SigningKey::from_pem_with(&bytes, |h| h.get("role").map(|r| passphrase(tb, r)))
                .unwrap(),
        );
    }
    assert_eq!(keys.len(), 3);
    let c = client(tb);
    let (repo, st) = update(&c, &gun, None).await;
    let snap_v = repo.snapshot_info.version;
    let mut ed = repo.edit();
    ed.add_target("targets", "held", &[9; 32], 9).unwrap();
    let files = ed.sign(&keys, now()).unwrap();
    let roles: Vec<&str> = files.iter().map(|f| f.role.as_str()).collect();
    assert_eq!(roles, ["targets", "snapshot"]);
    assert_eq!(version_of(&files, "snapshot"), snap_v + 1);
    c.publish(&gun, &files).await.unwrap();
    // The server kept our snapshot byte for byte and built the timestamp on it.
    let (repo, _) = update(&c, &gun, Some(st)).await;
    assert_eq!(repo.snapshot_info.version, snap_v + 1);
    let stored = c.get_role(&gun, "snapshot").await.unwrap().unwrap();
    assert_eq!(stored, files[1].bytes);
    assert_eq!(go_list(tb, &gun, None)["held"].1, 9);
    // And the Go client can still publish on top (it holds the same snapshot key).
    go_in(&[
        "addhash",
        &gun,
        "go-held",
        "4",
        "--sha256",
        &"cd".repeat(32),
    ]);
    go_in(&["publish", &gun]);
    let go = go_list(tb, &gun, None);
    assert!(go.contains_key("held") && go.contains_key("go-held"));
}

/// `targets/releases` signed by a key its parent no longer lists (signer replaced): readers hide
/// it ("valid signatures did not meet threshold"); we keep its content and a witness with the
/// new key revives it with every old target.
#[tokio::test]
async fn role_signed_by_a_removed_key_is_revived_by_witness() {
    let tb = Testbed::get();
    let seed = tb.seed("replaced");
    let gun = seed.gun.clone();
    let tmp = tempfile::tempdir().unwrap();
    let generated = Command::new(tb.var("NOTARY_CLIENT"))
        .env("TESTBED_TRUST_DIR", tmp.path().join("trust"))
        .current_dir(tmp.path())
        .args([
            "key",
            "generate",
            "ecdsa",
            "--role",
            "targets/releases",
            "-o",
            "newkey",
        ])
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let new_key = SigningKey::from_pem(
        &std::fs::read(tmp.path().join("newkey-key.pem")).unwrap(),
        Some(&passphrase(tb, "delegation")),
    )
    .unwrap()
    .remove(0);
    let old_id = tb.var_keys_delegation_id();
    let new_pub = tmp.path().join("newkey.pem");
    go_cmd(
        tb,
        &["delegation", "remove", &gun, "targets/releases", &old_id],
    );
    go_cmd(
        tb,
        &[
            "delegation",
            "add",
            &gun,
            "targets/releases",
            new_pub.to_str().unwrap(),
            "--all-paths",
        ],
    );
    go_cmd(tb, &["publish", &gun]);

    let c = client(tb);
    let (repo, _) = update(&c, &gun, None).await;
    let rel = repo.role("targets/releases").unwrap();
    assert!(
        matches!(rel.health, RoleHealth::BadSignatures(_)),
        "{:?}",
        rel.health
    );
    assert!(rel.targets.contains_key("v1"));
    assert!(go_list(tb, &gun, Some("targets/releases")).is_empty());
    assert!(our_list(&repo, "targets/releases").is_empty());
    // The old key is refused for signing; the new one works.
    let mut ed = repo.edit();
    ed.witness("targets/releases", None).unwrap();
    let e = ed.sign(&[delegation_key(tb)], now()).unwrap_err();
    assert!(matches!(e, Error::KeyNotSigner { .. }), "{e}");
    let files = ed.sign(std::slice::from_ref(&new_key), now()).unwrap();
    assert_eq!(version_of(&files, "targets/releases"), rel.version + 1);
    c.publish(&gun, &files).await.unwrap();
    assert_eq!(
        go_list(tb, &gun, Some("targets/releases"))["v1"].2,
        "targets/releases"
    );
    let (repo, _) = update(&c, &gun, None).await;
    assert!(repo.role("targets/releases").unwrap().usable());
    assert_same_as_go(tb, &repo, &gun);
}

/// `notary key rotate GUN root` (in its own trust dir): from the earlier trusted state we walk
/// `N.root.json` to the new root; a pin on the old root key no longer admits it.
#[tokio::test]
async fn root_rotation_is_followed_from_trusted_state() {
    let tb = Testbed::get();
    let gun = tb.unique_gun("rotate");
    let trust = tempfile::tempdir().unwrap();
    let go_in = |args: &[&str], stdin: &str| {
        let out = common::output_with_stdin(
            Command::new(tb.var("NOTARY_CLIENT"))
                .env("TESTBED_TRUST_DIR", trust.path())
                .args(args),
            stdin.as_bytes(),
        );
        assert!(
            out.status.success(),
            "notary {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    go_in(&["init", &gun], "");
    go_in(&["publish", &gun], "");
    let c = client(tb);
    let (repo, st) = update(&c, &gun, None).await;
    let old_root_ids = st.root_key_ids.clone();
    let old_canonical: Vec<String> = repo.signers_of("root").unwrap().canonical_ids();
    go_in(&["key", "rotate", &gun, "root"], "yes\n");
    go_in(
        &["addhash", &gun, "after", "1", "--sha256", &"ef".repeat(32)],
        "",
    );
    go_in(&["publish", &gun], "");

    // With the old root cached (the operator's and CLI's cache), the rotation shows in the
    // timestamp/snapshot checks and the new root is fetched and verified from the old one.
    let cached = CachedFetch::with_files(&c, Files::of(&repo));
    let before = c.stats();
    let (via_cache, st_cached) = update_with(&cached, &gun, &TrustAnchor::State(st.clone()), now())
        .await
        .unwrap();
    assert!(c.stats().get > before.get + 1, "the new root was fetched");
    assert_eq!(st_cached.root_version, st.root_version + 1);
    assert!(
        via_cache
            .role("targets")
            .unwrap()
            .targets
            .contains_key("after")
    );
    // A forged state at the old version is refused with the old root cached too.
    let forged_cached = TrustState {
        root_key_ids: vec!["00".repeat(32)],
        ..st.clone()
    };
    let e = update_with(
        &CachedFetch::with_files(&c, Files::of(&repo)),
        &gun,
        &TrustAnchor::State(forged_cached),
        now(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::UntrustedRoot { .. }), "{e}");

    let (repo, st2) = update(&c, &gun, Some(st.clone())).await;
    assert_eq!(st2, st_cached);
    assert_eq!(st2.root_version, st.root_version + 1);
    assert_ne!(st2.root_key_ids, old_root_ids);
    assert!(repo.role("targets").unwrap().targets.contains_key("after"));
    let e = c
        .update(&gun, &TrustAnchor::PinnedKeys(old_canonical), now())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UntrustedRoot { .. }), "{e}");
    // A state claiming other keys at the old version is refused.
    let forged = TrustState {
        root_key_ids: vec!["00".repeat(32)],
        ..st
    };
    let e = c
        .update(&gun, &TrustAnchor::State(forged), now())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UntrustedRoot { .. }), "{e}");
}

/// A delegation declared by `notary delegation add` but never signed has no file: our first
/// signature creates it at version 1 and the Go client lists it.
#[tokio::test]
async fn first_file_of_a_declared_delegation() {
    let tb = Testbed::get();
    let seed = tb.seed("declared");
    let gun = seed.gun.clone();
    let pubkey = std::path::Path::new(tb.var("TESTBED_KEYS_DIR")).join("delegation.pub.pem");
    go_cmd(
        tb,
        &[
            "delegation",
            "add",
            &gun,
            "targets/qa",
            pubkey.to_str().unwrap(),
            "--paths",
            "qa/",
        ],
    );
    go_cmd(tb, &["publish", &gun]);
    let c = client(tb);
    let (repo, _) = update(&c, &gun, None).await;
    assert_eq!(repo.declared_without_file(), ["targets/qa"]);
    assert!(repo.role("targets/qa").is_none());
    let e = repo
        .edit()
        .add_target("targets/qa", "v9", &[1; 32], 1)
        .unwrap_err();
    assert!(matches!(e, Error::TargetNotAllowed { .. }), "{e}");
    let (h, n) = manifest(&seed, "oci-v1");
    let mut ed = repo.edit();
    ed.add_target("targets/qa", "qa/oci", &h, n).unwrap();
    let files = ed.sign(&[delegation_key(tb)], now()).unwrap();
    assert_eq!(version_of(&files, "targets/qa"), 1);
    c.publish(&gun, &files).await.unwrap();
    let (repo, _) = update(&c, &gun, None).await;
    assert_eq!(repo.role("targets/qa").unwrap().paths, ["qa/"]);
    assert_eq!(
        go_list(tb, &gun, Some("targets/qa"))["qa/oci"].2,
        "targets/qa"
    );
    assert_same_as_go(tb, &repo, &gun);
}
