//! Helpers shared by the reliability tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use trustkeeper::api::{SignedImageSpec, SignedImageStatus};
use trustkeeper::engine::{Engine, Outcome, RunSecrets};

pub use crate::common::ready;
use crate::common::{Seed, Testbed};

/// A line for the CI log: written straight to stderr, past libtest's output capture.
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "reliability: {line}");
}

/// `notary list GUN [-r ROLE]` by the real Go client, as tag → sha256 hex.
pub fn notary_list(tb: &Testbed, gun: &str, role: Option<&str>) -> BTreeMap<String, String> {
    tb.notary_digests(gun, role)
}

/// The sha256 hex the seed recorded for one of its tags.
pub fn digest(seed: &Seed, tag: &str) -> String {
    seed.digest(tag)
}

pub fn passphrase(seed: &Seed) -> String {
    std::fs::read_to_string(seed.var("DELEGATION_PASSPHRASE_FILE"))
        .unwrap()
        .trim()
        .to_string()
}

pub fn spec(gun: &str, notary_url: &str, tags: &[&str]) -> SignedImageSpec {
    let yaml = format!(
        "image: {gun}\ntags: {tags:?}\nroles: [targets/releases]\nsigningKey: {{secretRef: {{name: k}}}}\nnotary: {{url: {notary_url:?}}}\nrenewBefore: 4560h\n",
    );
    serde_saphyr::from_str(&yaml).unwrap()
}

pub use crate::common::seed_creds as creds;

pub async fn run_engine(
    timeout: Duration,
    spec: &SignedImageSpec,
    creds: RunSecrets,
    prev: Option<&SignedImageStatus>,
) -> Outcome {
    let engine = Engine {
        timeout,
        ..Engine::default()
    };
    crate::common::run_engine_as(engine, "reliability", spec, creds, prev).await
}

/// Role versions in a status.
pub fn role_versions(o: &Outcome) -> BTreeMap<String, u64> {
    o.status
        .roles
        .iter()
        .map(|r| (r.name.clone(), r.version))
        .collect()
}

/// The `trustkeeper` binary with a private trust dir and HOME, the testbed CA and notary URL.
pub struct Cli {
    pub home: tempfile::TempDir,
    pub passphrase: Option<String>,
    pub extra_env: Vec<(String, String)>,
}

impl Cli {
    pub fn new(passphrase: Option<String>) -> Cli {
        Cli {
            home: tempfile::tempdir().unwrap(),
            passphrase,
            extra_env: vec![],
        }
    }

    pub fn trust_dir(&self) -> std::path::PathBuf {
        self.home.path().join("trust")
    }

    pub fn command(&self, tb: &Testbed, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_trustkeeper"));
        c.args(args)
            .env("TRUSTKEEPER_TRUST_DIR", self.trust_dir())
            .env("TRUSTKEEPER_CA_FILE", tb.var("CA_CERT"))
            .env("TRUSTKEEPER_NOTARY_URL", tb.var("NOTARY_URL"))
            .env_remove("TRUSTKEEPER_DOCKER_CONFIG")
            .env_remove("TRUSTKEEPER_PASSPHRASE")
            .env_remove("TRUSTKEEPER_PASSPHRASE_FILE")
            .env_remove("NOTARY_AUTH")
            .env_remove("RUST_LOG")
            .env_remove("TRUSTKEEPER_LOG")
            .env("HOME", self.home.path());
        if let Some(p) = &self.passphrase {
            c.env("TRUSTKEEPER_PASSPHRASE", p);
        }
        for (k, v) in &self.extra_env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, tb: &Testbed, args: &[&str]) -> std::process::Output {
        self.command(tb, args).output().unwrap()
    }
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A SignedImage resource with its Secret (key, passphrase, CA), as `reconcile -f` reads it.
pub fn resource(tb: &Testbed, seed: &Seed, tags: &str) -> String {
    let key = std::fs::read(seed.var("DELEGATION_KEY")).unwrap();
    let pass = std::fs::read(seed.var("DELEGATION_PASSPHRASE_FILE")).unwrap();
    let ca = std::fs::read(tb.var("CA_CERT")).unwrap();
    format!(
        "apiVersion: trustkeeper.dev/v1alpha1\nkind: SignedImage\nmetadata: {{name: app, namespace: ci}}\nspec:\n  image: {gun}\n  tags: {tags}\n  roles: [targets/releases]\n  signingKey: {{secretRef: {{name: signer}}}}\n  registry: {{ca: {{secretKeyRef: {{name: signer, key: ca.crt}}}}}}\n  notary:\n    url: {url}\n    ca: {{secretKeyRef: {{name: signer, key: ca.crt}}}}\n  interval: 5m\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: signer, namespace: ci}}\ndata:\n  key.pem: {k}\n  passphrase: {p}\n  ca.crt: {c}\n",
        gun = seed.gun,
        url = tb.var("NOTARY_URL"),
        k = b64(&key),
        p = b64(&pass),
        c = b64(&ca),
    )
}
