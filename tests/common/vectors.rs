//! The golden vectors (`tests/vectors/notary-v1/`) served from memory as a notary server would.

use std::collections::HashMap;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use trustkeeper::notary::Error;
use trustkeeper::notary::client::Fetch;

/// Vector repositories with a timestamp, and their GUNs.
pub const REPOS: &[(&str, &str)] = &[
    ("basic-local-signer", "example.com/research/app"),
    ("html-escape-and-custom", "example.com/research/app"),
    ("remote-signer-ecdsa", "example.com/tok/app"),
    ("key-types-rsa-x509", "example.com/research/order"),
    ("delegation-paths", "example.com/vectors/paths"),
    ("target-names", "example.com/vectors/names"),
    ("canonical-upload", "example.com/vectors/canon"),
    ("witness-after-expiry", "example.com/vectors/expiry"),
    ("client-run", "example.com/vectors/wire"),
    ("independent-init", "example.com/vectors/scratch"),
];

pub fn vdir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/notary-v1")
}

/// A moment at which every vector's timestamp is still valid.
pub fn now() -> jiff::Timestamp {
    "2026-11-25T21:00:00Z".parse().unwrap()
}

/// Server names → bytes.
#[derive(Clone, Default)]
pub struct Memory {
    pub files: HashMap<String, Vec<u8>>,
}

fn role_of(file: &str) -> String {
    file.trim_end_matches(".json").replace('_', "/")
}

impl Memory {
    pub fn load(repo: &str) -> Memory {
        let dir = vdir().join("repos").join(repo);
        let mut m = Memory::default();
        let mut add = |name: &str, bytes: Vec<u8>, current: bool| {
            let (version, role) = match name.split_once('.') {
                Some((v, rest)) if v.chars().all(|c| c.is_ascii_digit()) => {
                    (Some(v.to_string()), role_of(rest))
                }
                _ => (None, role_of(name)),
            };
            let hash = hex::encode(Sha256::digest(&bytes));
            m.files.insert(format!("{role}.{hash}.json"), bytes.clone());
            if let Some(v) = version {
                m.files.insert(format!("{v}.{role}.json"), bytes.clone());
            }
            if current {
                if role == "root" {
                    let v = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["signed"]
                        ["version"]
                        .as_u64()
                        .unwrap();
                    m.files.insert(format!("{v}.root.json"), bytes.clone());
                }
                m.files.insert(format!("{role}.json"), bytes);
            }
        };
        for sub in ["history", ""] {
            let d = dir.join(sub);
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd {
                let p = e.unwrap().path();
                if p.is_file() {
                    let name = p.file_name().unwrap().to_str().unwrap().to_string();
                    add(&name, std::fs::read(&p).unwrap(), sub.is_empty());
                }
            }
        }
        m
    }

    /// Replaces the file served under `name` (and nothing else).
    pub fn put(&mut self, name: &str, bytes: Vec<u8>) {
        self.files.insert(name.to_string(), bytes);
    }

    /// The name the current snapshot/targets are served under (`role.<sha256>.json`).
    pub fn hashed_name(&self, role: &str) -> String {
        let b = &self.files[&format!("{role}.json")];
        format!("{role}.{}.json", hex::encode(Sha256::digest(b)))
    }
}

impl Fetch for Memory {
    async fn fetch(&self, _gun: &str, name: &str, limit: u64) -> Result<Option<Vec<u8>>, Error> {
        match self.files.get(name) {
            Some(b) if b.len() as u64 > limit => Err(Error::TooLarge {
                what: name.to_string(),
                limit,
            }),
            Some(b) => Ok(Some(b.clone())),
            None => Ok(None),
        }
    }
}

/// The vector repository `dir` as the client verifies it (trust on first use, at [`now`]).
pub async fn repository(dir: &str, gun: &str) -> trustkeeper::notary::Repository {
    use trustkeeper::notary::client::{TrustAnchor, update_with};
    update_with(&Memory::load(dir), gun, &TrustAnchor::FirstUse, now())
        .await
        .unwrap()
        .0
}

/// The first key of the vector key file `file`, decrypted with `pass`.
pub fn key(file: &str, pass: &str) -> trustkeeper::notary::SigningKey {
    trustkeeper::notary::SigningKey::from_pem(
        &std::fs::read(vdir().join(file)).unwrap(),
        Some(&secrecy::SecretString::from(pass.to_string())),
    )
    .unwrap()
    .remove(0)
}
