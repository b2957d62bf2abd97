//! A TLS proxy to the testbed registry that holds back the answer to the first GET whose
//! request line `held` picks by `delay`: the writer behind it acts on a state that another
//! writer changes meanwhile, the lost-update race made certain instead of likely. `seen` fires
//! when that GET has gone through to the registry. (The cosign and Notation referee tests use
//! it for the `.sig` tag and the referrers tag.)

use std::time::Duration;

use super::Testbed;

pub struct DelayProxy {
    pub host: String,
    pub seen: std::sync::Arc<tokio::sync::Notify>,
}

pub async fn delay_proxy(delay: Duration, held: fn(&str) -> bool) -> DelayProxy {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_rustls::rustls;

    let tb = Testbed::get();
    let cert = std::fs::read(tb.var("TESTBED_SERVER_CERT")).unwrap();
    let key = std::fs::read(tb.var("TESTBED_SERVER_KEY")).unwrap();
    let (listener, addr, acceptor) = super::loopback::tls_listener(&cert, &key).await;
    let mut roots = rustls::RootCertStore::empty();
    for c in pem::parse_many(tb.ca_pem()).unwrap() {
        roots.add(c.into_contents().into()).unwrap();
    }
    let client_config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let upstream: std::net::SocketAddr = tb.var("REGISTRY_HOST").parse().unwrap();
    let seen = Arc::new(tokio::sync::Notify::new());
    let armed = Arc::new(AtomicBool::new(true));
    let (seen2, armed2) = (seen.clone(), armed.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, connector) = (acceptor.clone(), connector.clone());
            let (seen, armed) = (seen2.clone(), armed2.clone());
            tokio::spawn(async move {
                let Ok(client) = acceptor.accept(tcp).await else {
                    return;
                };
                let up = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
                let Ok(up) = connector.connect(name, up).await else {
                    return;
                };
                let (mut cr, mut cw) = tokio::io::split(client);
                let (mut ur, mut uw) = tokio::io::split(up);
                let hold = Arc::new(AtomicBool::new(false));
                let hold2 = hold.clone();
                let to_registry = async move {
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let head = String::from_utf8_lossy(&buf[..n.min(512)]).into_owned();
                        let held_get =
                            head.starts_with("GET ") && head.lines().next().is_some_and(held);
                        if held_get && armed.swap(false, Ordering::SeqCst) {
                            hold2.store(true, Ordering::SeqCst);
                        }
                        if uw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        if held_get && hold2.load(Ordering::SeqCst) {
                            seen.notify_one();
                        }
                    }
                    let _ = uw.shutdown().await;
                };
                let to_client = async move {
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        let n = match ur.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if hold.swap(false, Ordering::SeqCst) {
                            tokio::time::sleep(delay).await;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = cw.shutdown().await;
                };
                tokio::join!(to_registry, to_client);
            });
        }
    });
    DelayProxy {
        host: addr.to_string(),
        seen,
    }
}
