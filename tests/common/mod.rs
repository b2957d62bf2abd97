//! Shared support for integration tests that run against the real testbed
//! (`tests/support/testbed.sh`: notary-server, notary-signer, docker registries, Go client).
//!
//! `scripts/test.sh` starts the testbeds and exports their directories:
//! - `TRUSTKEEPER_TESTBED`: plain mode (anonymous registry + basic-auth registry)
//! - `TRUSTKEEPER_TESTBED_TOKEN`: `up --token` mode (Docker-style bearer tokens)
#![allow(dead_code)]

pub mod admin;
pub mod delay_proxy;
pub mod images;
pub mod loopback;
pub mod notation;
pub mod vectors;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Testbed {
    pub dir: PathBuf,
    pub env: HashMap<String, String>,
}

/// A GUN seeded by the real Go client (`testbed.sh seed`), with the values it recorded.
pub struct Seed {
    pub gun: String,
    pub repository: String,
    pub vars: HashMap<String, String>,
    pub dir: PathBuf,
}

pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/testbed.sh")
}

/// Parses a shell file of `NAME='value'` / `NAME=value` lines (the testbed's `env`, `seed.env`).
pub fn parse_env_file(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .or_else(|| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
                .unwrap_or(v);
            out.insert(k.trim().to_string(), v.to_string());
        }
    }
    out
}

fn load(var: &str) -> Testbed {
    let dir = std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: integration tests need the real testbed. Run `scripts/test.sh`, \
             or start one with `tests/support/testbed.sh up DIR` and export {var}=DIR"
        )
    });
    let dir = PathBuf::from(dir);
    let env = parse_env_file(&dir.join("env"));
    Testbed { dir, env }
}

