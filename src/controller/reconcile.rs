//! One reconcile of one SignedImage: suspended? → Secrets → engine → status (server-side apply,
//! only when changed) → Events → metrics → when to run again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType as KubeEventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use tracing::{Instrument, debug, info, warn};

use super::error::Error;
use super::metrics::Metrics;
use super::renew::Renew;
use super::status;
use crate::api::{ConditionStatus, SignedImage, SignedImageStatus};
use crate::engine::request::RunOptions;
use crate::engine::secrets::{GatherError, SecretSource, gather};
use crate::engine::{
    EngineEvent, EventType, Failure, Outcome, ReconcileRequest, Reconciler, suspension,
};

/// The `action` of every Event trustkeeper publishes.
pub const EVENT_ACTION: &str = "Reconcile";

/// A clock, injectable for tests.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;
/// A source of jitter in [0, 1), injectable for tests.
pub type Jitter = Arc<dyn Fn() -> f64 + Send + Sync>;

/// Everything a reconcile needs, shared by all of them.
pub struct Context<R, S> {
    pub client: Client,
    pub reconciler: R,
    pub secrets: S,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub clock: Clock,
    pub jitter: Jitter,
    /// Consecutive API errors per object (`namespace/name`), for `error_policy`'s backoff.
    pub api_failures: Mutex<HashMap<String, u32>>,
    /// Bounds reconciles across all Controllers of the process (one per namespace).
    pub limit: Option<Arc<tokio::sync::Semaphore>>,
    /// `namespace/name` of SignedImages to run now even if not due (push notifications).
    pub forced: Forced,
    /// `namespace/name` of SignedImages this process has looked at: the first look at a Ready
    /// one (after a start or a change of leader) is spread over its poll interval.
    pub looked_at: Mutex<std::collections::HashSet<String>>,
}

/// SignedImages to run at their next reconcile whatever their schedule says.
pub type Forced = Arc<Mutex<std::collections::HashSet<String>>>;

impl<R: Reconciler, S: SecretSource> Context<R, S> {
    pub fn new(
        client: Client,
        reconciler: R,
        secrets: S,
        recorder: Recorder,
        metrics: Metrics,
    ) -> Self {
        Context {
            client,
            reconciler,
            secrets,
            recorder,
            metrics,
            clock: Arc::new(Timestamp::now),
            jitter: Arc::new(rand::random::<f64>),
            api_failures: Mutex::default(),
            limit: None,
            forced: Forced::default(),
            looked_at: Mutex::default(),
        }
    }
}

/// The shortest requeue: a next-run time in the past (an overdue renewal) runs again soon, but
/// never in a tight loop.
pub const MIN_REQUEUE: Duration = Duration::from_secs(1);

fn until(now: Timestamp, at: Timestamp) -> Duration {
    let d = at.duration_since(now);
    if d.is_negative() {
        MIN_REQUEUE
    } else {
        d.unsigned_abs().max(MIN_REQUEUE)
    }
}

/// Truncates an Event note to the API's 1024 characters.
fn note(text: &str) -> String {
    text.chars().take(1024).collect()
}

fn kube_event(e: &EngineEvent) -> Event {
    Event {
        type_: match e.type_ {
            EventType::Normal => KubeEventType::Normal,
            EventType::Warning => KubeEventType::Warning,
        },
        reason: e.reason.chars().take(128).collect(),
        note: Some(note(&e.note)),
        action: EVENT_ACTION.into(),
        secondary: None,
    }
}

