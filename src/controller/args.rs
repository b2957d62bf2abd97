//! `trustkeeper controller`: its flags (each also an environment variable) and the entry point
//! the CLI calls.
//!
//! | flag | env | default |
//! |---|---|---|
//! | `--namespace NS` (repeatable, or comma-separated) | `TRUSTKEEPER_NAMESPACES` | all namespaces |
//! | `--concurrency N` | `TRUSTKEEPER_CONCURRENCY` | 8 |
//! | `--max-metadata-size SIZE` (trust metadata read per repository; a global flag) | `TRUSTKEEPER_MAX_METADATA_SIZE` | `4MiB` |
//! | `--deadline D` (of each reconcile; a global flag) | `TRUSTKEEPER_DEADLINE` | `5m` |
//! | `--metrics-addr ADDR` (`/metrics`, `/healthz`, `/readyz`, `/notifications`) | `TRUSTKEEPER_METRICS_ADDR` | `0.0.0.0:8080` |
//! | `--identity NAME` | `POD_NAME` | the host name |
//! | `--lease-name NAME` | `TRUSTKEEPER_LEASE_NAME` | `trustkeeper` |
//! | `--lease-namespace NS` | `POD_NAMESPACE` | the service account's namespace, else `default` |
//! | `--no-leader-election` | `TRUSTKEEPER_NO_LEADER_ELECTION` | election on |
//! | `--lease-duration S`, `--renew-deadline S`, `--retry-period S` | | 15, 10, 2 |
//! | `--webhook-token-file FILE` | `TRUSTKEEPER_WEBHOOK_TOKEN_FILE` | notifications off |
//! | `--log-level FILTER` (`RUST_LOG` wins when set) | | `info` |
//!
//! The webhook token is read once at start (a mounted Secret key); the endpoint then wants
//! `Authorization: Bearer <token>`. Without a token file `POST /notifications` answers 404.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::error::Error;
use super::lease::LeaseConfig;
use super::runner::{ControllerConfig, run};
use crate::engine::Reconciler;

/// Where a pod's namespace is mounted.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Flags of `trustkeeper controller`.
#[derive(clap::Args, Debug, Clone)]
pub struct ControllerArgs {
    /// Watch only these namespaces (repeat, or separate with commas). Default: all namespaces.
    #[arg(
        short = 'n',
        long = "namespace",
        env = "TRUSTKEEPER_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// At most this many SignedImages reconciled at once.
    #[arg(long, env = "TRUSTKEEPER_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,
    /// Listen address of /metrics, /healthz, /readyz and /notifications.
    #[arg(long, env = "TRUSTKEEPER_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// This replica's name (Lease holder, Events' reportingInstance). Default: the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, env = "TRUSTKEEPER_LEASE_NAME", default_value = "trustkeeper")]
    pub lease_name: String,
    /// Namespace of the Lease. Default: the pod's namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Run without leader election (only ever one replica!).
    #[arg(long, env = "TRUSTKEEPER_NO_LEADER_ELECTION")]
    pub no_leader_election: bool,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, default_value_t = 15)]
    pub lease_duration: u64,
    /// Seconds after which a leader that could not renew stops.
    #[arg(long, default_value_t = 10)]
    pub renew_deadline: u64,
    /// Seconds between renewals and between attempts to acquire.
    #[arg(long, default_value_t = 2)]
    pub retry_period: u64,
    /// File holding the bearer token of POST /notifications (a mounted Secret key).
    #[arg(long, env = "TRUSTKEEPER_WEBHOOK_TOKEN_FILE")]
    pub webhook_token_file: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax); RUST_LOG wins when set.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// Reads the webhook token (trailing newline dropped; empty is an error).
pub fn read_token(path: &std::path::Path) -> Result<SecretString, Error> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
        Error::Config(format!(
            "cannot read the webhook token file {}: {e}",
            path.display()
        ))
    })?);
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::Config(format!("{} is not UTF-8 text", path.display())))?
        .trim();
    if text.is_empty() {
        return Err(Error::Config(format!("{} is empty", path.display())));
    }
    Ok(SecretString::from(text))
}

