//! The Notation format with the real `notation` (1.3) as referee: what `trustkeeper sign
//! --format notation` pushes (to registry:2, which has no referrers API: the `sha256-<hex>`
//! tag index) verifies with `notation verify` under a trust store holding our certificate
//! (made by `trustkeeper key certificate`), for a single-platform image, a Docker manifest list
//! and an OCI index; another certificate or identity is refused; a signature notation made is
//! kept when ours is added and `inspect` reads both; concurrent writers (two of ours, notation,
//! with a delaying proxy making the races certain) lose no entry; a forged signature listed
//! under our certificate is not taken for ours.
//!
//! Needs `TRUSTKEEPER_TESTBED` (the registry) and `TRUSTKEEPER_REFEREES` (a directory whose
//! `env` file names NOTATION, as `referees.sh install DIR` writes it). A tool that is missing
//! fails the test: these tests never skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::Testbed;
use secrecy::SecretString;
use trustkeeper::formats::notation::{ARTIFACT_TYPE, ReferrersIndex, referrers_tag};
use trustkeeper::notary::SigningKey;
use trustkeeper::registry::manifest::{
    DOCKER_MANIFEST_LIST_V2, OCI_INDEX_V1, OCI_MANIFEST_V1, sha256_digest,
};
use trustkeeper::registry::{Credentials, ImageRef, RegistryClient, RegistryOptions};

/// `$NOTATION` from `$TRUSTKEEPER_REFEREES/env`; panics (fails the test) when missing.
fn notation_bin() -> String {
    let dir = std::env::var("TRUSTKEEPER_REFEREES").unwrap_or_else(|_| {
        panic!(
            "TRUSTKEEPER_REFEREES is not set: the referee tests need the real notation binary; \
             install it with referees.sh install DIR and export TRUSTKEEPER_REFEREES=DIR"
        )
    });
    let env = common::parse_env_file(&Path::new(&dir).join("env"));
    let path = env
        .get("NOTATION")
        .unwrap_or_else(|| panic!("TRUSTKEEPER_REFEREES/env names no NOTATION: reinstall"))
        .clone();
    assert!(
        Path::new(&path).is_file(),
        "NOTATION={path} is missing: reinstall the referees (referees.sh install DIR)"
    );
    path
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A private notation configuration (XDG_CONFIG_HOME): a `ca` trust store `name` holding
/// `certs`, and a strict trust policy for every registry scope that trusts that store.
fn notation_home(dir: &Path, name: &str, certs: &[&Path]) -> PathBuf {
    notation_home_for(dir, name, certs, "*", "*")
}

/// [`notation_home`] with the policy's registry scope and trusted identity given.
fn notation_home_for(
    dir: &Path,
    name: &str,
    certs: &[&Path],
    scope: &str,
    identity: &str,
) -> PathBuf {
    let home = dir.join(format!("notation-{name}"));
    let store = home.join("notation/truststore/x509/ca").join(name);
    std::fs::create_dir_all(&store).unwrap();
    for (i, c) in certs.iter().enumerate() {
        std::fs::copy(c, store.join(format!("cert{i}.pem"))).unwrap();
    }
    let policy = serde_json::json!({
        "version": "1.0",
        "trustPolicies": [{
            "name": "trustkeeper-test",
            "registryScopes": [scope],
            "signatureVerification": {"level": "strict"},
            "trustStores": [format!("ca:{name}")],
            "trustedIdentities": [identity],
        }],
    });
    std::fs::write(
        home.join("notation/trustpolicy.json"),
        serde_json::to_vec_pretty(&policy).unwrap(),
    )
    .unwrap();
    home
}

fn notation(home: &Path) -> Command {
    let mut c = Command::new(notation_bin());
    c.env("XDG_CONFIG_HOME", home)
        .env("HOME", home)
        .env("SSL_CERT_FILE", Testbed::get().var("CA_CERT"))
        .env_remove("NOTATION_USERNAME")
        .env_remove("NOTATION_PASSWORD");
    c
}

fn notation_verify(home: &Path, image: &str, digest: &str) -> Output {
    notation(home)
        .args(["verify", &format!("{image}@{digest}")])
        .output()
        .unwrap()
}

fn assert_verifies(home: &Path, image: &str, digest: &str) {
    let o = notation_verify(home, image, digest);
    assert!(
        o.status.success(),
        "notation refused {image}@{digest} under {}:\n{}",
        home.display(),
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(digest),
        "{}",
        text(&o)
    );
}

/// A notary-style ECDSA P-256 key (encrypted PEM, passphrase file) and the certificate
/// `trustkeeper key certificate` makes for it.
struct OurKey {
    pem: PathBuf,
    pass: PathBuf,
    cert: PathBuf,
}

fn our_key(dir: &Path, name: &str) -> OurKey {
    let key = SigningKey::generate_ecdsa("targets/releases", "notation-test").unwrap();
    let pass = SecretString::from("our-test-passphrase".to_string());
    let pem_path = dir.join(format!("{name}.key.pem"));
    std::fs::write(&pem_path, key.export_pem(&pass).unwrap()).unwrap();
    let pass_path = dir.join(format!("{name}.pass"));
    std::fs::write(&pass_path, "our-test-passphrase").unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let mut c = Command::new(env!("CARGO_BIN_EXE_trustkeeper"));
    c.args(["key", "certificate", "--key"])
        .arg(&pem_path)
        .arg("--passphrase-file")
        .arg(&pass_path)
        .args([
            "--subject",
            &format!("CN={name},O=trustkeeper tests,ST=WA,C=US"),
        ])
        .args(["--days", "30", "--out"])
        .arg(&cert);
    let o = common::cli_output(&mut c, dir, &[]);
    assert!(o.status.success(), "key certificate: {}", text(&o));
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !out.contains("PRIVATE") && !out.contains("our-test-passphrase"),
        "{out}"
    );
    OurKey {
        pem: pem_path,
        pass: pass_path,
        cert,
    }
}

