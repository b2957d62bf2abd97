//! Reconcile engine: resolve → plan → apply → verify → status, for one SignedImage.
//! Knows nothing of Kubernetes.

pub mod model;
pub mod plan;
pub mod report;
pub mod request;
pub mod schedule;
pub mod status;

pub use request::{
    Credentials, EngineEvent, EventType, NotaryAuth, Outcome, ReconcileRequest, Reconciler,
};
