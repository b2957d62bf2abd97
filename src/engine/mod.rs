//! Reconcile engine: resolve → plan → apply → verify → status, for one SignedImage.
//! Knows nothing of Kubernetes.

pub mod model;
pub mod plan;
pub mod request;
pub mod schedule;

pub use request::{
    Credentials, EngineEvent, EventType, NotaryAuth, Outcome, ReconcileRequest, Reconciler,
};
