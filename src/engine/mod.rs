//! Reconcile engine: resolve → plan → apply → verify → status, for one SignedImage.
//! Knows nothing of Kubernetes.

pub mod clients;
pub mod cosign;
pub mod failure;
pub mod model;
pub mod plan;
pub mod report;
pub mod request;
pub mod run;
pub mod schedule;
pub mod secrets;
pub mod status;
pub mod view;

pub use failure::Failure;
pub use request::{
    EngineEvent, EventType, NotaryAuth, Outcome, ReconcileRequest, Reconciler, Requests, RunSecrets,
};
pub use run::{Engine, Settings};