/// Reconciles one SignedImage. Engine and Secret failures are statuses (`Ok`); only API errors
/// (status write, Secret read) are `Err`, retried by [`error_policy`].
pub async fn reconcile<R: Reconciler, S: SecretSource>(
    obj: Arc<SignedImage>,
    ctx: Arc<Context<R, S>>,
) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let span = tracing::info_span!("reconcile", namespace = %ns, name = %name);
    async move {
        let _permit = match &ctx.limit {
            Some(l) => Some(l.clone().acquire_owned().await.expect("never closed")),
            None => None,
        };
        let _timer = ctx.metrics.timer();
        ctx.metrics.reconciles.inc();
        ctx.metrics.set_repository(&ns, &name, &obj.spec.image);
        let result = reconcile_inner(&obj, &ctx, &ns, &name).await;
        match &result {
            Ok(_) => {
                ctx.api_failures
                    .lock()
                    .expect("lock")
                    .remove(&format!("{ns}/{name}"));
            }
            Err(e) => {
                ctx.metrics.failure(e.metric_label());
                warn!(error = %e, "reconcile failed");
            }
        }
        result
    }
    .instrument(span)
    .await
}

async fn reconcile_inner<R: Reconciler, S: SecretSource>(
    obj: &SignedImage,
    ctx: &Context<R, S>,
    ns: &str,
    name: &str,
) -> Result<Action, Error> {
    let now = (ctx.clock)();
    let generation = obj.metadata.generation;
    let previous = obj.status.as_ref();
    let forced = ctx
        .forced
        .lock()
        .expect("lock")
        .remove(&format!("{ns}/{name}"));
    let renew = super::renew::read(obj, previous);
    if let Renew::Invalid(message) = &renew {
        warn!(%message, "renew request refused");
        let refused = EngineEvent {
            type_: EventType::Warning,
            reason: "InvalidRenewRequest".into(),
            note: message.clone(),
        };
        publish_events(ctx, obj, std::slice::from_ref(&refused)).await;
    }
    let pending = match renew {
        Renew::Pending(r) => Some(r),
        _ => None,
    };

    // Not due yet (a restart or a new leader lists everything): keep to the schedule instead
    // of running every SignedImage at once. A failing one waits for its backoff (the status's
    // nextSyncTime); a Ready one, whose status holds no time (a quiet check writes nothing),
    // is spread over its poll interval on the first look. A spec change, a push notification
    // or the time coming runs it.
    let first_look = ctx
        .looked_at
        .lock()
        .expect("lock")
        .insert(format!("{ns}/{name}"));
    if !forced
        && pending.is_none()
        && let Some(st) = previous
        && st.observed_generation == generation
        && generation.is_some()
        && suspension(&obj.spec, previous, generation, now).is_none()
    {
        if let Some(next) = &st.next_sync_time
            && next.0 > now
        {
            debug!(next = %next.0, "not due yet: backing off");
            ctx.metrics.set_status(ns, name, st);
            return Ok(Action::requeue(until(now, next.0)));
        }
        // A dry run's status holds no time either (`spec.dryRun`): spread the same way.
        if first_look
            && st.ready().is_some_and(|c| {
                c.is(ConditionStatus::True) || c.reason == crate::api::reasons::DRY_RUN
            })
            && let Ok(interval) = crate::api::parse_go_duration(&obj.spec.interval)
        {
            let spread = interval.0.mul_f64((ctx.jitter)());
            debug!(after = %spread, "not due yet: first look at a Ready SignedImage");
            ctx.metrics.set_status(ns, name, st);
            return Ok(Action::requeue(until(now, now + spread)));
        }
    }

    let outcome = if let Some(suspended) = suspension(&obj.spec, previous, generation, now) {
        debug!("suspended");
        suspended
    } else {
        match gather(&ctx.secrets, ns, &obj.spec).await {
            Err(GatherError::Read(e)) => return Err(Error::SecretRead(e)),
            Err(GatherError::Problem(p)) => {
                info!(reason = p.reason, message = %p.message, "cannot read the referenced objects");
                Outcome::failed(
                    previous,
                    generation,
                    Failure::new(p.reason, p.message),
                    now,
                    (ctx.jitter)(),
                )
            }
            Ok(credentials) => {
                let id = format!("{ns}/{name}");
                let options = RunOptions {
                    force_renew: pending.as_ref().is_some_and(|r| r.force),
                    dry_run: obj.spec.dry_run,
                    ..RunOptions::default()
                };
                if let Some(r) = &pending {
                    info!(request = %r.token, force = r.force, "renew requested");
                }
                let outcome = ctx
                    .reconciler
                    .reconcile_with(
                        ReconcileRequest {
                            id: &id,
                            spec: &obj.spec,
                            generation,
                            previous,
                            credentials,
                            pinned: Default::default(),
                        },
                        options,
                    )
                    .await;
                info!(
                    publishes = outcome.publishes,
                    renewed = outcome.renewed.len(),
                    signed = outcome.signed.len(),
                    failure = outcome.failure_reason,
                    notary_requests = outcome.requests.notary.total(),
                    registry_requests = outcome.requests.registry.total(),
                    requeue_at = ?outcome.requeue_at,
                    "engine run finished"
                );
                outcome
            }
        }
    };
    ctx.metrics.publishes.inc_by(u64::from(outcome.publishes));
    ctx.metrics.renewals.inc_by(outcome.renewed.len() as u64);
    ctx.metrics.signed.inc_by(outcome.signed.len() as u64);
    ctx.metrics.count_requests(&outcome.requests);
    // From the clock after the run: an engine run takes time.
    let action = match outcome.requeue_at {
        Some(at) => Action::requeue(until((ctx.clock)(), at)),
        None => Action::await_change(),
    };
    let mut new = outcome.status;
    if new.observed_generation.is_none() {
        new.observed_generation = generation;
    }
    // Echoed whatever the run's outcome: Ready says how it went.
    new.last_handled_renew_request = match pending {
        Some(r) => Some(r.token),
        None => previous.and_then(|p| p.last_handled_renew_request.clone()),
    };
    let new = status::as_stored(new);
    if let Some(reason) = outcome.failure_reason {
        ctx.metrics.failure(reason);
    }

    write_status(ctx, ns, name, previous, &new).await?;
    ctx.metrics.set_status(ns, name, &new);
    publish_events(ctx, obj, &outcome.events).await;
    Ok(action)
}

