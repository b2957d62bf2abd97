//! Every refusal is its own error: tampered signature, tampered hash, rollback, expiry, root
//! below threshold, truncated and oversized responses. The repository is a real vector set
//! (`basic-local-signer`), served from memory or by a small HTTP server (for the size limits
//! of the real client code path).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::vectors::{Memory, now};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trustkeeper::notary::client::{TrustAnchor, TrustState, update_with};
use trustkeeper::notary::metadata::Envelope;
use trustkeeper::notary::{Auth, Error, NotaryClient, ServerConfig};

const GUN: &str = "example.com/research/app";

fn base() -> Memory {
    Memory::load("basic-local-signer")
}

async fn run(m: &Memory, anchor: &TrustAnchor) -> Result<(), Error> {
    update_with(m, GUN, anchor, now()).await.map(|_| ())
}

fn edit_envelope(bytes: &[u8], f: impl FnOnce(&mut Envelope)) -> Vec<u8> {
    let mut env = Envelope::parse("x", bytes).unwrap();
    f(&mut env);
    env.to_file_bytes().unwrap()
}

#[tokio::test]
async fn untouched_vector_verifies() {
    run(&base(), &TrustAnchor::FirstUse).await.unwrap();
}

#[tokio::test]
async fn tampered_signature() {
    let mut m = base();
    let ts = edit_envelope(&m.files["timestamp.json"], |e| {
        let s = &mut e.signatures[0].sig;
        *s = format!("A{}", &s[1..]);
    });
    m.put("timestamp.json", ts);
    let e = run(&m, &TrustAnchor::FirstUse).await.unwrap_err();
    assert!(
        matches!(&e, Error::ThresholdNotMet { role, valid: 0, threshold: 1, .. } if role == "timestamp"),
        "{e}"
    );
}

#[tokio::test]
async fn tampered_target_hash() {
    let mut m = base();
    let name = m.hashed_name("targets/releases");
    let text = String::from_utf8(m.files[&name].clone()).unwrap();
    // Another sha256 for the same tag, same length.
    let i = text.find("\"sha256\":\"").unwrap() + 10;
    let mut bytes = text.into_bytes();
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    m.put(&name, bytes);
    let e = run(&m, &TrustAnchor::FirstUse).await.unwrap_err();
    assert!(
        matches!(&e, Error::Tampered { role, by, .. } if role == "targets/releases" && by == "snapshot"),
        "{e}"
    );
}

#[tokio::test]
async fn rolled_back_versions() {
    let m = base();
    let (_, st) = update_with(&m, GUN, &TrustAnchor::FirstUse, now())
        .await
        .unwrap();
    for role in ["timestamp", "snapshot", "targets", "targets/releases"] {
        let mut newer = st.clone();
        *newer.versions.get_mut(role).unwrap() += 1;
        let e = run(&m, &TrustAnchor::State(newer)).await.unwrap_err();
        assert!(
            matches!(&e, Error::Rollback { role: r, .. } if r == role),
            "{role}: {e}"
        );
    }
    let newer = TrustState {
        root_version: st.root_version + 1,
        ..st.clone()
    };
    let e = run(&m, &TrustAnchor::State(newer)).await.unwrap_err();
    assert!(
        matches!(&e, Error::Rollback { role, .. } if role == "root"),
        "{e}"
    );
    // Another root key set at the trusted version is not our root.
    let other = TrustState {
        root_key_ids: vec!["00".repeat(32)],
        ..st
    };
    let e = run(&m, &TrustAnchor::State(other)).await.unwrap_err();
    assert!(matches!(e, Error::UntrustedRoot { .. }), "{e}");
}

#[tokio::test]
async fn expired_timestamp() {
    let m = base();
    let later: jiff::Timestamp = "2026-12-10T00:00:00Z".parse().unwrap();
    let e = update_with(&m, GUN, &TrustAnchor::FirstUse, later)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Expired { role, .. } if role == "timestamp"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("timestamp expired at Wed Dec  9 05:36:32 UTC 2026")
    );
}

