//! Kubernetes operator glue: watches SignedImages, reads Secrets, writes status and Events.
//! Generic over [`crate::engine::Reconciler`]; knows nothing of notary.
//!
//! | file | one job |
//! |---|---|
//! | `args.rs` | `trustkeeper controller` flags ([`ControllerArgs`]) and [`main`] |
//! | `runner.rs` | [`run`] / [`run_with`]: HTTP server, leader election, the kube-runtime Controllers |
//! | `reconcile.rs` | one reconcile: suspended? → Secrets → engine → status → Events → metrics |
//! | `secrets.rs` | [`KubeSecrets`]: the engine's `SecretSource` over the core API |
//! | `status.rs` | controller-side statuses (Suspended, SecretNotFound/Invalid) and the SSA body |
//! | `lease.rs` | [`LeaderElector`] on a coordination.k8s.io/v1 Lease (get/create/replace) |
//! | `http.rs` | `/metrics`, `/healthz`, `/readyz`, `POST /notifications` |
//! | `notify.rs` | which SignedImages a registry push notification concerns |
//! | `metrics.rs` | prometheus-client registry; per-SignedImage gauges computed at scrape time |
//! | `logging.rs` | flat JSON log lines carrying the reconcile span's `namespace`/`name` |
//! | `fake.rs` | a canned-Outcome Reconciler for tests |
//! | `renew.rs` | the renew-now annotations: what is pending, the watch predicate |
//!
//! Triggers: a spec change (the watch is filtered by `metadata.generation`, so our own status
//! writes never re-trigger), a new renew-now request (`renew.rs`), the requeue time (`Outcome.requeue_at`, or backoff after a failure),
//! and registry push notifications. A SignedImage whose status says it is not due
//! (`observedGeneration` current, and `nextSyncTime` ahead after failures, or Ready) is not run
//! when a restarted controller or a new leader lists it: a failing one is requeued for its
//! backoff, a Ready one at a random point of its poll interval, so failover is no thundering
//! herd. A check that finds nothing new writes no status: a Ready status holds no time of the
//! last or next poll. Leadership: non-leaders serve `/metrics` and health but run
//! no Controller and answer `/notifications` with 503 (the registry retries; polling is the
//! safety net); a leader that loses its Lease drops its Controllers (cancelling running
//! reconciles) and [`run`] returns `Error::LeadershipLost`, so the process exits.

pub mod args;
pub mod error;
pub mod fake;
pub mod http;
pub mod lease;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod reconcile;
pub mod renew;
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
pub use secrets::KubeSecrets;
// The engine's; re-exported because the controller's callers (tests, benches) name them here.
pub use crate::engine::secrets::{MapSecrets, SecretData, SecretSource};

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
