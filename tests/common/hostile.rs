//! Hostile servers on 127.0.0.1 for the deadline tests: one that accepts connections and never
//! says a word, and an HTTPS one (the testbed's certificate, so clients trust it) that answers
//! every request with headers promising a body and then stalls or trickles it forever.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;

use crate::common::Testbed;

/// Accepts TCP connections and holds them without a byte (not even a TLS handshake).
pub async fn silent() -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    (addr.to_string(), task)
}

/// HTTPS: headers, one byte of the promised body, then every `trickle` one more byte (or
/// nothing, with `None`), forever. reqwest reports the stall as "error decoding response body".
pub async fn stalling(tb: &Testbed, trickle: Option<Duration>) -> (String, JoinHandle<()>) {
    trustkeeper::tls::install_crypto_provider();
    let cert_pem = std::fs::read(tb.var("TESTBED_SERVER_CERT")).unwrap();
    let key_pem = std::fs::read(tb.var("TESTBED_SERVER_KEY")).unwrap();
    let certs: Vec<rustls::pki_types::CertificateDer<'static>> = pem::parse_many(&cert_pem)
        .unwrap()
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.into_contents().into())
        .collect();
    let key = pem::parse_many(&key_pem)
        .unwrap()
        .into_iter()
        .find(|p| p.tag().ends_with("PRIVATE KEY"))
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.into_contents()).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 16 << 10];
                let _ = tls.read(&mut buf).await;
                let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{";
                if tls.write_all(head).await.is_err() || tls.flush().await.is_err() {
                    return;
                }
                loop {
                    match trickle {
                        Some(every) => {
                            tokio::time::sleep(every).await;
                            if tls.write_all(b" ").await.is_err() || tls.flush().await.is_err() {
                                return;
                            }
                        }
                        None => tokio::time::sleep(Duration::from_secs(3600)).await,
                    }
                }
            });
        }
    });
    (addr.to_string(), task)
}
