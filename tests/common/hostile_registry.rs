//! A hostile registry (or notary server) on 127.0.0.1 for tests: every answer comes from the
//! test's handler, every request it received is recorded (method, URI, headers). Plain HTTP, or
//! TLS with the testbed's server certificate (valid for 127.0.0.1, signed by the testbed CA).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
}

impl Seen {
    pub fn authorization(&self) -> Option<&str> {
        self.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
    }
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }
}

/// What the handler answers.
#[derive(Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            ..Default::default()
        }
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

#[derive(Clone)]
struct St {
    handler: Handler,
    seen: Arc<Mutex<Vec<Seen>>>,
}

pub struct Hostile {
    /// `https://127.0.0.1:PORT` or `http://…`.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub host: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(State(st): State<St>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    let seen = Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers,
    };
    st.seen.lock().unwrap().push(seen.clone());
    let reply = (st.handler)(&seen);
    let mut b = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
    for (k, v) in reply.headers {
        b = b.header(k, v);
    }
    b.body(Body::from(reply.body)).unwrap()
}

impl Hostile {
    /// A plain-HTTP server.
    pub async fn plain(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (st, seen) = state(handler);
        let app = axum::Router::new().fallback(serve).with_state(st);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Hostile {
            url: format!("http://{addr}"),
            host: addr.to_string(),
            seen,
            task,
        }
    }

    /// A TLS server with the certificate and key in `cert_pem` / `key_pem`.
    pub async fn tls(
        cert_pem: &[u8],
        key_pem: &[u8],
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Hostile {
        let (listener, addr, acceptor) =
            crate::common::loopback::tls_listener(cert_pem, key_pem).await;
        let (st, seen) = state(handler);
        let app = axum::Router::new().fallback(serve).with_state(st);
        let tls = TlsListener { listener, acceptor };
        let task = tokio::spawn(async move {
            let _ = axum::serve(tls, app).await;
        });
        Hostile {
            url: format!("https://{addr}"),
            host: addr.to_string(),
            seen,
            task,
        }
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn state(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> (St, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    (
        St {
            handler: Arc::new(handler),
            seen: seen.clone(),
        },
        seen,
    )
}

struct TlsListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            if let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(tcp)).await
            {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
