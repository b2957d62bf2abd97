//! The controller's error type: what stops a reconcile (API errors) or the whole controller.
//! Problems a user fixes in a SignedImage or Secret are statuses, not errors.

/// Controller errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a Secret or ConfigMap failed for a reason other than "not found".
    #[error("cannot read a referenced Secret or ConfigMap: {0}")]
    SecretRead(#[source] crate::engine::secrets::ReadError),
    /// The status could not be written.
    #[error("cannot write the status: {0}")]
    StatusWrite(#[source] kube::Error),
    /// A Lease request failed.
    #[error("lease {lease}: {source}")]
    Lease {
        lease: String,
        #[source]
        source: kube::Error,
    },
    /// Another replica took the Lease, or it could not be renewed in time.
    #[error("leadership lost: {0}")]
    LeadershipLost(String),
    /// The metrics/notifications server could not start.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// Configuration (flags, token file, kubeconfig).
    #[error("{0}")]
    Config(String),
    /// The Kubernetes client could not be built.
    #[error("kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

impl Error {
    /// A short, stable label for the failure counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::SecretRead(_) => "SecretReadError",
            Error::StatusWrite(_) => "StatusWriteError",
            Error::Lease { .. } => "LeaseError",
            Error::LeadershipLost(_) => "LeadershipLost",
            Error::Listen { .. } => "ListenError",
            Error::Config(_) => "ConfigError",
            Error::Client(_) => "ClientError",
        }
    }
}
