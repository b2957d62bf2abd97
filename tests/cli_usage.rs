//! The command line's usage, checked on the built binary before any I/O: no service is needed.

use std::process::{Command, Output};

fn trustkeeper(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trustkeeper"));
    c.args(args).env_remove("TRUSTKEEPER_KEY");
    for var in ["TIMEOUT", "DEADLINE", "MAX_METADATA_SIZE"] {
        c.env_remove(format!("TRUSTKEEPER_{var}"));
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("the binary runs")
}

/// Long flags a help text lists (`--name` at the start of a line).
fn flags(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix("-o, ")
                .or(l.strip_prefix("-n, "))
                .unwrap_or(l);
            l.strip_prefix("--").map(|f| {
                f.split([' ', '=', '<'])
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
        })
        .collect()
}

#[test]
fn controller_help_lists_only_the_flags_it_reads() {
    for args in [
        &["controller", "--help"][..],
        &["controller", "-h"],
        &["help", "controller"],
    ] {
        let o = trustkeeper(args, &[]);
        assert!(o.status.success(), "{o:?}");
        controller_help_is_honest(&String::from_utf8(o.stdout).unwrap());
    }
    // Hidden there only: the commands that read them still show them.
    let o = trustkeeper(&["sign", "--help"], &[]);
    let sign = flags(&String::from_utf8(o.stdout).unwrap());
    for f in [
        "trust-dir",
        "passphrase-file",
        "notary-url",
        "output",
        "key",
    ] {
        assert!(sign.iter().any(|x| x == f), "sign --help lacks --{f}");
    }
}

fn controller_help_is_honest(help: &str) {
    let listed = flags(help);
    for ignored in [
        "docker-config",
        "notary-url",
        "insecure-token-realm",
        "trust-dir",
        "root-key-id",
        "passphrase-file",
        "output",
        "key",
        "key-id",
    ] {
        assert!(
            !listed.iter().any(|f| f == ignored),
            "controller --help lists --{ignored}, which the controller ignores:\n{help}"
        );
    }
    for used in [
        "namespace",
        "concurrency",
        "ca-file",
        "timeout",
        "deadline",
        "max-metadata-size",
        "webhook-token-file",
    ] {
        assert!(
            listed.iter().any(|f| f == used),
            "controller --help lacks --{used}:\n{help}"
        );
    }
}

#[test]
fn controller_still_accepts_the_global_flags_it_ignores() {
    // A shared environment (TRUSTKEEPER_TRUST_DIR, or a flag in a common wrapper) must not turn
    // into a usage error for the controller: parsing succeeds, and --help ends the run first.
    let o = trustkeeper(
        &[
            "controller",
            "--trust-dir",
            "/nonexistent",
            "-o",
            "json",
            "--help",
        ],
        &[("TRUSTKEEPER_NOTARY_URL", "https://notary.example")],
    );
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn bad_durations_and_sizes_are_usage_errors_naming_the_flag() {
    for (args, env, flag) in [
        (
            &["sign", "r.example/a:v1", "--timeout", "3d"][..],
            None,
            "--timeout",
        ),
        (
            &["sign", "r.example/a:v1", "--timeout=-5s"][..],
            None,
            "--timeout",
        ),
        (
            &["witness", "r.example/a", "--deadline", "0s"][..],
            None,
            "--deadline",
        ),
        (
            &["inspect", "r.example/a", "--max-metadata-size", "4MB"][..],
            None,
            "--max-metadata-size",
        ),
        (
            &["controller", "--deadline", "soon"][..],
            None,
            "--deadline",
        ),
        (
            &["inspect", "r.example/a"][..],
            Some(("TRUSTKEEPER_TIMEOUT", "soon")),
            "--timeout",
        ),
        (
            &["inspect", "r.example/a"][..],
            Some(("TRUSTKEEPER_MAX_METADATA_SIZE", "1")),
            "--max-metadata-size",
        ),
    ] {
        let env: Vec<(&str, &str)> = env.into_iter().collect();
        let o = trustkeeper(args, &env);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert!(
            err.contains(flag),
            "{args:?} {env:?}: stderr lacks {flag}: {err}"
        );
    }
}

/// Run as `kubectl-trustkeeper` (a kubectl plugin), help and usage errors name the program as
/// kubectl users type it; nothing else changes.
#[test]
fn as_a_kubectl_plugin_the_usage_says_kubectl_trustkeeper() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("kubectl-trustkeeper");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_trustkeeper"), &plugin).unwrap();
    let o = Command::new(&plugin)
        .args(["status", "--help"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let help = String::from_utf8(o.stdout).unwrap();
    assert!(
        help.contains("Usage: kubectl trustkeeper status [OPTIONS] <NAME>"),
        "{help}"
    );
    let o = Command::new(&plugin).arg("nonsense").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("Usage: kubectl trustkeeper [OPTIONS] <COMMAND>"),
        "{err}"
    );
    let o = trustkeeper(&["status", "--help"], &[]);
    assert!(
        String::from_utf8(o.stdout)
            .unwrap()
            .contains("Usage: trustkeeper status")
    );
}
