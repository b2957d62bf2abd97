//! Reconcile engine for one SignedImage; knows nothing of Kubernetes (no kube, no k8s-openapi:
//! `tests/layering.rs`).
//!
//! The stages, a file each, in the order a run takes them ([`run`] orchestrates them, with the
//! deadline and the conflict loop):
//!
//! | stage | file | I/O |
//! |---|---|---|
//! | the spec's values parsed, the trust anchor | [`settings`] | none |
//! | the registry's tags and digests; the trust data read (notary crate); the keys | [`resolve`], [`keys`] | reads |
//! | what to sign, renew or remove, and the problems that stop it | [`plan`] (over [`model`], filled by [`view`]) | none |
//! | the changes signed into files for one publish | [`apply`] | none |
//! | the read-back holds what was planned | [`verify`] | none |
//! | status, Events, schedule, counts: the one owner of [`Outcome`] | [`outcome`], [`status`], [`schedule`], [`report`] (the words) | none |
//!
//! Around them: [`api`] (the resource's spec and status as plain data), [`request`] (what goes
//! in and out), [`secrets`] (credential gathering behind `SecretSource`), [`clients`] (clients
//! kept between runs), [`progress`] (what a run cut off at its deadline was doing),
//! [`failure`] (errors to reasons).

pub mod api;
pub mod apply;
pub mod clients;
pub mod cosign;
pub mod dry_run;
pub mod failure;
pub mod keys;
pub mod model;
pub mod notation;
pub mod outcome;
pub mod plan;
pub mod planned;
pub mod progress;
mod registry_formats;
pub mod report;
pub mod request;
pub mod resolve;
pub mod run;
pub mod schedule;
pub mod secrets;
pub mod settings;
pub mod status;
pub mod verify;
pub mod view;
pub mod without_notary;

pub use failure::Failure;
pub use outcome::suspension;
pub use request::{
    EngineEvent, EventType, NotaryAuth, Outcome, ReconcileRequest, Reconciler, Requests, RunSecrets,
};
pub use run::Engine;
pub use settings::Settings;
