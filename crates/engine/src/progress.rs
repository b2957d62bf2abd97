//! Where a run is, so that a run cut off at its deadline says what it was waiting for and in
//! which state it leaves the repository.

use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::Duration;

use crate::api::{self, reasons};
use crate::failure::Failure;
use crate::settings::Settings;

/// What a run is doing, for the message when its deadline passes.
#[derive(Default)]
pub(crate) struct Progress {
    /// `REGISTRY_DONE | NOTARY_DONE | KEYS_DONE` of the first, concurrent steps.
    done: AtomicU8,
    phase: AtomicU8,
    /// Publishes lost to other writers so far.
    pub(crate) conflicts: AtomicU32,
}

pub(crate) const REGISTRY_DONE: u8 = 1;
pub(crate) const NOTARY_DONE: u8 = 2;
pub(crate) const KEYS_DONE: u8 = 4;

// 0: reading (the registry, the trust data and the key, at once).
pub(crate) const PHASE_RETRYING: u8 = 1;
pub(crate) const PHASE_PUBLISHING: u8 = 2;
pub(crate) const PHASE_VERIFYING: u8 = 3;

impl Progress {
    pub(crate) fn mark(&self, step: u8) {
        self.done.fetch_or(step, Ordering::Relaxed);
    }

    pub(crate) fn set_phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::Relaxed);
    }

    /// Why the run did not finish within `deadline`: what it was waiting for, and what state it
    /// leaves the repository in.
    pub(crate) fn deadline_failure(&self, deadline: Duration, settings: &Settings) -> Failure {
        let done = self.done.load(Ordering::Relaxed);
        let conflicts = self.conflicts.load(Ordering::Relaxed);
        let notary = &settings.notary_url;
        let registry = settings.image.registry_host();
        let waiting = match self.phase.load(Ordering::Relaxed) {
            PHASE_PUBLISHING => format!(
                "while publishing to the trust server {notary}: the publish was cut off; the \
                 server applies a publish whole or not at all, and the next run reads back which"
            ),
            PHASE_VERIFYING => format!(
                "while reading the publish back from the trust server {notary}: it was sent, \
                 the next run verifies it"
            ),
            PHASE_RETRYING => format!(
                "while retrying after {conflicts} version conflicts with other writers; nothing \
                 was published"
            ),
            _ => {
                let mut parts = Vec::new();
                if done & REGISTRY_DONE == 0 {
                    parts.push(format!("the registry {registry}"));
                }
                if done & NOTARY_DONE == 0 {
                    parts.push(format!("the trust server {notary}"));
                }
                if done & KEYS_DONE == 0 {
                    parts.push("the signing key's decryption".to_string());
                }
                if parts.is_empty() {
                    parts.push("the run".to_string());
                }
                format!("waiting for {}; nothing was published", parts.join(" and "))
            }
        };
        // Only the key outstanding: no server is to blame, the key's own parameters are.
        let only_key = self.phase.load(Ordering::Relaxed) == 0
            && done & (REGISTRY_DONE | NOTARY_DONE) == REGISTRY_DONE | NOTARY_DONE
            && done & KEYS_DONE == 0;
        let remedy = if only_key {
            "its key derivation is too expensive: export the key again with `notary key \
             export`, or raise the deadline (--deadline, TRUSTKEEPER_DEADLINE)"
        } else {
            "retry when the server answers in time, or raise the deadline (--deadline, \
             TRUSTKEEPER_DEADLINE)"
        };
        Failure::new(
            reasons::DEADLINE_EXCEEDED,
            format!(
                "the run did not finish within its deadline of {} ({waiting}): {remedy}",
                api::human_duration(deadline)
            ),
        )
    }
}
