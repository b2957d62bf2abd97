//! Notary v1 (TUF) protocol: canonical JSON, metadata model, keys, TUF client and server API.
//! Knows nothing of the registry, the engine or Kubernetes.

pub mod canonical;
pub mod client;
pub mod error;
pub mod keys;
pub mod metadata;
pub mod time;

pub use error::{Error, Result};
pub use keys::{PrivateKey, PublicKey, SigningKey};
pub mod edit;
pub mod server;

pub use client::{Repository, TrustAnchor, TrustState};
pub use edit::{Editor, SignedFile};
pub use server::{Auth, NotaryClient, ServerConfig};
