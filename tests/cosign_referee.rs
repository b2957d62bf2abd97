//! The cosign format with the real cosign binaries as referees: what `trustkeeper sign --format
//! cosign` pushes verifies with `cosign verify --key PUB --insecure-ignore-tlog` under cosign 3.1
//! and 2.5, for a single-platform image, a Docker manifest list and an OCI index; another key is
//! refused; a signature cosign made is kept when ours is added; concurrent signers (two of ours
//! and cosign) lose nothing.
//!
//! Needs `TRUSTKEEPER_TESTBED` (the registry) and `TRUSTKEEPER_REFEREES` (a directory whose
//! `env` file names COSIGN and COSIGN_2_5, as `referees.sh install DIR` writes it). A tool that
//! is missing fails the test: these tests never skip.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use common::Testbed;
use secrecy::SecretString;
use trustkeeper::formats::cosign::{SIMPLE_SIGNING_MEDIA_TYPE, SignatureManifest, signature_tag};
use trustkeeper::notary::SigningKey;
use trustkeeper::registry::manifest::OCI_MANIFEST_V1;
use trustkeeper::registry::{Credentials, ImageRef, RegistryClient, RegistryOptions};

/// The referee tools, from `$TRUSTKEEPER_REFEREES/env`.
struct Referees {
    tools: HashMap<String, String>,
}

impl Referees {
    fn get() -> &'static Referees {
        static R: OnceLock<Referees> = OnceLock::new();
        R.get_or_init(|| {
            let dir = std::env::var("TRUSTKEEPER_REFEREES").unwrap_or_else(|_| {
                panic!(
                    "TRUSTKEEPER_REFEREES is not set: the referee tests need the real cosign \
                     binaries; install them with referees.sh install DIR and export \
                     TRUSTKEEPER_REFEREES=DIR"
                )
            });
            let env = common::parse_env_file(&Path::new(&dir).join("env"));
            Referees { tools: env }
        })
    }

    /// The tool's path; panics (fails the test) when it is not installed.
    fn tool(&self, name: &str) -> &str {
        let path = self.tools.get(name).unwrap_or_else(|| {
            panic!("TRUSTKEEPER_REFEREES/env names no {name}: reinstall the referees")
        });
        assert!(
            Path::new(path).is_file(),
            "{name}={path} is missing: reinstall the referees (referees.sh install DIR)"
        );
        path
    }
}

/// cosign 3.1 and 2.5, by their env names.
const COSIGNS: [&str; 2] = ["COSIGN", "COSIGN_2_5"];

struct Dir {
    _tmp: tempfile::TempDir,
    path: PathBuf,
}

fn tempdir() -> Dir {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().to_path_buf();
    Dir { _tmp: tmp, path }
}

/// A cosign command with the testbed CA trusted and HOME (its caches) in `home`.
fn cosign(name: &str, home: &Path) -> Command {
    cosign_on(Testbed::get(), name, home)
}

/// [`cosign`] for the registry of testbed `tb` (its CA; registry credentials, if any, in
/// `home/.docker/config.json`).
fn cosign_on(tb: &Testbed, name: &str, home: &Path) -> Command {
    let mut c = Command::new(Referees::get().tool(name));
    c.env("SSL_CERT_FILE", tb.var("CA_CERT"))
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env("COSIGN_PASSWORD", "cosign-test")
        .env_remove("COSIGN_EXPERIMENTAL");
    c
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `cosign verify --key PUB --insecure-ignore-tlog IMAGE@DIGEST` by the named cosign.
fn cosign_verify(name: &str, home: &Path, public: &Path, image: &str, digest: &str) -> Output {
    cosign(name, home)
        .args(["verify", "--insecure-ignore-tlog", "--key"])
        .arg(public)
        .arg(format!("{image}@{digest}"))
        .output()
        .unwrap()
}

/// Asserts that both cosigns accept `public`'s signature of `digest`, and names the digest.
fn assert_verifies(home: &Path, public: &Path, image: &str, digest: &str) {
    for name in COSIGNS {
        let o = cosign_verify(name, home, public, image, digest);
        assert!(
            o.status.success(),
            "{name} refused {image}@{digest} under {}:\n{}",
            public.display(),
            text(&o)
        );
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains(digest), "{name}: {out}");
    }
}

