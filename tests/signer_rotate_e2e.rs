//! `signer rotate` end to end on the real testbed, the real notary Go client as referee: after
//! the rotation it lists and verifies every tag, shows the new key, publishes with the new key
//! and fails with the old one; another signer keeps signing; and a reader running through the
//! rotation never fails.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use common::admin::{
    GoClient, check_readers, generate, go_delegations, reader, served_targets_version, text,
    trustkeeper,
};
use common::{Seed, Testbed};

#[test]
fn signer_rotate_replaces_the_key_in_one_publish_and_readers_never_fail() {
    let tb = Testbed::get();
    let seed = tb.seed("signer-rotate");
    let trust = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let gun = seed.gun.clone();
    let old_id = seed.var("DELEGATION_KEY_ID").to_string();
    let repo_key = seed.var("TARGETS_KEY");

    // ci-bot (targets/ci-bot + targets/releases, the testbed's delegation key) holds tags the
    // Go client signed; bob is a second signer in releases with tags of his own.
    tb.go_publish_target(&gun, "c1", &"c1".repeat(32), "targets/ci-bot");
    tb.go_publish_target(&gun, "r1", &"a1".repeat(32), "targets/releases");
    let (_, bob_pub, bob_id) = generate(tb, keys.path(), "bob", "bob-pass-1");
    let o = trustkeeper(
        tb,
        trust.path(),
        &seed,
        &[
            "signer",
            "add",
            "bob",
            &gun,
            "--key",
            &bob_pub,
            "--repo-key",
            repo_key,
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let bob = GoClient::new("bob-pass-1");
    let o = bob.run(
        tb,
        &[
            "key",
            "import",
            keys.path().join("bob.key").to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = bob.publish(tb, &gun, "bob-1", &"b1".repeat(32), "targets/releases");
    assert!(o.status.success(), "{}", text(&o));
    let before_all = tb.notary_digests(&gun, None);
    let before_rel = tb.notary_digests(&gun, Some("targets/releases"));
    let before_ci = tb.notary_digests(&gun, Some("targets/ci-bot"));
    assert!(before_rel.contains_key("bob-1") && before_ci.contains_key("c1"));

    let (new_key, _, new_id) = generate(tb, keys.path(), "ci-new", "ci-new-pass");
    assert_ne!(new_id, old_id);
    let (other_key, _, _) = generate(tb, keys.path(), "ci-other", "ci-new-pass");

    // Refusals publish nothing: no such signer; the repository key is not the one given.
    let pass_env = [("TRUSTKEEPER_KEY_PASSPHRASE", "ci-new-pass")];
    let fail = |args: &[&str], env: &[(&str, &str)], needle: &str| {
        let v0 = served_targets_version(tb, &gun);
        let o = trustkeeper(tb, trust.path(), &seed, args, env);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(
            common::stderr_text(&o).contains(needle),
            "{args:?}: {}",
            text(&o)
        );
        assert_eq!(served_targets_version(tb, &gun), v0, "{args:?} published");
    };
    fail(
        &[
            "signer",
            "rotate",
            "nobody",
            &gun,
            "--new-key",
            &new_key,
            "--repo-key",
            repo_key,
        ],
        &pass_env,
        "no signer nobody",
    );
    let deleg_pass = std::fs::read_to_string(seed.var("DELEGATION_PASSPHRASE_FILE")).unwrap();
    fail(
        &[
            "signer",
            "rotate",
            "ci-bot",
            &gun,
            "--new-key",
            &new_key,
            "--repo-key",
            seed.var("DELEGATION_KEY"),
        ],
        &[
            ("TRUSTKEEPER_KEY_PASSPHRASE", "ci-new-pass"),
            ("TRUSTKEEPER_REPO_PASSPHRASE", deleg_pass.trim()),
        ],
        "no valid signing keys for targets",
    );
    // releases needing two signatures (ci-bot's and bob's): the new key alone cannot re-sign
    // it, so the rotation is refused and says what to do.
    let threshold = |n: &str| {
        let o = trustkeeper(
            tb,
            trust.path(),
            &seed,
            &[
                "delegation",
                "add",
                &gun,
                "targets/releases",
                "--threshold",
                n,
                "--repo-key",
                repo_key,
            ],
            &[],
        );
        assert!(o.status.success(), "{}", text(&o));
        served_targets_version(tb, &gun)
    };
    let v2 = threshold("2");
    let rotate_ci_bot = [
        "signer",
        "rotate",
        "ci-bot",
        &gun,
        "--new-key",
        &new_key,
        "--repo-key",
        repo_key,
    ];
    fail(&rotate_ci_bot, &pass_env, "lower its threshold first");
    assert_eq!(served_targets_version(tb, &gun), v2);
    let v0 = threshold("1");

    // A reader with its own trust directory lists releases again and again meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let go_reader = {
        let (go, gun) = (GoClient::new("unused"), gun.clone());
        reader(stop.clone(), move || {
            let o = go.run(tb, &["list", &gun, "-r", "targets/releases"]);
            let ok = o.status.success() && String::from_utf8_lossy(&o.stdout).contains("bob-1");
            (ok, text(&o))
        })
    };
    // And trustkeeper inspect, with its own trust state, as a second reader.
    let inspector = {
        let (own, image) = (tempfile::tempdir().unwrap(), format!("{gun}:bob-1"));
        let seed = Seed {
            gun: seed.gun.clone(),
            repository: seed.repository.clone(),
            vars: seed.vars.clone(),
            dir: seed.dir.clone(),
        };
        reader(stop.clone(), move || {
            let o = trustkeeper(
                tb,
                own.path(),
                &seed,
                &["-o", "json", "inspect", &image],
                &[],
            );
            let ok =
                o.status.success() && String::from_utf8_lossy(&o.stdout).contains(&"b1".repeat(32));
            (ok, text(&o))
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Five rotations (to the new key, then back and forth with a second one, ending on the
    // first), each timed; the first one's answer is checked below.
    let rotate = |key: &str| {
        let t0 = Instant::now();
        let o = trustkeeper(
            tb,
            trust.path(),
            &seed,
            &[
                "-o",
                "json",
                "signer",
                "rotate",
                "ci-bot",
                &gun,
                "--new-key",
                key,
                "--repo-key",
                repo_key,
            ],
            &pass_env,
        );
        assert!(o.status.success(), "{}", text(&o));
        (o, (t0, Instant::now()))
    };
    let (o, first) = rotate(&new_key);
    let mut spans = vec![first];
    for key in [&other_key, &new_key, &other_key, &new_key] {
        spans.push(rotate(key).1);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    assert!(o.status.success(), "{}", text(&o));
    check_readers(
        &spans,
        &[
            ("notary list -r targets/releases", go_reader.join().unwrap()),
            ("trustkeeper inspect", inspector.join().unwrap()),
        ],
    );

    // -o json: one publish of targets and both re-signed roles, old and new key IDs.
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let published: Vec<&str> = j["published"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        published,
        ["targets", "targets/ci-bot", "targets/releases"],
        "{j}"
    );
    assert_eq!(j["old_key_ids"], serde_json::json!([old_id]));
    assert_eq!(j["new_key_id"], new_id.as_str());
    assert_eq!(
        served_targets_version(tb, &gun),
        v0 + 5,
        "one publish of targets per rotation"
    );

    // The Go client lists and verifies every tag, as before; the delegations show the new key.
    assert_eq!(tb.notary_digests(&gun, None), before_all);
    assert_eq!(
        tb.notary_digests(&gun, Some("targets/releases")),
        before_rel
    );
    assert_eq!(tb.notary_digests(&gun, Some("targets/ci-bot")), before_ci);
    let go = go_delegations(tb, &gun);
    assert_eq!(
        go["targets/ci-bot"],
        std::slice::from_ref(&new_id),
        "{go:?}"
    );
    let mut rel = go["targets/releases"].clone();
    rel.sort();
    let mut want = vec![new_id.clone(), bob_id.clone()];
    want.sort();
    assert_eq!(rel, want, "bob keeps his key, the old one is gone: {go:?}");

    // The old key (the testbed client's own store holds it) can no longer publish.
    let v = served_targets_version(tb, &gun);
    for role in ["targets/ci-bot", "targets/releases"] {
        let o = tb.notary(&[
            "addhash",
            &gun,
            "old-1",
            "3",
            "--sha256",
            &"0f".repeat(32),
            "-r",
            role,
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let o = tb.notary(&["publish", &gun]);
        assert!(
            !o.status.success(),
            "the old key published into {role}: {}",
            text(&o)
        );
        let _ = tb.notary(&["reset", &gun, "--all"]);
    }
    assert!(!tb.notary_digests(&gun, None).contains_key("old-1"));
    assert_eq!(served_targets_version(tb, &gun), v);

    // The new key, imported into a Go client, publishes into both roles.
    let ci = GoClient::new("ci-new-pass");
    let o = ci.run(tb, &["key", "import", &new_key]);
    assert!(o.status.success(), "{}", text(&o));
    let o = ci.publish(tb, &gun, "new-1", &"e1".repeat(32), "targets/ci-bot");
    assert!(o.status.success(), "{}", text(&o));
    let o = ci.publish(tb, &gun, "new-2", &"e2".repeat(32), "targets/releases");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        tb.notary_digests(&gun, Some("targets/ci-bot"))["new-1"],
        "e1".repeat(32)
    );
    assert_eq!(
        tb.notary_digests(&gun, Some("targets/releases"))["new-2"],
        "e2".repeat(32)
    );
    // Bob still signs releases.
    let o = bob.publish(tb, &gun, "bob-2", &"b2".repeat(32), "targets/releases");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        tb.notary_digests(&gun, Some("targets/releases"))["bob-2"],
        "b2".repeat(32)
    );

    // trustkeeper signs with the new key.
    let image = format!("{gun}:multi");
    let o = trustkeeper(
        tb,
        trust.path(),
        &seed,
        &[
            "sign",
            &image,
            "--key",
            &new_key,
            "--role",
            "targets/releases",
        ],
        &[("TRUSTKEEPER_PASSPHRASE", "ci-new-pass")],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        tb.notary_digests(&gun, Some("targets/releases"))["multi"],
        seed.digest("multi")
    );

    // Rotating to the key it already has is refused.
    fail(&rotate_ci_bot, &pass_env, "already signer ci-bot's key");
}
