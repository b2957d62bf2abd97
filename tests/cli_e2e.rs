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
            1,
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
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert_eq!(
        notary_list(tb, &seed.gun, "targets/releases")["multi"],
        digest(&seed, "multi")
    );
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
    let seed = tb.seed("cli-reconcile");
    let mut cli = Cli::new(&seed);
    cli.passphrase = None; // it comes from the Secret in the file
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("app.yaml");
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
    let seed = tb.seed("cli-watch");
    let mut cli = Cli::new(&seed);
    cli.passphrase = None;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.yaml");
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
