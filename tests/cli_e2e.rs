//! The `trustkeeper` binary end to end on the real testbed: what a CI step or a person runs,
//! with exit codes and messages, and the real notary Go client as referee.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Seed, Testbed};

struct Cli {
    trust_dir: tempfile::TempDir,
    passphrase: Option<String>,
}

impl Cli {
    fn new(seed: &Seed) -> Cli {
        let pass = std::fs::read_to_string(seed.var("DELEGATION_PASSPHRASE_FILE"))
            .unwrap()
            .trim()
            .to_string();
        Cli {
            trust_dir: tempfile::tempdir().unwrap(),
            passphrase: Some(pass),
        }
    }

    fn run(&self, tb: &Testbed, args: &[&str]) -> Output {
        self.command(tb, args).output().unwrap()
    }

    /// The binary with this trust directory, the testbed's CA and notary, and nothing else of the
    /// environment that could change its answer.
    fn command(&self, tb: &Testbed, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_trustkeeper"));
        c.args(args)
            .env("TRUSTKEEPER_TRUST_DIR", self.trust_dir.path())
            .env("TRUSTKEEPER_CA_FILE", tb.var("CA_CERT"))
            .env("TRUSTKEEPER_NOTARY_URL", tb.var("NOTARY_URL"))
            .env_remove("TRUSTKEEPER_DOCKER_CONFIG")
            .env_remove("TRUSTKEEPER_PASSPHRASE")
            .env_remove("NOTARY_AUTH")
            // An empty HOME: no ~/.docker/config.json, anonymous registry access.
            .env("HOME", self.trust_dir.path());
        if let Some(p) = &self.passphrase {
            c.env("TRUSTKEEPER_PASSPHRASE", p);
        }
        c
    }
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn notary_list(tb: &Testbed, gun: &str, role: &str) -> BTreeMap<String, String> {
    tb.notary_digests(gun, Some(role))
}

fn digest(seed: &Seed, tag: &str) -> String {
    seed.digest(tag)
}

/// The run succeeded and `multi` is listed in `targets/releases` at the seed's digest.
fn assert_multi_signed(tb: &Testbed, seed: &Seed, o: &Output) {
    assert!(o.status.success(), "{:?}", text(o));
    assert_eq!(
        notary_list(tb, &seed.gun, "targets/releases")["multi"],
        digest(seed, "multi")
    );
}

/// A fresh seed named `name`, a CLI with no passphrase in its environment (it comes from the
/// Secret in the file), and a temporary folder holding the path of `app.yaml` in it.
fn reconcile_setup(tb: &Testbed, name: &str) -> (Seed, Cli, tempfile::TempDir, PathBuf) {
    let seed = tb.seed(name);
    let mut cli = Cli::new(&seed);
    cli.passphrase = None;
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("app.yaml");
    (seed, cli, dir, file)
}

#[test]
fn key_inspect_names_the_key_id() {
    let tb = Testbed::get();
    let seed = tb.seed("cli-key");
    let cli = Cli::new(&seed);
    let o = cli.run(
        tb,
        &["key", "inspect", seed.var("DELEGATION_KEY"), "-o", "json"],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["key_id"], seed.var("DELEGATION_KEY_ID"));
    assert_eq!(v[0]["key_type"], "ecdsa");
    // The passphrase never appears in any output.
    let (out, err) = text(&o);
    let pass = cli.passphrase.as_deref().unwrap();
    assert!(!out.contains(pass) && !err.contains(pass));
}

#[test]
fn sign_witness_and_inspect_agree_with_the_go_client() {
    let tb = Testbed::get();
    let seed = tb.seed("cli-sign");
    let cli = Cli::new(&seed);
    let key = seed.var("DELEGATION_KEY");
    let refs: Vec<String> = ["multi", "oci-v1", "oci-multi"]
        .iter()
        .map(|t| format!("{}:{t}", seed.gun))
        .collect();
    let mut args = vec!["sign"];
    args.extend(refs.iter().map(String::as_str));
    args.extend(["--key", key, "--role", "targets/releases"]);
    let o = cli.run(tb, &args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert_eq!(out.matches("signed ").count(), 3, "{out}");
    let listed = notary_list(tb, &seed.gun, "targets/releases");
    for tag in ["v1", "multi", "oci-v1", "oci-multi"] {
        assert_eq!(listed[tag], digest(&seed, tag), "{tag}");
    }
    // The Go client can publish on top of what we published.
    tb.go_publish_target(&seed.gun, "extra", &"ab".repeat(32), "targets/releases");

    // inspect: the same tags and digests as `notary list`, with the role docker reads.
    let o = cli.run(tb, &["inspect", &seed.gun, "-o", "json"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let all = notary_list(tb, &seed.gun, "targets");
    let ours: BTreeMap<String, String> = v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tag"].as_str().unwrap().to_string(),
                t["digest"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("sha256:")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(ours, all);
    assert_eq!(v["repository_key_ids"][0], seed.var("TARGETS_KEY_ID"));
    let releases = v["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "targets/releases")
        .unwrap();
    let version_before = releases["version"].as_u64().unwrap();

    // witness: version + 1, same targets, fresh expiry.
    tb.run(&[
        "age",
        tb.dir.to_str().unwrap(),
        &seed.gun,
        "targets/releases",
        "+30d",
    ]);
    let o = cli.run(
        tb,
        &[
            "witness",
            &seed.gun,
            "--key",
            key,
            "--role",
            "targets/releases",
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("renewed   targets/releases"), "{out}");
    let o = cli.run(tb, &["inspect", &seed.gun, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let releases = v["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "targets/releases")
        .unwrap();
    assert_eq!(
        releases["version"].as_u64().unwrap(),
        version_before + 2,
        "age, then witness"
    );
    let expires: jiff::Timestamp = releases["expires"].as_str().unwrap().parse().unwrap();
    assert!(expires > jiff::Timestamp::now() + jiff::SignedDuration::from_hours(26000));
    assert_eq!(
        notary_list(tb, &seed.gun, "targets/releases").len(),
        5,
        "witness kept every target"
    );
    let out = tb.notary(&["list", &seed.gun]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("nearing expiry"));
}

#[test]
fn bad_input_gets_a_specific_message_and_exit_code_and_publishes_nothing() {
    let tb = Testbed::get();
    let seed = tb.seed("cli-bad");
    let cli = Cli::new(&seed);
    let key = seed.var("DELEGATION_KEY");
    let good = format!("{}:multi", seed.gun);
    let sha = format!("sha256:{}", digest(&seed, "multi"));
    let before = notary_list(tb, &seed.gun, "targets");
    let dir = tempfile::tempdir().unwrap();
    let not_a_cert = dir.path().join("ca.pem");
    std::fs::write(&not_a_cert, "hello, I am not a certificate\n").unwrap();
    let garbage_key = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage_key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();

    let mut wrong = Cli::new(&seed);
    wrong.passphrase = Some("wrong".into());
    let mut repo_key = Cli::new(&seed);
    repo_key.passphrase = Some(
        std::fs::read_to_string(seed.var("TARGETS_PASSPHRASE_FILE"))
            .unwrap()
            .trim()
            .to_string(),
    );
    let cases: Vec<(&str, Output, i32, &str)> = vec![
        (
            "wrong passphrase",
            wrong.run(tb, &["sign", &good, "--key", key]),
            1,
            "wrong passphrase",
        ),
        (
            "malformed key",
            cli.run(tb, &["sign", &good, "--key", garbage_key.to_str().unwrap()]),
            1,
            "key",
        ),
        (
            "repository key",
            repo_key.run(tb, &["sign", &good, "--key", seed.var("TARGETS_KEY")]),
            1,
            "no valid signing keys for delegation roles",
        ),
        (
            "bad reference",
            cli.run(tb, &["sign", "Not A Reference:x", "--key", key]),
            1,
            "Not A Reference",
        ),
        (
            "no tag",
            cli.run(tb, &["sign", &seed.gun, "--key", key]),
            1,
            "names no tag",
        ),
        (
            "unknown tag",
            cli.run(tb, &["sign", &format!("{}:nope", seed.gun), "--key", key]),
            1,
            "nope",
        ),
        (
            "http notary",
            cli.run(
                tb,
                &[
                    "sign",
                    &good,
                    "--key",
                    key,
                    "--notary-url",
                    "http://127.0.0.1:1",
                ],
            ),
            1,
            "not https",
        ),
        (
            "CA not a certificate",
            cli.run(
                tb,
                &[
                    "sign",
                    &good,
                    "--key",
                    key,
                    "--ca-file",
                    not_a_cert.to_str().unwrap(),
                ],
            ),
            1,
            "CA",
        ),
        (
            "unreachable notary",
            cli.run(
                tb,
                &[
                    "sign",
                    &good,
                    "--key",
                    key,
                    "--notary-url",
                    "https://127.0.0.1:1",
                ],
            ),
            1,
            "unreachable",
        ),
        (
            "bad duration",
            cli.run(tb, &["sign", &good, "--key", key, "--timeout", "3d"]),
            2,
            "Go duration",
        ),
        (
            "usage",
            cli.run(tb, &["sign", "--key", key]),
            2,
            "IMAGE:TAG",
        ),
        (
            "digest without size",
            cli.run(tb, &["sign", &good, "--key", key, "--digest", &sha]),
            2,
            "--size",
        ),
        (
            "digest not sha256",
            cli.run(
                tb,
                &[
                    "sign", &good, "--key", key, "--digest", "md5:00", "--size", "9",
                ],
            ),
            1,
            "--digest: digest algorithm \"md5\" is not supported",
        ),
        (
            "size 0",
            cli.run(
                tb,
                &["sign", &good, "--key", key, "--digest", &sha, "--size", "0"],
            ),
            1,
            "--size 0",
        ),
        (
            "digest in the reference",
            cli.run(tb, &["sign", &format!("{good}@{sha}"), "--key", key]),
            1,
            "give it as --digest",
        ),
    ];
    for (what, o, code, needle) in &cases {
        let (out, err) = text(o);
        assert_eq!(o.status.code(), Some(*code), "{what}: {out}\n{err}");
        assert!(
            err.to_lowercase().contains(&needle.to_lowercase()),
            "{what}: stderr lacks {needle:?}: {err}"
        );
        if *code == 1 {
            assert_eq!(err.trim().lines().count(), 1, "{what}: one line: {err}");
        }
        assert!(
            !err.contains("wrong\n") && !err.contains(cli.passphrase.as_deref().unwrap()),
            "{what}: secret in output"
        );
    }
    assert_eq!(
        notary_list(tb, &seed.gun, "targets"),
        before,
        "nothing was published"
    );
}

/// `--ca-file` is trusted beside the system roots, as docker's `--tlscacert` and the notary
/// client's `root_ca` are: a server whose chain leads to the system roots is still reached when
/// the file holds another CA (here the "system" is `SSL_CERT_FILE` = the testbed's CA).
#[test]
fn ca_file_adds_to_the_system_roots() {
    let tb = Testbed::get();
    let seed = tb.seed("cli-ca");
    let cli = Cli::new(&seed);
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-subj", "/CN=another CA", "-days", "2", "-keyout"])
        .arg(dir.path().join("other.key"))
        .arg("-out")
        .arg(&other)
        .output()
        .unwrap();
    assert!(made.status.success(), "{:?}", text(&made));
    let image = format!("{}:multi", seed.gun);
    let key = seed.var("DELEGATION_KEY");
    let sign = |system: &Path| {
        cli.command(
            tb,
            &["sign", &image, "--key", key, "--role", "targets/releases"],
        )
        .env("TRUSTKEEPER_CA_FILE", &other)
        .env("SSL_CERT_FILE", system)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap()
    };
    // The system roots lack the testbed's CA too: refused, nothing published.
    let o = sign(&other);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("certificate"), "{err}");
    assert!(!notary_list(tb, &seed.gun, "targets/releases").contains_key("multi"));
    // The system roots hold it: signed.
    let o = sign(Path::new(tb.var("CA_CERT")));
    assert_multi_signed(tb, &seed, &o);
}

/// `--digest` and `--size` with `--no-registry-check` sign as `notary addhash` does: the registry is not asked (the tag
/// need not exist there), and the Go client lists exactly the digest and size given.
#[test]
fn sign_by_digest_does_not_ask_the_registry() {
    let tb = Testbed::get();
    let seed = tb.seed("cli-digest");
    let cli = Cli::new(&seed);
    let key = seed.var("DELEGATION_KEY");
    let sha = digest(&seed, "multi");
    let size = seed.var("TAG_MULTI_SIZE");
    let (a, b) = (
        format!("{}:only-in-ci", seed.gun),
        format!("{}:also-in-ci", seed.gun),
    );
    let digest_arg = format!("sha256:{sha}");
    let o = cli
        .command(
            tb,
            &[
                "sign",
                &a,
                &b,
                "--key",
                key,
                "--role",
                "targets/releases",
                "--digest",
                &digest_arg,
                "--size",
                size,
                // the tags are not in the registry: addhash's case
                "--no-registry-check",
            ],
        )
        .env("TRUSTKEEPER_LOG", "trustkeeper=debug")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert_eq!(out.matches("signed ").count(), 2, "{out}");
    let line = err.lines().find(|l| l.contains("requests sent")).unwrap();
    assert!(
        line.contains("registry_head=0") && line.contains("registry_get=0"),
        "{line}"
    );
    let listed = tb.notary_list(&seed.gun, Some("targets/releases"));
    for tag in ["only-in-ci", "also-in-ci"] {
        assert_eq!(listed[tag].sha256, sha, "{tag}");
        assert_eq!(listed[tag].size.to_string(), size, "{tag}");
    }
    assert_eq!(listed["v1"].sha256, digest(&seed, "v1"), "kept");
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn resource(seed: &Seed, tb: &Testbed, tags: &str, interval: &str) -> String {
    let key = std::fs::read(seed.var("DELEGATION_KEY")).unwrap();
    let pass = std::fs::read(seed.var("DELEGATION_PASSPHRASE_FILE")).unwrap();
    let ca = std::fs::read(tb.var("CA_CERT")).unwrap();
    format!(
        "apiVersion: trustkeeper.dev/v1alpha1\nkind: SignedImage\nmetadata: {{name: app, namespace: ci}}\nspec:\n  image: {gun}\n  tags: {tags}\n  roles: [targets/releases]\n  signingKey: {{secretRef: {{name: signer}}}}\n  registry: {{ca: {{configMapKeyRef: {{name: ca, key: ca.crt}}}}}}\n  notary:\n    url: {url}\n    ca: {{secretKeyRef: {{name: signer, key: ca.crt}}}}\n  interval: {interval}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: signer, namespace: ci}}\ndata:\n  key.pem: {k}\n  passphrase: {p}\n  ca.crt: {c}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ca, namespace: ci}}\ndata:\n  ca.crt: |\n{ca_text}",
        gun = seed.gun,
        url = tb.var("NOTARY_URL"),
        k = b64(&key),
        p = b64(&pass),
        c = b64(&ca),
        ca_text = String::from_utf8(ca)
            .unwrap()
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>(),
    )
}

#[test]
fn reconcile_from_files_writes_status_beside_them() {
    let tb = Testbed::get();
    let (seed, cli, dir, file) = reconcile_setup(tb, "cli-reconcile");
    write(&file, &resource(&seed, tb, "[\"oci-*\", multi]", "5m"));
    let o = cli.run(tb, &["reconcile", "-f", file.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let listed = notary_list(tb, &seed.gun, "targets/releases");
    for tag in ["multi", "oci-v1", "oci-multi"] {
        assert_eq!(listed[tag], digest(&seed, tag));
    }
    let status = std::fs::read_to_string(dir.path().join("app.yaml.status.yaml")).unwrap();
    assert!(status.contains("reason: Signed"), "{status}");
    assert!(status.contains("tagSummary: 3/3"), "{status}");
    assert!(status.contains("rootKeyIDs"), "{status}");
    let pass = std::fs::read_to_string(seed.var("DELEGATION_PASSPHRASE_FILE")).unwrap();
    assert!(
        !status.contains(pass.trim()) && !out.contains(pass.trim()) && !err.contains(pass.trim())
    );

    // Again: nothing new, still Ready, status rewritten with the same trust anchor.
    let o = cli.run(tb, &["reconcile", "-f", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(!text(&o).0.contains("signed  "), "{:?}", text(&o));

    // A missing Secret is a status reason naming it.
    write(
        &file,
        &resource(&seed, tb, "[multi]", "5m").replace("name: signer}", "name: nosuch}"),
    );
    let o = cli.run(tb, &["reconcile", "-f", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("SecretNotFound") && text(&o).1.contains("nosuch"),
        "{:?}",
        text(&o)
    );
}

#[tokio::test]
async fn reconcile_watch_signs_new_and_moved_tags() {
    let tb = Testbed::get();
    let (seed, cli, _dir, file) = reconcile_setup(tb, "cli-watch");
    write(&file, &resource(&seed, tb, "[\"rc-*\"]", "1s"));
    tb.retag(&seed, "v1", "rc-1").await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_trustkeeper"))
        .args(["reconcile", "--watch", "-f", file.to_str().unwrap()])
        .env("TRUSTKEEPER_TRUST_DIR", cli.trust_dir.path())
        .env("HOME", cli.trust_dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let wait_for = |tag: &str, want: String| {
        for _ in 0..150 {
            if notary_list(tb, &seed.gun, "targets/releases").get(tag) == Some(&want) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        false
    };
    let signed_first = wait_for("rc-1", digest(&seed, "v1"));
    // A new tag and a moved tag are picked up by the next poll.
    tb.retag(&seed, "multi", "rc-2").await;
    let signed_new = wait_for("rc-2", digest(&seed, "multi"));
    tb.retag(&seed, "oci-v1", "rc-1").await;
    let signed_moved = wait_for("rc-1", digest(&seed, "oci-v1"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(signed_first, "rc-1 signed");
    assert!(signed_new, "new tag rc-2 signed");
    assert!(signed_moved, "moved tag rc-1 re-signed");
}

/// `notary_get=N` from the engine's debug line.
fn notary_gets(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("requests sent"))
        .unwrap_or_else(|| panic!("no request line in {stderr}"));
    let v = line.split("notary_get=").nth(1).unwrap();
    v.split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The trust directory keeps the verified metadata (as the Go client's cache does): a CI step
/// with nothing new downloads `timestamp.json` only, and damaged cache files cost a download,
/// never a wrong answer.
#[test]
fn trust_dir_keeps_metadata_and_survives_damage() {
    let tb = Testbed::get();
    let seed = tb.seed("cli-cache");
    let cli = Cli::new(&seed);
    let key = seed.var("DELEGATION_KEY");
    let image = format!("{}:multi", seed.gun);
    let sign = |cli: &Cli| {
        let o = cli
            .command(
                tb,
                &["sign", &image, "--key", key, "--role", "targets/releases"],
            )
            .env("TRUSTKEEPER_LOG", "trustkeeper=debug")
            .output()
            .unwrap();
        assert!(o.status.success(), "{:?}", text(&o));
        text(&o)
    };
    let (out, err) = sign(&cli);
    assert!(out.contains("signed "), "{out}");
    // root, timestamp, snapshot, targets, releases, ci-bot + the read-back's timestamp and snapshot.
    assert_eq!(notary_gets(&err), 8, "{err}");
    let meta = cli
        .trust_dir
        .path()
        .join("tuf")
        .join(&seed.gun)
        .join("metadata");
    let root = std::fs::read(meta.join("root.json")).unwrap();
    let names: Vec<String> = walk(&meta);
    assert_eq!(
        names.iter().filter(|n| n.starts_with("snapshot.")).count(),
        1,
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("targets/releases.")),
        "{names:?}"
    );

    let (out, err) = sign(&cli);
    assert!(out.contains("unchanged"), "{out}");
    assert_eq!(notary_gets(&err), 1, "{err}");

    // Damage: a root that is not the trusted one, a hash-named file with other bytes.
    std::fs::write(meta.join("root.json"), b"{\"signed\":{}}").unwrap();
    let snap = names.iter().find(|n| n.starts_with("snapshot.")).unwrap();
    std::fs::write(meta.join(snap), b"garbage").unwrap();
    let (out, err) = sign(&cli);
    assert!(out.contains("unchanged"), "{out}\n{err}");
    assert!(notary_gets(&err) > 1, "{err}");
    assert_eq!(
        std::fs::read(meta.join("root.json")).unwrap(),
        root,
        "root repaired"
    );
    let (_, err) = sign(&cli);
    assert_eq!(notary_gets(&err), 1, "{err}");

    // The signature memo kept in the trust state: one entry per signature checked (root,
    // timestamp, snapshot, targets, 2 delegations); damaged entries are only checks redone.
    let gun_dir = meta.parent().unwrap();
    let (seq, state) = newest_trust_slot(gun_dir);
    let memo = state["verifiedSignatures"].as_array().unwrap().clone();
    assert_eq!(memo.len(), 6, "{state}");
    let mut damaged = state.clone();
    damaged["verifiedSignatures"] = serde_json::json!(["zz", "0".repeat(64)]);
    let body = serde_json::to_vec(&damaged).unwrap();
    let slot = format!(
        "{{\"seq\":{},\"sha256\":\"{}\",\"state\":{}}}",
        seq + 1,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body)),
        String::from_utf8(body).unwrap()
    );
    let name = if (seq + 1) % 2 == 1 {
        "trust.a.json"
    } else {
        "trust.b.json"
    };
    std::fs::write(gun_dir.join(name), slot).unwrap();
    assert_eq!(newest_trust_slot(gun_dir).1, damaged);
    let (out, _) = sign(&cli);
    assert!(out.contains("unchanged"), "{out}");
    let (_, state) = newest_trust_slot(gun_dir);
    assert_eq!(state["verifiedSignatures"].as_array().unwrap(), &memo);
}

/// The sequence number and state of the newest trust state slot of a GUN's directory.
fn newest_trust_slot(gun_dir: &Path) -> (u64, serde_json::Value) {
    ["trust.a.json", "trust.b.json"]
        .iter()
        .filter_map(|n| std::fs::read(gun_dir.join(n)).ok())
        .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap())
        .map(|v| (v["seq"].as_u64().unwrap(), v["state"].clone()))
        .max_by_key(|(seq, _)| *seq)
        .expect("a trust state slot")
}

/// Files under `dir`, as relative paths.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// `inspect | head`: the reader goes away before the output is written. The process ends by
/// SIGPIPE, as a C or Go tool does: no panic (exit 101), nothing on stderr.
#[test]
fn inspect_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let tb = Testbed::get();
    let seed = tb.seed("cli-pipe");
    let cli = Cli::new(&seed);
    for format in ["text", "json"] {
        let mut child = cli
            .command(tb, &["inspect", &seed.gun, "-o", format])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before the notary round trips are over: the first write meets no reader.
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.signal(),
            Some(libc::SIGPIPE),
            "{format}: {o:?} {err}"
        );
        // Nothing but the notice of the root trusted on first use: no panic, no error.
        let other: Vec<&str> = err
            .lines()
            .filter(|l| !l.contains("on first use"))
            .collect();
        assert!(other.is_empty(), "{format}: {err}");
    }
}

/// Under umask 000 the trust directory is still created 0700 and its files 0600 (another user
/// once rewrote the pinned root key ID); a directory or file others can write, or one owned by
/// another user, is refused with the command that fixes it.
#[test]
fn trust_dir_is_private_whatever_the_umask() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    let tb = Testbed::get();
    let seed = tb.seed("cli-umask");
    let cli = Cli::new(&seed);
    let fresh = cli.trust_dir.path().join("fresh");
    let run = |args: &[&str]| {
        let mut c = cli.command(tb, args);
        c.env("TRUSTKEEPER_TRUST_DIR", &fresh);
        // SAFETY: umask is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                libc::umask(0);
                Ok(())
            });
        }
        c.output().unwrap()
    };
    let image = format!("{}:multi", seed.gun);
    let key = seed.var("DELEGATION_KEY");
    let o = run(&["sign", &image, "--key", key, "--role", "targets/releases"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = run(&["inspect", &seed.gun]);
    assert!(o.status.success(), "{:?}", text(&o));
    let mut dirs = 0;
    let mut files = 0;
    let mut stack = vec![fresh.clone()];
    while let Some(d) = stack.pop() {
        let mode = std::fs::metadata(&d).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
        dirs += 1;
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                let mode = e.metadata().unwrap().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", e.path().display());
                files += 1;
            }
        }
    }
    assert!(dirs >= 6 && files >= 5, "{dirs} dirs, {files} files");

    let gun_dir = fresh.join("tuf").join(&seed.gun);
    let host_dir = fresh.join("tuf").join(tb.var("REGISTRY_HOST"));
    let slot = ["trust.a.json", "trust.b.json"]
        .iter()
        .map(|n| gun_dir.join(n))
        .find(|p| p.exists())
        .unwrap();
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    for (path, mode, fix) in [
        (&host_dir, 0o770, "chmod 700"),
        (&fresh, 0o702, "chmod 700"),
        (&slot, 0o620, "chmod 600"),
    ] {
        let back = std::fs::metadata(path).unwrap().mode() & 0o777;
        chmod(path, mode);
        let o = run(&["inspect", &seed.gun]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
        let want = format!("`{fix} {}`", path.display());
        assert!(err.contains(&want), "{want}: {err}");
        assert!(err.contains("can be written by other users"), "{err}");
        chmod(path, back);
    }
    // Owned by another user (only root can hand it over).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&gun_dir, Some(65534), None).unwrap();
        let o = run(&["inspect", &seed.gun]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("belongs to uid 65534"), "{err}");
        std::os::unix::fs::chown(&gun_dir, Some(0), None).unwrap();
    }
    let o = run(&["inspect", &seed.gun]);
    assert!(o.status.success(), "{:?}", text(&o));
}

/// The Go client as the repository owner, asserting success.
fn go(tb: &Testbed, args: &[&str]) {
    let o = tb.notary(args);
    assert!(
        o.status.success(),
        "notary {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// inspect's SIGNERS as `docker trust inspect` shows them, seeded by the Go client: "(Repo
/// Admin)" for tags only in `targets` or `targets/releases`, other delegations by name; tags
/// docker does not use (only in `targets/alice`, in the nested `targets/a/b`, sha512 only) are
/// listed with the reason, never dropped.
#[test]
fn inspect_signers_match_docker_trust_inspect() {
    let tb = Testbed::get();
    let seed = tb.seed("cli-signers");
    let cli = Cli::new(&seed);
    let gun = seed.gun.as_str();
    let pubkey = seed.var("DELEGATION_PUBKEY");
    for role in ["targets/alice", "targets/a"] {
        go(tb, &["delegation", "add", gun, role, pubkey, "--all-paths"]);
    }
    go(tb, &["publish", gun]);
    go(
        tb,
        &[
            "delegation",
            "add",
            gun,
            "targets/a/b",
            pubkey,
            "--all-paths",
        ],
    );
    go(tb, &["publish", gun]);
    let (a, b, c) = ("aa".repeat(32), "bb".repeat(32), "cc".repeat(32));
    for (tag, sha, roles) in [
        ("admin", &a, &["targets"][..]),
        ("rel", &b, &["targets/releases"][..]),
        ("both", &c, &["targets/releases", "targets/alice"][..]),
        ("alice-only", &a, &["targets/alice"][..]),
        ("nested", &b, &["targets/a/b"][..]),
    ] {
        let mut args = vec!["addhash", gun, tag, "3", "--sha256", sha];
        for r in roles {
            args.extend(["-r", r]);
        }
        go(tb, &args);
    }
    go(
        tb,
        &[
            "addhash",
            gun,
            "sha512-only",
            "3",
            "--sha512",
            &"dd".repeat(64),
            "-r",
            "targets/releases",
        ],
    );
    go(tb, &["publish", gun]);

    let o = cli.run(tb, &["inspect", gun, "-o", "json"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let tags: BTreeMap<String, serde_json::Value> = v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["tag"].as_str().unwrap().to_string(), t.clone()))
        .collect();
    let signers =
        |t: &str| -> Vec<String> { serde_json::from_value(tags[t]["signers"].clone()).unwrap() };
    assert_eq!(tags["admin"]["role"], "targets");
    assert!(signers("admin").is_empty());
    assert_eq!(tags["rel"]["role"], "targets/releases");
    assert!(signers("rel").is_empty());
    assert_eq!(signers("both"), ["alice"]);
    assert_eq!(signers("v1"), ["ci-bot"]);
    for t in ["admin", "rel", "both", "v1"] {
        assert!(tags[t].get("note").is_none(), "{t}: {}", tags[t]);
    }
    let note = |t: &str| tags[t]["note"].as_str().unwrap_or_default().to_string();
    assert_eq!(tags["alice-only"]["role"], "targets/alice");
    assert!(
        note("alice-only").contains("which docker does not read"),
        "{}",
        note("alice-only")
    );
    assert_eq!(tags["nested"]["role"], "targets/a/b");
    assert!(note("nested").contains("which docker does not read"));
    assert!(
        note("sha512-only").contains("no sha256 hash"),
        "{}",
        note("sha512-only")
    );
    assert!(
        tags["sha512-only"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha512:")
    );

    let o = cli.run(tb, &["inspect", gun]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let line = |t: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(t))
            .unwrap_or_else(|| panic!("no {t} in {out}"))
            .to_string()
    };
    assert!(line("admin").ends_with("(Repo Admin)"), "{out}");
    assert!(line("rel").ends_with("(Repo Admin)"), "{out}");
    assert!(line("both").ends_with(" alice"), "{out}");
    assert!(line("nested").contains("(not used by docker:"), "{out}");
}

/// Expiry as the clients see it: a role within the 6-month "nearing expiry" window is
/// `expiring`; an expired `targets` fails inspect (as the Go client fails) and a witness with a
/// delegation key (which renewed the delegations and said 0 before), until the repository key
/// renews it. A witness says nothing of roles far from expiry it cannot sign, and a root key is
/// refused as such.
#[test]
fn expiry_is_reported_as_the_clients_see_it() {
    let tb = Testbed::get();
    let seed = tb.seed("cli-expiry");
    let cli = Cli::new(&seed);
    let gun = seed.gun.as_str();
    let dir = tb.dir.to_str().unwrap();
    let key = seed.var("DELEGATION_KEY");
    let state = |role: &str| {
        let o = cli.run(tb, &["inspect", gun, "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let r = v["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == role)
            .cloned();
        (o, r.unwrap()["state"].as_str().unwrap().to_string(), v)
    };
    assert_eq!(state("targets/releases").1, "valid");

    // witness: the delegations renewed, nothing said of `targets` (years from expiry).
    let o = cli.run(tb, &["witness", gun, "--key", key]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(!out.contains("warning"), "{out}");

    tb.run(&["age", dir, gun, "targets/releases", "+30d"]);
    let (o, s, _) = state("targets/releases");
    assert!(o.status.success());
    assert_eq!(s, "expiring");

    // A root key is no signer: said before anything else.
    let o = cli
        .command(tb, &["witness", gun, "--key", seed.var("ROOT_KEY")])
        .env(
            "TRUSTKEEPER_PASSPHRASE",
            std::fs::read_to_string(seed.var("ROOT_PASSPHRASE_FILE"))
                .unwrap()
                .trim(),
        )
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("is the root key"), "{err}");

    tb.run(&["age", dir, gun, "targets", "-1d"]);
    let (o, s, v) = state("targets");
    let (_, err) = text(&o);
    assert_eq!(s, "expired");
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("targets expired at"), "{err}");
    let fix = format!("`trustkeeper witness {gun} --key <repository key> --role targets`");
    assert!(err.contains(&fix), "{err}");
    // The tags are still listed, with why docker does not use them.
    let v1 = v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tag"] == "v1")
        .unwrap();
    assert!(
        v1["note"].as_str().unwrap().contains("targets has expired"),
        "{v1}"
    );

    let o = cli.run(tb, &["witness", gun, "--key", key]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(
        err.contains("targets has expired and our key cannot re-sign it"),
        "{err}"
    );
    assert!(err.contains(&fix), "{err}");
    let (_, s, _) = state("targets/releases");
    assert_eq!(s, "hidden by an ancestor", "nothing published");

    // The repository key renews it; then every role reads again.
    let o = cli
        .command(
            tb,
            &[
                "witness",
                gun,
                "--key",
                seed.var("TARGETS_KEY"),
                "--role",
                "targets",
            ],
        )
        .env(
            "TRUSTKEEPER_PASSPHRASE",
            std::fs::read_to_string(seed.var("TARGETS_PASSPHRASE_FILE"))
                .unwrap()
                .trim(),
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{:?}", text(&o));
    let (o, s, _) = state("targets");
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(s, "valid");
}

/// The default notary server follows docker: `DOCKER_CONTENT_TRUST_SERVER` (https only), else
/// `https://<registry host>` with the registry's port (the testbed registry, which has no trust
/// data: "unknown repository", where the old `https://HOST:4443` guess was unreachable).
#[test]
fn default_notary_server_follows_docker() {
    let tb = Testbed::get();
    let seed = tb.seed("cli-default-url");
    let cli = Cli::new(&seed);
    let inspect = |server: Option<&str>| {
        let mut c = cli.command(tb, &["inspect", &seed.gun, "-o", "json"]);
        c.env_remove("TRUSTKEEPER_NOTARY_URL");
        match server {
            Some(s) => c.env("DOCKER_CONTENT_TRUST_SERVER", s),
            None => c.env_remove("DOCKER_CONTENT_TRUST_SERVER"),
        };
        c.output().unwrap()
    };
    let url = tb.var("NOTARY_URL");
    let o = inspect(Some(&format!("{url}/")));
    assert!(o.status.success(), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["notary_url"], url);

    let o = inspect(Some("http://127.0.0.1:1"));
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("DOCKER_CONTENT_TRUST_SERVER") && err.contains("not an https URL"));

    let o = inspect(None);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("unknown repository"),
        "asked the registry host: {err}"
    );
}

/// Every `notary ...` command a remedy names is accepted by the real Go client (staged in a
/// scratch trust directory; `publish` is left out: it would need the repository's keys), and
/// the commands remedies used to name are not.
#[test]
fn remedy_commands_are_accepted_by_the_notary_client() {
    use trustkeeper::engine::report::Surface;
    use trustkeeper::engine::report::examples::every_problem;
    let tb = Testbed::get();
    let gun = tb.unique_gun("cli-remedy");
    let scratch = tempfile::tempdir().unwrap();
    let cert = format!("{}/delegation.pub.pem", tb.var("TESTBED_KEYS_DIR"));
    let notary = |args: &[String]| {
        Command::new("/usr/bin/notary")
            .arg("-c")
            .arg(tb.var("NOTARY_CLIENT_CONFIG"))
            .arg("-d")
            .arg(scratch.path())
            .args(args)
            .output()
            .unwrap()
    };
    // One of every problem the engine reports.
    let problems = every_problem();
    let mut ran = 0;
    for p in &problems {
        for surface in [Surface::Cli, Surface::Resource] {
            let m = p.message_for(&gun, surface);
            for cmd in m.split('`').skip(1).step_by(2) {
                let words: Vec<String> = cmd
                    .replace("<cert.pem>", &cert)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                if words[0] != "notary" || words[1] == "publish" {
                    continue;
                }
                let o = notary(&words[1..]);
                let (out, err) = text(&o);
                assert!(
                    o.status.success() && !out.contains("fatal") && !err.contains("fatal"),
                    "notary rejects {cmd:?} (from {m}): {out}{err}"
                );
                ran += 1;
            }
        }
    }
    assert!(ran >= 8, "{ran} commands");
    // What the remedies used to say, refused by the same client.
    for role in ["targets", "releases"] {
        let args: Vec<String> = ["delegation", "add", &gun, role, &cert, "--all-paths"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = notary(&args);
        let (out, err) = text(&o);
        assert!(!o.status.success(), "{role}: {out}{err}");
        assert!(
            (out + &err).contains("invalid delegation role name"),
            "{role}"
        );
    }
}

/// The version of the timestamp the server serves: every publish raises it.
fn timestamp_version(tb: &Testbed, gun: &str) -> u64 {
    let url = format!(
        "{}/v2/{gun}/_trust/tuf/timestamp.json",
        tb.var("NOTARY_URL")
    );
    let ca = tb.ca_pem();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        trustkeeper::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&ca).unwrap())
            .build()
            .unwrap();
        let v: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
        v["signed"]["version"].as_u64().unwrap()
    })
}

fn key_id_of(tb: &Testbed, cli: &Cli, key: &str) -> String {
    let o = cli.run(tb, &["key", "inspect", key, "-o", "json"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0]["key_id"].as_str().unwrap().to_string()
}

#[test]
fn the_key_as_contents_signs_from_standard_input_and_the_environment() {
    let tb = Testbed::get();
    let seed = tb.seed("cli-key-contents");
    let cli = Cli::new(&seed);
    let pem = std::fs::read_to_string(seed.var("DELEGATION_KEY")).unwrap();
    let ts = timestamp_version(tb, &seed.gun);

    // --key -: the PEM on standard input.
    let image = format!("{}:multi", seed.gun);
    let o = common::output_with_stdin(
        &mut cli.command(tb, &["sign", &image, "--key", "-"]),
        pem.as_bytes(),
    );
    assert_multi_signed(tb, &seed, &o);

    // TRUSTKEEPER_KEY: the PEM text itself, as a CI secret arrives.
    let image = format!("{}:oci-v1", seed.gun);
    let o = cli
        .command(tb, &["sign", &image])
        .env("TRUSTKEEPER_KEY", &pem)
        .output()
        .unwrap();
    assert!(o.status.success(), "{:?}", text(&o));
    let listed = notary_list(tb, &seed.gun, "targets/releases");
    assert_eq!(listed["oci-v1"], digest(&seed, "oci-v1"));
    assert_eq!(listed["multi"], digest(&seed, "multi"));
    // A path there, as before TRUSTKEEPER_KEY took the PEM itself.
    let image3 = format!("{}:oci-multi", seed.gun);
    let o = cli
        .command(tb, &["sign", &image3])
        .env("TRUSTKEEPER_KEY", seed.var("DELEGATION_KEY"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(
        notary_list(tb, &seed.gun, "targets/releases")["oci-multi"],
        digest(&seed, "oci-multi")
    );
    assert_eq!(timestamp_version(tb, &seed.gun), ts + 3, "three publishes");

    // Without any key: a usage hint, nothing published.
    let o = cli.run(tb, &["sign", &image]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("TRUSTKEEPER_KEY"), "{:?}", text(&o));
}

#[test]
fn a_key_given_as_an_argument_is_never_echoed() {
    let tb = Testbed::get();
    let seed = tb.seed("cli-key-echo");
    let cli = Cli::new(&seed);
    // An unencrypted key: its PEM body is the private key.
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_input/keys");
    let pem = std::fs::read_to_string(corpus.join("not-a-signer.pem")).unwrap();
    assert!(pem.contains("BEGIN PRIVATE KEY"), "an unencrypted key");
    let body: Vec<&str> = pem
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.contains(':') && l.len() >= 16)
        .collect();
    assert!(!body.is_empty());
    let image = format!("{}:multi", seed.gun);
    let eq = format!("--key={pem}");
    // The body alone, on one line, as a secret store may hold it.
    let bare = body.concat();
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("--key PEM", vec!["sign", &image, "--key", &pem]),
        ("--key BODY", vec!["sign", &image, "--key", &bare]),
        ("--key=PEM", vec!["sign", &image, &eq]),
        ("key inspect PEM", vec!["key", "inspect", &pem]),
        ("witness PEM", vec!["witness", &seed.gun, "--key", &pem]),
        ("unknown flag beside", vec!["sign", &image, "--bogus", &pem]),
    ];
    let ts = timestamp_version(tb, &seed.gun);
    for (name, args) in runs {
        let o = cli.run(tb, &args);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {out}{err}");
        for line in &body {
            assert!(
                !err.contains(line) && !out.contains(line),
                "{name}: a line of the key is in the output:\n{err}"
            );
        }
        assert!(err.contains("TRUSTKEEPER_KEY"), "{name}: {err}");
    }
    // The bare body in TRUSTKEEPER_KEY is neither PEM nor a path, and is not shown either.
    let o = cli
        .command(tb, &["sign", &image])
        .env("TRUSTKEEPER_KEY", &bare)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    for line in &body {
        assert!(!err.contains(line) && !out.contains(line), "{err}");
    }
    assert!(err.contains("BEGIN and END lines"), "{err}");
    // Other usage errors still name the argument.
    let o = cli.run(tb, &["sign", &image, "--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("--bogus"), "{:?}", text(&o));
    assert_eq!(timestamp_version(tb, &seed.gun), ts, "nothing published");
}

#[test]
fn passphrase_file_wins_over_the_environment_and_both_are_trimmed() {
    let tb = Testbed::get();
    let seed = tb.seed("cli-passphrase");
    let mut cli = Cli::new(&seed);
    let pass = cli.passphrase.clone().unwrap();
    let key = seed.var("DELEGATION_KEY");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pass");
    let file_s = file.to_str().unwrap();

    // The explicit file wins over a wrong TRUSTKEEPER_PASSPHRASE.
    write(&file, &format!("{pass}\n"));
    cli.passphrase = Some("wrong-passphrase".into());
    let o = cli.run(tb, &["key", "inspect", key, "--passphrase-file", file_s]);
    assert!(o.status.success(), "{:?}", text(&o));
    // ... and a wrong file over a right TRUSTKEEPER_PASSPHRASE.
    write(&file, "wrong-passphrase\n");
    cli.passphrase = Some(pass.clone());
    let o = cli.run(tb, &["key", "inspect", key, "--passphrase-file", file_s]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("wrong passphrase"), "{:?}", text(&o));
    // The environment loses its line end as the file does.
    for ending in ["\n", "\r\n"] {
        cli.passphrase = Some(format!("{pass}{ending}"));
        let o = cli.run(tb, &["key", "inspect", key]);
        assert!(o.status.success(), "{ending:?}: {:?}", text(&o));
        write(&file, &format!("{pass}{ending}"));
        cli.passphrase = None;
        let o = cli.run(tb, &["key", "inspect", key, "--passphrase-file", file_s]);
        assert!(o.status.success(), "file {ending:?}: {:?}", text(&o));
    }
}

#[test]
fn key_id_mismatch_names_both_ids_and_publishes_nothing() {
    let tb = Testbed::get();
    let seed = tb.seed("cli-key-id");
    let cli = Cli::new(&seed);
    let key = seed.var("DELEGATION_KEY");
    let actual = key_id_of(tb, &cli, key);
    let other = "ab".repeat(32);
    let image = format!("{}:multi", seed.gun);
    let ts = timestamp_version(tb, &seed.gun);
    let before = notary_list(tb, &seed.gun, "targets/releases");
    let o = cli.run(tb, &["sign", &image, "--key", key, "--key-id", &other]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&actual) && err.contains(&other),
        "both IDs: {err}"
    );
    let o = cli
        .command(tb, &["witness", &seed.gun, "--key", key])
        .env("TRUSTKEEPER_KEY_ID", &other)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert_eq!(timestamp_version(tb, &seed.gun), ts, "nothing published");
    assert_eq!(notary_list(tb, &seed.gun, "targets/releases"), before);
    // The right ID signs.
    let o = cli.run(tb, &["sign", &image, "--key", key, "--key-id", &actual]);
    assert_multi_signed(tb, &seed, &o);
}

#[test]
fn reconcile_secrets_dir_files_are_bounded_and_nothing_is_published_past_the_bound() {
    let tb = Testbed::get();
    let (seed, cli, dir, file) = reconcile_setup(tb, "cli-reconcile-secrets-dir");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(secrets.join("hub")).unwrap();
    write(
        &file,
        &resource(&seed, tb, "[multi]", "5m").replace(
            "registry: {ca:",
            "registry: {credentialsSecretRef: {name: hub}, ca:",
        ),
    );
    let args = [
        "reconcile",
        "-f",
        file.to_str().unwrap(),
        "--secrets-dir",
        secrets.to_str().unwrap(),
    ];
    // A docker config one byte over its bound: refused by name, before anything is published.
    let config = secrets.join("hub/.dockerconfigjson");
    let mut big = b"{\"auths\":{}}".to_vec();
    big.resize((4 << 20) + 1, b' ');
    std::fs::write(&config, &big).unwrap();
    let o = cli.run(tb, &args);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    let status = std::fs::read_to_string(dir.path().join("app.yaml.status.yaml")).unwrap();
    assert!(status.contains("reason: SecretInvalid"), "{status}");
    assert!(
        status.contains("--secrets-dir file for Secret ci/hub")
            && status.contains("is larger than 4194304 bytes"),
        "{status}"
    );
    assert!(
        !notary_list(tb, &seed.gun, "targets/releases").contains_key("multi"),
        "nothing published"
    );

    // Within the bound the folder's Secret is used and the tag is signed.
    std::fs::write(&config, b"{\"auths\":{}}\n").unwrap();
    let o = cli.run(tb, &args);
    assert_multi_signed(tb, &seed, &o);
}

#[test]
fn reconcile_file_with_a_hostile_key_still_reconciles_the_other_resource() {
    let tb = Testbed::get();
    let seed = tb.seed("cli-reconcile-hostile");
    let mut cli = Cli::new(&seed);
    cli.passphrase = None;
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("two.yaml");
    let good = resource(&seed, tb, "[multi]", "5m");
    let hostile_key = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_input/keys/scrypt-n-2p32.pem"),
    )
    .unwrap();
    let bad = good
        .replace("name: app,", "name: hostile,")
        .replace("name: signer}", "name: hostile-signer}")
        .replace(
            "metadata: {name: signer, namespace: ci}",
            "metadata: {name: hostile-signer, namespace: ci}",
        )
        .replace(
            &format!(
                "key.pem: {}",
                b64(&std::fs::read(seed.var("DELEGATION_KEY")).unwrap())
            ),
            &format!("key.pem: {}", b64(&hostile_key)),
        );
    // The ConfigMap is in the first document only.
    let bad = bad
        .split("\n---\napiVersion: v1\nkind: ConfigMap")
        .next()
        .unwrap();
    write(&file, &format!("{bad}\n---\n{good}"));
    let t = std::time::Instant::now();
    let o = cli.run(tb, &["reconcile", "-f", file.to_str().unwrap()]);
    let elapsed = t.elapsed();
    eprintln!("reconcile -f, a hostile key beside a good resource: {elapsed:?}");
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(elapsed < std::time::Duration::from_secs(20), "{elapsed:?}");
    assert_eq!(
        notary_list(tb, &seed.gun, "targets/releases")["multi"],
        digest(&seed, "multi"),
        "the good resource signed"
    );
    let status = std::fs::read_to_string(dir.path().join("two.yaml.status.yaml")).unwrap();
    assert!(status.contains("reason: Signed"), "{status}");
    assert!(status.contains("reason: BadKey"), "{status}");
    assert!(status.contains("scrypt with N=4294967296"), "{status}");
}

#[test]
fn key_id_in_the_certificate_form_a_role_lists_is_accepted() {
    let tb = Testbed::get();
    let seed = tb.seed("cli-key-id-cert");
    let cli = Cli::new(&seed);
    let key = seed.var("DELEGATION_KEY");
    let dir = tempfile::tempdir().unwrap();
    // The delegation key as a certificate: openssl reads the PEM without notary's headers.
    let stripped: String = std::fs::read_to_string(key)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("-----") || !(l.is_empty() || l.contains(": ")))
        .map(|l| format!("{l}\n"))
        .collect();
    let enc = dir.path().join("enc.pem");
    let plain = dir.path().join("plain.pem");
    let cert = dir.path().join("cert.pem");
    write(&enc, &stripped);
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl").args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let pass = format!("file:{}", seed.var("DELEGATION_PASSPHRASE_FILE"));
    openssl(&[
        "pkey",
        "-in",
        enc.to_str().unwrap(),
        "-passin",
        &pass,
        "-out",
        plain.to_str().unwrap(),
    ]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        plain.to_str().unwrap(),
        "-subj",
        "/CN=delegation-certs",
        "-days",
        "30",
        "-out",
        cert.to_str().unwrap(),
    ]);
    for args in [
        &[
            "delegation",
            "add",
            &seed.gun,
            "targets/certs",
            cert.to_str().unwrap(),
            "--all-paths",
        ][..],
        &["publish", &seed.gun][..],
    ] {
        let o = tb.notary(args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let cert_id = trustkeeper::notary::PublicKey::from_pem(&std::fs::read(&cert).unwrap())
        .unwrap()
        .key_id();
    let plain_id = key_id_of(tb, &cli, key);
    assert_ne!(cert_id, plain_id);
    let image = format!("{}:multi", seed.gun);
    let o = cli.run(
        tb,
        &[
            "sign",
            &image,
            "--key",
            key,
            "--role",
            "targets/releases",
            "--role",
            "targets/certs",
            "--key-id",
            &cert_id,
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(
        notary_list(tb, &seed.gun, "targets/certs")["multi"],
        digest(&seed, "multi")
    );
    // A mismatch names the certificate form too.
    let other = "cd".repeat(32);
    let o = cli.run(
        tb,
        &[
            "witness",
            &seed.gun,
            "--key",
            key,
            "--role",
            "targets/certs",
            "--key-id",
            &other,
        ],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&plain_id) && err.contains(&cert_id) && err.contains(&other),
        "{err}"
    );
}

/// A delegation whose key is ECDSA P-384, signed by the Go client (which signs P-384 over
/// SHA-256): trustkeeper verifies it as the Go client does.
#[test]
fn a_p384_delegation_signed_by_the_go_client_verifies() {
    let tb = Testbed::get();
    let seed = tb.seed("cli-p384");
    let cli = Cli::new(&seed);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl").args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    openssl(&[
        "ecparam",
        "-name",
        "secp384r1",
        "-genkey",
        "-noout",
        "-out",
        &p("sec1.pem"),
    ]);
    openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        &p("sec1.pem"),
        "-out",
        &p("p384.pem"),
    ]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        &p("p384.pem"),
        "-subj",
        "/CN=p384",
        "-days",
        "30",
        "-sha256",
        "-out",
        &p("p384.crt"),
    ]);
    // The Go client on a copy of the shared trust directory: the imported key stays here.
    let trust = p("trust");
    let cp = Command::new("cp")
        .args(["-r", tb.var("NOTARY_CLIENT_TRUST_DIR"), &trust])
        .status()
        .unwrap();
    assert!(cp.success());
    let go = |args: &[&str]| {
        let o = Command::new(tb.var("NOTARY_CLIENT"))
            .args(args)
            .env("TESTBED_TRUST_DIR", &trust)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "notary {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let gun = seed.gun.as_str();
    go(&[
        "delegation",
        "add",
        gun,
        "targets/p384",
        &p("p384.crt"),
        "--all-paths",
    ]);
    go(&["publish", gun]);
    go(&[
        "key",
        "import",
        &p("p384.pem"),
        "--role",
        "targets/p384",
        "-g",
        gun,
    ]);
    go(&[
        "addhash",
        gun,
        "p384-tag",
        "3",
        "--sha256",
        &"ab".repeat(32),
        "-r",
        "targets/p384",
    ]);
    go(&["publish", gun]);
    let o = cli.run(tb, &["inspect", gun, "-o", "json"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let role = v["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "targets/p384")
        .unwrap_or_else(|| panic!("no targets/p384 in {v}"));
    assert_eq!(role["state"], "valid", "{role}");
}

/// `inspect --check` for CI and cron: 0 on a fresh repository, 3 when a role is inside the
/// notary client's 6-month warning window, 1 when one has expired (also a delegation, which
/// plain `inspect` reports with exit 0), each role named on stderr with its expiry; the report
/// is printed first either way.
#[test]
fn inspect_check_exit_codes() {
    let tb = Testbed::get();
    let seed = tb.seed("cli-check");
    let cli = Cli::new(&seed);
    let gun = seed.gun.as_str();
    let dir = tb.dir.to_str().unwrap();
    // The expiry `inspect` reports for `role`, to the second (as stderr prints it).
    let expiry = |role: &str| {
        let o = cli.run(tb, &["inspect", gun, "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let r = v["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == role)
            .unwrap()
            .clone();
        let t: jiff::Timestamp = r["expires"].as_str().unwrap().parse().unwrap();
        (
            r["state"].as_str().unwrap().to_string(),
            jiff::Timestamp::from_second(t.as_second())
                .unwrap()
                .to_string(),
        )
    };

    let o = cli.run(tb, &["inspect", gun, "--check"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "fresh: {out}\n{err}");
    assert!(
        out.contains("targets/releases"),
        "the report is printed: {out}"
    );

    tb.run(&["age", dir, gun, "targets/releases", "+30d"]);
    let (state, at) = expiry("targets/releases");
    assert_eq!(state, "expiring");
    for args in [
        &["inspect", gun, "--check"][..],
        &["inspect", gun, "--check", "-o", "json"][..],
    ] {
        let o = cli.run(tb, args);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {out}\n{err}");
        assert!(
            err.contains(&format!(
                "expiring within 6 months, where the notary client warns: targets/releases at {at}"
            )),
            "{err}"
        );
        assert!(!err.contains("expired:"), "{err}");
        if args.contains(&"json") {
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert!(v["roles"].is_array(), "{out}");
        }
    }

    tb.run(&["age", dir, gun, "targets/releases", "-1d"]);
    let (state, at) = expiry("targets/releases");
    assert_eq!(state, "expired");
    let plain = cli.run(tb, &["inspect", gun]);
    assert_eq!(
        plain.status.code(),
        Some(0),
        "an expired delegation alone leaves the repository readable: {:?}",
        text(&plain)
    );
    let o = cli.run(tb, &["inspect", gun, "--check"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(
        err.contains(&format!("expired: targets/releases at {at}")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "`trustkeeper witness {gun} --key <key> --role ROLE`"
        )),
        "{err}"
    );

    // The delegation key renews it: 0 again.
    let o = cli.run(tb, &["witness", gun, "--key", seed.var("DELEGATION_KEY")]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = cli.run(tb, &["inspect", gun, "--check"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));

    // An expired `targets`: 1, the role named, and why readers refuse the repository.
    tb.run(&["age", dir, gun, "targets", "-1d"]);
    let (_, at) = expiry("targets");
    let o = cli.run(tb, &["inspect", gun, "--check"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains(&format!("expired: targets at {at}")), "{err}");
    assert!(
        err.contains("`docker pull` and the notary client refuse"),
        "{err}"
    );
}
