//! The cosign signature layout every cosign verifier reads (cosign 2.x and 3.x, sigstore
//! policy-controller, Kyverno, Connaisseur), without I/O:
//!
//! - the tag `sha256-<hex>.sig` in the image's repository holds an OCI image manifest;
//! - its config is an `application/vnd.oci.image.config.v1+json` blob listing the layers as
//!   `rootfs.diff_ids` (as go-containerregistry writes it; verifiers do not read it);
//! - each layer is one signature: a blob of media type
//!   `application/vnd.dev.cosign.simplesigning.v1+json` holding the simple-signing payload
//!   `{"critical":{"identity":{"docker-reference":R},"image":{"docker-manifest-digest":D},
//!   "type":"cosign container image signature"},"optional":null}`, and the annotation
//!   `dev.cosignproject.cosign/signature` = base64 of the ASN.1 DER ECDSA signature over the
//!   payload bytes (SHA-256).
//!
//! Layers of other signers (other keys, certificates, bundles in other annotations) are kept as
//! they are: [`SignatureManifest::with_layer`] appends.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use trustkeeper_registry::ImageRef;
use trustkeeper_registry::manifest::{DOCKER_MANIFEST_V2, OCI_MANIFEST_V1, sha256_digest};
use trustkeeper_registry::reference::is_docker_hub;

/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Annotation holding the base64 DER signature over the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Media type of the signature manifest's config.
pub const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The config media type cosign writes under `COSIGN_DOCKER_MEDIA_TYPES=1`.
pub const DOCKER_CONFIG_MEDIA_TYPE: &str = "application/vnd.docker.container.image.v1+json";
/// The `critical.type` of an image signature.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
/// Layers one signature manifest may carry before it is refused (cosign has no limit; a tag
/// with thousands of signatures is a broken or hostile registry, and each costs a verify).
pub const MAX_SIGNATURE_LAYERS: usize = 1_000;
/// Largest payload blob read (cosign's are a few hundred bytes; annotations make them grow).
pub const MAX_PAYLOAD_BYTES: usize = 256 << 10;

/// Why a signature manifest (or layer) is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "the cosign signature manifest {tag} is not an image manifest cosign writes ({detail}): \
         it was not changed; remove or repair the tag, then sign again"
    )]
    Malformed { tag: String, detail: String },
    #[error(
        "the cosign signature manifest {tag} has {count} layers, more than the \
         {MAX_SIGNATURE_LAYERS} kept: refused, not changed; prune old signatures from the tag"
    )]
    TooManyLayers { tag: String, count: usize },
}

/// `sha256-<hex>.sig`: the tag cosign stores the signatures of `digest` under.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// The `docker-reference` cosign writes: the repository as go-containerregistry names it
/// (`index.docker.io/library/alpine` on Docker Hub, `host[:port]/path` elsewhere).
pub fn docker_reference(image: &ImageRef) -> String {
    if is_docker_hub(image.registry_host()) {
        format!("index.docker.io/{}", image.repository())
    } else {
        format!("{}/{}", image.registry_host(), image.repository())
    }
}

#[derive(Serialize, Deserialize)]
struct Payload<'a> {
    #[serde(borrow)]
    critical: Critical<'a>,
    optional: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct Critical<'a> {
    #[serde(borrow)]
    identity: Identity<'a>,
    #[serde(borrow)]
    image: Image<'a>,
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(Serialize, Deserialize)]
struct Identity<'a> {
    #[serde(rename = "docker-reference")]
    docker_reference: &'a str,
}

#[derive(Serialize, Deserialize)]
struct Image<'a> {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: &'a str,
}

/// The simple-signing payload for `digest` in `image`'s repository, byte for byte as cosign
/// writes it (so that a re-run finds its layer by digest).
pub fn payload(image: &ImageRef, digest: &str) -> Vec<u8> {
    let reference = docker_reference(image);
    serde_json::to_vec(&Payload {
        critical: Critical {
            identity: Identity {
                docker_reference: &reference,
            },
            image: Image {
                docker_manifest_digest: digest,
            },
            kind: SIGNATURE_TYPE,
        },
        optional: None,
    })
    .expect("strings only")
}

