//! Creating a repository (GUN) the way Docker does (notary-v1.md §6.4, §4.5, §8): a
//! self-signed root certificate for the GUN, root v1 listing it, the targets key and the
//! server's snapshot and timestamp keys, targets v1 (empty, optionally with delegations), both
//! published in one POST without a snapshot; the server then makes snapshot v1 and timestamp v1.
//!
//! Unlike `notary init`, nothing is cached locally and no client snapshot key is made, so there
//! is no later `key rotate snapshot -r` step: the repository is server-managed from the start,
//! as Docker creates it.

use std::time::SystemTime;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder as _, CertificateBuilder};
use x509_cert::der::asn1::Any;
use x509_cert::der::{Decode as _, Encode as _, Tag};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};
use x509_cert::ext::{Extension, ToExtension as _};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};

use super::canonical;
use super::client::{TrustAnchor, count_valid};
use super::edit::SignedFile;
use super::error::{Error, Result};
use super::keys::{PublicKey, Signer, SigningKey};
use super::metadata::{Envelope, file_bytes};
use super::server::NotaryClient;
use super::time;

/// Validity of a root certificate, as `notary init` makes it: 3650 days (§9.1).
pub const ROOT_CERT_LIFETIME: SignedDuration = SignedDuration::from_hours(24 * 3650);

/// The two private keys of a new repository: root (offline, signs root.json) and targets (the
/// "repository key" Docker asks a passphrase for). Debug shows only key IDs.
#[derive(Debug)]
pub struct RepositoryKeys {
    pub root: SigningKey,
    pub targets: SigningKey,
}

impl RepositoryKeys {
    /// Fresh ECDSA P-256 keys, as `notary init` makes them (`role: root`; `role: targets` with
    /// `gun:`).
    pub fn generate(gun: &str) -> Result<RepositoryKeys> {
        check_gun(gun)?;
        Ok(RepositoryKeys {
            root: SigningKey::generate_ecdsa("root", "")?,
            targets: SigningKey::generate_ecdsa("targets", gun)?,
        })
    }
}

/// A delegation declared in the first targets.json (as `docker trust signer add` does).
#[derive(Debug, Clone)]
pub struct InitialDelegation {
    /// A direct child of `targets`, e.g. `targets/releases`.
    pub name: String,
    /// Its keys (threshold 1).
    pub keys: Vec<PublicKey>,
    /// Path prefixes; `[""]` (every name) is what Docker writes.
    pub paths: Vec<String>,
}

/// What a new repository consists of: root v1 and targets v1 as uploaded, and the keys they
/// list. Returned by [`NewRepository::create`] once published.
#[derive(Debug, Clone)]
pub struct InitialMetadata {
    pub gun: String,
    /// The root certificate key (`ecdsa-x509`) listed in root.json.
    pub root_key: PublicKey,
    pub targets_key_id: String,
    pub snapshot_key: PublicKey,
    pub timestamp_key: PublicKey,
    /// `root` v1 and `targets` v1, byte-exact as uploaded.
    pub files: Vec<SignedFile>,
}

impl InitialMetadata {
    /// TUF ID of the root certificate (what root.json lists and `docker trust inspect` shows as
    /// "Root Key").
    pub fn root_key_id(&self) -> String {
        self.root_key.key_id()
    }

    /// A trust anchor that accepts exactly this root: read the new repository without trusting
    /// on first use.
    pub fn anchor(&self) -> TrustAnchor {
        TrustAnchor::PinnedKeys(vec![self.root_key_id()])
    }
}

/// A repository to create: its GUN, keys and optional first delegations.
#[derive(Debug)]
pub struct NewRepository<'a> {
    pub gun: &'a str,
    /// The root key signs the root certificate too, which takes a local ECDSA P-256 key.
    pub root: &'a SigningKey,
    pub targets: &'a dyn Signer,
    pub delegations: Vec<InitialDelegation>,
}

