//! A hostile notary server on 127.0.0.1 for `tests/hostile_notary.rs`: real TUF metadata,
//! signed by keys the test makes (root, targets, snapshot and timestamp), served over HTTPS with
//! the testbed's server certificate (so that the CLI, which only speaks https to notary, can be
//! pointed at it with the testbed CA). Each file can be replaced by an endless body, announced
//! with a huge `Content-Length` or sent chunked, and every request is counted by path.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trustkeeper::notary::metadata::{FileMeta, file_bytes};
use trustkeeper::notary::{NewRepository, SigningKey, canonical};

/// What the server answers for one file name.
#[derive(Clone, Debug)]
pub enum Body {
    Bytes(Vec<u8>),
    /// Spaces without end; `Content-Length: N` announced when given, else chunked.
    Endless {
        announce: Option<u64>,
    },
}

#[derive(Default)]
struct State {
    files: HashMap<String, Body>,
    requests: HashMap<String, u32>,
}

/// The running server. Dropping it does not stop it (the test process ends it).
#[derive(Clone)]
pub struct Hostile {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Hostile {
    /// Starts on 127.0.0.1:0 with the testbed's server certificate.
    pub async fn start(cert_pem: &[u8], key_pem: &[u8]) -> Hostile {
        let (l, addr, acceptor) = crate::common::loopback::tls_listener(cert_pem, key_pem).await;
        let state: Arc<Mutex<State>> = Arc::default();
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let name = path
                        .split_once("/_trust/tuf/")
                        .map(|(_, n)| n.to_string())
                        .unwrap_or_default();
                    let body = {
                        let mut g = st.lock().unwrap();
                        *g.requests.entry(name.clone()).or_default() += 1;
                        g.files.get(&name).cloned()
                    };
                    match body {
                        None => {
                            let _ = s
                                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                                .await;
                        }
                        Some(Body::Bytes(b)) => {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                b.len()
                            )
                            .into_bytes();
                            r.extend_from_slice(&b);
                            let _ = s.write_all(&r).await;
                        }
                        Some(Body::Endless { announce }) => {
                            let head = match announce {
                                Some(n) => format!(
                                    "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
                                ),
                                None => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".into(),
                            };
                            if s.write_all(head.as_bytes()).await.is_err() {
                                return;
                            }
                            let block = vec![b' '; 64 << 10];
                            let mut chunk = format!("{:x}\r\n", block.len()).into_bytes();
                            chunk.extend_from_slice(&block);
                            chunk.extend_from_slice(b"\r\n");
                            let piece = if announce.is_some() { &block } else { &chunk };
                            // Until the client hangs up.
                            while s.write_all(piece).await.is_ok() {}
                        }
                    }
                    let _ = s.shutdown().await;
                });
            }
        });
        Hostile {
            url: format!("https://{addr}"),
            state,
        }
    }

    /// Serves `repo`'s files (replacing all earlier ones).
    pub fn serve(&self, repo: &Repo) {
        let mut g = self.state.lock().unwrap();
        g.files = repo
            .files()
            .into_iter()
            .map(|(k, v)| (k, Body::Bytes(v)))
            .collect();
    }

    /// The name the served snapshot has (`snapshot.<sha256>.json`).
    pub fn snapshot_name(&self) -> String {
        let g = self.state.lock().unwrap();
        g.files
            .keys()
            .find(|k| k.starts_with("snapshot."))
            .cloned()
            .expect("a snapshot is served")
    }

    /// The bytes served under `name`.
    pub fn bytes(&self, name: &str) -> Vec<u8> {
        match self.state.lock().unwrap().files.get(name) {
            Some(Body::Bytes(b)) => b.clone(),
            other => panic!("{name}: {other:?}"),
        }
    }

    /// Replaces what `name` answers.
    pub fn set(&self, name: &str, body: Body) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(name.to_string(), body);
    }

    pub fn remove(&self, name: &str) {
        self.state.lock().unwrap().files.remove(name);
    }

    /// Requests for `name` so far.
    pub fn requests(&self, name: &str) -> u32 {
        self.state
            .lock()
            .unwrap()
            .requests
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn sign(body: &Value, key: &SigningKey) -> Vec<u8> {
    let msg = canonical::to_vec(body).unwrap();
    file_bytes(&msg, &[key.sign(&msg, key.key_id())])
}

/// A repository made and signed by the test: root v1, targets (declaring `targets/releases`),
/// optionally `targets/releases`, snapshot and timestamp, each rebuilt by [`Repo::files`] from
/// the fields, so that a test changes a version or an announced length and gets consistently
/// signed files.
#[derive(Clone)]
pub struct Repo {
    pub gun: String,
    pub root_key: Arc<SigningKey>,
    pub targets_key: Arc<SigningKey>,
    pub snapshot_key: Arc<SigningKey>,
    pub timestamp_key: Arc<SigningKey>,
    pub releases_key: Arc<SigningKey>,
    pub root: Vec<u8>,
    pub root_key_id: String,
    pub targets_version: u64,
    pub releases_version: u64,
    pub snapshot_version: u64,
    pub timestamp_version: u64,
    /// Whether `targets/releases` has a file (the snapshot lists it either way when `list_releases`).
    pub releases_file: bool,
    pub list_releases: bool,
    /// Announced length = real length + this (a roomy length, as the Go client tolerates).
    pub extra_length: u64,
    /// Announce this snapshot length in the timestamp instead of the real one.
    pub snapshot_length: Option<u64>,
    /// Tags signed in `targets/releases` besides `v1` (to make a large, valid repository).
    pub release_tags: usize,
    pub expires: Timestamp,
}

impl Repo {
    pub fn new(gun: &str) -> Repo {
        let now = Timestamp::now();
        let root_key = SigningKey::generate_ecdsa("root", "").unwrap();
        let targets_key = SigningKey::generate_ecdsa("targets", gun).unwrap();
        let snapshot_key = SigningKey::generate_ecdsa("snapshot", gun).unwrap();
        let timestamp_key = SigningKey::generate_ecdsa("timestamp", gun).unwrap();
        let releases_key = SigningKey::generate_ecdsa("targets/releases", gun).unwrap();
        let meta = NewRepository::new(gun, &root_key, &targets_key)
            .sign(
                snapshot_key.public().clone(),
                timestamp_key.public().clone(),
                now,
            )
            .unwrap();
        Repo {
            gun: gun.into(),
            root: meta.files[0].bytes.clone(),
            root_key_id: meta.root_key_id(),
            root_key: Arc::new(root_key),
            targets_key: Arc::new(targets_key),
            snapshot_key: Arc::new(snapshot_key),
            timestamp_key: Arc::new(timestamp_key),
            releases_key: Arc::new(releases_key),
            targets_version: 1,
            releases_version: 1,
            snapshot_version: 1,
            timestamp_version: 1,
            releases_file: true,
            list_releases: true,
            extra_length: 0,
            snapshot_length: None,
            release_tags: 0,
            expires: now + SignedDuration::from_hours(24 * 30),
        }
    }

    fn meta(&self, bytes: &[u8]) -> Value {
        let mut m = FileMeta::of_file(bytes);
        m["length"] = json!(bytes.len() as u64 + self.extra_length);
        m
    }

    pub fn targets(&self) -> Vec<u8> {
        let rel = self.releases_key.public();
        let body = json!({
            "_type": "Targets",
            "delegations": {
                "keys": {rel.key_id(): rel.to_value()},
                "roles": [{"keyids": [rel.key_id()], "name": "targets/releases", "paths": [""], "threshold": 1}],
            },
            "expires": time(self.expires),
            "targets": {},
            "version": self.targets_version,
        });
        sign(&body, &self.targets_key)
    }

    pub fn releases(&self) -> Vec<u8> {
        let mut targets = serde_json::Map::new();
        targets.insert(
            "v1".into(),
            json!({"hashes": {"sha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}, "length": 0}),
        );
        for i in 0..self.release_tags {
            let sha = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                Sha256::digest(i.to_le_bytes()),
            );
            targets.insert(
                format!("build-{i}"),
                json!({"hashes": {"sha256": sha}, "length": 1000 + i}),
            );
        }
        let body = json!({
            "_type": "Targets",
            "delegations": {"keys": {}, "roles": []},
            "expires": time(self.expires),
            "targets": targets,
            "version": self.releases_version,
        });
        sign(&body, &self.releases_key)
    }

    /// The snapshot over these targets and releases files (signatures are not deterministic:
    /// each file is signed once per [`Repo::files`]).
    fn snapshot_of(&self, targets: &[u8], releases: &[u8]) -> Vec<u8> {
        let mut meta = serde_json::Map::new();
        meta.insert("root".into(), self.meta(&self.root));
        meta.insert("targets".into(), self.meta(targets));
        if self.list_releases {
            meta.insert("targets/releases".into(), self.meta(releases));
        }
        let body = json!({
            "_type": "Snapshot",
            "expires": time(self.expires),
            "meta": meta,
            "version": self.snapshot_version,
        });
        sign(&body, &self.snapshot_key)
    }

    fn timestamp_of(&self, snap: &[u8]) -> Vec<u8> {
        let mut m = self.meta(snap);
        if let Some(n) = self.snapshot_length {
            m["length"] = json!(n);
        }
        let body = json!({
            "_type": "Timestamp",
            "expires": time(self.expires),
            "meta": {"snapshot": m},
            "version": self.timestamp_version,
        });
        sign(&body, &self.timestamp_key)
    }

    /// Server names → bytes, signed consistently.
    pub fn files(&self) -> HashMap<String, Vec<u8>> {
        let mut f = HashMap::new();
        f.insert("root.json".into(), self.root.clone());
        f.insert("1.root.json".into(), self.root.clone());
        let t = self.targets();
        let r = self.releases();
        let snap = self.snapshot_of(&t, &r);
        f.insert("timestamp.json".into(), self.timestamp_of(&snap));
        f.insert(hash_name("snapshot", &snap), snap);
        f.insert(hash_name("targets", &t), t);
        if self.releases_file {
            f.insert(hash_name("targets/releases", &r), r);
        }
        f
    }
}

pub fn hash_name(role: &str, bytes: &[u8]) -> String {
    format!("{role}.{}.json", hex::encode(Sha256::digest(bytes)))
}
