//! `sign --format`: parsed and refused before any I/O (no service needed), and `key public`
//! prints the key cosign verifies with.

use std::process::{Command, Output};

fn trustkeeper(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trustkeeper"))
        .args(args)
        .env_remove("TRUSTKEEPER_KEY")
        .output()
        .expect("the binary runs")
}

#[test]
fn notation_needs_a_certificate_and_unknown_formats_are_usage_errors() {
    for f in ["notation", "cosign,notation", "NOTATION"] {
        let o = trustkeeper(&["sign", "127.0.0.1:1/app:v1", "--format", f]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{f}: {err}");
        assert!(err.contains("needs --certificate"), "{f}: {err}");
    }
    let o = trustkeeper(&["sign", "127.0.0.1:1/app:v1", "--format", "sigstore"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("notary, cosign or notation"), "{err}");
    let o = trustkeeper(&["sign", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("--format") && help.contains("cosign verify --key"),
        "{help}"
    );
}

#[test]
fn key_public_prints_the_spki_of_the_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let key =
        trustkeeper::notary::SigningKey::generate_ecdsa("targets", "example.com/app").unwrap();
    let path = dir.path().join("k.pem");
    let pem_text =
        secrecy::ExposeSecret::expose_secret(&key.export_pem_unencrypted().unwrap()).to_string();
    std::fs::write(&path, pem_text).unwrap();
    let o = trustkeeper(&["key", "public", path.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(!out.contains("PRIVATE"), "{out}");
    let p = pem::parse(&out).unwrap();
    assert_eq!(p.tag(), "PUBLIC KEY");
    assert_eq!(p.contents(), key.public().spki_der().unwrap());
}
