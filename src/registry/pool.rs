//! [`RegistryPool`]: one [`RegistryClient`] (connection pool, token cache) per registry, with
//! that registry's credentials (from a Docker config) and CA.

use std::collections::HashMap;
use std::sync::Mutex;

use super::client::{RegistryClient, RegistryOptions};
use super::credentials::{DockerConfig, normalize_registry_key};
use super::error::Result;
use super::reference::ImageRef;
use crate::http_auth::RequestStats;

/// Hands out one shared [`RegistryClient`] per registry host.
pub struct RegistryPool {
    template: RegistryOptions,
    docker_config: Option<DockerConfig>,
    cas: HashMap<String, Vec<u8>>,
    clients: Mutex<HashMap<String, RegistryClient>>,
}

impl RegistryPool {
    /// `template` gives timeout, concurrency, retry and the default CA/credentials; a
    /// `docker_config` entry for a registry overrides the template's credentials.
    pub fn new(template: RegistryOptions, docker_config: Option<DockerConfig>) -> Self {
        RegistryPool {
            template,
            docker_config,
            cas: HashMap::new(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Trusts `pem` (a CA bundle) for one registry (`docker.io`, `host:port`).
    pub fn with_ca(mut self, registry: &str, pem: Vec<u8>) -> Self {
        self.cas.insert(normalize_registry_key(registry), pem);
        self
    }

    /// The client for the image's registry, built on first use.
    pub fn client_for(&self, image: &ImageRef) -> Result<RegistryClient> {
        let host = image.registry_host().to_string();
        let mut clients = self.clients.lock().expect("pool lock");
        if let Some(c) = clients.get(&host) {
            return Ok(c.clone());
        }
        let mut opts = self.template.clone();
        if let Some(cfg) = &self.docker_config {
            let creds = cfg.credentials_for(&host);
            if !creds.is_anonymous() {
                opts.credentials = creds;
            }
        }
        if let Some(pem) = self.cas.get(&host) {
            opts.ca_pem = Some(pem.clone());
        }
        let client = RegistryClient::new(opts)?;
        clients.insert(host, client.clone());
        Ok(client)
    }

    /// Request counters per registry host.
    pub fn stats(&self) -> Vec<(String, RequestStats)> {
        let clients = self.clients.lock().expect("pool lock");
        let mut out: Vec<_> = clients
            .iter()
            .map(|(h, c)| (h.clone(), c.stats()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}
