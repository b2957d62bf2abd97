//! Hostile registries (and notary servers) on loopback, written for these tests: endless tag
//! pagination, `Link`s to other origins and to plain http, plain-http token realms, https→http
//! redirects, HEADs that lie about digest and size; and `sign --digest --size` checked against
//! the real registry of the testbed. The hostile server records what it received, so a test can
//! assert that no credential reached a host it does not belong to.

mod common;
#[path = "common/hostile_registry.rs"]
mod hostile_registry;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Testbed, ready, timestamp_version};
use hostile_registry::{Hostile, Reply, Seen};
use secrecy::SecretString;
use trustkeeper::api::{SignedImageSpec, reasons};
use trustkeeper::engine::{Engine, Outcome, RunSecrets};
use trustkeeper::notary::{self, NotaryClient, ServerConfig};
use trustkeeper::registry::manifest::{DOCKER_MANIFEST_V2, sha256_digest};
use trustkeeper::registry::{ImageRef, RegistryClient, RegistryOptions, RetryPolicy};

const PASSWORD: &str = "hostile-test-password";

async fn tls(tb: &Testbed, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Hostile {
    let cert = std::fs::read(tb.var("TESTBED_SERVER_CERT")).unwrap();
    let key = std::fs::read(tb.var("TESTBED_SERVER_KEY")).unwrap();
    Hostile::tls(&cert, &key, handler).await
}

fn client(tb: Option<&Testbed>, insecure_token_realm: bool) -> RegistryClient {
    trustkeeper::tls::install_crypto_provider();
    RegistryClient::new(RegistryOptions {
        ca_pem: tb.map(|t| t.ca_pem()),
        ca_only: tb.is_some(),
        plain_http: tb.is_none(),
        credentials: trustkeeper::registry::Credentials::basic("user", PASSWORD),
        retry: RetryPolicy::none(),
        timeout: Duration::from_secs(10),
        insecure_token_realm,
        ..Default::default()
    })
    .unwrap()
}

fn image(h: &Hostile) -> ImageRef {
    ImageRef::parse(&format!("{}/team/app", h.host)).unwrap()
}

fn tags_page(tags: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"name": "team/app", "tags": tags})).unwrap()
}

fn no_credentials_in(seen: &[Seen]) {
    for s in seen {
        assert!(
            s.authorization().is_none(),
            "{} {} carried Authorization",
            s.method,
            s.uri
        );
        assert!(!s.uri.contains(PASSWORD), "{}", s.uri);
    }
}

/// Peak resident memory of this test process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// A registry whose tag list never ends: every page links to the next one.
fn endless(tags_per_page: usize, pad: usize) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    let pad = "x".repeat(pad);
    move |s: &Seen| {
        let page: usize = s
            .uri
            .split("last=p")
            .nth(1)
            .and_then(|v| v.split('-').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
            + 1;
        let tags: Vec<String> = (0..tags_per_page)
            .map(|i| format!("p{page}-{i:07}{pad}"))
            .collect();
        Reply::status(200)
            .header("Content-Type", "application/json")
            .header(
                "Link",
                format!("</v2/team/app/tags/list?last=p{page}-x&n={tags_per_page}>; rel=\"next\""),
            )
            .body(tags_page(&tags))
    }
}

#[tokio::test]
async fn endless_tag_pagination_ends_the_run_in_time_with_a_clear_reason() {
    let tb = Testbed::get();
    let h = tls(tb, endless(20, 0)).await;
    let gun = format!("{}/team/app", h.host);
    let yaml = format!(
        "image: {gun}\ntags: [\"v1.*\"]\nsigningKey: {{secretRef: {{name: k}}}}\nnotary: {{url: {:?}}}\n",
        tb.var("NOTARY_URL")
    );
    let spec: SignedImageSpec = serde_saphyr::from_str(&yaml).unwrap();
    let started = Instant::now();
    let o = run(&spec, creds(tb), None).await;
    let took = started.elapsed();
    let (status, reason, message) = ready(&o);
    assert_eq!(status, "False");
    assert_eq!(reason, reasons::REGISTRY_REFUSED, "{message}");
    assert!(message.contains("more than 1000 pages"), "{message}");
    assert!(message.contains("exact tag names"), "{message}");
    assert_eq!(h.seen().len(), 1000, "pages requested");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert_eq!(o.publishes, 0);
    eprintln!("endless pagination (20 tags a page): 1000 pages, {took:?}");
}

