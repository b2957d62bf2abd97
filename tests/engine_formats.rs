//! A SignedImage with `formats: [notary, cosign, notation]` on the real testbed, its Secrets
//! gathered through the engine's `SecretSource` (the certificate chain under `tls.crt`, as
//! cert-manager writes it): one reconcile signs new tags in all three formats, and the Go notary
//! client, `cosign verify` and `notation verify` agree; a quiet run writes the same status; a
//! renewed certificate in the Secret makes new Notation signatures (and nothing else) on the
//! next reconcile.
//!
//! Needs `TRUSTKEEPER_TESTBED` and `TRUSTKEEPER_REFEREES`.

mod common;

use std::path::Path;
use std::process::Command;

use common::notation::{notation, text, trust};
use common::{Testbed, ready};
use secrecy::SecretString;
use trustkeeper::api::{SignatureFormat, SignedImageSpec};
use trustkeeper::engine::Engine;
use trustkeeper::engine::secrets::{MapSecrets, gather};
use trustkeeper::notary::SigningKey;

fn cosign_verify(public: &Path, image: &str, home: &Path) -> std::process::Output {
    let dir = std::env::var("TRUSTKEEPER_REFEREES").expect("TRUSTKEEPER_REFEREES is not set");
    let env = common::parse_env_file(&Path::new(&dir).join("env"));
    Command::new(&env["COSIGN"])
        .args(["verify", "--insecure-ignore-tlog", "--key"])
        .arg(public)
        .arg(image)
        .env("SSL_CERT_FILE", Testbed::get().var("CA_CERT"))
        .env("HOME", home)
        .output()
        .unwrap()
}

/// The run credentials as the controller gathers them, with the chain `cert` in Secret `cert`.
async fn gathered(
    tb: &Testbed,
    seed: &common::Seed,
    spec: &SignedImageSpec,
    cert: &str,
) -> trustkeeper::engine::RunSecrets {
    let key = std::fs::read(seed.var("DELEGATION_KEY")).unwrap();
    let pass = std::fs::read(seed.var("DELEGATION_PASSPHRASE_FILE")).unwrap();
    let pass = String::from_utf8(pass).unwrap();
    let source = MapSecrets::default()
        .with_secret(
            "ns",
            "k",
            None,
            &[("key.pem", &key), ("passphrase", pass.trim().as_bytes())],
        )
        .with_secret(
            "ns",
            "cert",
            Some("kubernetes.io/tls"),
            &[("tls.crt", cert.as_bytes()), ("tls.key", b"unused here")],
        );
    let mut creds = gather(&source, "ns", spec).await.unwrap();
    let ca = tb.ca_pem();
    creds.registry_ca = Some(ca.clone());
    creds.notary_ca = Some(ca);
    creds
}

fn events(o: &trustkeeper::engine::Outcome, reason: &str) -> usize {
    o.events.iter().filter(|e| e.reason == reason).count()
}

