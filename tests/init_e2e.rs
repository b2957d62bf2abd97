//! `init`, `signer add` on a repository without trust data, and `key rotate targets`, end to
//! end on the real testbed with the real notary Go client as referee: it publishes with the
//! keys `init` wrote, signs into the delegations `signer add` created, lists every tag after
//! each rotation of the repository key (and publishes with the new key, not the old), and a
//! reader running through the rotations never fails.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use common::Testbed;
use common::admin::{
    GoClient, bare as tk, check_readers, generate, go_delegations, reader, refused, served_version,
    text,
};
use secrecy::SecretString;

const ROOT_PASS: &str = "root-pass-init-1";
const REPO_PASS: &str = "repo-pass-init-1";

fn key_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("private"))
        .map(|r| r.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The root.json the server serves for `gun`, if any.
fn served_root(tb: &Testbed, gun: &str) -> Option<serde_json::Value> {
    let url = format!("{}/v2/{gun}/_trust/tuf/root.json", tb.var("NOTARY_URL"));
    let o = Command::new("curl")
        .args(["-sf", "--cacert", tb.var("CA_CERT"), &url])
        .output()
        .unwrap();
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).unwrap())
}

/// A new ECDSA key for `role` written encrypted with `pass` into `dir/name.key`.
fn new_key(dir: &Path, name: &str, role: &str, gun: &str, pass: &str) -> (String, String) {
    let k = trustkeeper::notary::SigningKey::generate_ecdsa(role, gun).unwrap();
    let pem = k.export_pem(&SecretString::from(pass.to_string())).unwrap();
    let path = dir.join(format!("{name}.key"));
    std::fs::write(&path, pem).unwrap();
    (
        path.to_str().unwrap().to_string(),
        trustkeeper::notary::Signer::key_id(&k).to_string(),
    )
}

