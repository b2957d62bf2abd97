//! `key export` / `key import` between a docker/notary trust directory and a file, and the
//! look-up of a key by ID there. The trust directory keeps one key per file,
//! `private/<key ID>.key`, with `role:` (and for the repository's own roles `gun:`) headers,
//! as the Go client writes them; an exported file adds `path: <key ID>`, as `notary key export`
//! does. The key stays encrypted throughout: neither command needs its passphrase when the file
//! names its key ID.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;
use zeroize::Zeroizing;

use super::common::{self, CliError};
use super::{Global, Output};
use crate::notary::SigningKey;
use crate::notary::keys::MAX_KEY_BYTES;

/// The most files looked at in `private/` when finding a key by ID.
pub const MAX_TRUST_DIR_FILES: usize = 4096;

/// The docker/notary trust directory: the one given, else `$DOCKER_CONFIG/trust`, else
/// `~/.docker/trust` (where docker kept its keys).
pub fn docker_trust_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(d) = explicit {
        return d.to_path_buf();
    }
    match std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        Some(c) => PathBuf::from(c).join("trust"),
        None => common::home().join(".docker/trust"),
    }
}

fn is_key_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Roles whose keys notary files with the repository's name.
fn role_has_gun(role: &str) -> bool {
    matches!(role, "targets" | "snapshot" | "timestamp")
}

/// One PEM block as notary writes it: sorted headers, a blank line, 64-column base64.
fn pem_text(tag: &str, headers: &BTreeMap<String, String>, der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut out = Zeroizing::new(String::with_capacity(b64.len() * 2 + 256));
    out.push_str(&format!("-----BEGIN {tag}-----\n"));
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\n"));
    }
    if !headers.is_empty() {
        out.push('\n');
    }
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {tag}-----\n"));
    out
}

/// A private key block read from a file, its contents zeroized on drop.
struct Block {
    tag: String,
    headers: BTreeMap<String, String>,
    der: Zeroizing<Vec<u8>>,
}

fn private_blocks(label: &str, bytes: &[u8]) -> Result<Vec<Block>, CliError> {
    let blocks = pem::parse_many(bytes)
        .map_err(|e| CliError::new(format!("{label} is not PEM ({e}): give a key file")))?;
    let out: Vec<Block> = blocks
        .into_iter()
        .filter(|b| b.tag().ends_with("PRIVATE KEY"))
        .map(|b| Block {
            tag: b.tag().to_string(),
            headers: b
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            der: Zeroizing::new(b.into_contents()),
        })
        .collect();
    if out.is_empty() {
        return Err(CliError::new(format!("{label} holds no private key")));
    }
    Ok(out)
}

/// Creates `path` 0600, never replacing a file.
pub(super) fn create_new(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => CliError::new(format!(
                "{} exists: nothing was written (it is never overwritten); remove it or choose \
                 another file",
                path.display()
            )),
            _ => CliError::new(format!("cannot create {}: {e}", path.display())),
        })?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| {
        let _ = std::fs::remove_file(path);
        CliError::new(format!("cannot write {}: {e}", path.display()))
    })
}

#[derive(Serialize)]
struct Moved {
    key_id: String,
    role: String,
    gun: Option<String>,
    file: String,
}

fn report(g: &Global, verb: &str, moved: &[Moved]) {
    if g.output == Output::Json {
        common::print_json(&moved);
        return;
    }
    for m in moved {
        let gun = m
            .gun
            .as_deref()
            .map(|g| format!(", gun {g}"))
            .unwrap_or_default();
        outln!("{verb} key {} (role {}{gun}): {}", m.key_id, m.role, m.file);
    }
}

