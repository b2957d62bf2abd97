//! The signing keys of a run: decoded from the PEM the caller gathered, through the notary
//! crate's key source, off the critical path; and the `--key-id` check.

use std::collections::BTreeSet;

use crate::api::reasons;
use crate::failure::Failure;
use crate::model::RepoView;
use crate::request::RunSecrets;
use trustkeeper_notary::{KeySource as _, PemKeySource, Signer, SigningKey};

/// Loads the signing keys (all blocks of the PEM) on a thread of its own, beside the first
/// requests: the key derivation of an encrypted key costs about as much CPU as they do. That
/// thread runs at the lowest CPU priority. The keys are needed only once the repository is read,
/// while the TLS handshake and the timestamp fetch are on the critical path, and on a machine
/// with few cores the derivation competed with them and with the notary server for the CPU.
pub async fn load_keys(creds: &RunSecrets) -> Result<Vec<Box<dyn Signer>>, Failure> {
    let input = std::sync::Arc::new((creds.signing_key_pem.clone(), creds.passphrase.clone()));
    let theirs = input.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("key-derivation".into())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(load_keys_from(&theirs.0, theirs.1.as_ref()));
        });
    match spawned {
        Ok(_) => rx.await.unwrap_or_else(|_| {
            Err(Failure::new(
                reasons::BAD_KEY,
                "loading the signing key failed: its thread ended early",
            ))
        }),
        // No thread to spare: derive here.
        Err(_) => load_keys_from(&input.0, input.1.as_ref()),
    }
}

/// Gives the calling thread the lowest CPU priority (nice 19); it runs when a core is idle.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system call. With `who` 0 it changes the calling thread only: on Linux the
    // nice value is per thread. A failure leaves the priority as it was.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

fn load_keys_from(
    pem: &[u8],
    passphrase: Option<&secrecy::SecretString>,
) -> Result<Vec<Box<dyn Signer>>, Failure> {
    if pem.is_empty() {
        return Err(Failure::new(
            reasons::BAD_KEY,
            "the signing key is empty: give the PEM `notary key export` wrote",
        ));
    }
    if SigningKey::pem_holds_only_root_keys(pem) {
        return Err(Failure::new(
            reasons::BAD_KEY,
            "the signing key is the root key (its header says role: root): it signs only the \
             root role and is never a signer of tags or targets; give the repository key (role \
             targets) or a delegation key (`notary key list` shows each key's role)",
        ));
    }
    let keys = PemKeySource { pem, passphrase }.signers()?;
    if keys.is_empty() {
        return Err(Failure::new(
            reasons::BAD_KEY,
            "the PEM holds no private key (only certificates or public keys?): give the private key `notary key export` wrote",
        ));
    }
    Ok(keys)
}

/// The configured key ID names one of the keys given: its plain ID, or the ID of a
/// certificate a role lists for it.
pub(crate) fn check_key_id(
    expected: &str,
    key_ids: &[String],
    view: &RepoView,
) -> Result<(), Failure> {
    let expected = expected.trim();
    let cert_ids: BTreeSet<&str> = (view.roles.iter().flat_map(|r| &r.signers))
        .filter(|s| s.id != s.canonical_id && key_ids.contains(&s.canonical_id))
        .map(|s| s.id.as_str())
        .collect();
    if key_ids.iter().any(|k| k == expected) || cert_ids.contains(expected) {
        return Ok(());
    }
    let certs = if cert_ids.is_empty() {
        String::new()
    } else {
        format!(
            " (as a certificate: {})",
            cert_ids.into_iter().collect::<Vec<_>>().join(", ")
        )
    };
    Err(Failure::new(
        reasons::BAD_KEY,
        format!(
            "the signing key is {}{certs}, not the expected key ID {expected}; nothing was \
             published: give the key with ID {expected}, or fix the key ID (--key-id, \
             private-key-id)",
            key_ids.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key derivation's thread gives way; the thread that started it keeps its priority.
    #[cfg(target_os = "linux")]
    #[test]
    fn only_the_key_thread_is_lowered() {
        // SAFETY: plain system calls on the calling thread.
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let before = nice();
        let lowered = std::thread::spawn(move || {
            lower_priority();
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, 19);
        assert_eq!(nice(), before);
    }
}