/// `cosign generate-key-pair` into `dir/NAME.key` and `dir/NAME.pub`.
fn cosign_key(home: &Path, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let prefix = dir.join(name);
    let o = cosign("COSIGN", home)
        .args(["generate-key-pair", "--output-key-prefix"])
        .arg(&prefix)
        .output()
        .unwrap();
    assert!(o.status.success(), "generate-key-pair: {}", text(&o));
    (prefix.with_extension("key"), prefix.with_extension("pub"))
}

/// `cosign sign --key` without a transparency log, in the tag-based layout: cosign 3 needs the
/// signing config and the new bundle format off for that, cosign 2.5 only `--tlog-upload=false`.
fn cosign_sign(name: &str, home: &Path, key: &Path, image: &str, digest: &str) -> Output {
    let mut c = cosign(name, home);
    c.args(["sign", "--yes", "--tlog-upload=false", "--key"])
        .arg(key);
    if name == "COSIGN" {
        c.args(["--use-signing-config=false", "--new-bundle-format=false"]);
    }
    c.arg(format!("{image}@{digest}")).output().unwrap()
}

/// A notary-style ECDSA P-256 key for trustkeeper: the encrypted PEM, its passphrase file and
/// the public key PEM cosign reads.
struct OurKey {
    pem: PathBuf,
    pass: PathBuf,
    public: PathBuf,
}

fn our_key(dir: &Path, name: &str) -> OurKey {
    let key = SigningKey::generate_ecdsa("targets/releases", "cosign-test").unwrap();
    let pass = SecretString::from("our-test-passphrase".to_string());
    let pem_path = dir.join(format!("{name}.key.pem"));
    std::fs::write(&pem_path, key.export_pem(&pass).unwrap()).unwrap();
    let pass_path = dir.join(format!("{name}.pass"));
    std::fs::write(&pass_path, "our-test-passphrase").unwrap();
    let public = dir.join(format!("{name}.pub"));
    let spki = key.public().spki_der().unwrap();
    std::fs::write(&public, pem::encode(&pem::Pem::new("PUBLIC KEY", spki))).unwrap();
    OurKey {
        pem: pem_path,
        pass: pass_path,
        public,
    }
}

fn registry_client() -> RegistryClient {
    registry_client_on(Testbed::get(), Credentials::Anonymous)
}

fn registry_client_on(tb: &Testbed, credentials: Credentials) -> RegistryClient {
    trustkeeper::tls::install_crypto_provider();
    RegistryClient::new(RegistryOptions {
        ca_pem: Some(tb.ca_pem()),
        credentials,
        timeout: Duration::from_secs(20),
        ..Default::default()
    })
    .unwrap()
}

/// A repository no other test uses.
fn fresh_repo(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}/test/cosign-{name}-{}-{nanos:x}",
        Testbed::get().var("REGISTRY_HOST"),
        std::process::id()
    )
}

/// Pushes `v1` (Docker schema 2), `multi` (Docker manifest list) and `oci-multi` (OCI index);
/// returns tag → digest.
async fn push_images(repo: &str) -> Vec<(String, String)> {
    common::images::push_images_with(&registry_client(), repo).await
}

/// `trustkeeper sign --format cosign IMAGE:TAG...` with `key`.
fn trustkeeper_sign(home: &Path, key: &OurKey, images: &[String], extra: &[&str]) -> Output {
    trustkeeper_sign_on(Testbed::get(), home, key, images, extra)
}