#[tokio::test]
async fn endless_large_pages_are_bounded_in_bytes_and_memory() {
    // ~2.5 MB a page: before the bound every page was kept (5.9 GB after 928 pages).
    let h = Hostile::plain(endless(20_000, 110)).await;
    let c = client(None, false);
    let started = Instant::now();
    let err = c
        .select_tags(
            &image(&h),
            &trustkeeper::registry::TagSelector::new(&["v1.*"]).unwrap(),
        )
        .await
        .unwrap_err()
        .to_string();
    let took = started.elapsed();
    assert!(err.contains("more than 64 MiB"), "{err}");
    let pages = h.seen().len();
    assert!(pages <= 30, "{pages} pages");
    let peak = peak_rss();
    assert!(peak < 512 << 20, "peak RSS {peak} bytes");
    eprintln!(
        "endless large pages: {pages} pages, {took:?}, peak RSS {} MiB",
        peak >> 20
    );
}

#[tokio::test]
async fn only_matching_tags_are_kept_while_paging() {
    let h = Hostile::plain(|s: &Seen| {
        let (tags, link): (Vec<&str>, Option<&str>) = if s.uri.contains("last=b") {
            (vec!["v1.2", "c"], None)
        } else {
            (
                vec!["a", "v1.1", "b"],
                Some("</v2/team/app/tags/list?last=b>; rel=\"next\""),
            )
        };
        let tags: Vec<String> = tags.into_iter().map(String::from).collect();
        let mut r = Reply::status(200).body(tags_page(&tags));
        if let Some(l) = link {
            r = r.header("Link", l);
        }
        r
    })
    .await;
    let sel = trustkeeper::registry::TagSelector::new(&["v1.*", "c"]).unwrap();
    let got = client(None, false)
        .select_tags(&image(&h), &sel)
        .await
        .unwrap();
    assert_eq!(got.tags, ["c", "v1.1", "v1.2"]);
    assert!(got.unmatched.is_empty());
}

/// The registry wants Basic credentials; its first page links to another origin.
fn asks_basic_then_links_to(next: String) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    move |s: &Seen| {
        if s.authorization().is_none() {
            return Reply::status(401).header("WWW-Authenticate", "Basic realm=\"registry\"");
        }
        Reply::status(200)
            .header("Link", format!("<{next}>; rel=\"next\""))
            .body(tags_page(&["v1.0".to_string()]))
    }
}

#[tokio::test]
async fn a_link_to_another_origin_gets_no_credentials() {
    let other =
        Hostile::plain(|_s: &Seen| Reply::status(200).body(tags_page(&["v1.1".into()]))).await;
    let h = Hostile::plain(asks_basic_then_links_to(format!(
        "{}/v2/team/app/tags/list?last=v1.0",
        other.url
    )))
    .await;
    let sel = trustkeeper::registry::TagSelector::new(&["v1.*"]).unwrap();
    let got = client(None, false)
        .select_tags(&image(&h), &sel)
        .await
        .unwrap();
    assert_eq!(got.tags, ["v1.0", "v1.1"]);
    // The registry got its credentials, the other origin none.
    assert!(h.seen().iter().any(|s| s.authorization().is_some()));
    let theirs = other.seen();
    assert_eq!(theirs.len(), 1);
    no_credentials_in(&theirs);
}

#[tokio::test]
async fn a_link_off_https_is_refused() {
    let tb = Testbed::get();
    let other =
        Hostile::plain(|_s: &Seen| Reply::status(200).body(tags_page(&["v1.1".into()]))).await;
    let h = tls(
        tb,
        asks_basic_then_links_to(format!("{}/v2/team/app/tags/list?last=v1.0", other.url)),
    )
    .await;
    let sel = trustkeeper::registry::TagSelector::new(&["v1.*"]).unwrap();
    let err = client(Some(tb), false)
        .select_tags(&image(&h), &sel)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("off https"), "{err}");
    assert!(other.seen().is_empty(), "the http origin was asked");
}

