//! Notary Project (Notation) signatures, no I/O: the signing certificate a user without a PKI
//! can make, the JWS envelope, the signature manifest and the referrers tag index.
//!
//! Layout (Notary Project signature specification, OCI signature storage):
//! - envelope `application/jose+json`, JWS JSON serialization, ES256 over
//!   `BASE64URL(protected) "." BASE64URL(payload)`; `header.x5c` holds the chain (DER, leaf
//!   first, standard base64); the payload is `{"targetArtifact": <descriptor>}`;
//! - signature manifest: an OCI image manifest with `artifactType`
//!   `application/vnd.cncf.notary.signature`, the empty config, one layer (the envelope) and a
//!   `subject` naming the signed manifest;
//! - where a registry has no referrers API, the `sha256-<hex>` tag holds an OCI index of the
//!   referrers' descriptors.

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder as _, CertificateBuilder};
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};
use x509_cert::ext::{Extension, ToExtension as _};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};

use trustkeeper_notary::SigningKey;
use trustkeeper_registry::manifest::{OCI_INDEX_V1, OCI_MANIFEST_V1, sha256_digest};

/// `artifactType` of a Notation signature manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";
/// The JWS envelope's media type (the signature manifest's one layer).
pub const JWS_MEDIA_TYPE: &str = "application/jose+json";
/// `cty` of the protected header: the payload's type.
pub const PAYLOAD_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";
/// The OCI empty descriptor's media type and content (`{}`).
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_CONFIG: &[u8] = b"{}";
/// The manifest annotation listing the chain's SHA-256 thumbprints.
pub const THUMBPRINT_ANNOTATION: &str = "io.cncf.notary.x509chain.thumbprint#S256";
const SIGNING_SCHEME: &str = "io.cncf.notary.signingScheme";
const SIGNING_TIME: &str = "io.cncf.notary.signingTime";
const EXPIRY: &str = "io.cncf.notary.expiry";
const SIGNING_AGENT: &str = "io.cncf.notary.signingAgent";

/// Largest envelope read (a chain of a few certificates is a few KiB).
pub const MAX_ENVELOPE_BYTES: usize = 256 << 10;
/// Largest certificate chain file read.
pub const MAX_CHAIN_PEM_BYTES: usize = 256 << 10;
/// Most certificates in a chain.
pub const MAX_CHAIN_CERTS: usize = 10;
/// Most entries of a referrers index kept and parsed.
pub const MAX_REFERRERS: usize = 4096;

/// Why a Notation signature, certificate or index was not made or not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotationError {
    #[error("certificate: {0}")]
    Certificate(String),
    #[error(
        "the certificate chain {0}: give the PEM chain (leaf first) whose leaf certifies the \
         signing key, e.g. one made by `trustkeeper key certificate --key KEY -o cert.pem`"
    )]
    Chain(String),
    #[error(
        "the signing key is not ECDSA P-256: Notation signatures are made with P-256 keys here"
    )]
    UnsupportedKey,
    #[error("the signing key failed to sign: {0}")]
    Signing(String),
    #[error("{what}: {detail}")]
    Malformed { what: String, detail: String },
}

fn malformed(what: &str, detail: impl Into<String>) -> NotationError {
    NotationError::Malformed {
        what: what.to_string(),
        detail: detail.into(),
    }
}

/// An OCI descriptor (what the payload and `subject` name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

// ---------------------------------------------------------------------------------------------
// The signing certificate