async fn write_status<R, S>(
    ctx: &Context<R, S>,
    ns: &str,
    name: &str,
    previous: Option<&SignedImageStatus>,
    new: &SignedImageStatus,
) -> Result<(), Error> {
    if previous == Some(new) {
        debug!("status unchanged");
        return Ok(());
    }
    let api: Api<SignedImage> = Api::namespaced(ctx.client.clone(), ns);
    api.patch_status(name, &status::patch_params(), &status::apply_patch(new))
        .await
        .map_err(Error::StatusWrite)?;
    ctx.metrics.status_writes.inc();
    debug!("status written");
    Ok(())
}

async fn publish_events<R, S>(ctx: &Context<R, S>, obj: &SignedImage, events: &[EngineEvent]) {
    if events.is_empty() {
        return;
    }
    let reference = obj.object_ref(&());
    for e in events {
        // An Event that cannot be written is logged, never a reason to fail the reconcile.
        match ctx.recorder.publish(&kube_event(e), &reference).await {
            Ok(()) => {
                ctx.metrics.events.inc();
            }
            Err(err) => warn!(reason = %e.reason, error = %err, "cannot publish Event"),
        }
    }
}

/// After an API error: back off per object (engine::schedule's curve), counting consecutive
/// errors in memory (the status could not be written).
pub fn error_policy<R: Reconciler, S: SecretSource>(
    obj: Arc<SignedImage>,
    _error: &Error,
    ctx: Arc<Context<R, S>>,
) -> Action {
    let key = status::id(&obj);
    let n = {
        let mut map = ctx.api_failures.lock().expect("lock");
        let n = map.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = crate::engine::schedule::backoff(n, (ctx.jitter)());
    Action::requeue(delay.unsigned_abs())
}