fn registry_client() -> RegistryClient {
    trustkeeper::tls::install_crypto_provider();
    RegistryClient::new(RegistryOptions {
        ca_pem: Some(Testbed::get().ca_pem()),
        credentials: Credentials::Anonymous,
        timeout: Duration::from_secs(20),
        ..Default::default()
    })
    .unwrap()
}

fn fresh_repo(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}/test/notation-{name}-{}-{nanos:x}",
        Testbed::get().var("REGISTRY_HOST"),
        std::process::id()
    )
}

/// Pushes `v1` (Docker schema 2), `multi` (Docker manifest list) and `oci-multi` (OCI index);
/// returns tag → digest.
async fn push_images(repo: &str) -> Vec<(String, String)> {
    common::images::push_images_with(&registry_client(), repo).await
}

fn trustkeeper_sign(home: &Path, key: &OurKey, images: &[String], extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trustkeeper"));
    c.arg("sign")
        .args(images)
        .args(["--format", "notation", "--key"])
        .arg(&key.pem)
        .arg("--certificate")
        .arg(&key.cert)
        .arg("--passphrase-file")
        .arg(&key.pass)
        .args(["--ca-file", Testbed::get().var("CA_CERT")])
        .args(extra)
        .env_remove("TRUSTKEEPER_KEY")
        .env_remove("TRUSTKEEPER_PASSPHRASE")
        .env_remove("TRUSTKEEPER_ROOT_KEY_ID")
        .env_remove("RUST_LOG")
        .env_remove("TRUSTKEEPER_LOG")
        .env("HOME", home);
    c
}

/// The referrers tag index of `digest` (registry:2 has no referrers API).
async fn referrers(repo: &str, digest: &str) -> ReferrersIndex {
    let image = ImageRef::parse(repo).unwrap();
    let c = registry_client();
    assert_eq!(
        c.get_referrers(&image, digest).await.unwrap(),
        None,
        "the testbed registry grew a referrers API: these tests check the tag schema"
    );
    let raw = c
        .get_manifest_raw(&image, &referrers_tag(digest))
        .await
        .unwrap();
    assert_eq!(raw.descriptor.media_type, OCI_INDEX_V1);
    ReferrersIndex::parse(&raw.bytes).unwrap()
}

fn notation_signatures(index: &ReferrersIndex) -> usize {
    index
        .entries
        .iter()
        .filter(|e| e.artifact_type.as_deref() == Some(ARTIFACT_TYPE))
        .count()
}

