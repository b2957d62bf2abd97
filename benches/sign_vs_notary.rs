//! trustkeeper against the real notary Go client, side by side in one run on the same testbed.
//!
//! Timed: our `trustkeeper sign` / `witness` processes end to end, started cold as a CI step
//! starts them (trust directory already populated), against the Go client's processes
//! (`/usr/bin/notary` directly, not the testbed's shell wrapper). Also the same 1-target sign
//! in process. Medians over BENCH_ITERATIONS (default 7) runs, interleaved, and their ratios.
//! Every iteration starts from the seeded repository (`targets/releases` holding one target):
//! what was added is removed, untimed, before the next, so the figures do not depend on the
//! number of iterations. Each timed run of either client follows a publish by the other, so
//! both refresh their caches as a CI step after someone else's push would.
//!
//! Run: `TRUSTKEEPER_TESTBED=DIR cargo bench --bench sign_vs_notary` (scripts/test.sh does).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Testbed;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn check(what: &str, out: std::process::Output) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() {
    trustkeeper::tls::install_crypto_provider();
    let iterations: usize = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let tb = Testbed::get();
    let seed = tb.seed("bench");
    let gun = seed.gun.clone();
    let key = seed.var("DELEGATION_KEY").to_string();
    let pass = std::fs::read_to_string(seed.var("DELEGATION_PASSPHRASE_FILE"))
        .unwrap()
        .trim()
        .to_string();
    let keys_dir = tb.var("TESTBED_KEYS_DIR").to_string();
    let trust_dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_trustkeeper");
    let rt = tokio::runtime::Runtime::new().unwrap();

    let ours = |args: &[&str]| {
        Command::new(bin)
            .args(args)
            .env("TRUSTKEEPER_TRUST_DIR", trust_dir.path())
            .env("TRUSTKEEPER_CA_FILE", tb.var("CA_CERT"))
            .env("TRUSTKEEPER_NOTARY_URL", tb.var("NOTARY_URL"))
            .env("TRUSTKEEPER_PASSPHRASE", &pass)
            .env("HOME", trust_dir.path())
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
    let v1_sha = seed
        .var("TAG_V1_DIGEST")
        .trim_start_matches("sha256:")
        .to_string();
    let v1_size = seed.var("TAG_V1_SIZE").to_string();

    // Warm-up: populate our trust directory (trust on first use) and the OS caches of both.
    check(
        "warm-up sign",
        ours(&[
            "sign",
            &format!("{gun}:v1"),
            "--key",
            &key,
            "--role",
            "targets/releases",
        ]),
    );
    check("warm-up list", go(&["list", &gun]));

    let (mut o1, mut g1, mut o50, mut g50, mut ow, mut gw, mut inproc) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in 0..iterations {
        // 1 new target + publish.
        rt.block_on(tb.retag(&seed, "v1", &format!("a{i}")));
        let t = Instant::now();
        check(
            "sign 1",
            ours(&[
                "sign",
                &format!("{gun}:a{i}"),
                "--key",
                &key,
                "--role",
                "targets/releases",
            ]),
        );
        o1.push(t.elapsed());
        let t = Instant::now();
        check(
            "addhash",
            go(&[
                "addhash",
                &gun,
                &format!("g{i}"),
                &v1_size,
                "--sha256",
                &v1_sha,
                "-r",
                "targets/releases",
            ]),
        );
        check("publish", go(&["publish", &gun]));
        g1.push(t.elapsed());

        // 50 new targets + one publish.
        let tags: Vec<String> = (0..50).map(|j| format!("b{i}-{j}")).collect();
        for t in &tags {
            rt.block_on(tb.retag(&seed, "multi", t));
        }
        let refs: Vec<String> = tags.iter().map(|t| format!("{gun}:{t}")).collect();
        let mut args = vec!["sign"];
        args.extend(refs.iter().map(String::as_str));
        args.extend(["--key", key.as_str(), "--role", "targets/releases"]);
        let t = Instant::now();
        check("sign 50", ours(&args));
        o50.push(t.elapsed());
        let t = Instant::now();
        for j in 0..50 {
            check(
                "addhash",
                go(&[
                    "addhash",
                    &gun,
                    &format!("h{i}-{j}"),
                    &v1_size,
                    "--sha256",
                    &v1_sha,
                    "-r",
                    "targets/releases",
                ]),
            );
        }
        check("publish", go(&["publish", &gun]));
        g50.push(t.elapsed());

        // Witness + publish.
        let t = Instant::now();
        check(
            "witness",
            ours(&["witness", &gun, "--key", &key, "--role", "targets/releases"]),
        );
        ow.push(t.elapsed());
        let t = Instant::now();
        check("notary witness", go(&["witness", &gun, "targets/releases"]));
        check("publish", go(&["publish", &gun]));
        gw.push(t.elapsed());

        // In process: the engine alone, 1 new target (the process start and TLS set-up aside).
        rt.block_on(tb.retag(&seed, "v1", &format!("c{i}")));
        inproc.push(rt.block_on(in_process(tb, &seed, &format!("c{i}"), &pass)));

        // Untimed: back to the seeded content, so that every iteration publishes roles of the
        // same size (the server's publish grows with the role) whatever BENCH_ITERATIONS is.
        let added = [format!("a{i}"), format!("g{i}"), format!("c{i}")]
            .into_iter()
            .chain((0..50).flat_map(|j| [format!("b{i}-{j}"), format!("h{i}-{j}")]));
        for name in added {
            check(
                "remove",
                go(&["remove", &gun, &name, "-r", "targets/releases"]),
            );
        }
        check("publish removals", go(&["publish", &gun]));
    }
    let rows = [
        ("1 new target + publish", median(o1), median(g1), 3.0),
        (
            "50 new targets + one publish",
            median(o50),
            median(g50),
            10.0,
        ),
        ("witness + publish", median(ow), median(gw), 3.0),
    ];
    println!(
        "\ntrustkeeper vs notary Go client, medians of {iterations} interleaved runs on one testbed"
    );
    println!(
        "{:<32} {:>14} {:>14} {:>8}  gate",
        "scenario", "trustkeeper", "notary (Go)", "ratio"
    );
    for (name, ours, go, gate) in rows {
        let ratio = go.as_secs_f64() / ours.as_secs_f64();
        let verdict = if ratio >= gate { "met" } else { "MISSED" };
        println!(
            "{name:<32} {:>14} {:>14} {:>7.1}x  >= {gate}x {verdict}",
            ms(ours),
            ms(go),
            ratio
        );
    }
    println!(
        "in-process 1 new target + publish + verify: {}",
        ms(median(inproc))
    );
}