#[tokio::test]
async fn root_below_threshold_and_wrong_gun() {
    let mut m = base();
    let root = edit_envelope(&m.files["root.json"], |e| e.signatures.clear());
    m.put("root.json", root);
    let e = run(&m, &TrustAnchor::FirstUse).await.unwrap_err();
    assert!(
        matches!(&e, Error::ThresholdNotMet { role, valid: 0, .. } if role == "root"),
        "{e}"
    );
    // The root certificate is for another GUN.
    let e = update_with(
        &base(),
        "example.com/other/app",
        &TrustAnchor::FirstUse,
        now(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::UntrustedRoot { .. }), "{e}");
}

#[tokio::test]
async fn truncated_snapshot() {
    let mut m = base();
    let name = m.hashed_name("snapshot");
    let mut b = m.files[&name].clone();
    b.truncate(b.len() - 10);
    m.put(&name, b);
    let e = run(&m, &TrustAnchor::FirstUse).await.unwrap_err();
    // The length is only a limit: the hashes tell the cut file from the real one.
    assert!(
        matches!(&e, Error::Tampered { role, what, .. } if role == "snapshot" && what.contains("mismatch")),
        "{e}"
    );
}

/// Serves a [`Memory`] over plain HTTP/1.1, optionally chunked (no Content-Length).
async fn serve(m: Memory, chunked: bool) -> String {
    serve_with(m, chunked, None).await
}

/// Like [`serve`]; with `basic`, requests without `Authorization: Basic <basic>` get a Basic
/// challenge (as a proxy in front of notary-server would send).
async fn serve_with(m: Memory, chunked: bool, basic: Option<String>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let m = Arc::new(m);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let m = m.clone();
            let basic = basic.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = s.read(&mut tmp).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let prefix = format!("/v2/{GUN}/_trust/tuf/");
                let body = path.strip_prefix(&prefix).and_then(|n| m.files.get(n));
                let authorized = basic.as_ref().is_none_or(|b| {
                    head.lines()
                        .any(|l| l.eq_ignore_ascii_case(&format!("authorization: Basic {b}")))
                });
                let resp = match body {
                    _ if !authorized => b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"notary\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                    Some(b) if chunked => {
                        let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
                        r.extend_from_slice(format!("{:x}\r\n", b.len()).as_bytes());
                        r.extend_from_slice(b);
                        r.extend_from_slice(b"\r\n0\r\n\r\n");
                        r
                    }
                    Some(b) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            b.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(b);
                        r
                    }
                };
                let _ = s.write_all(&resp).await;
                let _ = s.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

fn http_client(url: String) -> NotaryClient {
    trustkeeper::tls::install_crypto_provider();
    NotaryClient::new(ServerConfig {
        timeout: Duration::from_secs(5),
        ..ServerConfig::new(url)
    })
    .unwrap()
}

#[tokio::test]
async fn over_http_real_files_verify_and_oversized_responses_are_cut() {
    for chunked in [false, true] {
        let c = http_client(serve(base(), chunked).await);
        c.update(GUN, &TrustAnchor::FirstUse, now()).await.unwrap();

        // Snapshot with more bytes than the timestamp announces: cut at the announced length,
        // and refused.
        let mut m = base();
        let name = m.hashed_name("snapshot");
        let mut b = m.files[&name].clone();
        b.extend_from_slice(&[b' '; 100]);
        m.put(&name, b);
        let c = http_client(serve(m, chunked).await);
        let e = c
            .update(GUN, &TrustAnchor::FirstUse, now())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::Tampered { role, what, .. } if role == "snapshot" && what.contains("longer than the announced")),
            "chunked={chunked}: {e}"
        );

        // A timestamp above the 1 MiB cap.
        let mut m = base();
        let mut b = m.files["timestamp.json"].clone();
        b.extend(std::iter::repeat_n(b' ', 1 << 20));
        m.put("timestamp.json", b);
        let c = http_client(serve(m, chunked).await);
        let e = c
            .update(GUN, &TrustAnchor::FirstUse, now())
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::TooLarge { .. }),
            "chunked={chunked}: {e}"
        );
    }
    // Unknown repository and unreachable server.
    let c = http_client(serve(Memory::default(), false).await);
    let e = c
        .update(GUN, &TrustAnchor::FirstUse, now())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UnknownRepository { .. }), "{e}");
    let c = http_client("http://127.0.0.1:1".into());
    let e = c
        .update(GUN, &TrustAnchor::FirstUse, now())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unreachable { .. }), "{e}");
}

