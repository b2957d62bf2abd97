//! The trust directory (`--trust-dir`, `tuf/GUN/`): the trust state and the verified metadata a
//! command keeps between runs.
//!
//! Files that change on every run are overwritten in place, never replaced or deleted: on ext4
//! a rename over an existing file forces the new file's blocks out, and freeing blocks (the
//! replaced or deleted file's) costs a discard on `discard` mounts. Measured on the testbed, a
//! witness spent 0.67 ms renaming over `trust.json` and 0.15-0.19 ms per deleted metadata file,
//! against ~0.01 ms per write in place. A write in place can be torn by a crash, so:
//! - the trust state is kept in two slots (`trust.a.json`, `trust.b.json`), each with a sequence
//!   number and a checksum; a run writes the older slot, and a torn slot is ignored in favour of
//!   the other one (one run older: a rollback floor one run behind, as before);
//! - the metadata files (`metadata/<role>.json`) are named by role and checked on use against
//!   the hash the snapshot or timestamp names: a torn file is only fetched again.
//!
//! Caching layer (see `notary::cache`): the last verified metadata files and the signature
//! memo entries of a GUN, owned by the command's trust directory, as many files as the last
//! verified repository and at most `notary::memo::MEMO_MAX` entries; seeded into the engine's
//! [`SignatureMemo`] by [`Loaded::seed`], saved from it by [`Kept::now`].

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::Global;
use super::common::{CliError, home, write_replacing};
use crate::api::{SignedImageStatus, TrustStatus};
use crate::notary::SignatureMemo;
use crate::notary::cache::{Files, hash_name, is_hash_name, role_of_hash_name};

/// What the trust directory keeps for a GUN between runs.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Kept {
    /// The trust anchor and the versions seen.
    #[serde(flatten)]
    pub trust: TrustStatus,
    /// The signature memo of the kept metadata files ([`SignatureMemo::checked`]):
    /// a run does not check their signatures again (~0.1 ms each). It widens nothing: whoever
    /// can write this file can as well replace the trusted root keys it holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verified_signatures: Vec<String>,
}

impl Kept {
    /// The trust state `trust` with the entries of the checks made through `memo` (seeded by
    /// [`Loaded::seed`]).
    pub fn now(trust: TrustStatus, memo: &SignatureMemo) -> Kept {
        Kept {
            trust,
            verified_signatures: memo.checked(),
        }
    }

    /// As the engine takes it.
    pub fn status(&self) -> SignedImageStatus {
        SignedImageStatus {
            trust: Some(self.trust.clone()),
            ..Default::default()
        }
    }
}

/// The trust state as read, and where the next one goes.
#[derive(Debug, Default)]
pub struct Loaded {
    pub kept: Option<Kept>,
    /// Sequence number of the slot read (0: none, or only the file of earlier releases).
    seq: u64,
}

fn trust_root(g: &Global) -> PathBuf {
    g.trust_dir
        .clone()
        .unwrap_or_else(|| home().join(".trustkeeper"))
}

fn gun_dir(g: &Global, gun: &str) -> PathBuf {
    trust_root(g).join("tuf").join(gun)
}

/// Creates `dir` and its missing parents private (0700), whatever the umask: the trust
/// directory must stay writable by its owner alone (`check_private`).
pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn slot(g: &Global, gun: &str, seq: u64) -> PathBuf {
    gun_dir(g, gun).join(if seq % 2 == 1 {
        "trust.a.json"
    } else {
        "trust.b.json"
    })
}

/// `trust.json`, as trustkeeper kept the state before the slots; read when no slot is.
fn legacy_file(g: &Global, gun: &str) -> PathBuf {
    gun_dir(g, gun).join("trust.json")
}

#[derive(serde::Deserialize)]
struct SlotFile<'a> {
    seq: u64,
    sha256: String,
    #[serde(borrow)]
    state: &'a serde_json::value::RawValue,
}