/// A self-signed leaf for `key` that `notation verify` accepts in a `ca` trust store:
/// KeyUsage digitalSignature (critical), ExtKeyUsage codeSigning, BasicConstraints CA:FALSE
/// (critical), valid from five minutes before `now` (clock skew) for `days` days. DER.
pub fn self_signed_certificate(
    key: &SigningKey,
    subject: &str,
    days: u32,
    now: SystemTime,
) -> Result<Vec<u8>, NotationError> {
    let fail = |e: &dyn std::fmt::Display| NotationError::Certificate(e.to_string());
    if days == 0 || days > 3650 {
        return Err(NotationError::Certificate(format!(
            "--days {days}: give 1 to 3650 days"
        )));
    }
    let sk = key.p256().ok_or(NotationError::UnsupportedKey)?;
    let subject: Name = subject.parse().map_err(|e| {
        NotationError::Certificate(format!(
            "subject {subject:?} is not an RFC 4514 name ({e}): give e.g. CN=builder,O=Example"
        ))
    })?;
    if subject.is_empty() {
        return Err(NotationError::Certificate(
            "the subject is empty: give e.g. CN=builder,O=Example".into(),
        ));
    }
    let spki = SubjectPublicKeyInfoOwned::from_key(sk.verifying_key()).map_err(|e| fail(&e))?;
    let from = now - std::time::Duration::from_secs(300);
    let until = now + std::time::Duration::from_secs(u64::from(days) * 86_400);
    let time = |t: SystemTime| Time::try_from(t).map_err(|e| fail(&e));
    let validity = Validity::new(time(from)?, time(until)?);
    let serial: [u8; 16] = rand::random();
    let serial = SerialNumber::new(&serial).map_err(|e| fail(&e))?;
    let builder = CertificateBuilder::new(NotationLeaf { subject }, serial, validity, spki)
        .map_err(|e| fail(&e))?;
    let cert = builder
        .build::<_, p256::ecdsa::DerSignature>(&sk)
        .map_err(|e| fail(&e))?;
    cert.to_der().map_err(|e| fail(&e))
}

struct NotationLeaf {
    subject: Name,
}

impl BuilderProfile for NotationLeaf {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        _spk: x509_cert::spki::SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: x509_cert::spki::SubjectPublicKeyInfoRef<'_>,
        tbs: &x509_cert::TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        use x509_cert::der::oid::db::rfc5280::ID_KP_CODE_SIGNING;
        let subject = tbs.subject();
        Ok(vec![
            (&KeyUsage(KeyUsages::DigitalSignature.into())).to_extension(subject, &[])?,
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

/// A certificate chain, leaf first, as DER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub der: Vec<Vec<u8>>,
}

/// What the leaf says, for output and checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeafInfo {
    pub subject: String,
    /// SHA-256 of the leaf's DER, hex.
    pub thumbprint: String,
    /// `notAfter`, RFC 3339.
    pub not_after: String,
    #[serde(skip)]
    pub not_after_unix: i64,
}

impl Chain {
    /// Reads a PEM chain (leaf first), bounded in size and count.
    pub fn from_pem(text: &[u8]) -> Result<Chain, NotationError> {
        if text.len() > MAX_CHAIN_PEM_BYTES {
            return Err(NotationError::Chain(format!(
                "is {} bytes, over the {} KiB read",
                text.len(),
                MAX_CHAIN_PEM_BYTES >> 10
            )));
        }
        let blocks =
            pem::parse_many(text).map_err(|e| NotationError::Chain(format!("is not PEM ({e})")))?;
        let der: Vec<Vec<u8>> = blocks
            .into_iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(|b| b.into_contents())
            .collect();
        Chain::from_der(der)
    }

    pub fn from_der(der: Vec<Vec<u8>>) -> Result<Chain, NotationError> {
        if der.is_empty() {
            return Err(NotationError::Chain("holds no CERTIFICATE".into()));
        }
        if der.len() > MAX_CHAIN_CERTS {
            return Err(NotationError::Chain(format!(
                "holds {} certificates, over the {MAX_CHAIN_CERTS} read",
                der.len()
            )));
        }
        for (i, d) in der.iter().enumerate() {
            x509_cert::Certificate::from_der(d).map_err(|e| {
                NotationError::Chain(format!("certificate {} is not X.509 DER ({e})", i + 1))
            })?;
        }
        Ok(Chain { der })
    }

    fn leaf(&self) -> x509_cert::Certificate {
        x509_cert::Certificate::from_der(&self.der[0]).expect("checked in from_der")
    }

    /// The leaf's SubjectPublicKeyInfo (DER).
    pub fn leaf_spki(&self) -> Vec<u8> {
        self.leaf()
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap_or_default()
    }

    pub fn leaf_info(&self) -> LeafInfo {
        let leaf = self.leaf();
        let tbs = leaf.tbs_certificate();
        let not_after = tbs.validity().not_after.to_system_time();
        let ts = jiff::Timestamp::try_from(not_after).unwrap_or_default();
        LeafInfo {
            subject: tbs.subject().to_string(),
            thumbprint: hex::encode(Sha256::digest(&self.der[0])),
            not_after: ts.to_string(),
            not_after_unix: ts.as_second(),
        }
    }