/// `key export --key-id ID [--dir TRUST_DIR] -o FILE`.
pub fn export(g: &Global, key_id: &str, dir: Option<&Path>, out: &Path) -> Result<(), CliError> {
    if !is_key_id(key_id) {
        return Err(CliError::new(format!(
            "--key-id {key_id:?}: a key ID is 64 lower-case hex digits (`notary key list` or \
             `trustkeeper key inspect` shows them)"
        ))
        .with_code(2));
    }
    let dir = docker_trust_dir(dir);
    let path = dir.join("private").join(format!("{key_id}.key"));
    if !path.is_file() {
        return Err(CliError::new(format!(
            "no key {key_id} in {}: `notary -d {} key list` shows the keys there",
            dir.join("private").display(),
            dir.display()
        )));
    }
    let bytes = common::read_file_bounded(
        "key",
        &path,
        MAX_KEY_BYTES as u64,
        "a key file of the trust directory is under 2 KiB",
    )?;
    let label = path.display().to_string();
    let mut blocks = private_blocks(&label, &bytes)?;
    if blocks.len() != 1 {
        return Err(CliError::new(format!(
            "{label} holds {} private keys, not one: not a notary trust directory key file",
            blocks.len()
        )));
    }
    let mut b = blocks.remove(0);
    let role = b.headers.get("role").cloned().ok_or_else(|| {
        CliError::new(format!(
            "{label} has no `role:` header: not a key file the Go client wrote"
        ))
    })?;
    b.headers.insert("path".into(), key_id.to_string());
    let text = pem_text(&b.tag, &b.headers, &b.der);
    create_new(out, text.as_bytes())?;
    report(
        g,
        "exported",
        &[Moved {
            key_id: key_id.into(),
            gun: b.headers.get("gun").cloned(),
            role,
            file: out.display().to_string(),
        }],
    );
    Ok(())
}

