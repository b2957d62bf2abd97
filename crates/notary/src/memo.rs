//! The signature memo: signatures already found valid, so that they are not verified again.
//!
//! A signature's check is a pure function of (message, key, method, signature), so a memo entry
//! (a digest of the message's digest, the key ID, the method and the signature) is as good as a
//! check, and never vouches for other content. A run reads the same root, targets and
//! delegations twice (before and after its publish), the operator reads them every cycle, and
//! the command line keeps the entries of the files it kept in its trust directory.
//!
//! The memo is a value: whoever keeps it owns it (the engine's [`MetadataCache`] for the operator
//! and the command line, seeded from and saved to the trust directory by the command line) and
//! passes it to [`update_with_memo`]; nothing is shared behind the caller's back. The
//! repository an update verified keeps that memo for its edits' own checks.
//!
//! Caching layer (see [`cache`](super::cache)): signature digests found valid and the record of
//! those checked, owned by whoever holds the value, at most [`MEMO_MAX`] of each.
//!
//! [`MetadataCache`]: super::cache::MetadataCache
//! [`update_with_memo`]: super::client::update_with_memo

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

/// Entries held (and entries recorded) at most; the held set is cleared when full.
pub const MEMO_MAX: usize = 8192;

#[derive(Default)]
struct Inner {
    /// Entries found valid, or handed in by [`SignatureMemo::remember`].
    verified: HashSet<[u8; 32]>,
    /// The entries checked since a caller that keeps the memo between processes asked for the
    /// record ([`SignatureMemo::remember`]): what it saves. `None` for a long-running process,
    /// which has no use for it.
    checked: Option<BTreeSet<[u8; 32]>>,
}

/// Signatures found valid, shared by clones (one `Arc`); see the module docs.
#[derive(Clone, Default)]
pub struct SignatureMemo(Arc<Mutex<Inner>>);

impl std::fmt::Debug for SignatureMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map_or(0, |m| m.verified.len());
        write!(f, "SignatureMemo({n} entries)")
    }
}

impl SignatureMemo {
    /// Adds entries that an earlier process checked ([`SignatureMemo::checked`], hex), so that
    /// the signatures of files it kept are not checked again, and starts the record that
    /// [`SignatureMemo::checked`] reads. Only for a caller whose store is as trusted as its
    /// trust anchor: whoever can write such entries could as well replace the trusted root keys.
    /// Malformed entries are ignored.
    pub fn remember<'a>(&self, entries: impl IntoIterator<Item = &'a str>) {
        let Ok(mut m) = self.0.lock() else { return };
        m.checked.get_or_insert_with(BTreeSet::new);
        for e in entries {
            let mut k = [0u8; 32];
            if hex::decode_to_slice(e, &mut k).is_ok() && m.verified.len() < MEMO_MAX {
                m.verified.insert(k);
            }
        }
    }

    /// The entries (hex, sorted) of every signature checked since [`SignatureMemo::remember`]:
    /// those of the files a run read and published, to be handed to it next time. Empty if the
    /// record was never started.
    pub fn checked(&self) -> Vec<String> {
        self.0
            .lock()
            .ok()
            .and_then(|m| {
                m.checked
                    .as_ref()
                    .map(|c| c.iter().map(hex::encode).collect())
            })
            .unwrap_or_default()
    }

    /// Whether `entry` is valid: from the memo, else by `verify`, whose `true` is remembered.
    pub(crate) fn check(&self, entry: [u8; 32], verify: impl FnOnce() -> bool) -> bool {
        if let Ok(mut m) = self.0.lock()
            && m.verified.contains(&entry)
        {
            m.record(entry);
            return true;
        }
        if !verify() {
            return false;
        }
        if let Ok(mut m) = self.0.lock() {
            if m.verified.len() >= MEMO_MAX {
                m.verified.clear();
            }
            m.verified.insert(entry);
            m.record(entry);
        }
        true
    }
}

impl Inner {
    fn record(&mut self, entry: [u8; 32]) {
        if let Some(c) = &mut self.checked
            && c.len() < MEMO_MAX
        {
            c.insert(entry);
        }
    }
}

/// The memo entry of a signature: unambiguous over its parts.
pub(crate) fn entry(msg_digest: &[u8], key_id: &str, method: &str, sig: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    // Fixed-length digest and ID first, then length-prefixed variable parts: unambiguous.
    h.update(msg_digest);
    h.update(key_id.as_bytes());
    for part in [method.as_bytes(), sig] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().into()
}