#[test]
fn init_creates_a_repository_the_go_client_publishes_into_with_the_keys_it_wrote() {
    let tb = Testbed::get();
    let gun = tb.unique_gun("init");
    let trust = tempfile::tempdir().unwrap();
    let docker = tempfile::tempdir().unwrap();
    let dt = docker.path().to_str().unwrap();
    let pass = [
        ("TRUSTKEEPER_ROOT_PASSPHRASE", ROOT_PASS),
        ("DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE", REPO_PASS),
    ];

    // Without a passphrase for a key it would write (and no terminal): refused, nothing
    // written, nothing created.
    let o = tk(
        tb,
        trust.path(),
        &["init", &gun, "--docker-trust-dir", dt],
        &pass[..1],
    );
    refused(&o, 1, "no passphrase for the new repository key");
    assert!(key_files(docker.path()).is_empty());
    assert!(served_root(tb, &gun).is_none());

    let o = tk(
        tb,
        trust.path(),
        &["-o", "json", "init", &gun, "--docker-trust-dir", dt],
        &pass,
    );
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let root_id = j["root_key_id"].as_str().unwrap().to_string();
    let repo_id = j["repository_key_id"].as_str().unwrap().to_string();
    let files = key_files(docker.path());
    assert_eq!(files.len(), 2, "{files:?}");
    for (id, role) in [(&root_id, "role: root"), (&repo_id, "role: targets")] {
        let f = docker.path().join("private").join(format!("{id}.key"));
        let pem = std::fs::read_to_string(&f).unwrap();
        assert!(
            pem.contains("ENCRYPTED PRIVATE KEY") && pem.contains(role),
            "{pem}"
        );
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    assert!(
        std::fs::read_to_string(docker.path().join("private").join(format!("{repo_id}.key")))
            .unwrap()
            .contains(&format!("gun: {gun}"))
    );

    // The Go client, on the trust directory trustkeeper wrote its keys into, publishes a tag
    // with the repository key; a fresh Go client (trust on first use) lists it.
    let go = GoClient::in_dir(docker.path(), &[("NOTARY_TARGETS_PASSPHRASE", REPO_PASS)]);
    let o = go.publish(tb, &gun, "v1", &"a1".repeat(32), "targets");
    assert!(o.status.success(), "{}", text(&o));
    let fresh = GoClient::new("unused");
    let o = fresh.run(tb, &["list", &gun]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&"a1".repeat(32)),
        "{}",
        text(&o)
    );
    // The root the server serves is signed by the root key init wrote (by its certificate).
    let root = served_root(tb, &gun).unwrap();
    let cert_id = j["root_certificate_id"].as_str().unwrap();
    assert_eq!(root["signed"]["roles"]["root"]["keyids"][0], cert_id);
    assert_eq!(root["signatures"][0]["keyid"], cert_id);

    // Again: refused, nothing written or published.
    let v = served_version(tb, &gun, "targets");
    let o = tk(
        tb,
        trust.path(),
        &["init", &gun, "--docker-trust-dir", dt],
        &pass,
    );
    refused(&o, 1, "already exists");
    assert_eq!(key_files(docker.path()), files);
    assert_eq!(served_version(tb, &gun, "targets"), v);

    // With keys given: nothing is written, and the repository key given is the one root lists.
    let gun2 = tb.unique_gun("init-given");
    let keys = tempfile::tempdir().unwrap();
    let (root_file, root_given) = new_key(keys.path(), "root", "root", "", ROOT_PASS);
    let (repo_file, repo_given) = new_key(keys.path(), "repo", "targets", &gun2, REPO_PASS);
    let empty = tempfile::tempdir().unwrap();
    let o = tk(
        tb,
        trust.path(),
        &[
            "-o",
            "json",
            "init",
            &gun2,
            "--root-key",
            &root_file,
            "--repo-key",
            &repo_file,
            "--docker-trust-dir",
            empty.path().to_str().unwrap(),
        ],
        &[
            ("DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE", ROOT_PASS),
            ("TRUSTKEEPER_REPO_PASSPHRASE", REPO_PASS),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["root_key_id"], root_given.as_str());
    assert_eq!(j["repository_key_id"], repo_given.as_str());
    assert_eq!(j["written"], serde_json::json!([]));
    assert!(key_files(empty.path()).is_empty());
    let o = fresh.run(tb, &["list", &gun2]);
    assert!(o.status.success(), "{}", text(&o));
    // A root key given as the repository key is refused before anything happens.
    let gun3 = tb.unique_gun("init-swapped");
    let o = tk(
        tb,
        trust.path(),
        &[
            "init",
            &gun3,
            "--repo-key",
            &root_file,
            "--root-key",
            &root_file,
        ],
        &pass,
    );
    refused(&o, 1, "is a root key");
    assert!(served_root(tb, &gun3).is_none());
}

#[test]
fn signer_add_creates_a_repository_without_trust_data_with_the_signer_in_it() {
    let tb = Testbed::get();
    let gun = tb.unique_gun("signer-add-init");
    let trust = tempfile::tempdir().unwrap();
    let docker = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (alice_key, alice_pub, alice_id) = generate(tb, keys.path(), "alice", "alice-pass");
    let o = tk(
        tb,
        trust.path(),
        &[
            "signer",
            "add",
            "alice",
            &gun,
            "--key",
            &alice_pub,
            "--docker-trust-dir",
            docker.path().to_str().unwrap(),
        ],
        &[
            ("TRUSTKEEPER_ROOT_PASSPHRASE", ROOT_PASS),
            ("TRUSTKEEPER_REPO_PASSPHRASE", REPO_PASS),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("created {gun}")),
        "{}",
        text(&o)
    );
    assert_eq!(key_files(docker.path()).len(), 2);
    // One publish: targets v1 declares both roles, as docker's first signer add did.
    assert_eq!(served_version(tb, &gun, "targets"), 1);
    let go = go_delegations(tb, &gun);
    assert_eq!(
        go["targets/alice"],
        std::slice::from_ref(&alice_id),
        "{go:?}"
    );
    assert_eq!(
        go["targets/releases"],
        std::slice::from_ref(&alice_id),
        "{go:?}"
    );

    // Alice's key, imported into a Go client, signs a release; the Go client lists it.
    let alice = GoClient::new("alice-pass");
    let o = alice.run(tb, &["key", "import", &alice_key]);
    assert!(o.status.success(), "{}", text(&o));
    let o = alice.publish(tb, &gun, "r1", &"d1".repeat(32), "targets/releases");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        tb.notary_digests(&gun, Some("targets/releases"))["r1"],
        "d1".repeat(32)
    );

    // The repository exists now: a second signer add is the usual one publish of targets,
    // signed with the repository key found by ID where init wrote it.
    let (_, bob_pub, _) = generate(tb, keys.path(), "bob", "bob-pass");
    let o = tk(
        tb,
        trust.path(),
        &[
            "signer",
            "add",
            "bob",
            &gun,
            "--key",
            &bob_pub,
            "--docker-trust-dir",
            docker.path().to_str().unwrap(),
        ],
        &[("TRUSTKEEPER_REPO_PASSPHRASE", REPO_PASS)],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(served_version(tb, &gun, "targets"), 2);
    assert_eq!(go_delegations(tb, &gun)["targets/releases"].len(), 2);
    assert_eq!(
        key_files(docker.path()).len(),
        2,
        "no key written the second time"
    );
}

#[test]
fn key_rotate_targets_replaces_the_repository_key_in_one_publish_and_readers_never_fail() {
    let tb = Testbed::get();
    let seed = tb.seed("key-rotate-targets");
    let gun = seed.gun.clone();
    let trust = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let root_pass = std::fs::read_to_string(seed.var("ROOT_PASSPHRASE_FILE")).unwrap();
    let root_pass = root_pass.trim().to_string();
    let old_id = seed.var("TARGETS_KEY_ID").to_string();
    tb.go_publish_target(&gun, "t1", &"c1".repeat(32), "targets");
    let before_all = tb.notary_digests(&gun, None);
    let before_rel = tb.notary_digests(&gun, Some("targets/releases"));
    let before_deleg = go_delegations(tb, &gun);
    assert!(before_all.contains_key("t1") && before_rel.contains_key("v1"));
    let (k1, id1) = new_key(keys.path(), "new1", "targets", &gun, "new-pass");
    let (k2, id2) = new_key(keys.path(), "new2", "targets", &gun, "new-pass");
    let env = [
        ("TRUSTKEEPER_ROOT_PASSPHRASE", root_pass.as_str()),
        ("TRUSTKEEPER_REPO_PASSPHRASE", "new-pass"),
    ];
    let versions = || {
        (
            served_version(tb, &gun, "root"),
            served_version(tb, &gun, "targets"),
        )
    };

    // Refusals publish nothing: a root key root does not list; no root key at all.
    let (other_root, _) = new_key(keys.path(), "other-root", "root", "", &root_pass);
    let fail = |args: &[&str], needle: &str| {
        let v0 = versions();
        let o = tk(tb, trust.path(), args, &env);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(
            common::stderr_text(&o).contains(needle),
            "{args:?}: {}",
            text(&o)
        );
        assert_eq!(versions(), v0, "{args:?} published");
    };
    fail(
        &[
            "key",
            "rotate",
            "targets",
            &gun,
            "--new-key",
            &k1,
            "--root-key",
            &other_root,
        ],
        "no valid signing keys for root",
    );
    let empty = tempfile::tempdir().unwrap();
    fail(
        &[
            "key",
            "rotate",
            "targets",
            &gun,
            "--new-key",
            &k1,
            "--docker-trust-dir",
            empty.path().to_str().unwrap(),
        ],
        "holds none of the keys",
    );

    // Readers with their own trust directories list the repository again and again meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let go_reader = {
        let (go, gun) = (GoClient::new("unused"), gun.clone());
        reader(stop.clone(), move || {
            let o = go.run(tb, &["list", &gun]);
            let ok =
                o.status.success() && String::from_utf8_lossy(&o.stdout).contains(&"c1".repeat(32));
            (ok, text(&o))
        })
    };
    let inspector = {
        let (own, image) = (tempfile::tempdir().unwrap(), format!("{gun}:t1"));
        reader(stop.clone(), move || {
            let o = tk(tb, own.path(), &["-o", "json", "inspect", &image], &[]);
            let ok =
                o.status.success() && String::from_utf8_lossy(&o.stdout).contains(&"c1".repeat(32));
            (ok, text(&o))
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (r0, t0) = versions();
    // Four rotations; the root key given as a file, and, the last time, found by ID in the Go
    // client's own trust directory (where `notary init` left it).
    let rotate = |key: &str, root: Option<&str>| {
        let start = Instant::now();
        let mut args = vec![
            "-o",
            "json",
            "key",
            "rotate",
            "targets",
            &gun,
            "--new-key",
            key,
        ];
        match root {
            Some(r) => args.extend(["--root-key", r]),
            None => args.extend(["--docker-trust-dir", tb.var("NOTARY_CLIENT_TRUST_DIR")]),
        }
        let o = tk(tb, trust.path(), &args, &env);
        assert!(o.status.success(), "{}", text(&o));
        (o, (start, Instant::now()))
    };
    let root_key = seed.var("ROOT_KEY");
    let (first, span) = rotate(&k1, Some(root_key));
    let mut spans = vec![span];
    for (k, r) in [(&k2, Some(root_key)), (&k1, Some(root_key)), (&k2, None)] {
        spans.push(rotate(k, r).1);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    check_readers(
        &spans,
        &[
            ("notary list", go_reader.join().unwrap()),
            ("trustkeeper inspect", inspector.join().unwrap()),
        ],
    );

    // One publish of root and targets per rotation, old and new key IDs in the answer.
    let j: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let published: Vec<&str> = (j["published"].as_array().unwrap().iter())
        .map(|p| p["role"].as_str().unwrap())
        .collect();
    assert_eq!(published, ["root", "targets"], "{j}");
    assert_eq!(j["old_key_ids"], serde_json::json!([old_id]));
    assert_eq!(j["new_key_id"], id1.as_str());
    assert_eq!(versions(), (r0 + 4, t0 + 4));
    let root = served_root(tb, &gun).unwrap()["signed"].clone();
    assert_eq!(root["roles"]["targets"]["keyids"], serde_json::json!([id2]));
    assert!(
        root["keys"].get(&old_id).is_none(),
        "the old key is still listed"
    );

    // The Go client (its cached trust from before) lists every tag and delegation as before.
    assert_eq!(tb.notary_digests(&gun, None), before_all);
    assert_eq!(
        tb.notary_digests(&gun, Some("targets/releases")),
        before_rel
    );
    assert_eq!(go_delegations(tb, &gun), before_deleg);

    // Its old repository key can no longer publish into targets; the new one can.
    let o = tb.notary(&["addhash", &gun, "old-1", "3", "--sha256", &"0f".repeat(32)]);
    assert!(o.status.success(), "{}", text(&o));
    let o = tb.notary(&["publish", &gun]);
    assert!(!o.status.success(), "the old key published: {}", text(&o));
    let _ = tb.notary(&["reset", &gun, "--all"]);
    let go = GoClient::new("unused").with("NOTARY_TARGETS_PASSPHRASE", "new-pass");
    let o = go.run(tb, &["key", "import", &k2]);
    assert!(o.status.success(), "{}", text(&o));
    let o = go.publish(tb, &gun, "new-1", &"e1".repeat(32), "targets");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(tb.notary_digests(&gun, None)["new-1"], "e1".repeat(32));
    assert_eq!(
        served_version(tb, &gun, "root"),
        r0 + 4,
        "the Go client's publish kept our root"
    );

    // Rotating to the key it already has publishes nothing.
    let v = versions();
    let o = tk(
        tb,
        trust.path(),
        &[
            "key",
            "rotate",
            "targets",
            &gun,
            "--new-key",
            &k2,
            "--root-key",
            root_key,
        ],
        &env,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("nothing published"),
        "{}",
        text(&o)
    );
    assert_eq!(versions(), v);
}

#[test]
fn witness_role_root_renews_root_with_the_root_key() {
    let tb = Testbed::get();
    let gun = tb.unique_gun("renew-root");
    let trust = tempfile::tempdir().unwrap();
    let docker = tempfile::tempdir().unwrap();
    let dt = docker.path().to_str().unwrap();
    let pass = [
        ("TRUSTKEEPER_ROOT_PASSPHRASE", ROOT_PASS),
        ("TRUSTKEEPER_REPO_PASSPHRASE", REPO_PASS),
    ];
    let o = tk(
        tb,
        trust.path(),
        &["init", &gun, "--docker-trust-dir", dt],
        &pass,
    );
    assert!(o.status.success(), "{}", text(&o));
    let go = GoClient::in_dir(docker.path(), &[("NOTARY_TARGETS_PASSPHRASE", REPO_PASS)]);
    let o = go.publish(tb, &gun, "v1", &"a1".repeat(32), "targets");
    assert!(o.status.success(), "{}", text(&o));
    let before = served_root(tb, &gun).unwrap()["signed"].clone();
    let witness = [
        "witness",
        gun.as_str(),
        "--role",
        "root",
        "--docker-trust-dir",
        dt,
    ];

    // Refusals, nothing published: root with other roles; the repository key as root key.
    let o = tk(
        tb,
        trust.path(),
        &["witness", &gun, "--role", "root", "--role", "targets"],
        &pass,
    );
    refused(&o, 2, "renew root on its own");
    let repo_file = (std::fs::read_dir(docker.path().join("private")).unwrap())
        .map(|e| e.unwrap().path())
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains("role: targets")
        })
        .unwrap();
    let o = tk(
        tb,
        trust.path(),
        &[
            "witness",
            &gun,
            "--role",
            "root",
            "--key",
            repo_file.to_str().unwrap(),
        ],
        &pass,
    );
    refused(&o, 1, "is not a root key");
    // The dry run says what it would do and publishes nothing.
    let mut dry = witness.to_vec();
    dry.push("--dry-run");
    let o = tk(tb, trust.path(), &dry, &pass);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("would renew root"),
        "{}",
        text(&o)
    );
    assert_eq!(served_root(tb, &gun).unwrap()["signed"], before);

    // The root key found by ID where init wrote it: root v2, the same keys, a later expiry.
    let o = tk(tb, trust.path(), &witness, &pass);
    assert!(o.status.success(), "{}", text(&o));
    let after = served_root(tb, &gun).unwrap()["signed"].clone();
    assert_eq!(after["version"], 2, "{after}");
    assert_eq!(
        (&after["keys"], &after["roles"]),
        (&before["keys"], &before["roles"])
    );
    assert!(
        after["expires"].as_str() >= before["expires"].as_str(),
        "{after}"
    );
    // The Go client that trusted root v1 and a fresh one both list the tag; the first
    // publishes on top.
    for client in [&go, &GoClient::new("unused")] {
        let o = client.run(tb, &["list", &gun]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains(&"a1".repeat(32)));
    }
    let o = go.publish(tb, &gun, "v2", &"a2".repeat(32), "targets");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(served_root(tb, &gun).unwrap()["signed"]["version"], 2);
}