/// `key import FILE [--dir TRUST_DIR] [--role R --gun G]`: every key of FILE into
/// `TRUST_DIR/private/<key ID>.key`, all or none.
pub fn import(
    g: &Global,
    file: &Path,
    dir: Option<&Path>,
    role: Option<&str>,
    gun: Option<&str>,
) -> Result<(), CliError> {
    let bytes = common::read_file_bounded(
        "key",
        file,
        MAX_KEY_BYTES as u64,
        "give the PEM `notary key export` or `trustkeeper key generate` wrote",
    )?;
    let label = file.display().to_string();
    let blocks = private_blocks(&label, &bytes)?;
    let private = docker_trust_dir(dir).join("private");
    let mut planned: Vec<(PathBuf, Zeroizing<String>, Moved)> = vec![];
    for b in blocks {
        if !b.tag.starts_with("ENCRYPTED") {
            return Err(CliError::new(format!(
                "{label} holds an unencrypted key: the trust directory keeps keys encrypted; \
                 encrypt it first (`trustkeeper key generate` writes encrypted keys)"
            )));
        }
        let r = match (b.headers.get("role"), role) {
            (Some(h), Some(flag)) if h != flag => {
                return Err(CliError::new(format!(
                    "{label} says role {h}, --role says {flag}: drop --role or give the right file"
                )));
            }
            (Some(h), _) => h.clone(),
            (None, Some(flag)) => flag.to_string(),
            (None, None) => {
                return Err(CliError::new(format!(
                    "{label} names no role (no `role:` header): give --role (e.g. \
                     targets/NAME, targets, root)"
                )));
            }
        };
        if !(r == "root" || r == "targets" || r == "snapshot" || r.starts_with("targets/")) {
            return Err(CliError::new(format!(
                "role {r:?}: a key is for root, targets, snapshot or a delegation targets/NAME"
            )));
        }
        let gn = if role_has_gun(&r) {
            let g = b
                .headers
                .get("gun")
                .map(String::as_str)
                .or(gun)
                .ok_or_else(|| {
                    CliError::new(format!(
                        "a {r} key belongs to one repository: give --gun (e.g. \
                     registry.example.com/team/app)"
                    ))
                })?;
            crate::notary::init::check_gun(g).map_err(|e| CliError::new(e.to_string()))?;
            Some(g.to_string())
        } else {
            None
        };
        // Old exports wrote `path: tuf_keys/<gun>/<ID>`: the last segment is the ID.
        let id = match b
            .headers
            .get("path")
            .map(|p| p.rsplit('/').next().unwrap_or(p))
        {
            Some(p) if is_key_id(p) => {
                // With a passphrase at hand (not prompted for), the header is checked against
                // the key itself: a wrong name would leave the key where no one finds it.
                if g.passphrase_file.is_some()
                    || std::env::var_os("TRUSTKEEPER_PASSPHRASE").is_some()
                {
                    let text = pem_text(&b.tag, &b.headers, &b.der);
                    let pass = common::passphrase(g, &label)?;
                    SigningKey::from_pem(text.as_bytes(), pass.as_ref())
                        .map_err(|e| CliError::new(format!("{label}: {e}")))?;
                }
                p.to_string()
            }
            Some(p) => {
                return Err(CliError::new(format!(
                    "{label}: its `path:` header {:?} is not a key ID",
                    p.chars().take(80).collect::<String>()
                )));
            }
            None => {
                // Without `path:` the ID comes from the key itself: decrypt it.
                let text = pem_text(&b.tag, &b.headers, &b.der);
                let pass = common::passphrase(g, &label)?.ok_or_else(|| {
                    CliError::new(format!(
                        "{label} does not name its key ID (no `path:` header): give its \
                         passphrase (TRUSTKEEPER_PASSPHRASE or --passphrase-file) to read it"
                    ))
                })?;
                let keys = SigningKey::from_pem(text.as_bytes(), Some(&pass))
                    .map_err(|e| CliError::new(e.to_string()))?;
                keys.first()
                    .map(|k| k.key_id().to_string())
                    .ok_or_else(|| CliError::new(format!("{label} holds no private key")))?
            }
        };
        let mut headers = BTreeMap::from([("role".to_string(), r.clone())]);
        if let Some(g) = &gn {
            headers.insert("gun".into(), g.clone());
        }
        let text = pem_text(&b.tag, &headers, &b.der);
        let dest = private.join(format!("{id}.key"));
        planned.push((
            dest.clone(),
            text,
            Moved {
                key_id: id,
                role: r,
                gun: gn,
                file: dest.display().to_string(),
            },
        ));
    }
    for (dest, _, m) in &planned {
        if dest.exists() {
            return Err(CliError::new(format!(
                "key {} is already in {}: nothing was imported (a key file is never \
                 overwritten)",
                m.key_id,
                private.display()
            )));
        }
    }
    if !private.is_dir() {
        super::trust_dir::create_private_dir(&private)
            .map_err(|e| CliError::new(format!("cannot create {}: {e}", private.display())))?;
    }
    let mut written: Vec<&Path> = vec![];
    for (dest, text, _) in &planned {
        if let Err(e) = create_new(dest, text.as_bytes()) {
            // All or none.
            for w in written {
                let _ = std::fs::remove_file(w);
            }
            return Err(e);
        }
        written.push(dest);
    }
    let moved: Vec<Moved> = planned.into_iter().map(|(_, _, m)| m).collect();
    report(g, "imported", &moved);
    Ok(())
}

/// The key IDs of the `<ID>.key` files in `dir/private` (none if it does not exist); at most
/// [`MAX_TRUST_DIR_FILES`] names are looked at.
fn key_ids_in(dir: &Path) -> Result<std::collections::BTreeSet<String>, CliError> {
    let private = dir.join("private");
    let entries = match std::fs::read_dir(&private) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => {
            return Err(CliError::new(format!(
                "cannot read {}: {e}",
                private.display()
            )));
        }
    };
    let mut ids = std::collections::BTreeSet::new();
    for (n, entry) in entries.enumerate() {
        if n >= MAX_TRUST_DIR_FILES {
            return Err(CliError::new(format!(
                "{} holds more than {MAX_TRUST_DIR_FILES} files: give the key with --key",
                private.display()
            )));
        }
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".key"))
            && is_key_id(id)
        {
            ids.insert(id.to_string());
        }
    }
    Ok(ids)
}