/// A slot's sequence number and state: `Ok(None)` if there is no slot, `Err(())` if it is torn
/// or damaged.
fn read_slot(path: &Path) -> Result<Option<(u64, Kept)>, ()> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(None);
    };
    let f: SlotFile = serde_json::from_slice(&bytes).map_err(|_| ())?;
    let body = f.state.get().as_bytes();
    if hex::encode(Sha256::digest(body)) != f.sha256 {
        return Err(());
    }
    Ok(Some((f.seq, serde_json::from_slice(body).map_err(|_| ())?)))
}

fn slot_bytes(seq: u64, kept: &Kept) -> Vec<u8> {
    let body = serde_json::to_vec(kept).expect("serializable");
    let mut out = format!(
        "{{\"seq\":{seq},\"sha256\":\"{}\",\"state\":",
        hex::encode(Sha256::digest(&body))
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out.extend_from_slice(b"}\n");
    out
}

/// The trust anchor, versions seen and signature memo of `gun`: the newest intact slot, else
/// the file of earlier releases. Slots that are all damaged are refused, never taken for no
/// state (which would mean trusting the server's root anew). The memo goes to the caller's
/// [`SignatureMemo`] by [`Loaded::seed`].
pub fn load_trust(g: &Global, gun: &str) -> Result<Loaded, CliError> {
    check_private(g, gun)?;
    let slots = [slot(g, gun, 1), slot(g, gun, 2)];
    let read: Vec<_> = slots.iter().map(|p| read_slot(p)).collect();
    let newest = read
        .iter()
        .filter_map(|r| r.as_ref().ok().and_then(Option::as_ref))
        .max_by_key(|(seq, _)| *seq);
    let loaded = match newest {
        Some((seq, kept)) => Loaded {
            kept: Some(kept.clone()),
            seq: *seq,
        },
        None if read.iter().any(Result::is_err) => {
            return Err(CliError::new(format!(
                "the trust state in {} is corrupt: remove {} and {} to trust the server's root anew",
                gun_dir(g, gun).display(),
                slots[0].display(),
                slots[1].display()
            )));
        }
        None => Loaded {
            kept: read_legacy(&legacy_file(g, gun))?,
            seq: 0,
        },
    };
    Ok(loaded)
}

impl Loaded {
    /// Hands the kept memo entries to `memo`, the one the update goes through, and starts its
    /// record. Also on a first run: the memo of what it checks is saved with the state.
    pub fn seed(&self, memo: &SignatureMemo) {
        memo.remember(
            self.kept
                .iter()
                .flat_map(|k| k.verified_signatures.iter().map(String::as_str)),
        );
    }
}

/// Refuses a trust directory that another user could write: whoever can rewrite the trust
/// state can replace the root keys it pins. Every directory from the trust directory down to
/// the GUN's, and the files holding the trust state, must belong to this user and be writable
/// by no one else (what trustkeeper and the notary Go client create: 0700 and 0600).
fn check_private(g: &Global, gun: &str) -> Result<(), CliError> {
    let root = trust_root(g);
    let mut paths = vec![root.clone()];
    let mut dir = root.join("tuf");
    paths.push(dir.clone());
    for part in Path::new(gun).components() {
        dir = dir.join(part);
        paths.push(dir.clone());
    }
    paths.extend([slot(g, gun, 1), slot(g, gun, 2), legacy_file(g, gun)]);
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    for p in &paths {
        // Not there yet: nothing to check below (it will be created private).
        let Ok(m) = std::fs::metadata(p) else {
            if p.starts_with(gun_dir(g, gun)) {
                continue;
            }
            break;
        };
        check_mode(p, m.is_dir(), m.mode(), m.uid(), me)?;
    }
    Ok(())
}

fn check_mode(p: &Path, is_dir: bool, mode: u32, uid: u32, me: u32) -> Result<(), CliError> {
    let (what, fix) = if is_dir {
        ("directory", 700)
    } else {
        ("file", 600)
    };
    if uid != me {
        return Err(CliError::new(format!(
            "the trust {what} {} belongs to uid {uid}, not to this user (uid {me}), who could \
             rewrite the root keys it pins: `chown -R {me} {}` if it is yours, or give another \
             --trust-dir",
            p.display(),
            p.display()
        )));
    }
    if mode & 0o022 != 0 {
        return Err(CliError::new(format!(
            "the trust {what} {} can be written by other users (mode {:o}), who could rewrite \
             the root keys it pins: `chmod {fix} {}`",
            p.display(),
            mode & 0o7777,
            p.display()
        )));
    }
    Ok(())
}

/// Says on stderr (at warn, the default level) which root a run trusted on first use: no root
/// was pinned, the trust directory kept no state for `gun` and now keeps `trust`.
pub fn announce_first_use(g: &Global, gun: &str, before: &Loaded, trust: &TrustStatus) {
    if before.kept.is_some() || trust.root_key_ids.is_empty() || !g.root_key_ids.is_empty() {
        return;
    }
    tracing::warn!(
        "trusted the root of {gun} on first use: root key ID(s) {} (version {}), kept in {}; \
         pin it with --root-key-id or TRUSTKEEPER_ROOT_KEY_ID",
        trust.root_key_ids.join(", "),
        trust.root_version,
        gun_dir(g, gun).display()
    );
}

fn read_legacy(path: &Path) -> Result<Option<Kept>, CliError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            CliError::new(format!(
                "{} is corrupt ({e}): remove it to trust the server's root anew",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::new(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Writes `kept`, which replaces what `before` read, into the older slot. An unchanged state is
/// not written.
///
/// The trust anchor (root key IDs and version) is made durable (fsync) when it is new or
/// changed: losing it would mean trusting on first use again. A change of the versions alone is
/// not synced: a crash may bring back the previous versions, a rollback floor one run older,
/// which the next run raises again. The notary Go client syncs none of its trust data.
pub fn save_trust(g: &Global, gun: &str, before: &Loaded, kept: &Kept) -> Result<(), CliError> {
    if before.kept.as_ref() == Some(kept) {
        return Ok(());
    }
    let anchor_changed = before.kept.as_ref().is_none_or(|b| {
        (&b.trust.root_key_ids, b.trust.root_version)
            != (&kept.trust.root_key_ids, kept.trust.root_version)
    });
    let seq = before.seq + 1;
    let path = slot(g, gun, seq);
    write_in_place(&path, &slot_bytes(seq, kept), anchor_changed)?;
    if before.seq == 0 {
        // The state of earlier releases now lives in the slots.
        let _ = std::fs::remove_file(legacy_file(g, gun));
    }
    Ok(())
}

/// Overwrites `path` from its start and cuts it to the new length: no new file, so no rename
/// and no freed blocks (see the module comment). With `durable` (a new trust anchor, rare), the
/// data and the directory entry reach the disk before it returns.
fn write_in_place(path: &Path, bytes: &[u8], durable: bool) -> Result<(), CliError> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let err = |e: std::io::Error| CliError::new(format!("cannot write {}: {e}", path.display()));
    let dir = path.parent().unwrap_or(Path::new("."));
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
    };
    let f = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_private_dir(dir).map_err(err)?;
            open().map_err(err)?
        }
        other => other.map_err(err)?,
    };
    f.write_all_at(bytes, 0).map_err(err)?;
    f.set_len(bytes.len() as u64).map_err(err)?;
    if durable {
        f.sync_all().map_err(err)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The verified metadata files kept in the trust directory (`tuf/GUN/metadata/`), each under
/// the name of its content's hash (as notary serves them), so that the next run downloads only
/// what changed. Unreadable or stray files are skipped: every file is checked again when used
/// (hash names against their bytes, the root against the trust state).
#[derive(Default)]
pub struct Metadata {
    pub files: Files,
    /// Hash-named files of earlier releases, removed at the next save.
    legacy: Vec<PathBuf>,
}

pub fn load_metadata(g: &Global, gun: &str) -> Metadata {
    let dir = gun_dir(g, gun).join("metadata");
    let mut out = Metadata {
        files: Files {
            root: std::fs::read(dir.join("root.json")).ok(),
            ..Default::default()
        },
        legacy: Vec::new(),
    };
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
                continue;
            }
            let Some(name) = path.strip_prefix(&dir).ok().and_then(|p| p.to_str()) else {
                continue;
            };
            if name == "root.json" {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            if is_hash_name(name) {
                out.files.hashed.insert(name.to_string(), bytes);
                out.legacy.push(path);
            } else if let Some(role) = name.strip_suffix(".json") {
                out.files.hashed.insert(hash_name(role, &bytes), bytes);
            }
        }
    }
    out
}

