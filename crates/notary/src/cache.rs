//! Metadata already verified, so that it is not downloaded again.
//!
//! Notary serves snapshot and targets roles by hash (`targets/releases.<sha256>.json`): a file
//! known under that name needs no second download, and the name itself proves the content
//! (checked on every hit). The verified root stands in for `GET root.json` when the caller's
//! trusted state names its version (see [`Fetch::cached_root`]). With both, an update of an
//! unchanged repository costs one request: `timestamp.json`.
//!
//! # Caching layers
//! Four, each a value its owner holds and passes in (none is process-wide):
//! - [`SignatureMemo`]: digests of signatures found valid, and the record of those checked
//!   since its owner asked for one; held by the [`MetadataCache`]; at most
//!   [`MEMO_MAX`](super::memo::MEMO_MAX) of each, the set cleared when full.
//! - [`MetadataCache`]: each GUN's verified current [`Files`] between runs; owned by the engine
//!   (shared by its clones); at most `max_guns` GUNs, each read within one update's metadata
//!   budget.
//! - [`CachedFetch`]: one run's files of one GUN, seeded from the `MetadataCache`; owned by the
//!   run; what the run's updates read (each within the budget) and published.
//! - the trust directory (`cli::trust_dir`): the `Files` and memo entries the CLI keeps on disk
//!   between processes; owned by the command's trust directory; the last verified files and at
//!   most `MEMO_MAX` memo entries.
//!
//! The memo's record was a second process-wide set before the memo became a value; it is now
//! part of the memo (one lock per signature checked, not two).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::client::{Fetch, Repository};
use super::edit::SignedFile;
use super::error::Result;
use super::memo::SignatureMemo;

/// The verified files of one GUN: its root and hash-named role files.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Files {
    /// `root.json` as last verified.
    pub root: Option<Vec<u8>>,
    /// `<role>.<sha256>.json` → bytes (snapshot, targets, delegations).
    pub hashed: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("root", &self.root.as_ref().map(Vec::len))
            .field("hashed", &self.hashed.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Files {
    /// Exactly the files of a verified repository (older versions are dropped).
    pub fn of(repo: &Repository) -> Files {
        let mut hashed = BTreeMap::new();
        let snap = repo.snapshot_file();
        hashed.insert(hash_name("snapshot", snap), snap.to_vec());
        for r in repo.roles() {
            hashed.insert(hash_name(&r.name, r.file_bytes()), r.file_bytes().to_vec());
        }
        Files {
            root: Some(repo.root_file().to_vec()),
            hashed,
        }
    }

    /// Total bytes held.
    pub fn size(&self) -> usize {
        self.root.as_ref().map_or(0, Vec::len) + self.hashed.values().map(Vec::len).sum::<usize>()
    }
}

/// Whether `name` is a hash-named role file (`<role>.<64 hex>.json`); the role may contain `/`.
pub fn is_hash_name(name: &str) -> bool {
    hash_of(name).is_some()
}

/// The sha256 in a `<role>.<sha256>.json` name.
fn hash_of(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".json")?;
    let (_, hex) = stem.rsplit_once('.')?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// The name notary serves `bytes` of `role` under: `<role>.<sha256>.json`.
pub fn hash_name(role: &str, bytes: &[u8]) -> String {
    format!("{role}.{}.json", hex::encode(Sha256::digest(bytes)))
}

/// The role of a hash name (`targets/releases` of `targets/releases.<sha256>.json`).
pub fn role_of_hash_name(name: &str) -> Option<&str> {
    hash_of(name)?;
    name.get(..name.len() - ".".len() - 64 - ".json".len())
}

/// The current files of many GUNs, shared by clones (one per process). Bounded: past
/// `max_guns` entries an arbitrary one is dropped (it is only a cache). Holds the signature
/// memo of its owner's updates too.
#[derive(Clone)]
pub struct MetadataCache {
    entries: Arc<Mutex<HashMap<(String, String), Files>>>,
    max_guns: usize,
    memo: SignatureMemo,
}

impl Default for MetadataCache {
    fn default() -> Self {
        MetadataCache::new(20_000)
    }
}

impl std::fmt::Debug for MetadataCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.lock().map_or(0, |e| e.len());
        write!(f, "MetadataCache({n} GUNs)")
    }
}

impl MetadataCache {
    pub fn new(max_guns: usize) -> Self {
        MetadataCache {
            entries: Arc::default(),
            max_guns: max_guns.max(1),
            memo: SignatureMemo::default(),
        }
    }

    /// The signature memo the owner's updates go through (shared by clones).
    pub fn memo(&self) -> &SignatureMemo {
        &self.memo
    }