impl<'a> NewRepository<'a> {
    pub fn new(gun: &'a str, root: &'a SigningKey, targets: &'a dyn Signer) -> Self {
        NewRepository {
            gun,
            root,
            targets,
            delegations: Vec::new(),
        }
    }

    /// Also declares `name` (a direct child of `targets`, e.g. `targets/releases`) with `key`
    /// and path prefixes `paths` (`[""]` = every name) in targets v1, so that a signer can
    /// sign into it at once.
    pub fn with_delegation(self, name: &str, key: PublicKey, paths: &[&str]) -> Result<Self> {
        self.with_delegation_keys(name, vec![key], paths)
    }

    /// As [`NewRepository::with_delegation`], with several keys (any one signs).
    pub fn with_delegation_keys(
        mut self,
        name: &str,
        keys: Vec<PublicKey>,
        paths: &[&str],
    ) -> Result<Self> {
        check_delegation_name(name)?;
        if keys.is_empty() {
            return Err(invalid("delegation", name, "it needs at least one key"));
        }
        if self.delegations.iter().any(|d| d.name == name) {
            return Err(invalid("delegation", name, "declared twice"));
        }
        if let Some(p) = paths.iter().find(|p| canonical::has_control_char(p)) {
            return Err(invalid(
                "delegation path",
                p,
                "control characters cannot be published",
            ));
        }
        self.delegations.push(InitialDelegation {
            name: name.to_string(),
            keys,
            paths: paths.iter().map(|p| p.to_string()).collect(),
        });
        Ok(self)
    }

    /// Builds and signs root v1 and targets v1 for the server keys given (no I/O). Each file is
    /// verified against the keys it lists before it is returned.
    pub fn sign(
        &self,
        snapshot_key: PublicKey,
        timestamp_key: PublicKey,
        now: Timestamp,
    ) -> Result<InitialMetadata> {
        check_gun(self.gun)?;
        let root_key = root_certificate(self.root, self.gun, now)?;
        let targets_pub = self.targets.public_key().clone();
        let root_body = root_body(
            &root_key,
            &targets_pub,
            &snapshot_key,
            &timestamp_key,
            now.saturating_add(time::ROOT_LIFETIME).expect("in range"),
        );
        let targets_body = targets_body(
            &self.delegations,
            now.saturating_add(time::TARGETS_LIFETIME)
                .expect("in range"),
        );
        let root = sign_v1("root", &root_body, self.root, &root_key)?;
        let targets = sign_v1("targets", &targets_body, self.targets, &targets_pub)?;
        Ok(InitialMetadata {
            gun: self.gun.to_string(),
            targets_key_id: targets_pub.key_id(),
            root_key,
            snapshot_key,
            timestamp_key,
            files: vec![root, targets],
        })
    }

    /// Creates the repository on the server: checks that the GUN has no trust data yet
    /// ([`Error::RepositoryExists`] otherwise, with nothing published), fetches the server's
    /// snapshot and timestamp keys, and publishes root v1 + targets v1 in one POST.
    pub async fn create(&self, client: &NotaryClient, now: Timestamp) -> Result<InitialMetadata> {
        check_gun(self.gun)?;
        // Refuse before anything else: even fetching the server keys may make new keys for
        // someone else's repository.
        if client.get_role(self.gun, "root").await?.is_some() {
            return Err(Error::RepositoryExists {
                gun: self.gun.to_string(),
            });
        }
        // One after the other: notary-signer's memory store crashes on concurrent key creation
        // (a Go map race, seen on the testbed); a database-backed signer would not mind.
        let snapshot = client.server_key(self.gun, "snapshot").await?;
        let timestamp = client.server_key(self.gun, "timestamp").await?;
        let meta = self.sign(snapshot, timestamp, now)?;
        match client.publish(self.gun, &meta.files).await {
            Ok(()) => Ok(meta),
            Err(e) => self.after_failed_publish(client, meta, e).await,
        }
    }