/// Writes the files of `new` that `old` (what `load_metadata` read) lacks, each over its
/// role's file, and removes the files of roles no longer current.
pub fn save_metadata(g: &Global, gun: &str, old: &Metadata, new: &Files) -> Result<(), CliError> {
    let dir = gun_dir(g, gun).join("metadata");
    let role_file = |role: &str| dir.join(format!("{role}.json"));
    let mut current = std::collections::BTreeSet::new();
    for (name, bytes) in &new.hashed {
        let Some(role) = role_of_hash_name(name) else {
            continue;
        };
        current.insert(role);
        let on_disk = old.files.hashed.get(name) == Some(bytes)
            && !old.legacy.iter().any(|p| p.ends_with(name));
        if !on_disk {
            write_in_place(&role_file(role), bytes, false)?;
        }
    }
    if let Some(root) = &new.root
        && old.files.root.as_ref() != Some(root)
    {
        write_replacing(&dir.join("root.json"), root, false, 0o600)?;
    }
    for role in old.files.hashed.keys().filter_map(|n| role_of_hash_name(n)) {
        if !current.contains(role) {
            let _ = std::fs::remove_file(role_file(role));
        }
    }
    for p in &old.legacy {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(dir: &Path) -> crate::cli::Cli {
        crate::cli::Cli::parse_from(["trustkeeper", "--trust-dir", dir.to_str().unwrap(), "crd"])
    }

    fn kept(targets: u64) -> Kept {
        Kept {
            trust: TrustStatus {
                root_key_ids: vec!["r1".into()],
                root_version: 1,
                versions: [("targets".to_string(), targets)].into(),
            },
            verified_signatures: vec!["ab".repeat(32)],
        }
    }

    #[test]
    fn the_trust_state_alternates_slots_and_survives_a_torn_one() {
        let dir = tempfile::tempdir().unwrap();
        let cli = cli(dir.path());
        let g = &cli.global;
        let gun = "example.com/app";
        let none = load_trust(g, gun).unwrap();
        assert!(none.kept.is_none());

        save_trust(g, gun, &none, &kept(3)).unwrap();
        let first = load_trust(g, gun).unwrap();
        assert_eq!(first.kept, Some(kept(3)));

        // Unchanged: not written.
        let before = std::fs::read(slot(g, gun, 1)).unwrap();
        save_trust(g, gun, &first, &kept(3)).unwrap();
        assert!(!slot(g, gun, 2).exists());
        assert_eq!(std::fs::read(slot(g, gun, 1)).unwrap(), before);

        // The next state goes to the other slot; the newest wins.
        save_trust(g, gun, &first, &kept(4)).unwrap();
        let second = load_trust(g, gun).unwrap();
        assert_eq!(second.kept, Some(kept(4)));
        save_trust(g, gun, &second, &kept(5)).unwrap();
        assert_eq!(load_trust(g, gun).unwrap().kept, Some(kept(5)));

        // A slot torn by a crash (cut short, or a digit changed: checksum) is passed over for
        // the other, one run older.
        let newest = slot(g, gun, 3);
        let bytes = std::fs::read(&newest).unwrap();
        std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(load_trust(g, gun).unwrap().kept, Some(kept(4)));
        let tampered = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("\"targets\":5", "\"targets\":9");
        std::fs::write(&newest, tampered).unwrap();
        assert_eq!(load_trust(g, gun).unwrap().kept, Some(kept(4)));
        // A shorter state over a longer one leaves no tail behind.
        std::fs::write(&newest, &bytes).unwrap();
        let mut long = kept(6);
        long.verified_signatures = vec!["cd".repeat(32); 20];
        let l = load_trust(g, gun).unwrap();
        save_trust(g, gun, &l, &long).unwrap();
        let l = load_trust(g, gun).unwrap();
        save_trust(g, gun, &l, &kept(7)).unwrap();
        let l = load_trust(g, gun).unwrap();
        save_trust(g, gun, &l, &kept(8)).unwrap();
        assert_eq!(load_trust(g, gun).unwrap().kept, Some(kept(8)));

        // Both slots damaged: refused, not taken for a first use.
        for s in [1, 2] {
            std::fs::write(slot(g, gun, s), b"{\"seq\":").unwrap();
        }
        let e = load_trust(g, gun).unwrap_err();
        assert!(e.message.contains("is corrupt"), "{}", e.message);
    }

    #[test]
    fn the_trust_file_of_earlier_releases_is_read_then_retired() {
        let dir = tempfile::tempdir().unwrap();
        let cli = cli(dir.path());
        let g = &cli.global;
        let gun = "example.com/app";
        let legacy = legacy_file(g, gun);
        std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
        // As trustkeeper wrote it before the memo and the slots.
        std::fs::write(
            &legacy,
            r#"{"rootKeyIDs":["r1"],"rootVersion":2,"versions":{"targets":5}}"#,
        )
        .unwrap();
        let loaded = load_trust(g, gun).unwrap();
        let kept = loaded.kept.clone().unwrap();
        assert_eq!(kept.trust.root_version, 2);
        assert_eq!(kept.trust.versions["targets"], 5);
        assert!(kept.verified_signatures.is_empty());
        let mut next = kept.clone();
        next.trust.versions.insert("targets".into(), 6);
        save_trust(g, gun, &loaded, &next).unwrap();
        assert!(!legacy.exists());
        assert_eq!(load_trust(g, gun).unwrap().kept, Some(next));

        std::fs::write(&legacy, b"{not json").unwrap();
        std::fs::remove_file(slot(g, gun, 1)).unwrap();
        let e = load_trust(g, gun).unwrap_err();
        assert!(e.message.contains("is corrupt"), "{}", e.message);
    }

    #[test]
    fn metadata_files_are_kept_by_role_and_checked_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let cli = cli(dir.path());
        let g = &cli.global;
        let gun = "example.com/app";
        let files = |snap: &[u8], rel: &[u8]| Files {
            root: Some(b"root".to_vec()),
            hashed: [
                (hash_name("snapshot", snap), snap.to_vec()),
                (hash_name("targets/releases", rel), rel.to_vec()),
            ]
            .into(),
        };
        let first = files(b"snap 1", b"releases 1");
        save_metadata(g, gun, &load_metadata(g, gun), &first).unwrap();
        let meta = gun_dir(g, gun).join("metadata");
        assert_eq!(
            std::fs::read(meta.join("snapshot.json")).unwrap(),
            b"snap 1"
        );
        assert_eq!(load_metadata(g, gun).files, first);

        // A new snapshot over a longer old one: the file holds exactly the new bytes.
        let second = files(b"snap", b"releases 1");
        save_metadata(g, gun, &load_metadata(g, gun), &second).unwrap();
        assert_eq!(load_metadata(g, gun).files, second);

        // A damaged file is loaded under the hash of what it holds: never served as the role.
        std::fs::write(meta.join("targets/releases.json"), b"garbage").unwrap();
        let loaded = load_metadata(g, gun);
        assert!(
            !loaded
                .files
                .hashed
                .contains_key(&hash_name("targets/releases", b"releases 1"))
        );
        assert!(
            loaded
                .files
                .hashed
                .contains_key(&hash_name("targets/releases", b"garbage"))
        );

        // A role gone from the repository loses its file; hash-named files of earlier releases
        // are read, then removed.
        let legacy = meta.join(hash_name("targets/old", b"old"));
        std::fs::write(&legacy, b"old").unwrap();
        let loaded = load_metadata(g, gun);
        assert!(
            loaded
                .files
                .hashed
                .contains_key(&hash_name("targets/old", b"old"))
        );
        let third = Files {
            root: Some(b"root".to_vec()),
            hashed: [(hash_name("snapshot", b"snap"), b"snap".to_vec())].into(),
        };
        save_metadata(g, gun, &loaded, &third).unwrap();
        assert!(!legacy.exists());
        assert!(!meta.join("targets/releases.json").exists());
        assert_eq!(load_metadata(g, gun).files, third);
    }
}