impl Testbed {
    /// The plain-mode testbed (anonymous registry, basic-auth registry, notary without auth).
    pub fn get() -> &'static Testbed {
        static TB: OnceLock<Testbed> = OnceLock::new();
        TB.get_or_init(|| load("TRUSTKEEPER_TESTBED"))
    }

    /// The token-mode testbed (`up --token`).
    pub fn token() -> &'static Testbed {
        static TB: OnceLock<Testbed> = OnceLock::new();
        TB.get_or_init(|| load("TRUSTKEEPER_TESTBED_TOKEN"))
    }

    pub fn var(&self, name: &str) -> &str {
        self.env
            .get(name)
            .unwrap_or_else(|| panic!("testbed env has no {name}"))
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.var("CA_CERT")).expect("read CA_CERT")
    }

    /// A GUN name unique to this process and call, under the main registry.
    pub fn unique_gun(&self, name: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        format!(
            "{}/test/{name}-{}-{n}-{nanos:x}",
            self.var("REGISTRY_HOST"),
            std::process::id()
        )
    }

    /// Runs `testbed.sh ARGS...` against this testbed, panicking with its output on failure.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("bash")
            .arg(script())
            .args(args)
            .output()
            .expect("run testbed.sh");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "testbed.sh {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Seeds a fresh GUN with the real Go client: images pushed, `targets`, `targets/releases`
    /// and `targets/ci-bot` signed, snapshot key on the server.
    pub fn seed(&self, name: &str) -> Seed {
        self.seed_gun(&self.unique_gun(name))
    }

    /// Seeds `gun` (which may name another host, e.g. a proxy in front of the registry: the
    /// images go to the testbed registry under the GUN's repository path).
    pub fn seed_gun(&self, gun: &str) -> Seed {
        let gun = gun.to_string();
        let dir = self.dir.to_str().unwrap().to_string();
        {
            // `seed` edits the testbed's shared trust dir: parallel seeds race (a key file
            // vanishes under `sed`), so tests in one process seed one at a time.
            static SEED_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _guard = SEED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            self.run(&["seed", &dir, &gun]);
        }
        let safe: String = gun
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let seed_dir = self.dir.join("seed").join(safe);
        let vars = parse_env_file(&seed_dir.join("seed.env"));
        let repository = vars.get("REPOSITORY").cloned().unwrap_or_default();
        Seed {
            gun,
            repository,
            vars,
            dir: seed_dir,
        }
    }

    /// Runs the real notary Go client (the testbed's configured wrapper).
    pub fn notary(&self, args: &[&str]) -> std::process::Output {
        Command::new(self.var("NOTARY_CLIENT"))
            .args(args)
            .output()
            .expect("run notary client")
    }

    /// The Go client as another writer: `addhash NAME 3 --sha256 SHA -r ROLE` and `publish`.
    pub fn go_publish_target(&self, gun: &str, name: &str, sha256_hex: &str, role: &str) {
        for args in [
            &[
                "addhash", gun, name, "3", "--sha256", sha256_hex, "-r", role,
            ][..],
            &["publish", gun][..],
        ] {
            let out = self.notary(args);
            assert!(
                out.status.success(),
                "notary {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

impl Seed {
    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("seed.env has no {name}"))
    }

    pub fn manifest(&self, tag: &str) -> Vec<u8> {
        std::fs::read(self.dir.join("manifests").join(tag)).expect("read seeded manifest")
    }
}

impl Testbed {
    /// Pushes manifest bytes under `tag` of `repository` on the anonymous registry (the blobs
    /// must exist already, e.g. by pushing a seeded tag's manifest under a new name).
    pub async fn push_manifest(
        &self,
        repository: &str,
        tag: &str,
        manifest: &[u8],
        media_type: &str,
    ) {
        trustkeeper::tls::install_crypto_provider();
        let certs = reqwest::Certificate::from_pem_bundle(&self.ca_pem()).unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_merge(certs)
            .build()
            .unwrap();
        let url = format!(
            "{}/v2/{repository}/manifests/{tag}",
            self.var("REGISTRY_URL")
        );
        let r = http
            .put(&url)
            .header("Content-Type", media_type)
            .body(manifest.to_vec())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "PUT {url}: {}", r.status());
    }

    /// Points `tag` at the manifest of the seeded tag `from` (a new or moved tag).
    pub async fn retag(&self, seed: &Seed, from: &str, tag: &str) {
        let up = from.to_uppercase().replace('-', "_");
        self.push_manifest(
            &seed.repository,
            tag,
            &seed.manifest(from),
            seed.var(&format!("TAG_{up}_MEDIATYPE")),
        )
        .await;
    }
}

/// The Ready condition's (status, reason, message) of an engine outcome.
pub fn ready(o: &trustkeeper::engine::Outcome) -> (String, String, String) {
    let c = o
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready condition");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// One row of `notary list`: the digest, size and role the Go client resolves a tag to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub sha256: String,
    pub size: u64,
    pub role: String,
}

impl Testbed {
    /// `notary list GUN [-r ROLE]` by the real Go client, as tag → row.
    pub fn notary_list(
        &self,
        gun: &str,
        role: Option<&str>,
    ) -> std::collections::BTreeMap<String, Listed> {
        let mut args = vec!["list", gun];
        if let Some(r) = role {
            args.extend(["-r", r]);
        }
        let out = self.notary(&args);
        assert!(
            out.status.success(),
            "notary list {gun} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(2)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 4).then(|| {
                    let row = Listed {
                        sha256: f[1].to_string(),
                        size: f[2].parse().unwrap(),
                        role: f[3].to_string(),
                    };
                    (f[0].to_string(), row)
                })
            })
            .collect()
    }

    /// `notary list` as tag → sha256 hex.
    pub fn notary_digests(
        &self,
        gun: &str,
        role: Option<&str>,
    ) -> std::collections::BTreeMap<String, String> {
        self.notary_list(gun, role)
            .into_iter()
            .map(|(t, r)| (t, r.sha256))
            .collect()
    }
}

impl Seed {
    /// The sha256 hex the seed recorded for one of its tags.
    pub fn digest(&self, tag: &str) -> String {
        let up = tag.to_uppercase().replace('-', "_");
        self.var(&format!("TAG_{up}_DIGEST"))
            .trim_start_matches("sha256:")
            .to_string()
    }
}

