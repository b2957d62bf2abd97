//! One reconcile, the orchestrator of the stages (each in its own file): `settings` → `resolve`
//! (registry + notary + keys, at once) → `plan` (pure) → `apply` (sign, one publish) → `verify`
//! (read back) → `outcome` (status, Events, schedule). A version conflict (another writer published
//! first) refetches and re-plans after a jittered backoff, a bounded number of times. The whole
//! run has a deadline: a server that answers slowly or never ends it with a reason, not a hang.

use std::sync::atomic::Ordering;
use std::time::Duration;

use jiff::Timestamp;
use tracing::Instrument;

use crate::api::reasons;
use crate::apply::{publish_attempts_allowed, sign_changes, snapshot_version};
use crate::clients::{ClientPool, Clients};
use crate::failure::Failure;
use crate::keys::{check_key_id, load_keys};
use crate::outcome::{Done, suspension};
use crate::plan::{PlanInput, apply_to_view, plan};
use crate::progress::{
    KEYS_DONE, NOTARY_DONE, PHASE_PUBLISHING, PHASE_RETRYING, PHASE_VERIFYING, Progress,
    REGISTRY_DONE,
};
use crate::request::{Outcome, ReconcileRequest, Reconciler, Requests, RunOptions};
use crate::resolve::{check_new_manifests, fetch_failure, resolve_tags, vanished};
use crate::schedule;
use crate::settings::{Settings, trust_anchor};
use crate::verify::verify;
use crate::view::repo_view;
use trustkeeper_notary::TrustAnchor;
use trustkeeper_notary::cache::{CachedFetch, Files, MetadataCache};
use trustkeeper_notary::client::update_with_memo;

/// The reconcile engine. Holds settings only; clients are built per run from the run's
/// credentials, each with one connection pool per server.
#[derive(Clone, Debug)]
pub struct Engine {
    /// Timeout of each HTTP request.
    pub timeout: Duration,
    /// Longest time one run may take, every request, retry and backoff included.
    pub deadline: Duration,
    /// Registry requests in flight at once.
    pub registry_concurrency: usize,
    /// CA certificates (PEM) trusted for every registry and notary server, on top of the system
    /// roots and of each SignedImage's own CAs (the chart's `extraCaBundle`).
    pub extra_ca: Option<Vec<u8>>,
    /// Clients kept between runs (shared by clones).
    pub client_pool: ClientPool,
    /// Verified trust metadata kept between runs (shared by clones): an unchanged repository
    /// then costs one notary request, `timestamp.json`.
    pub cache: MetadataCache,
    /// The most trust metadata one repository update reads, every file together, whatever the
    /// server announces (`--max-metadata-size`): runs at once times this must fit the memory.
    pub max_metadata_bytes: u64,
}

/// The deadline of a run when none is configured.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);

impl Default for Engine {
    fn default() -> Self {
        Engine {
            timeout: Duration::from_secs(30),
            deadline: DEFAULT_DEADLINE,
            registry_concurrency: 8,
            extra_ca: None,
            client_pool: ClientPool::default(),
            cache: MetadataCache::default(),
            max_metadata_bytes: trustkeeper_notary::client::DEFAULT_MAX_METADATA_BYTES,
        }
    }
}

impl Reconciler for Engine {
    fn reconcile(&self, request: ReconcileRequest<'_>) -> impl Future<Output = Outcome> + Send {
        self.run(request)
    }

    async fn reconcile_with(&self, request: ReconcileRequest<'_>, options: RunOptions) -> Outcome {
        self.run_with(request, &options).await
    }
}

