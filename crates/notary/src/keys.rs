//! Keys: public key objects and their IDs, signature verification, private key import
//! (notary's PEM files) and signing.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::canonical;
use super::error::{Error, Result};
use super::metadata::Signature;

/// A public key as metadata lists it: `{"keytype":T,"keyval":{"private":null,"public":base64(P)}}`.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// `ecdsa`, `ecdsa-x509`, `rsa`, `rsa-x509` or `ed25519`.
    pub keytype: String,
    /// SPKI DER (`ecdsa`, `rsa`), PEM certificate text (`*-x509`), raw 32 bytes (`ed25519`).
    pub public: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.keytype, self.key_id())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct KeyVal {
            public: String,
        }
        #[derive(Deserialize)]
        struct Obj {
            keytype: String,
            keyval: KeyVal,
        }
        let o = Obj::deserialize(d)?;
        let public = B64
            .decode(o.keyval.public.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("public key is not base64: {e}")))?;
        Ok(PublicKey {
            keytype: o.keytype,
            public,
        })
    }
}

/// A lower-case hex TUF key ID.
pub fn key_id_of(keytype: &str, public: &[u8]) -> String {
    let obj = json!({"keytype": keytype, "keyval": {"private": Value::Null, "public": B64.encode(public)}});
    let c = canonical::to_vec(&obj).expect("strings only");
    hex::encode(Sha256::digest(&c))
}

impl PublicKey {
    /// The key object as written in metadata (`"private":null`).
    pub fn to_value(&self) -> Value {
        json!({"keytype": self.keytype, "keyval": {"private": Value::Null, "public": B64.encode(&self.public)}})
    }

    /// TUF key ID (used inside metadata).
    pub fn key_id(&self) -> String {
        key_id_of(&self.keytype, &self.public)
    }

    /// Canonical key ID (private key file names, listings): for `*-x509` keys the ID of the
    /// certificate's SPKI as a plain key, otherwise the TUF ID.
    pub fn canonical_id(&self) -> Result<String> {
        match self.keytype.as_str() {
            "ecdsa-x509" => Ok(key_id_of("ecdsa", &self.spki_der()?)),
            "rsa-x509" => Ok(key_id_of("rsa", &self.spki_der()?)),
            _ => Ok(self.key_id()),
        }
    }

    /// The certificate of an `*-x509` key.
    pub fn certificate(&self) -> Result<x509_cert::Certificate> {
        use x509_cert::der::Decode;
        let p = pem::parse(&self.public).map_err(|e| self.malformed(e.to_string()))?;
        x509_cert::Certificate::from_der(p.contents()).map_err(|e| self.malformed(e.to_string()))
    }

    /// SPKI DER of `ecdsa`/`rsa` keys and of certificates.
    pub fn spki_der(&self) -> Result<Vec<u8>> {
        use x509_cert::der::Encode;
        match self.keytype.as_str() {
            "ecdsa" | "rsa" => Ok(self.public.clone()),
            "ecdsa-x509" | "rsa-x509" => self
                .certificate()?
                .tbs_certificate()
                .subject_public_key_info()
                .to_der()
                .map_err(|e| self.malformed(e.to_string())),
            other => Err(Error::UnsupportedKey {
                key: self.key_id(),
                what: format!("key type {other} has no SPKI"),
            }),
        }
    }

    fn malformed(&self, reason: String) -> Error {
        Error::MalformedKey {
            key: key_id_of(&self.keytype, &self.public),
            reason,
        }
    }

    /// Reads a `PUBLIC KEY` (→ `ecdsa`/`rsa`) or `CERTIFICATE` (→ `ecdsa-x509`/`rsa-x509`, the
    /// PEM text as notary stores it) block, as `notary delegation add` does.
    pub fn from_pem(pem_bytes: &[u8]) -> Result<PublicKey> {
        let bad = |reason: String| Error::MalformedKey {
            key: "public key PEM".into(),
            reason,
        };
        let p = pem::parse(pem_bytes).map_err(|e| bad(e.to_string()))?;
        let (spki, cert) = match p.tag() {
            "PUBLIC KEY" => (p.contents().to_vec(), false),
            "CERTIFICATE" => {
                use x509_cert::der::{Decode, Encode};
                let c = x509_cert::Certificate::from_der(p.contents())
                    .map_err(|e| bad(e.to_string()))?;
                let spki = c
                    .tbs_certificate()
                    .subject_public_key_info()
                    .to_der()
                    .map_err(|e| bad(e.to_string()))?;
                (spki, true)
            }
            other => return Err(bad(format!("{other} block is not a public key"))),
        };
        let oid = der_next(&spki)
            .and_then(|(_, body, _)| der_next(body))
            .and_then(|(_, alg, _)| der_next(alg))
            .map(|(_, oid, _)| oid)
            .ok_or_else(|| bad("bad SubjectPublicKeyInfo".into()))?;
        let base = if oid == OID_EC {
            "ecdsa"
        } else if oid == OID_RSA {
            "rsa"
        } else {
            return Err(Error::UnsupportedKey {
                key: "public key PEM".into(),
                what: format!("algorithm OID {}", hex::encode(oid)),
            });
        };
        Ok(if cert {
            // notary stores the certificate as PEM text without headers.
            let text = pem::encode_config(
                &pem::Pem::new("CERTIFICATE", p.contents().to_vec()),
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            );
            PublicKey {
                keytype: format!("{base}-x509"),
                public: text.into_bytes(),
            }
        } else {
            PublicKey {
                keytype: base.into(),
                public: spki,
            }
        })
    }

    /// Verifies `sig` (decoded) over `msg` with `method`. Any failure is `false`.
    pub fn verify(&self, method: &str, msg: &[u8], sig: &[u8]) -> bool {
        match (method, self.keytype.as_str()) {
            ("ecdsa", "ecdsa" | "ecdsa-x509") => {
                use p256::pkcs8::der::Decode;
                let Ok(spki) = self.spki_der() else {
                    return false;
                };
                let Ok(info) = p256::pkcs8::spki::SubjectPublicKeyInfoRef::from_der(&spki) else {
                    return false;
                };
                let curve = info.algorithm.parameters_oid().ok();
                let Some(point) = info.subject_public_key.as_bytes() else {
                    return false;
                };
                // aws-lc (already linked for TLS) verifies several times faster than the p256
                // crate, and an update checks every role's signatures.
                use aws_lc_rs::signature::{
                    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA256_ASN1, UnparsedPublicKey,
                };
                // Raw r||s of the curve's size only, over SHA-256 whatever the curve, as the Go
                // client checks; DER is rejected by notary.
                match curve.as_ref().map(|o| o.as_bytes()) {
                    Some(OID_P256) if sig.len() == 64 => {
                        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                            .verify(msg, sig)
                            .is_ok()
                    }
                    // aws-lc has P-384 with SHA-256 only in DER form.
                    Some(OID_P384) if sig.len() == 96 => {
                        UnparsedPublicKey::new(&ECDSA_P384_SHA256_ASN1, point)
                            .verify(msg, &ecdsa_fixed_to_der(sig))
                            .is_ok()
                    }
                    _ => false,
                }
            }
            ("rsapss" | "rsapkcs1v15", "rsa" | "rsa-x509") => {
                use rsa::pkcs8::DecodePublicKey;
                use rsa::signature::Verifier;
                use rsa::traits::PublicKeyParts;
                let Ok(spki) = self.spki_der() else {
                    return false;
                };
                let Ok(pk) = rsa::PublicKey::from_public_key_der(&spki) else {
                    return false;
                };
                if pk.size() * 8 < 2048 {
                    return false;
                }
                if method == "rsapss" {
                    let vk = rsa::pss::VerifyingKey::<rsa::sha2::Sha256>::new_with_salt_len(pk, 32);
                    let Ok(s) = rsa::pss::Signature::try_from(sig) else {
                        return false;
                    };
                    vk.verify(msg, &s).is_ok()
                } else {
                    let vk = rsa::pkcs1v15::VerifyingKey::<rsa::sha2::Sha256>::new(pk);
                    let Ok(s) = rsa::pkcs1v15::Signature::try_from(sig) else {
                        return false;
                    };
                    vk.verify(msg, &s).is_ok()
                }
            }
            ("eddsa", "ed25519") => {
                use ed25519_dalek::Verifier;
                let Ok(bytes) = <[u8; 32]>::try_from(self.public.as_slice()) else {
                    return false;
                };
                let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&bytes) else {
                    return false;
                };
                let Ok(s) = ed25519_dalek::Signature::from_slice(sig) else {
                    return false;
                };
                vk.verify(msg, &s).is_ok()
            }
            _ => false,
        }
    }
}

