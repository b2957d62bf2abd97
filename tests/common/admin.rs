//! What the repository-administration tests share: trustkeeper with the repository key's
//! passphrase, and the Go client's and the server's view of the delegations.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use super::{Seed, Testbed};

/// A command's status and both outputs, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts that the command exited with `code` and said `needle` on standard error.
pub fn refused(o: &Output, code: i32, needle: &str) {
    assert_eq!(o.status.code(), Some(code), "{}", text(o));
    assert!(
        super::stderr_text(o).contains(needle),
        "wanted {needle:?}: {}",
        text(o)
    );
}

/// trustkeeper against the testbed with nothing of the environment that could change its
/// answer, standard input closed, and `env` on top; no passphrase in `env` may show in what it
/// answers.
pub fn bare(tb: &Testbed, trust: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trustkeeper"));
    c.args(args).stdin(std::process::Stdio::null());
    isolate(&mut c, tb, trust);
    let o = super::cli_output(&mut c, trust, env);
    for (_, v) in (env.iter()).filter(|(k, v)| k.contains("PASSPHRASE") && !v.is_empty()) {
        assert!(
            !text(&o).contains(v),
            "a passphrase in the output: {}",
            text(&o)
        );
    }
    o
}

/// trustkeeper as [`bare`], but on a terminal of its own (a pty, by util-linux `script`) that
/// `input` is typed into: its exit code and what the terminal showed (its output and the
/// echo of what was typed before it turned echo off).
pub fn on_terminal(
    tb: &Testbed,
    trust: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    input: &str,
) -> (Option<i32>, String) {
    use std::io::Write as _;
    let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
    let line: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_trustkeeper"))
        .chain(args.iter().copied())
        .map(quote)
        .collect();
    let mut c = Command::new("script");
    isolate(&mut c, tb, trust);
    c.args(["-qec", &line.join(" "), "/dev/null"])
        .env("SHELL", "/bin/sh")
        .env("HOME", trust)
        .env_remove("TRUSTKEEPER_ROOT_KEY_ID")
        .env_remove("RUST_LOG")
        .env_remove("TRUSTKEEPER_LOG")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("util-linux script");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    (o.status.code(), text(&o))
}

/// The testbed's servers and nothing of the ambient environment that could change an answer.
fn isolate(c: &mut Command, tb: &Testbed, trust: &Path) {
    c.env("TRUSTKEEPER_TRUST_DIR", trust)
        .env("TRUSTKEEPER_CA_FILE", tb.var("CA_CERT"))
        .env("TRUSTKEEPER_NOTARY_URL", tb.var("NOTARY_URL"));
    for v in [
        "TRUSTKEEPER_ROOT_PASSPHRASE",
        "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE",
        "TRUSTKEEPER_REPO_PASSPHRASE",
        "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE",
        "TRUSTKEEPER_PASSPHRASE",
        "TRUSTKEEPER_KEY_PASSPHRASE",
        "TRUSTKEEPER_KEY",
        "TRUSTKEEPER_DOCKER_CONFIG",
        "TRUSTKEEPER_DOCKER_TRUST_DIR",
        "DOCKER_CONFIG",
        "NOTARY_AUTH",
    ] {
        c.env_remove(v);
    }
}

/// [`bare`] with the seed's repository key passphrase in TRUSTKEEPER_REPO_PASSPHRASE (`env`
/// may override it).
pub fn trustkeeper(
    tb: &Testbed,
    trust: &Path,
    seed: &Seed,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let pass = std::fs::read_to_string(seed.var("TARGETS_PASSPHRASE_FILE")).unwrap();
    let mut all = vec![("TRUSTKEEPER_REPO_PASSPHRASE", pass.trim())];
    all.extend_from_slice(env);
    bare(tb, trust, args, &all)
}

/// `key generate NAME --dir DIR` with passphrase `pass`: (key file, public key file, key ID).
pub fn generate(tb: &Testbed, dir: &Path, name: &str, pass: &str) -> (String, String, String) {
    let scratch = tempfile::tempdir().unwrap();
    let o = bare(
        tb,
        scratch.path(),
        &["key", "generate", name, "--dir", dir.to_str().unwrap()],
        &[("TRUSTKEEPER_KEY_PASSPHRASE", pass)],
    );
    assert!(o.status.success(), "{}", text(&o));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(id.len(), 64, "{}", text(&o));
    let f = |ext: &str| {
        dir.join(format!("{name}.{ext}"))
            .to_str()
            .unwrap()
            .to_string()
    };
    (f("key"), f("pub"), id)
}