    /// SHA-256 hex thumbprints, leaf first (the manifest annotation).
    pub fn thumbprints(&self) -> Vec<String> {
        self.der
            .iter()
            .map(|d| hex::encode(Sha256::digest(d)))
            .collect()
    }

    /// Fails unless the leaf certifies `spki` (the signing key's public key).
    pub fn check_key(&self, spki: &[u8]) -> Result<(), NotationError> {
        if self.leaf_spki() != spki {
            return Err(NotationError::Chain(
                "leaf certifies another public key than the signing key's".into(),
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The envelope

/// The JWS payload for `target`.
pub fn payload(target: &Descriptor) -> Vec<u8> {
    serde_json::to_vec(&json!({ "targetArtifact": target })).expect("plain JSON")
}

fn rfc3339(t: jiff::Timestamp) -> String {
    // Seconds: the certificate's validity has no finer grain.
    t.round(jiff::Unit::Second)
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Builds and signs the envelope: `sign` gets the JWS signing input and returns r‖s.
pub fn envelope(
    target: &Descriptor,
    chain: &Chain,
    signing_time: jiff::Timestamp,
    expiry: Option<jiff::Timestamp>,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<Vec<u8>, NotationError> {
    let mut protected = Map::new();
    protected.insert("alg".into(), json!("ES256"));
    let mut crit = vec![json!(SIGNING_SCHEME)];
    if expiry.is_some() {
        crit.push(json!(EXPIRY));
    }
    protected.insert("crit".into(), Value::Array(crit));
    protected.insert("cty".into(), json!(PAYLOAD_TYPE));
    protected.insert(SIGNING_SCHEME.into(), json!("notary.x509"));
    protected.insert(SIGNING_TIME.into(), json!(rfc3339(signing_time)));
    if let Some(e) = expiry {
        protected.insert(EXPIRY.into(), json!(rfc3339(e)));
    }
    let protected = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&protected).expect("JSON"));
    let payload = URL_SAFE_NO_PAD.encode(payload(target));
    let input = format!("{protected}.{payload}");
    let sig = sign(input.as_bytes()).map_err(NotationError::Signing)?;
    if sig.len() != 64 {
        return Err(NotationError::Signing(format!(
            "an ES256 signature is 64 bytes (r‖s), the key gave {}",
            sig.len()
        )));
    }
    let x5c: Vec<String> = chain.der.iter().map(|d| STANDARD.encode(d)).collect();
    let env = json!({
        "payload": payload,
        "protected": protected,
        "header": {
            "x5c": x5c,
            SIGNING_AGENT: concat!("trustkeeper/", env!("CARGO_PKG_VERSION")),
        },
        "signature": URL_SAFE_NO_PAD.encode(sig),
    });
    Ok(serde_json::to_vec(&env).expect("JSON"))
}

/// What a verified envelope says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub target: Descriptor,
    pub chain: Chain,
    pub signing_time: String,
    pub expiry: Option<String>,
}

/// Parses `bytes` (bounded) and checks the ES256 signature under the leaf in `x5c`; says what
/// it signs. Whether the leaf is trusted is for the caller.
pub fn verify_envelope(bytes: &[u8]) -> Result<Verified, NotationError> {
    const W: &str = "the Notation envelope";
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(malformed(
            W,
            format!("is over {} KiB", MAX_ENVELOPE_BYTES >> 10),
        ));
    }
    #[derive(Deserialize)]
    struct Env {
        payload: String,
        protected: String,
        header: Header,
        signature: String,
    }
    #[derive(Deserialize)]
    struct Header {
        x5c: Vec<String>,
    }
    let env: Env = serde_json::from_slice(bytes).map_err(|e| malformed(W, e.to_string()))?;
    let b64u = |s: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|e| malformed(W, format!("{what} is not base64url: {e}")))
    };
    let protected: Map<String, Value> = serde_json::from_slice(&b64u(&env.protected, "protected")?)
        .map_err(|e| malformed(W, format!("protected header: {e}")))?;
    let alg = protected
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(W, "no alg"))?
        .to_string();
    if protected.get("cty") != Some(&json!(PAYLOAD_TYPE)) {
        return Err(malformed(W, format!("cty is not {PAYLOAD_TYPE}")));
    }
    if protected.get(SIGNING_SCHEME) != Some(&json!("notary.x509")) {
        return Err(malformed(W, "the signing scheme is not notary.x509"));
    }
    let signing_time = protected
        .get(SIGNING_TIME)
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(W, "no signing time"))?
        .to_string();
    let expiry = protected
        .get(EXPIRY)
        .and_then(Value::as_str)
        .map(str::to_string);
    let der: Vec<Vec<u8>> = env
        .header
        .x5c
        .iter()
        .take(MAX_CHAIN_CERTS + 1)
        .map(|c| STANDARD.decode(c))
        .collect::<Result<_, _>>()
        .map_err(|e| malformed(W, format!("x5c is not base64: {e}")))?;
    let chain = Chain::from_der(der)?;
    let sig = b64u(&env.signature, "signature")?;
    let input = format!("{}.{}", env.protected, env.payload);
    if !verify_jws(&alg, &chain.leaf_spki(), input.as_bytes(), &sig)? {
        return Err(malformed(
            W,
            "the signature does not verify under its leaf certificate",
        ));
    }
    #[derive(Deserialize)]
    struct Payload {
        #[serde(rename = "targetArtifact")]
        target: Descriptor,
    }
    let p: Payload = serde_json::from_slice(&b64u(&env.payload, "payload")?)
        .map_err(|e| malformed(W, format!("payload: {e}")))?;
    Ok(Verified {
        target: p.target,
        chain,
        signing_time,
        expiry,
    })
}

