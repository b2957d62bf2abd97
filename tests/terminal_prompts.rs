//! What trustkeeper asks on a terminal, answered on a real pty (util-linux `script`) against the
//! real testbed: `revoke`'s question as docker asked it, and the passphrases of the keys `init`
//! makes, typed twice. The Go client checks what came of it.

mod common;

use common::Testbed;
use common::admin::{GoClient, on_terminal, served_targets_version, text};

#[test]
fn revoke_asks_and_removes_only_on_yes() {
    let tb = Testbed::get();
    let seed = tb.seed("revoke-tty");
    let gun = seed.gun.clone();
    let trust = tempfile::tempdir().unwrap();
    let pass = std::fs::read_to_string(seed.var("DELEGATION_PASSPHRASE_FILE")).unwrap();
    let env = [("TRUSTKEEPER_PASSPHRASE", pass.trim())];
    tb.go_publish_target(&gun, "r1", &"a1".repeat(32), "targets/releases");
    let image = format!("{gun}:r1");
    let args = ["revoke", &image, "--key", seed.var("DELEGATION_KEY")];
    let v = served_targets_version(tb, &gun);

    for no in ["n\n", "\n", "maybe\n"] {
        let (code, shown) = on_terminal(tb, trust.path(), &args, &env, no);
        assert_eq!(code, Some(1), "{no:?}: {shown}");
        assert!(shown.contains("Remove "), "{shown}");
        assert!(shown.contains("[y/N]"), "{shown}");
        assert!(
            shown.contains("not confirmed: nothing was removed"),
            "{shown}"
        );
    }
    assert!(tb.notary_digests(&gun, None).contains_key("r1"));
    assert_eq!(served_targets_version(tb, &gun), v);

    let (code, shown) = on_terminal(tb, trust.path(), &args, &env, "y\n");
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        !shown.contains(pass.trim()),
        "the passphrase was shown: {shown}"
    );
    let left = tb.notary_digests(&gun, Some("targets/releases"));
    assert!(!left.contains_key("r1"), "{left:?}");
    assert!(left.contains_key("v1"), "another tag went too: {left:?}");
}

#[test]
fn init_asks_each_new_key_passphrase_twice() {
    let tb = Testbed::get();
    let trust = tempfile::tempdir().unwrap();
    let docker = tempfile::tempdir().unwrap();
    let dt = docker.path().to_str().unwrap();
    let keys = || std::fs::read_dir(docker.path().join("private")).map_or(0, |d| d.count());

    // Typed differently the second time: nothing written, nothing created.
    let gun = tb.unique_gun("init-tty-differ");
    let args = ["init", gun.as_str(), "--docker-trust-dir", dt];
    let (code, shown) = on_terminal(tb, trust.path(), &args, &[], "root-1-tty\nroot-2-tty\n");
    assert_eq!(code, Some(1), "{shown}");
    assert!(shown.contains("Passphrase for the new root key"), "{shown}");
    assert!(shown.contains("the passphrases differ"), "{shown}");
    assert_eq!(keys(), 0);
    let fresh = GoClient::new("unused");
    let o = fresh.run(tb, &["list", &gun]);
    assert!(!o.status.success(), "created anyway: {}", text(&o));

    // Typed the same twice for each key: created, and the Go client publishes with the
    // repository key under the passphrase typed.
    let gun = tb.unique_gun("init-tty");
    let args = ["init", gun.as_str(), "--docker-trust-dir", dt];
    let typed = "root-pass-tty\nroot-pass-tty\nrepo-pass-tty\nrepo-pass-tty\n";
    let (code, shown) = on_terminal(tb, trust.path(), &args, &[], typed);
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains("Passphrase for the new repository key"),
        "{shown}"
    );
    assert!(shown.contains(&format!("created {gun}")), "{shown}");
    assert_eq!(keys(), 2);
    let go = GoClient::in_dir(
        docker.path(),
        &[("NOTARY_TARGETS_PASSPHRASE", "repo-pass-tty")],
    );
    let o = go.publish(tb, &gun, "v1", &"b1".repeat(32), "targets");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(tb.notary_digests(&gun, None)["v1"], "b1".repeat(32));
}