#[tokio::test]
async fn three_formats_on_one_reconcile_and_a_renewed_certificate_signs_again() {
    let tb = Testbed::get();
    let seed = tb.seed("engine-formats");
    let tags = ["v1", "multi", "oci-multi"];
    let yaml = format!(
        "image: {}\ntags: {tags:?}\nsigningKey: {{secretRef: {{name: k}}}}\nnotary: {{url: {:?}}}\n\
         formats: [notary, cosign, notation]\nnotation: {{certificateSecretRef: {{name: cert}}}}\n",
        seed.gun,
        tb.var("NOTARY_URL")
    );
    let spec: SignedImageSpec = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(
        spec.notation.as_ref().unwrap().certificate_secret_ref.key,
        "tls.crt"
    );
    let pass = std::fs::read_to_string(seed.var("DELEGATION_PASSPHRASE_FILE")).unwrap();
    let key = SigningKey::from_pem(
        &std::fs::read(seed.var("DELEGATION_KEY")).unwrap(),
        Some(&SecretString::from(pass.trim().to_string())),
    )
    .unwrap()
    .remove(0);
    let now = jiff::Timestamp::now();
    let cert1 = common::notation::self_signed_pem(&key, "tk-engine-1", now);

    // one engine for the first run and the quiet one, as the operator keeps it
    let engine = Engine::default();
    let o = common::run_engine_as(
        engine.clone(),
        "t",
        &spec,
        gathered(tb, &seed, &spec, &cert1).await,
        None,
    )
    .await;
    assert_eq!(ready(&o).0, "True", "{:?}", ready(&o));
    // the seed signed v1 only: the new tags go into notary (into each delegation holding our key)
    assert!(events(&o, "Signed") >= 2, "{:?}", o.events);
    assert_eq!(events(&o, "SignedCosign"), tags.len(), "{:?}", o.events);
    assert_eq!(events(&o, "SignedNotation"), tags.len(), "{:?}", o.events);
    let notation_entries: Vec<_> = (o.status.signatures.iter())
        .filter(|s| s.format == SignatureFormat::Notation)
        .collect();
    assert_eq!(
        notation_entries.len(),
        tags.len(),
        "{:?}",
        o.status.signatures
    );
    let until = notation_entries[0].until.expect("notation has an until");
    assert!(until.0 > now + jiff::SignedDuration::from_hours(24 * 365));
    assert_eq!(
        (o.status.signatures.iter())
            .filter(|s| s.format == SignatureFormat::Cosign)
            .count(),
        tags.len()
    );

    // the three referees agree
    let dir = tempfile::tempdir().unwrap();
    let cert1_path = dir.path().join("cert1.pem");
    std::fs::write(&cert1_path, &cert1).unwrap();
    let home1 = dir.path().join("home1");
    trust(&home1, "tk1", &cert1_path);
    let listed = tb.notary_digests(&seed.gun, None);
    let public = Path::new(tb.var("TESTBED_KEYS_DIR")).join("delegation.pub.pem");
    for tag in tags {
        assert_eq!(listed[tag], seed.digest(tag), "notary {tag}");
        let image = format!("{}@sha256:{}", seed.gun, seed.digest(tag));
        let v = cosign_verify(&public, &image, dir.path());
        assert!(v.status.success(), "cosign {tag}: {}", text(&v));
        let v = notation(&home1).arg("verify").arg(&image).output().unwrap();
        assert!(v.status.success(), "notation {tag}: {}", text(&v));
    }

    // quiet: the same status, no Event, nothing pushed
    let again = common::run_engine_as(
        engine.clone(),
        "t",
        &spec,
        gathered(tb, &seed, &spec, &cert1).await,
        Some(&o.status),
    )
    .await;
    assert_eq!(again.status, o.status);
    assert!(again.events.is_empty(), "{:?}", again.events);
    assert_eq!(
        (again.requests.registry.put, again.requests.registry.post),
        (0, 0)
    );
    // steady state, beside notary's own reads, per digest: cosign's `.sig` manifest (1 GET), and
    // for Notation the referrers tag (1 GET), where our signature is listed under its digest:
    // the status holds that digest, verified when it was made, so it is not read again; the
    // referrers API is not asked again (the first run found the 404)
    let notary_only: SignedImageSpec =
        serde_saphyr::from_str(&yaml.replace("[notary, cosign, notation]", "[notary]")).unwrap();
    let base = common::run_engine_as(
        Engine::default(),
        "t",
        &notary_only,
        gathered(tb, &seed, &spec, &cert1).await,
        Some(&again.status),
    )
    .await;
    let (with, without) = (again.requests.registry, base.requests.registry);
    assert_eq!(
        with.get,
        without.get + 2 * tags.len() as u64,
        "{with:?} vs {without:?}"
    );
    assert_eq!(with.head, without.head);

    // the certificate renewed in the Secret: new Notation signatures only, by the new leaf
    let cert2 = common::notation::self_signed_pem(
        &key,
        "tk-engine-2",
        now - jiff::SignedDuration::from_mins(5),
    );
    assert_ne!(cert1, cert2);
    let renewed = common::run_engine_as(
        Engine::default(),
        "t",
        &spec,
        gathered(tb, &seed, &spec, &cert2).await,
        Some(&again.status),
    )
    .await;
    assert_eq!(ready(&renewed).0, "True", "{:?}", ready(&renewed));
    assert_eq!(
        events(&renewed, "SignedNotation"),
        tags.len(),
        "{:?}",
        renewed.events
    );
    assert_eq!(
        events(&renewed, "SignedCosign") + events(&renewed, "Signed"),
        0
    );
    let old_signer = &notation_entries[0].signer;
    assert!(
        (renewed.status.signatures.iter())
            .filter(|s| s.format == SignatureFormat::Notation)
            .all(|s| &s.signer != old_signer)
    );
    let cert2_path = dir.path().join("cert2.pem");
    std::fs::write(&cert2_path, &cert2).unwrap();
    let home2 = dir.path().join("home2");
    trust(&home2, "tk2", &cert2_path);
    for tag in tags {
        let image = format!("{}@sha256:{}", seed.gun, seed.digest(tag));
        let v = notation(&home2).arg("verify").arg(&image).output().unwrap();
        assert!(v.status.success(), "notation (renewed) {tag}: {}", text(&v));
    }
}
