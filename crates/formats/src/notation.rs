//! Notary Project (Notation) signatures, without I/O, as `notation sign` (1.3, JWS) writes them:
//!
//! - the envelope (`application/jose+json`) is a flattened JWS: protected header `alg`
//!   (`ES256` for P-256: the signature is JWS's raw `r‖s`, what [`Signer::sign`] returns),
//!   `crit: ["io.cncf.notary.signingScheme"]`, `cty: application/vnd.cncf.notary.payload.v1+json`,
//!   `io.cncf.notary.signingScheme: notary.x509`, `io.cncf.notary.signingTime`; the payload
//!   `{"targetArtifact": <descriptor of the signed manifest>}`; the unprotected header carries the
//!   certificate chain (`x5c`, leaf first, base64 DER) and `io.cncf.notary.signingAgent`;
//! - the signature manifest is an OCI image manifest whose config media type is
//!   `application/vnd.cncf.notary.signature` (blob `{}`), one envelope layer, `subject` = the
//!   signed manifest, and annotations `io.cncf.notary.x509chain.thumbprint#S256` (a JSON array of
//!   the chain's SHA-256 fingerprints, hex) and `org.opencontainers.image.created`;
//! - without a referrers API the signature is found through the referrers tag schema: the tag
//!   `sha256-<hex>` holds an OCI index listing the referrers (kept, appended to).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use trustkeeper_notary::Signer;
use trustkeeper_notary::keys::SignatureAlgorithm;
use trustkeeper_registry::ManifestDescriptor;
use trustkeeper_registry::manifest::{OCI_INDEX_V1, OCI_MANIFEST_V1, sha256_digest};

pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";
pub const JWS_MEDIA_TYPE: &str = "application/jose+json";
pub const PAYLOAD_CONTENT_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";
pub const THUMBPRINT_ANNOTATION: &str = "io.cncf.notary.x509chain.thumbprint#S256";
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
/// Referrers listed in one referrers index before it is refused as broken or hostile.
pub const MAX_REFERRERS: usize = 1_000;
/// Largest envelope read back (notation's are a few KiB; a chain of certificates makes them
/// grow).
pub const MAX_ENVELOPE_BYTES: usize = 1 << 20;
/// The config blob of a signature manifest.
pub const EMPTY_CONFIG: &[u8] = b"{}";

/// Why a Notation signature cannot be made or a referrers index not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotationError {
    #[error(
        "the signing certificate does not hold the signing key ({detail}): give the \
         certificate made for this key (leaf first), e.g. by `trustkeeper key certificate`"
    )]
    WrongCertificate { detail: String },
    #[error("key {key_id}: Notation signatures are made with ECDSA P-256 keys here")]
    UnsupportedKey { key_id: String },
    #[error("the signing key failed: {0}")]
    Signing(String),
    #[error(
        "the referrers index {tag} is not an OCI index ({detail}): it was not changed; remove \
         or repair the tag, then sign again"
    )]
    MalformedIndex { tag: String, detail: String },
}

/// `sha256-<hex>`: the referrers tag of `digest`.
pub fn referrers_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// The hex SHA-256 fingerprints of a chain (DER certificates), as the annotation lists them.
pub fn thumbprints(chain: &[Vec<u8>]) -> Vec<String> {
    chain
        .iter()
        .map(|c| hex::encode(Sha256::digest(c)))
        .collect()
}

#[derive(Serialize)]
struct Protected<'a> {
    alg: &'a str,
    crit: [&'a str; 1],
    cty: &'a str,
    #[serde(rename = "io.cncf.notary.signingScheme")]
    scheme: &'a str,
    #[serde(rename = "io.cncf.notary.signingTime")]
    signing_time: String,
}

#[derive(Serialize, Deserialize)]
struct Target {
    digest: String,
    #[serde(rename = "mediaType")]
    media_type: String,
    size: u64,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    #[serde(rename = "targetArtifact")]
    target_artifact: Target,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    payload: String,
    protected: String,
    header: BTreeMap<String, serde_json::Value>,
    signature: String,
}

/// The JWS envelope signing `target` with `signer`, whose public key the leaf of `chain` (DER,
/// leaf first) must hold.
pub fn envelope(
    signer: &dyn Signer,
    target: &ManifestDescriptor,
    chain: &[Vec<u8>],
    signing_time: jiff::Timestamp,
) -> Result<Vec<u8>, NotationError> {
    if signer.algorithm() != SignatureAlgorithm::EcdsaP256Sha256 {
        return Err(NotationError::UnsupportedKey {
            key_id: signer.key_id().to_string(),
        });
    }
    check_leaf(signer, chain)?;
    let protected = serde_json::to_vec(&Protected {
        alg: "ES256",
        crit: ["io.cncf.notary.signingScheme"],
        cty: PAYLOAD_CONTENT_TYPE,
        scheme: "notary.x509",
        signing_time: signing_time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    })
    .expect("strings only");
    let payload = serde_json::to_vec(&Payload {
        target_artifact: Target {
            digest: target.digest.clone(),
            media_type: target.media_type.clone(),
            size: target.size,
        },
    })
    .expect("strings only");
    let (p64, b64) = (B64URL.encode(&protected), B64URL.encode(&payload));
    let input = format!("{p64}.{b64}");
    let sig = signer
        .sign(input.as_bytes())
        .map_err(|e| NotationError::Signing(e.to_string()))?;
    let header = BTreeMap::from([
        (
            "x5c".to_string(),
            serde_json::Value::from(chain.iter().map(|c| B64.encode(c)).collect::<Vec<_>>()),
        ),
        (
            "io.cncf.notary.signingAgent".to_string(),
            serde_json::Value::from(concat!("trustkeeper/", env!("CARGO_PKG_VERSION"))),
        ),
    ]);
    Ok(serde_json::to_vec(&Envelope {
        payload: b64,
        protected: p64,
        header,
        signature: B64URL.encode(sig),
    })
    .expect("strings only"))
}

