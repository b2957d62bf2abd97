//! Manifest media types and descriptors.

use sha2::{Digest as _, Sha256};

use super::error::{RegistryError, Result};

/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (multi-platform).
pub const DOCKER_MANIFEST_LIST_V2: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST_V1: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (multi-platform).
pub const OCI_INDEX_V1: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 1 (unsupported).
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1, signed (unsupported).
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The manifest types we resolve and sign, in `Accept` order.
pub const SUPPORTED_MEDIA_TYPES: [&str; 4] = [
    DOCKER_MANIFEST_V2,
    DOCKER_MANIFEST_LIST_V2,
    OCI_MANIFEST_V1,
    OCI_INDEX_V1,
];

/// What notary signs for a tag: the manifest's digest, byte size and media type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ManifestDescriptor {
    /// `sha256:<hex>` of the exact manifest bytes.
    pub digest: String,
    /// Length of the manifest bytes.
    pub size: u64,
    /// One of [`SUPPORTED_MEDIA_TYPES`].
    pub media_type: String,
}

impl ManifestDescriptor {
    /// The digest's hex part (what notary's `hashes.sha256` holds, base64-decoded).
    pub fn sha256_hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }
}

/// A manifest's exact bytes with their descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawManifest {
    pub bytes: Vec<u8>,
    pub descriptor: ManifestDescriptor,
}

pub(crate) fn accept_header() -> String {
    SUPPORTED_MEDIA_TYPES.join(", ")
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The media type without parameters (`; charset=utf-8`), lowercased.
pub(crate) fn clean_media_type(v: &str) -> String {
    v.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

pub(crate) fn is_supported(mt: &str) -> bool {
    SUPPORTED_MEDIA_TYPES.contains(&mt)
}

pub(crate) fn is_schema1(mt: &str) -> bool {
    mt == DOCKER_MANIFEST_V1 || mt == DOCKER_MANIFEST_V1_SIGNED
}

/// Decides the media type of manifest bytes: the `Content-Type` if supported, else the body's
/// `mediaType`, else (schema 2 without `mediaType`, allowed for OCI) by shape.
pub(crate) fn media_type_of(
    reference: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<String> {
    let unsupported = |mt: &str| RegistryError::Unsupported {
        reference: reference.to_string(),
        media_type: mt.to_string(),
    };
    if let Some(ct) = content_type {
        if is_supported(ct) {
            return Ok(ct.to_string());
        }
        if is_schema1(ct) {
            return Err(unsupported(ct));
        }
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u64>,
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let fallback = content_type.unwrap_or("(none)");
    let Ok(p) = serde_json::from_slice::<Probe>(body) else {
        return Err(unsupported(fallback));
    };
    if p.schema_version == Some(1) {
        return Err(unsupported(DOCKER_MANIFEST_V1));
    }
    match p.media_type {
        Some(mt) if is_supported(&mt) => Ok(mt),
        Some(mt) => Err(unsupported(&mt)),
        None if p.schema_version == Some(2) && p.manifests.is_some() => Ok(OCI_INDEX_V1.into()),
        None if p.schema_version == Some(2) && p.layers.is_some() => Ok(OCI_MANIFEST_V1.into()),
        None => Err(unsupported(fallback)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_decisions() {
        let r = "x";
        assert_eq!(
            media_type_of(r, Some(OCI_INDEX_V1), b"").unwrap(),
            OCI_INDEX_V1
        );
        let e = media_type_of(r, Some(DOCKER_MANIFEST_V1_SIGNED), b"{}").unwrap_err();
        assert!(
            matches!(e, RegistryError::Unsupported { ref media_type, .. } if media_type == DOCKER_MANIFEST_V1_SIGNED)
        );
        let body = format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_V2}"}}"#);
        assert_eq!(
            media_type_of(r, Some("application/json"), body.as_bytes()).unwrap(),
            DOCKER_MANIFEST_V2
        );
        assert_eq!(
            media_type_of(r, None, br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            OCI_INDEX_V1
        );
        assert_eq!(
            media_type_of(r, None, br#"{"schemaVersion":2,"layers":[]}"#).unwrap(),
            OCI_MANIFEST_V1
        );
        assert!(matches!(
            media_type_of(r, None, br#"{"schemaVersion":1,"fsLayers":[]}"#),
            Err(RegistryError::Unsupported { .. })
        ));
        assert!(matches!(
            media_type_of(r, Some("text/html"), b"<html>"),
            Err(RegistryError::Unsupported { .. })
        ));
        assert_eq!(
            clean_media_type("Application/JSON; charset=utf-8"),
            "application/json"
        );
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