    /// A failed publish may hide two things, told apart by the root the server now serves:
    /// another writer created the GUN in between (the server refused our root), or our upload
    /// landed and only the answer was lost (the server writes root and targets atomically, and
    /// our root, with its fresh certificate, cannot come from anyone else).
    async fn after_failed_publish(
        &self,
        client: &NotaryClient,
        meta: InitialMetadata,
        e: Error,
    ) -> Result<InitialMetadata> {
        match client.get_role(self.gun, "root").await {
            Ok(Some(served)) if served == meta.files[0].bytes => Ok(meta),
            Ok(Some(_)) => Err(Error::RepositoryExists {
                gun: self.gun.to_string(),
            }),
            _ => Err(e),
        }
    }
}

/// Creates `gun` with the given root and targets keys (see [`NewRepository::create`]).
pub async fn create_repository(
    client: &NotaryClient,
    gun: &str,
    root: &SigningKey,
    targets: &dyn Signer,
    now: Timestamp,
) -> Result<InitialMetadata> {
    NewRepository::new(gun, root, targets)
        .create(client, now)
        .await
}

/// Generates a root and a targets key and creates `gun` with them, in one call. Export the keys
/// with [`SigningKey::export_pem`] to hand them to notary or Docker.
pub async fn create_repository_with_new_keys(
    client: &NotaryClient,
    gun: &str,
    now: Timestamp,
) -> Result<(InitialMetadata, RepositoryKeys)> {
    let keys = RepositoryKeys::generate(gun)?;
    let meta = create_repository(client, gun, &keys.root, &keys.targets, now).await?;
    Ok((meta, keys))
}

/// A GUN goes verbatim into URLs (`/v2/<GUN>/_trust/tuf/`), the certificate's CN and key file
/// headers: the characters of image references (`host[:port]/path`), non-empty segments, no
/// `.`/`..` segments.
pub fn check_gun(gun: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-:/".contains(c);
    let reason = if gun.is_empty() {
        "it is empty"
    } else if gun.len() > 255 {
        "it is longer than 255 bytes"
    } else if !gun.chars().all(allowed) {
        "only letters, digits and . _ - : / may appear in it"
    } else if gun
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        "it has an empty, `.` or `..` path segment"
    } else {
        return Ok(());
    };
    Err(invalid(
        "GUN",
        gun,
        &format!("{reason}; a GUN is the image repository, e.g. registry.example.com/team/app"),
    ))
}

/// A direct child of `targets` whose name notary accepts (`^[-a-z0-9_/]+$`, §1).
fn check_delegation_name(name: &str) -> Result<()> {
    let child = name.strip_prefix("targets/").unwrap_or("");
    if child.is_empty()
        || child.contains('/')
        || !child
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(invalid(
            "delegation",
            name,
            "a first delegation is `targets/<name>` with lower-case letters, digits, - and _",
        ));
    }
    Ok(())
}

fn invalid(what: &str, name: &str, reason: &str) -> Error {
    Error::InvalidName {
        what: what.into(),
        name: name.into(),
        reason: reason.into(),
    }
}

