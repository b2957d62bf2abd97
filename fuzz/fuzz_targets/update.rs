//! The whole TUF update (root → timestamp → snapshot → targets → delegations) over an in-memory
//! server holding the `basic-local-signer` vector repository, with one role's file replaced by
//! the input (first byte picks the role). Every outcome must be a result, never a panic; a
//! replaced file may only be accepted if it is byte-identical to the original.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use trustkeeper::notary::client::{Fetch, update_with};
use trustkeeper::notary::{Error, TrustAnchor};

const REPO: &[(&str, &[u8])] = &[
    (
        "root",
        include_bytes!("../../tests/vectors/notary-v1/repos/basic-local-signer/root.json"),
    ),
    (
        "timestamp",
        include_bytes!("../../tests/vectors/notary-v1/repos/basic-local-signer/timestamp.json"),
    ),
    (
        "snapshot",
        include_bytes!("../../tests/vectors/notary-v1/repos/basic-local-signer/snapshot.json"),
    ),
    (
        "targets",
        include_bytes!("../../tests/vectors/notary-v1/repos/basic-local-signer/targets.json"),
    ),
    (
        "targets/releases",
        include_bytes!(
            "../../tests/vectors/notary-v1/repos/basic-local-signer/targets_releases.json"
        ),
    ),
];

struct Server(BTreeMap<&'static str, Vec<u8>>);

/// `root.json`, `1.root.json`, `snapshot.<sha256>.json`, `targets/releases.json` → the role.
fn role_of(name: &str) -> &str {
    let mut s = name.strip_suffix(".json").unwrap_or(name);
    if let Some((v, rest)) = s.split_once('.')
        && !v.is_empty()
        && v.bytes().all(|b| b.is_ascii_digit())
    {
        s = rest;
    }
    if let Some((rest, hash)) = s.rsplit_once('.')
        && hash.len() == 64
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
    {
        s = rest;
    }
    s
}

impl Fetch for Server {
    async fn fetch(&self, _gun: &str, name: &str, limit: u64) -> Result<Option<Vec<u8>>, Error> {
        match self.0.get(role_of(name)) {
            Some(b) if b.len() as u64 > limit => Err(Error::TooLarge {
                what: name.to_string(),
                limit,
            }),
            Some(b) => Ok(Some(b.clone())),
            None => Ok(None),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let (role, original) = REPO[pick as usize % REPO.len()];
    let mut files: BTreeMap<&'static str, Vec<u8>> =
        REPO.iter().map(|(r, b)| (*r, b.to_vec())).collect();
    files.insert(role, body.to_vec());
    let server = Server(files);
    let now: jiff::Timestamp = "2026-11-25T21:00:00Z".parse().unwrap();
    let result = futures::executor::block_on(update_with(
        &server,
        "example.com/research/app",
        &TrustAnchor::FirstUse,
        now,
    ));
    if let Ok((repo, _)) = result {
        // Anything accepted must be the signed original (signatures and hashes hold).
        if role != "root" && role != "timestamp" {
            assert_eq!(body, original, "a modified {role} was accepted");
        }
        let _ = repo.list("targets");
        let _ = repo.expiries();
    }
});
