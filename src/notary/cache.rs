//! A content-addressed cache in front of a [`Fetch`] source. Notary serves snapshot and targets
//! roles by hash (`targets/releases.<sha256>.json`): a file already known under that name needs
//! no second download, and the name itself proves the content (checked on every hit). After a
//! publish, the read-back then costs `root.json`, `timestamp.json` and the new snapshot only.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::client::{Fetch, Repository};
use super::edit::SignedFile;
use super::error::Result;

/// `fetch` through a cache of hash-named files.
pub struct CachedFetch<'a, F> {
    inner: &'a F,
    files: Mutex<HashMap<String, Vec<u8>>>,
}

/// The sha256 in a `<role>.<sha256>.json` name.
fn hash_of(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".json")?;
    let (_, hex) = stem.rsplit_once('.')?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

fn name_for(role: &str, bytes: &[u8]) -> String {
    format!("{role}.{}.json", hex::encode(Sha256::digest(bytes)))
}

impl<'a, F: Fetch + Sync> CachedFetch<'a, F> {
    pub fn new(inner: &'a F) -> Self {
        CachedFetch {
            inner,
            files: Mutex::new(HashMap::new()),
        }
    }

    /// Remembers a role's file bytes under its hash name.
    pub fn insert(&self, role: &str, bytes: Vec<u8>) {
        self.files
            .lock()
            .expect("cache lock")
            .insert(name_for(role, &bytes), bytes);
    }

    /// Remembers every targets role file of a verified repository.
    pub fn remember(&self, repo: &Repository) {
        for r in repo.roles() {
            self.insert(&r.name, r.file_bytes().to_vec());
        }
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
            let hit = self.files.lock().expect("cache lock").get(name).cloned();
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
                .insert(name.to_string(), bytes.clone());
        }
        Ok(got)
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
        let name = name_for("targets", b"abc");
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
            .insert(bogus.clone(), b"xyz".to_vec());
        assert_eq!(
            cache.fetch("g", &bogus, 100).await.unwrap().unwrap(),
            format!("served {bogus}").as_bytes()
        );
        assert_eq!(src.0.load(Ordering::SeqCst), 3);
    }
}
