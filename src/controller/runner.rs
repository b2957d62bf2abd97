//! Puts it together: HTTP server, leader election, and one kube-runtime `Controller` over
//! SignedImages (cluster-wide, or one per listed namespace) while this replica leads.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt, TryStreamExt};
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::runtime::{Predicate, WatchStreamExt, events::Recorder, events::Reporter, predicates};
use kube::{Api, Client, ResourceExt};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::error::Error;
use super::http::{HttpState, Trigger, router};
use super::lease::{LeaderElector, LeaseConfig};
use super::metrics::Metrics;
use super::reconcile::{Context, error_policy, reconcile};
use super::secrets::KubeSecrets;
use crate::api::SignedImage;
use crate::engine::Reconciler;
use crate::engine::secrets::SecretSource;

/// The name in Events' `reportingController` and the status field manager.
pub const CONTROLLER_NAME: &str = "trustkeeper";

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Watch only these namespaces; `None`: all namespaces.
    pub namespaces: Option<Vec<String>>,
    /// At most this many reconciles at once (across all namespaces).
    pub concurrency: u16,
    /// This replica's name (Events' `reportingInstance`, the Lease holder).
    pub identity: String,
    /// Leader election; `None`: run unconditionally (a single replica).
    pub lease: Option<LeaseConfig>,
    /// Where `/metrics`, `/healthz`, `/readyz` and `/notifications` listen.
    pub metrics_addr: SocketAddr,
    /// Bearer token for `/notifications`; `None` disables the endpoint.
    pub webhook_token: Option<SecretString>,
}

impl ControllerConfig {
    /// Defaults: all namespaces, 8 at once, `0.0.0.0:8080`, no Lease, no notifications.
    pub fn new(identity: &str) -> Self {
        ControllerConfig {
            namespaces: None,
            concurrency: 8,
            identity: identity.into(),
            lease: None,
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            webhook_token: None,
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c().map(|_| ());
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                futures::future::select(
                    ctrl_c.boxed(),
                    Box::pin(async move {
                        term.recv().await;
                    }),
                )
                .await;
            }
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

/// Runs the operator with Secrets from the kube API until SIGTERM/Ctrl-C (`Ok`) or until
/// leadership is lost (`Err(LeadershipLost)`: exit, and let Kubernetes restart the pod).
pub async fn run<R: Reconciler>(
    client: Client,
    reconciler: R,
    config: ControllerConfig,
) -> Result<(), Error> {
    let listener = TcpListener::bind(config.metrics_addr)
        .await
        .map_err(|source| Error::Listen {
            addr: config.metrics_addr.to_string(),
            source,
        })?;
    let secrets = KubeSecrets::new(client.clone());
    run_with(
        client,
        reconciler,
        secrets,
        config,
        listener,
        shutdown_signal(),
    )
    .await
}

type Signal = Shared<BoxFuture<'static, ()>>;

/// [`run`] with every seam open: the Secret source, the bound listener (tests bind port 0) and
/// the shutdown signal.
pub async fn run_with<R: Reconciler, S: SecretSource>(
    client: Client,
    reconciler: R,
    secrets: S,
    config: ControllerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let shutdown: Signal = shutdown.boxed().shared();
    let metrics = Metrics::new();
    let http = HttpState::new(metrics.clone(), config.webhook_token.clone());
    let addr = listener.local_addr().ok();
    // Not ready from the moment shutdown begins.
    tokio::spawn({
        let http = http.clone();
        let shutdown = shutdown.clone();
        async move {
            shutdown.await;
            http.set_ready(false);
        }
    });
    let server = tokio::spawn(
        axum::serve(listener, router(http.clone()))
            .with_graceful_shutdown(shutdown.clone())
            .into_future(),
    );
    info!(
        addr = ?addr,
        identity = %config.identity,
        namespaces = ?config.namespaces,
        "trustkeeper controller starting"
    );

    let result = lead_and_run(
        client, reconciler, secrets, &config, metrics, &http, shutdown,
    )
    .await;

    http.set_ready(false);
    http.set_triggers(Vec::new());
    if result.is_err() {
        server.abort();
    } else {
        let _ = server.await;
    }
    if let Err(e) = &result {
        warn!(error = %e, "trustkeeper controller stopped");
    } else {
        info!("trustkeeper controller stopped");
    }
    result
}

async fn lead_and_run<R: Reconciler, S: SecretSource>(
    client: Client,
    reconciler: R,
    secrets: S,
    config: &ControllerConfig,
    metrics: Metrics,
    http: &HttpState,
    shutdown: Signal,
) -> Result<(), Error> {
    let mut elector = config
        .lease
        .clone()
        .map(|l| LeaderElector::new(client.clone(), l));
    if let Some(e) = elector.as_mut() {
        info!("waiting to become the leader");
        tokio::select! {
            r = e.acquire() => r?,
            _ = shutdown.clone() => return Ok(()),
        }
    }

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: CONTROLLER_NAME.into(),
            instance: Some(config.identity.clone()),
        },
    );
    let mut ctx = Context::new(
        client.clone(),
        reconciler,
        secrets,
        recorder,
        metrics.clone(),
    );
    ctx.limit = Some(Arc::new(Semaphore::new(usize::from(
        config.concurrency.max(1),
    ))));
    let ctx = Arc::new(ctx);

