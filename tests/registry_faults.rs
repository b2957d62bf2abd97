//! The registry client against a local fake registry (axum on 127.0.0.1, plain HTTP): rate
//! limits, server errors, slow responses, closed ports, pagination, digest checks and the
//! bearer-token flow. No testbed needed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use trustkeeper::registry::manifest::{DOCKER_MANIFEST_V1_SIGNED, OCI_MANIFEST_V1, sha256_digest};
use trustkeeper::registry::{
    Credentials, ImageRef, RegistryClient, RegistryError, RegistryOptions, RetryPolicy,
};

const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    uri: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

#[derive(Default)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    delay: Duration,
}

impl Reply {
    fn status(status: u16) -> Self {
        Reply {
            status,
            ..Default::default()
        }
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    /// 200 with the full manifest headers (digest, length, type).
    fn manifest() -> Self {
        Reply::status(200)
            .header("Content-Type", OCI_MANIFEST_V1)
            .header("Docker-Content-Digest", sha256_digest(MANIFEST))
            .header("Content-Length", MANIFEST.len().to_string())
            .body(MANIFEST)
    }
}

type Handler = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

struct Fake {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

#[derive(Clone)]
struct FakeState {
    handler: Handler,
    seen: Arc<Mutex<Vec<Seen>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

async fn serve(State(st): State<FakeState>, req: Request) -> Response {
    let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body: body.to_vec(),
    };
    let n = {
        let mut s = st.seen.lock().unwrap();
        s.push(seen.clone());
        s.len() - 1
    };
    let reply = (st.handler)(&seen, n);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    st.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut b = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
    for (k, v) in reply.headers {
        b = b.header(k, v);
    }
    b.body(Body::from(reply.body)).unwrap()
}

impl Fake {
    async fn start(
        handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> (Fake, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let st = FakeState {
            handler: Arc::new(handler),
            seen: seen.clone(),
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: max_in_flight.clone(),
        };
        let app = axum::Router::new().fallback(serve).with_state(st);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (Fake { port, seen }, max_in_flight)
    }

    fn image(&self) -> ImageRef {
        ImageRef::parse(&format!("127.0.0.1:{}/team/app", self.port)).unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn fast_retry(attempts: usize) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        max_total: Duration::from_secs(10),
        max_retry_after: Duration::from_secs(5),
    }
}

fn client(retry: RetryPolicy, credentials: Credentials) -> RegistryClient {
    RegistryClient::new(RegistryOptions {
        plain_http: true,
        credentials,
        retry,
        timeout: Duration::from_secs(5),
        // the fake's token realm is plain http, as the fake itself
        insecure_token_realm: true,
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test]
async fn rate_limit_honours_retry_after_seconds() {
    let (fake, _) = Fake::start(|_, n| {
        if n == 0 {
            Reply::status(429).header("Retry-After", "1")
        } else {
            Reply::manifest()
        }
    })
    .await;
    let c = client(fast_retry(3), Credentials::Anonymous);
    let t = Instant::now();
    let d = c.resolve(&fake.image(), "v1").await.unwrap();
    let elapsed = t.elapsed();
    assert_eq!(d.digest, sha256_digest(MANIFEST));
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    let s = c.stats();
    assert_eq!((s.head, s.retries, s.get), (2, 1, 0), "{s:?}");
}

#[tokio::test]
async fn rate_limit_http_date_is_capped_and_attempts_bounded() {
    let (fake, _) = Fake::start(|_, _| {
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(120);
        let date = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&later)
            .unwrap();
        Reply::status(429).header("Retry-After", date)
    })
    .await;
    let c = client(
        RetryPolicy {
            max_retry_after: Duration::from_millis(300),
            ..fast_retry(3)
        },
        Credentials::Anonymous,
    );
    let t = Instant::now();
    let err = c.resolve(&fake.image(), "v1").await.unwrap_err();
    let elapsed = t.elapsed();
    match &err {
        RegistryError::RateLimited { retry_after, .. } => {
            let secs = retry_after.expect("parsed Retry-After").as_secs();
            assert!((110..=121).contains(&secs), "{secs}");
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("rate limiting"), "{err}");
    assert!(elapsed >= Duration::from_millis(550), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    assert_eq!(c.stats().head, 3);
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let (fake, _) = Fake::start(|_, n| match n {
        0 => Reply::status(500),
        1 => Reply::status(502),
        _ => Reply::manifest(),
    })
    .await;
    let c = client(fast_retry(4), Credentials::Anonymous);
    let d = c.resolve(&fake.image(), "v1").await.unwrap();
    assert_eq!(d.size, MANIFEST.len() as u64);
    assert_eq!(d.media_type, OCI_MANIFEST_V1);
    assert_eq!(c.stats().retries, 2);
}

#[tokio::test]
async fn persistent_server_errors_give_up_after_bounded_attempts() {
    let (fake, _) = Fake::start(|_, _| Reply::status(503)).await;
    let c = client(fast_retry(3), Credentials::Anonymous);
    let t = Instant::now();
    let err = c.list_tags(&fake.image()).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::Server { status: 503, .. }),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(8));
    let s = c.stats();
    assert_eq!((s.tag_list, s.retries), (3, 2), "{s:?}");

    // the total-time budget also bounds it
    let c = client(
        RetryPolicy {
            max_attempts: 100,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_millis(200),
            max_total: Duration::from_millis(700),
            ..fast_retry(100)
        },
        Credentials::Anonymous,
    );
    let t = Instant::now();
    assert!(c.resolve(&fake.image(), "v1").await.is_err());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(c.stats().head <= 6, "{:?}", c.stats());
}

#[tokio::test]
async fn slow_responses_time_out() {
    let (fake, _) = Fake::start(|_, _| Reply {
        delay: Duration::from_secs(10),
        ..Reply::manifest()
    })
    .await;
    let c = RegistryClient::new(RegistryOptions {
        plain_http: true,
        timeout: Duration::from_millis(300),
        retry: fast_retry(2),
        ..Default::default()
    })
    .unwrap();
    let t = Instant::now();
    let err = c.resolve(&fake.image(), "v1").await.unwrap_err();
    let elapsed = t.elapsed();
    assert!(matches!(err, RegistryError::Timeout { .. }), "{err}");
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    assert_eq!(c.stats().head, 2);
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let image = ImageRef::parse(&format!("127.0.0.1:{port}/team/app")).unwrap();
    let c = client(fast_retry(3), Credentials::Anonymous);
    let t = Instant::now();
    let err = c.resolve(&image, "v1").await.unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(8));
    assert_eq!(c.stats().retries, 2);
}

#[tokio::test]
async fn tag_list_follows_link_pages() {
    let port = Arc::new(AtomicUsize::new(0));
    let p = port.clone();
    let (fake, _) = Fake::start(move |seen, _| {
        let uri = seen.uri.as_str();
        if uri == "/v2/team/app/tags/list?n=2" {
            Reply::status(200)
                .header("Link", r#"</v2/team/app/tags/list?last=b&n=2>; rel="next""#)
                .body(r#"{"name":"team/app","tags":["a","b"]}"#)
        } else if uri == "/v2/team/app/tags/list?last=b&n=2" {
            let next = format!(
                "<http://127.0.0.1:{}/v2/team/app/tags/list?last=d&n=2>; rel=\"next\"",
                p.load(Ordering::SeqCst)
            );
            Reply::status(200)
                .header("Link", next)
                .body(r#"{"name":"team/app","tags":["c","d","b"]}"#)
        } else if uri == "/v2/team/app/tags/list?last=d&n=2" {
            Reply::status(200).body(r#"{"name":"team/app","tags":["e"]}"#)
        } else {
            Reply::status(404)
        }
    })
    .await;
    port.store(fake.port as usize, Ordering::SeqCst);
    let c = RegistryClient::new(RegistryOptions {
        plain_http: true,
        tags_page_size: Some(2),
        ..Default::default()
    })
    .unwrap();
    let tags = c.list_tags(&fake.image()).await.unwrap();
    assert_eq!(tags, ["a", "b", "c", "d", "e"]);
    assert_eq!(c.stats().tag_list, 3);
}

#[tokio::test]
async fn tag_list_link_loop_is_an_error() {
    let (fake, _) = Fake::start(|_, _| {
        Reply::status(200)
            .header("Link", r#"</v2/team/app/tags/list>; rel="next""#)
            .body(r#"{"tags":["a"]}"#)
    })
    .await;
    let c = client(fast_retry(1), Credentials::Anonymous);
    let err = c.list_tags(&fake.image()).await.unwrap_err();
    assert!(matches!(err, RegistryError::Protocol { .. }), "{err}");
    assert!(err.to_string().contains("loops"), "{err}");
}

#[tokio::test]
async fn head_without_digest_falls_back_to_one_checked_get() {
    let (fake, _) = Fake::start(|seen, _| {
        if seen.method == "HEAD" {
            // no Docker-Content-Digest
            Reply::status(200).header("Content-Type", OCI_MANIFEST_V1)
        } else {
            Reply::manifest()
        }
    })
    .await;
    let c = client(fast_retry(1), Credentials::Anonymous);
    let d = c.resolve(&fake.image(), "v1").await.unwrap();
    assert_eq!(d.digest, sha256_digest(MANIFEST));
    assert_eq!(d.size, MANIFEST.len() as u64);
    let s = c.stats();
    assert_eq!((s.head, s.get), (1, 1), "{s:?}");
    // every request asked for all four manifest types
    for seen in fake.seen() {
        let accept = seen.headers["accept"].to_str().unwrap();
        for t in [
            "manifest.v2+json",
            "manifest.list.v2+json",
            "oci.image.manifest.v1+json",
            "oci.image.index.v1+json",
        ] {
            assert!(accept.contains(t), "{accept}");
        }
    }
}

#[tokio::test]
async fn digest_mismatch_is_reported() {
    let wrong = sha256_digest(b"something else");
    let w = wrong.clone();
    let (fake, _) = Fake::start(move |seen, _| {
        if seen.method == "HEAD" {
            Reply::status(200).header("Content-Type", OCI_MANIFEST_V1)
        } else {
            Reply::status(200)
                .header("Content-Type", OCI_MANIFEST_V1)
                .header("Docker-Content-Digest", w.clone())
                .body(MANIFEST)
        }
    })
    .await;
    let c = client(fast_retry(1), Credentials::Anonymous);
    let err = c.resolve(&fake.image(), "v1").await.unwrap_err();
    match &err {
        RegistryError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &wrong);
            assert_eq!(actual, &sha256_digest(MANIFEST));
        }
        other => panic!("{other}"),
    }
    // asking by a digest the bytes don't have
    let err = c.get_manifest_raw(&fake.image(), &wrong).await.unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
}

#[tokio::test]
async fn schema1_is_unsupported_without_a_get() {
    let (fake, _) = Fake::start(|_, _| {
        Reply::status(200)
            .header("Content-Type", DOCKER_MANIFEST_V1_SIGNED)
            .header("Docker-Content-Digest", sha256_digest(b"x"))
            .header("Content-Length", "1")
    })
    .await;
    let c = client(fast_retry(1), Credentials::Anonymous);
    let err = c.resolve(&fake.image(), "old").await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::Unsupported { media_type, .. } if media_type == DOCKER_MANIFEST_V1_SIGNED),
        "{err}"
    );
    assert_eq!(c.stats().get, 0);
}

/// A registry that wants `Bearer tok-<n>` for the current n; `/token` issues it.
struct TokenFake {
    fake: Fake,
    current: Arc<AtomicUsize>,
}

async fn token_fake(expires_in: u64) -> TokenFake {
    let current = Arc::new(AtomicUsize::new(0));
    let port = Arc::new(AtomicUsize::new(0));
    let (cur, p) = (current.clone(), port.clone());
    let (fake, _) = Fake::start(move |seen, _| {
        if seen.uri.starts_with("/token") {
            let authz = seen
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string());
            // user:pass
            let good = authz.as_deref() == Some("Basic dXNlcjpwYXNz")
                || String::from_utf8_lossy(&seen.body).contains("refresh_token=refresh-1");
            if !good {
                return Reply::status(401).body(r#"{"details":"bad credentials"}"#);
            }
            let n = cur.fetch_add(1, Ordering::SeqCst) + 1;
            let key = if seen.method == "POST" { "access_token" } else { "token" };
            return Reply::status(200).body(format!(
                r#"{{"{key}":"tok-{n}","expires_in":{expires_in}}}"#
            ));
        }
        let want = format!("Bearer tok-{}", cur.load(Ordering::SeqCst));
        let ok = seen
            .headers
            .get("authorization")
            .is_some_and(|v| v.to_str().unwrap() == want);
        if ok {
            Reply::manifest()
        } else {
            let challenge = format!(
                r#"Bearer realm="http://127.0.0.1:{}/token",service="fake registry",scope="repository:team/app:pull,push""#,
                p.load(Ordering::SeqCst)
            );
            Reply::status(401)
                .header("WWW-Authenticate", challenge)
                .body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#)
        }
    })
    .await;
    port.store(fake.port as usize, Ordering::SeqCst);
    TokenFake { fake, current }
}

#[tokio::test]
async fn bearer_tokens_are_cached_expire_and_are_rechallenged() {
    let tf = token_fake(1).await;
    let image = tf.fake.image();
    let c = client(fast_retry(1), Credentials::basic("user", "pass"));
    c.resolve(&image, "v1").await.unwrap();
    c.resolve(&image, "v2").await.unwrap();
    let s = c.stats();
    assert_eq!((s.token, s.unauthorized, s.head), (1, 1, 3), "{s:?}");
    let token_req = tf
        .fake
        .seen()
        .into_iter()
        .find(|s| s.uri.starts_with("/token"))
        .unwrap();
    assert!(
        token_req.uri.contains("service=fake+registry")
            || token_req.uri.contains("service=fake%20registry"),
        "{}",
        token_req.uri
    );
    assert!(
        token_req
            .uri
            .contains("scope=repository%3Ateam%2Fapp%3Apull"),
        "{}",
        token_req.uri
    );
    assert!(token_req.uri.contains("account=user"), "{}", token_req.uri);

    // expired (expires_in 1 s): a new token is fetched before the request, no 401
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.resolve(&image, "v1").await.unwrap();
    let s = c.stats();
    assert_eq!((s.token, s.unauthorized), (2, 1), "{s:?}");

    // revoked: the registry answers 401, we re-challenge and fetch a fresh token
    let tf2 = token_fake(300).await;
    let c = client(fast_retry(1), Credentials::basic("user", "pass"));
    let image = tf2.fake.image();
    c.resolve(&image, "v1").await.unwrap();
    tf2.current.fetch_add(1, Ordering::SeqCst); // invalidates tok-1
    c.resolve(&image, "v1").await.unwrap();
    let s = c.stats();
    assert_eq!((s.token, s.unauthorized, s.head), (2, 2, 4), "{s:?}");
}

#[tokio::test]
async fn identity_token_uses_the_refresh_token_grant() {
    let tf = token_fake(60).await;
    let c = client(
        fast_retry(1),
        Credentials::IdentityToken {
            username: "user".into(),
            token: "refresh-1".to_string().into(),
        },
    );
    c.resolve(&tf.fake.image(), "v1").await.unwrap();
    let post = tf
        .fake
        .seen()
        .into_iter()
        .find(|s| s.method == "POST")
        .expect("POST /token");
    let body = String::from_utf8(post.body).unwrap();
    assert!(body.contains("grant_type=refresh_token"), "{body}");
    assert!(
        body.contains("scope=repository%3Ateam%2Fapp%3Apull"),
        "{body}"
    );
}

#[tokio::test]
async fn bad_credentials_never_give_a_digest() {
    let tf = token_fake(60).await;
    let image = tf.fake.image();
    for creds in [Credentials::basic("user", "wrong"), Credentials::Anonymous] {
        let c = client(fast_retry(3), creds);
        let err = c.resolve(&image, "v1").await.unwrap_err();
        match &err {
            RegistryError::Unauthorized { registry, .. } => {
                assert_eq!(registry, &format!("127.0.0.1:{}", tf.fake.port))
            }
            other => panic!("{other}"),
        }
        assert_eq!(c.stats().retries, 0);
    }
    // a fixed bearer token that the registry refuses
    let c = client(
        fast_retry(3),
        Credentials::Bearer("nope".to_string().into()),
    );
    let err = c.resolve(&image, "v1").await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
}

#[tokio::test]
async fn resolve_many_bounds_concurrency_and_keeps_order() {
    let (fake, max_in_flight) = Fake::start(|_, _| Reply {
        delay: Duration::from_millis(150),
        ..Reply::manifest()
    })
    .await;
    let c = RegistryClient::new(RegistryOptions {
        plain_http: true,
        max_concurrency: 3,
        ..Default::default()
    })
    .unwrap();
    let tags: Vec<String> = (0..9).map(|i| format!("t{i}")).collect();
    let t = Instant::now();
    let out = c.resolve_many(&fake.image(), &tags).await;
    assert!(
        t.elapsed() >= Duration::from_millis(440),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(out.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(), tags);
    assert!(out.iter().all(|(_, r)| r.is_ok()));
    let max = max_in_flight.load(Ordering::SeqCst);
    assert!((1..=3).contains(&max), "{max}");
}

#[test]
fn bad_ca_bundle_is_a_config_error() {
    for pem in [b"not a pem".to_vec(), Vec::new()] {
        let err = RegistryClient::new(RegistryOptions {
            ca_pem: Some(pem),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, RegistryError::Config { .. }), "{err}");
        assert!(err.to_string().contains("CA bundle"), "{err}");
    }
}

#[tokio::test]
async fn concurrent_cold_requests_fetch_one_token() {
    let tf = token_fake(300).await;
    let c = RegistryClient::new(RegistryOptions {
        plain_http: true,
        credentials: Credentials::basic("user", "pass"),
        max_concurrency: 4,
        retry: fast_retry(1),
        insecure_token_realm: true,
        ..Default::default()
    })
    .unwrap();
    let tags: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    let out = c.resolve_many(&tf.fake.image(), &tags).await;
    assert!(out.iter().all(|(_, r)| r.is_ok()), "{out:?}");
    let s = c.stats();
    assert_eq!(s.token, 1, "{s:?}");
    assert!(s.unauthorized <= 4, "{s:?}");
    assert_eq!(s.head, 8 + s.unauthorized, "{s:?}");
}
