//! A [`Reconciler`] that returns a canned [`Outcome`]: the seam the controller's tests use in
//! place of the engine (ours, not a mock of anything external). It records what it was asked.

use std::sync::{Arc, Mutex};

use secrecy::ExposeSecret;

use crate::engine::{Outcome, ReconcileRequest, Reconciler};

/// What one call of the fake received (no secret values: only whether they were there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeCall {
    pub id: String,
    pub image: String,
    pub generation: Option<i64>,
    pub had_previous: bool,
    pub key_len: usize,
    pub had_passphrase: bool,
    pub had_registry_auth: bool,
}

/// Returns `outcome` (with `observedGeneration` set to the request's generation) and records
/// each call.
#[derive(Clone)]
pub struct FakeReconciler {
    pub outcome: Arc<Mutex<Outcome>>,
    pub calls: Arc<Mutex<Vec<FakeCall>>>,
    /// Set when a call received a passphrase equal to this (to prove it was passed through).
    pub expect_passphrase: Option<String>,
    /// When set, `requeue_at` is now + this (instead of the canned value); shared by clones.
    pub requeue_after: Arc<Mutex<Option<std::time::Duration>>>,
    /// When set, each call takes this long (shared by clones).
    pub delay: Arc<Mutex<Option<std::time::Duration>>>,
    /// Calls running now, and the most ever running at once.
    pub in_flight: Arc<std::sync::atomic::AtomicUsize>,
    pub max_in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeReconciler {
    pub fn new(outcome: Outcome) -> Self {
        FakeReconciler {
            outcome: Arc::new(Mutex::new(outcome)),
            calls: Arc::default(),
            expect_passphrase: None,
            requeue_after: Arc::default(),
            delay: Arc::default(),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
        }
    }

    pub fn calls(&self) -> Vec<FakeCall> {
        self.calls.lock().expect("lock").clone()
    }

    /// From now on, ask to run again `d` after each call.
    pub fn set_requeue_after(&self, d: std::time::Duration) {
        *self.requeue_after.lock().expect("lock") = Some(d);
    }

    /// Replaces the outcome returned from now on.
    pub fn set_outcome(&self, outcome: Outcome) {
        *self.outcome.lock().expect("lock") = outcome;
    }
}

impl Reconciler for FakeReconciler {
    async fn reconcile(&self, request: ReconcileRequest<'_>) -> Outcome {
        use std::sync::atomic::Ordering;
        let now_running = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now_running, Ordering::SeqCst);
        let delay = *self.delay.lock().expect("lock");
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let c = &request.credentials;
        if let (Some(want), Some(got)) = (&self.expect_passphrase, &c.passphrase) {
            assert_eq!(got.expose_secret(), want, "passphrase passed through");
        }
        self.calls.lock().expect("lock").push(FakeCall {
            id: request.id.to_string(),
            image: request.spec.image.clone(),
            generation: request.generation,
            had_previous: request.previous.is_some(),
            key_len: c.signing_key_pem.len(),
            had_passphrase: c.passphrase.is_some(),
            had_registry_auth: c.registry_auth.is_some(),
        });
        let mut out = self.outcome.lock().expect("lock").clone();
        out.status.observed_generation = request.generation;
        if let Some(d) = *self.requeue_after.lock().expect("lock") {
            let at = jiff::Timestamp::now() + d;
            out.requeue_at = Some(at);
            out.status.next_sync_time = Some(crate::api::Time(at));
        }
        for cond in &mut out.status.conditions {
            cond.observed_generation = request.generation;
        }
        out
    }
}
