//! `revoke`, `key export` / `key import` and keys found by ID in a docker/notary trust
//! directory, end to end on the real testbed with the real notary Go client as referee.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::admin::{
    bare as trustkeeper, generate, refused, served_version as served_targets_version, text,
};
use common::{Seed, Testbed};

fn pass_of(seed: &Seed, var: &str) -> String {
    std::fs::read_to_string(seed.var(var))
        .unwrap()
        .trim()
        .to_string()
}

/// The Go client with trust directory `dir` and delegation passphrase `pass`.
fn go(tb: &Testbed, dir: &Path, pass: &str, args: &[&str]) -> Output {
    Command::new(tb.var("NOTARY_CLIENT"))
        .args(args)
        .env("TESTBED_TRUST_DIR", dir)
        .env("NOTARY_DELEGATION_PASSPHRASE", pass)
        .env("NOTARY_TARGETS_PASSPHRASE", pass)
        .output()
        .unwrap()
}

/// The ID of the key in `file`, as `key inspect` decrypts it with `pass`.
fn key_id_of(tb: &Testbed, trust: &Path, file: &Path, pass: &str) -> String {
    let o = trustkeeper(
        tb,
        trust,
        &["-o", "json", "key", "inspect", file.to_str().unwrap()],
        &[("TRUSTKEEPER_PASSPHRASE", pass)],
    );
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    j[0]["key_id"].as_str().unwrap().to_string()
}

/// `notary key list` by the Go client: (role, gun, key ID) rows.
fn go_keys(tb: &Testbed, dir: &Path) -> Vec<(String, String, String)> {
    let o = go(tb, dir, "x", &["key", "list"]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let id = f.iter().position(|t| t.len() == 64)?;
            let gun = if id == 2 { f[1] } else { "" };
            Some((f[0].to_string(), gun.to_string(), f[id].to_string()))
        })
        .collect()
}

