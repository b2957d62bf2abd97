//! Docker registry client: image references, credentials, tags and manifest digests.
//! Knows nothing of notary, the engine or Kubernetes.
