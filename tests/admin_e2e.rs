//! `delegation`, `signer` and `key generate` end to end on the real testbed, the real notary Go
//! client as referee: it lists what was published, verifies it, and publishes on top of it.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::admin::{go_delegations, refused, served_targets_version, text};
use common::{Seed, Testbed};

fn trustkeeper(tb: &Testbed, trust: &Path, seed: &Seed, args: &[&str]) -> Output {
    common::admin::trustkeeper(tb, trust, seed, args, &[])
}

fn trustkeeper_env(
    tb: &Testbed,
    trust: &Path,
    seed: &Seed,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    common::admin::trustkeeper(tb, trust, seed, args, env)
}

#[test]
fn delegation_add_list_remove_with_the_go_client_as_referee() {
    let tb = Testbed::get();
    let seed = tb.seed("deleg-admin");
    let trust = tempfile::tempdir().unwrap();
    let gun = seed.gun.as_str();
    let key_id = seed.var("DELEGATION_KEY_ID");
    let before = tb.notary_digests(gun, None);
    let v0 = served_targets_version(tb, gun);

    let o = trustkeeper(
        tb,
        trust.path(),
        &seed,
        &[
            "delegation",
            "add",
            gun,
            "targets/qa",
            "--key",
            seed.var("DELEGATION_PUBKEY"),
            "--all-paths",
            "--repo-key",
            seed.var("TARGETS_KEY"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        served_targets_version(tb, gun),
        v0 + 1,
        "one publish of targets"
    );
    let go = go_delegations(tb, gun);
    assert_eq!(go["targets/qa"], [key_id], "{go:?}");
    // The Go client signs into the new role with the key listed, and lists what it signed.
    let sha = "ab".repeat(32);
    tb.go_publish_target(gun, "qa-1", &sha, "targets/qa");
    assert_eq!(tb.notary_digests(gun, Some("targets/qa"))["qa-1"], sha);
    // Nothing the Go client listed before is lost.
    let after = tb.notary_digests(gun, None);
    for (tag, d) in &before {
        assert_eq!(after.get(tag), Some(d), "{tag}");
    }

    // list -o json shows the role, its paths, threshold, key and (now that it has a file) expiry.
    let o = trustkeeper(
        tb,
        trust.path(),
        &seed,
        &["-o", "json", "delegation", "list", gun, "targets/qa"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows[0]["role"], "targets/qa");
    assert_eq!(rows[0]["paths"], serde_json::json!([""]));
    assert_eq!(rows[0]["threshold"], 1);
    assert_eq!(rows[0]["key_ids"], serde_json::json!([key_id]));
    assert!(rows[0]["expires"].is_string(), "{rows}");

    // Removing the only key is refused (a role nobody can sign), nothing published.
    let v1 = served_targets_version(tb, gun);
    let o = trustkeeper(
        tb,
        trust.path(),
        &seed,
        &[
            "delegation",
            "remove",
            gun,
            "targets/qa",
            "--key",
            key_id,
            "--repo-key",
            seed.var("TARGETS_KEY"),
        ],
    );
    refused(&o, 1, "remove the delegation instead");
    assert_eq!(served_targets_version(tb, gun), v1);

    // Removing the role: the Go client no longer lists it, everything else stays.
    let o = trustkeeper(
        tb,
        trust.path(),
        &seed,
        &[
            "delegation",
            "remove",
            gun,
            "targets/qa",
            "--repo-key",
            seed.var("TARGETS_KEY"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let go = go_delegations(tb, gun);
    assert!(!go.contains_key("targets/qa"), "{go:?}");
    assert!(go.contains_key("targets/releases"), "{go:?}");
    let after = tb.notary_digests(gun, None);
    for (tag, d) in &before {
        assert_eq!(after.get(tag), Some(d), "{tag}");
    }
    assert!(!after.contains_key("qa-1"), "{after:?}");
    // The Go client still publishes on top.
    tb.go_publish_target(gun, "after-remove", &"cd".repeat(32), "targets/releases");
}

#[test]
fn delegation_refusals_publish_nothing() {
    let tb = Testbed::get();
    let seed = tb.seed("deleg-refuse");
    let trust = tempfile::tempdir().unwrap();
    let gun = seed.gun.as_str();
    let v0 = served_targets_version(tb, gun);
    let fail = |args: &[&str], code: i32, needle: &str| {
        let o = trustkeeper(tb, trust.path(), &seed, args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", text(&o));
        assert!(
            common::stderr_text(&o).contains(needle),
            "{args:?}: wanted {needle:?} in {}",
            text(&o)
        );
    };
    let pubkey = seed.var("DELEGATION_PUBKEY");
    // The delegation key is not the repository key: it cannot sign targets.
    fail(
        &[
            "delegation",
            "add",
            gun,
            "targets/qa",
            "--key",
            pubkey,
            "--all-paths",
            "--repo-key",
            seed.var("DELEGATION_KEY"),
            "--repo-passphrase-file",
            seed.var("DELEGATION_PASSPHRASE_FILE"),
        ],
        1,
        "no valid signing keys for targets",
    );
    fail(
        &[
            "delegation",
            "remove",
            gun,
            "targets/nobody",
            "--repo-key",
            seed.var("TARGETS_KEY"),
        ],
        1,
        "targets/nobody is not a role",
    );
    fail(
        &[
            "delegation",
            "remove",
            gun,
            "targets/releases",
            "--key",
            &"0".repeat(64),
            "--repo-key",
            seed.var("TARGETS_KEY"),
        ],
        1,
        "does not list key",
    );
    fail(
        &[
            "delegation",
            "add",
            gun,
            "targets/qa",
            "--key",
            pubkey,
            "--repo-key",
            seed.var("TARGETS_KEY"),
        ],
        1,
        "--all-paths or",
    );
    fail(
        &[
            "delegation",
            "add",
            gun,
            "targets/qa",
            "--key",
            pubkey,
            "--all-paths",
            "--threshold",
            "2",
            "--repo-key",
            seed.var("TARGETS_KEY"),
        ],
        1,
        "threshold 2 with 1 key",
    );
    fail(
        &[
            "delegation",
            "add",
            gun,
            "targets/Bad",
            "--key",
            pubkey,
            "--all-paths",
            "--repo-key",
            seed.var("TARGETS_KEY"),
        ],
        1,
        "lower-case",
    );
    fail(
        &[
            "delegation",
            "add",
            gun,
            "targets/qa",
            "--key",
            pubkey,
            "--all-paths",
        ],
        1,
        "holds none of the keys targets accept",
    );
    // The root key is refused before anything is asked.
    fail(
        &[
            "delegation",
            "add",
            gun,
            "targets/qa",
            "--key",
            pubkey,
            "--all-paths",
            "--repo-key",
            seed.var("ROOT_KEY"),
        ],
        1,
        "is a root key",
    );
    // A repository that does not exist says so.
    let none = tb.unique_gun("never-initialized");
    fail(
        &[
            "delegation",
            "add",
            &none,
            "targets/qa",
            "--key",
            pubkey,
            "--all-paths",
            "--repo-key",
            seed.var("TARGETS_KEY"),
        ],
        1,
        "not initialized",
    );
    assert_eq!(served_targets_version(tb, gun), v0, "nothing was published");
}

#[test]
fn key_generate_signer_add_and_remove_as_docker_did() {
    let tb = Testbed::get();
    let seed = tb.seed("signer-admin");
    let trust = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let gun = seed.gun.as_str();
    let dir = keys.path().to_str().unwrap();

    // key generate: an encrypted key the Go client imports, its public key, its ID printed.
    let (key_file, pub_file, alice_id) =
        common::admin::generate(tb, keys.path(), "alice", "alice-pass-1");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pem = std::fs::read_to_string(&key_file).unwrap();
    assert!(
        pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        "{pem}"
    );
    // A second generate does not overwrite it.
    let o = common::admin::bare(
        tb,
        trust.path(),
        &["key", "generate", "alice", "--dir", dir],
        &[("TRUSTKEEPER_KEY_PASSPHRASE", "other-pass-2")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), pem);

    // signer add: targets/alice and targets/releases both list the key.
    let o = trustkeeper(
        tb,
        trust.path(),
        &seed,
        &[
            "signer",
            "add",
            "alice",
            gun,
            "--key",
            &pub_file,
            "--repo-key",
            seed.var("TARGETS_KEY"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let go = go_delegations(tb, gun);
    assert_eq!(
        go["targets/alice"],
        std::slice::from_ref(&alice_id),
        "{go:?}"
    );
    assert!(go["targets/releases"].contains(&alice_id), "{go:?}");
    assert!(
        go["targets/releases"].contains(&seed.var("DELEGATION_KEY_ID").to_string()),
        "the existing signer stays: {go:?}"
    );
    // The same again publishes nothing and succeeds.
    let v = served_targets_version(tb, gun);
    let o = trustkeeper(
        tb,
        trust.path(),
        &seed,
        &[
            "signer",
            "add",
            "alice",
            gun,
            "--key",
            &pub_file,
            "--repo-key",
            seed.var("TARGETS_KEY"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("unchanged"),
        "{}",
        text(&o)
    );
    assert_eq!(served_targets_version(tb, gun), v);

    // The Go client imports the generated key (its own trust directory) and signs with it.
    let go_trust = tempfile::tempdir().unwrap();
    let go_env = |args: &[&str]| {
        Command::new(tb.var("NOTARY_CLIENT"))
            .args(args)
            .env("TESTBED_TRUST_DIR", go_trust.path())
            .env("NOTARY_DELEGATION_PASSPHRASE", "alice-pass-1")
            .output()
            .unwrap()
    };
    let o = go_env(&["key", "import", &key_file]);
    assert!(o.status.success(), "{}", text(&o));
    let sha = "ef".repeat(32);
    for args in [
        &[
            "addhash",
            gun,
            "alice-1",
            "3",
            "--sha256",
            &sha,
            "-r",
            "targets/alice",
        ][..],
        &["publish", gun][..],
    ] {
        let o = go_env(args);
        assert!(o.status.success(), "notary {args:?}: {}", text(&o));
    }
    assert_eq!(
        tb.notary_digests(gun, Some("targets/alice"))["alice-1"],
        sha
    );

    // signer remove: targets/alice goes, its key leaves targets/releases, the other stays.
    let o = trustkeeper(
        tb,
        trust.path(),
        &seed,
        &[
            "signer",
            "remove",
            "alice",
            gun,
            "--repo-key",
            seed.var("TARGETS_KEY"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let go = go_delegations(tb, gun);
    assert!(!go.contains_key("targets/alice"), "{go:?}");
    assert_eq!(
        go["targets/releases"],
        [seed.var("DELEGATION_KEY_ID").to_string()],
        "{go:?}"
    );

    // ci-bot holds the last key of targets/releases: refused without --force, as docker asks.
    let v = served_targets_version(tb, gun);
    let o = trustkeeper(
        tb,
        trust.path(),
        &seed,
        &[
            "signer",
            "remove",
            "ci-bot",
            gun,
            "--repo-key",
            seed.var("TARGETS_KEY"),
        ],
    );
    refused(&o, 1, "docker pulls");
    assert_eq!(served_targets_version(tb, gun), v);
    let o = trustkeeper(
        tb,
        trust.path(),
        &seed,
        &[
            "signer",
            "remove",
            "ci-bot",
            gun,
            "--force",
            "--repo-key",
            seed.var("TARGETS_KEY"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        common::stderr_text(&o).contains("no keys left"),
        "{}",
        text(&o)
    );
    let go = go_delegations(tb, gun);
    assert!(!go.contains_key("targets/ci-bot"), "{go:?}");
    assert_eq!(go["targets/releases"], Vec::<String>::new(), "{go:?}");
}

#[test]
fn remove_drops_a_tag_from_the_roles_the_key_signs() {
    let tb = Testbed::get();
    let seed = tb.seed("remove-tag");
    let trust = tempfile::tempdir().unwrap();
    let gun = seed.gun.as_str();
    let pass = std::fs::read_to_string(seed.var("DELEGATION_PASSPHRASE_FILE")).unwrap();
    let run = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_trustkeeper"));
        c.args(args)
            .env("TRUSTKEEPER_TRUST_DIR", trust.path())
            .env("TRUSTKEEPER_CA_FILE", tb.var("CA_CERT"))
            .env("TRUSTKEEPER_NOTARY_URL", tb.var("NOTARY_URL"))
            .env("TRUSTKEEPER_PASSPHRASE", pass.trim())
            .env_remove("TRUSTKEEPER_KEY")
            .env_remove("TRUSTKEEPER_DOCKER_CONFIG");
        common::cli_output(&mut c, trust.path(), &[])
    };
    let key = seed.var("DELEGATION_KEY");
    let image = |tag: &str| format!("{gun}:{tag}");
    assert!(
        tb.notary_digests(gun, Some("targets/ci-bot"))
            .contains_key("v1")
    );
    let keep = "aa".repeat(32);
    tb.go_publish_target(gun, "keep", &keep, "targets/ci-bot");
    tb.go_publish_target(gun, "keep", &keep, "targets/releases");

    // Without --role: every role holding v1 that the key signs (targets/releases, ci-bot).
    let o = run(&["remove", &image("v1"), "--key", key]);
    assert!(o.status.success(), "{}", text(&o));
    let all = tb.notary_digests(gun, None);
    assert!(!all.contains_key("v1"), "{all:?}");
    assert!(
        !tb.notary_digests(gun, Some("targets/ci-bot"))
            .contains_key("v1")
    );
    assert_eq!(all["keep"], keep);

    // --role: only there; targets/releases keeps it.
    let o = run(&[
        "remove",
        &image("keep"),
        "--role",
        "targets/ci-bot",
        "--key",
        key,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !tb.notary_digests(gun, Some("targets/ci-bot"))
            .contains_key("keep")
    );
    assert_eq!(tb.notary_digests(gun, None)["keep"], keep);

    // Refusals publish nothing.
    let v = served_targets_version(tb, gun);
    // The repository key does not sign targets/releases.
    let o = run(&[
        "remove",
        &image("keep"),
        "--role",
        "targets/releases",
        "--key",
        seed.var("TARGETS_KEY"),
        "--passphrase-file",
        seed.var("TARGETS_PASSPHRASE_FILE"),
    ]);
    refused(&o, 1, "no valid signing keys for targets/releases");
    let o = run(&["remove", &image("nope"), "--key", key]);
    refused(&o, 1, "nothing to remove");
    let o = run(&["remove", gun, "--key", key]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(served_targets_version(tb, gun), v);
    assert_eq!(tb.notary_digests(gun, None)["keep"], keep);
    // The Go client publishes on top.
    tb.go_publish_target(gun, "v2", &"12".repeat(32), "targets/releases");
}

/// Another writer (the Go client declaring delegations in `targets` too) publishing while
/// trustkeeper does: every trustkeeper command still succeeds (a version conflict re-reads and
/// re-applies), and nobody's delegation is lost.
#[test]
fn delegation_add_beside_a_concurrent_go_writer_loses_nothing() {
    let tb = Testbed::get();
    let seed = tb.seed("deleg-race");
    let trust = tempfile::tempdir().unwrap();
    let gun = seed.gun.clone();
    let pubkey = seed.var("DELEGATION_PUBKEY").to_string();
    let go = {
        let (gun, pubkey) = (gun.clone(), pubkey.clone());
        std::thread::spawn(move || {
            let mut added = vec![];
            for i in 0..6 {
                let role = format!("targets/go{i}");
                let a = tb.notary(&["delegation", "add", &gun, &role, &pubkey, "--all-paths"]);
                let p = tb.notary(&["publish", &gun]);
                if a.status.success() && p.status.success() {
                    added.push(role);
                } else {
                    // A lost race of the Go client's own: its change stays staged; drop it.
                    let _ = tb.notary(&["reset", &gun, "--all"]);
                }
            }
            added
        })
    };
    let mut ours = vec![];
    let mut conflicts = 0;
    for i in 0..6 {
        let role = format!("targets/tk{i}");
        let o = trustkeeper_env(
            tb,
            trust.path(),
            &seed,
            &[
                "delegation",
                "add",
                &gun,
                &role,
                "--key",
                &pubkey,
                "--all-paths",
                "--repo-key",
                seed.var("TARGETS_KEY"),
            ],
            &[("TRUSTKEEPER_LOG", "trustkeeper=info")],
        );
        assert!(o.status.success(), "{role}: {}", text(&o));
        conflicts += common::stderr_text(&o).matches("version conflict").count();
        ours.push(role);
    }
    let theirs = go.join().unwrap();
    let listed = go_delegations(tb, &gun);
    for role in ours.iter().chain(&theirs) {
        assert!(listed.contains_key(role), "{role} lost: {listed:?}");
    }
    assert!(!theirs.is_empty(), "the Go client never published");
    eprintln!(
        "Go client publishes that went through: {} of 6; trustkeeper re-reads after a conflict: {conflicts}",
        theirs.len()
    );
}
