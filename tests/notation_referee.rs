//! Notation signatures with the real `notation` (1.3) as referee: what `trustkeeper sign
//! --format notation --certificate` pushes (JWS envelope, signature manifest with `subject`,
//! the referrers tag schema's index, since the testbed registry has no referrers API) verifies
//! with `notation verify` under a trust policy whose trust store holds the certificate `trustkeeper
//! key certificate` made, for a single-platform image, a Docker manifest list and an OCI index;
//! a trust store with another certificate is refused; a re-run adds nothing.
//!
//! Needs `TRUSTKEEPER_TESTBED` and `TRUSTKEEPER_REFEREES` (its `env` names NOTATION).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::Testbed;
use secrecy::SecretString;
use trustkeeper::notary::SigningKey;

fn notation(home: &Path) -> Command {
    let dir = std::env::var("TRUSTKEEPER_REFEREES")
        .expect("TRUSTKEEPER_REFEREES is not set: these tests need the real notation binary");
    let env = common::parse_env_file(&Path::new(&dir).join("env"));
    let tool = env
        .get("NOTATION")
        .unwrap_or_else(|| panic!("{dir}/env names no NOTATION: reinstall the referees"));
    assert!(Path::new(tool).is_file(), "NOTATION={tool} is missing");
    let mut c = Command::new(tool);
    c.env("SSL_CERT_FILE", Testbed::get().var("CA_CERT"))
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"));
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

fn trustkeeper(home: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trustkeeper"));
    c.args(args)
        .args(["--ca-file", Testbed::get().var("CA_CERT")])
        .env_remove("TRUSTKEEPER_KEY")
        .env_remove("TRUSTKEEPER_PASSPHRASE");
    common::cli_output(&mut c, home, &[])
}

/// A key PEM + passphrase file, and its self-signed certificate made by `key certificate`.
fn key_and_certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let key = SigningKey::generate_ecdsa("targets/releases", "notation-test").unwrap();
    let pass = SecretString::from("notation-test-pass".to_string());
    let pem = dir.join(format!("{name}.key.pem"));
    std::fs::write(&pem, key.export_pem(&pass).unwrap()).unwrap();
    let pass_file = dir.join(format!("{name}.pass"));
    std::fs::write(&pass_file, "notation-test-pass").unwrap();
    let o = trustkeeper(
        dir,
        &[
            "key",
            "certificate",
            pem.to_str().unwrap(),
            "--name",
            &format!("trustkeeper-{name}"),
            "--passphrase-file",
            pass_file.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "key certificate: {}", text(&o));
    let cert = dir.join(format!("{name}.crt"));
    std::fs::write(&cert, &o.stdout).unwrap();
    (pem, pass_file, cert)
}

/// A notation config in `home` trusting `cert` (store `store`) for every registry scope.
fn trust(home: &Path, store: &str, cert: &Path) {
    let o = notation(home)
        .args(["cert", "add", "--type", "ca", "--store", store])
        .arg(cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "cert add: {}", text(&o));
    let policy = home.join("policy.json");
    std::fs::write(
        &policy,
        serde_json::json!({"version": "1.0", "trustPolicies": [{
            "name": "testbed", "registryScopes": ["*"],
            "signatureVerification": {"level": "strict"},
            "trustStores": [format!("ca:{store}")], "trustedIdentities": ["*"]}]})
        .to_string(),
    )
    .unwrap();
    let o = notation(home)
        .args(["policy", "import", "--force"])
        .arg(&policy)
        .output()
        .unwrap();
    assert!(o.status.success(), "policy import: {}", text(&o));
}

#[tokio::test]
async fn what_we_sign_verifies_with_notation_for_images_lists_and_indexes() {
    let tb = Testbed::get();
    let seed = tb.seed("notation");
    let dir = tempfile::tempdir().unwrap();
    let (key, pass, cert) = key_and_certificate(dir.path(), "ours");
    let tags = ["v1", "multi", "oci-multi"];
    let images: Vec<String> = tags.iter().map(|t| format!("{}:{t}", seed.gun)).collect();
    let mut args: Vec<&str> = vec!["sign"];
    args.extend(images.iter().map(String::as_str));
    args.extend([
        "--format",
        "notation",
        "--certificate",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
    ]);
    let o = trustkeeper(dir.path(), &args);
    assert!(o.status.success(), "sign: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        out.lines().filter(|l| l.starts_with("signed")).count(),
        3,
        "{out}"
    );

    let home = dir.path().join("ours-home");
    trust(&home, "tk", &cert);
    for tag in tags {
        let image = format!("{}@sha256:{}", seed.gun, seed.digest(tag));
        let v = notation(&home).arg("verify").arg(&image).output().unwrap();
        assert!(v.status.success(), "notation verify {tag}: {}", text(&v));
    }
    // another certificate in the trust store: refused
    let (_, _, other_cert) = key_and_certificate(dir.path(), "other");
    let other_home = dir.path().join("other-home");
    trust(&other_home, "other", &other_cert);
    let image = format!("{}@sha256:{}", seed.gun, seed.digest("v1"));
    let v = notation(&other_home)
        .arg("verify")
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        !v.status.success(),
        "verified under another certificate: {}",
        text(&v)
    );

    // again: nothing new
    let o = trustkeeper(dir.path(), &args);
    assert!(o.status.success(), "second sign: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        out.lines().filter(|l| l.starts_with("unchanged")).count(),
        3,
        "{out}"
    );
}

