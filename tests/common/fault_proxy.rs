//! A fault-injecting HTTPS proxy on 127.0.0.1 for the reliability tests.
//!
//! It terminates TLS with the testbed's server certificate (valid for 127.0.0.1, signed by the
//! testbed CA that the clients already trust), forwards each HTTP/1.1 request to the real service
//! (notary-server or a registry) and answers with its response, unless a fault rule matches:
//! - `refuse`: every new connection is closed before the TLS handshake;
//! - `Action::Status(code)`: answer `code` without forwarding (e.g. 503 to a publish);
//! - `Action::CutAfterForward`: forward the request (the upstream acts on it), then drop the
//!   client connection without a response (the client cannot know whether it happened);
//! - `Action::CutBeforeForward`: drop the connection without forwarding;
//! - `Action::Delay(d)`: forward, then hold the response for `d` (beyond the client's timeout);
//! - `Action::Replace(f)`: forward, then answer with the body rewritten by `f`.
#![allow(dead_code)]

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Rewrites a response body (tampering, replaying an old file, padding).
pub type Rewrite = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

#[derive(Clone)]
pub enum Action {
    Status(u16),
    CutAfterForward,
    CutBeforeForward,
    Delay(Duration),
    /// Forward, then answer with the upstream status and the rewritten body.
    Replace(Rewrite),
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Status(c) => write!(f, "Status({c})"),
            Action::CutAfterForward => write!(f, "CutAfterForward"),
            Action::CutBeforeForward => write!(f, "CutBeforeForward"),
            Action::Delay(d) => write!(f, "Delay({d:?})"),
            Action::Replace(_) => write!(f, "Replace"),
        }
    }
}

/// A fault applied to matching requests: after `skip` matching requests pass, the next `times`
/// get `action`.
#[derive(Clone, Debug)]
pub struct Rule {
    pub method: Option<&'static str>,
    pub path_contains: Option<String>,
    pub skip: u32,
    pub times: u32,
    pub action: Action,
}

impl Rule {
    pub fn new(method: Option<&'static str>, action: Action) -> Rule {
        Rule {
            method,
            path_contains: None,
            skip: 0,
            times: 1,
            action,
        }
    }
    pub fn path(mut self, p: &str) -> Rule {
        self.path_contains = Some(p.to_string());
        self
    }
    pub fn skip(mut self, n: u32) -> Rule {
        self.skip = n;
        self
    }
    pub fn times(mut self, n: u32) -> Rule {
        self.times = n;
        self
    }
}

#[derive(Default)]
struct Shared {
    rules: Mutex<Vec<Rule>>,
    refuse: AtomicBool,
    /// Set by a handler that wants its connection cut: the next write on any connection fails
    /// (requests through the proxy are sequential where this is used).
    cut_next_write: AtomicBool,
    injected: AtomicU32,
    refused: AtomicU32,
    requests: Mutex<Vec<(String, String, u16)>>,
}

