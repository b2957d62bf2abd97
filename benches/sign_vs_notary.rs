//! trustkeeper against the real notary Go client, side by side in one run on the same testbed.
//!
//! Timed: our `trustkeeper sign` / `witness` processes end to end, started cold as a CI step
//! starts them (trust directory already populated and current), against the Go client's
//! processes (`/usr/bin/notary` directly, not the testbed's shell wrapper). Also the same
//! 1-target sign in process. Medians over BENCH_ITERATIONS (default 7) runs, interleaved (each
//! client first in every other iteration), and their ratios.
//!
//! Like for like: `notary addhash` is given each target's digest and size, and so is our
//! `sign` in the gated rows (`--digest`, `--size`). Two ungated rows time our `sign` looking
//! the tags up in the registry instead (one manifest HEAD per tag), against the same Go figures.
//!
//! Each client has a repository of its own, seeded alike, so that its cache is what its own
//! last run left (the issue's case: only `timestamp.json` is fetched when the cache is
//! current). A last, ungated row times one new target right after the other client
//! published to the same repository (both caches stale). Every iteration starts from the
//! seeded repositories (`targets/releases` holding one target): what it added is removed,
//! untimed, before the next, so the figures do not depend on the number of iterations.
//!
//! Run: `TRUSTKEEPER_TESTBED=DIR cargo bench --bench sign_vs_notary` (scripts/test.sh does).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Testbed;

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