fn cosign3(home: &Path) -> Command {
    let dir = std::env::var("TRUSTKEEPER_REFEREES").expect("TRUSTKEEPER_REFEREES is not set");
    let env = common::parse_env_file(&Path::new(&dir).join("env"));
    let tool = env
        .get("COSIGN")
        .unwrap_or_else(|| panic!("{dir}/env names no COSIGN: reinstall the referees"));
    assert!(Path::new(tool).is_file(), "COSIGN={tool} is missing");
    let mut c = Command::new(tool);
    c.env("SSL_CERT_FILE", Testbed::get().var("CA_CERT"))
        .env("HOME", home)
        .env("COSIGN_PASSWORD", "cosign-test");
    c
}

#[tokio::test]
async fn cosign_3_bundles_and_our_notation_signatures_share_the_referrers_tag() {
    let tb = Testbed::get();
    let seed = tb.seed("notation-cosign3");
    let dir = tempfile::tempdir().unwrap();
    let (key, pass, cert) = key_and_certificate(dir.path(), "ours");
    let home = dir.path().join("home");
    trust(&home, "tk", &cert);
    let prefix = dir.path().join("cosign");
    let o = cosign3(&home)
        .args(["generate-key-pair", "--output-key-prefix"])
        .arg(&prefix)
        .output()
        .unwrap();
    assert!(o.status.success(), "generate-key-pair: {}", text(&o));
    let sign_ours = |tag: &str| {
        let image = format!("{}:{tag}", seed.gun);
        let o = trustkeeper(
            dir.path(),
            &[
                "sign",
                &image,
                "--format",
                "notation",
                "--certificate",
                cert.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
                "--passphrase-file",
                pass.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "sign {tag}: {}", text(&o));
    };
    // cosign 3.1's default: a Sigstore bundle listed in the same referrers tag (no tlog here)
    let sign_cosign = |tag: &str| {
        let image = format!("{}@sha256:{}", seed.gun, seed.digest(tag));
        let o = cosign3(&home)
            .args([
                "sign",
                "--yes",
                "--tlog-upload=false",
                "--use-signing-config=false",
            ])
            .arg("--key")
            .arg(prefix.with_extension("key"))
            .arg(&image)
            .output()
            .unwrap();
        assert!(o.status.success(), "cosign sign {tag}: {}", text(&o));
    };
    sign_ours("v1");
    sign_cosign("v1");
    sign_cosign("oci-multi");
    sign_ours("oci-multi");
    for tag in ["v1", "oci-multi"] {
        let image = format!("{}@sha256:{}", seed.gun, seed.digest(tag));
        let v = notation(&home).arg("verify").arg(&image).output().unwrap();
        assert!(v.status.success(), "notation verify {tag}: {}", text(&v));
        let v = cosign3(&home)
            .args(["verify", "--insecure-ignore-tlog", "--key"])
            .arg(prefix.with_extension("pub"))
            .arg(&image)
            .output()
            .unwrap();
        assert!(v.status.success(), "cosign verify {tag}: {}", text(&v));
    }
}