async fn in_process(tb: &Testbed, seed: &common::Seed, tag: &str, pass: &str) -> Duration {
    use secrecy::SecretString;
    use trustkeeper::engine::{Credentials, Engine, ReconcileRequest};
    use zeroize::Zeroizing;
    let yaml = format!(
        "image: {}\ntags: [{tag}]\nroles: [targets/releases]\nsigningKey: {{secretRef: {{name: k}}}}\nnotary: {{url: {:?}}}\n",
        seed.gun,
        tb.var("NOTARY_URL")
    );
    let spec: trustkeeper::api::SignedImageSpec = serde_saphyr::from_str(&yaml).unwrap();
    let ca = tb.ca_pem();
    let creds = Credentials {
        signing_key_pem: Zeroizing::new(std::fs::read(seed.var("DELEGATION_KEY")).unwrap()),
        passphrase: Some(SecretString::from(pass.to_string())),
        registry_ca: Some(ca.clone()),
        notary_ca: Some(ca),
        ..Default::default()
    };
    let t = Instant::now();
    let o = Engine::default()
        .run(ReconcileRequest {
            id: "bench",
            spec: &spec,
            generation: None,
            previous: None,
            credentials: creds,
        })
        .await;
    let d = t.elapsed();
    assert!(o.failure_reason.is_none(), "{:?}", o.status.conditions);
    d
}
