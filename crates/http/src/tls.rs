//! Process-wide TLS set-up shared by every HTTP client.

/// Installs aws-lc-rs as the process's rustls provider. Idempotent: a second call is a no-op.
///
/// kube and reqwest both build rustls configs from the process default; pinning it here means a
/// dependency that someday enables `ring` cannot make them disagree (kube panics when two
/// providers are compiled in and none is installed).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Redirects that never leave TLS: an `https` request redirected to `http://` is refused (it
/// would carry the request, and the answer trusted as if it came over TLS, in the clear). At
/// most 10 hops, as reqwest's default. reqwest itself drops `Authorization` on a redirect to
/// another host.
pub fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.url().scheme() == "http"
            && attempt.previous().iter().any(|u| u.scheme() == "https");
        if downgrade {
            let to = attempt.url().to_string();
            attempt.error(RedirectRefused(format!(
                "refused a redirect from https to plain http ({to}): the server or a proxy \
                 tries to move the connection off TLS; fix its redirect"
            )))
        } else if attempt.previous().len() >= 10 {
            attempt.error(RedirectRefused("more than 10 redirects".into()))
        } else {
            attempt.follow()
        }
    })
}

/// Why a redirect was not followed (the cause of the request's error).
#[derive(Debug)]
pub struct RedirectRefused(pub String);

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedirectRefused {}

/// An error with all its causes, `: `-separated. reqwest's own text ("error sending request")
/// hides whether a connection was refused or a certificate was not trusted.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A CA bundle that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("it is not valid PEM: {0}")]
    NotPem(String),
    #[error("it holds no certificate")]
    Empty,
    #[error("certificate {index} cannot be a root: {reason}")]
    BadCertificate { index: usize, reason: String },
    #[error("{0}")]
    Tls(String),
}

/// The TLS set-up of one HTTP client. With `ca_pem` and `ca_only`, those CAs alone are
/// trusted (a private server's own CA); with `ca_pem` alone, those CAs and the system roots;
/// without it, the system roots.
///
/// The system roots are read once per process and only when a server's chain does not lead to
/// a given CA: reading them (`/etc/ssl/certs`, ~140 certificates) costs ~7 ms, which reqwest's
/// own set-up pays for every client it builds, i.e. twice per `sign`.
pub fn client_config(
    ca_pem: Option<&[u8]>,
    ca_only: bool,
) -> Result<rustls::ClientConfig, CaError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    install_crypto_provider();
    let provider = rustls::crypto::CryptoProvider::get_default()
        .expect("a provider was installed just above")
        .clone();
    let first = match ca_pem {
        None => None,
        Some(pem) => {
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CaError::NotPem(e.to_string()))?;
            if certs.is_empty() {
                return Err(CaError::Empty);
            }
            let mut roots = rustls::RootCertStore::empty();
            for (index, c) in certs.into_iter().enumerate() {
                roots.add(c).map_err(|e| CaError::BadCertificate {
                    index,
                    reason: e.to_string(),
                })?;
            }
            Some(
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    roots.into(),
                    provider.clone(),
                )
                .build()
                .map_err(|e| CaError::Tls(e.to_string()))?,
            )
        }
    };
    let verifier: std::sync::Arc<dyn rustls::client::danger::ServerCertVerifier> =
        match (first, ca_only) {
            (Some(ca), true) => ca,
            (first, _) => std::sync::Arc::new(ThenSystem {
                first,
                provider: provider.clone(),
            }),
        };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CaError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // What reqwest offers with its own set-up (HTTP/2 where the server speaks it).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The system roots' verifier, built on first use and shared by every client of the process.
fn system_verifier(
    provider: &std::sync::Arc<rustls::crypto::CryptoProvider>,
) -> Result<std::sync::Arc<rustls_platform_verifier::Verifier>, rustls::Error> {
    static SYSTEM: std::sync::OnceLock<
        Result<std::sync::Arc<rustls_platform_verifier::Verifier>, rustls::Error>,
    > = std::sync::OnceLock::new();
    SYSTEM
        .get_or_init(|| rustls_platform_verifier::Verifier::new(provider.clone()).map(Into::into))
        .clone()
}

/// Verifies a server's chain against the given CAs, and only when it leads to none of them
/// (unknown issuer), against the system roots. Any other verdict of the given CAs (expired,
/// wrong name, revoked) stands.
#[derive(Debug)]
struct ThenSystem {
    first: Option<std::sync::Arc<rustls::client::WebPkiServerVerifier>>,
    provider: std::sync::Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for ThenSystem {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if let Some(first) = &self.first {
            match first.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => {
                }
                verdict => return verdict,
            }
        }
        system_verifier(&self.provider)?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
