//! The engine's entry point as its callers (controller, CLI) see it: what goes in, what comes out.
//! Secret material arrives already read by the caller and is zeroized when dropped.

use std::collections::BTreeMap;
use std::future::Future;

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::model::Manifest;
use crate::api::{SignedImageSpec, SignedImageStatus};

/// Credentials for the notary server.
pub enum NotaryAuth {
    /// A `kubernetes.io/basic-auth` Secret or `NOTARY_AUTH`.
    Basic {
        username: String,
        password: SecretString,
    },
    /// A docker config document (`kubernetes.io/dockerconfigjson`); the entry for the notary
    /// host is used.
    DockerConfig(Zeroizing<Vec<u8>>),
}

/// Everything secret or file-based that a reconcile needs, gathered by the caller.
#[derive(Default)]
pub struct RunSecrets {
    /// The PEM written by `notary key export` (one or more blocks).
    pub signing_key_pem: Zeroizing<Vec<u8>>,
    /// Its passphrase; `None` for an unencrypted key.
    pub passphrase: Option<SecretString>,
    /// A docker config document with registry credentials; `None` = anonymous.
    pub registry_auth: Option<Zeroizing<Vec<u8>>>,
    /// Extra CA certificates (PEM) for the registry.
    pub registry_ca: Option<Vec<u8>>,
    /// Notary server credentials; `None` = anonymous (or the registry's docker config entry for
    /// the notary host, when there is one).
    pub notary_auth: Option<NotaryAuth>,
    /// Extra CA certificates (PEM) for the notary server.
    pub notary_ca: Option<Vec<u8>>,
    /// The Notation signing certificate chain (PEM, leaf first); `None` without notation.
    pub notation_chain_pem: Option<Vec<u8>>,
}

/// One reconcile of one SignedImage.
pub struct ReconcileRequest<'a> {
    /// `namespace/name` (or the file path for the CLI), for logs and events.
    pub id: &'a str,
    pub spec: &'a SignedImageSpec,
    /// `metadata.generation`, copied into `observedGeneration`.
    pub generation: Option<i64>,
    /// The status written last time: trust anchor, last versions seen, conditions, failures.
    pub previous: Option<&'a SignedImageStatus>,
    pub credentials: RunSecrets,
    /// Tags whose manifest the caller already knows (the CLI's `--digest` and `--size`):
    /// signed as given without asking the registry, as `notary addhash` does.
    pub pinned: BTreeMap<String, Manifest>,
}

/// Policy for one run that the caller picks (the CLI's flags); the operator runs with the
/// default. Kept off the long-lived [`super::Engine`], which is shared by every run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Re-sign every role the key holds now, due or not (`trustkeeper witness`).
    pub force_renew: bool,
    /// The key ID the signing key must have (`--key-id`), plain or in the certificate form a
    /// role lists: a run with another key fails before anything is signed.
    pub key_id: Option<String>,
    /// Whose words the messages use: `spec.roles` for a resource, `--role` for `sign`/`witness`.
    pub surface: super::report::Surface,
    /// Stop after the plan: sign and publish nothing (`--dry-run`, through `Engine::dry_run`).
    pub dry_run: bool,
}

/// Severity of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Something worth an Event: a publish, a renewal, a failure or a recovery. Never emitted for a
/// reconcile that changed nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineEvent {
    pub type_: EventType,
    /// CamelCase reason, e.g. `Signed`, `Renewed`, `KeyNotDelegated`.
    pub reason: String,
    /// Human text (no secrets), at most 1024 characters.
    pub note: String,
}

/// The result of a reconcile. Failures are part of it (a status reason), never a panic.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: SignedImageStatus,
    pub events: Vec<EngineEvent>,
    /// When to run again (already includes backoff after a failure); `None`: not until the
    /// spec changes (suspended).
    pub requeue_at: Option<jiff::Timestamp>,
    /// Number of publishes made (0 or 1 normally; more after version conflicts).
    pub publishes: u32,
    /// Roles renewed (witnessed) in this run.
    pub renewed: Vec<String>,
    /// Tags newly signed or moved in this run.
    pub signed: Vec<String>,
    /// Digests signed in a registry format (cosign, Notation) in this run.
    pub signed_formats: Vec<(String, crate::api::SignatureFormat)>,
    /// The Ready reason when the run failed, for failure metrics.
    pub failure_reason: Option<&'static str>,
    /// HTTP requests the run sent.
    pub requests: Requests,
}

/// HTTP requests sent by one run, per server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    pub notary: trustkeeper_notary::server::RequestStats,
    pub registry: trustkeeper_registry::RequestStats,
}

/// What the controller calls; the engine implements it, controller tests may use a fake.
pub trait Reconciler: Send + Sync + 'static {
    fn reconcile(&self, request: ReconcileRequest<'_>) -> impl Future<Output = Outcome> + Send;

    /// [`Reconciler::reconcile`] under a per-run policy (the controller's renew-now requests);
    /// a reconciler without policies ignores it.
    fn reconcile_with(
        &self,
        request: ReconcileRequest<'_>,
        options: RunOptions,
    ) -> impl Future<Output = Outcome> + Send {
        let _ = options;
        self.reconcile(request)
    }
}
