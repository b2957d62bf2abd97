//! Kubernetes operator glue: watches SignedImages, reads Secrets, writes status and Events.

pub mod args;
pub mod error;
pub mod fake;
pub mod http;
pub mod lease;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod reconcile;
pub mod runner;
pub mod secrets;
pub mod status;

#[cfg(test)]
mod scenarios;

pub use args::{ControllerArgs, main};
pub use error::Error;
pub use lease::{LeaderElector, LeaseConfig};
pub use metrics::Metrics;
pub use reconcile::{Context, error_policy, reconcile};
pub use runner::{ControllerConfig, run, run_with, shutdown_signal};
pub use secrets::{KubeSecrets, MapSecrets, SecretData, SecretSource};

/// Every Kubernetes API call the controller makes, as (verb, API group, resource): what its
/// RBAC role must allow and nothing more. The mocked scenarios fail on any request not listed.
pub const API_CALLS: &[(&str, &str, &str)] = &[
    ("list", "trustkeeper.dev", "signedimages"),
    ("watch", "trustkeeper.dev", "signedimages"),
    ("patch", "trustkeeper.dev", "signedimages/status"),
    ("get", "", "secrets"),
    ("get", "", "configmaps"),
    ("create", "events.k8s.io", "events"),
    ("patch", "events.k8s.io", "events"),
    ("get", "coordination.k8s.io", "leases"),
    ("create", "coordination.k8s.io", "leases"),
    ("update", "coordination.k8s.io", "leases"),
];