enum Secret {
    /// aws-lc: loading a key (its public point, checked against the private scalar) and
    /// signing are on the path of every run, and aws-lc does both several times faster than
    /// the p256 crate, which only builds certificates and exports ([`SigningKey::p256`]).
    P256(aws_lc_rs::signature::EcdsaKeyPair),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

/// A private key able to sign metadata (ECDSA P-256, or Ed25519). Its `Debug` shows only the
/// key ID; the secret is zeroized on drop by the underlying crates.
pub struct SigningKey {
    secret: Secret,
    public: PublicKey,
    id: String,
    headers: BTreeMap<String, String>,
    notary_compatible: bool,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.id)
    }
}

const OID_EC: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
/// `secp256r1` (prime256v1), the named curve of notary's ECDSA keys.
const OID_P256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
/// `secp384r1`: verified (the Go client accepts such keys in metadata), never used to sign.
const OID_P384: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x22];
const OID_RSA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
const OID_ED25519_NOTARY: &[u8] = &[0x2B, 0x06, 0x01, 0x04, 0x01, 0xDA, 0x47, 0x0F, 0x01];
const OID_ED25519: &[u8] = &[0x2B, 0x65, 0x70];

impl SigningKey {
    /// Reads every private key block of a PEM file: `notary key export` output (encrypted
    /// PKCS#8 with `role`/`gun`/`path` headers, several blocks), unencrypted `PRIVATE KEY`,
    /// `EC PRIVATE KEY` (plain or legacy `DEK-Info` encryption). Other blocks (certificates,
    /// public keys) are skipped. A `path:` header must name the key the block holds.
    pub fn from_pem(
        pem_bytes: &[u8],
        passphrase: Option<&SecretString>,
    ) -> Result<Vec<SigningKey>> {
        Self::from_pem_with(pem_bytes, |_| passphrase.cloned())
    }

    /// Whether every private key in `pem` says `role: root` in its headers: the root key signs
    /// only the root role, never targets, so a signer given it is told so before any
    /// decryption. Read from the headers alone (no passphrase, no key derivation).
    pub fn pem_holds_only_root_keys(pem_bytes: &[u8]) -> bool {
        if pem_bytes.len() > MAX_KEY_BYTES {
            return false;
        }
        let Ok(blocks) = pem::parse_many(pem_bytes) else {
            return false;
        };
        let mut keys = blocks.iter().filter(|b| b.tag().ends_with("PRIVATE KEY"));
        let mut any = false;
        let all_root = keys.all(|b| {
            any = true;
            b.headers().get("role") == Some("root")
        });
        any && all_root
    }

    /// Like [`SigningKey::from_pem`], choosing each block's passphrase from its headers (a whole
    /// key store export mixes root, targets and delegation passphrases).
    pub fn from_pem_with(
        pem_bytes: &[u8],
        passphrase_for: impl Fn(&BTreeMap<String, String>) -> Option<SecretString>,
    ) -> Result<Vec<SigningKey>> {
        if pem_bytes.len() > MAX_KEY_BYTES {
            return Err(Error::MalformedKey {
                key: "PEM".into(),
                reason: format!(
                    "{} bytes, more than the {MAX_KEY_BYTES} a key file may have (notary's are \
                     under 2 KiB); give the PEM `notary key export` wrote",
                    pem_bytes.len()
                ),
            });
        }
        let mut budget = KdfBudget::default();
        let blocks = pem::parse_many(pem_bytes).map_err(|e| Error::MalformedKey {
            key: "PEM".into(),
            reason: e.to_string(),
        })?;
        // Every block's decoded bytes go into a zeroizing buffer before any of them is looked
        // at, so that an early return (a bad block) leaves no plaintext key behind either.
        let blocks: Vec<_> = blocks
            .into_iter()
            .map(|block| {
                let headers: BTreeMap<String, String> = block
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let tag = block.tag().to_string();
                (tag, headers, Zeroizing::new(block.into_contents()))
            })
            .collect();
        let mut out = Vec::new();
        for (i, (tag, headers, der)) in blocks.into_iter().enumerate() {
            let label = headers
                .get("path")
                .or_else(|| headers.get("role"))
                .map(|s| format!("{s} (block {})", i + 1))
                .unwrap_or_else(|| format!("block {}", i + 1));
            let mut notary_compatible = true;
            let secret = match tag.as_str() {
                "ENCRYPTED PRIVATE KEY" => {
                    let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der.as_slice())
                        .map_err(|e| malformed(&label, e.to_string()))?;
                    // The file chooses what its key derivation costs: bounded before the
                    // passphrase is even looked at.
                    check_key_encryption(&info, &label, &mut budget)?;
                    let pass = passphrase_for(&headers);
                    let pass = pass.as_ref().ok_or_else(|| Error::WrongPassphrase {
                        key: format!("{label}: encrypted, no passphrase given"),
                    })?;
                    // notary assumes PBKDF2-HMAC-SHA1 + AES-256-CBC (OpenSSL 3 defaults differ).
                    notary_compatible = info.encryption_algorithm.pbes2().is_some_and(|p| {
                        p.kdf
                            .pbkdf2()
                            .is_some_and(|k| k.prf == pkcs8::pkcs5::pbes2::Pbkdf2Prf::HmacWithSha1)
                            && matches!(
                                p.encryption,
                                pkcs8::pkcs5::pbes2::EncryptionScheme::Aes256Cbc { .. }
                            )
                    });
                    let plain = match decrypt_pbes2(&info, pass, &label)? {
                        Some(plain) => plain,
                        // What is left (scrypt, PBKDF2-HMAC-SHA224), its cost checked above.
                        None => Zeroizing::new(
                            info.decrypt(pass.expose_secret().as_bytes())
                                .map_err(|e| match e {
                                    pkcs8::Error::EncryptedPrivateKey(
                                        pkcs8::pkcs5::Error::UnsupportedAlgorithm { oid },
                                    ) => Error::KeyEncryption {
                                        key: label.clone(),
                                        what: format!("the unsupported algorithm {oid}"),
                                    },
                                    pkcs8::Error::EncryptedPrivateKey(
                                        pkcs8::pkcs5::Error::DecryptFailed,
                                    )
                                    | pkcs8::Error::Asn1(_) => {
                                        Error::WrongPassphrase { key: label.clone() }
                                    }
                                    other => malformed(&label, other.to_string()),
                                })?
                                .as_bytes()
                                .to_vec(),
                        ),
                    };
                    parse_private_key_info(&plain, &label).map_err(|e| match e {
                        // Valid padding by chance with a wrong passphrase gives garbage DER.
                        Error::MalformedKey { .. } => Error::WrongPassphrase { key: label.clone() },
                        other => other,
                    })?
                }
                "PRIVATE KEY" => parse_private_key_info(&der, &label)?,
                "EC PRIVATE KEY" => {
                    let plain = if headers
                        .get("Proc-Type")
                        .is_some_and(|v| v.contains("ENCRYPTED"))
                    {
                        let pass = passphrase_for(&headers);
                        let pass = pass.as_ref().ok_or_else(|| Error::WrongPassphrase {
                            key: format!("{label}: encrypted, no passphrase given"),
                        })?;
                        legacy_decrypt(&der, headers.get("DEK-Info"), pass, &label)?
                    } else {
                        der.clone()
                    };
                    Secret::P256(p256_from_sec1(&plain).map_err(|e| {
                        if headers.contains_key("DEK-Info") {
                            Error::WrongPassphrase { key: label.clone() }
                        } else {
                            malformed(&label, format!("SEC1: {e}"))
                        }
                    })?)
                }
                "RSA PRIVATE KEY" | "ED25519 PRIVATE KEY" => {
                    return Err(Error::UnsupportedKey {
                        key: label,
                        what: format!("{tag} cannot sign here"),
                    });
                }
                _ => continue,
            };
            let public = public_of(&secret, &label)?;
            let id = public.key_id();
            if let Some(path) = headers.get("path") {
                // Old exports wrote `tuf_keys/<gun>/<id>`: the last segment is the ID.
                let declared = path.rsplit('/').next().unwrap_or(path);
                if declared != id {
                    return Err(Error::KeyIdMismatch {
                        declared: declared.to_string(),
                        actual: id,
                    });
                }
            }
            out.push(SigningKey {
                secret,
                public,
                id,
                headers,
                notary_compatible,
            });
        }
        if out.is_empty() {
            return Err(Error::MalformedKey {
                key: "PEM".into(),
                reason: "no private key block found".into(),
            });
        }
        Ok(out)
    }

    /// The key's ID (TUF ID = canonical ID for plain keys).
    pub fn key_id(&self) -> &str {
        &self.id
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// False for an encrypted block that notary and Docker cannot decrypt (a PRF other than
    /// HMAC-SHA1, e.g. OpenSSL 3's default hmacWithSHA256): trustkeeper can sign with it, but
    /// hand it to the Go tools only re-encrypted (notary-v1.md §5.2).
    pub fn notary_compatible(&self) -> bool {
        self.notary_compatible
    }

    /// PEM headers (`role`, `gun`, `path`, …).
    pub fn headers(&self) -> &BTreeMap<String, String> {
        &self.headers
    }

    pub fn role(&self) -> Option<&str> {
        self.headers.get("role").map(String::as_str)
    }

    pub fn gun(&self) -> Option<&str> {
        self.headers.get("gun").map(String::as_str)
    }

    /// The TUF signature over `msg` (canonical bytes), labelled with `label_key_id` (the TUF ID
    /// the role lists, which differs from ours for certificate keys). The raw bytes alone, for
    /// other formats, come from [`Signer::sign`].
    pub fn sign(&self, msg: &[u8], label_key_id: &str) -> Signature {
        super::edit::tuf_signature(self, label_key_id, msg)
            .expect("a local key signs without failing")
    }

    /// The raw signature ([`SignatureAlgorithm`] says its encoding); never fails.
    fn sign_raw(&self, msg: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer as _;
        match &self.secret {
            Secret::P256(pair) => {
                // Fixed-length r‖s, as notary writes; aws-lc draws the nonce itself. It fails
                // only on an internal error (allocation), as the p256 crate would panic then.
                let s = pair
                    .sign(&aws_lc_rs::rand::SystemRandom::new(), msg)
                    .expect("ECDSA P-256 signing with a checked key");
                s.as_ref().to_vec()
            }
            Secret::Ed25519(sk) => sk.sign(msg).to_bytes().to_vec(),
        }
    }
}