/// The manifest digest a payload signs, if it is an image signature payload at all.
pub fn payload_digest(bytes: &[u8]) -> Option<String> {
    let p: Payload<'_> = serde_json::from_slice(bytes).ok()?;
    (p.critical.kind == SIGNATURE_TYPE).then(|| p.critical.image.docker_manifest_digest.into())
}

/// A descriptor as manifests list it; unknown fields (`urls`, `artifactType`, …) are kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
    pub digest: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl Descriptor {
    /// The base64 signature annotation, decoded.
    pub fn signature(&self) -> Option<Vec<u8>> {
        B64.decode(self.annotations.get(SIGNATURE_ANNOTATION)?).ok()
    }

    /// Whether this is a simple-signing layer.
    pub fn is_simple_signing(&self) -> bool {
        self.media_type == SIMPLE_SIGNING_MEDIA_TYPE
    }
}

/// A signature manifest: what the `.sig` tag holds, or an empty one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureManifest {
    /// OCI (cosign's default) or Docker schema 2 (`COSIGN_DOCKER_MEDIA_TYPES=1`), kept as found.
    pub media_type: String,
    pub config_media_type: String,
    pub layers: Vec<Descriptor>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
}

impl Default for SignatureManifest {
    fn default() -> Self {
        SignatureManifest {
            media_type: OCI_MANIFEST_V1.into(),
            config_media_type: OCI_CONFIG_MEDIA_TYPE.into(),
            layers: Vec::new(),
        }
    }
}

impl SignatureManifest {
    /// Reads the manifest bytes the `.sig` tag `tag` serves (already bounded by the client).
    pub fn parse(tag: &str, bytes: &[u8]) -> Result<SignatureManifest, LayoutError> {
        let bad = |detail: String| LayoutError::Malformed {
            tag: tag.to_string(),
            detail,
        };
        let w: Wire = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if w.schema_version != 2 {
            return Err(bad(format!("schemaVersion {}", w.schema_version)));
        }
        let media_type = w.media_type.unwrap_or_else(|| OCI_MANIFEST_V1.into());
        if media_type != OCI_MANIFEST_V1 && media_type != DOCKER_MANIFEST_V2 {
            return Err(bad(format!("media type {media_type:?}")));
        }
        if w.layers.len() > MAX_SIGNATURE_LAYERS {
            return Err(LayoutError::TooManyLayers {
                tag: tag.to_string(),
                count: w.layers.len(),
            });
        }
        for l in &w.layers {
            trustkeeper_registry::reference::validate_digest(&l.digest)
                .map_err(|e| bad(format!("layer digest {:?}: {e}", l.digest)))?;
        }
        Ok(SignatureManifest {
            media_type,
            config_media_type: w.config.media_type,
            layers: w.layers,
        })
    }

    /// The layer that carries `payload` (by digest) with a signature `verify` accepts.
    pub fn find(&self, payload: &[u8], verify: impl Fn(&[u8]) -> bool) -> Option<&Descriptor> {
        let digest = sha256_digest(payload);
        self.layers.iter().find(|l| {
            l.is_simple_signing() && l.digest == digest && l.signature().is_some_and(|s| verify(&s))
        })
    }

    /// This manifest with one more layer: `payload` signed by `der_signature`.
    pub fn with_layer(&self, payload: &[u8], der_signature: &[u8]) -> SignatureManifest {
        let mut next = self.clone();
        next.layers.push(Descriptor {
            media_type: SIMPLE_SIGNING_MEDIA_TYPE.into(),
            size: payload.len() as u64,
            digest: sha256_digest(payload),
            annotations: BTreeMap::from([(SIGNATURE_ANNOTATION.into(), B64.encode(der_signature))]),
            other: BTreeMap::new(),
        });
        next
    }

    /// Whether every layer of `other` is here too (same digest and annotations): what a writer
    /// checks after its push, to see that no concurrent writer replaced its layers.
    pub fn contains_all(&self, other: &SignatureManifest) -> bool {
        other.layers.iter().all(|o| {
            self.layers
                .iter()
                .any(|l| l.digest == o.digest && l.annotations == o.annotations)
        })
    }