#[tokio::test]
async fn what_we_sign_verifies_under_notation_for_images_lists_and_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let repo = fresh_repo("formats");
    let tags = push_images(&repo).await;
    let ours = our_key(dir, "ours");
    let images: Vec<String> = tags.iter().map(|(t, _)| format!("{repo}:{t}")).collect();

    let started = std::time::Instant::now();
    let o = trustkeeper_sign(dir, &ours, &images, &[]).output().unwrap();
    let first = started.elapsed();
    assert!(o.status.success(), "trustkeeper sign: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    // the README's policy: this repository's scope, the certificate's subject as identity
    let home = notation_home_for(
        dir,
        "ours",
        &[&ours.cert],
        &repo,
        "x509.subject: CN=ours,O=trustkeeper tests,ST=WA,C=US",
    );
    for (tag, digest) in &tags {
        assert!(
            out.lines()
                .any(|l| l.starts_with("signed") && l.contains(&format!(":{tag} {digest}"))),
            "{tag}: {out}"
        );
        assert_verifies(&home, &repo, digest);
        assert_eq!(notation_signatures(&referrers(&repo, digest).await), 1);
    }

    // another subject trusted: refused
    let o = notation_verify(
        &notation_home_for(
            dir,
            "ours",
            &[&ours.cert],
            &repo,
            "x509.subject: CN=someone else,O=trustkeeper tests,ST=WA,C=US",
        ),
        &repo,
        &tags[0].1,
    );
    assert!(!o.status.success(), "another identity: {}", text(&o));
    // another certificate (another key) in the trust store: refused
    let other = our_key(dir, "other");
    let wrong = notation_home(dir, "other", &[&other.cert]);
    for (tag, digest) in &tags {
        let o = notation_verify(&wrong, &repo, digest);
        assert!(
            !o.status.success(),
            "notation accepted {tag} under another certificate: {}",
            text(&o)
        );
    }

    // again: nothing pushed, every tag unchanged, still one signature each
    let started = std::time::Instant::now();
    let o = trustkeeper_sign(dir, &ours, &images, &[]).output().unwrap();
    let second = started.elapsed();
    assert!(o.status.success(), "second sign: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        out.lines().filter(|l| l.starts_with("unchanged")).count(),
        tags.len(),
        "{out}"
    );
    for (_, digest) in &tags {
        assert_eq!(notation_signatures(&referrers(&repo, digest).await), 1);
    }
    eprintln!("3 tags: first sign {first:?}, steady-state re-run {second:?}");
}

#[tokio::test]
async fn notation_without_a_certificate_or_with_another_keys_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let repo = fresh_repo("refused");
    let tags = push_images(&repo).await;
    let ours = our_key(dir, "ours");
    let other = our_key(dir, "other");
    let image = format!("{repo}:{}", tags[0].0);

    let mut c = trustkeeper_sign(dir, &ours, std::slice::from_ref(&image), &[]);
    let args: Vec<_> = c.get_args().map(|a| a.to_owned()).collect();
    // without --certificate
    let mut bare = Command::new(c.get_program());
    let mut skip = false;
    for a in &args {
        if skip {
            skip = false;
            continue;
        }
        if a == "--certificate" {
            skip = true;
            continue;
        }
        bare.arg(a);
    }
    bare.env("HOME", dir)
        .env_remove("TRUSTKEEPER_KEY")
        .env_remove("TRUSTKEEPER_ROOT_KEY_ID");
    let o = bare.output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--certificate") && err.contains("key certificate"),
        "{err}"
    );

    // the other key's certificate: refused before anything is pushed
    let mismatched = OurKey {
        pem: ours.pem.clone(),
        pass: ours.pass.clone(),
        cert: other.cert.clone(),
    };
    let o = trustkeeper_sign(dir, &mismatched, &[image], &[])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("certifies none of the keys"), "{err}");
    let c2 = registry_client();
    let img = ImageRef::parse(&repo).unwrap();
    assert!(
        c2.get_manifest_raw(&img, &referrers_tag(&tags[0].1))
            .await
            .is_err(),
        "a referrers index was pushed for a refused run"
    );
    drop(c.output());
}