impl Engine {
    async fn attempt(
        &self,
        req: &ReconcileRequest<'_>,
        options: &RunOptions,
        settings: &Settings,
        clients: &Clients,
        now: Timestamp,
        progress: &Progress,
    ) -> Result<Done, Failure> {
        let mut anchor = trust_anchor(req.spec, req.previous);
        // Files verified by earlier runs, read or published in this one are not downloaded
        // again (an unchanged repository, the read-back after a publish, a refetch after a
        // conflict).
        let notary = CachedFetch::with_files(
            &clients.notary,
            self.cache.get(&settings.notary_url, &settings.gun),
        );
        // Pinned tags are not looked up: the registry is not asked at all when every tag is.
        let lookup: Vec<String> = (req.spec.tags.iter())
            .filter(|t| !req.pinned.contains_key(*t))
            .cloned()
            .collect();
        // The registry, the notary server and the key are independent: all at once. A bad key
        // ends the run as soon as it is found, without waiting for the servers, and is the
        // error reported.
        let servers = async {
            Ok(tokio::join!(
                async {
                    let r = resolve_tags(&clients.registry, &settings.image, &lookup).await;
                    progress.mark(REGISTRY_DONE);
                    r
                },
                async {
                    let r =
                        update_with_memo(&notary, &settings.gun, &anchor, now, self.cache.memo())
                            .await;
                    progress.mark(NOTARY_DONE);
                    r
                }
            ))
        };
        let keys = async {
            let k = load_keys(&req.credentials).await;
            progress.mark(KEYS_DONE);
            k
        };
        let (keys, (resolved, first)) = tokio::try_join!(keys, servers)?;
        let key_ids: Vec<String> = keys.iter().map(|k| k.key_id().to_string()).collect();
        let resolved = resolved?;
        let first = first.map_err(fetch_failure)?;
        check_new_manifests(
            &clients.registry,
            &settings.image,
            &resolved.desired,
            &repo_view(&first.0),
        )
        .await?;
        let mut resolved = resolved;
        resolved.desired.extend(req.pinned.clone());
        let mut first = Some(first);
        let first_snapshot = first.as_ref().map_or(0, |(_, t)| snapshot_version(t));
        let mut publishes = 0;
        loop {
            let (repo, trust) = match first.take() {
                Some(r) => r,
                None => update_with_memo(&notary, &settings.gun, &anchor, now, self.cache.memo())
                    .await
                    .map_err(fetch_failure)?,
            };
            notary.remember(&repo);
            let view = repo_view(&repo);
            if let Some(expected) = &options.key_id {
                check_key_id(expected, &key_ids, &view)?;
            }
            let vanished = vanished(&resolved, &view);
            if let Some(tag) = resolved.absent.iter().find(|t| !vanished.contains(*t)) {
                return Err(Failure::new(
                    reasons::TAG_NOT_FOUND,
                    format!(
                        "tag {tag} is not in the registry ({}) and was never signed: push it, or remove it from the tags",
                        settings.image.gun()
                    ),
                ));
            }
            let p = plan(&PlanInput {
                repo: &view,
                desired: &resolved.desired,
                vanished: &vanished,
                prune: req.spec.prune_vanished_tags,
                roles: &req.spec.roles,
                key_ids: &key_ids,
                now,
                validity: settings.validity,
                renew_before: settings.renew_before,
                force_renew: options.force_renew,
            });
            if let Some(first) = p.problems.first() {
                let message = p
                    .problems
                    .iter()
                    .map(|x| x.message_for(&settings.gun, options.surface))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(Failure::new(first.reason(), message));
            }
            // Nothing for notary to publish, or a dry run: the registry formats' part (read
            // only in a dry run) ends the attempt.
            if p.is_noop() || options.dry_run {
                if p.is_noop() {
                    self.cache
                        .put(&settings.notary_url, &settings.gun, Files::of(&repo));
                }
                let done = Done::of_notary(view, resolved.desired, key_ids, trust, p, publishes);
                return done
                    .signed_in_registry(
                        req,
                        &clients.registry,
                        &settings.image,
                        &keys,
                        now,
                        options.dry_run,
                    )
                    .await;
            }
            // None of our publishes went through yet: every snapshot since the first fetch is
            // another writer's. While they make progress, losing to them is contention, not a
            // fault, and one more attempt is allowed per publish of theirs.
            let others = snapshot_version(&trust).saturating_sub(first_snapshot);
            let allowed = publish_attempts_allowed(others);
            if publishes >= allowed {
                return Err(Failure::new(
                    reasons::CONFLICT,
                    format!(
                        "gave up publishing {} after {publishes} attempts: other writers \
                         published {others} times meanwhile and won each race (version \
                         conflicts); nothing was published or lost: retry",
                        settings.gun
                    ),
                ));
            }
            let files = sign_changes(&repo, &p, &keys, now)?;
            publishes += 1;
            progress.set_phase(PHASE_PUBLISHING);
            match clients.notary.publish(&settings.gun, &files).await {
                Ok(()) => {}
                Err(trustkeeper_notary::Error::VersionConflict { .. }) => {
                    progress.conflicts.fetch_add(1, Ordering::Relaxed);
                    progress.set_phase(PHASE_RETRYING);
                    // Jittered: signers that lost together do not refetch and collide again in
                    // step.
                    let wait = schedule::conflict_backoff(publishes, rand::random());
                    tracing::info!(gun = %settings.gun, attempt = publishes, wait_ms = wait.as_millis() as u64, "version conflict: another writer published first; refetching");
                    tokio::time::sleep(wait).await;
                    anchor = TrustAnchor::State(trust);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            progress.set_phase(PHASE_VERIFYING);
            notary.remember_published(&files);
            let planned = apply_to_view(&view, &p.changes);
            let (served_repo, served_trust) = update_with_memo(
                &notary,
                &settings.gun,
                &TrustAnchor::State(trust),
                Timestamp::now(),
                self.cache.memo(),
            )
            .await
            .map_err(fetch_failure)?;
            let served = repo_view(&served_repo);
            verify(&planned, &p, &served, &resolved.desired)?;
            self.cache
                .put(&settings.notary_url, &settings.gun, Files::of(&served_repo));
            let done = Done::of_notary(
                served,
                resolved.desired,
                key_ids,
                served_trust,
                p,
                publishes,
            );
            return done
                .signed_in_registry(req, &clients.registry, &settings.image, &keys, now, false)
                .await;
        }
    }

    /// Runs one reconcile with the default [`RunOptions`] (the operator's). Never fails: a
    /// failure is a status reason.
    pub async fn run(&self, req: ReconcileRequest<'_>) -> Outcome {
        self.run_with(req, &RunOptions::default()).await
    }

    /// The plan of the run `req` stands for, with nothing signed or published: what `--dry-run`
    /// prints. Fails as the run would before publishing (a missing role, a key not delegated).
    pub async fn dry_run(
        &self,
        req: ReconcileRequest<'_>,
        options: &RunOptions,
    ) -> Result<crate::dry_run::DryRun, Failure> {
        let options = RunOptions {
            dry_run: true,
            ..options.clone()
        };
        let settings = Settings::from_spec(req.spec)?;
        if !crate::cosign::wants(req.spec, crate::api::SignatureFormat::Notary) {
            let clients = self.clients(&settings, &req.credentials)?;
            let progress = Progress::default();
            let now = Timestamp::now();
            let attempt = self.attempt_without_notary(
                &req,
                &settings,
                &clients.registry,
                &progress,
                now,
                true,
            );
            let done = tokio::time::timeout(self.deadline, attempt)
                .await
                .unwrap_or_else(|_| Err(progress.deadline_failure(self.deadline, &settings)))?;
            let plan = crate::dry_run::DryRun {
                gun: settings.gun.clone(),
                roles: vec![],
                warnings: vec![],
                signatures: vec![],
            };
            return Ok(plan.with_signatures(crate::without_notary::signed_formats(
                &done.cosign,
                &done.notation,
            )));
        }
        settings.notary_in_service(Timestamp::now())?;
        let clients = self.clients(&settings, &req.credentials)?;
        let progress = Progress::default();
        let attempt = self.attempt(
            &req,
            &options,
            &settings,
            &clients,
            Timestamp::now(),
            &progress,
        );
        let done = tokio::time::timeout(self.deadline, attempt)
            .await
            .unwrap_or_else(|_| Err(progress.deadline_failure(self.deadline, &settings)))?;
        Ok(
            crate::dry_run::DryRun::of(&settings.gun, &done.repo, &done.plan).with_signatures(
                crate::without_notary::signed_formats(&done.cosign, &done.notation),
            ),
        )
    }

    /// [`Engine::run_with`] for a spec whose formats lack notary: the notary server is never
    /// asked (nor its shutdown date looked at).
    async fn run_without_notary(
        &self,
        req: &ReconcileRequest<'_>,
        options: &RunOptions,
        settings: &Settings,
        now: Timestamp,
        jitter: f64,
    ) -> Outcome {
        let (prev, gen_) = (req.previous, req.generation);
        let clients = match self.clients(settings, &req.credentials) {
            Ok(c) => c,
            Err(f) => return Outcome::failed(prev, gen_, f, now, jitter),
        };
        let progress = Progress::default();
        let span = tracing::info_span!("reconcile", id = req.id, image = %settings.gun);
        let result = tokio::time::timeout(
            self.deadline,
            self.attempt_without_notary(
                req,
                settings,
                &clients.registry,
                &progress,
                now,
                options.dry_run,
            )
            .instrument(span),
        )
        .await
        .unwrap_or_else(|_| Err(progress.deadline_failure(self.deadline, settings)));
        let mut outcome = if options.dry_run {
            crate::planned::registry_outcome(prev, gen_, settings, result, now, jitter)
        } else {
            Outcome::of_registry_run(prev, gen_, settings, &req.spec.formats, result, now, jitter)
        };
        outcome.requests = Requests {
            notary: clients.notary.stats(),
            registry: clients.registry.stats(),
        };
        outcome
    }

    /// Runs one reconcile under the caller's per-run policy. Never fails: a failure is a status
    /// reason.
    pub async fn run_with(&self, req: ReconcileRequest<'_>, options: &RunOptions) -> Outcome {
        // `spec.dryRun` is honoured whoever runs the resource (controller or `reconcile -f`).
        let dry = options.dry_run || req.spec.dry_run;
        let options = &RunOptions {
            dry_run: dry,
            ..options.clone()
        };
        let now = Timestamp::now();
        let jitter: f64 = rand::random();
        let prev = req.previous;
        let gen_ = req.generation;
        if let Some(suspended) = suspension(req.spec, prev, gen_, now) {
            return suspended;
        }
        let settings = match Settings::from_spec(req.spec) {
            Ok(s) => s,
            Err(f) => return Outcome::failed(prev, gen_, f, now, jitter),
        };
        if !crate::cosign::wants(req.spec, crate::api::SignatureFormat::Notary) {
            return self
                .run_without_notary(&req, options, &settings, now, jitter)
                .await;
        }
        if let Err(f) = settings.notary_in_service(now) {
            return Outcome::failed(prev, gen_, f, now, jitter);
        }
        let span = tracing::info_span!("reconcile", id = req.id, gun = %settings.gun);
        let clients = match self.clients(&settings, &req.credentials) {
            Ok(c) => c,
            Err(f) => return Outcome::failed(prev, gen_, f, now, jitter),
        };
        let progress = Progress::default();
        // Dropping the attempt at the deadline cancels whatever request is in flight; nothing
        // is sent after it.
        let result = tokio::time::timeout(
            self.deadline,
            self.attempt(&req, options, &settings, &clients, now, &progress)
                .instrument(span),
        )
        .await
        .unwrap_or_else(|_| Err(progress.deadline_failure(self.deadline, &settings)));
        let requests = Requests {
            notary: clients.notary.stats(),
            registry: clients.registry.stats(),
        };
        tracing::debug!(
            gun = %settings.gun,
            notary_get = requests.notary.get,
            notary_post = requests.notary.post,
            registry_head = requests.registry.head,
            registry_get = requests.registry.get,
            registry_tag_list = requests.registry.tag_list,
            "requests sent"
        );
        let mut outcome = if dry {
            crate::planned::outcome(prev, gen_, &settings, result, now, jitter)
        } else {
            Outcome::of_attempt(prev, gen_, &settings, result, now, jitter)
        };
        outcome.requests = requests;
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SignedImageSpec;
    use crate::request::RunSecrets;

    /// A server that accepts connections and never answers, and a spec pointing both the
    /// registry and the notary server at it.
    async fn silent_server() -> (
        std::net::SocketAddr,
        SignedImageSpec,
        tokio::task::JoinHandle<()>,
    ) {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let keep = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = silent.accept().await {
                held.push(conn);
            }
        });
        let yaml = format!(
            "image: {addr}/team/app\ntags: [v1]\nsigningKey: {{secretRef: {{name: k}}}}\nnotary: {{url: \"https://{addr}\"}}\n"
        );
        (addr, serde_saphyr::from_str(&yaml).unwrap(), keep)
    }

    async fn run_with_key(engine: &Engine, spec: &SignedImageSpec, pem: &[u8]) -> Outcome {
        engine
            .run(ReconcileRequest {
                id: "t",
                spec,
                generation: None,
                previous: None,
                credentials: RunSecrets {
                    signing_key_pem: zeroize::Zeroizing::new(pem.to_vec()),
                    ..Default::default()
                },
                pinned: Default::default(),
            })
            .await
    }

    /// Silent servers end the run at its deadline, with a reason that names both.
    #[tokio::test]
    async fn silent_servers_end_the_run_at_its_deadline() {
        let (addr, spec, _keep) = silent_server().await;
        let engine = Engine {
            timeout: Duration::from_secs(20),
            deadline: Duration::from_millis(500),
            ..Engine::default()
        };
        let started = std::time::Instant::now();
        // A valid P-256 key (of the bad-input corpus: it signs for no role).
        let key = include_bytes!("../../../tests/bad_input/keys/not-a-signer.pem");
        let outcome = run_with_key(&engine, &spec, key).await;
        let took = started.elapsed();
        assert_eq!(outcome.failure_reason, Some(reasons::DEADLINE_EXCEEDED));
        let (_, message) = outcome
            .status
            .ready()
            .map(|c| (c.reason.clone(), c.message.clone()))
            .unwrap();
        assert!(
            message.contains(&format!(
                "waiting for the registry {addr} and the trust server https://{addr}; nothing was published"
            )) && message.contains("deadline of 500ms"),
            "{message}"
        );
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }

    /// A bad key is reported at once, not after the servers answer or time out.
    #[tokio::test]
    async fn a_bad_key_does_not_wait_for_a_silent_server() {
        let (_, spec, _keep) = silent_server().await;
        let engine = Engine {
            timeout: Duration::from_secs(20),
            ..Engine::default()
        };
        let started = std::time::Instant::now();
        let outcome = run_with_key(&engine, &spec, b"not a key").await;
        assert_eq!(outcome.failure_reason, Some(reasons::BAD_KEY));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }
}
