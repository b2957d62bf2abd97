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

/// trustkeeper against the testbed with the seed's repository key passphrase in
/// TRUSTKEEPER_REPO_PASSPHRASE, nothing else of the environment that could change its answer,
/// and `env` on top; the passphrase must never show in what it answers.
pub fn trustkeeper(
    tb: &Testbed,
    trust: &Path,
    seed: &Seed,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let pass = std::fs::read_to_string(seed.var("TARGETS_PASSPHRASE_FILE")).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_trustkeeper"));
    c.args(args)
        .env("TRUSTKEEPER_TRUST_DIR", trust)
        .env("TRUSTKEEPER_CA_FILE", tb.var("CA_CERT"))
        .env("TRUSTKEEPER_NOTARY_URL", tb.var("NOTARY_URL"))
        .env("TRUSTKEEPER_REPO_PASSPHRASE", pass.trim())
        .env_remove("DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE")
        .env_remove("TRUSTKEEPER_PASSPHRASE")
        .env_remove("TRUSTKEEPER_KEY_PASSPHRASE")
        .env_remove("TRUSTKEEPER_KEY")
        .env_remove("TRUSTKEEPER_DOCKER_CONFIG")
        .env_remove("TRUSTKEEPER_DOCKER_TRUST_DIR")
        .env_remove("DOCKER_CONFIG")
        .env_remove("NOTARY_AUTH");
    let o = super::cli_output(&mut c, trust, env);
    assert!(!text(&o).contains(pass.trim()), "passphrase in output");
    o
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