/// What a [`Signer`] computes and how its signature bytes are encoded. A format maps it to its
/// own name (TUF: [`SignatureAlgorithm::EcdsaP256Sha256`] is method `ecdsa`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureAlgorithm {
    /// ECDSA over P-256 of the message's SHA-256; the signature is `r‖s`, each 32 bytes
    /// big-endian (64 bytes, not DER).
    EcdsaP256Sha256,
    /// Ed25519 (RFC 8032, pure) over the message; 64 bytes.
    Ed25519,
}

impl SignatureAlgorithm {
    /// The length of every signature of this algorithm, in the encoding documented above.
    pub const fn signature_len(self) -> usize {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 | SignatureAlgorithm::Ed25519 => 64,
        }
    }
}

/// A private key that signs bytes, wherever it lives (a PEM file's key, a KMS key later). It
/// knows nothing of TUF: the notary editor wraps what [`Signer::sign`] returns into a TUF
/// signature, another format into its own.
///
/// `Debug` must show no key material (the ID is enough).
pub trait Signer: fmt::Debug + Send + Sync {
    /// Notary's canonical key ID (hex SHA-256 of the plain key object; for a certificate key
    /// the ID of its public key, not of the certificate).
    fn key_id(&self) -> &str;

    /// The public key, as metadata lists it.
    fn public_key(&self) -> &PublicKey;

    fn algorithm(&self) -> SignatureAlgorithm;

    /// Signs `msg` (the bytes themselves; the algorithm hashes them), returning the signature
    /// encoded as [`Signer::algorithm`] says. A remote signer's failure is
    /// [`Error::Signing`].
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>>;
}

impl Signer for SigningKey {
    fn key_id(&self) -> &str {
        &self.id
    }

    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        match self.secret {
            Secret::P256(_) => SignatureAlgorithm::EcdsaP256Sha256,
            Secret::Ed25519(_) => SignatureAlgorithm::Ed25519,
        }
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>> {
        Ok(self.sign_raw(msg))
    }
}

impl<S: Signer + ?Sized> Signer for Box<S> {
    fn key_id(&self) -> &str {
        (**self).key_id()
    }
    fn public_key(&self) -> &PublicKey {
        (**self).public_key()
    }
    fn algorithm(&self) -> SignatureAlgorithm {
        (**self).algorithm()
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>> {
        (**self).sign(msg)
    }
}

/// Where signing keys come from: a PEM file or Secret today ([`PemKeySource`]), a KMS later.
/// One source may hold several keys (a PEM file has a block per key).
pub trait KeySource: fmt::Debug + Send + Sync {
    fn signers(&self) -> Result<Vec<Box<dyn Signer>>>;
}

/// Keys in notary's PEM files ([`SigningKey::from_pem`]), borrowed from the caller, which keeps
/// them zeroized. `Debug` shows the size only.
pub struct PemKeySource<'a> {
    pub pem: &'a [u8],
    pub passphrase: Option<&'a SecretString>,
}

impl fmt::Debug for PemKeySource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PemKeySource({} bytes, passphrase {})",
            self.pem.len(),
            if self.passphrase.is_some() {
                "given"
            } else {
                "none"
            }
        )
    }
}

impl KeySource for PemKeySource<'_> {
    fn signers(&self) -> Result<Vec<Box<dyn Signer>>> {
        Ok(SigningKey::from_pem(self.pem, self.passphrase)?
            .into_iter()
            .map(|k| Box::new(k) as Box<dyn Signer>)
            .collect())
    }
}

/// Roles whose key files carry a `gun:` header (notary-v1.md §5.1): notary drops it for root and
/// delegation keys, and `notary key import` refuses these three roles without it.
fn role_has_gun(role: &str) -> bool {
    matches!(role, "targets" | "snapshot" | "timestamp")
}

/// PBKDF2 iterations of notary's key files (§5.2).
const NOTARY_PBKDF2_ITERATIONS: u32 = 2048;