fn trustkeeper_sign_on(
    tb: &Testbed,
    home: &Path,
    key: &OurKey,
    images: &[String],
    extra: &[&str],
) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trustkeeper"));
    c.arg("sign")
        .args(images)
        .args(["--format", "cosign", "--key"])
        .arg(&key.pem)
        .arg("--passphrase-file")
        .arg(&key.pass)
        .args(["--ca-file", tb.var("CA_CERT")])
        .args(extra)
        .env_remove("TRUSTKEEPER_KEY")
        .env_remove("TRUSTKEEPER_PASSPHRASE");
    common::cli_output(&mut c, home, &[])
}

/// The signature manifest of `digest`, as the registry serves it.
async fn signatures(repo: &str, digest: &str) -> SignatureManifest {
    let image = ImageRef::parse(repo).unwrap();
    let tag = signature_tag(digest);
    let raw = registry_client()
        .get_manifest_raw(&image, &tag)
        .await
        .unwrap();
    assert_eq!(raw.descriptor.media_type, OCI_MANIFEST_V1);
    SignatureManifest::parse(&tag, &raw.bytes).unwrap()
}

#[tokio::test]
async fn what_we_sign_verifies_under_cosign_3_and_2_for_images_lists_and_indexes() {
    let dir = tempdir();
    let repo = fresh_repo("formats");
    let tags = push_images(&repo).await;
    let ours = our_key(&dir.path, "ours");
    let images: Vec<String> = tags.iter().map(|(t, _)| format!("{repo}:{t}")).collect();

    let o = trustkeeper_sign(&dir.path, &ours, &images, &[]);
    assert!(o.status.success(), "trustkeeper sign: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    for (tag, digest) in &tags {
        assert!(
            out.lines()
                .any(|l| l.starts_with("signed") && l.contains(&format!(":{tag} {digest}"))),
            "{tag}: {out}"
        );
        assert_verifies(&dir.path, &ours.public, &repo, digest);
        let m = signatures(&repo, digest).await;
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.layers[0].media_type, SIMPLE_SIGNING_MEDIA_TYPE);
    }

    // another key: both cosigns refuse
    let (_, other_pub) = cosign_key(&dir.path, &dir.path, "other");
    let (tag, digest) = &tags[0];
    for name in COSIGNS {
        let o = cosign_verify(name, &dir.path, &other_pub, &repo, digest);
        assert!(
            !o.status.success(),
            "{name} accepted {tag} under another key: {}",
            text(&o)
        );
    }

    // again: nothing pushed, every tag unchanged, still one signature each
    let o = trustkeeper_sign(&dir.path, &ours, &images, &[]);
    assert!(o.status.success(), "second sign: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        out.lines().filter(|l| l.starts_with("unchanged")).count(),
        tags.len(),
        "{out}"
    );
    for (_, digest) in &tags {
        assert_eq!(signatures(&repo, digest).await.layers.len(), 1);
    }
}