    /// This manifest with the layers of `want` it lacks appended (a concurrent writer's push
    /// dropped them): nobody's signature is lost to a read-modify-write race.
    pub fn union(&self, want: &SignatureManifest) -> SignatureManifest {
        let mut next = self.clone();
        for o in &want.layers {
            let here = next
                .layers
                .iter()
                .any(|l| l.digest == o.digest && l.annotations == o.annotations);
            if !here {
                next.layers.push(o.clone());
            }
        }
        next
    }

    /// The config blob (go-containerregistry's, as cosign writes it: the layers as diff IDs,
    /// one empty history entry each).
    pub fn config(&self) -> Vec<u8> {
        // Field order as go-containerregistry marshals it: the config's digest is cosign's.
        #[derive(Serialize)]
        struct Config<'a> {
            architecture: &'a str,
            created: &'a str,
            history: Vec<History<'a>>,
            os: &'a str,
            rootfs: RootFs<'a>,
            config: BTreeMap<String, String>,
        }
        #[derive(Serialize)]
        struct History<'a> {
            created: &'a str,
        }
        #[derive(Serialize)]
        struct RootFs<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            diff_ids: Vec<&'a str>,
        }
        const ZERO: &str = "0001-01-01T00:00:00Z";
        serde_json::to_vec(&Config {
            architecture: "",
            created: ZERO,
            history: self
                .layers
                .iter()
                .map(|_| History { created: ZERO })
                .collect(),
            os: "",
            rootfs: RootFs {
                kind: "layers",
                diff_ids: self.layers.iter().map(|l| l.digest.as_str()).collect(),
            },
            config: BTreeMap::new(),
        })
        .expect("strings only")
    }

    /// The manifest bytes over `config` (the bytes [`SignatureManifest::config`] made).
    pub fn to_bytes(&self, config: &[u8]) -> Vec<u8> {
        serde_json::to_vec(&Wire {
            schema_version: 2,
            media_type: Some(self.media_type.clone()),
            config: Descriptor {
                media_type: self.config_media_type.clone(),
                size: config.len() as u64,
                digest: sha256_digest(config),
                annotations: BTreeMap::new(),
                other: BTreeMap::new(),
            },
            layers: self.layers.clone(),
            annotations: None,
        })
        .expect("strings only")
    }
}