impl SigningKey {
    /// A new ECDSA P-256 key for `role`, as `notary init` / `notary key generate` make them.
    /// `gun` becomes a `gun:` header only for `targets`, `snapshot` and `timestamp` keys (where
    /// notary requires it); it is ignored for root and delegation keys (pass `""`).
    pub fn generate_ecdsa(role: &str, gun: &str) -> Result<SigningKey> {
        check_header_value("role", role)?;
        let mut headers = BTreeMap::from([("role".to_string(), role.to_string())]);
        if role_has_gun(role) {
            check_header_value("gun", gun)?;
            headers.insert("gun".into(), gun.into());
        }
        let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        )
        .map_err(|e| {
            Error::Config(format!(
                "the system random number generator failed ({e}); no key was made"
            ))
        })?;
        let secret = Secret::P256(pair);
        let public = public_of(&secret, role)?;
        Ok(SigningKey {
            id: public.key_id(),
            secret,
            public,
            headers,
            notary_compatible: true,
        })
    }

    /// The ECDSA key behind this key, for signing things other than metadata (the root
    /// certificate, a Notation signing certificate). It zeroizes on drop.
    pub fn p256(&self) -> Option<p256::ecdsa::SigningKey> {
        use aws_lc_rs::encoding::AsBigEndian;
        match &self.secret {
            Secret::P256(pair) => {
                // Both buffers zeroize on drop (aws-lc's and the p256 key).
                let scalar = pair.private_key().as_be_bytes().ok()?;
                p256::ecdsa::SigningKey::from_slice(scalar.as_ref()).ok()
            }
            Secret::Ed25519(_) => None,
        }
    }

    /// This key exactly as `notary key export` writes it (notary-v1.md §5): one
    /// `ENCRYPTED PRIVATE KEY` block with the headers `gun` (targets/snapshot/timestamp keys
    /// only), `path` (the key ID) and `role`, sorted; PBES2 with PBKDF2-HMAC-SHA1 (no PRF
    /// field), 2048 iterations, an 8-byte salt and AES-256-CBC around notary's PKCS#8 layout.
    /// That is the only scheme notary decrypts: it ignores a PRF field, so a key encrypted with
    /// PBKDF2-HMAC-SHA256 imports into the Go client but then never signs (§5.2, §5.4).
    /// `notary key import` stores it as is; Docker and notary need `passphrase` to use it.
    pub fn export_pem(&self, passphrase: &SecretString) -> Result<String> {
        let pass = passphrase.expose_secret();
        // An empty NOTARY_*_PASSPHRASE counts as unset: the Go tools would prompt for ever.
        if pass.is_empty() {
            return Err(Error::KeyExport {
                key: self.id.clone(),
                reason: "empty passphrase; notary and Docker treat an empty passphrase as none \
                         and prompt, so give a non-empty one"
                    .into(),
            });
        }
        let plain = self.notary_private_key_info()?;
        let encrypted =
            encrypt_notary(&plain, pass.as_bytes()).map_err(|reason| Error::KeyExport {
                key: self.id.clone(),
                reason,
            })?;
        let block = pem_block("ENCRYPTED PRIVATE KEY", &self.export_headers()?, &encrypted);
        Ok(block.as_str().to_string())
    }

    /// The same layout unencrypted (`PRIVATE KEY`, same headers and inner PKCS#8), for stores
    /// that protect the key themselves. `notary key import` re-encrypts it with the passphrase
    /// of its role; [`SigningKey::from_pem`] reads it without one.
    pub fn export_pem_unencrypted(&self) -> Result<SecretString> {
        let plain = self.notary_private_key_info()?;
        let mut block = pem_block("PRIVATE KEY", &self.export_headers()?, &plain);
        // The buffer's capacity is exactly its length: moving it into the secret box does not
        // reallocate, so no unzeroized copy is left behind.
        Ok(SecretString::from(std::mem::take(&mut *block)))
    }

    /// `gun` (targets/snapshot/timestamp only), `path`, `role`: what `notary key export`
    /// writes; other headers of an imported block (`Proc-Type`, …) do not apply any more.
    fn export_headers(&self) -> Result<BTreeMap<String, String>> {
        let role = self.role().ok_or_else(|| Error::KeyExport {
            key: self.id.clone(),
            reason: "the key has no `role:` header; notary files every key under a role, so \
                     load it from a file with one or generate it for a role"
                .into(),
        })?;
        let mut h = BTreeMap::from([
            ("path".to_string(), self.id.clone()),
            ("role".to_string(), role.to_string()),
        ]);
        if role_has_gun(role) {
            let gun = self.gun().ok_or_else(|| Error::KeyExport {
                key: self.id.clone(),
                reason: format!(
                    "a {role} key needs a `gun:` header (notary refuses to import it without)"
                ),
            })?;
            h.insert("gun".into(), gun.to_string());
        }
        Ok(h)
    }

    /// PrivateKeyInfo as notary writes an ECDSA key (§5.3): version 1, {ecPublicKey, P-256},
    /// SEC1 `ECPrivateKey` with curve and public key inside, and no PKCS#8 `[1] publicKey`.
    fn notary_private_key_info(&self) -> Result<Zeroizing<Vec<u8>>> {
        let Some(sk) = self.p256() else {
            return Err(Error::UnsupportedKey {
                key: self.id.clone(),
                what: "only ECDSA P-256 keys can be exported (notary never holds Ed25519 \
                       private keys on a client)"
                    .into(),
            });
        };
        let sec1 = p256::SecretKey::from(sk.as_nonzero_scalar())
            .to_sec1_der()
            .map_err(|e| Error::KeyExport {
                key: self.id.clone(),
                reason: format!("SEC1 encoding: {e}"),
            })?;
        let mut alg = Vec::with_capacity(32);
        der_push(&mut alg, 0x06, OID_EC);
        der_push(&mut alg, 0x06, OID_P256);
        let mut body = Zeroizing::new(Vec::with_capacity(sec1.len() + alg.len() + 16));
        der_push(&mut body, 0x02, &[1]);
        der_push(&mut body, 0x30, &alg);
        der_push(&mut body, 0x04, &sec1);
        let mut out = Zeroizing::new(Vec::with_capacity(body.len() + 8));
        der_push(&mut out, 0x30, &body);
        Ok(out)
    }
}

/// A role or GUN goes into a PEM header line: one line, no surrounding blanks.
fn check_header_value(what: &str, value: &str) -> Result<()> {
    let reason = if value.is_empty() {
        "it is empty"
    } else if value.chars().any(char::is_control) {
        "it contains control characters"
    } else if value.trim() != value {
        "it starts or ends with blanks"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        what: what.into(),
        name: value.into(),
        reason: reason.into(),
    })
}

/// An ECDSA signature as fixed-length r‖s → DER `SEQUENCE { INTEGER r, INTEGER s }`.
/// (What [`Signer::sign`] returns → the encoding cosign and X.509 use.)
pub fn ecdsa_fixed_to_der(sig: &[u8]) -> Vec<u8> {
    let (r, s) = sig.split_at(sig.len() / 2);
    let mut body = Vec::with_capacity(sig.len() + 6);
    for half in [r, s] {
        // Minimal: no leading zero bytes, one 0x00 where the top bit would make it negative.
        let skip = half
            .iter()
            .take_while(|&&b| b == 0)
            .count()
            .min(half.len() - 1);
        let v = &half[skip..];
        let mut int = Vec::with_capacity(v.len() + 1);
        if v[0] & 0x80 != 0 {
            int.push(0);
        }
        int.extend_from_slice(v);
        der_push(&mut body, 0x02, &int);
    }
    let mut out = Vec::with_capacity(body.len() + 3);
    der_push(&mut out, 0x30, &body);
    out
}