#[tokio::test]
async fn a_signature_cosign_made_is_kept_when_we_add_ours() {
    let dir = tempdir();
    let repo = fresh_repo("keep");
    let tags = push_images(&repo).await;
    let ours = our_key(&dir.path, "ours");
    let (theirs_key, theirs_pub) = cosign_key(&dir.path, &dir.path, "theirs");
    // cosign 3.1 signs the image, cosign 2.5 the manifest list; then we sign both
    let picks = [("COSIGN", &tags[0]), ("COSIGN_2_5", &tags[1])];
    for (name, (_, digest)) in picks {
        let o = cosign_sign(name, &dir.path, &theirs_key, &repo, digest);
        assert!(o.status.success(), "{name} sign: {}", text(&o));
    }
    let images: Vec<String> = picks
        .iter()
        .map(|(_, (t, _))| format!("{repo}:{t}"))
        .collect();
    let o = trustkeeper_sign(&dir.path, &ours, &images, &[]);
    assert!(o.status.success(), "trustkeeper sign: {}", text(&o));
    for (_, (_, digest)) in picks {
        assert_eq!(signatures(&repo, digest).await.layers.len(), 2);
        assert_verifies(&dir.path, &theirs_pub, &repo, digest);
        assert_verifies(&dir.path, &ours.public, &repo, digest);
    }
    // inspect reads both and tells which key each verifies under
    let tb = Testbed::get();
    let mut c = Command::new(env!("CARGO_BIN_EXE_trustkeeper"));
    c.args([
        "inspect",
        &format!("{repo}:v1"),
        "--format",
        "cosign",
        "-o",
        "json",
    ])
    .args(["--ca-file", tb.var("CA_CERT"), "--key"])
    .arg(&ours.public)
    .arg("--key")
    .arg(&theirs_pub);
    let o = common::cli_output(&mut c, &dir.path, &[]);
    assert!(o.status.success(), "inspect: {}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["digest"], tags[0].1.as_str());
    let by: Vec<Vec<String>> = v["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["signs_digest"], true, "{s}");
            serde_json::from_value(s["verified_by"].clone()).unwrap()
        })
        .collect();
    let names = |p: &Path| vec![p.display().to_string()];
    assert_eq!(by, vec![names(&theirs_pub), names(&ours.public)], "{v}");

    // and cosign, signing after us, keeps ours
    let (_, digest) = &tags[2];
    let o = trustkeeper_sign(&dir.path, &ours, &[format!("{repo}:oci-multi")], &[]);
    assert!(o.status.success(), "trustkeeper sign: {}", text(&o));
    let o = cosign_sign("COSIGN", &dir.path, &theirs_key, &repo, digest);
    assert!(o.status.success(), "cosign sign: {}", text(&o));
    assert_verifies(&dir.path, &ours.public, &repo, digest);
    assert_verifies(&dir.path, &theirs_pub, &repo, digest);
}

#[tokio::test]
async fn concurrent_signers_on_one_digest_lose_no_signature() {
    let dir = tempdir();
    let repo = fresh_repo("race");
    let tags = push_images(&repo).await;
    let a = our_key(&dir.path, "a");
    let b = our_key(&dir.path, "b");
    let (theirs_key, theirs_pub) = cosign_key(&dir.path, &dir.path, "theirs");
    // two trustkeeper processes and one cosign start together on one digest
    let (tag, digest) = &tags[1];
    let image = vec![format!("{repo}:{tag}")];
    let (ra, rb, rc) = std::thread::scope(|s| {
        let ta = s.spawn(|| trustkeeper_sign(&dir.path, &a, &image, &[]));
        let tb = s.spawn(|| trustkeeper_sign(&dir.path, &b, &image, &[]));
        let tc = s.spawn(|| cosign_sign("COSIGN_2_5", &dir.path, &theirs_key, &repo, digest));
        (ta.join().unwrap(), tb.join().unwrap(), tc.join().unwrap())
    });
    assert!(ra.status.success(), "a: {}", text(&ra));
    assert!(rb.status.success(), "b: {}", text(&rb));
    assert!(rc.status.success(), "cosign: {}", text(&rc));
    assert_eq!(signatures(&repo, digest).await.layers.len(), 3);
    for public in [&a.public, &b.public, &theirs_pub] {
        assert_verifies(&dir.path, public, &repo, digest);
    }
}

/// The delaying proxy for the first GET of a `.sig` manifest.
async fn delay_proxy(delay: Duration) -> common::delay_proxy::DelayProxy {
    common::delay_proxy::delay_proxy(delay, |l| l.contains(".sig HTTP/1.1")).await
}

