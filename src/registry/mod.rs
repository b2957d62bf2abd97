//! Docker registry client: image references, credentials, tags and manifest digests.
//! Knows nothing of notary, the engine or Kubernetes.

pub mod challenge;
pub mod credentials;
pub mod error;
pub mod manifest;
pub mod reference;
pub mod retry;
pub mod stats;
pub mod tags;

pub use credentials::{Credentials, DockerConfig};
pub use error::{RegistryError, Result};
pub use manifest::{ManifestDescriptor, RawManifest};
pub use reference::ImageRef;
pub use retry::RetryPolicy;
pub use stats::RequestStats;
pub use tags::{Selection, TagSelector};