/// Appends one DER TLV (definite length) to `out`.
fn der_push(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

/// `EncryptedPrivateKeyInfo` as notary writes it (§5.2), with a fresh salt and IV.
fn encrypt_notary(plain: &[u8], pass: &[u8]) -> std::result::Result<Vec<u8>, String> {
    use pkcs8::der::Encode as _;
    use pkcs8::pkcs5::pbes2;
    let salt: [u8; 8] = rand::random();
    let iv: [u8; 16] = rand::random();
    let kdf = pbes2::Pbkdf2Params {
        salt: salt.as_slice().try_into().map_err(|e| format!("{e}"))?,
        iteration_count: NOTARY_PBKDF2_ITERATIONS,
        key_length: None,
        // The DER default: encoded as no PRF field at all, as notary writes it.
        prf: pbes2::Pbkdf2Prf::HmacWithSha1,
    };
    let params = pbes2::Parameters {
        kdf: kdf.into(),
        encryption: pbes2::EncryptionScheme::Aes256Cbc { iv },
    };
    let ct = params
        .encrypt(pass, plain)
        .map_err(|e| format!("encryption: {e}"))?;
    pkcs8::EncryptedPrivateKeyInfoRef {
        encryption_algorithm: params.into(),
        encrypted_data: pkcs8::der::asn1::OctetStringRef::new(&ct)
            .map_err(|e| format!("DER: {e}"))?,
    }
    .to_der()
    .map_err(|e| format!("DER: {e}"))
}

/// One PEM block as Go's `pem.Encode` writes it: `Name: value` headers (sorted), a blank line,
/// base64 in 64-column lines, LF endings. Built in a zeroizing buffer of exactly the final
/// length (for an unencrypted key the text is the secret).
fn pem_block(tag: &str, headers: &BTreeMap<String, String>, der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(B64.encode(der));
    let begin = format!("-----BEGIN {tag}-----\n");
    let end = format!("-----END {tag}-----\n");
    let head_len: usize = headers.iter().map(|(k, v)| k.len() + v.len() + 3).sum();
    let blank = usize::from(!headers.is_empty());
    let body_len = b64.len() + b64.len().div_ceil(64);
    let mut out = Zeroizing::new(String::with_capacity(
        begin.len() + head_len + blank + body_len + end.len(),
    ));
    out.push_str(&begin);
    for (k, v) in headers {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push('\n');
    }
    if blank == 1 {
        out.push('\n');
    }
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&end);
    out
}

fn malformed(label: &str, reason: String) -> Error {
    Error::MalformedKey {
        key: label.to_string(),
        reason,
    }
}

/// The public key object of a private key.
fn public_of(secret: &Secret, label: &str) -> Result<PublicKey> {
    Ok(match secret {
        Secret::P256(pair) => {
            use aws_lc_rs::encoding::AsDer;
            use aws_lc_rs::signature::KeyPair;
            let der = pair
                .public_key()
                .as_der()
                .map_err(|e| malformed(label, e.to_string()))?;
            PublicKey {
                keytype: "ecdsa".into(),
                public: der.as_ref().to_vec(),
            }
        }
        Secret::Ed25519(sk) => PublicKey {
            keytype: "ed25519".into(),
            public: sk.verifying_key().to_bytes().to_vec(),
        },
    })
}

/// An ECDSA P-256 key from a SEC1 `ECPrivateKey` (RFC 5915; the curve may be left out, as
/// PKCS#8 names it). aws-lc checks that a public key given inside matches the scalar.
fn p256_from_sec1(
    sec1: &[u8],
) -> std::result::Result<aws_lc_rs::signature::EcdsaKeyPair, aws_lc_rs::error::KeyRejected> {
    aws_lc_rs::signature::EcdsaKeyPair::from_private_key_der(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        sec1,
    )
}

/// The largest key input read (file, standard input, environment, Secret data): notary's key
/// files are under 2 KiB, a whole key store export a few dozen of them.
pub const MAX_KEY_BYTES: usize = 1 << 20;

/// Iterations of PBKDF2 accepted in a key file, over all its blocks: 5,000 times notary's 2048,
/// and a bound on the CPU a hostile file can make a reconcile spend.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// scrypt bounds, over all blocks for the work: 8 times OpenSSL's default (N=2^14, r=8, p=1)
/// in work, 4 times in memory (128·N·r bytes). Neither notary nor Docker writes scrypt.
const MAX_SCRYPT_WORK: u64 = 1 << 20;
const MAX_SCRYPT_MEMORY: u64 = 64 << 20;

/// What a file's key derivations may still cost.
struct KdfBudget {
    pbkdf2_iterations: u64,
    scrypt_work: u64,
}

impl Default for KdfBudget {
    fn default() -> Self {
        KdfBudget {
            pbkdf2_iterations: MAX_PBKDF2_ITERATIONS.into(),
            scrypt_work: MAX_SCRYPT_WORK,
        }
    }
}

/// Refuses, before any derivation, an encryption that notary, Docker and OpenSSL do not write
/// (PBES1, ciphers other than AES-CBC/GCM) and key derivation parameters beyond the bounds
/// (iterations, scrypt N, r, p and memory), charging what is accepted to the file's budget.
fn check_key_encryption(
    info: &pkcs8::EncryptedPrivateKeyInfoRef<'_>,
    label: &str,
    budget: &mut KdfBudget,
) -> Result<()> {
    use pkcs8::pkcs5::pbes2::{EncryptionScheme, Kdf};
    let refuse = |what: String| Error::KeyEncryption {
        key: label.to_string(),
        what,
    };
    let Some(p) = info.encryption_algorithm.pbes2() else {
        return Err(refuse(
            "PBES1 (DES/RC2 with MD5 or SHA-1), which nothing should write any more".into(),
        ));
    };
    let key_len = match p.encryption {
        EncryptionScheme::Aes128Cbc { .. } | EncryptionScheme::Aes128Gcm { .. } => 16,
        EncryptionScheme::Aes192Cbc { .. } => 24,
        EncryptionScheme::Aes256Cbc { .. } | EncryptionScheme::Aes256Gcm { .. } => 32,
        _ => return Err(refuse("a cipher other than AES (DES or 3DES)".into())),
    };
    if p.kdf
        .key_length()
        .is_some_and(|l| usize::from(l) != key_len)
    {
        return Err(malformed(
            label,
            format!(
                "the key derivation makes {} bytes for a {key_len}-byte AES key",
                p.kdf.key_length().unwrap_or_default()
            ),
        ));
    }
    match &p.kdf {
        Kdf::Pbkdf2(k) => {
            let n = u64::from(k.iteration_count);
            if n == 0 {
                return Err(malformed(label, "PBKDF2 with 0 iterations".into()));
            }
            if n > budget.pbkdf2_iterations {
                return Err(refuse(format!(
                    "PBKDF2 with {n} iterations (at most {MAX_PBKDF2_ITERATIONS} in one file)"
                )));
            }
            budget.pbkdf2_iterations -= n;
        }
        Kdf::Scrypt(k) => {
            let (n, r, pp) = (
                k.cost_parameter,
                u64::from(k.block_size),
                u64::from(k.parallelization),
            );
            let what = || format!("scrypt with N={n}, r={r}, p={pp}");
            if n < 2 || !n.is_power_of_two() || r == 0 || pp == 0 {
                return Err(malformed(
                    label,
                    format!("{}: N must be a power of two, r and p positive", what()),
                ));
            }
            // Saturating: N up to 2^64 and r up to 2^16 overflow the products.
            let memory = n.saturating_mul(r).saturating_mul(128);
            let work = n.saturating_mul(r).saturating_mul(pp);
            if memory > MAX_SCRYPT_MEMORY {
                return Err(refuse(format!(
                    "{} ({memory} bytes of memory, at most {MAX_SCRYPT_MEMORY})",
                    what()
                )));
            }
            if work > budget.scrypt_work {
                return Err(refuse(format!(
                    "{} (N·r·p = {work}, at most {MAX_SCRYPT_WORK} in one file)",
                    what()
                )));
            }
            budget.scrypt_work -= work;
        }
        _ => return Err(refuse("an unknown key derivation function".into())),
    }
    Ok(())
}