/// A TLS registry whose token realm is plain http (`realm`), and the token server behind it.
async fn registry_with_http_realm(tb: &Testbed) -> (Hostile, Hostile) {
    let realm = Hostile::plain(|_s: &Seen| {
        Reply::status(200).body(r#"{"token":"hostile-token","expires_in":300}"#)
    })
    .await;
    let realm_url = format!("{}/token", realm.url);
    let h = tls(tb, move |s: &Seen| {
        if s.authorization() == Some("Bearer hostile-token") {
            return Reply::status(200).body(tags_page(&["v1".into()]));
        }
        Reply::status(401).header(
            "WWW-Authenticate",
            format!("Bearer realm=\"{realm_url}\",service=\"hostile\""),
        )
    })
    .await;
    (h, realm)
}

#[tokio::test]
async fn a_plain_http_token_realm_gets_nothing_unless_allowed() {
    let tb = Testbed::get();
    let (h, realm) = registry_with_http_realm(tb).await;
    let err = client(Some(tb), false)
        .list_tags(&image(&h))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is plain http"), "{err}");
    assert!(err.contains("insecureTokenRealm"), "{err}");
    assert!(realm.seen().is_empty(), "the realm was asked");

    // Opted in for this registry: the token flow runs (credentials go to the realm).
    let tags = client(Some(tb), true).list_tags(&image(&h)).await.unwrap();
    assert_eq!(tags, ["v1"]);
    let asked = realm.seen();
    assert_eq!(asked.len(), 1);
    assert!(
        asked[0]
            .authorization()
            .is_some_and(|a| a.starts_with("Basic "))
    );
}

/// Every request is redirected to the same path on `to` (plain http).
fn redirects_to(to: String) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    move |s: &Seen| Reply::status(307).header("Location", format!("{to}{}", s.uri))
}

#[tokio::test]
async fn an_https_to_http_redirect_is_never_followed() {
    let tb = Testbed::get();
    let plain =
        Hostile::plain(|_s: &Seen| Reply::status(200).body(tags_page(&["v1".into()]))).await;
    let h = tls(tb, redirects_to(plain.url.clone())).await;
    let c = client(Some(tb), false);
    let img = image(&h);
    for err in [
        c.resolve(&img, "v1").await.unwrap_err().to_string(),
        c.list_tags(&img).await.unwrap_err().to_string(),
        c.get_manifest_raw(&img, &sha256_digest(b"x"))
            .await
            .unwrap_err()
            .to_string(),
    ] {
        assert!(
            err.contains("refused a redirect from https to plain http"),
            "{err}"
        );
    }
    // The notary client refuses it too.
    let n = basic_notary(tb, &h.url);
    let err = n
        .get("team/app", "timestamp.json", 1 << 20)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("refused a redirect from https to plain http"),
        "{err}"
    );
    assert!(plain.seen().is_empty(), "the plain-http server was asked");
}

