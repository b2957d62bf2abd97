//! Registry and notary clients for a run, kept between runs: a reconcile of an unchanged
//! repository then costs its requests only, not two TLS handshakes and a CA parse.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::failure::Failure;
use super::request::{NotaryAuth, RunSecrets};
use super::run::Engine;
use super::settings::Settings;
use crate::api::reasons;
use trustkeeper_notary::{NotaryClient, ServerConfig};
use trustkeeper_registry::{DockerConfig, RegistryClient, RegistryOptions};

/// Clients unused this long are dropped (with the credentials they hold).
const IDLE: Duration = Duration::from_secs(15 * 60);
/// At most this many client pairs are kept.
const MAX_KEPT: usize = 256;

/// Client pairs by what they were built from (a digest: credentials are not kept as keys),
/// with their last use.
type KeptClients = HashMap<[u8; 32], (Clients, Instant)>;

#[derive(Clone, Default)]
pub struct ClientPool {
    kept: Arc<Mutex<KeptClients>>,
}

impl std::fmt::Debug for ClientPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.kept.lock().map_or(0, |k| k.len());
        write!(f, "ClientPool({n})")
    }
}

impl ClientPool {
    fn get(&self, key: &[u8; 32]) -> Option<Clients> {
        let mut kept = self.kept.lock().expect("pool lock");
        let (c, used) = kept.get_mut(key)?;
        *used = Instant::now();
        Some(c.fork())
    }

    fn put(&self, key: [u8; 32], c: &Clients) {
        let mut kept = self.kept.lock().expect("pool lock");
        let now = Instant::now();
        kept.retain(|_, (_, used)| now.duration_since(*used) < IDLE);
        if kept.len() >= MAX_KEPT
            && let Some(oldest) = kept.iter().min_by_key(|(_, (_, u))| *u).map(|(k, _)| *k)
        {
            kept.remove(&oldest);
        }
        kept.insert(key, (c.fork(), now));
    }
}

/// Everything a client pair is built from.
fn client_key(engine: &Engine, settings: &Settings, creds: &RunSecrets) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut part = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    part(settings.notary_url.as_bytes());
    part(settings.image.registry_host().as_bytes());
    for b in [
        creds.registry_auth.as_deref().map(|v| v.as_slice()),
        creds.registry_ca.as_deref(),
        creds.notary_ca.as_deref(),
        engine.extra_ca.as_deref(),
    ] {
        part(&[u8::from(b.is_some())]);
        part(b.unwrap_or_default());
    }
    match &creds.notary_auth {
        None => part(b"none"),
        Some(NotaryAuth::Basic { username, password }) => {
            part(b"basic");
            part(username.as_bytes());
            part(password.expose_secret().as_bytes());
        }
        Some(NotaryAuth::DockerConfig(bytes)) => {
            part(b"docker-config");
            part(bytes);
        }
    }
    part(&[
        u8::from(settings.insecure_registry_realm),
        u8::from(settings.insecure_notary_realm),
    ]);
    part(&engine.timeout.as_nanos().to_le_bytes());
    part(&engine.max_metadata_bytes.to_le_bytes());
    part(&engine.registry_concurrency.to_le_bytes());
    h.finalize().into()
}

/// Registry and notary clients for one run.
pub struct Clients {
    pub registry: RegistryClient,
    pub notary: NotaryClient,
}

impl Clients {
    /// Same connections, fresh request counters.
    fn fork(&self) -> Clients {
        Clients {
            registry: self.registry.fork(),
            notary: self.notary.fork(),
        }
    }
}

/// Joins PEM bundles.
fn join_ca(a: &Option<Vec<u8>>, b: &Option<Vec<u8>>) -> Option<Vec<u8>> {
    match (a, b) {
        (None, None) => None,
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (Some(x), Some(y)) => {
            let mut v = x.clone();
            v.push(b'\n');
            v.extend_from_slice(y);
            Some(v)
        }
    }
}

impl Engine {
    /// The clients a run needs: forks of clients kept from earlier runs with the same servers,
    /// CAs and credentials (no new TLS handshakes), else new ones.
    pub fn clients(&self, settings: &Settings, creds: &RunSecrets) -> Result<Clients, Failure> {
        let key = client_key(self, settings, creds);
        if let Some(c) = self.client_pool.get(&key) {
            return Ok(c);
        }
        let c = self.build_clients(settings, creds)?;
        self.client_pool.put(key, &c);
        Ok(c)
    }

    fn build_clients(&self, settings: &Settings, creds: &RunSecrets) -> Result<Clients, Failure> {
        let docker_config = match &creds.registry_auth {
            Some(bytes) => Some(DockerConfig::from_json(bytes).map_err(|e| {
                Failure::new(
                    reasons::SECRET_INVALID,
                    format!("registry credentials: {e}"),
                )
            })?),
            None => None,
        };
        let credentials = docker_config
            .as_ref()
            .map(|c| c.credentials_for(settings.image.registry_host()))
            .unwrap_or_default();
        let registry = RegistryClient::new(RegistryOptions {
            ca_pem: join_ca(&creds.registry_ca, &self.extra_ca),
            // A SignedImage's own CA is the private server's: trust it alone.
            ca_only: creds.registry_ca.is_some(),
            credentials,
            timeout: self.timeout,
            max_concurrency: self.registry_concurrency,
            insecure_token_realm: settings.insecure_registry_realm,
            ..Default::default()
        })?;
        let notary_host = settings
            .notary_url
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let basic = |c: trustkeeper_registry::Credentials| match c {
            trustkeeper_registry::Credentials::Basic { username, password } => {
                trustkeeper_notary::Auth::Basic { username, password }
            }
            _ => trustkeeper_notary::Auth::Anonymous,
        };
        let auth = match &creds.notary_auth {
            Some(NotaryAuth::Basic { username, password }) => trustkeeper_notary::Auth::Basic {
                username: username.clone(),
                password: password.clone(),
            },
            Some(NotaryAuth::DockerConfig(bytes)) => basic(
                DockerConfig::from_json(bytes)
                    .map_err(|e| {
                        Failure::new(reasons::SECRET_INVALID, format!("notary credentials: {e}"))
                    })?
                    .credentials_for(&notary_host),
            ),
            None => docker_config
                .as_ref()
                .map(|c| basic(c.credentials_for(&notary_host)))
                .unwrap_or_default(),
        };
        let notary = NotaryClient::new(ServerConfig {
            url: settings.notary_url.clone(),
            ca_pem: join_ca(&creds.notary_ca, &self.extra_ca),
            ca_only: creds.notary_ca.is_some(),
            auth,
            timeout: self.timeout,
            max_metadata_bytes: self.max_metadata_bytes,
        })?;

        notary.allow_insecure_token_realm(settings.insecure_notary_realm);
        Ok(Clients { registry, notary })
    }
}