/// PBES2 with PBKDF2 (HMAC-SHA1, SHA-256, SHA-384 or SHA-512) and AES-CBC, as notary, Docker and
/// OpenSSL write it, decrypted with aws-lc, several times faster than the RustCrypto crates on
/// a path every run takes. `Ok(None)`: another scheme, for the pkcs8 crate to decrypt. Its
/// parameters were bounded by [`check_key_encryption`].
fn decrypt_pbes2(
    info: &pkcs8::EncryptedPrivateKeyInfoRef<'_>,
    pass: &SecretString,
    label: &str,
) -> Result<Option<Zeroizing<Vec<u8>>>> {
    use aws_lc_rs::cipher::{
        AES_128, AES_192, AES_256, DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey,
    };
    use aws_lc_rs::iv::FixedLength;
    use pkcs8::pkcs5::pbes2::{EncryptionScheme, Pbkdf2Prf};
    let Some(p) = info.encryption_algorithm.pbes2() else {
        return Ok(None);
    };
    let Some(kdf) = p.kdf.pbkdf2() else {
        return Ok(None);
    };
    let prf = match kdf.prf {
        Pbkdf2Prf::HmacWithSha1 => aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA1,
        Pbkdf2Prf::HmacWithSha256 => aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
        Pbkdf2Prf::HmacWithSha384 => aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA384,
        Pbkdf2Prf::HmacWithSha512 => aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA512,
        _ => return Ok(None),
    };
    let (cipher, iv, key_len) = match &p.encryption {
        EncryptionScheme::Aes128Cbc { iv } => (&AES_128, iv, 16),
        EncryptionScheme::Aes192Cbc { iv } => (&AES_192, iv, 24),
        EncryptionScheme::Aes256Cbc { iv } => (&AES_256, iv, 32),
        _ => return Ok(None),
    };
    if kdf.key_length.is_some_and(|l| usize::from(l) != key_len) {
        return Ok(None);
    }
    // Checked by `check_key_encryption` already; kept so that this function is safe alone.
    if kdf.iteration_count > MAX_PBKDF2_ITERATIONS {
        return Err(Error::KeyEncryption {
            key: label.to_string(),
            what: format!(
                "PBKDF2 with {} iterations (at most {MAX_PBKDF2_ITERATIONS})",
                kdf.iteration_count
            ),
        });
    }
    let iterations = std::num::NonZeroU32::new(kdf.iteration_count)
        .ok_or_else(|| malformed(label, "PBKDF2 with 0 iterations".into()))?;
    let mut dk = Zeroizing::new([0u8; 32]);
    aws_lc_rs::pbkdf2::derive(
        prf,
        iterations,
        kdf.salt.as_bytes(),
        pass.expose_secret().as_bytes(),
        &mut dk[..key_len],
    );
    let key = UnboundCipherKey::new(cipher, &dk[..key_len])
        .and_then(PaddedBlockDecryptingKey::cbc_pkcs7)
        .map_err(|e| malformed(label, format!("AES key: {e}")))?;
    let mut buf = Zeroizing::new(info.encrypted_data.as_bytes().to_vec());
    // Bad padding: almost always a wrong passphrase (a damaged file fails the same way).
    let n = key
        .decrypt(&mut buf, DecryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| Error::WrongPassphrase {
            key: label.to_string(),
        })?
        .len();
    buf.truncate(n);
    Ok(Some(buf))
}