/// Runs `a` then `b`, or `b` then `a` when `swap`; the results in the order (a, b).
fn in_order<A, B>(swap: bool, a: impl FnOnce() -> A, b: impl FnOnce() -> B) -> (A, B) {
    if swap {
        let rb = b();
        (a(), rb)
    } else {
        let ra = a();
        (ra, b())
    }
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
    // One repository per client, seeded alike: each client's trust directory stays current
    // between its own runs, as a CI step's does when nobody else pushed in between.
    let ours_seed = tb.seed("bench-tk");
    let go_seed = tb.seed("bench-go");
    // The registry look-ups sign into a third one, so that every row's role is as large as the
    // Go client's (a publish costs the server more for a larger role).
    let reg_seed = tb.seed("bench-reg");
    let (ours_gun, go_gun, reg_gun) = (
        ours_seed.gun.clone(),
        go_seed.gun.clone(),
        reg_seed.gun.clone(),
    );
    let key = ours_seed.var("DELEGATION_KEY").to_string();
    let pass = std::fs::read_to_string(ours_seed.var("DELEGATION_PASSPHRASE_FILE"))
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
    let v1_sha = go_seed
        .var("TAG_V1_DIGEST")
        .trim_start_matches("sha256:")
        .to_string();
    let v1_size = go_seed.var("TAG_V1_SIZE").to_string();
    let v1_digest = format!("sha256:{v1_sha}");
    // `pinned`: the digest and size given, as addhash is given them; else the registry is asked.
    let sign_as = |gun: &str, tags: &[String], pinned: bool| {
        let refs: Vec<String> = tags.iter().map(|t| format!("{gun}:{t}")).collect();
        let mut args = vec!["sign"];
        args.extend(refs.iter().map(String::as_str));
        args.extend(["--key", key.as_str(), "--role", "targets/releases"]);
        if pinned {
            // like addhash, which never asks the registry (these tags are not pushed)
            args.extend(["--digest", v1_digest.as_str(), "--size", v1_size.as_str()]);
            args.push("--no-registry-check");
        }
        ours(&args)
    };
    let sign = |gun: &str, tags: &[String]| sign_as(gun, tags, false);
    let addhash = |gun: &str, name: &str| {
        go(&[
            "addhash",
            gun,
            name,
            &v1_size,
            "--sha256",
            &v1_sha,
            "-r",
            "targets/releases",
        ])
    };
    let one = |t: String| vec![t];

    // Warm-up: our trust directory (trust on first use) for both repositories, and the OS
    // caches of both clients. The Go client's trust directory was filled by the seeding.
    check("warm-up sign", sign(&ours_gun, &one("v1".into())));
    check("warm-up sign", sign(&reg_gun, &one("v1".into())));
    check("warm-up sign", sign(&go_gun, &one("v1".into())));
    check("warm-up list", go(&["list", &go_gun]));

    let (mut o1, mut g1, mut o50, mut g50, mut ow, mut gw) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut oa, mut ga, mut inproc, mut or1, mut or50) = (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..iterations {
        // Each client goes first in every other iteration (ABBA): the one that runs right
        // after a publish finds the server still busy with it for a few milliseconds, and
        // that must not always be the same client.
        let go_first = i % 2 == 1;

        // 1 new target + publish: given its digest and size, then looked up in the registry.
        let (ours_1, go_1) = in_order(
            go_first,
            || {
                let t = Instant::now();
                check("sign 1", sign_as(&ours_gun, &one(format!("a{i}")), true));
                let d = t.elapsed();
                rt.block_on(tb.retag(&reg_seed, "v1", &format!("r{i}")));
                let t = Instant::now();
                check("sign 1 (registry)", sign(&reg_gun, &one(format!("r{i}"))));
                (d, t.elapsed())
            },
            || {
                let t = Instant::now();
                check("addhash", addhash(&go_gun, &format!("g{i}")));
                check("publish", go(&["publish", &go_gun]));
                t.elapsed()
            },
        );
        o1.push(ours_1.0);
        or1.push(ours_1.1);
        g1.push(go_1);

        // 50 new targets + one publish, both ways.
        let tags: Vec<String> = (0..50).map(|j| format!("b{i}-{j}")).collect();
        let looked_up: Vec<String> = (0..50).map(|j| format!("s{i}-{j}")).collect();
        for t in &looked_up {
            rt.block_on(tb.retag(&reg_seed, "v1", t));
        }
        let (ours_50, go_50) = in_order(
            go_first,
            || {
                let t = Instant::now();
                check("sign 50", sign_as(&ours_gun, &tags, true));
                let d = t.elapsed();
                let t = Instant::now();
                check("sign 50 (registry)", sign(&reg_gun, &looked_up));
                (d, t.elapsed())
            },
            || {
                let t = Instant::now();
                for j in 0..50 {
                    check("addhash", addhash(&go_gun, &format!("h{i}-{j}")));
                }
                check("publish", go(&["publish", &go_gun]));
                t.elapsed()
            },
        );
        o50.push(ours_50.0);
        or50.push(ours_50.1);
        g50.push(go_50);

        // Witness + publish.
        let (ours_w, go_w) = in_order(
            go_first,
            || {
                let t = Instant::now();
                check(
                    "witness",
                    ours(&[
                        "witness",
                        &ours_gun,
                        "--key",
                        &key,
                        "--role",
                        "targets/releases",
                    ]),
                );
                t.elapsed()
            },
            || {
                let t = Instant::now();
                check(
                    "notary witness",
                    go(&["witness", &go_gun, "targets/releases"]),
                );
                check("publish", go(&["publish", &go_gun]));
                t.elapsed()
            },
        );
        ow.push(ours_w);
        gw.push(go_w);

        // 1 new target right after the other client published to the same repository: both
        // caches are stale (snapshot and the changed role are fetched). Not gated.
        check("other writer", addhash(&ours_gun, &format!("x{i}")));
        check("other writer", go(&["publish", &ours_gun]));
        rt.block_on(tb.retag(&ours_seed, "v1", &format!("d{i}")));
        let t = Instant::now();
        check("sign after", sign(&ours_gun, &one(format!("d{i}"))));
        oa.push(t.elapsed());
        rt.block_on(tb.retag(&go_seed, "v1", &format!("e{i}")));
        check("other writer", sign(&go_gun, &one(format!("e{i}"))));
        let t = Instant::now();
        check("addhash", addhash(&go_gun, &format!("y{i}")));
        check("publish", go(&["publish", &go_gun]));
        ga.push(t.elapsed());

        // In process: the engine alone, 1 new target (the process start and TLS set-up aside).
        rt.block_on(tb.retag(&ours_seed, "v1", &format!("c{i}")));
        inproc.push(rt.block_on(in_process(tb, &ours_seed, &format!("c{i}"), &pass)));

        // Untimed: both repositories back to their seeded content, so that every iteration
        // publishes roles of the same size (the server's publish grows with the role) whatever
        // BENCH_ITERATIONS is; then our trust directory is brought up to date (a sign of the
        // already signed v1 publishes nothing).
        let mut ours_added = vec![
            format!("a{i}"),
            format!("d{i}"),
            format!("x{i}"),
            format!("c{i}"),
        ];
        ours_added.extend(tags);
        let mut reg_added = vec![format!("r{i}")];
        reg_added.extend(looked_up);
        let mut go_added = vec![format!("g{i}"), format!("e{i}"), format!("y{i}")];
        go_added.extend((0..50).map(|j| format!("h{i}-{j}")));
        for (gun, added) in [
            (&ours_gun, ours_added),
            (&reg_gun, reg_added),
            (&go_gun, go_added),
        ] {
            for name in added {
                check(
                    "remove",
                    go(&["remove", gun, &name, "-r", "targets/releases"]),
                );
            }
            check("publish removals", go(&["publish", gun]));
        }
        check("refresh", sign(&ours_gun, &one("v1".into())));
        check("refresh", sign(&reg_gun, &one("v1".into())));
        check("refresh", sign(&go_gun, &one("v1".into())));
    }
    let rows = [
        (
            "1 new target + publish",
            median(&o1),
            median(&g1),
            Some(3.0),
        ),
        (
            "50 new targets + one publish",
            median(&o50),
            median(&g50),
            Some(10.0),
        ),
        ("witness + publish", median(&ow), median(&gw), Some(3.0)),
        (
            "1 tag looked up in the registry",
            median(&or1),
            median(&g1),
            None,
        ),
        (
            "50 tags looked up in the registry",
            median(&or50),
            median(&g50),
            None,
        ),
        (
            "1 new target, after other writer",
            median(&oa),
            median(&ga),
            None,
        ),
    ];
    println!(
        "\ntrustkeeper vs notary Go client, medians of {iterations} interleaved runs on one testbed"
    );
    println!(
        "{:<34} {:>12} {:>12} {:>8}  gate",
        "scenario", "trustkeeper", "notary (Go)", "ratio"
    );
    for (name, ours, go, gate) in rows {
        let ratio = go.as_secs_f64() / ours.as_secs_f64();
        let verdict = match gate {
            Some(g) if ratio >= g => format!(">= {g}x met"),
            Some(g) => format!(">= {g}x MISSED"),
            None => "(not gated)".to_string(),
        };
        println!(
            "{name:<34} {:>12} {:>12} {:>7.1}x  {verdict}",
            ms(ours),
            ms(go),
            ratio
        );
    }
    println!(
        "in-process 1 new target + publish + verify: {}",
        ms(median(&inproc))
    );
}

async fn in_process(tb: &Testbed, seed: &common::Seed, tag: &str, pass: &str) -> Duration {
    use secrecy::SecretString;
    use trustkeeper::engine::{Engine, ReconcileRequest, RunSecrets};
    use zeroize::Zeroizing;
    let yaml = format!(
        "image: {}\ntags: [{tag}]\nroles: [targets/releases]\nsigningKey: {{secretRef: {{name: k}}}}\nnotary: {{url: {:?}}}\n",
        seed.gun,
        tb.var("NOTARY_URL")
    );
    let spec: trustkeeper::api::SignedImageSpec = serde_saphyr::from_str(&yaml).unwrap();
    let ca = tb.ca_pem();
    let creds = RunSecrets {
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
            pinned: Default::default(),
        })
        .await;
    let d = t.elapsed();
    assert!(o.failure_reason.is_none(), "{:?}", o.status.conditions);
    d
}