#[test]
fn revoke_with_and_without_a_tag() {
    let tb = Testbed::get();
    let seed = tb.seed("revoke");
    let trust = tempfile::tempdir().unwrap();
    let gun = seed.gun.clone();
    let key = seed.var("DELEGATION_KEY");
    let pass = pass_of(&seed, "DELEGATION_PASSPHRASE_FILE");
    let env = [("TRUSTKEEPER_PASSPHRASE", pass.as_str())];
    tb.go_publish_target(&gun, "c1", &"c1".repeat(32), "targets/ci-bot");
    tb.go_publish_target(&gun, "r1", &"a1".repeat(32), "targets/releases");
    tb.go_publish_target(&gun, "r2", &"a2".repeat(32), "targets/releases");
    // One the key does not sign: the repository key's own role.
    tb.go_publish_target(&gun, "t1", &"f1".repeat(32), "targets");
    let v = served_targets_version(tb, &gun, "targets/releases");

    // Off a terminal, without --yes: refused, nothing published.
    let o = trustkeeper(
        tb,
        trust.path(),
        &["revoke", &format!("{gun}:r1"), "--key", key],
        &env,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(common::stderr_text(&o).contains("--yes"), "{}", text(&o));
    // A key that signs nothing there.
    let keys = tempfile::tempdir().unwrap();
    let (stranger, _, _) = generate(tb, keys.path(), "stranger", "stranger-pass");
    let o = trustkeeper(
        tb,
        trust.path(),
        &["revoke", &gun, "--yes", "--key", &stranger],
        &[("TRUSTKEEPER_PASSPHRASE", "stranger-pass")],
    );
    refused(&o, 1, "nothing to revoke");
    assert_eq!(served_targets_version(tb, &gun, "targets/releases"), v);

    // With a tag: r1 goes from every role the key signs that holds it; the rest stays.
    let o = trustkeeper(
        tb,
        trust.path(),
        &["revoke", &format!("{gun}:v1"), "-y", "--key", key],
        &env,
    );
    assert!(o.status.success(), "{}", text(&o));
    let all = tb.notary_digests(&gun, None);
    assert!(!all.contains_key("v1"), "{all:?}");
    for tag in ["c1", "r1", "r2", "t1"] {
        assert!(all.contains_key(tag), "{tag} lost: {all:?}");
    }
    assert!(
        !tb.notary_digests(&gun, Some("targets/ci-bot"))
            .contains_key("v1")
    );

    // Without a tag: every tag of every role the key signs, in one publish; targets keeps t1.
    let o = trustkeeper(
        tb,
        trust.path(),
        &["revoke", &gun, "--yes", "--key", key],
        &env,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("3 signature(s) revoked"),
        "{}",
        text(&o)
    );
    assert!(tb.notary_digests(&gun, Some("targets/releases")).is_empty());
    assert!(tb.notary_digests(&gun, Some("targets/ci-bot")).is_empty());
    let all = tb.notary_digests(&gun, None);
    assert_eq!(all.keys().collect::<Vec<_>>(), ["t1"], "{all:?}");
    // Again: nothing left to revoke.
    let o = trustkeeper(
        tb,
        trust.path(),
        &["revoke", &gun, "--yes", "--key", key],
        &env,
    );
    refused(&o, 1, "hold no tags");
    // The Go client publishes on top.
    tb.go_publish_target(&gun, "after", &"12".repeat(32), "targets/releases");
}

#[test]
fn key_export_and_import_round_trip_with_the_go_client() {
    let tb = Testbed::get();
    let trust = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let go_a = tempfile::tempdir().unwrap();
    let go_b = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;

    // The Go client's key, exported by trustkeeper, imported by the Go client elsewhere.
    let o = go(
        tb,
        go_a.path(),
        "foo-pass",
        &["key", "generate", "ecdsa", "--role", "targets/foo"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let ids = go_keys(tb, go_a.path());
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids[0].2.clone();
    let out = files.path().join("foo.pem");
    let export = || {
        trustkeeper(
            tb,
            trust.path(),
            &[
                "key",
                "export",
                "--key-id",
                &id,
                "--dir",
                go_a.path().to_str().unwrap(),
                "--output-file",
                out.to_str().unwrap(),
            ],
            &[],
        )
    };
    let o = export();
    assert!(o.status.success(), "{}", text(&o));
    let pem = std::fs::read_to_string(&out).unwrap();
    assert!(pem.contains(&format!("path: {id}\n")) && pem.contains("role: targets/foo\n"));
    assert!(
        !text(&o).contains("BEGIN"),
        "key material printed: {}",
        text(&o)
    );
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The key inside is the one: it decrypts to the same ID.
    assert_eq!(key_id_of(tb, trust.path(), &out, "foo-pass"), id);
    // Never overwritten.
    let o = export();
    refused(&o, 1, "never overwritten");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), pem);
    let o = go(
        tb,
        go_b.path(),
        "foo-pass",
        &["key", "import", out.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(go_keys(tb, go_b.path())[0].2, id);
    // An unknown ID is refused clearly.
    let o = trustkeeper(
        tb,
        trust.path(),
        &[
            "key",
            "export",
            "--key-id",
            &"0".repeat(64),
            "--dir",
            go_a.path().to_str().unwrap(),
            "--output-file",
            files.path().join("none.pem").to_str().unwrap(),
        ],
        &[],
    );
    refused(&o, 1, "no key 000");

    // trustkeeper's key, imported by trustkeeper into a trust directory the Go client reads.
    let (alice, _, alice_id) = generate(tb, files.path(), "alice", "alice-pass");
    let alice = std::path::PathBuf::from(alice);
    let go_c = tempfile::tempdir().unwrap();
    let import = |file: &Path, extra: &[&str]| {
        let mut args = vec![
            "key",
            "import",
            file.to_str().unwrap(),
            "--dir",
            go_c.path().to_str().unwrap(),
        ];
        args.extend(extra);
        trustkeeper(tb, trust.path(), &args, &[])
    };
    let o = import(&alice, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let stored = go_c.path().join("private").join(format!("{alice_id}.key"));
    assert_eq!(
        std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let listed = go_keys(tb, go_c.path());
    assert!(
        listed.contains(&("targets/alice".into(), String::new(), alice_id.clone())),
        "{listed:?}"
    );
    // The Go client exports it again, and the key decrypts to the same ID.
    let back = files.path().join("alice-back.pem");
    let o = go(
        tb,
        go_c.path(),
        "alice-pass",
        &[
            "key",
            "export",
            "--key",
            &alice_id,
            "-o",
            back.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(key_id_of(tb, trust.path(), &back, "alice-pass"), alice_id);
    // Again: refused, the file unchanged.
    let before = std::fs::read(&stored).unwrap();
    let o = import(&alice, &[]);
    refused(&o, 1, "already in");
    assert_eq!(std::fs::read(&stored).unwrap(), before);

    // With the passphrase at hand the path: header is checked against the key: a file whose
    // header names another ID is refused, nothing written.
    let lying = files.path().join("lying.pem");
    let other_id = "ab".repeat(32);
    std::fs::write(
        &lying,
        std::fs::read_to_string(&alice)
            .unwrap()
            .replace(&format!("path: {alice_id}"), &format!("path: {other_id}")),
    )
    .unwrap();
    let go_d = tempfile::tempdir().unwrap();
    let o = trustkeeper(
        tb,
        trust.path(),
        &[
            "key",
            "import",
            lying.to_str().unwrap(),
            "--dir",
            go_d.path().to_str().unwrap(),
        ],
        &[("TRUSTKEEPER_PASSPHRASE", "alice-pass")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        common::stderr_text(&o)
            .contains(&format!("says it is {other_id} but holds key {alice_id}")),
        "{}",
        text(&o)
    );
    assert!(!go_d.path().join("private").exists(), "{}", text(&o));
    // Bounded: a large file is refused before it is parsed; a bad ID is a usage error.
    let big = files.path().join("big.pem");
    std::fs::write(&big, vec![b'A'; (1 << 20) + 1]).unwrap();
    let o = import(&big, &[]);
    refused(&o, 1, "larger than");
    let o = trustkeeper(
        tb,
        trust.path(),
        &[
            "key",
            "export",
            "--key-id",
            "../../etc/x",
            "--output-file",
            "/dev/null",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // A repository (targets) key keeps its gun; one without a role header needs --role.
    let seed = tb.seed("key-import");
    let o = import(Path::new(seed.var("TARGETS_KEY")), &[]);
    assert!(o.status.success(), "{}", text(&o));
    // (`notary key list` shortens a long GUN.)
    let listed = go_keys(tb, go_c.path());
    assert!(
        listed
            .iter()
            .any(|(r, _, id)| r == "targets" && id == seed.var("TARGETS_KEY_ID")),
        "{listed:?}"
    );
    // trustkeeper's key list says what the Go client's does, from the headers alone.
    let o = trustkeeper(
        tb,
        trust.path(),
        &[
            "-o",
            "json",
            "key",
            "list",
            "--dir",
            go_c.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let mut ours: Vec<(String, String, String)> = (rows.iter())
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("role"), s("gun"), s("key_id"))
        })
        .collect();
    let mut theirs = listed.clone();
    ours.sort();
    theirs.sort();
    assert!(theirs.len() >= 2, "{theirs:?}");
    assert_eq!(ours.len(), theirs.len(), "{ours:?} vs {theirs:?}");
    for (a, b) in ours.iter().zip(&theirs) {
        // The Go client's table cuts a long GUN to `...` and its end.
        let gun_agrees = match b.1.strip_prefix("...") {
            Some(end) => a.1.ends_with(end),
            None => a.1 == b.1,
        };
        assert!(a.0 == b.0 && a.2 == b.2 && gun_agrees, "{a:?} vs {b:?}");
    }
    let stored = go_c
        .path()
        .join("private")
        .join(format!("{}.key", seed.var("TARGETS_KEY_ID")));
    let stored = std::fs::read_to_string(stored).unwrap();
    assert!(
        stored.contains(&format!("gun: {}\n", seed.gun)),
        "no gun header"
    );
    assert!(
        !stored.contains("path: "),
        "the store's files have no path header"
    );
    let bare = files.path().join("bare.pem");
    let stripped: String = std::fs::read_to_string(&alice)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("role: "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&bare, stripped).unwrap();
    let o = import(&bare, &[]);
    refused(&o, 1, "give --role");
}

#[test]
fn sign_without_key_finds_the_go_clients_key_by_id() {
    let tb = Testbed::get();
    let seed = tb.seed("key-lookup");
    let trust = tempfile::tempdir().unwrap();
    let gun = seed.gun.clone();
    // A docker config directory whose trust/ is the Go client's trust directory.
    let docker = tempfile::tempdir().unwrap();
    let go_dir = docker.path().join("trust");
    let o = go(
        tb,
        &go_dir,
        "dev-pass",
        &["key", "generate", "ecdsa", "--role", "targets/dev"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let dev_id = go_keys(tb, &go_dir)[0].2.clone();
    // Its public key, and dev a signer (targets/dev and targets/releases).
    let exported = trust.path().join("dev.pem");
    let o = trustkeeper(
        tb,
        trust.path(),
        &[
            "key",
            "export",
            "--key-id",
            &dev_id,
            "--dir",
            go_dir.to_str().unwrap(),
            "--output-file",
            exported.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = trustkeeper(
        tb,
        trust.path(),
        &["key", "public", exported.to_str().unwrap()],
        &[("TRUSTKEEPER_PASSPHRASE", "dev-pass")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let pubfile = trust.path().join("dev.pub");
    std::fs::write(&pubfile, &o.stdout).unwrap();
    // The repository key joins it there, and signer add finds it by ID (no --repo-key).
    let o = trustkeeper(
        tb,
        trust.path(),
        &[
            "key",
            "import",
            seed.var("TARGETS_KEY"),
            "--dir",
            go_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let repo_pass = pass_of(&seed, "TARGETS_PASSPHRASE_FILE");
    let o = trustkeeper(
        tb,
        trust.path(),
        &[
            "signer",
            "add",
            "dev",
            &gun,
            "--key",
            pubfile.to_str().unwrap(),
        ],
        &[
            ("TRUSTKEEPER_REPO_PASSPHRASE", repo_pass.as_str()),
            ("DOCKER_CONFIG", docker.path().to_str().unwrap()),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        common::stderr_text(&o).contains(&format!("using key {}", seed.var("TARGETS_KEY_ID"))),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains(&repo_pass), "passphrase printed");

    // sign without --key: the key is found by ID in $DOCKER_CONFIG/trust.
    let image = format!("{gun}:multi");
    let docker_config = docker.path().to_str().unwrap();
    let o = trustkeeper(
        tb,
        trust.path(),
        &["sign", &image, "--role", "targets/releases"],
        &[
            ("DOCKER_CONFIG", docker_config),
            ("TRUSTKEEPER_PASSPHRASE", "dev-pass"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let err = common::stderr_text(&o);
    assert!(err.contains(&format!("using key {dev_id}")), "{}", text(&o));
    assert!(!text(&o).contains("BEGIN"), "key material printed");
    assert_eq!(
        tb.notary_digests(&gun, Some("targets/releases"))["multi"],
        seed.digest("multi")
    );

    // A trust directory without a key the role accepts: refused, naming the accepted IDs.
    let empty = tempfile::tempdir().unwrap();
    let o = trustkeeper(
        tb,
        trust.path(),
        &[
            "sign",
            &format!("{gun}:oci-v1"),
            "--role",
            "targets/releases",
            "--docker-trust-dir",
            empty.path().to_str().unwrap(),
        ],
        &[("TRUSTKEEPER_PASSPHRASE", "dev-pass")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = common::stderr_text(&o);
    assert!(
        err.contains("holds none of the keys") && err.contains(&dev_id),
        "{}",
        text(&o)
    );
    assert!(
        !tb.notary_digests(&gun, Some("targets/releases"))
            .contains_key("oci-v1")
    );
}