    /// The files kept for `gun` on `server` (empty if none).
    pub fn get(&self, server: &str, gun: &str) -> Files {
        self.entries
            .lock()
            .expect("cache lock")
            .get(&(server.to_string(), gun.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces the files kept for `gun` on `server`.
    pub fn put(&self, server: &str, gun: &str, files: Files) {
        let mut e = self.entries.lock().expect("cache lock");
        let key = (server.to_string(), gun.to_string());
        if !e.contains_key(&key)
            && e.len() >= self.max_guns
            && let Some(k) = e.keys().next().cloned()
        {
            e.remove(&k);
        }
        e.insert(key, files);
    }

    /// GUNs held and their total bytes.
    pub fn stats(&self) -> (usize, usize) {
        let e = self.entries.lock().expect("cache lock");
        (e.len(), e.values().map(Files::size).sum())
    }
}

/// `fetch` through the files of one run for one GUN, seeded from what earlier runs verified.
pub struct CachedFetch<'a, F> {
    inner: &'a F,
    files: Mutex<Files>,
}

impl<'a, F: Fetch + Sync> CachedFetch<'a, F> {
    pub fn new(inner: &'a F) -> Self {
        CachedFetch::with_files(inner, Files::default())
    }

    pub fn with_files(inner: &'a F, files: Files) -> Self {
        CachedFetch {
            inner,
            files: Mutex::new(files),
        }
    }

    /// Remembers a role's file bytes under its hash name.
    pub fn insert(&self, role: &str, bytes: Vec<u8>) {
        self.files
            .lock()
            .expect("cache lock")
            .hashed
            .insert(hash_name(role, &bytes), bytes);
    }

    /// Remembers the files of a verified repository, its root included.
    pub fn remember(&self, repo: &Repository) {
        let mut f = self.files.lock().expect("cache lock");
        let current = Files::of(repo);
        f.root = current.root;
        f.hashed.extend(current.hashed);
    }

    /// Remembers what was just published.
    pub fn remember_published(&self, files: &[SignedFile]) {
        for f in files {
            self.insert(&f.role, f.bytes.clone());
        }
    }
}

impl<F: Fetch + Sync> Fetch for CachedFetch<'_, F> {
    async fn fetch(&self, gun: &str, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        if let Some(hex) = hash_of(name) {
            let hit = self
                .files
                .lock()
                .expect("cache lock")
                .hashed
                .get(name)
                .cloned();
            if let Some(bytes) = hit
                && hex::encode(Sha256::digest(&bytes)).eq_ignore_ascii_case(hex)
                && bytes.len() as u64 <= limit
            {
                return Ok(Some(bytes));
            }
        }
        let got = self.inner.fetch(gun, name, limit).await?;
        if let (Some(bytes), Some(_)) = (&got, hash_of(name)) {
            self.files
                .lock()
                .expect("cache lock")
                .hashed
                .insert(name.to_string(), bytes.clone());
        }
        Ok(got)
    }

    fn cached_root(&self, _gun: &str) -> Option<Vec<u8>> {
        self.files.lock().expect("cache lock").root.clone()
    }

    fn max_metadata_bytes(&self) -> u64 {
        self.inner.max_metadata_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize);

    impl Fetch for Counting {
        async fn fetch(&self, _gun: &str, name: &str, _limit: u64) -> Result<Option<Vec<u8>>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Some(format!("served {name}").into_bytes()))
        }
    }

    #[tokio::test]
    async fn hash_named_files_are_served_once_and_checked() {
        let src = Counting(AtomicUsize::new(0));
        let cache = CachedFetch::new(&src);
        cache.insert("targets", b"abc".to_vec());
        let name = hash_name("targets", b"abc");
        assert_eq!(cache.fetch("g", &name, 100).await.unwrap().unwrap(), b"abc");
        assert_eq!(src.0.load(Ordering::SeqCst), 0, "a hit needs no request");
        // Mutable names always go to the server.
        cache.fetch("g", "timestamp.json", 100).await.unwrap();
        cache.fetch("g", "timestamp.json", 100).await.unwrap();
        assert_eq!(src.0.load(Ordering::SeqCst), 2);
        // A cached entry whose bytes do not hash to its name is never served.
        let bogus = format!("targets.{}.json", "0".repeat(64));
        cache
            .files
            .lock()
            .unwrap()
            .hashed
            .insert(bogus.clone(), b"xyz".to_vec());
        assert_eq!(
            cache.fetch("g", &bogus, 100).await.unwrap().unwrap(),
            format!("served {bogus}").as_bytes()
        );
        assert_eq!(src.0.load(Ordering::SeqCst), 3);
    }
}
