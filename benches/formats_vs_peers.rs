//! One `trustkeeper sign` making several signature formats for 50 new tags, against each
//! format's own tool doing the same on the same testbed in the same run: the notary Go client
//! (50 `addhash` + one `publish`), cosign 3.1 (50 `cosign sign --key`, no transparency log) and
//! notation 1.3 (50 `notation sign` with its test key and certificate).
//! Medians over FORMATS_BENCH_ITERATIONS (default 3) runs, interleaved, and the ratio of the
//! peers' sum to ours.
//!
//! Like for like: every tag has a digest of its own (the seeded `v1` manifest with an
//! annotation per tag, pushed before the timing), both sides look nothing up that the other
//! is given (the Go client is given digests and sizes, as addhash takes them, and cosign the
//! digest references it signs; our `sign` asks the registry for all 50, one HEAD each, and
//! checks each new digest with one GET), and each side has a repository of its own.
//!
//! Run: `TRUSTKEEPER_TESTBED=DIR TRUSTKEEPER_REFEREES=DIR cargo bench --bench formats_vs_peers`
//! (scripts/test.sh does).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::Testbed;

const TAGS: usize = 50;

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn check(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// The seeded `v1` manifest with one annotation more: a digest of its own, the same blobs.
fn variant(v1: &[u8], label: &str) -> Vec<u8> {
    let mut m: serde_json::Value = serde_json::from_slice(v1).expect("the seeded manifest is JSON");
    m["annotations"] = serde_json::json!({ "dev.trustkeeper.bench": label });
    serde_json::to_vec(&m).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn main() {
    trustkeeper::tls::install_crypto_provider();
    let iterations: usize = std::env::var("FORMATS_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let referees = std::env::var("TRUSTKEEPER_REFEREES").expect(
        "TRUSTKEEPER_REFEREES is not set: this bench times cosign; install the referees with \
         tests/support/referees.sh install DIR and export TRUSTKEEPER_REFEREES=DIR",
    );
    let tools = common::parse_env_file(&Path::new(&referees).join("env"));
    let cosign_bin = tools
        .get("COSIGN")
        .expect("the referees' env names COSIGN")
        .clone();
    let notation_bin = (tools.get("NOTATION"))
        .expect("the referees' env names NOTATION")
        .clone();
    let tb = Testbed::get();
    let ours_seed = tb.seed("bench-fmt-tk");
    let peer_seed = tb.seed("bench-fmt-go");
    let media_type = ours_seed.var("TAG_V1_MEDIATYPE").to_string();
    // Each repository's own blobs: the seeds push images of their own.
    let (v1, peer_v1) = (ours_seed.manifest("v1"), peer_seed.manifest("v1"));
    let peer_media_type = peer_seed.var("TAG_V1_MEDIATYPE").to_string();
    let key = ours_seed.var("DELEGATION_KEY").to_string();
    let pass = std::fs::read_to_string(ours_seed.var("DELEGATION_PASSPHRASE_FILE"))
        .unwrap()
        .trim()
        .to_string();
    let keys_dir = tb.var("TESTBED_KEYS_DIR").to_string();
    let home = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_trustkeeper");
    let rt = tokio::runtime::Runtime::new().unwrap();

    let ours = |args: &[&str]| {
        Command::new(bin)
            .args(args)
            .env("TRUSTKEEPER_TRUST_DIR", home.path().join("trust"))
            .env("TRUSTKEEPER_CA_FILE", tb.var("CA_CERT"))
            .env("TRUSTKEEPER_NOTARY_URL", tb.var("NOTARY_URL"))
            .env("TRUSTKEEPER_PASSPHRASE", &pass)
            .env("HOME", home.path())
            .output()
            .unwrap()
    };
    let go = |args: &[&str]| {
        let mut c = Command::new("/usr/bin/notary");
        c.arg("-c").arg(tb.var("NOTARY_CLIENT_CONFIG")).args(args);
        for (var, file) in [
            ("NOTARY_ROOT_PASSPHRASE", "root"),
            ("NOTARY_TARGETS_PASSPHRASE", "targets"),
            ("NOTARY_SNAPSHOT_PASSPHRASE", "snapshot"),
            ("NOTARY_DELEGATION_PASSPHRASE", "delegation"),
        ] {
            let p = std::fs::read_to_string(format!("{keys_dir}/{file}.passphrase"))
                .unwrap_or_default();
            c.env(var, p.trim());
        }
        c.output().unwrap()
    };
    let cosign = |args: &[&str]| {
        Command::new(&cosign_bin)
            .args(args)
            .env("SSL_CERT_FILE", tb.var("CA_CERT"))
            .env("HOME", home.path())
            .env("DOCKER_CONFIG", home.path().join(".docker"))
            .env("COSIGN_PASSWORD", "bench")
            .env_remove("COSIGN_EXPERIMENTAL")
            .output()
            .unwrap()
    };
    let notation = |args: &[&str]| {
        Command::new(&notation_bin)
            .args(args)
            .env("SSL_CERT_FILE", tb.var("CA_CERT"))
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join(".config"))
            .output()
            .unwrap()
    };
    // notation's own test key and certificate, its default signing key.
    check(
        "notation cert generate-test",
        notation(&["cert", "generate-test", "--default", "bench"]),
    );
    // cosign's own key pair, as a cosign user has one.
    let prefix = home.path().join("cosign");
    check(
        "cosign generate-key-pair",
        cosign(&[
            "generate-key-pair",
            "--output-key-prefix",
            prefix.to_str().unwrap(),
        ]),
    );
    let cosign_key = prefix.with_extension("key");
    // Our signing certificate for Notation (self-signed, from our key).
    let ours_cert = home.path().join("ours.crt");
    check(
        "key certificate",
        ours(&[
            "key",
            "certificate",
            "--key",
            &key,
            "--subject",
            "CN=bench-signer",
            "--out",
            ours_cert.to_str().unwrap(),
        ]),
    );
    // The public half of our key, for the read-back check at the end.
    let ours_pub = home.path().join("ours.pub");
    let out = check("key public", ours(&["key", "public", &key]));
    std::fs::write(&ours_pub, &out.stdout).unwrap();

    // Warm-up: trust on first use for our repository, the OS caches of every tool.
    check(
        "warm-up sign",
        ours(&["sign", &format!("{}:v1", ours_seed.gun), "--key", &key]),
    );
    check("warm-up list", go(&["list", &peer_seed.gun]));

    let (mut o, mut g, mut c, mut n) = (vec![], vec![], vec![], vec![]);
    let mut last_ours = Vec::new();
    for i in 0..iterations {
        // 50 new tags with digests of their own in each repository, pushed untimed.
        let mut ours_tags = Vec::new();
        let mut peer_digests = Vec::new();
        for j in 0..TAGS {
            let label = format!("{i}-{j}");
            let m = variant(&v1, &format!("tk-{label}"));
            let tag = format!("f{label}");
            rt.block_on(tb.push_manifest(&ours_seed.repository, &tag, &m, &media_type));
            ours_tags.push((tag, sha256_hex(&m)));
            let m = variant(&peer_v1, &format!("go-{label}"));
            let tag = format!("g{label}");
            rt.block_on(tb.push_manifest(&peer_seed.repository, &tag, &m, &peer_media_type));
            peer_digests.push((tag, sha256_hex(&m), m.len()));
        }
        let ours_run = || {
            let refs: Vec<String> = (ours_tags.iter())
                .map(|(t, _)| format!("{}:{t}", ours_seed.gun))
                .collect();
            let mut args = vec!["sign"];
            args.extend(refs.iter().map(String::as_str));
            args.extend(["--key", &key, "--role", "targets/releases"]);
            let cert = ours_cert.to_str().unwrap();
            args.extend(["--format", "notary,cosign,notation", "--certificate", cert]);
            let t = Instant::now();
            check(
                "trustkeeper sign --format notary,cosign,notation",
                ours(&args),
            );
            t.elapsed()
        };
        let peers_run = || {
            let t = Instant::now();
            for (tag, sha, size) in &peer_digests {
                let size = size.to_string();
                let args = [
                    "addhash",
                    &peer_seed.gun,
                    tag,
                    &size,
                    "--sha256",
                    sha,
                    "-r",
                    "targets/releases",
                ];
                check("notary addhash", go(&args));
            }
            check("notary publish", go(&["publish", &peer_seed.gun]));
            let notary = t.elapsed();
            let t = Instant::now();
            for (_, sha, _) in &peer_digests {
                let image = format!("{}@sha256:{sha}", peer_seed.gun);
                let key = cosign_key.to_str().unwrap();
                check(
                    "cosign sign",
                    cosign(&[
                        "sign",
                        "--yes",
                        "--tlog-upload=false",
                        "--use-signing-config=false",
                        "--new-bundle-format=false",
                        "--key",
                        key,
                        &image,
                    ]),
                );
            }
            let cosign_d = t.elapsed();
            let t = Instant::now();
            for (_, sha, _) in &peer_digests {
                let image = format!("{}@sha256:{sha}", peer_seed.gun);
                check("notation sign", notation(&["sign", &image]));
            }
            (notary, cosign_d, t.elapsed())
        };
        let (ours_d, (go_d, cosign_d, notation_d)) = if i % 2 == 1 {
            let p = peers_run();
            (ours_run(), p)
        } else {
            let d = ours_run();
            (d, peers_run())
        };
        o.push(ours_d);
        g.push(go_d);
        c.push(cosign_d);
        n.push(notation_d);
        last_ours = ours_tags;
    }

    // What was timed is real: the Go client lists our last tags, cosign verifies one of them.
    let listed =
        String::from_utf8(check("notary list", go(&["list", &ours_seed.gun])).stdout).unwrap();
    for (tag, sha) in &last_ours {
        assert!(
            listed
                .lines()
                .any(|l| l.contains(tag.as_str()) && l.contains(sha.as_str())),
            "the Go client does not list {tag} = {sha}"
        );
    }
    let (_, sha) = &last_ours[0];
    check(
        "cosign verify",
        cosign(&[
            "verify",
            "--insecure-ignore-tlog",
            "--key",
            ours_pub.to_str().unwrap(),
            &format!("{}@sha256:{sha}", ours_seed.gun),
        ]),
    );

    // and notation verifies it under a trust policy for our certificate.
    let cert = ours_cert.to_str().unwrap();
    check(
        "notation cert add",
        notation(&["cert", "add", "--type", "ca", "--store", "ours", cert]),
    );
    let policy = home.path().join("trustpolicy.json");
    std::fs::write(
        &policy,
        serde_json::json!({"version": "1.0", "trustPolicies": [{
            "name": "bench", "registryScopes": ["*"],
            "signatureVerification": {"level": "strict"},
            "trustStores": ["ca:ours"], "trustedIdentities": ["*"]}]})
        .to_string(),
    )
    .unwrap();
    check(
        "notation policy import",
        notation(&["policy", "import", "--force", policy.to_str().unwrap()]),
    );
    check(
        "notation verify",
        notation(&["verify", &format!("{}@sha256:{sha}", ours_seed.gun)]),
    );

    let (om, gm, cm, nm) = (median(&o), median(&g), median(&c), median(&n));
    let peers = gm + cm + nm;
    println!(
        "formats bench: {TAGS} new tags signed in notary + cosign + notation, medians of {iterations} (2 cores shared with the testbed)"
    );
    for (what, d) in [
        (
            "trustkeeper sign --format notary,cosign,notation (one process)",
            om,
        ),
        ("notary Go client: 50 addhash + publish", gm),
        ("cosign 3.1: 50 cosign sign --key", cm),
        ("notation 1.3: 50 notation sign", nm),
    ] {
        println!("{what:<64} {:>10}", ms(d));
    }
    let ratio = peers.as_secs_f64() / om.as_secs_f64();
    println!(
        "formats: peers {} vs trustkeeper {}: {ratio:.1}x (aim >= 20x: {})",
        ms(peers),
        ms(om),
        if ratio >= 20.0 { "met" } else { "not met" }
    );
}
