//! Test images pushed through our registry client: a single-platform image, a Docker manifest
//! list and an OCI index of blobs of their own, for the referee tests of the signature formats.

use trustkeeper::registry::manifest::{
    DOCKER_MANIFEST_LIST_V2, DOCKER_MANIFEST_V2, OCI_INDEX_V1, OCI_MANIFEST_V1, sha256_digest,
};
use trustkeeper::registry::{ImageRef, RegistryClient};

/// One platform image: config + one layer, its manifest under `reference`; returns the
/// manifest descriptor JSON for an index.
pub async fn push_platform(
    c: &RegistryClient,
    image: &ImageRef,
    arch: &str,
    oci: bool,
    reference: Option<&str>,
) -> serde_json::Value {
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"repo":"{}"}}"#,
        image.repository()
    )
    .into_bytes();
    let layer = format!("{arch} layer of {} oci={oci}", image.repository()).into_bytes();
    c.push_blob(image, &config).await.unwrap();
    c.push_blob(image, &layer).await.unwrap();
    let (mt, config_mt, layer_mt) = if oci {
        (
            OCI_MANIFEST_V1,
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar",
        )
    } else {
        (
            DOCKER_MANIFEST_V2,
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar",
        )
    };
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "config": {"mediaType": config_mt, "size": config.len(), "digest": sha256_digest(&config)},
        "layers": [{"mediaType": layer_mt, "size": layer.len(), "digest": sha256_digest(&layer)}],
    }))
    .unwrap();
    let digest = sha256_digest(&manifest);
    c.put_manifest(image, reference.unwrap_or(&digest), mt, &manifest)
        .await
        .unwrap();
    serde_json::json!({"mediaType": mt, "size": manifest.len(), "digest": digest,
                       "platform": {"architecture": arch, "os": "linux"}})
}

/// Pushes `v1` (Docker schema 2), `multi` (Docker manifest list) and `oci-multi` (OCI index);
/// returns tag → digest.
pub async fn push_images_with(c: &RegistryClient, repo: &str) -> Vec<(String, String)> {
    let image = ImageRef::parse(repo).unwrap();
    let single = push_platform(c, &image, "amd64", false, Some("v1")).await;
    let mut out = vec![(
        "v1".to_string(),
        single["digest"].as_str().unwrap().to_string(),
    )];
    for (tag, mt, oci) in [
        ("multi", DOCKER_MANIFEST_LIST_V2, false),
        ("oci-multi", OCI_INDEX_V1, true),
    ] {
        let mut platforms = Vec::new();
        for arch in ["amd64", "arm64"] {
            platforms.push(push_platform(c, &image, arch, oci, None).await);
        }
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": mt, "manifests": platforms,
        }))
        .unwrap();
        let d = c.put_manifest(&image, tag, mt, &index).await.unwrap();
        out.push((tag.to_string(), d));
    }
    out
}
