//! The TLS set-up that the loopback servers (`hostile_registry`, `hostile_notary`,
//! `fault_proxy`) share.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// A listener on 127.0.0.1:0, its address, and a TLS acceptor serving the certificate chain in
/// `cert_pem` with the private key in `key_pem`.
pub async fn tls_listener(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> (TcpListener, SocketAddr, TlsAcceptor) {
    trustkeeper::tls::install_crypto_provider();
    let certs: Vec<rustls::pki_types::CertificateDer<'static>> = pem::parse_many(cert_pem)
        .unwrap()
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.into_contents().into())
        .collect();
    let key_block = pem::parse_many(key_pem)
        .unwrap()
        .into_iter()
        .find(|p| p.tag().ends_with("PRIVATE KEY"))
        .expect("a private key in the server key file");
    let key = rustls::pki_types::PrivateKeyDer::try_from(key_block.into_contents()).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr, TlsAcceptor::from(Arc::new(config)))
}