/// A JWS signature under a SubjectPublicKeyInfo, for the algorithms the Notary Project allows
/// (ES256/384/512 with r‖s, PS256/384/512); the key's type must be the algorithm's.
fn verify_jws(alg: &str, spki_der: &[u8], msg: &[u8], sig: &[u8]) -> Result<bool, NotationError> {
    use aws_lc_rs::signature::{self as s, UnparsedPublicKey, VerificationAlgorithm};
    let (algorithm, curve): (&'static dyn VerificationAlgorithm, Option<&str>) = match alg {
        "ES256" => (&s::ECDSA_P256_SHA256_FIXED, Some("1.2.840.10045.3.1.7")),
        "ES384" => (&s::ECDSA_P384_SHA384_FIXED, Some("1.3.132.0.34")),
        "ES512" => (&s::ECDSA_P521_SHA512_FIXED, Some("1.3.132.0.35")),
        "PS256" => (&s::RSA_PSS_2048_8192_SHA256, None),
        "PS384" => (&s::RSA_PSS_2048_8192_SHA384, None),
        "PS512" => (&s::RSA_PSS_2048_8192_SHA512, None),
        other => {
            return Err(malformed(
                "the Notation envelope",
                format!("alg {other:?} is not one the Notary Project allows"),
            ));
        }
    };
    let Ok(info) = p256::pkcs8::spki::SubjectPublicKeyInfoRef::from_der(spki_der) else {
        return Ok(false);
    };
    let ec = p256::pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
    let rsa = p256::pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
    let key_ok = match curve {
        Some(c) => {
            info.algorithm.oid == ec
                && info.algorithm.parameters_oid().ok()
                    == Some(p256::pkcs8::ObjectIdentifier::new_unwrap(c))
        }
        None => info.algorithm.oid == rsa,
    };
    let Some(key) = info.subject_public_key.as_bytes() else {
        return Ok(false);
    };
    Ok(key_ok
        && UnparsedPublicKey::new(algorithm, key)
            .verify(msg, sig)
            .is_ok())
}

// ---------------------------------------------------------------------------------------------
// The signature manifest and the referrers index

/// The signature manifest for `envelope` about `subject`; its bytes.
pub fn signature_manifest(
    envelope: &[u8],
    subject: &Descriptor,
    chain: &Chain,
    created: jiff::Timestamp,
) -> Vec<u8> {
    let thumbprints = serde_json::to_string(&chain.thumbprints()).expect("JSON");
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_V1,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": sha256_digest(EMPTY_CONFIG),
            "size": EMPTY_CONFIG.len(),
        },
        "layers": [{
            "mediaType": JWS_MEDIA_TYPE,
            "digest": sha256_digest(envelope),
            "size": envelope.len(),
        }],
        "subject": subject,
        "annotations": {
            THUMBPRINT_ANNOTATION: thumbprints,
            "org.opencontainers.image.created": rfc3339(created),
        },
    }))
    .expect("JSON")
}

