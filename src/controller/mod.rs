//! Kubernetes operator glue: watches SignedImages, reads Secrets, writes status and Events.