#[test]
fn trust_state_round_trips_as_json() {
    let st = TrustState {
        root_key_ids: vec!["ab".into()],
        root_version: 2,
        versions: BTreeMap::from([("targets/releases".to_string(), 3)]),
    };
    let j = serde_json::to_string(&st).unwrap();
    assert_eq!(
        j,
        r#"{"rootKeyIds":["ab"],"rootVersion":2,"versions":{"targets/releases":3}}"#
    );
    assert_eq!(serde_json::from_str::<TrustState>(&j).unwrap(), st);
}

#[tokio::test]
async fn basic_auth_challenge() {
    use base64::Engine as _;
    let cred = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    let url = serve_with(base(), false, Some(cred)).await;
    let with = |auth: Auth| {
        trustkeeper::tls::install_crypto_provider();
        NotaryClient::new(ServerConfig {
            auth,
            ..ServerConfig::new(url.clone())
        })
        .unwrap()
    };
    let basic = |p: &str| Auth::Basic {
        username: "alice".into(),
        password: SecretString::from(p.to_string()),
    };
    let c = with(basic("s3cret"));
    c.update(GUN, &TrustAnchor::FirstUse, now()).await.unwrap();
    c.update(GUN, &TrustAnchor::FirstUse, now()).await.unwrap();
    for auth in [Auth::Anonymous, basic("wrong")] {
        let e = with(auth)
            .update(GUN, &TrustAnchor::FirstUse, now())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Unauthorized { status: 401, .. }), "{e}");
    }
}

/// Serves an older `root.json` on the first request only (root rotated while we read).
struct RotatedWhileReading {
    m: Memory,
    old_root: Vec<u8>,
    served: std::sync::atomic::AtomicBool,
}

impl trustkeeper::notary::client::Fetch for RotatedWhileReading {
    async fn fetch(&self, gun: &str, name: &str, limit: u64) -> Result<Option<Vec<u8>>, Error> {
        if name == "root.json" && !self.served.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Ok(Some(self.old_root.clone()));
        }
        self.m.fetch(gun, name, limit).await
    }
}

#[tokio::test]
async fn root_changed_while_reading_is_read_again() {
    let m = Memory::load("client-run");
    let old_root = m.files["2.root.json"].clone();
    let f = RotatedWhileReading {
        m: m.clone(),
        old_root: old_root.clone(),
        served: Default::default(),
    };
    let (repo, _) = update_with(
        &f,
        "example.com/vectors/wire",
        &TrustAnchor::FirstUse,
        now(),
    )
    .await
    .unwrap();
    assert_eq!(repo.root_info.version, 3);
    // Always the old root: the snapshot keeps disagreeing, reported as tampering.
    let mut stale = m;
    stale.put("root.json", old_root);
    let e = update_with(
        &stale,
        "example.com/vectors/wire",
        &TrustAnchor::FirstUse,
        now(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, Error::Tampered { role, .. } if role == "root"),
        "{e}"
    );
    assert!(!e.is_transient());
    assert!(Error::VersionConflict { gun: "g".into() }.is_transient());
}