/// The signer of an [`OurKey`], in process (no key derivation or process start in the race).
fn load_signer(key: &OurKey) -> SigningKey {
    let pem = std::fs::read(&key.pem).unwrap();
    let pass = SecretString::from(std::fs::read_to_string(&key.pass).unwrap());
    SigningKey::from_pem(&pem, Some(&pass)).unwrap().remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_cosign_overwrites_our_push_we_sign_again() {
    use trustkeeper::formats::cosign_sign::{CosignOptions, sign};
    let dir = tempdir();
    let repo = fresh_repo("overwritten");
    let tags = push_images(&repo).await;
    let (_, digest) = &tags[0];
    let ours = our_key(&dir.path, "ours");
    let signer = load_signer(&ours);
    let (theirs_key, theirs_pub) = cosign_key(&dir.path, &dir.path, "theirs");
    // cosign reads the empty tag through the proxy and gets the answer 700 ms later: we push
    // in between, and cosign then replaces the tag with its own signature alone.
    let proxy = delay_proxy(Duration::from_millis(700)).await;
    let proxied = repo.replacen(Testbed::get().var("REGISTRY_HOST"), &proxy.host, 1);
    let child = cosign("COSIGN_2_5", &dir.path)
        .args(["sign", "--yes", "--tlog-upload=false", "--key"])
        .arg(&theirs_key)
        .arg(format!("{proxied}@{digest}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), proxy.seen.notified())
        .await
        .expect("cosign read the signature tag through the proxy");
    let image = ImageRef::parse(&repo).unwrap();
    let opts = CosignOptions {
        settle: Duration::from_millis(1500),
        ..Default::default()
    };
    let signed = sign(&registry_client(), &image, digest, &signer, &opts)
        .await
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "cosign: {}", text(&out));
    assert!(signed.added);
    let m = signatures(&repo, digest).await;
    assert_eq!(m.layers.len(), 2, "{m:?}");
    assert_verifies(&dir.path, &ours.public, &repo, digest);
    assert_verifies(&dir.path, &theirs_pub, &repo, digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_never_overwrite_a_signature_pushed_after_our_read() {
    use trustkeeper::formats::cosign_sign::{CosignOptions, sign};
    let dir = tempdir();
    let repo = fresh_repo("stale-read");
    let tags = push_images(&repo).await;
    let ours = our_key(&dir.path, "ours");
    let signer = load_signer(&ours);
    let (theirs_key, theirs_pub) = cosign_key(&dir.path, &dir.path, "theirs");
    let other = our_key(&dir.path, "other");
    let other_signer = load_signer(&other);
    // we read through the proxy and get the answer 3 s later; meanwhile cosign 3.1 signs one
    // digest and another trustkeeper the other, directly: our stale read must not win
    for (round, (_, digest)) in tags.iter().take(2).enumerate() {
        let proxy = delay_proxy(Duration::from_secs(3)).await;
        let proxied =
            ImageRef::parse(&repo.replacen(Testbed::get().var("REGISTRY_HOST"), &proxy.host, 1))
                .unwrap();
        let client = RegistryClient::new(RegistryOptions {
            ca_pem: Some(Testbed::get().ca_pem()),
            timeout: Duration::from_secs(20),
            ..Default::default()
        })
        .unwrap();
        let opts = CosignOptions {
            settle: Duration::from_millis(300),
            ..Default::default()
        };
        let (d, s, o) = (digest.clone(), &signer, &opts);
        let ours_task = async move { sign(&client, &proxied, &d, s, o).await };
        let theirs_task = async {
            tokio::time::timeout(Duration::from_secs(30), proxy.seen.notified())
                .await
                .expect("we read the signature tag through the proxy");
            if round == 0 {
                let o = cosign_sign("COSIGN", &dir.path, &theirs_key, &repo, digest);
                assert!(o.status.success(), "cosign: {}", text(&o));
            } else {
                let image = ImageRef::parse(&repo).unwrap();
                sign(&registry_client(), &image, digest, &other_signer, &opts)
                    .await
                    .unwrap();
            }
        };
        let (r, ()) = tokio::join!(ours_task, theirs_task);
        assert!(r.unwrap().added);
        let m = signatures(&repo, digest).await;
        assert_eq!(m.layers.len(), 2, "round {round}: {m:?}");
        let second = if round == 0 {
            &theirs_pub
        } else {
            &other.public
        };
        assert_verifies(&dir.path, &ours.public, &repo, digest);
        assert_verifies(&dir.path, second, &repo, digest);
    }
}

#[tokio::test]
async fn token_registry_signing_with_docker_config_credentials() {
    use base64::Engine as _;
    let tb = Testbed::token();
    let dir = tempdir();
    let (user, pass) = (tb.var("TOKEN_USER"), tb.var("TOKEN_PASSWORD"));
    let host = tb.var("REGISTRY_HOST");
    // one docker config for both: trustkeeper reads it by --docker-config, cosign by DOCKER_CONFIG
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    std::fs::create_dir_all(dir.path.join(".docker")).unwrap();
    let config = dir.path.join(".docker/config.json");
    std::fs::write(
        &config,
        serde_json::json!({"auths": {host: {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let repo = format!("{host}/test/cosign-token-{}-{nanos:x}", std::process::id());
    let c = registry_client_on(tb, Credentials::basic(user, pass));
    let tags = common::images::push_images_with(&c, &repo).await;
    let ours = our_key(&dir.path, "ours");
    let (tag, digest) = &tags[2];
    let o = trustkeeper_sign_on(
        tb,
        &dir.path,
        &ours,
        &[format!("{repo}:{tag}")],
        &["--docker-config", config.to_str().unwrap()],
    );
    assert!(o.status.success(), "trustkeeper sign: {}", text(&o));
    for name in COSIGNS {
        let o = cosign_on(tb, name, &dir.path)
            .args(["verify", "--insecure-ignore-tlog", "--key"])
            .arg(&ours.public)
            .arg(format!("{repo}@{digest}"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{name}: {}", text(&o));
    }
    // without credentials the push is refused, saying that push rights are needed
    let empty = dir.path.join("empty.json");
    std::fs::write(&empty, "{}").unwrap();
    let (tag, _) = &tags[0];
    let o = trustkeeper_sign_on(
        tb,
        &dir.path,
        &ours,
        &[format!("{repo}:{tag}")],
        &["--docker-config", empty.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refused access"), "{err}");
}

/// `inspect --format notary,cosign,notation` on a seeded repository after one `sign` in all
/// three formats and a cosign signature by another key: per tag, notary's digest equals the
/// registry's, our cosign signature verifies under our public key and cosign's does not, and
/// the Notation signature names our certificate; without notary a bare repository is refused.
#[tokio::test]
async fn inspect_shows_every_format_per_tag() {
    let tb = Testbed::get();
    let seed = tb.seed("inspect-formats");
    let dir = tempdir();
    let cert = dir.path.join("signer.crt");
    let mut c = Command::new(env!("CARGO_BIN_EXE_trustkeeper"));
    c.args(["key", "certificate", "--key", seed.var("DELEGATION_KEY")])
        .args(["--passphrase-file", seed.var("DELEGATION_PASSPHRASE_FILE")])
        .args([
            "--subject",
            "CN=inspect,O=trustkeeper tests,ST=WA,C=US",
            "--out",
        ])
        .arg(&cert);
    let o = common::cli_output(&mut c, &dir.path, &[]);
    assert!(o.status.success(), "key certificate: {}", text(&o));
    let tags = ["v1", "multi"];
    let images: Vec<String> = tags.iter().map(|t| format!("{}:{t}", seed.gun)).collect();
    let mut c = Command::new(env!("CARGO_BIN_EXE_trustkeeper"));
    c.arg("sign")
        .args(&images)
        .args(["--format", "notary,cosign,notation", "--certificate"])
        .arg(&cert)
        .args(["--key", seed.var("DELEGATION_KEY")])
        .args(["--passphrase-file", seed.var("DELEGATION_PASSPHRASE_FILE")])
        .args(["--notary-url", tb.var("NOTARY_URL")])
        .args(["--ca-file", tb.var("CA_CERT")])
        .env_remove("TRUSTKEEPER_KEY")
        .env_remove("TRUSTKEEPER_PASSPHRASE");
    let o = common::cli_output(&mut c, &dir.path, &[]);
    assert!(o.status.success(), "sign: {}", text(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    for t in tags {
        for f in ["cosign", "notation"] {
            assert!(
                said.lines().any(|l| l.starts_with("signed")
                    && l.contains(&format!(":{t} "))
                    && l.contains(&format!(" in {f} ("))),
                "no `signed ... {t} ... in {f}` line:\n{said}"
            );
        }
    }
    // cosign itself adds a signature by another key on v1
    let (theirs, _) = cosign_key(&dir.path, &dir.path, "theirs");
    let v1 = seed.digest("v1");
    let o = cosign_sign(
        "COSIGN",
        &dir.path,
        &theirs,
        &seed.gun,
        &format!("sha256:{v1}"),
    );
    assert!(o.status.success(), "cosign sign: {}", text(&o));

    let public = Path::new(tb.var("TESTBED_KEYS_DIR")).join("delegation.pub.pem");
    let inspect = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_trustkeeper"));
        c.arg("inspect")
            .args(args)
            .args(["--notary-url", tb.var("NOTARY_URL")])
            .args(["--ca-file", tb.var("CA_CERT")]);
        common::cli_output(&mut c, &dir.path, &[])
    };
    let key = public.to_str().unwrap();
    let o = inspect(&[
        &seed.gun,
        "--format",
        "notation,notary",
        "--format",
        "cosign",
        "--key",
        key,
        "-o",
        "json",
    ]);
    assert!(o.status.success(), "inspect: {}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["notary"]["gun"], seed.gun.as_str(), "{j}");
    let rows = j["tags"].as_array().unwrap();
    for t in tags {
        let row = rows
            .iter()
            .find(|r| r["tag"] == t)
            .unwrap_or_else(|| panic!("{t}: {j}"));
        let digest = format!("sha256:{}", seed.digest(t));
        assert_eq!(row["digest"], digest.as_str(), "{row}");
        assert_eq!(row["notary_digest"], digest.as_str(), "{row}");
        let sigs = row["cosign"]["signatures"].as_array().unwrap();
        let ours: Vec<_> = sigs.iter().filter(|s| s["verified_by"][0] == key).collect();
        assert_eq!(ours.len(), 1, "{t}: {row}");
        assert_eq!(sigs.len(), if t == "v1" { 2 } else { 1 }, "{t}: {row}");
        assert!(sigs.iter().all(|s| s["signs_digest"] == true), "{row}");
        let n = row["notation"]["signatures"].as_array().unwrap();
        assert_eq!(n.len(), 1, "{t}: {row}");
        assert_eq!(n[0]["valid"], true, "{row}");
        assert!(
            n[0]["certificate_subject"]
                .as_str()
                .unwrap()
                .contains("CN=inspect"),
            "{row}"
        );
    }
    // the tag the seed did not name has no registry signatures, and says so per format
    if let Some(row) = rows.iter().find(|r| r["tag"] == "oci-multi") {
        assert_eq!(
            row["cosign"]["signatures"].as_array().map(Vec::len),
            Some(0),
            "{row}"
        );
        assert_eq!(
            row["notation"]["signatures"].as_array().map(Vec::len),
            Some(0),
            "{row}"
        );
    }
    let o = inspect(&[
        &format!("{}:v1", seed.gun),
        "--format",
        "notary,cosign,notation",
        "--key",
        key,
    ]);
    assert!(o.status.success(), "inspect: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.starts_with("v1 ") && l.contains("signature(s)"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("signed")
            && line.contains("2 signature(s), 1 verify")
            && line.contains("1 valid: CN=inspect"),
        "{line}"
    );
    // cosign and notation without notary need a tag
    let o = inspect(&[&seed.gun, "--format", "cosign,notation"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("IMAGE:TAG"), "{}", text(&o));
}