/// One read by a concurrent reader: when it started and ended, whether it saw what it
/// should, and its output.
pub type Read = (std::time::Instant, std::time::Instant, bool, String);

/// Runs `read` (true: it saw what it should) again and again on a thread until `stop`.
pub fn reader(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    read: impl Fn() -> (bool, String) + Send + 'static,
) -> std::thread::JoinHandle<Vec<Read>> {
    std::thread::spawn(move || {
        let mut runs = vec![];
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let t0 = std::time::Instant::now();
            let (ok, out) = read();
            runs.push((t0, std::time::Instant::now(), ok, out));
        }
        runs
    })
}

/// Prints each reader's figures against the `spans` of the writes, and asserts that at least
/// one read overlapped a write and none failed.
pub fn check_readers(
    spans: &[(std::time::Instant, std::time::Instant)],
    readers: &[(&str, Vec<Read>)],
) {
    for (who, runs) in readers {
        let overlapped = runs
            .iter()
            .filter(|(a, b, _, _)| spans.iter().any(|(t0, t1)| a < t1 && b > t0))
            .count();
        let failed: Vec<&String> = runs.iter().filter(|r| !r.2).map(|r| &r.3).collect();
        eprintln!(
            "concurrent reader {who}: {} runs, {overlapped} overlapping one of {} writes \
             ({:?} ms), {} failed",
            runs.len(),
            spans.len(),
            spans
                .iter()
                .map(|(a, b)| (*b - *a).as_millis())
                .collect::<Vec<_>>(),
            failed.len()
        );
        assert!(overlapped >= 1, "{who}: no read overlapped a write");
        assert!(failed.is_empty(), "{who}: a reader failed: {failed:?}");
    }
}

/// `notary delegation list GUN` by the Go client: role → key IDs.
pub fn go_delegations(tb: &Testbed, gun: &str) -> BTreeMap<String, Vec<String>> {
    let out = tb.notary(&["delegation", "list", gun]);
    assert!(out.status.success(), "{}", super::stderr_text(&out));
    let mut roles: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut last = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with("targets/") {
            last = line.split_whitespace().next().map(str::to_string);
            roles.entry(last.clone().unwrap()).or_default();
        }
        let ids = line
            .split_whitespace()
            .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()));
        if let Some(r) = &last {
            roles.get_mut(r).unwrap().extend(ids.map(str::to_string));
        }
    }
    roles
}

/// The version of `targets.json` the notary server serves now.
pub fn served_targets_version(tb: &Testbed, gun: &str) -> u64 {
    served_version(tb, gun, "targets")
}

/// The version of `role` the notary server serves now.
pub fn served_version(tb: &Testbed, gun: &str, role: &str) -> u64 {
    let url = format!("{}/v2/{gun}/_trust/tuf/{role}.json", tb.var("NOTARY_URL"));
    let out = Command::new("curl")
        .args(["-sf", "--cacert", tb.var("CA_CERT"), &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {url}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["signed"]["version"].as_u64().unwrap()
}

/// The Go client with a trust directory of its own (or the one given) and passphrases in
/// its environment.
pub struct GoClient {
    dir: std::path::PathBuf,
    _own: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
}

impl GoClient {
    /// A fresh trust directory, delegation keys' passphrase `pass`.
    pub fn new(pass: &str) -> GoClient {
        let own = tempfile::tempdir().unwrap();
        GoClient {
            dir: own.path().to_path_buf(),
            _own: Some(own),
            env: vec![("NOTARY_DELEGATION_PASSPHRASE".into(), pass.into())],
        }
    }

    /// The trust directory `dir` (e.g. one trustkeeper wrote keys into), with `env`.
    pub fn in_dir(dir: &Path, env: &[(&str, &str)]) -> GoClient {
        GoClient {
            dir: dir.to_path_buf(),
            _own: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Also `key`=`value` in its environment.
    pub fn with(mut self, key: &str, value: &str) -> GoClient {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn run(&self, tb: &Testbed, args: &[&str]) -> Output {
        Command::new(tb.var("NOTARY_CLIENT"))
            .args(args)
            .env("TESTBED_TRUST_DIR", &self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }

    /// `addhash GUN TAG 3 --sha256 SHA -r ROLE` (asserted) and `publish GUN` (returned).
    pub fn publish(&self, tb: &Testbed, gun: &str, tag: &str, sha: &str, role: &str) -> Output {
        let o = self.run(tb, &["addhash", gun, tag, "3", "--sha256", sha, "-r", role]);
        assert!(o.status.success(), "addhash: {}", text(&o));
        self.run(tb, &["publish", gun])
    }
}