pub struct FaultProxy {
    pub url: String,
    pub host: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Upstream {
    base: String,
    http: reqwest::Client,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (`https://127.0.0.1:PORT`), terminating TLS with
    /// `cert_pem`/`key_pem` and trusting `ca_pem` upstream.
    pub async fn start(upstream: &str, ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Self {
        let (listener, addr, acceptor) =
            crate::common::loopback::tls_listener(cert_pem, key_pem).await;
        let shared = Arc::new(Shared::default());
        let http = reqwest::Client::builder()
            .tls_certs_merge(reqwest::Certificate::from_pem_bundle(ca_pem).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .http1_only()
            .build()
            .unwrap();
        let state = Arc::new(Upstream {
            base: upstream.trim_end_matches('/').to_string(),
            http,
            shared: shared.clone(),
        });
        let app = axum::Router::new().fallback(handle).with_state(state);
        let tls = TlsListener {
            listener,
            acceptor,
            shared: shared.clone(),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(tls, app).await;
        });
        FaultProxy {
            url: format!("https://{addr}"),
            host: addr.to_string(),
            shared,
            task,
        }
    }

    pub fn add(&self, rule: Rule) {
        self.shared.rules.lock().unwrap().push(rule);
    }

    /// Removes every rule and accepts connections again: the fault has cleared.
    pub fn clear(&self) {
        self.shared.rules.lock().unwrap().clear();
        self.shared.refuse.store(false, Ordering::SeqCst);
    }

    pub fn refuse(&self, on: bool) {
        self.shared.refuse.store(on, Ordering::SeqCst);
    }

    /// Faults injected so far (responses replaced, connections cut or refused, delays).
    pub fn injected(&self) -> u32 {
        self.shared.injected.load(Ordering::SeqCst) + self.shared.refused.load(Ordering::SeqCst)
    }

    /// Whether every rule has been used up.
    pub fn rules_spent(&self) -> bool {
        self.shared
            .rules
            .lock()
            .unwrap()
            .iter()
            .all(|r| r.times == 0)
    }

    /// `(method, path, status)` of every request forwarded or answered (0 = cut).
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        self.shared.requests.lock().unwrap().clone()
    }
}

fn take_action(shared: &Shared, method: &str, path: &str) -> Option<Action> {
    let mut rules = shared.rules.lock().unwrap();
    for r in rules.iter_mut() {
        if r.method.is_some_and(|m| m != method) {
            continue;
        }
        if r.path_contains
            .as_deref()
            .is_some_and(|p| !path.contains(p))
        {
            continue;
        }
        if r.skip > 0 {
            r.skip -= 1;
            continue;
        }
        if r.times > 0 {
            r.times -= 1;
            shared.injected.fetch_add(1, Ordering::SeqCst);
            return Some(r.action.clone());
        }
    }
    None
}

async fn handle(State(up): State<Arc<Upstream>>, req: Request) -> Response {
    let method = req.method().as_str().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let action = take_action(&up.shared, &method, &path);
    let record = |status: u16| {
        up.shared
            .requests
            .lock()
            .unwrap()
            .push((method.clone(), path.clone(), status));
    };
    if let Some(Action::Status(code)) = action {
        record(code);
        return Response::builder()
            .status(code)
            .header("content-type", "text/plain")
            .body(Body::from(format!("injected fault: {code}\n")))
            .unwrap();
    }
    if let Some(Action::CutBeforeForward) = action {
        record(0);
        return cut(&up.shared);
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let mut out = up
        .http
        .request(parts.method.clone(), format!("{}{}", up.base, path))
        .body(body.to_vec());
    for (name, value) in &parts.headers {
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            out = out.header(name, value);
        }
    }
    let resp = match out.send().await {
        Ok(r) => r,
        Err(e) => {
            record(502);
            return Response::builder()
                .status(502)
                .body(Body::from(format!("proxy: upstream failed: {e}\n")))
                .unwrap();
        }
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut bytes = resp.bytes().await.unwrap_or_default();
    let mut replaced = false;
    match action {
        Some(Action::CutAfterForward) => {
            record(0);
            return cut(&up.shared);
        }
        Some(Action::Delay(d)) => tokio::time::sleep(d).await,
        Some(Action::Replace(f)) => {
            bytes = f(&bytes).into();
            replaced = true;
        }
        _ => {}
    }
    record(status.as_u16());
    let mut b = Response::builder().status(status.as_u16());
    for (name, value) in &headers {
        let hop_by_hop = matches!(name.as_str(), "connection" | "transfer-encoding");
        let stale_length = replaced && name == "content-length";
        if !hop_by_hop && !stale_length {
            b = b.header(name, value);
        }
    }
    b.body(Body::from(bytes)).unwrap()
}

fn cut(shared: &Shared) -> Response {
    shared.cut_next_write.store(true, Ordering::SeqCst);
    Response::builder().status(500).body(Body::empty()).unwrap()
}

struct TlsListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
}

impl axum::serve::Listener for TlsListener {
    type Io = CuttableIo;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            if self.shared.refuse.load(Ordering::SeqCst) {
                self.shared.refused.fetch_add(1, Ordering::SeqCst);
                let _ = tcp.set_zero_linger();
                drop(tcp);
                continue;
            }
            // A bounded handshake so that one stuck client does not block the others.
            match tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    return (
                        CuttableIo {
                            inner: Box::new(tls),
                            shared: self.shared.clone(),
                        },
                        addr,
                    );
                }
                _ => continue,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// The TLS stream of one client connection; its writes fail (and hyper drops the connection)
/// when a handler asked for the connection to be cut.
pub struct CuttableIo {
    inner: Box<TlsStream<TcpStream>>,
    shared: Arc<Shared>,
}

impl AsyncRead for CuttableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CuttableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.shared.cut_next_write.swap(false, Ordering::SeqCst) {
            // Close the TCP connection under TLS without a close_notify: a cut, not a shutdown.
            let _ = self.inner.get_ref().0.set_zero_linger();
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "fault proxy: connection cut",
            )));
        }
        Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}
