//! Creating a repository (GUN) through the library, the way Docker does, offline: the key
//! files `notary key export` writes, the root certificate `notary init` makes, the first signed
//! files. `notary_init_testbed.rs` checks the same against the real notary-server and Go client.

mod common;

use std::collections::BTreeMap;

use common::vectors::vdir;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use trustkeeper::notary::init::{NewRepository, RepositoryKeys, root_certificate};
use trustkeeper::notary::metadata::Envelope;
use trustkeeper::notary::{Error, PublicKey, SigningKey};
use x509_cert::der::{Decode, Encode};

fn pass(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

fn pem_der(text: &[u8]) -> Vec<u8> {
    pem::parse(text).unwrap().into_contents()
}

fn vector(path: &str) -> Vec<u8> {
    std::fs::read(vdir().join(path)).unwrap()
}

/// Decrypts an `ENCRYPTED PRIVATE KEY` block to its inner PrivateKeyInfo DER.
fn inner_der(text: &[u8], passphrase: &str) -> Vec<u8> {
    let der = pem_der(text);
    let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der.as_slice()).unwrap();
    info.decrypt(passphrase).unwrap().as_bytes().to_vec()
}

/// Zeroes the byte ranges that differ between two keys (salt, IV, key material).
fn masked(bytes: &[u8], ranges: &[std::ops::Range<usize>]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for r in ranges {
        b[r.clone()].fill(0);
    }
    b
}

// ---------------------------------------------------------------------------------------------
// Key files (no testbed)