#[tokio::test]
async fn the_notary_token_realm_must_be_https_unless_allowed() {
    let tb = Testbed::get();
    let realm = Hostile::plain(|_s: &Seen| {
        Reply::status(200).body(r#"{"token":"hostile-token","expires_in":300}"#)
    })
    .await;
    let realm_url = format!("{}/token", realm.url);
    let server = tls(tb, move |s: &Seen| {
        if s.authorization() == Some("Bearer hostile-token") {
            return Reply::status(404);
        }
        Reply::status(401).header(
            "WWW-Authenticate",
            format!("Bearer realm=\"{realm_url}\",service=\"hostile\",scope=\"repository:team/app:pull\""),
        )
    })
    .await;
    let notary = |insecure_token_realm: bool| {
        let n = basic_notary(tb, &server.url);
        n.allow_insecure_token_realm(insecure_token_realm);
        n
    };
    let err = notary(false)
        .get("team/app", "timestamp.json", 1 << 20)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not https"), "{err}");
    assert!(err.contains("insecureTokenRealm"), "{err}");
    assert!(realm.seen().is_empty(), "the realm was asked");

    let got = notary(true)
        .get("team/app", "timestamp.json", 1 << 20)
        .await
        .unwrap();
    assert_eq!(got, None, "404 after the token flow");
    let asked = realm.seen();
    assert_eq!(asked.len(), 1);
    assert!(
        asked[0]
            .authorization()
            .is_some_and(|a| a.starts_with("Basic "))
    );
}

/// A notary client for `url` with the testbed's CA only and basic auth `user`/[`PASSWORD`].
fn basic_notary(tb: &Testbed, url: &str) -> NotaryClient {
    NotaryClient::new(ServerConfig {
        ca_pem: Some(tb.ca_pem()),
        ca_only: true,
        auth: notary::Auth::Basic {
            username: "user".into(),
            password: SecretString::from(PASSWORD),
        },
        ..ServerConfig::new(url)
    })
    .unwrap()
}

fn creds(tb: &Testbed) -> RunSecrets {
    let keys = std::path::Path::new(tb.var("TESTBED_KEYS_DIR"));
    common::key_file_creds(
        tb,
        keys.join("delegation.key.pem"),
        keys.join("delegation.passphrase"),
    )
}

async fn run(
    spec: &SignedImageSpec,
    creds: RunSecrets,
    prev: Option<&trustkeeper::api::SignedImageStatus>,
) -> Outcome {
    let engine = Engine {
        timeout: Duration::from_secs(10),
        ..Engine::default()
    };
    common::run_engine_as(engine, "hostile", spec, creds, prev).await
}

/// A manifest no role holds: unique bytes.
fn fresh_manifest() -> Vec<u8> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_V2}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,"digest":"sha256:{nanos:064}"}},"layers":[]}}"#
    )
    .into_bytes()
}

/// What a lying registry claims in its HEAD for a tag, and serves for GETs by digest.
#[derive(Clone)]
struct Lie {
    head_digest: String,
    head_size: u64,
    body: Vec<u8>,
    /// Whether a GET by the HEAD's digest finds anything.
    served: bool,
}

fn lying(lies: std::collections::HashMap<String, Lie>) -> impl Fn(&Seen) -> Reply + Send + Sync {
    move |s: &Seen| {
        let Some((_, reference)) = s.path().rsplit_once("/manifests/") else {
            return Reply::status(404);
        };
        let lie = lies
            .get(reference)
            .or_else(|| (lies.values()).find(|l| l.served && l.head_digest == reference));
        let Some(lie) = lie else {
            return Reply::status(404);
        };
        if s.method == "HEAD" {
            return Reply::status(200)
                .header("Content-Type", DOCKER_MANIFEST_V2)
                .header("Docker-Content-Digest", lie.head_digest.clone())
                .header("Content-Length", lie.head_size.to_string());
        }
        Reply::status(200)
            .header("Content-Type", DOCKER_MANIFEST_V2)
            .header("Docker-Content-Digest", lie.head_digest.clone())
            .body(lie.body.clone())
    }
}

