//! `sign --format`: parsed and refused before any I/O (no service needed), `key public`
//! prints the key cosign verifies with, `key certificate` makes a Notation signing leaf.

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
        assert!(
            err.contains("--certificate") && err.contains("trustkeeper key certificate"),
            "{f}: {err}"
        );
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

#[test]
fn key_certificate_makes_a_notation_signing_leaf_for_the_key() {
    use x509_cert::der::{Decode as _, Encode as _};
    let dir = tempfile::tempdir().unwrap();
    let key =
        trustkeeper::notary::SigningKey::generate_ecdsa("targets", "example.com/app").unwrap();
    let path = dir.path().join("k.pem");
    let pem_text =
        secrecy::ExposeSecret::expose_secret(&key.export_pem_unencrypted().unwrap()).to_string();
    std::fs::write(&path, pem_text).unwrap();
    let out_path = dir.path().join("c.pem");
    let o = trustkeeper(&[
        "key",
        "certificate",
        "--key",
        path.to_str().unwrap(),
        "--subject",
        "CN=builder,O=Example",
        "--days",
        "10",
        "--out",
        out_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{o:?}");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!said.contains("PRIVATE"), "{said}");
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(!text.contains("PRIVATE"), "{text}");
    let p = pem::parse(&text).unwrap();
    assert_eq!(p.tag(), "CERTIFICATE");
    let cert = x509_cert::Certificate::from_der(p.contents()).unwrap();
    let tbs = cert.tbs_certificate();
    assert_eq!(tbs.subject(), tbs.issuer());
    assert_eq!(tbs.subject().to_string(), "CN=builder,O=Example");
    assert_eq!(
        tbs.subject_public_key_info().to_der().unwrap(),
        key.public().spki_der().unwrap()
    );
    let v = tbs.validity();
    let days = (v.not_after.to_unix_duration() - v.not_before.to_unix_duration()).as_secs();
    assert_eq!(days, 10 * 86_400 + 300, "10 days from 5 minutes ago");
    let exts = tbs.extensions().unwrap();
    let oid = |s: &str| x509_cert::der::oid::ObjectIdentifier::new_unwrap(s);
    let find = |o: &str| exts.iter().find(|e| e.extn_id == oid(o)).unwrap();
    // keyUsage critical digitalSignature only (bit 0: 0x80), EKU codeSigning, CA:FALSE critical
    let ku = find("2.5.29.15");
    assert!(ku.critical);
    assert_eq!(ku.extn_value.as_bytes(), &[0x03, 0x02, 0x07, 0x80]);
    let eku = find("2.5.29.37");
    assert!(
        eku.extn_value
            .as_bytes()
            .ends_with(&[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03])
    );
    let bc = find("2.5.29.19");
    assert!(bc.critical);
    assert_eq!(bc.extn_value.as_bytes(), &[0x30, 0x00], "CA:FALSE");

    // a subject that is no RFC 4514 name is refused, saying so
    let o = trustkeeper(&[
        "key",
        "certificate",
        "--key",
        path.to_str().unwrap(),
        "--subject",
        "not a name",
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("RFC 4514"),
        "{o:?}"
    );
}
