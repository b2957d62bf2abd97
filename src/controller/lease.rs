//! Leader election on a `coordination.k8s.io/v1` Lease, so that several replicas never publish
//! at once. Only get, create and replace (with `resourceVersion`): no strategic-merge patch,
//! which custom-resource Leases (the test server's) refuse.
//!
//! The rules are client-go's: a Lease is free when it has no holder, or when its record has not
//! changed for `leaseDurationSeconds` as measured on *our* clock since we first saw that record
//! (so clock skew between replicas does not matter). The holder renews every `renew_interval`
//! and gives up (leadership lost) if it could not renew for `renew_deadline`, which is shorter
//! than the duration, so it stops before anyone else may take over. On shutdown the holder
//! clears `holderIdentity`, and a waiting replica takes over at its next try.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tracing::{debug, info, warn};

use super::error::Error;

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease name (default `trustkeeper`).
    pub name: String,
    /// Namespace of the Lease (default: the pod's namespace).
    pub namespace: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal (default 15 s).
    pub lease_duration: Duration,
    /// Give up leadership when no renewal succeeded for this long (default 10 s).
    pub renew_deadline: Duration,
    /// Renew (leader) or retry (candidate) this often (default 2 s).
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// The defaults above for `identity`.
    pub fn new(namespace: &str, identity: &str) -> Self {
        LeaseConfig {
            name: "trustkeeper".into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Acquires, renews and releases one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The record last seen (its resourceVersion) and when we first saw it.
    observed: Option<(String, Instant)>,
    /// The Lease as we last wrote it, while we hold it.
    held: Option<Lease>,
}

fn micro_now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl LeaderElector {
    pub fn new(client: kube::Client, config: LeaseConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
            held: None,
        }
    }

    fn err(&self, source: kube::Error) -> Error {
        Error::Lease {
            lease: format!("{}/{}", self.config.namespace, self.config.name),
            source,
        }
    }

    fn duration_secs(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// Whether we hold the Lease (as of the last successful write).
    pub fn is_leader(&self) -> bool {
        self.held.is_some()
    }

    /// One attempt to become (or stay) the holder. `Ok(true)`: we hold it now.
    pub async fn try_acquire(&mut self) -> Result<bool, Error> {
        let me = self.config.identity.clone();
        let existing = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.err(e))?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.clone()),
                    lease_duration_seconds: Some(self.duration_secs()),
                    acquire_time: Some(micro_now()),
                    renew_time: Some(micro_now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    info!(lease = %self.config.name, "created the Lease; leading");
                    self.held = Some(created);
                    Ok(true)
                }
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(self.err(e)),
            };
        };
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        if self.observed.as_ref().is_none_or(|(seen, _)| *seen != rv) {
            self.observed = Some((rv, Instant::now()));
        }
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let duration = spec
            .lease_duration_seconds
            .filter(|d| *d > 0)
            .map_or(self.config.lease_duration, |d| {
                Duration::from_secs(d as u64)
            });
        let expired = self
            .observed
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() > duration);
        let ours = holder.as_deref() == Some(me.as_str());
        if holder.is_some() && !ours && !expired {
            debug!(holder = holder.as_deref(), "Lease held by another replica");
            self.held = None;
            return Ok(false);
        }
        let mut new_spec = spec.clone();
        new_spec.holder_identity = Some(me.clone());
        new_spec.lease_duration_seconds = Some(self.duration_secs());
        new_spec.renew_time = Some(micro_now());
        if !ours {
            new_spec.acquire_time = Some(micro_now());
            new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        lease.spec = Some(new_spec);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                if !ours {
                    info!(lease = %self.config.name, previous = holder.as_deref(), "acquired the Lease; leading");
                }
                self.observed = Some((
                    written
                        .metadata
                        .resource_version
                        .clone()
                        .unwrap_or_default(),
                    Instant::now(),
                ));
                self.held = Some(written);
                Ok(true)
            }
            Err(e) if is_conflict(&e) => {
                self.held = None;
                Ok(false)
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// Tries every `retry_period` until we hold the Lease.
    pub async fn acquire(&mut self) -> Result<(), Error> {
        loop {
            match self.try_acquire().await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => warn!(error = %e, "cannot acquire the Lease"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews until leadership is lost; returns why. Never returns while we lead.
    pub async fn hold(&mut self) -> Error {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.try_acquire().await {
                Ok(true) => last_ok = Instant::now(),
                Ok(false) => {
                    return Error::LeadershipLost(format!(
                        "Lease {}/{} is held by another replica",
                        self.config.namespace, self.config.name
                    ));
                }
                Err(e) => warn!(error = %e, "cannot renew the Lease"),
            }
            if last_ok.elapsed() > self.config.renew_deadline {
                self.held = None;
                return Error::LeadershipLost(format!(
                    "Lease {}/{} not renewed for {:?}",
                    self.config.namespace, self.config.name, self.config.renew_deadline
                ));
            }
        }
    }

    /// Gives the Lease up (clears `holderIdentity`) so that another replica takes over at once.
    /// Re-reads the Lease first: a renewal cut short by shutdown may have changed it.
    pub async fn release(&mut self) -> Result<(), Error> {
        if self.held.take().is_none() {
            return Ok(());
        }
        for _ in 0..3 {
            let Some(mut lease) = self
                .api
                .get_opt(&self.config.name)
                .await
                .map_err(|e| self.err(e))?
            else {
                return Ok(());
            };
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.renew_time = Some(micro_now());
            match self
                .api
                .replace(&self.config.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => {
                    info!(lease = %self.config.name, "released the Lease");
                    return Ok(());
                }
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(self.err(e)),
            }
        }
        warn!(lease = %self.config.name, "could not release the Lease; it expires by itself");
        Ok(())
    }
}