/// Minimal DER reader: (tag, content, rest).
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&len0, mut rest) = rest.split_first()?;
    let len = if len0 < 0x80 {
        len0 as usize
    } else {
        let n = (len0 & 0x7F) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut l = 0usize;
        for &b in &rest[..n] {
            l = (l << 8) | b as usize;
        }
        rest = &rest[n..];
        l
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Lenient PKCS#8 `PrivateKeyInfo` reader: version 0 or 1, with or without publicKey; EC with
/// the curve in the parameters or in SEC1; the notary Ed25519 OID (public ‖ seed ‖ public).
fn parse_private_key_info(der: &[u8], label: &str) -> Result<Secret> {
    let bad = |what: &str| malformed(label, format!("PKCS#8: {what}"));
    let (tag, body, _) = der_next(der).ok_or_else(|| bad("not DER"))?;
    if tag != 0x30 {
        return Err(bad("not a SEQUENCE"));
    }
    let (tag, _version, rest) = der_next(body).ok_or_else(|| bad("no version"))?;
    if tag != 0x02 {
        return Err(bad("no version INTEGER"));
    }
    let (tag, alg, rest) = der_next(rest).ok_or_else(|| bad("no algorithm"))?;
    if tag != 0x30 {
        return Err(bad("algorithm is not a SEQUENCE"));
    }
    let (tag, oid, params) = der_next(alg).ok_or_else(|| bad("no OID"))?;
    if tag != 0x06 {
        return Err(bad("algorithm has no OID"));
    }
    let (tag, key, _) = der_next(rest).ok_or_else(|| bad("no private key"))?;
    if tag != 0x04 {
        return Err(bad("private key is not an OCTET STRING"));
    }
    if oid == OID_EC {
        if let Some((0x06, curve, _)) = der_next(params)
            && curve != OID_P256
        {
            return Err(Error::UnsupportedKey {
                key: label.into(),
                what: "EC curve other than P-256".into(),
            });
        }
        Ok(Secret::P256(
            p256_from_sec1(key).map_err(|e| bad(&format!("SEC1: {e}")))?,
        ))
    } else if oid == OID_ED25519_NOTARY {
        if key.len() != 96 {
            return Err(bad("notary Ed25519 key is not 96 bytes"));
        }
        let seed: [u8; 32] = key[32..64].try_into().expect("32 bytes");
        Ok(Secret::Ed25519(Box::new(
            ed25519_dalek::SigningKey::from_bytes(&seed),
        )))
    } else if oid == OID_ED25519 {
        let (_, seed, _) = der_next(key).ok_or_else(|| bad("Ed25519 seed"))?;
        let seed: [u8; 32] = seed.try_into().map_err(|_| bad("Ed25519 seed length"))?;
        Ok(Secret::Ed25519(Box::new(
            ed25519_dalek::SigningKey::from_bytes(&seed),
        )))
    } else if oid == OID_RSA {
        Err(Error::UnsupportedKey {
            key: label.into(),
            what: "RSA keys can be verified but not used for signing".into(),
        })
    } else {
        Err(Error::UnsupportedKey {
            key: label.into(),
            what: format!("algorithm OID {}", hex::encode(oid)),
        })
    }
}

/// OpenSSL legacy PEM encryption (`Proc-Type: 4,ENCRYPTED`, `DEK-Info: AES-256-CBC,<iv hex>`):
/// key = EVP_BytesToKey(MD5, salt = iv[..8], 1 round).
fn legacy_decrypt(
    ct: &[u8],
    dek_info: Option<&String>,
    pass: &SecretString,
    label: &str,
) -> Result<Zeroizing<Vec<u8>>> {
    use cbc::cipher::{BlockModeDecrypt, KeyIvInit, block_padding::Pkcs7};
    use md5::Md5;
    let dek = dek_info.ok_or_else(|| malformed(label, "encrypted without DEK-Info".into()))?;
    let (alg, iv_hex) = dek
        .split_once(',')
        .ok_or_else(|| malformed(label, "bad DEK-Info".into()))?;
    if alg.trim() != "AES-256-CBC" {
        return Err(Error::UnsupportedKey {
            key: label.into(),
            what: format!("legacy PEM encryption {alg}"),
        });
    }
    let iv = hex::decode(iv_hex.trim()).map_err(|_| malformed(label, "bad DEK-Info IV".into()))?;
    if iv.len() != 16 {
        return Err(malformed(label, "DEK-Info IV is not 16 bytes".into()));
    }
    let mut key = Zeroizing::new(Vec::with_capacity(48));
    let mut prev = Zeroizing::new(Vec::new());
    while key.len() < 32 {
        let mut h = Md5::new();
        h.update(&prev);
        h.update(pass.expose_secret().as_bytes());
        h.update(&iv[..8]);
        prev = Zeroizing::new(h.finalize().to_vec());
        key.extend_from_slice(&prev);
    }
    let dec = cbc::Decryptor::<aes::Aes256>::new_from_slices(&key[..32], &iv)
        .map_err(|_| malformed(label, "bad key/IV length".into()))?;
    let plain = dec
        .decrypt_padded_vec::<Pkcs7>(ct)
        .map_err(|_| Error::WrongPassphrase { key: label.into() })?;
    Ok(Zeroizing::new(plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_only_id() {
        let k = PublicKey {
            keytype: "ed25519".into(),
            public: vec![0; 32],
        };
        assert!(format!("{k:?}").starts_with("PublicKey(ed25519 "));
    }

    /// Keys from a PEM source come out as `Signer`s: their raw signatures verify under the
    /// public key and algorithm they report (ECDSA and Ed25519), and neither the signers nor
    /// the source print the PEM, the passphrase or the scalar.
    #[test]
    fn pem_source_gives_signers_that_show_no_secret() {
        let ecdsa = SigningKey::generate_ecdsa("targets", "example.com/a").unwrap();
        let pass = SecretString::from("pass-for-the-test".to_string());
        let pem = ecdsa.export_pem(&pass).unwrap();
        let ed_pem = "-----BEGIN PRIVATE KEY-----\n\
                      MC4CAQAwBQYDK2VwBCIEIBPTAaDPkHMlRCzgrFbzUjkLyZGmJJXe2dsyM1F8ksxR\n\
                      -----END PRIVATE KEY-----\n";
        let scalar = {
            use aws_lc_rs::encoding::AsBigEndian;
            let Secret::P256(pair) = &ecdsa.secret else {
                unreachable!()
            };
            hex::encode(pair.private_key().as_be_bytes().unwrap().as_ref())
        };
        let source = PemKeySource {
            pem: pem.as_bytes(),
            passphrase: Some(&pass),
        };
        let mut signers = source.signers().unwrap();
        signers.extend(
            PemKeySource {
                pem: ed_pem.as_bytes(),
                passphrase: None,
            }
            .signers()
            .unwrap(),
        );
        let shown = format!("{signers:?} {source:?}");
        for secret in [pem.as_str(), "pass-for-the-test", &scalar, "MC4CAQAw"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains(ecdsa.key_id()), "{shown}");
        let algorithms: Vec<_> = signers.iter().map(|s| s.algorithm()).collect();
        assert_eq!(
            algorithms,
            [
                SignatureAlgorithm::EcdsaP256Sha256,
                SignatureAlgorithm::Ed25519
            ]
        );
        for s in &signers {
            let raw = s.sign(b"the message").unwrap();
            let method = super::super::edit::tuf_method(s.algorithm());
            assert_eq!(raw.len(), 64);
            assert!(s.public_key().verify(method, b"the message", &raw));
            assert!(!s.public_key().verify(method, b"another message", &raw));
            assert_eq!(s.key_id(), s.public_key().canonical_id().unwrap());
        }
    }

    #[test]
    fn der_writer_round_trips_through_the_reader() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![0xAB; len];
            let mut out = Vec::new();
            der_push(&mut out, 0x04, &content);
            let (t, c, rest) = der_next(&out).unwrap();
            assert_eq!((t, c, rest.len()), (0x04, content.as_slice(), 0), "{len}");
        }
    }

    #[test]
    fn pem_block_is_go_pem_encode_and_exactly_sized() {
        let headers = BTreeMap::from([
            ("role".to_string(), "targets".to_string()),
            ("gun".to_string(), "g".to_string()),
        ]);
        let p = pem_block("X", &headers, &[7u8; 100]);
        assert_eq!(p.len(), p.capacity());
        let lines: Vec<&str> = p.lines().collect();
        assert_eq!(
            lines[..4],
            ["-----BEGIN X-----", "gun: g", "role: targets", ""]
        );
        // 100 bytes = 136 base64 characters.
        let widths: Vec<usize> = lines[4..7].iter().map(|l| l.len()).collect();
        assert_eq!(widths, [64, 64, 8]);
        assert_eq!(lines[7], "-----END X-----");
        assert!(p.ends_with("-----END X-----\n"));
        let empty = pem_block("Y", &BTreeMap::new(), &[1, 2, 3]);
        assert_eq!(empty.as_str(), "-----BEGIN Y-----\nAQID\n-----END Y-----\n");
        assert_eq!(empty.len(), empty.capacity());
    }

    use pkcs8::der::Encode as _;
    use pkcs8::pkcs5::{self, pbes1, pbes2};

    /// An `ENCRYPTED PRIVATE KEY` PEM with the given scheme around junk: a refusal must come
    /// before anything is derived, so what is inside never matters.
    fn encrypted_with(scheme: pkcs5::EncryptionScheme) -> String {
        let der = pkcs8::EncryptedPrivateKeyInfoRef {
            encryption_algorithm: scheme,
            encrypted_data: pkcs8::der::asn1::OctetStringRef::new(&[0u8; 144]).unwrap(),
        }
        .to_der()
        .unwrap();
        pem::encode(&pem::Pem::new("ENCRYPTED PRIVATE KEY", der))
    }

    /// PBES2 with PBKDF2 over an 8-byte salt of `salt` bytes.
    fn pbkdf2_params(
        salt: u8,
        prf: pbes2::Pbkdf2Prf,
        iterations: u32,
        encryption: pbes2::EncryptionScheme,
    ) -> pbes2::Parameters {
        pbes2::Parameters {
            kdf: pbes2::Pbkdf2Params {
                salt: [salt; 8].as_slice().try_into().unwrap(),
                iteration_count: iterations,
                key_length: None,
                prf,
            }
            .into(),
            encryption,
        }
    }

    /// PBES2 with scrypt (cost `n`, block size `r`, parallelism `p`) over an 8-byte salt of
    /// `salt` bytes.
    fn scrypt_params(
        salt: u8,
        n: u64,
        r: u16,
        p: u16,
        encryption: pbes2::EncryptionScheme,
    ) -> pbes2::Parameters {
        pbes2::Parameters {
            kdf: pbes2::ScryptParams {
                salt: [salt; 8].as_slice().try_into().unwrap(),
                cost_parameter: n,
                block_size: r,
                parallelization: p,
                key_length: None,
            }
            .into(),
            encryption,
        }
    }

    fn pbkdf2(prf: pbes2::Pbkdf2Prf, iterations: u32, enc: pbes2::EncryptionScheme) -> String {
        encrypted_with(pbkdf2_params(1, prf, iterations, enc).into())
    }

    fn scrypt(n: u64, r: u16, p: u16) -> String {
        encrypted_with(
            scrypt_params(
                1,
                n,
                r,
                p,
                pbes2::EncryptionScheme::Aes256Cbc { iv: [2; 16] },
            )
            .into(),
        )
    }

    /// The hostile key files, also kept in `tests/bad_input/keys/` for the command line cases
    /// (`TRUSTKEEPER_WRITE_CORPUS=1` writes them there).
    fn hostile_key_files() -> Vec<(&'static str, String, &'static str)> {
        use pbes2::EncryptionScheme::{Aes192Cbc, Aes256Cbc};
        use pbes2::Pbkdf2Prf::{HmacWithSha256, HmacWithSha512};
        let pbes1 = encrypted_with(
            pbes1::Algorithm {
                encryption: pbes1::EncryptionScheme::PbeWithSha1AndDesCbc,
                parameters: pbes1::Parameters {
                    salt: [1; 8],
                    iteration_count: 2048,
                },
            }
            .into(),
        );
        vec![
            (
                "pbkdf2-sha512-2p31.pem",
                pbkdf2(HmacWithSha512, 1 << 31, Aes256Cbc { iv: [2; 16] }),
                "PBKDF2 with 2147483648 iterations",
            ),
            (
                "aes192-2p31.pem",
                pbkdf2(HmacWithSha256, 1 << 31, Aes192Cbc { iv: [2; 16] }),
                "PBKDF2 with 2147483648 iterations",
            ),
            (
                "scrypt-n-2p32.pem",
                scrypt(1 << 32, 8, 1),
                "scrypt with N=4294967296",
            ),
            (
                "scrypt-huge-r-p.pem",
                scrypt(1 << 14, u16::MAX, u16::MAX),
                "r=65535, p=65535",
            ),
            (
                "scrypt-n-0.pem",
                scrypt(0, 8, 1),
                "N must be a power of two",
            ),
            ("pbes1-des.pem", pbes1, "PBES1"),
        ]
    }

    #[test]
    fn hostile_key_derivations_are_refused_at_once() {
        let pass = SecretString::from("passphrase");
        let write = std::env::var_os("TRUSTKEEPER_WRITE_CORPUS").is_some();
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/bad_input/keys");
        for (name, pem_text, needle) in hostile_key_files() {
            if write {
                std::fs::write(dir.join(name), &pem_text).unwrap();
            }
            assert_eq!(
                std::fs::read_to_string(dir.join(name)).unwrap(),
                pem_text,
                "{name} in the corpus is not what this test builds"
            );
            let t = std::time::Instant::now();
            let e = SigningKey::from_pem(pem_text.as_bytes(), Some(&pass)).unwrap_err();
            let elapsed = t.elapsed();
            assert!(
                elapsed < std::time::Duration::from_millis(100),
                "{name}: {elapsed:?}"
            );
            let msg = e.to_string();
            assert!(msg.contains(needle), "{name}: {msg}");
            assert!(
                matches!(e, Error::KeyEncryption { .. } | Error::MalformedKey { .. }),
                "{name}: {e:?}"
            );
            // Refused the same way without a passphrase: the bound comes first.
            let e = SigningKey::from_pem(pem_text.as_bytes(), None).unwrap_err();
            assert!(
                e.to_string().contains(needle),
                "{name} without passphrase: {e}"
            );
        }
    }

    #[test]
    fn an_unknown_encryption_scheme_is_refused() {
        // PBES2 whose key derivation is an OID nobody defined.
        let mut der = pem::parse(scrypt(1 << 14, 8, 1)).unwrap().into_contents();
        let scrypt_oid = [
            0x06, 0x09, 0x2B, 0x06, 0x01, 0x04, 0x01, 0xDA, 0x47, 0x04, 0x0B,
        ];
        let at = der
            .windows(scrypt_oid.len())
            .position(|w| w == scrypt_oid)
            .unwrap();
        der[at + scrypt_oid.len() - 1] = 0x7F;
        let text = pem::encode(&pem::Pem::new("ENCRYPTED PRIVATE KEY", der));
        let t = std::time::Instant::now();
        let e = SigningKey::from_pem(text.as_bytes(), Some(&SecretString::from("x"))).unwrap_err();
        assert!(t.elapsed() < std::time::Duration::from_millis(100));
        // The engine reports both as BadKey (engine::failure's tests).
        assert!(
            matches!(e, Error::KeyEncryption { .. } | Error::MalformedKey { .. }),
            "{e:?}"
        );
    }

    #[test]
    fn bounded_schemes_within_the_bounds_still_decrypt() {
        use pbes2::EncryptionScheme::{Aes192Cbc, Aes256Cbc};
        use pbes2::Pbkdf2Prf::{HmacWithSha256, HmacWithSha512};
        let key = SigningKey::generate_ecdsa("targets/ci", "").unwrap();
        let plain = key.notary_private_key_info().unwrap();
        let pass = "correct horse";
        for (name, params) in [
            (
                "PBKDF2-SHA512 AES-256",
                pbkdf2_params(3, HmacWithSha512, 2048, Aes256Cbc { iv: [4; 16] }),
            ),
            (
                "PBKDF2-SHA256 AES-192",
                pbkdf2_params(3, HmacWithSha256, 2048, Aes192Cbc { iv: [4; 16] }),
            ),
            (
                "scrypt 2^14/8/1 (OpenSSL's default)",
                scrypt_params(3, 1 << 14, 8, 1, Aes256Cbc { iv: [4; 16] }),
            ),
        ] {
            let ct = params.encrypt(pass.as_bytes(), &plain).unwrap();
            let der = pkcs8::EncryptedPrivateKeyInfoRef {
                encryption_algorithm: params.into(),
                encrypted_data: pkcs8::der::asn1::OctetStringRef::new(&ct).unwrap(),
            }
            .to_der()
            .unwrap();
            let text = pem::encode(&pem::Pem::new("ENCRYPTED PRIVATE KEY", der));
            let got = SigningKey::from_pem(text.as_bytes(), Some(&SecretString::from(pass)))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got[0].key_id(), key.key_id(), "{name}");
            let wrong = SigningKey::from_pem(text.as_bytes(), Some(&SecretString::from("no")));
            assert!(
                matches!(wrong, Err(Error::WrongPassphrase { .. })),
                "{name}: {wrong:?}"
            );
        }
    }

    #[test]
    fn the_iteration_budget_is_per_file() {
        use pbes2::EncryptionScheme::Aes256Cbc;
        use pbes2::Pbkdf2Prf::HmacWithSha1;
        // Two blocks of 6 million each: the second is refused before any derivation (the
        // first fails on its junk ciphertext only after deriving).
        let one = pbkdf2(HmacWithSha1, 6_000_000, Aes256Cbc { iv: [2; 16] });
        let mut budget = KdfBudget::default();
        let der = pem::parse(&one).unwrap().into_contents();
        let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der.as_slice()).unwrap();
        check_key_encryption(&info, "a", &mut budget).unwrap();
        let e = check_key_encryption(&info, "b", &mut budget).unwrap_err();
        assert!(e.to_string().contains("6000000 iterations"), "{e}");
    }

    #[test]
    fn a_key_input_over_the_size_bound_is_refused_before_parsing() {
        let big = vec![b'A'; MAX_KEY_BYTES + 1];
        let t = std::time::Instant::now();
        let e = SigningKey::from_pem(&big, None).unwrap_err();
        assert!(t.elapsed() < std::time::Duration::from_millis(50));
        assert!(e.to_string().contains("more than the 1048576"), "{e}");
    }

    /// A P-384 signature as the Go client makes one (ECDSA over SHA-256, r‖s of 48 bytes
    /// each), made by OpenSSL: aws-lc and the crates here sign P-384 only over SHA-384.
    #[test]
    fn p384_signatures_verify_as_the_go_client_verifies_them() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        let msg_path = dir.path().join("msg");
        let openssl = |args: &[&str]| {
            let o = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl");
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            o.stdout
        };
        let k = key.to_str().unwrap();
        openssl(&[
            "ecparam",
            "-name",
            "secp384r1",
            "-genkey",
            "-noout",
            "-out",
            k,
        ]);
        let spki = openssl(&["ec", "-in", k, "-pubout", "-outform", "DER"]);
        let msg = br#"{"signed":"canonical bytes"}"#;
        std::fs::write(&msg_path, msg).unwrap();
        let der_sig = openssl(&["dgst", "-sha256", "-sign", k, msg_path.to_str().unwrap()]);
        // DER → fixed r‖s.
        let (_, body, _) = der_next(&der_sig).unwrap();
        let (_, r, rest) = der_next(body).unwrap();
        let (_, s, _) = der_next(rest).unwrap();
        let mut fixed = vec![0u8; 96];
        let strip = |v: &[u8]| {
            v.iter()
                .skip_while(|&&b| b == 0)
                .copied()
                .collect::<Vec<u8>>()
        };
        let (r, s) = (strip(r), strip(s));
        fixed[48 - r.len()..48].copy_from_slice(&r);
        fixed[96 - s.len()..].copy_from_slice(&s);
        assert_eq!(
            ecdsa_fixed_to_der(&fixed),
            der_sig,
            "the DER form round-trips"
        );
        let pk = PublicKey {
            keytype: "ecdsa".into(),
            public: spki,
        };
        assert!(pk.verify("ecdsa", msg, &fixed));
        let mut tampered = fixed.clone();
        tampered[10] ^= 1;
        assert!(!pk.verify("ecdsa", msg, &tampered));
        assert!(!pk.verify("ecdsa", b"other bytes", &fixed));
        assert!(
            !pk.verify("ecdsa", msg, &der_sig),
            "DER is not notary's form"
        );
        assert!(!pk.verify("ecdsa", msg, &fixed[..64]));
    }

    #[test]
    fn der_reader() {
        let (t, c, r) = der_next(&[0x30, 0x03, 0x02, 0x01, 0x00, 0xFF]).unwrap();
        assert_eq!((t, c, r), (0x30, &[0x02, 0x01, 0x00][..], &[0xFF][..]));
        assert!(der_next(&[0x30, 0x05, 0x00]).is_none());
    }
}