/// The root certificate `notary init` makes for `gun` (§4.5): self-signed by `root`, CN = GUN,
/// valid 3650 days from `now`, KeyUsage digitalSignature + keyEncipherment (critical),
/// ExtKeyUsage codeSigning, BasicConstraints CA:FALSE (critical), a random 128-bit serial,
/// ecdsa-with-SHA256. Returned as the `ecdsa-x509` key root.json lists (PEM text).
pub fn root_certificate(root: &SigningKey, gun: &str, now: Timestamp) -> Result<PublicKey> {
    check_gun(gun)?;
    let fail = |reason: String| Error::Certificate {
        gun: gun.to_string(),
        reason,
    };
    let sk = root.p256().ok_or_else(|| Error::UnsupportedKey {
        key: root.key_id().to_string(),
        what: "a root certificate needs an ECDSA P-256 root key".into(),
    })?;
    let spki = SubjectPublicKeyInfoOwned::from_key(sk.verifying_key())
        .map_err(|e| fail(format!("public key: {e}")))?;
    let until = now
        .checked_add(ROOT_CERT_LIFETIME)
        .map_err(|e| fail(e.to_string()))?;
    let validity = Validity::new(cert_time(now, gun)?, cert_time(until, gun)?);
    let profile = NotaryRoot {
        subject: common_name(gun).map_err(|e| fail(format!("subject: {e}")))?,
    };
    let builder = CertificateBuilder::new(profile, random_serial(gun)?, validity, spki)
        .map_err(|e| fail(e.to_string()))?;
    let cert = builder
        .build::<_, p256::ecdsa::DerSignature>(&sk)
        .map_err(|e| fail(e.to_string()))?;
    let der = cert.to_der().map_err(|e| fail(e.to_string()))?;
    // notary stores the certificate as PEM text (LF, no headers), as PublicKey::from_pem reads it.
    let text = pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    Ok(PublicKey {
        keytype: "ecdsa-x509".into(),
        public: text.into_bytes(),
    })
}

/// The certificate profile of notary's root certificates (Go's `utils.NewCertificate`).
struct NotaryRoot {
    subject: Name,
}

impl BuilderProfile for NotaryRoot {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    /// In Go's order: KeyUsage, ExtKeyUsage, BasicConstraints; no key identifiers (Go adds a
    /// SubjectKeyId only to CA certificates).
    fn build_extensions(
        &self,
        _spk: x509_cert::spki::SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: x509_cert::spki::SubjectPublicKeyInfoRef<'_>,
        tbs: &x509_cert::TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        use x509_cert::der::oid::db::rfc5280::ID_KP_CODE_SIGNING;
        let subject = tbs.subject();
        Ok(vec![
            (&KeyUsage(KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment))
                .to_extension(subject, &[])?,
            (&ExtendedKeyUsage(vec![ID_KP_CODE_SIGNING])).to_extension(subject, &[])?,
            (
                true,
                &BasicConstraints {
                    ca: false,
                    path_len_constraint: None,
                },
            )
                .to_extension(subject, &[])?,
        ])
    }
}

/// `CN=<gun>` as Go encodes it: PrintableString when every character allows it, else
/// UTF8String (`_` is not printable in ASN.1's sense).
fn common_name(gun: &str) -> x509_cert::der::Result<Name> {
    use x509_cert::attr::AttributeTypeAndValue;
    use x509_cert::der::oid::db::rfc4519::CN;
    let printable = gun
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c));
    let tag = if printable {
        Tag::PrintableString
    } else {
        Tag::Utf8String
    };
    let atv = AttributeTypeAndValue {
        oid: CN,
        value: Any::new(tag, gun.as_bytes())?,
    };
    let rdns = RdnSequence::from(vec![RelativeDistinguishedName::try_from(vec![atv])?]);
    Name::from_der(&rdns.to_der()?)
}

/// A random positive serial below 2^128 (Go: `rand.Int(rand.Reader, 1<<128)`).
fn random_serial(gun: &str) -> Result<SerialNumber> {
    let bytes: [u8; 16] = rand::random();
    SerialNumber::new(&bytes).map_err(|e| Error::Certificate {
        gun: gun.to_string(),
        reason: format!("serial: {e}"),
    })
}

fn cert_time(t: Timestamp, gun: &str) -> Result<Time> {
    Time::try_from(SystemTime::from(t)).map_err(|e| Error::Certificate {
        gun: gun.to_string(),
        reason: format!("time {t}: {e}"),
    })
}

fn key_entry(keys: &mut Map<String, Value>, key: &PublicKey) -> String {
    let id = key.key_id();
    keys.insert(id.clone(), key.to_value());
    id
}