/// One engine run of `spec` under the request id `id`, with `engine`'s settings.
pub async fn run_engine_as(
    engine: trustkeeper::engine::Engine,
    id: &str,
    spec: &trustkeeper::api::SignedImageSpec,
    creds: trustkeeper::engine::RunSecrets,
    prev: Option<&trustkeeper::api::SignedImageStatus>,
) -> trustkeeper::engine::Outcome {
    trustkeeper::tls::install_crypto_provider();
    engine
        .run(trustkeeper::engine::ReconcileRequest {
            id,
            spec,
            generation: Some(1),
            previous: prev,
            credentials: creds,
            pinned: Default::default(),
        })
        .await
}

/// The run credentials of a signer with the key PEM in the file `key` and its passphrase in the
/// file `pass_file`, trusting the testbed CA for both the registry and the notary.
pub fn key_file_creds(
    tb: &Testbed,
    key: impl AsRef<Path>,
    pass_file: impl AsRef<Path>,
) -> trustkeeper::engine::RunSecrets {
    let ca = tb.ca_pem();
    trustkeeper::engine::RunSecrets {
        signing_key_pem: zeroize::Zeroizing::new(std::fs::read(key).unwrap()),
        passphrase: Some(secrecy::SecretString::from(
            std::fs::read_to_string(pass_file)
                .unwrap()
                .trim()
                .to_string(),
        )),
        registry_auth: None,
        registry_ca: Some(ca.clone()),
        notary_auth: None,
        notary_ca: Some(ca),
        notation_chain_pem: None,
    }
}

/// The run credentials of the delegation key that the Go client seeded `seed` with.
pub fn seed_creds(tb: &Testbed, seed: &Seed) -> trustkeeper::engine::RunSecrets {
    key_file_creds(
        tb,
        seed.var("DELEGATION_KEY"),
        seed.var("DELEGATION_PASSPHRASE_FILE"),
    )
}

/// The version of the timestamp the real notary server serves for `gun`: every publish raises it.
pub async fn timestamp_version(tb: &Testbed, gun: &str) -> u64 {
    trustkeeper::tls::install_crypto_provider();
    let http = reqwest::Client::builder()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&tb.ca_pem()).unwrap())
        .build()
        .unwrap();
    let url = format!(
        "{}/v2/{gun}/_trust/tuf/timestamp.json",
        tb.var("NOTARY_URL")
    );
    let v: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
    v["signed"]["version"].as_u64().unwrap()
}

/// A notary client of the testbed's server at `url`, trusting the testbed CA.
pub fn notary_client_at(tb: &Testbed, url: &str) -> trustkeeper::notary::NotaryClient {
    trustkeeper::tls::install_crypto_provider();
    trustkeeper::notary::NotaryClient::new(trustkeeper::notary::ServerConfig {
        url: url.to_string(),
        ca_pem: Some(tb.ca_pem()),
        ca_only: false,
        auth: Default::default(),
        timeout: std::time::Duration::from_secs(20),
        max_metadata_bytes: trustkeeper::notary::client::DEFAULT_MAX_METADATA_BYTES,
    })
    .unwrap()
}

/// Spawns `cmd` with piped standard streams, writes `stdin` to it and waits for its output.
pub fn output_with_stdin(cmd: &mut Command, stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// Finishes a `trustkeeper` child command: no inherited root key ID or log settings, `HOME` in
/// `trust_dir`, then `env` on top; runs it and returns its output.
pub fn cli_output(c: &mut Command, trust_dir: &Path, env: &[(&str, &str)]) -> std::process::Output {
    c.env_remove("TRUSTKEEPER_ROOT_KEY_ID")
        .env_remove("RUST_LOG")
        .env_remove("TRUSTKEEPER_LOG")
        .env("HOME", trust_dir);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// A child's standard error, as text.
pub fn stderr_text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
