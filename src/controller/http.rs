//! The controller's HTTP server: `/metrics` (OpenMetrics text), `/healthz`, `/readyz`, and
//! `POST /notifications` (registry push notifications, bearer token), which wakes the matching
//! SignedImages at once through the running controller's trigger.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::channel::mpsc::UnboundedSender;
use kube::runtime::reflector::{ObjectRef, Store};
use secrecy::{ExposeSecret, SecretString};
use tracing::{info, warn};

use super::metrics::{CONTENT_TYPE, Metrics};
use super::notify::{Notification, concerns, pushes};
use crate::api::SignedImage;

/// A running controller's view for notifications: its cache and its trigger.
#[derive(Clone)]
pub struct Trigger {
    pub store: Store<SignedImage>,
    pub tx: UnboundedSender<ObjectRef<SignedImage>>,
    /// Marks a SignedImage to run even though its status says it is not due.
    pub forced: super::reconcile::Forced,
}

/// State shared by the handlers.
pub struct HttpState {
    pub metrics: Metrics,
    /// The bearer token of `/notifications`; `None` disables the endpoint (404).
    pub token: Option<SecretString>,
    /// The triggers of the running controllers (one per watched namespace, or one for all);
    /// empty while this replica is not the leader.
    pub triggers: RwLock<Vec<Trigger>>,
    /// False once shutdown has begun.
    pub ready: AtomicBool,
}

impl HttpState {
    pub fn new(metrics: Metrics, token: Option<SecretString>) -> Arc<Self> {
        Arc::new(HttpState {
            metrics,
            token,
            triggers: RwLock::default(),
            ready: AtomicBool::new(true),
        })
    }

    pub fn set_triggers(&self, triggers: Vec<Trigger>) {
        *self.triggers.write().expect("lock") = triggers;
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

/// The routes.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/notifications", post(notifications))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(headers: &HeaderMap, token: &SecretString) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|got| {
            constant_time_eq(got.trim().as_bytes(), token.expose_secret().as_bytes())
        })
}

async fn notifications(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(token) = &state.token else {
        return (StatusCode::NOT_FOUND, "notifications are not enabled").into_response();
    };
    if !authorized(&headers, token) {
        warn!("notification refused: missing or wrong bearer token");
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "unauthorized",
        )
            .into_response();
    }
    let envelope: Notification = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not a notification envelope: {e}"),
            )
                .into_response();
        }
    };
    let pushes = pushes(&envelope);
    let triggers = state.triggers.read().expect("lock").clone();
    if triggers.is_empty() {
        // A standby replica: the registry retries, and the leader's poll is the safety net.
        return (StatusCode::SERVICE_UNAVAILABLE, "not the leader").into_response();
    }
    let mut woken = BTreeSet::new();
    for t in &triggers {
        for obj in t.store.state() {
            if pushes.iter().any(|p| concerns(&obj.spec, p)) {
                let r = ObjectRef::from_obj(&*obj);
                let id = format!("{}/{}", r.namespace.as_deref().unwrap_or_default(), r.name);
                if woken.insert(id.clone()) {
                    t.forced.lock().expect("lock").insert(id);
                    let _ = t.tx.unbounded_send(r);
                }
            }
        }
    }
    info!(
        pushes = pushes.len(),
        triggered = woken.len(),
        "registry notification"
    );
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "triggered": woken.into_iter().collect::<Vec<_>>() })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_check() {
        let token = SecretString::from("s3cret");
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, &token));
        h.insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
        assert!(!authorized(&h, &token));
        h.insert(header::AUTHORIZATION, "Basic s3cret".parse().unwrap());
        assert!(!authorized(&h, &token));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(authorized(&h, &token));
    }
}
