//! Kubernetes operator glue: watches SignedImages, reads Secrets, writes status and Events.

pub mod error;
pub mod metrics;
pub mod reconcile;
pub mod secrets;
pub mod status;

pub use error::Error;
pub use metrics::Metrics;
pub use reconcile::{Context, error_policy, reconcile};
pub use secrets::{KubeSecrets, MapSecrets, SecretData, SecretSource};