#[tokio::test]
async fn a_signature_notation_made_is_kept_when_we_add_ours() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let repo = fresh_repo("keep");
    let tags = push_images(&repo).await;
    let ours = our_key(dir, "ours");
    // notation's own test key and certificate, in its own configuration
    let theirs = dir.join("notation-gen");
    std::fs::create_dir_all(&theirs).unwrap();
    let o = notation(&theirs)
        .args(["cert", "generate-test", "--default", "theirs"])
        .output()
        .unwrap();
    assert!(o.status.success(), "generate-test: {}", text(&o));
    let their_cert = theirs.join("notation/localkeys/theirs.crt");
    assert!(their_cert.is_file(), "{}", text(&o));
    let their_home = notation_home(dir, "theirs", &[&their_cert]);
    // notation signs with the key generate-test made (its config dir), verifies in its own
    std::fs::copy(
        theirs.join("notation/signingkeys.json"),
        their_home.join("notation/signingkeys.json"),
    )
    .unwrap();
    std::fs::create_dir_all(their_home.join("notation/localkeys")).unwrap();
    for f in ["theirs.key", "theirs.crt"] {
        std::fs::copy(
            theirs.join("notation/localkeys").join(f),
            their_home.join("notation/localkeys").join(f),
        )
        .unwrap();
    }
    let (tag, digest) = &tags[1];
    let o = notation(&theirs)
        .args(["sign", &format!("{repo}@{digest}")])
        .output()
        .unwrap();
    assert!(o.status.success(), "notation sign: {}", text(&o));
    assert_eq!(notation_signatures(&referrers(&repo, digest).await), 1);

    let o = trustkeeper_sign(dir, &ours, &[format!("{repo}:{tag}")], &[])
        .output()
        .unwrap();
    assert!(o.status.success(), "trustkeeper sign: {}", text(&o));
    let index = referrers(&repo, digest).await;
    assert_eq!(notation_signatures(&index), 2, "{index:?}");
    // each trust store accepts its own signer's signature: both are there and valid
    let home = notation_home(dir, "ours", &[&ours.cert]);
    assert_verifies(&home, &repo, digest);
    assert_verifies(&their_home, &repo, digest);

    // inspect reads both: valid, with each certificate's thumbprint and subject
    let mut c = Command::new(env!("CARGO_BIN_EXE_trustkeeper"));
    c.args([
        "inspect",
        &format!("{repo}:{tag}"),
        "--format",
        "notation",
        "-o",
        "json",
    ])
    .args(["--ca-file", Testbed::get().var("CA_CERT")]);
    let o = common::cli_output(&mut c, dir, &[]);
    assert!(o.status.success(), "inspect: {}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["digest"], digest.as_str());
    assert_eq!(v["referrers"], "tag");
    let thumb = |p: &Path| {
        let der = pem::parse(std::fs::read(p).unwrap()).unwrap();
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(der.contents()))
    };
    let mut seen: Vec<(String, String)> = v["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["valid"], true, "{s}");
            assert!(s["signing_time"].is_string(), "{s}");
            (
                s["certificate_thumbprint"].as_str().unwrap().to_string(),
                s["certificate_subject"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    let mut want = vec![
        (
            thumb(&ours.cert),
            "CN=ours,O=trustkeeper tests,ST=WA,C=US".to_string(),
        ),
        (thumb(&their_cert), seen_subject(&seen, &thumb(&their_cert))),
    ];
    want.sort();
    assert_eq!(seen, want, "{v}");
}

/// The subject listed for `thumbprint` (notation's test certificate names its own).
fn seen_subject(seen: &[(String, String)], thumbprint: &str) -> String {
    seen.iter()
        .find(|(t, _)| t == thumbprint)
        .map(|(_, s)| s.clone())
        .unwrap_or_else(|| panic!("no signature by {thumbprint}: {seen:?}"))
}

#[tokio::test]
async fn two_of_ours_at_once_on_one_digest_both_end_up_in_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let repo = fresh_repo("race");
    let tags = push_images(&repo).await;
    let a = our_key(dir, "a");
    let b = our_key(dir, "b");
    let (tag, digest) = &tags[2];
    let image = vec![format!("{repo}:{tag}")];
    let spawn = |k: &OurKey| {
        trustkeeper_sign(dir, k, &image, &[])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (ca, cb) = (spawn(&a), spawn(&b));
    for (name, child) in [("a", ca), ("b", cb)] {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "signer {name}: {}", text(&o));
    }
    let index = referrers(&repo, digest).await;
    assert_eq!(notation_signatures(&index), 2, "{index:?}");
    for (name, k) in [("a", &a), ("b", &b)] {
        let home = notation_home(dir, name, &[&k.cert]);
        assert_verifies(&home, &repo, digest);
    }
}

/// The delaying proxy for the first GET of a referrers tag (`/manifests/sha256-…`).
async fn delay_proxy(delay: Duration) -> common::delay_proxy::DelayProxy {
    common::delay_proxy::delay_proxy(delay, |l| l.contains("/manifests/sha256-")).await
}

fn load_signer(key: &OurKey) -> SigningKey {
    let pem = std::fs::read(&key.pem).unwrap();
    let pass = SecretString::from(std::fs::read_to_string(&key.pass).unwrap());
    SigningKey::from_pem(&pem, Some(&pass)).unwrap().remove(0)
}

fn load_chain(key: &OurKey) -> trustkeeper::formats::notation::Chain {
    trustkeeper::formats::notation::Chain::from_pem(&std::fs::read(&key.cert).unwrap()).unwrap()
}

async fn descriptor(
    repo: &str,
    digest: &str,
) -> trustkeeper::registry::manifest::ManifestDescriptor {
    registry_client()
        .resolve(&ImageRef::parse(repo).unwrap(), digest)
        .await
        .unwrap()
}

/// notation sign with a key `notation cert generate-test` made; returns the config to verify
/// its signatures with.
fn notation_test_key(dir: &Path) -> (PathBuf, PathBuf) {
    let gen_home = dir.join("notation-gen");
    std::fs::create_dir_all(&gen_home).unwrap();
    let o = notation(&gen_home)
        .args(["cert", "generate-test", "--default", "theirs"])
        .output()
        .unwrap();
    assert!(o.status.success(), "generate-test: {}", text(&o));
    let cert = gen_home.join("notation/localkeys/theirs.crt");
    (gen_home, notation_home(dir, "theirs", &[&cert]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_notation_overwrites_our_index_push_we_add_ours_again() {
    use trustkeeper::formats::notation_sign::{NotationOptions, sign};
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let repo = fresh_repo("overwritten");
    let tags = push_images(&repo).await;
    let (_, digest) = &tags[0];
    let ours = our_key(dir, "ours");
    let (gen_home, their_home) = notation_test_key(dir);
    // notation reads the (absent) index through the proxy and gets the answer 700 ms later: we
    // push in between, and notation then writes an index with its own entry alone.
    let proxy = delay_proxy(Duration::from_millis(700)).await;
    let proxied = repo.replacen(Testbed::get().var("REGISTRY_HOST"), &proxy.host, 1);
    let child = notation(&gen_home)
        .args(["sign", &format!("{proxied}@{digest}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), proxy.seen.notified())
        .await
        .expect("notation read the referrers tag through the proxy");
    let image = ImageRef::parse(&repo).unwrap();
    let signed = sign(
        &registry_client(),
        &image,
        &descriptor(&repo, digest).await,
        &load_signer(&ours),
        &load_chain(&ours),
        &NotationOptions::default(),
    )
    .await
    .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "notation: {}", text(&out));
    assert!(signed.added);
    let index = referrers(&repo, digest).await;
    assert_eq!(notation_signatures(&index), 2, "{index:?}");
    assert_verifies(&notation_home(dir, "ours", &[&ours.cert]), &repo, digest);
    assert_verifies(&their_home, &repo, digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_never_overwrite_an_index_entry_pushed_after_our_read() {
    use trustkeeper::formats::notation_sign::{NotationOptions, sign};
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let repo = fresh_repo("stale-read");
    let tags = push_images(&repo).await;
    let ours = our_key(dir, "ours");
    let other = our_key(dir, "other");
    let (gen_home, their_home) = notation_test_key(dir);
    // we read through the proxy and get the answer 3 s later; meanwhile notation signs one
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
        let opts = NotationOptions {
            settle: Duration::from_millis(300),
            ..Default::default()
        };
        let target = descriptor(&repo, digest).await;
        let (signer, chain) = (load_signer(&ours), load_chain(&ours));
        let (other_signer, other_chain) = (load_signer(&other), load_chain(&other));
        let ours_task = sign(&client, &proxied, &target, &signer, &chain, &opts);
        let theirs_task = async {
            tokio::time::timeout(Duration::from_secs(30), proxy.seen.notified())
                .await
                .expect("we read the referrers tag through the proxy");
            if round == 0 {
                let o = notation(&gen_home)
                    .args(["sign", &format!("{repo}@{digest}")])
                    .output()
                    .unwrap();
                assert!(o.status.success(), "notation: {}", text(&o));
            } else {
                let image = ImageRef::parse(&repo).unwrap();
                sign(
                    &registry_client(),
                    &image,
                    &target,
                    &other_signer,
                    &other_chain,
                    &opts,
                )
                .await
                .unwrap();
            }
        };
        let (r, ()) = tokio::join!(ours_task, theirs_task);
        assert!(r.unwrap().added);
        let index = referrers(&repo, digest).await;
        assert_eq!(notation_signatures(&index), 2, "round {round}: {index:?}");
        assert_verifies(&notation_home(dir, "ours", &[&ours.cert]), &repo, digest);
        let second = if round == 0 {
            their_home.clone()
        } else {
            notation_home(dir, "other", &[&other.cert])
        };
        assert_verifies(&second, &repo, digest);
    }
}

#[tokio::test]
async fn a_forged_signature_listed_under_our_certificate_is_not_taken_for_ours() {
    use trustkeeper::formats::notation::{Descriptor, EMPTY_CONFIG, envelope, signature_manifest};
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let repo = fresh_repo("forged");
    let tags = push_images(&repo).await;
    let (tag, digest) = &tags[0];
    let ours = our_key(dir, "ours");
    let chain = load_chain(&ours);
    // an envelope carrying our certificate but signed by another key, listed in the index
    // with our certificate's thumbprint: a reader trusting the listing would call it ours
    let forger = SigningKey::generate_ecdsa("targets", "forger").unwrap();
    let d = descriptor(&repo, digest).await;
    let subject = Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
    };
    let now = jiff::Timestamp::now();
    let env = envelope(&subject, &chain, now, None, |m| {
        trustkeeper::notary::Signer::sign(&forger, m).map_err(|e| e.to_string())
    })
    .unwrap();
    let manifest = signature_manifest(&env, &subject, &chain, now);
    let c = registry_client();
    let image = ImageRef::parse(&repo).unwrap();
    c.push_blob(&image, &env).await.unwrap();
    c.push_blob(&image, EMPTY_CONFIG).await.unwrap();
    let forged = c
        .put_manifest(
            &image,
            &sha256_digest(&manifest),
            OCI_MANIFEST_V1,
            &manifest,
        )
        .await
        .unwrap();
    let index = ReferrersIndex::default().with_signature(&manifest, &chain);
    c.put_manifest(
        &image,
        &referrers_tag(digest),
        OCI_INDEX_V1,
        &index.to_bytes(),
    )
    .await
    .unwrap();
    let home = notation_home(dir, "ours", &[&ours.cert]);
    assert!(
        !notation_verify(&home, &repo, digest).status.success(),
        "notation accepted the forged signature"
    );

    let o = trustkeeper_sign(dir, &ours, &[format!("{repo}:{tag}")], &[])
        .output()
        .unwrap();
    assert!(o.status.success(), "trustkeeper sign: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("signed"), "{out}");
    let index = referrers(&repo, digest).await;
    assert_eq!(
        notation_signatures(&index),
        2,
        "the forged entry is kept: {index:?}"
    );
    assert_verifies(&home, &repo, digest);

    // inspect tells them apart
    let mut c = Command::new(env!("CARGO_BIN_EXE_trustkeeper"));
    c.args([
        "inspect",
        &format!("{repo}:{tag}"),
        "--format",
        "notation",
        "-o",
        "json",
    ])
    .args(["--ca-file", Testbed::get().var("CA_CERT")]);
    let o = common::cli_output(&mut c, dir, &[]);
    assert!(o.status.success(), "inspect: {}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sigs = v["signatures"].as_array().unwrap();
    let bad: Vec<_> = sigs.iter().filter(|s| s["valid"] == false).collect();
    assert_eq!(bad.len(), 1, "{v}");
    assert_eq!(bad[0]["manifest"], forged.as_str());
    assert!(
        bad[0]["problem"]
            .as_str()
            .unwrap()
            .contains("does not verify under its leaf"),
        "{v}"
    );
}

#[tokio::test]
async fn sign_by_digest_signs_that_manifest_with_its_own_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let repo = fresh_repo("pinned");
    let tags = push_images(&repo).await;
    let (tag, digest) = &tags[1];
    let d = descriptor(&repo, digest).await;
    let ours = our_key(dir, "ours");
    let size = d.size.to_string();
    let o = trustkeeper_sign(
        dir,
        &ours,
        &[format!("{repo}:{tag}")],
        &["--digest", digest, "--size", &size],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "trustkeeper sign: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("signed"),
        "{}",
        text(&o)
    );
    assert_verifies(&notation_home(dir, "ours", &[&ours.cert]), &repo, digest);
    // the payload names the manifest list with its own media type and size
    let index = referrers(&repo, digest).await;
    let c = registry_client();
    let image = ImageRef::parse(&repo).unwrap();
    let target = trustkeeper::formats::notation::Descriptor {
        media_type: DOCKER_MANIFEST_LIST_V2.into(),
        digest: digest.clone(),
        size: d.size,
    };
    let v = trustkeeper::formats::notation_sign::read_signature(
        &c,
        &image,
        &index.entries[0].digest,
        &target,
    )
    .await
    .unwrap();
    assert_eq!(v.target, target);
}

/// A small in-memory registry on loopback that serves the OCI referrers API (the testbed's
/// registry:2 does not): blobs, manifests by tag or digest, and `GET /v2/<repo>/referrers/<d>`
/// listing the manifests whose `subject` is `<d>`. Counts the tag PUTs it receives.
mod referrers_api {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    use trustkeeper::registry::manifest::sha256_digest;

    #[derive(Default)]
    pub struct State {
        blobs: HashMap<String, Vec<u8>>,
        manifests: HashMap<String, (String, Vec<u8>)>,
        tags: HashMap<String, String>,
        pub tag_puts: Vec<String>,
    }

    pub async fn start() -> (String, Arc<Mutex<State>>) {
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let st = st.clone();
                async move { handle(&st, method, uri, headers, body) }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (addr.to_string(), state)
    }

    fn handle(
        st: &Mutex<State>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let mut st = st.lock().unwrap();
        let path = uri.path().to_string();
        if path == "/v2/" {
            return StatusCode::OK.into_response();
        }
        if let Some(rest) = path.strip_prefix("/upload/") {
            let _ = rest;
            let digest = uri
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("digest=")))
                .unwrap_or_default()
                .replace("%3A", ":");
            assert_eq!(sha256_digest(&body), digest);
            st.blobs.insert(digest, body.to_vec());
            return StatusCode::CREATED.into_response();
        }
        if path.ends_with("/blobs/uploads/") && method == Method::POST {
            return (StatusCode::ACCEPTED, [("Location", "/upload/1")]).into_response();
        }
        let (head, reference) = path.rsplit_once('/').unwrap();
        let (_, kind) = head.rsplit_once('/').unwrap();
        match (kind, method.as_str()) {
            ("blobs", m) => match st.blobs.get(reference) {
                Some(b) if m == "GET" => b.clone().into_response(),
                Some(_) => StatusCode::OK.into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            },
            ("manifests", "PUT") => {
                let digest = sha256_digest(&body);
                let ct = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                st.manifests.insert(digest.clone(), (ct, body.to_vec()));
                if !reference.starts_with("sha256:") {
                    st.tag_puts.push(reference.to_string());
                    st.tags.insert(reference.to_string(), digest.clone());
                }
                (StatusCode::CREATED, [("Docker-Content-Digest", digest)]).into_response()
            }
            ("manifests", m) => {
                let digest = st
                    .tags
                    .get(reference)
                    .cloned()
                    .unwrap_or(reference.to_string());
                match st.manifests.get(&digest) {
                    Some((ct, b)) => {
                        let h = [
                            ("Content-Type", ct.clone()),
                            ("Docker-Content-Digest", digest.clone()),
                        ];
                        if m == "HEAD" {
                            (h, [("Content-Length", b.len().to_string())]).into_response()
                        } else {
                            (h, b.clone()).into_response()
                        }
                    }
                    None => StatusCode::NOT_FOUND.into_response(),
                }
            }
            ("referrers", "GET") => {
                let manifests: Vec<serde_json::Value> = st
                    .manifests
                    .iter()
                    .filter_map(|(d, (ct, b))| {
                        let v: serde_json::Value = serde_json::from_slice(b).ok()?;
                        (v.pointer("/subject/digest")?.as_str()? == reference).then(|| {
                            serde_json::json!({
                                "mediaType": ct, "digest": d, "size": b.len(),
                                "artifactType": v.get("artifactType")
                                    .or(v.pointer("/config/mediaType")),
                                "annotations": v.get("annotations"),
                            })
                        })
                    })
                    .collect();
                (
                    [("Content-Type", "application/vnd.oci.image.index.v1+json")],
                    serde_json::to_vec(&serde_json::json!({
                        "schemaVersion": 2,
                        "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": manifests,
                    }))
                    .unwrap(),
                )
                    .into_response()
            }
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }
}

#[tokio::test]
async fn a_registry_with_the_referrers_api_gets_no_referrers_tag() {
    use trustkeeper::formats::notation_sign::{NotationOptions, ReferrersStore, sign};
    let (host, state) = referrers_api::start().await;
    trustkeeper::tls::install_crypto_provider();
    let client = RegistryClient::new(RegistryOptions {
        plain_http: true,
        timeout: Duration::from_secs(10),
        ..Default::default()
    })
    .unwrap();
    let repo = format!("{host}/test/app");
    let image = ImageRef::parse(&repo).unwrap();
    let single = common::images::push_platform(&client, &image, "amd64", true, Some("v1")).await;
    let target = client.resolve(&image, "v1").await.unwrap();
    assert_eq!(target.digest, single["digest"].as_str().unwrap());
    let state_puts = || state.lock().unwrap().tag_puts.clone();
    assert_eq!(state_puts(), vec!["v1".to_string()]);

    let dir = tempfile::tempdir().unwrap();
    let ours = our_key(dir.path(), "ours");
    let (signer, chain) = (load_signer(&ours), load_chain(&ours));
    let opts = NotationOptions {
        settle: Duration::from_millis(200),
        ..Default::default()
    };
    let signed = sign(&client, &image, &target, &signer, &chain, &opts)
        .await
        .unwrap();
    assert!(signed.added);
    assert_eq!(signed.store, ReferrersStore::Api);
    assert_eq!(signed.signatures, 1);
    // the registry indexes it by its subject: no sha256-<hex> tag written
    assert_eq!(state_puts(), vec!["v1".to_string()]);
    let again = sign(&client, &image, &target, &signer, &chain, &opts)
        .await
        .unwrap();
    assert!(!again.added, "{again:?}");
    assert_eq!(again.signature, signed.signature);
}

#[tokio::test]
async fn a_signature_expiry_is_honoured_by_notation_and_renewed_by_us() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let repo = fresh_repo("expiry");
    let tags = push_images(&repo).await;
    let (tag, digest) = &tags[0];
    let ours = our_key(dir, "ours");
    let home = notation_home(dir, "ours", &[&ours.cert]);
    let image = [format!("{repo}:{tag}")];
    let sign = |expiry: &str| {
        let o = trustkeeper_sign(dir, &ours, &image, &["--signature-expiry", expiry])
            .output()
            .unwrap();
        assert!(o.status.success(), "sign: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // (a sign takes ~1.8 s: the settle wait after the push)
    assert!(sign("5s").starts_with("signed"));
    let signed = std::time::Instant::now();
    assert_verifies(&home, &repo, digest);
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(signed.elapsed())).await;
    let o = notation_verify(&home, &repo, digest);
    assert!(
        !o.status.success(),
        "notation accepted an expired signature: {}",
        text(&o)
    );
    // the expired one is not ours any more: signed again, then kept while it stands
    assert!(sign("1h").starts_with("signed"));
    assert_verifies(&home, &repo, digest);
    assert!(sign("1h").starts_with("unchanged"));
    assert_eq!(notation_signatures(&referrers(&repo, digest).await), 2);
}
