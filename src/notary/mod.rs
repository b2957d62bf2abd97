//! Notary v1 (TUF) protocol: canonical JSON, metadata model, keys, TUF client and server API.
//! Knows nothing of the registry, the engine or Kubernetes.