    let apis: Vec<(Api<SignedImage>, Option<String>)> = match &config.namespaces {
        None => vec![(Api::all(client.clone()), None)],
        Some(list) => list
            .iter()
            .map(|ns| (Api::namespaced(client.clone(), ns), Some(ns.clone())))
            .collect(),
    };
    let mut triggers = Vec::new();
    let mut runs = Vec::new();
    for (api, scope) in apis {
        let (run, trigger) = controller_for(
            api,
            scope,
            ctx.clone(),
            metrics.clone(),
            shutdown.clone(),
            config.concurrency,
        );
        triggers.push(trigger);
        runs.push(run);
    }
    http.set_triggers(triggers);
    let all = futures::future::join_all(runs);

    match elector.as_mut() {
        None => {
            all.await;
            Ok(())
        }
        Some(e) => {
            tokio::select! {
                _ = all => {}
                lost = e.hold() => {
                    // Dropping the controllers cancels running reconciles: another replica
                    // may take over now.
                    http.set_triggers(Vec::new());
                    return Err(lost);
                }
            }
            e.release().await
        }
    }
}

/// One Controller over `api`. Reconciles are triggered by spec changes and renew-now requests
/// (the filter on both keeps our own status writes from re-triggering), by their requeue time,
/// and by `Trigger`.
fn controller_for<R: Reconciler, S: SecretSource>(
    api: Api<SignedImage>,
    scope: Option<String>,
    ctx: Arc<Context<R, S>>,
    metrics: Metrics,
    shutdown: Signal,
    concurrency: u16,
) -> (BoxFuture<'static, ()>, Trigger) {
    let (reader, writer) = reflector::store::<SignedImage>();
    let store = reader.clone();
    let forced = ctx.forced.clone();
    let stream = watcher(api)
        .default_backoff()
        // The store keeps every SignedImage for the life of the process: drop what the
        // controller never reads (managedFields, kubectl's copy of the last applied spec), about
        // half of each object as the API server sends it.
        .modify(|si| {
            si.managed_fields_mut().clear();
            si.annotations_mut()
                .remove("kubectl.kubernetes.io/last-applied-configuration");
        })
        .reflect(writer)
        .inspect_ok(move |ev| match ev {
            WatchEvent::Delete(obj) => {
                debug!(namespace = %obj.namespace().unwrap_or_default(), name = %obj.name_any(), "deleted");
                let ns = obj.namespace().unwrap_or_default();
                metrics.remove(&ns, &obj.name_any());
                forced
                    .lock()
                    .expect("lock")
                    .remove(&format!("{ns}/{}", obj.name_any()));
            }
            WatchEvent::InitDone => metrics.retain(|ns, name| {
                scope.as_deref().is_some_and(|s| s != ns)
                    || store
                        .get(&ObjectRef::new(name).within(ns))
                        .is_some()
            }),
            _ => {}
        })
        .applied_objects()
        // A new renew-now request gets through too; our own status writes change neither.
        .predicate_filter(
            predicates::generation.combine(super::renew::request_predicate),
            Default::default(),
        );
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let trigger = Trigger {
        store: reader.clone(),
        tx,
        forced: ctx.forced.clone(),
    };
    let run = Controller::for_stream(stream, reader)
        .with_config(controller::Config::default().concurrency(concurrency))
        .reconcile_on(rx)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, action)) => debug!(object = %obj, ?action, "reconciled"),
                Err(controller::Error::ObjectNotFound(obj)) => {
                    debug!(object = %obj, "gone before its reconcile")
                }
                Err(controller::Error::ReconcilerFailed(e, obj)) => {
                    debug!(object = %obj, error = %e, "reconcile failed; retrying after backoff")
                }
                Err(e) => warn!(error = %e, "controller"),
            }
        })
        .boxed();
    (run, trigger)
}

fn watcher(
    api: Api<SignedImage>,
) -> impl futures::Stream<Item = Result<WatchEvent<SignedImage>, watcher::Error>> + Send {
    watcher::watcher(api, watcher::Config::default())
}