/// The first file of `dir/private` whose key ID is in `accepted` (in `accepted`'s order):
/// its path and ID. Only the chosen file is read, by the caller, bounded as any key file.
pub fn find_key(dir: &Path, accepted: &[String]) -> Result<Option<(PathBuf, String)>, CliError> {
    let ids = key_ids_in(dir)?;
    Ok(accepted
        .iter()
        .find(|a| ids.contains(*a))
        .map(|id| (dir.join("private").join(format!("{id}.key")), id.clone())))
}

/// `key list [--dir TRUST_DIR]` (`notary key list`): each key of the trust directory with its
/// role and repository, from the files' headers; nothing is decrypted.
pub fn list(g: &Global, dir: Option<&Path>) -> Result<(), CliError> {
    let dir = docker_trust_dir(dir);
    let mut rows = vec![];
    for id in key_ids_in(&dir)? {
        let file = dir.join("private").join(format!("{id}.key"));
        let read =
            common::read_file_bounded("key", &file, MAX_KEY_BYTES as u64, "remove or fix the file")
                .and_then(|b| private_blocks(&file.display().to_string(), &b));
        let blocks = match read {
            Ok(b) => b,
            Err(e) => {
                eprintln!("skipped {}: {e}", file.display());
                continue;
            }
        };
        let header = |k: &str| blocks[0].headers.get(k).cloned();
        rows.push(Moved {
            key_id: id,
            role: header("role").unwrap_or_else(|| "(no role header)".into()),
            gun: header("gun"),
            file: file.display().to_string(),
        });
    }
    if g.output == Output::Json {
        common::print_json(&rows);
        return Ok(());
    }
    if rows.is_empty() {
        outln!("no keys in {}", dir.join("private").display());
        return Ok(());
    }
    outln!("{:<18} {:<40} {:<64} LOCATION", "ROLE", "GUN", "KEY ID");
    for r in &rows {
        outln!(
            "{:<18} {:<40} {:<64} {}",
            r.role,
            r.gun.as_deref().unwrap_or(""),
            r.key_id,
            r.file
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_key_follows_the_accepted_order_and_bounds_the_scan() {
        let d = tempfile::tempdir().unwrap();
        let private = d.path().join("private");
        std::fs::create_dir(&private).unwrap();
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        for name in [format!("{a}.key"), format!("{b}.key"), "notes.txt".into()] {
            std::fs::write(private.join(name), "x").unwrap();
        }
        let want = |ids: &[&String]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (p, id) = find_key(d.path(), &want(&[&"c".repeat(64), &b, &a]))
            .unwrap()
            .unwrap();
        assert_eq!((p, id), (private.join(format!("{b}.key")), b.clone()));
        assert!(
            find_key(d.path(), &want(&[&"c".repeat(64)]))
                .unwrap()
                .is_none()
        );
        // No such directory: nothing found, no error.
        assert!(
            find_key(&d.path().join("none"), &want(&[&a]))
                .unwrap()
                .is_none()
        );
        for i in 0..MAX_TRUST_DIR_FILES {
            std::fs::write(private.join(format!("f{i}")), "").unwrap();
        }
        let e = find_key(d.path(), &want(&[&a])).unwrap_err();
        assert!(e.message.contains("more than 4096 files"), "{e}");
    }

    #[test]
    fn blocks_are_written_as_the_go_client_writes_them() {
        let headers = BTreeMap::from([
            ("role".to_string(), "targets".to_string()),
            ("gun".to_string(), "example.com/app".to_string()),
        ]);
        let text = pem_text("ENCRYPTED PRIVATE KEY", &headers, &[5u8; 100]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..4],
            [
                "-----BEGIN ENCRYPTED PRIVATE KEY-----",
                "gun: example.com/app",
                "role: targets",
                ""
            ]
        );
        let back = private_blocks("t", text.as_bytes()).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].headers, headers);
        assert_eq!(back[0].der.as_slice(), &[5u8; 100]);
        assert!(is_key_id(&"0a".repeat(32)));
        assert!(!is_key_id(&"0A".repeat(32)) && !is_key_id("../x") && !is_key_id(""));
    }
}
