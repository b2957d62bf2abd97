//! Docker registry client: image references, credentials, tags and manifest digests.
//! Knows nothing of notary, the engine or Kubernetes.

mod auth;
pub mod challenge;
mod client;
pub mod credentials;
pub mod error;
pub mod manifest;
mod pool;
pub mod reference;
pub mod retry;
pub mod stats;
pub mod tags;
mod transport;

pub use client::{RegistryClient, RegistryOptions};
pub use credentials::{Credentials, DockerConfig};
pub use error::{RegistryError, Result};
pub use manifest::{ManifestDescriptor, RawManifest};
pub use pool::RegistryPool;
pub use reference::ImageRef;
pub use retry::RetryPolicy;
pub use stats::RequestStats;
pub use tags::{Selection, TagSelector};
