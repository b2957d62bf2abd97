//! The `SignedImage` Kubernetes resource: the kube derive around the plain spec and status, so
//! that only this file (and the operator) knows of kube.

use std::ops::Deref;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{SignedImageSpec, SignedImageStatus};

// The spec of a `SignedImage` as the API server holds it: `SignedImageSpec`, which it
// dereferences to. (A `//` comment: the schema's description is the inner type's.)
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "trustkeeper.dev",
    version = "v1alpha1",
    kind = "SignedImage",
    doc = "A SignedImage keeps one image repository's Docker Content Trust metadata signed and fresh.",
    plural = "signedimages",
    singular = "signedimage",
    shortname = "si",
    namespaced,
    status = "SignedImageStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Tags","type":"string","jsonPath":".status.tagSummary"}"#,
    printcolumn = r#"{"name":"Expires","type":"date","jsonPath":".status.earliestExpiry"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct ResourceSpec(pub SignedImageSpec);

impl Deref for ResourceSpec {
    type Target = SignedImageSpec;
    fn deref(&self) -> &SignedImageSpec {
        &self.0
    }
}

impl From<SignedImageSpec> for ResourceSpec {
    fn from(spec: SignedImageSpec) -> Self {
        ResourceSpec(spec)
    }
}