#[test]
fn exported_key_has_the_layout_of_notary_key_export() {
    let gun = "example.com/research/app";
    let key = SigningKey::generate_ecdsa("targets", gun).unwrap();
    let text = key.export_pem(&pass("targetspass123")).unwrap();
    let head = format!(
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\ngun: {gun}\npath: {}\nrole: targets\n\n",
        key.key_id()
    );
    assert!(text.starts_with(&head), "{text}");
    assert!(text.ends_with("-----END ENCRYPTED PRIVATE KEY-----\n"));

    // A real `notary key export` of a targets key of the same GUN: same lines, same DER apart
    // from salt, IV and ciphertext (PBKDF2 without PRF = HMAC-SHA1, 2048 rounds, AES-256-CBC).
    let real = vector("keys/set-a/export-gun.pem");
    let shape = |t: &[u8]| {
        String::from_utf8_lossy(t)
            .lines()
            .map(str::len)
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(text.as_bytes()), shape(&real));
    let (ours, theirs) = (pem_der(text.as_bytes()), pem_der(&real));
    let outer = [35..43, 62..78, 81..241];
    assert_eq!(ours.len(), 241);
    assert_eq!(masked(&ours, &outer), masked(&theirs, &outer));

    // Inside: PrivateKeyInfo version 1, SEC1 with curve and public key, no PKCS#8 publicKey.
    let (ours, theirs) = (
        inner_der(text.as_bytes(), "targetspass123"),
        inner_der(&real, "targetspass123"),
    );
    let inner = [36..68, 86..150];
    assert_eq!(ours.len(), 150);
    assert_eq!(masked(&ours, &inner), masked(&theirs, &inner));

    // Our reader takes it back: same key, the headers notary wrote.
    let back = SigningKey::from_pem(text.as_bytes(), Some(&pass("targetspass123"))).unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].key_id(), key.key_id());
    assert_eq!(back[0].public(), key.public());
    assert!(back[0].notary_compatible());
    let want: BTreeMap<String, String> =
        [("gun", gun), ("path", key.key_id()), ("role", "targets")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(back[0].headers(), &want);
    // Signatures of the re-read key verify with the original's public key.
    let sig = back[0].sign(b"msg", key.key_id());
    let raw = base64_decode(&sig.sig);
    assert!(key.public().verify("ecdsa", b"msg", &raw));
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn headers_follow_the_role_and_bad_input_is_refused() {
    let headers = |role: &str| {
        let k = SigningKey::generate_ecdsa(role, "example.com/x").unwrap();
        let text = k.export_pem(&pass("p")).unwrap();
        let back = SigningKey::from_pem(text.as_bytes(), Some(&pass("p"))).unwrap();
        back[0].headers().keys().cloned().collect::<Vec<_>>()
    };
    // `gun:` only for targets, snapshot and timestamp keys; `path:` always (export format).
    assert_eq!(headers("root"), ["path", "role"]);
    assert_eq!(headers("targets/releases"), ["path", "role"]);
    assert_eq!(headers("alice"), ["path", "role"]);
    for role in ["targets", "snapshot", "timestamp"] {
        assert_eq!(headers(role), ["gun", "path", "role"], "{role}");
    }
    // The delegation export has exactly the lines of a real one.
    let k = SigningKey::generate_ecdsa("targets/releases", "").unwrap();
    let ours = k.export_pem(&pass("delegpass123")).unwrap();
    let real = String::from_utf8(vector("keys/set-a/export-releases.pem")).unwrap();
    let lens = |t: &str| t.lines().map(str::len).collect::<Vec<_>>();
    assert_eq!(lens(&ours), lens(&real));

    for (role, gun) in [("", "g"), ("a\nb", "g"), (" root", "g"), ("targets", "")] {
        let e = SigningKey::generate_ecdsa(role, gun).unwrap_err();
        assert!(
            matches!(e, Error::InvalidName { .. }),
            "{role:?} {gun:?}: {e}"
        );
    }
    let e = k.export_pem(&pass("")).unwrap_err();
    assert!(matches!(e, Error::KeyExport { .. }), "{e}");
}

#[test]
fn wrong_or_missing_passphrase_is_refused() {
    let k = SigningKey::generate_ecdsa("targets", "example.com/x").unwrap();
    let text = k.export_pem(&pass("right one")).unwrap();
    for p in [Some(pass("wrong one")), None] {
        let e = SigningKey::from_pem(text.as_bytes(), p.as_ref()).unwrap_err();
        assert!(matches!(e, Error::WrongPassphrase { .. }), "{e}");
    }
    // Two exports of one key differ (fresh salt and IV) and both open.
    let again = k.export_pem(&pass("right one")).unwrap();
    assert_ne!(text, again);
    let back = SigningKey::from_pem(again.as_bytes(), Some(&pass("right one"))).unwrap();
    assert_eq!(back[0].key_id(), k.key_id());
}

#[test]
fn unencrypted_export_and_debug_output() {
    let k = SigningKey::generate_ecdsa("targets", "example.com/x").unwrap();
    let secret = k.export_pem_unencrypted().unwrap();
    let text = secret.expose_secret();
    assert!(text.starts_with(&format!(
        "-----BEGIN PRIVATE KEY-----\ngun: example.com/x\npath: {}\nrole: targets\n\n",
        k.key_id()
    )));
    let back = SigningKey::from_pem(text.as_bytes(), None).unwrap();
    assert_eq!(back[0].key_id(), k.key_id());
    assert_eq!(back[0].gun(), Some("example.com/x"));
    // Same inner PrivateKeyInfo as the encrypted form.
    let enc = k.export_pem(&pass("p")).unwrap();
    assert_eq!(pem_der(text.as_bytes()), inner_der(enc.as_bytes(), "p"));
    // No Debug output shows key material.
    let body: String = text
        .lines()
        .filter(|l| !l.contains(':'))
        .nth(2)
        .unwrap()
        .into();
    let keys = RepositoryKeys::generate("example.com/x").unwrap();
    for dbg in [format!("{secret:?}"), format!("{k:?}"), format!("{keys:?}")] {
        assert!(!dbg.contains(&body) && !dbg.contains("PRIVATE"), "{dbg}");
    }
    assert_eq!(format!("{k:?}"), format!("SigningKey({})", k.key_id()));
}

// ---------------------------------------------------------------------------------------------
// Root certificate (no testbed)

#[test]
fn root_certificate_is_the_one_notary_init_makes() {
    let gun = "example.com/research/app";
    let root = SigningKey::generate_ecdsa("root", "").unwrap();
    // The real certificate's NotBefore, with a fraction that DER drops.
    let now: Timestamp = "2026-11-25T05:35:22.6Z".parse().unwrap();
    let pk = root_certificate(&root, gun, now).unwrap();
    assert_eq!(pk.keytype, "ecdsa-x509");
    let text = String::from_utf8(pk.public.clone()).unwrap();
    assert!(
        text.starts_with("-----BEGIN CERTIFICATE-----\nMII"),
        "{text}"
    );
    assert!(text.ends_with("-----END CERTIFICATE-----\n"));
    // Its canonical ID is the root key's ID (the private key file name), its TUF ID another.
    assert_eq!(pk.canonical_id().unwrap(), root.key_id());
    assert_ne!(pk.key_id(), root.key_id());

    let cert = pk.certificate().unwrap();
    let real =
        x509_cert::Certificate::from_der(&pem_der(&vector("keys/set-a/root-cert.pem"))).unwrap();
    let (tbs, rtbs) = (cert.tbs_certificate(), real.tbs_certificate());
    assert_eq!(tbs.subject().to_string(), format!("CN={gun}"));
    // Byte-equal to the real `notary init` certificate of this GUN in everything but the
    // key, the serial and the signature: version, CN (PrintableString), issuer = subject,
    // 3650 days from NotBefore, extensions with their order and criticality, algorithm.
    assert_eq!(tbs.version(), rtbs.version());
    assert_eq!(
        tbs.subject().to_der().unwrap(),
        rtbs.subject().to_der().unwrap()
    );
    assert_eq!(tbs.issuer(), tbs.subject());
    assert_eq!(tbs.validity(), rtbs.validity());
    assert_eq!(
        tbs.extensions().unwrap().to_der().unwrap(),
        rtbs.extensions().unwrap().to_der().unwrap()
    );
    assert_eq!(tbs.signature(), rtbs.signature());
    assert_eq!(cert.signature_algorithm(), real.signature_algorithm());
    assert_eq!(
        cert.signature_algorithm().oid.to_string(),
        "1.2.840.10045.4.3.2",
        "ecdsa-with-SHA256"
    );
    let ext: Vec<(String, bool)> = tbs
        .extensions()
        .unwrap()
        .iter()
        .map(|e| (e.extn_id.to_string(), e.critical))
        .collect();
    assert_eq!(
        ext,
        [
            ("2.5.29.15".to_string(), true), // KeyUsage: digitalSignature, keyEncipherment
            ("2.5.29.37".to_string(), false), // ExtKeyUsage: codeSigning
            ("2.5.29.19".to_string(), true), // BasicConstraints: CA:FALSE
        ]
    );
    // A random positive serial below 2^128: at most 16 bytes after DER's sign byte.
    let serial = tbs.serial_number().as_bytes();
    let magnitude = serial.strip_prefix(&[0]).unwrap_or(serial);
    assert!(
        serial[0] < 0x80 && (1..=16).contains(&magnitude.len()),
        "{serial:?}"
    );
    let other = root_certificate(&root, gun, now)
        .unwrap()
        .certificate()
        .unwrap();
    assert_ne!(other.tbs_certificate().serial_number(), tbs.serial_number());
    // Self-signed by the root key.
    {
        use p256::ecdsa::signature::Verifier;
        use p256::pkcs8::DecodePublicKey;
        let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&pk.spki_der().unwrap()).unwrap();
        let sig = p256::ecdsa::DerSignature::from_bytes(cert.signature().raw_bytes()).unwrap();
        vk.verify(&tbs.to_der().unwrap(), &sig).unwrap();
    }
    // A GUN with `_` gets a UTF8String CN, as Go writes it; invalid GUNs are refused.
    let u = root_certificate(&root, "example.com/a_b", now).unwrap();
    assert_eq!(
        u.certificate()
            .unwrap()
            .tbs_certificate()
            .subject()
            .to_string(),
        "CN=example.com/a_b"
    );
    let e = root_certificate(&root, "example.com/../x", now).unwrap_err();
    assert!(matches!(e, Error::InvalidName { .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------
// The signed files (no testbed)

fn some_key(role: &str) -> PublicKey {
    SigningKey::generate_ecdsa(role, "g.example/x")
        .unwrap()
        .public()
        .clone()
}

#[test]
fn first_files_are_go_exact_and_signed() {
    let gun = "example.com/vectors/scratch";
    let keys = RepositoryKeys::generate(gun).unwrap();
    let (snap, ts) = (some_key("snapshot"), some_key("timestamp"));
    let now: Timestamp = "2026-11-25T20:13:34.9Z".parse().unwrap();
    let meta = NewRepository::new(gun, &keys.root, &keys.targets)
        .sign(snap.clone(), ts.clone(), now)
        .unwrap();
    let roles: Vec<(&str, u64)> = meta
        .files
        .iter()
        .map(|f| (f.role.as_str(), f.version))
        .collect();
    assert_eq!(roles, [("root", 1), ("targets", 1)]);
    for f in &meta.files {
        let env = Envelope::parse(&f.role, &f.bytes).unwrap();
        assert_eq!(
            env.to_file_bytes().unwrap(),
            f.bytes,
            "{} re-encodes",
            f.role
        );
        assert_eq!(env.signatures.len(), 1);
        assert_eq!(env.signatures[0].method, "ecdsa");
    }
    let root = Envelope::parse("root", &meta.files[0].bytes)
        .unwrap()
        .signed;
    let targets = Envelope::parse("targets", &meta.files[1].bytes).unwrap();
    // Same members as the independent-init vector (root created the same way, accepted by
    // notary-server and read by the Go client); expiries as notary's defaults.
    let vroot = Envelope::parse("root", &vector("repos/independent-init/root.json"))
        .unwrap()
        .signed;
    let members =
        |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(members(&root), members(&vroot));
    assert_eq!(members(&root["roles"]), members(&vroot["roles"]));
    assert_eq!(root["expires"], "2036-11-22T20:13:34Z", "10 × 365 days");
    assert_eq!(root["roles"]["root"]["keyids"][0], meta.root_key_id());
    assert_eq!(root["roles"]["targets"]["keyids"][0], keys.targets.key_id());
    assert_eq!(root["roles"]["snapshot"]["keyids"][0], snap.key_id());
    assert_eq!(root["roles"]["timestamp"]["keyids"][0], ts.key_id());
    assert_eq!(root["keys"].as_object().unwrap().len(), 4);
    assert_eq!(targets.signatures[0].keyid, keys.targets.key_id());
    let text = String::from_utf8(meta.files[1].bytes.clone()).unwrap();
    assert!(text.starts_with(
        r#"{"signed":{"_type":"Targets","delegations":{"keys":{},"roles":[]},"expires":"2029-11-24T20:13:34Z","targets":{},"version":1},"signatures":[{"keyid":""#
    ), "{text}");

    // With a first delegation, as `docker trust signer add` declares it.
    let dkey = some_key("targets/releases");
    let meta = NewRepository::new(gun, &keys.root, &keys.targets)
        .with_delegation("targets/releases", dkey.clone(), &[""])
        .unwrap()
        .sign(snap, ts, now)
        .unwrap();
    let t = Envelope::parse("targets", &meta.files[1].bytes)
        .unwrap()
        .signed;
    assert_eq!(
        t["delegations"]["roles"],
        serde_json::json!([{"keyids": [dkey.key_id()], "name": "targets/releases", "paths": [""], "threshold": 1}])
    );
    assert_eq!(t["delegations"]["keys"][dkey.key_id()], dkey.to_value());
    for bad in ["targets", "targets/a/b", "releases", "targets/Rel"] {
        let e = NewRepository::new(gun, &keys.root, &keys.targets)
            .with_delegation(bad, dkey.clone(), &[""])
            .unwrap_err();
        assert!(matches!(e, Error::InvalidName { .. }), "{bad}: {e}");
    }
}