/// Whether `envelope` is a JWS over `target` whose ES256 signature verifies under `spki`.
pub fn verify_envelope(envelope: &[u8], target_digest: &str, spki: &[u8]) -> bool {
    let Ok(e) = serde_json::from_slice::<Envelope>(envelope) else {
        return false;
    };
    let Ok(payload) = B64URL.decode(&e.payload) else {
        return false;
    };
    let Ok(p) = serde_json::from_slice::<Payload>(&payload) else {
        return false;
    };
    if p.target_artifact.digest != target_digest {
        return false;
    }
    let Ok(sig) = B64URL.decode(&e.signature) else {
        return false;
    };
    let input = format!("{}.{}", e.protected, e.payload);
    let Ok(public) = spki_point(spki) else {
        return false;
    };
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public)
        .verify(input.as_bytes(), &sig)
        .is_ok()
}

fn spki_point(spki: &[u8]) -> Result<Vec<u8>, ()> {
    use p256::pkcs8::der::Decode;
    let info = p256::pkcs8::spki::SubjectPublicKeyInfoRef::from_der(spki).map_err(|_| ())?;
    info.subject_public_key
        .as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or(())
}

/// The leaf certificate must carry the signer's public key.
fn check_leaf(signer: &dyn Signer, chain: &[Vec<u8>]) -> Result<(), NotationError> {
    use x509_cert::der::{Decode, Encode};
    let wrong = |detail: String| NotationError::WrongCertificate { detail };
    let leaf = chain
        .first()
        .ok_or_else(|| wrong("the certificate chain is empty".into()))?;
    let cert = x509_cert::Certificate::from_der(leaf).map_err(|e| wrong(e.to_string()))?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| wrong(e.to_string()))?;
    let ours = signer
        .public_key()
        .spki_der()
        .map_err(|e| wrong(e.to_string()))?;
    if spki != ours {
        return Err(wrong(format!(
            "its leaf is for another key than {}",
            signer.key_id()
        )));
    }
    Ok(())
}

/// The signature manifest for `envelope` over `subject`; returns (manifest bytes, the
/// annotations the referrers index lists with it).
pub fn signature_manifest(
    subject: &ManifestDescriptor,
    envelope: &[u8],
    chain: &[Vec<u8>],
    created: jiff::Timestamp,
) -> (Vec<u8>, BTreeMap<String, String>) {
    let thumbs = serde_json::to_string(&thumbprints(chain)).expect("strings only");
    let annotations = BTreeMap::from([
        (THUMBPRINT_ANNOTATION.to_string(), thumbs),
        (
            CREATED_ANNOTATION.to_string(),
            created.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        ),
    ]);
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_V1,
        "config": {"mediaType": SIGNATURE_ARTIFACT_TYPE, "digest": sha256_digest(EMPTY_CONFIG),
                   "size": EMPTY_CONFIG.len()},
        "layers": [{"mediaType": JWS_MEDIA_TYPE, "digest": sha256_digest(envelope),
                    "size": envelope.len()}],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest,
                    "size": subject.size},
        "annotations": annotations,
    });
    (serde_json::to_vec(&m).expect("strings only"), annotations)
}

/// One entry of a referrers index; unknown fields are kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referrer {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// The referrers index a `sha256-<hex>` tag holds (every referrer: Notation's, cosign 3's
/// bundles, others').
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReferrersIndex {
    pub manifests: Vec<Referrer>,
}