#[tokio::test]
async fn a_lying_head_is_refused_before_anything_is_published() {
    let tb = Testbed::get();
    let m = fresh_manifest();
    let honest = sha256_digest(&m);
    let zeros = format!("sha256:{}", "0".repeat(64));
    let lies: std::collections::HashMap<String, Lie> = [
        // digest of nothing it serves
        (
            "zero",
            Lie {
                head_digest: zeros.clone(),
                head_size: m.len() as u64,
                body: m.clone(),
                served: true,
            },
        ),
        // a digest it does not serve
        (
            "ghost",
            Lie {
                head_digest: format!("sha256:{}", "1".repeat(64)),
                head_size: m.len() as u64,
                body: m.clone(),
                served: false,
            },
        ),
        // a petabyte
        (
            "huge",
            Lie {
                head_digest: honest.clone(),
                head_size: 1 << 50,
                body: m.clone(),
                served: true,
            },
        ),
        // the right digest, a wrong size
        (
            "short",
            Lie {
                head_digest: honest.clone(),
                head_size: m.len() as u64 + 7,
                body: m.clone(),
                served: true,
            },
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let h = tls(tb, lying(lies)).await;
    let seed = tb.seed_gun(&format!(
        "{}/test/lying-head-{}",
        h.host,
        std::process::id()
    ));
    let before = timestamp_version(tb, &seed.gun).await;
    for (tag, want) in [
        ("zero", "digest mismatch"),
        ("ghost", "is not served"),
        ("huge", "over the 4 MiB"),
        ("short", "was announced as"),
    ] {
        let yaml = format!(
            "image: {}\ntags: [{tag}]\nsigningKey: {{secretRef: {{name: k}}}}\nnotary: {{url: {:?}}}\n",
            seed.gun,
            tb.var("NOTARY_URL")
        );
        let spec: SignedImageSpec = serde_saphyr::from_str(&yaml).unwrap();
        let o = run(&spec, creds(tb), None).await;
        let (status, _, message) = ready(&o);
        assert_eq!(status, "False", "{tag}: {message}");
        assert!(message.contains(want), "{tag}: {message}");
        assert_eq!(o.publishes, 0, "{tag}");
        assert_eq!(
            timestamp_version(tb, &seed.gun).await,
            before,
            "{tag}: published"
        );
    }
}

#[tokio::test]
async fn a_new_digest_is_fetched_once_then_heads_only() {
    let tb = Testbed::get();
    let m = fresh_manifest();
    let d = sha256_digest(&m);
    let lies = [(
        "fresh".to_string(),
        Lie {
            head_digest: d.clone(),
            head_size: m.len() as u64,
            body: m.clone(),
            served: true,
        },
    )]
    .into_iter()
    .collect();
    let h = tls(tb, lying(lies)).await;
    let seed = tb.seed_gun(&format!(
        "{}/test/fresh-head-{}",
        h.host,
        std::process::id()
    ));
    let yaml = format!(
        "image: {}\ntags: [fresh]\nroles: [targets/releases]\nsigningKey: {{secretRef: {{name: k}}}}\nnotary: {{url: {:?}}}\n",
        seed.gun,
        tb.var("NOTARY_URL")
    );
    let spec: SignedImageSpec = serde_saphyr::from_str(&yaml).unwrap();
    let o = run(&spec, creds(tb), None).await;
    assert_eq!(ready(&o).0, "True", "{:?}", ready(&o));
    assert_eq!(o.signed, ["fresh"]);
    assert_eq!(o.requests.registry.head, 1);
    assert_eq!(o.requests.registry.get, 1, "the new digest is fetched once");
    let listed = tb.notary_list(&seed.gun, Some("targets/releases"));
    assert_eq!(listed["fresh"].sha256, d.trim_start_matches("sha256:"));
    assert_eq!(listed["fresh"].size, m.len() as u64);

    let again = run(&spec, creds(tb), Some(&o.status)).await;
    assert_eq!(ready(&again).0, "True");
    assert_eq!(again.publishes, 0);
    assert_eq!(again.requests.registry.head, 1);
    assert_eq!(again.requests.registry.get, 0, "steady state: HEAD only");
}

#[test]
fn sign_by_digest_is_checked_against_the_registry() {
    let tb = Testbed::get();
    let seed = tb.seed("digest-check");
    let list: serde_json::Value = serde_json::from_slice(&seed.manifest("multi")).unwrap();
    let platform = &list["manifests"][0];
    let platform_digest = platform["digest"].as_str().unwrap().to_string();
    let platform_size = platform["size"].as_u64().unwrap().to_string();
    let trust_dir = tempfile::tempdir().unwrap();
    let pass = std::fs::read_to_string(seed.var("DELEGATION_PASSPHRASE_FILE")).unwrap();
    let sign = |extra: &[&str]| {
        let image = format!("{}:multi", seed.gun);
        let mut args = vec![
            "sign",
            image.as_str(),
            "--key",
            seed.var("DELEGATION_KEY"),
            "--role",
            "targets/releases",
            "--digest",
            &platform_digest,
            "--size",
            &platform_size,
        ];
        args.extend_from_slice(extra);
        let o = Command::new(env!("CARGO_BIN_EXE_trustkeeper"))
            .args(&args)
            .env("TRUSTKEEPER_TRUST_DIR", trust_dir.path())
            .env("TRUSTKEEPER_CA_FILE", tb.var("CA_CERT"))
            .env("TRUSTKEEPER_NOTARY_URL", tb.var("NOTARY_URL"))
            .env("TRUSTKEEPER_PASSPHRASE", pass.trim())
            .env_remove("TRUSTKEEPER_DOCKER_CONFIG")
            .env_remove("NOTARY_AUTH")
            .env("HOME", trust_dir.path())
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let before = tb.notary_list(&seed.gun, Some("targets/releases"));
    let (code, out, err) = sign(&[]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(err.contains("manifest list/index"), "{err}");
    assert!(err.contains("one platform's manifest inside it"), "{err}");
    assert!(err.contains(seed.var("TAG_MULTI_DIGEST")), "{err}");
    assert_eq!(
        tb.notary_list(&seed.gun, Some("targets/releases"))
            .get("multi")
            .map(|r| r.sha256.clone()),
        before.get("multi").map(|r| r.sha256.clone()),
        "nothing published"
    );

    // A size that is not the manifest's.
    let (code, _, err) = {
        let wrong = (platform_size.parse::<u64>().unwrap() + 1).to_string();
        let image = format!("{}:multi", seed.gun);
        let o = Command::new(env!("CARGO_BIN_EXE_trustkeeper"))
            .args([
                "sign",
                &image,
                "--key",
                seed.var("DELEGATION_KEY"),
                "--digest",
                &platform_digest,
                "--size",
                &wrong,
            ])
            .env("TRUSTKEEPER_TRUST_DIR", trust_dir.path())
            .env("TRUSTKEEPER_CA_FILE", tb.var("CA_CERT"))
            .env("TRUSTKEEPER_NOTARY_URL", tb.var("NOTARY_URL"))
            .env("TRUSTKEEPER_PASSPHRASE", pass.trim())
            .env("HOME", trust_dir.path())
            .output()
            .unwrap();
        (
            o.status.code(),
            (),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("bytes in the registry"), "{err}");

    // The skip flag signs as addhash would.
    let (code, out, err) = sign(&["--no-registry-check"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let listed = tb.notary_list(&seed.gun, Some("targets/releases"));
    assert_eq!(
        listed["multi"].sha256,
        platform_digest.trim_start_matches("sha256:")
    );
    assert_eq!(listed["multi"].size.to_string(), platform_size);
}

#[tokio::test]
async fn spec_insecure_token_realm_opts_in_for_that_registry_only() {
    let tb = Testbed::get();
    let m = fresh_manifest();
    let (h, realm) = {
        let realm = Hostile::plain(|_s: &Seen| {
            Reply::status(200).body(r#"{"token":"hostile-token","expires_in":300}"#)
        })
        .await;
        let realm_url = format!("{}/token", realm.url);
        let m = m.clone();
        let h = tls(tb, move |s: &Seen| {
            if s.authorization() != Some("Bearer hostile-token") {
                return Reply::status(401).header(
                    "WWW-Authenticate",
                    format!("Bearer realm=\"{realm_url}\",service=\"hostile\""),
                );
            }
            Reply::status(200)
                .header("Content-Type", DOCKER_MANIFEST_V2)
                .header("Docker-Content-Digest", sha256_digest(&m))
                .header("Content-Length", m.len().to_string())
                .body(if s.method == "HEAD" {
                    vec![]
                } else {
                    m.clone()
                })
        })
        .await;
        (h, realm)
    };
    let spec = |opt_in: bool| -> SignedImageSpec {
        let yaml = format!(
            "image: {}/team/unseeded\ntags: [v1]\nsigningKey: {{secretRef: {{name: k}}}}\nregistry: {{insecureTokenRealm: {opt_in}}}\nnotary: {{url: {:?}}}\n",
            h.host,
            tb.var("NOTARY_URL")
        );
        serde_saphyr::from_str(&yaml).unwrap()
    };
    let o = run(&spec(false), creds(tb), None).await;
    let (_, reason, message) = ready(&o);
    assert_eq!(reason, reasons::REGISTRY_REFUSED, "{message}");
    assert!(message.contains("is plain http"), "{message}");
    assert!(realm.seen().is_empty(), "the realm was asked");

    // Opted in: the registry part succeeds (the run then stops at the notary server, which
    // has no trust data for this repository).
    let o = run(&spec(true), creds(tb), None).await;
    let (_, reason, message) = ready(&o);
    assert_ne!(reason, reasons::REGISTRY_REFUSED, "{message}");
    assert_eq!(realm.seen().len(), 1);
}

#[tokio::test]
async fn a_redirect_to_another_host_carries_no_credentials() {
    let tb = Testbed::get();
    let m = fresh_manifest();
    let served = m.clone();
    let other = tls(tb, move |_s: &Seen| {
        Reply::status(200)
            .header("Content-Type", DOCKER_MANIFEST_V2)
            .header("Docker-Content-Digest", sha256_digest(&served))
            .header("Content-Length", served.len().to_string())
    })
    .await;
    let to = other.url.clone();
    let h = tls(tb, move |s: &Seen| {
        if s.authorization().is_none() {
            return Reply::status(401).header("WWW-Authenticate", "Basic realm=\"registry\"");
        }
        Reply::status(307).header("Location", format!("{to}{}", s.uri))
    })
    .await;
    let d = client(Some(tb), false)
        .resolve(&image(&h), "v1")
        .await
        .unwrap();
    assert_eq!(d.digest, sha256_digest(&m));
    assert!(h.seen().iter().any(|s| s.authorization().is_some()));
    let theirs = other.seen();
    assert_eq!(theirs.len(), 1);
    no_credentials_in(&theirs);
}

/// The notary client answers challenges with the shared RFC 7235 parser: an escaped quote in a
/// parameter no longer cuts off the service and scope after it (the old notary parser did, so
/// the token came without scope and was refused). And an empty token is refused at the realm,
/// never sent as `Bearer `.
#[tokio::test]
async fn notary_challenges_with_escapes_get_their_scope_and_empty_tokens_are_refused() {
    let tb = Testbed::get();
    let realm = tls(tb, |s: &Seen| {
        let scoped = s.uri.contains("scope=repository%3Ateam%2Fapp%3Apull")
            && s.uri.contains("service=hostile");
        if s.path() == "/token" && scoped {
            return Reply::status(200).body(r#"{"token":"good-token","expires_in":300}"#);
        }
        Reply::status(200).body(r#"{"token":""}"#)
    })
    .await;
    let server_for = |path: &'static str| {
        let realm_url = format!("{}{path}", realm.url);
        tls(tb, move |s: &Seen| {
            if s.authorization() == Some("Bearer good-token") {
                return Reply::status(404);
            }
            Reply::status(401).header(
                "WWW-Authenticate",
                format!(
                    r#"Bearer realm="{realm_url}",error="a \"quoted\" word",service="hostile",scope="repository:team/app:pull""#
                ),
            )
        })
    };
    let notary = |url: &str| basic_notary(tb, url);

    let server = server_for("/token").await;
    let got = notary(&server.url)
        .get("team/app", "timestamp.json", 1 << 20)
        .await
        .unwrap();
    assert_eq!(got, None, "404 after the token flow with its scope");
    assert_eq!(server.seen().len(), 2, "the challenge, then the retry");

    let empty = server_for("/empty").await;
    let err = notary(&empty.url)
        .get("team/app", "timestamp.json", 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, notary::Error::Server { .. }), "{err:?}");
    assert!(err.to_string().contains("without token"), "{err}");
    let seen = empty.seen();
    assert_eq!(seen.len(), 1, "nothing sent after an empty token: {seen:?}");
}