/// root.json v1 (§2.3): the four base roles, one key each, threshold 1.
fn root_body(
    root: &PublicKey,
    targets: &PublicKey,
    snapshot: &PublicKey,
    timestamp: &PublicKey,
    expires: Timestamp,
) -> Value {
    let mut keys = Map::new();
    let mut roles = Map::new();
    for (role, key) in [
        ("root", root),
        ("snapshot", snapshot),
        ("targets", targets),
        ("timestamp", timestamp),
    ] {
        let id = key_entry(&mut keys, key);
        roles.insert(role.into(), json!({"keyids": [id], "threshold": 1}));
    }
    json!({
        "_type": "Root",
        "consistent_snapshot": false,
        "expires": time::format(expires),
        "keys": keys,
        "roles": roles,
        "version": 1,
    })
}

/// targets.json v1 (§2.4): no targets; the given delegations in order, threshold 1, `paths`
/// omitted when empty.
fn targets_body(delegations: &[InitialDelegation], expires: Timestamp) -> Value {
    let mut keys = Map::new();
    let roles: Vec<Value> = delegations
        .iter()
        .map(|d| {
            let ids: Vec<String> = d.keys.iter().map(|k| key_entry(&mut keys, k)).collect();
            let mut role = json!({"keyids": ids, "name": d.name, "threshold": 1});
            if !d.paths.is_empty() {
                role["paths"] = json!(d.paths);
            }
            role
        })
        .collect();
    json!({
        "_type": "Targets",
        "delegations": {"keys": keys, "roles": roles},
        "expires": time::format(expires),
        "targets": {},
        "version": 1,
    })
}

/// Signs `body` with `key`, labelled with `listed`'s TUF ID (the certificate's for root), into
/// Go's file bytes, and checks the signature against the listed key as a reader will.
fn sign_v1(role: &str, body: &Value, key: &dyn Signer, listed: &PublicKey) -> Result<SignedFile> {
    let msg = canonical::to_vec(body).map_err(|e| Error::invalid(role, e.to_string()))?;
    let id = listed.key_id();
    let bytes = file_bytes(&msg, &[super::edit::tuf_signature(key, &id, &msg)?]);
    let env = Envelope::parse(role, &bytes)?;
    let keys = [(id.clone(), listed.clone())].into();
    if count_valid(&env, &keys, std::slice::from_ref(&id)) != 1 {
        return Err(Error::KeyNotSigner {
            role: role.into(),
            accepted: vec![listed.canonical_id()?],
            offered: vec![key.key_id().to_string()],
        });
    }
    Ok(SignedFile {
        role: role.into(),
        version: 1,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gun_rules() {
        for ok in [
            "example.com/a",
            "127.0.0.1:5000/team/app_x",
            "docker.io/library/alpine",
        ] {
            check_gun(ok).unwrap();
        }
        for bad in [
            "", "/a", "a/", "a//b", "a/../b", "a b", "a\nb", "a*", "a?b", "é/x",
        ] {
            assert!(
                matches!(check_gun(bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn delegation_names() {
        check_delegation_name("targets/releases").unwrap();
        check_delegation_name("targets/ci-bot_2").unwrap();
        for bad in [
            "targets",
            "targets/",
            "releases",
            "targets/a/b",
            "targets/Up",
        ] {
            assert!(check_delegation_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn common_name_string_types_follow_go() {
        let der = |gun| common_name(gun).unwrap().to_der().unwrap();
        // 0x13 PrintableString, 0x0c UTF8String, right after the CN OID 55 04 03.
        assert!(
            der("example.com/a")
                .windows(4)
                .any(|w| w == [4, 3, 0x13, 13])
        );
        assert!(
            der("example.com/a_b")
                .windows(4)
                .any(|w| w == [4, 3, 0x0c, 15])
        );
    }
}