impl ReferrersIndex {
    pub fn parse(tag: &str, bytes: &[u8]) -> Result<ReferrersIndex, NotationError> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(rename = "schemaVersion")]
            schema_version: u32,
            #[serde(rename = "mediaType")]
            media_type: Option<String>,
            manifests: Vec<Referrer>,
        }
        let bad = |detail: String| NotationError::MalformedIndex {
            tag: tag.to_string(),
            detail,
        };
        let w: Wire = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if w.schema_version != 2 || w.media_type.as_deref().is_some_and(|m| m != OCI_INDEX_V1) {
            return Err(bad("not schemaVersion 2 / an OCI index".into()));
        }
        if w.manifests.len() > MAX_REFERRERS {
            return Err(bad(format!(
                "{} referrers, more than the {MAX_REFERRERS} kept",
                w.manifests.len()
            )));
        }
        for m in &w.manifests {
            trustkeeper_registry::reference::validate_digest(&m.digest)
                .map_err(|e| bad(format!("referrer digest {:?}: {e}", m.digest)))?;
        }
        Ok(ReferrersIndex {
            manifests: w.manifests,
        })
    }

    /// The Notation signatures listed whose chain starts with the leaf thumbprint `leaf`.
    pub fn signed_by(&self, leaf: &str) -> Vec<&Referrer> {
        self.manifests
            .iter()
            .filter(|m| m.artifact_type.as_deref() == Some(SIGNATURE_ARTIFACT_TYPE))
            .filter(|m| {
                m.annotations
                    .get(THUMBPRINT_ANNOTATION)
                    .and_then(|t| serde_json::from_str::<Vec<String>>(t).ok())
                    .is_some_and(|t| t.first().is_some_and(|f| f == leaf))
            })
            .collect()
    }

    /// Whether every entry of `other` is listed here.
    pub fn contains_all(&self, other: &ReferrersIndex) -> bool {
        (other.manifests.iter()).all(|o| self.manifests.iter().any(|m| m.digest == o.digest))
    }

    /// This index with the entries of `want` it lacks appended.
    pub fn union(&self, want: &ReferrersIndex) -> ReferrersIndex {
        let mut next = self.clone();
        for o in &want.manifests {
            if !next.manifests.iter().any(|m| m.digest == o.digest) {
                next.manifests.push(o.clone());
            }
        }
        next
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX_V1,
            "manifests": self.manifests,
        }))
        .expect("strings only")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustkeeper_notary::SigningKey;

    #[test]
    fn envelope_verifies_under_its_key_only_and_needs_the_keys_certificate() {
        let key = SigningKey::generate_ecdsa("targets", "example.com/app").unwrap();
        let other = SigningKey::generate_ecdsa("targets", "example.com/app").unwrap();
        let now = jiff::Timestamp::now();
        let cert = |k: &SigningKey| {
            let c = trustkeeper_notary::init::root_certificate(k, "example.com/app", now).unwrap();
            pem::parse(&c.public).unwrap().contents().to_vec()
        };
        let target = ManifestDescriptor {
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 5,
            media_type: OCI_MANIFEST_V1.into(),
        };
        let ours = cert(&key);
        let env = envelope(&key, &target, std::slice::from_ref(&ours), now).unwrap();
        let spki = key.public().spki_der().unwrap();
        assert!(verify_envelope(&env, &target.digest, &spki));
        assert!(!verify_envelope(
            &env,
            &target.digest,
            &other.public().spki_der().unwrap()
        ));
        assert!(!verify_envelope(
            &env,
            &format!("sha256:{}", "b".repeat(64)),
            &spki
        ));
        let e = envelope(&key, &target, &[cert(&other)], now).unwrap_err();
        assert!(matches!(e, NotationError::WrongCertificate { .. }), "{e}");
        let (m, ann) = signature_manifest(&target, &env, std::slice::from_ref(&ours), now);
        let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        assert_eq!(v["subject"]["digest"], target.digest.as_str());
        assert_eq!(v["config"]["mediaType"], SIGNATURE_ARTIFACT_TYPE);
        let thumbs: Vec<String> = serde_json::from_str(&ann[THUMBPRINT_ANNOTATION]).unwrap();
        assert_eq!(thumbs, thumbprints(&[ours]));
    }

    #[test]
    fn referrers_index_keeps_others_and_refuses_hostile_ones() {
        // the index cosign 3.1 pushed as its referrers tag on the testbed
        let cosign = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":877,"digest":"sha256:c95ba153adc7088a96064b6b0c2678bff2bed5ee20119ca3687bc4c18392759c","artifactType":"application/vnd.oci.empty.v1+json"}]}"#;
        let i = ReferrersIndex::parse("t", cosign).unwrap();
        assert_eq!(i.manifests.len(), 1);
        assert!(i.signed_by("x").is_empty());
        let ours = ReferrersIndex {
            manifests: vec![Referrer {
                media_type: OCI_MANIFEST_V1.into(),
                digest: format!("sha256:{}", "c".repeat(64)),
                size: 3,
                annotations: BTreeMap::from([(
                    THUMBPRINT_ANNOTATION.to_string(),
                    r#"["leaf"]"#.to_string(),
                )]),
                artifact_type: Some(SIGNATURE_ARTIFACT_TYPE.into()),
                other: BTreeMap::new(),
            }],
        };
        let both = i.union(&ours);
        assert_eq!(both.manifests.len(), 2);
        assert!(both.contains_all(&i) && both.contains_all(&ours));
        assert_eq!(both.signed_by("leaf").len(), 1);
        let round = ReferrersIndex::parse("t", &both.to_bytes()).unwrap();
        assert_eq!(round, both);
        for bad in [
            &br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","manifests":[]}"#[..],
            br#"{"schemaVersion":2,"manifests":[{"mediaType":"x","size":1,"digest":"../x"}]}"#,
            b"[]",
        ] {
            assert!(ReferrersIndex::parse("t", bad).is_err());
        }
    }
}
