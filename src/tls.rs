//! Process-wide TLS set-up shared by every HTTP client.

/// Installs aws-lc-rs as the process's rustls provider. Idempotent: a second call is a no-op.
///
/// kube and reqwest both build rustls configs from the process default; pinning it here means a
/// dependency that someday enables `ring` cannot make them disagree (kube panics when two
/// providers are compiled in and none is installed).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
