//! Prometheus metrics (OpenMetrics text). Per-SignedImage gauges are computed at scrape time from
//! the last status each object was reconciled to (so "time to renewal" is always current) and
//! vanish when the object is deleted; counters and the duration histogram are process-wide.
//! Labels carry names and reasons only, never secret material.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::SignedImageStatus;

/// Content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// `server` is `notary` or `registry`; `kind` the request kind (`get`, `post`, `head`,
/// `tag_list`, `token`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub server: &'static str,
    pub kind: &'static str,
}

/// What the gauges show of one SignedImage.
#[derive(Clone, Debug, Default, PartialEq)]
struct ImageState {
    /// (role, expiry, renewal time) in Unix seconds.
    roles: Vec<(String, i64, Option<i64>)>,
    signed_tags: u64,
    /// Ready's status is True, and its reason (None before the first reconcile wrote one).
    ready: Option<(bool, String)>,
}

#[derive(Debug, Default)]
struct ImageGauges {
    images: Mutex<BTreeMap<(String, String), ImageState>>,
    /// The repository (spec.image) of each SignedImage, for `trustkeeper_signedimage_info`.
    repositories: Mutex<BTreeMap<(String, String), String>>,
}

impl Collector for ImageGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let images = self.images.lock().expect("metrics lock").clone();
        let repositories = self.repositories.lock().expect("metrics lock").clone();
        let now = jiff::Timestamp::now().as_second();
        {
            let mut m = encoder.encode_descriptor(
                "trustkeeper_role_expiry_timestamp_seconds",
                "When the role's trust metadata expires (Unix time), per SignedImage and role.",
                None,
                MetricType::Gauge,
            )?;
            for ((ns, name), st) in &images {
                for (role, expires, _) in &st.roles {
                    let labels = [("namespace", ns.as_str()), ("name", name), ("role", role)];
                    m.encode_family(&labels)?.encode_gauge(expires)?;
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "trustkeeper_role_renewal_timestamp_seconds",
                "When trustkeeper re-signs the role (Unix time); only roles its key can sign.",
                None,
                MetricType::Gauge,
            )?;
            for ((ns, name), st) in &images {
                for (role, _, renewal) in &st.roles {
                    if let Some(r) = renewal {
                        let labels = [("namespace", ns.as_str()), ("name", name), ("role", role)];
                        m.encode_family(&labels)?.encode_gauge(r)?;
                    }
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "trustkeeper_role_time_to_renewal_seconds",
                "Seconds until the role is re-signed (negative: overdue).",
                None,
                MetricType::Gauge,
            )?;
            for ((ns, name), st) in &images {
                for (role, _, renewal) in &st.roles {
                    if let Some(r) = renewal {
                        let labels = [("namespace", ns.as_str()), ("name", name), ("role", role)];
                        m.encode_family(&labels)?.encode_gauge(&(r - now))?;
                    }
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "trustkeeper_signed_tags",
                "Selected tags signed with their current digest, per SignedImage.",
                None,
                MetricType::Gauge,
            )?;
            for ((ns, name), st) in &images {
                let labels = [("namespace", ns.as_str()), ("name", name.as_str())];
                m.encode_family(&labels)?.encode_gauge(&st.signed_tags)?;
            }
        }
        {
            // An info metric (always 1), joined on namespace and name to show a repository.
            let mut m = encoder.encode_descriptor(
                "trustkeeper_signedimage_info",
                "The repository a SignedImage signs (value always 1).",
                None,
                MetricType::Gauge,
            )?;
            for ((ns, name), repository) in &repositories {
                let labels = [
                    ("namespace", ns.as_str()),
                    ("name", name.as_str()),
                    ("repository", repository.as_str()),
                ];
                m.encode_family(&labels)?.encode_gauge(&1u64)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "trustkeeper_signedimage_ready",
                "1 when the SignedImage's Ready condition is True, else 0; reason is Ready's reason.",
                None,
                MetricType::Gauge,
            )?;
            for ((ns, name), st) in &images {
                if let Some((ready, reason)) = &st.ready {
                    let labels = [
                        ("namespace", ns.as_str()),
                        ("name", name.as_str()),
                        ("reason", reason.as_str()),
                    ];
                    m.encode_family(&labels)?.encode_gauge(&u64::from(*ready))?;
                }
            }
        }
        Ok(())
    }
}

/// All metrics of the controller process.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    images: Arc<ImageGauges>,
    pub reconciles: Counter,
    pub publishes: Counter,
    pub renewals: Counter,
    pub signed: Counter,
    pub failures: Family<ReasonLabels, Counter>,
    /// HTTP requests sent by engine runs.
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Histogram,
    /// Status writes (server-side apply); a reconcile that changed nothing writes none.
    pub status_writes: Counter,
    /// Events published.
    pub events: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconciles = Counter::default();
        let publishes = Counter::default();
        let renewals = Counter::default();
        let signed = Counter::default();
        let failures = Family::<ReasonLabels, Counter>::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        let status_writes = Counter::default();
        let events = Counter::default();
        registry.register(
            "trustkeeper_status_writes",
            "SignedImage status writes",
            status_writes.clone(),
        );
        registry.register("trustkeeper_events", "Events published", events.clone());
        registry.register(
            "trustkeeper_reconciles",
            "Reconciles run",
            reconciles.clone(),
        );
        registry.register(
            "trustkeeper_publishes",
            "Publishes made to notary servers",
            publishes.clone(),
        );
        registry.register(
            "trustkeeper_renewals",
            "Roles re-signed before expiry",
            renewals.clone(),
        );
        registry.register(
            "trustkeeper_tags_signed",
            "Tags newly signed or moved",
            signed.clone(),
        );
        registry.register(
            "trustkeeper_failures",
            "Failed reconciles by Ready reason",
            failures.clone(),
        );
        registry.register(
            "trustkeeper_http_requests",
            "HTTP requests sent to notary servers and registries",
            requests.clone(),
        );
        registry.register(
            "trustkeeper_reconcile_duration_seconds",
            "Duration of one reconcile",
            duration.clone(),
        );
        let images = Arc::new(ImageGauges::default());
        registry.register_collector(Box::new(images.clone()));
        Metrics {
            registry: Arc::new(registry),
            images,
            reconciles,
            publishes,
            renewals,
            signed,
            failures,
            requests,
            duration,
            status_writes,
            events,
        }
    }

    /// Counts the requests of one engine run.
    pub fn count_requests(&self, r: &crate::engine::Requests) {
        let n = &r.notary;
        let g = &r.registry;
        for (server, kind, v) in [
            ("notary", "get", n.get),
            ("notary", "post", n.post),
            ("notary", "token", n.token),
            ("registry", "head", g.head),
            ("registry", "get", g.get),
            ("registry", "tag_list", g.tag_list),
            ("registry", "token", g.token),
        ] {
            if v > 0 {
                self.requests
                    .get_or_create(&RequestLabels { server, kind })
                    .inc_by(v);
            }
        }
    }

    /// Records the status a SignedImage was reconciled to.
    pub fn set_status(&self, ns: &str, name: &str, status: &SignedImageStatus) {
        let state = ImageState {
            roles: status
                .roles
                .iter()
                .map(|r| {
                    (
                        r.name.clone(),
                        r.expires.0.as_second(),
                        r.renewal_time.as_ref().map(|t| t.0.as_second()),
                    )
                })
                .collect(),
            signed_tags: status.signed_tags.len() as u64,
            ready: status
                .conditions
                .iter()
                .find(|c| c.type_ == crate::api::READY)
                .map(|c| (c.status == "True", c.reason.clone())),
        };
        self.images
            .images
            .lock()
            .expect("metrics lock")
            .insert((ns.to_string(), name.to_string()), state);
    }

    /// Records the repository a SignedImage signs (its `spec.image`).
    pub fn set_repository(&self, ns: &str, name: &str, repository: &str) {
        self.images
            .repositories
            .lock()
            .expect("metrics lock")
            .insert((ns.to_string(), name.to_string()), repository.to_string());
    }

    /// Forgets a deleted SignedImage: its series disappear from the next scrape.
    pub fn remove(&self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        self.images
            .images
            .lock()
            .expect("metrics lock")
            .remove(&key);
        self.images
            .repositories
            .lock()
            .expect("metrics lock")
            .remove(&key);
    }

    /// Keeps only the SignedImages for which `keep` is true (after a re-list).
    pub fn retain(&self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.images
            .images
            .lock()
            .expect("metrics lock")
            .retain(|(ns, name), _| keep(ns, name));
        self.images
            .repositories
            .lock()
            .expect("metrics lock")
            .retain(|(ns, name), _| keep(ns, name));
    }

    pub fn failure(&self, reason: &str) {
        self.failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Starts a timer that observes the reconcile duration when dropped.
    pub fn timer(&self) -> ReconcileTimer {
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.duration.clone(),
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Observes the elapsed time into the duration histogram when dropped.
pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Time;
    use crate::api::{RoleStatus, SignedTag};

    #[test]
    fn series_per_image_and_removal() {
        let m = Metrics::new();
        let status = SignedImageStatus {
            roles: vec![RoleStatus {
                name: "targets/releases".into(),
                version: 3,
                expires: Time("2029-01-01T00:00:00Z".parse().unwrap()),
                renewal_time: Some(Time("2028-06-01T00:00:00Z".parse().unwrap())),
                targets: 2,
            }],
            signed_tags: vec![SignedTag {
                tag: "v1".into(),
                digest: "sha256:00".into(),
                size: 1,
                media_type: None,
                role: "targets/releases".into(),
            }],
            ..Default::default()
        };
        m.set_status("ns", "app", &status);
        let text = m.render();
        assert!(
            !text.contains("trustkeeper_signedimage_ready{"),
            "no Ready condition yet, no series: {text}"
        );
        let mut status = status;
        crate::api::set_condition(
            &mut status.conditions,
            crate::api::READY,
            crate::api::ConditionStatus::False,
            "PublishFailed",
            "",
            None,
            jiff::Timestamp::now(),
        );
        m.set_status("ns", "app", &status);
        m.set_repository("ns", "app", "registry.example/team/app");
        m.failure("SecretNotFound");
        {
            let _t = m.timer();
        }
        let text = m.render();
        assert!(text.contains(
            "trustkeeper_role_expiry_timestamp_seconds{namespace=\"ns\",name=\"app\",role=\"targets/releases\"} 1861920000"
        ), "{text}");
        assert!(text.contains("trustkeeper_signed_tags{namespace=\"ns\",name=\"app\"} 1"));
        assert!(text.contains("trustkeeper_failures_total{reason=\"SecretNotFound\"} 1"));
        assert!(text.contains("trustkeeper_reconcile_duration_seconds_count 1"));
        assert!(text.contains("trustkeeper_role_time_to_renewal_seconds{"));
        assert!(
            text.contains(
                "trustkeeper_signedimage_ready{namespace=\"ns\",name=\"app\",reason=\"PublishFailed\"} 0"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains(
            "trustkeeper_signedimage_info{namespace=\"ns\",name=\"app\",repository=\"registry.example/team/app\"} 1"
        ), "{text}");
        m.remove("ns", "app");
        let text = m.render();
        assert!(!text.contains("name=\"app\""), "{text}");
    }
}