/// The envelope layer (digest, size) of a signature manifest about `subject_digest`.
pub fn envelope_layer(manifest: &[u8], subject_digest: &str) -> Result<Descriptor, NotationError> {
    const W: &str = "the Notation signature manifest";
    #[derive(Deserialize)]
    struct M {
        #[serde(rename = "artifactType")]
        artifact_type: Option<String>,
        config: Descriptor,
        layers: Vec<Descriptor>,
        subject: Option<Descriptor>,
    }
    let m: M = serde_json::from_slice(manifest).map_err(|e| malformed(W, e.to_string()))?;
    // notation 1.x writes the OCI 1.0 form by default: no artifactType, the type as the
    // config's media type.
    let kind = m.artifact_type.as_deref().unwrap_or(&m.config.media_type);
    if kind != ARTIFACT_TYPE {
        return Err(malformed(
            W,
            format!("it is a {kind}, not a {ARTIFACT_TYPE}"),
        ));
    }
    if m.subject.as_ref().map(|s| s.digest.as_str()) != Some(subject_digest) {
        return Err(malformed(W, format!("its subject is not {subject_digest}")));
    }
    let [layer] = <[Descriptor; 1]>::try_from(m.layers)
        .map_err(|l| malformed(W, format!("has {} layers, not one", l.len())))?;
    if layer.media_type != JWS_MEDIA_TYPE {
        return Err(malformed(W, format!("its layer is {}", layer.media_type)));
    }
    trustkeeper_registry::reference::validate_digest(&layer.digest)
        .map_err(|e| malformed(W, format!("layer digest: {e}")))?;
    Ok(layer)
}

/// The tag of the referrers tag schema for `digest` (`sha256-<hex>`).
pub fn referrers_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// One referrer as an index lists it (other fields kept as they were).
#[derive(Clone, Debug, PartialEq)]
pub struct Referrer {
    pub digest: String,
    pub artifact_type: Option<String>,
    pub thumbprints: Vec<String>,
    pub raw: Value,
}

/// A referrers index (the tag schema's, or the referrers API's answer).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReferrersIndex {
    pub entries: Vec<Referrer>,
}