/// A self-signed root certificate for `GUN` with basicConstraints `ca`, its PEM text as
/// root.json lists it, and the key that signs with it.
fn root_certificate(ca: bool) -> (trustkeeper::notary::PublicKey, p256::ecdsa::SigningKey) {
    use x509_cert::builder::profile::BuilderProfile;
    use x509_cert::builder::{Builder as _, CertificateBuilder};
    use x509_cert::der::Encode as _;
    use x509_cert::ext::pkix::BasicConstraints;
    use x509_cert::ext::{Extension, ToExtension as _};
    use x509_cert::name::Name;

    struct Profile {
        subject: Name,
        ca: bool,
    }
    impl BuilderProfile for Profile {
        fn get_issuer(&self, subject: &Name) -> Name {
            subject.clone()
        }
        fn get_subject(&self) -> Name {
            self.subject.clone()
        }
        fn build_extensions(
            &self,
            _: x509_cert::spki::SubjectPublicKeyInfoRef<'_>,
            _: x509_cert::spki::SubjectPublicKeyInfoRef<'_>,
            tbs: &x509_cert::TbsCertificate,
        ) -> x509_cert::builder::Result<Vec<Extension>> {
            Ok(vec![
                (
                    true,
                    &BasicConstraints {
                        ca: self.ca,
                        path_len_constraint: None,
                    },
                )
                    .to_extension(tbs.subject(), &[])?,
            ])
        }
    }
    let sk = p256::ecdsa::SigningKey::from_slice(&[if ca { 7 } else { 9 }; 32]).unwrap();
    let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_key(sk.verifying_key()).unwrap();
    let t = |ts: jiff::Timestamp| {
        x509_cert::time::Time::try_from(std::time::SystemTime::from(ts)).unwrap()
    };
    let validity = x509_cert::time::Validity::new(
        t(now() - jiff::SignedDuration::from_hours(24)),
        t(now() + jiff::SignedDuration::from_hours(24 * 3650)),
    );
    let profile = Profile {
        subject: format!("CN={GUN}").parse().unwrap(),
        ca,
    };
    let serial = x509_cert::serial_number::SerialNumber::new(&[1, 2, 3]).unwrap();
    let cert = CertificateBuilder::new(profile, serial, validity, spki)
        .unwrap()
        .build::<_, p256::ecdsa::DerSignature>(&sk)
        .unwrap();
    let text = pem::encode_config(
        &pem::Pem::new("CERTIFICATE", cert.to_der().unwrap()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    let key = trustkeeper::notary::PublicKey {
        keytype: "ecdsa-x509".into(),
        public: text.into_bytes(),
    };
    (key, sk)
}

/// The vector's root.json with its root key replaced by `key`, validly signed by it.
fn root_with_key(
    m: &Memory,
    key: &trustkeeper::notary::PublicKey,
    sk: &p256::ecdsa::SigningKey,
) -> Vec<u8> {
    use base64::Engine as _;
    use p256::ecdsa::signature::Signer as _;
    let id = key.key_id();
    let mut env = Envelope::parse("root", &m.files["root.json"]).unwrap();
    let old: Vec<String> = env.signed["roles"]["root"]["keyids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    for o in &old {
        env.signed["keys"].as_object_mut().unwrap().remove(o);
    }
    env.signed["keys"][&id] = key.to_value();
    env.signed["roles"]["root"]["keyids"] = serde_json::json!([id]);
    let sig: p256::ecdsa::Signature = sk.sign(&env.signed_bytes().unwrap());
    env.signatures = vec![trustkeeper::notary::metadata::Signature {
        keyid: id,
        method: "ecdsa".into(),
        sig: base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()),
    }];
    env.to_file_bytes().unwrap()
}

#[tokio::test]
async fn a_ca_root_certificate_is_refused_as_the_go_client_refuses_it() {
    let (ca_key, ca_sk) = root_certificate(true);
    let mut m = base();
    m.put("root.json", root_with_key(&m, &ca_key, &ca_sk));
    let pinned = TrustAnchor::PinnedKeys(vec![ca_key.key_id()]);
    let pinned_canonical = TrustAnchor::PinnedKeys(vec![ca_key.canonical_id().unwrap()]);
    for (name, anchor) in [
        ("first use", TrustAnchor::FirstUse),
        ("pinned", pinned),
        ("pinned by canonical ID", pinned_canonical),
    ] {
        let e = run(&m, &anchor).await.unwrap_err();
        assert!(
            matches!(&e, Error::UntrustedRoot { reason, .. } if reason.contains("CA:TRUE")),
            "{name}: {e}"
        );
    }
    // The same root with a leaf certificate gets past the root checks (and fails later, on
    // the snapshot that does not list this root): the CA bit alone is refused.
    let (leaf_key, leaf_sk) = root_certificate(false);
    let mut m = base();
    m.put("root.json", root_with_key(&m, &leaf_key, &leaf_sk));
    let e = run(&m, &TrustAnchor::FirstUse).await.unwrap_err();
    assert!(!matches!(e, Error::UntrustedRoot { .. }), "{e}");
}