/// Verifies an ASN.1 DER ECDSA P-256 SHA-256 signature (cosign's encoding) over `msg` with the
/// SubjectPublicKeyInfo `spki_der`. Any failure is `false`.
pub fn verify_p256_der(spki_der: &[u8], msg: &[u8], der_signature: &[u8]) -> bool {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
    use p256::pkcs8::der::Decode;
    let Ok(info) = p256::pkcs8::spki::SubjectPublicKeyInfoRef::from_der(spki_der) else {
        return false;
    };
    let Some(point) = info.subject_public_key.as_bytes() else {
        return false;
    };
    // The curve comes from the key, not the signature: a P-384 key must not verify here.
    let p256_oid = p256::pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
    if info.algorithm.parameters_oid().ok() != Some(p256_oid) {
        return false;
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
        .verify(msg, der_signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustkeeper_notary::SigningKey;

    const D: &str = "sha256:a5a2013ccf451bb0517b7892f2b288d98492c09fbb203557052afa01ea802eca";

    #[test]
    fn payload_and_tag_as_cosign_writes_them() {
        let image = ImageRef::parse("127.0.0.1:20551/exp/h18:v1").unwrap();
        // bytes `cosign sign` (3.1) pushed for this digest on the testbed registry
        let cosign = br#"{"critical":{"identity":{"docker-reference":"127.0.0.1:20551/exp/h18"},"image":{"docker-manifest-digest":"sha256:a5a2013ccf451bb0517b7892f2b288d98492c09fbb203557052afa01ea802eca"},"type":"cosign container image signature"},"optional":null}"#;
        assert_eq!(payload(&image, D), cosign.to_vec());
        assert_eq!(
            sha256_digest(cosign),
            "sha256:d3e345b1c5a882b25153600bdee8bc51e16c0f0665407055c68735fd2c0dc650"
        );
        assert_eq!(payload_digest(cosign).as_deref(), Some(D));
        assert_eq!(
            signature_tag(D),
            "sha256-a5a2013ccf451bb0517b7892f2b288d98492c09fbb203557052afa01ea802eca.sig"
        );
        let hub = ImageRef::parse("alpine").unwrap();
        assert_eq!(docker_reference(&hub), "index.docker.io/library/alpine");
    }

    #[test]
    fn manifest_round_trip_keeps_other_layers_and_matches_cosign_config() {
        // the manifest and config cosign 3.1 pushed (signature shortened: it is kept as is)
        let cosign = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":233,"digest":"sha256:97acbbdd2c0cb3a7758a8ca2dee3c68c4b1496d434a93034b5f663f14883b693"},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":239,"digest":"sha256:d3e345b1c5a882b25153600bdee8bc51e16c0f0665407055c68735fd2c0dc650","annotations":{"dev.cosignproject.cosign/signature":"MEUCIA=="}}]}"#;
        let m = SignatureManifest::parse("t", cosign).unwrap();
        assert_eq!(m.layers.len(), 1);
        let config = m.config();
        assert_eq!(
            sha256_digest(&config),
            "sha256:97acbbdd2c0cb3a7758a8ca2dee3c68c4b1496d434a93034b5f663f14883b693",
            "{}",
            String::from_utf8_lossy(&config)
        );
        assert_eq!(m.to_bytes(&config), cosign.to_vec());
        let next = m.with_layer(b"{}", b"\x30\x00");
        assert_eq!(next.layers.len(), 2);
        assert_eq!(next.layers[0], m.layers[0]);
        assert!(next.contains_all(&m) && !m.contains_all(&next));
    }

    #[test]
    fn hostile_manifests_are_refused() {
        for (bytes, want) in [
            (&b"[]"[..], "not an image manifest"),
            (br#"{"schemaVersion":1,"config":{"mediaType":"x","size":1,"digest":"sha256:00"},"layers":[]}"#, "schemaVersion 1"),
            (br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","config":{"mediaType":"x","size":1,"digest":"x"},"layers":[]}"#, "media type"),
            (br#"{"schemaVersion":2,"config":{"mediaType":"x","size":1,"digest":"x"},"layers":[{"mediaType":"x","size":1,"digest":"../../x"}]}"#, "layer digest"),
        ] {
            let e = SignatureManifest::parse("t", bytes).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        let layer = format!(
            r#"{{"mediaType":"x","size":1,"digest":"sha256:{}"}}"#,
            "a".repeat(64)
        );
        let many = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","size":1,"digest":"x"}},"layers":[{}]}}"#,
            vec![layer; MAX_SIGNATURE_LAYERS + 1].join(",")
        );
        assert!(matches!(
            SignatureManifest::parse("t", many.as_bytes()),
            Err(LayoutError::TooManyLayers { .. })
        ));
    }

    #[test]
    fn our_der_signature_verifies_and_others_do_not() {
        let key = SigningKey::generate_ecdsa("targets/releases", "example.com/app").unwrap();
        let other = SigningKey::generate_ecdsa("targets/releases", "example.com/app").unwrap();
        let spki = key.public().spki_der().unwrap();
        let image = ImageRef::parse("example.com/app").unwrap();
        let p = payload(&image, D);
        let raw = trustkeeper_notary::keys::Signer::sign(&key, &p).unwrap();
        let der = trustkeeper_notary::keys::ecdsa_fixed_to_der(&raw);
        assert_eq!(der[0], 0x30);
        assert!(verify_p256_der(&spki, &p, &der));
        assert!(!verify_p256_der(&spki, b"other payload", &der));
        assert!(!verify_p256_der(&spki, &p, &raw), "r||s is not DER");
        let theirs = trustkeeper_notary::keys::ecdsa_fixed_to_der(
            &trustkeeper_notary::keys::Signer::sign(&other, &p).unwrap(),
        );
        assert!(!verify_p256_der(&spki, &p, &theirs));
        let m = SignatureManifest::default()
            .with_layer(&p, &theirs)
            .with_layer(&p, &der);
        let found = m.find(&p, |s| verify_p256_der(&spki, &p, s)).unwrap();
        assert_eq!(found.signature().unwrap(), der);
    }
}