impl ReferrersIndex {
    pub fn parse(bytes: &[u8]) -> Result<ReferrersIndex, NotationError> {
        const W: &str = "the referrers index";
        #[derive(Deserialize)]
        struct I {
            manifests: Vec<Value>,
        }
        let i: I = serde_json::from_slice(bytes).map_err(|e| malformed(W, e.to_string()))?;
        if i.manifests.len() > MAX_REFERRERS {
            return Err(malformed(
                W,
                format!(
                    "lists {} referrers, over {MAX_REFERRERS}",
                    i.manifests.len()
                ),
            ));
        }
        let mut entries = Vec::with_capacity(i.manifests.len());
        for raw in i.manifests {
            let digest = raw
                .get("digest")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed(W, "an entry has no digest"))?
                .to_string();
            let artifact_type = raw
                .get("artifactType")
                .and_then(Value::as_str)
                .map(str::to_string);
            let thumbprints = raw
                .pointer("/annotations")
                .and_then(|a| a.get(THUMBPRINT_ANNOTATION))
                .and_then(Value::as_str)
                .and_then(|t| serde_json::from_str::<Vec<String>>(t).ok())
                .unwrap_or_default();
            entries.push(Referrer {
                digest,
                artifact_type,
                thumbprints,
                raw,
            });
        }
        Ok(ReferrersIndex { entries })
    }

    pub fn contains(&self, digest: &str) -> bool {
        self.entries.iter().any(|e| e.digest == digest)
    }

    /// Whether every entry of `other` is here.
    pub fn contains_all(&self, other: &ReferrersIndex) -> bool {
        other.entries.iter().all(|e| self.contains(&e.digest))
    }

    /// This index with the entries of `other` it lacks appended.
    pub fn union(&self, other: &ReferrersIndex) -> ReferrersIndex {
        let mut out = self.clone();
        for e in &other.entries {
            if !out.contains(&e.digest) {
                out.entries.push(e.clone());
            }
        }
        out
    }

    /// Appends the descriptor of signature manifest `bytes` unless listed.
    pub fn with_signature(mut self, bytes: &[u8], chain: &Chain) -> ReferrersIndex {
        let digest = sha256_digest(bytes);
        if self.contains(&digest) {
            return self;
        }
        let thumbprints = chain.thumbprints();
        let raw = json!({
            "mediaType": OCI_MANIFEST_V1,
            "digest": digest,
            "size": bytes.len(),
            "artifactType": ARTIFACT_TYPE,
            "annotations": {
                THUMBPRINT_ANNOTATION: serde_json::to_string(&thumbprints).expect("JSON"),
            },
        });
        self.entries.push(Referrer {
            digest,
            artifact_type: Some(ARTIFACT_TYPE.into()),
            thumbprints,
            raw,
        });
        self
    }

    /// The index manifest's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let manifests: Vec<&Value> = self.entries.iter().map(|e| &e.raw).collect();
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX_V1,
            "manifests": manifests,
        }))
        .expect("JSON")
    }

    /// Notation signatures whose leaf thumbprint is `leaf`.
    pub fn signatures_by<'a>(&'a self, leaf: &'a str) -> impl Iterator<Item = &'a Referrer> {
        self.entries.iter().filter(move |e| {
            e.artifact_type.as_deref() == Some(ARTIFACT_TYPE)
                && e.thumbprints.first().map(String::as_str) == Some(leaf)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST_V1.into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            size: 1234,
        }
    }

    #[test]
    fn certificate_envelope_and_index_round_trip() {
        let key = SigningKey::generate_ecdsa("targets", "n").unwrap();
        let der =
            self_signed_certificate(&key, "CN=builder,O=Example", 30, SystemTime::now()).unwrap();
        let chain = Chain::from_der(vec![der]).unwrap();
        let spki = key.public().spki_der().unwrap();
        chain.check_key(&spki).unwrap();
        let other = SigningKey::generate_ecdsa("targets", "n").unwrap();
        assert!(
            chain
                .check_key(&other.public().spki_der().unwrap())
                .is_err()
        );
        let info = chain.leaf_info();
        assert!(info.subject.contains("CN=builder"), "{info:?}");

        let now = jiff::Timestamp::now();
        let env = envelope(&target(), &chain, now, None, |m| {
            trustkeeper_notary::keys::Signer::sign(&key, m).map_err(|e| e.to_string())
        })
        .unwrap();
        let v = verify_envelope(&env).unwrap();
        assert_eq!(v.target, target());
        assert_eq!(v.chain, chain);
        // A signature by another key under our chain is refused.
        let forged = envelope(&target(), &chain, now, None, |m| {
            trustkeeper_notary::keys::Signer::sign(&other, m).map_err(|e| e.to_string())
        })
        .unwrap();
        assert!(verify_envelope(&forged).is_err());
        // A payload changed after signing is refused.
        let mut j: Value = serde_json::from_slice(&env).unwrap();
        let mut t = target();
        t.size += 1;
        j["payload"] = json!(URL_SAFE_NO_PAD.encode(payload(&t)));
        assert!(verify_envelope(&serde_json::to_vec(&j).unwrap()).is_err());

        let m = signature_manifest(&env, &target(), &chain, now);
        let layer = envelope_layer(&m, &target().digest).unwrap();
        assert_eq!(layer.digest, sha256_digest(&env));
        assert!(envelope_layer(&m, &format!("sha256:{}", "cd".repeat(32))).is_err());

        let idx = ReferrersIndex::default().with_signature(&m, &chain);
        let again = ReferrersIndex::parse(&idx.to_bytes()).unwrap();
        assert_eq!(again.entries.len(), 1);
        assert_eq!(again.signatures_by(&info.thumbprint).count(), 1);
        assert_eq!(again.clone().with_signature(&m, &chain).entries.len(), 1);
    }

    #[test]
    fn hostile_chains_and_indexes_are_refused() {
        assert!(Chain::from_pem(b"not pem").is_err());
        assert!(Chain::from_pem(&vec![b'a'; MAX_CHAIN_PEM_BYTES + 1]).is_err());
        assert!(Chain::from_der(vec![b"junk".to_vec()]).is_err());
        let many: Vec<Value> = (0..=MAX_REFERRERS)
            .map(|i| json!({"digest": format!("sha256:{i:064x}")}))
            .collect();
        let big = serde_json::to_vec(&json!({ "manifests": many })).unwrap();
        assert!(ReferrersIndex::parse(&big).is_err());
        assert!(verify_envelope(&vec![b' '; MAX_ENVELOPE_BYTES + 1]).is_err());
    }
}