impl ControllerArgs {
    /// The configuration these flags describe.
    pub fn config(&self) -> Result<ControllerConfig, Error> {
        let identity = self
            .identity
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(hostname)
            .ok_or_else(|| Error::Config("no --identity, POD_NAME or host name".into()))?;
        let mut config = ControllerConfig::new(&identity);
        let namespaces: Vec<String> = self
            .namespaces
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        config.namespaces = (!namespaces.is_empty()).then_some(namespaces);
        config.concurrency = self.concurrency.max(1);
        config.metrics_addr = self.metrics_addr;
        if !self.no_leader_election {
            let ns = self
                .lease_namespace
                .clone()
                .filter(|s| !s.is_empty())
                .or_else(|| {
                    std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
                        .ok()
                        .map(|s| s.trim().to_string())
                })
                .unwrap_or_else(|| "default".into());
            let mut lease = LeaseConfig::new(&ns, &identity);
            lease.name = self.lease_name.clone();
            lease.lease_duration = Duration::from_secs(self.lease_duration.max(1));
            lease.renew_deadline = Duration::from_secs(self.renew_deadline.max(1));
            lease.retry_period = Duration::from_secs(self.retry_period.max(1));
            if lease.renew_deadline >= lease.lease_duration
                || lease.retry_period >= lease.renew_deadline
            {
                return Err(Error::Config(
                    "need --retry-period < --renew-deadline < --lease-duration".into(),
                ));
            }
            config.lease = Some(lease);
        }
        if let Some(path) = &self.webhook_token_file {
            config.webhook_token = Some(read_token(path)?);
        }
        Ok(config)
    }
}

/// `trustkeeper controller`: JSON logs, the kube client from the environment (in-cluster or
/// `KUBECONFIG`), then [`run`] until SIGTERM. `Err` when leadership is lost or start-up fails:
/// the binary exits non-zero and Kubernetes restarts the pod.
pub fn main<R: Reconciler>(args: ControllerArgs, reconciler: R) -> Result<(), Error> {
    super::logging::init(&args.log_level);
    crate::tls::install_crypto_provider();
    let config = args.config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Config(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let client = kube::Client::try_default().await.map_err(Error::Client)?;
        run(client, reconciler, config).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use secrecy::ExposeSecret;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ControllerArgs,
    }

    #[test]
    fn flags_to_config() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let cli = Cli::try_parse_from([
            "x",
            "-n",
            "a,b",
            "--namespace",
            "c",
            "--identity",
            "pod-1",
            "--lease-namespace",
            "ops",
            "--metrics-addr",
            "127.0.0.1:9090",
            "--webhook-token-file",
            token.to_str().unwrap(),
        ])
        .unwrap();
        let c = cli.args.config().unwrap();
        assert_eq!(c.namespaces, Some(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(c.identity, "pod-1");
        assert_eq!(c.concurrency, 8);
        assert_eq!(c.metrics_addr.to_string(), "127.0.0.1:9090");
        let lease = c.lease.unwrap();
        assert_eq!(
            (lease.name.as_str(), lease.namespace.as_str()),
            ("trustkeeper", "ops")
        );
        assert_eq!(lease.identity, "pod-1");
        assert_eq!(c.webhook_token.unwrap().expose_secret(), "s3cret");

        let cli = Cli::try_parse_from(["x", "--identity", "p", "--no-leader-election"]).unwrap();
        let c = cli.args.config().unwrap();
        assert!(c.namespaces.is_none() && c.lease.is_none() && c.webhook_token.is_none());
        assert_eq!(c.metrics_addr.to_string(), "0.0.0.0:8080");

        let cli = Cli::try_parse_from(["x", "--identity", "p", "--lease-duration", "5"]).unwrap();
        assert!(cli.args.config().is_err());
        std::fs::write(&token, "\n").unwrap();
        let cli = Cli::try_parse_from([
            "x",
            "--identity",
            "p",
            "--webhook-token-file",
            token.to_str().unwrap(),
        ])
        .unwrap();
        assert!(cli.args.config().is_err());
    }
}
