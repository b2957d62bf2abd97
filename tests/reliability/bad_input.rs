//! The bad input corpus (`tests/bad_input/`): every case gets its specific message, its exit code
//! (command line) or Ready reason (engine), and publishes nothing: the server's timestamp version
//! and the Go client's listing are unchanged. Metadata that is tampered, rolled back, oversized or
//! expired is served end to end through the fault proxy here; `tests/notary_refusals.rs` covers
//! the same classes against in-memory servers, byte by byte.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use trustkeeper::api::SignedImageSpec;
use trustkeeper::engine::RunSecrets;
use zeroize::Zeroizing;

use crate::common::{Seed, Testbed};
use crate::fault_proxy::{Action, FaultProxy, Rule};
use crate::support::{Cli, creds, notary_list, passphrase, ready, report, run_engine, spec};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bad_input")
}

/// Lines of a `.cases` file split on `|` (comments and blank lines skipped).
fn cases(file: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(corpus().join(file))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| l.split('|').map(|f| f.trim().to_string()).collect())
        .collect()
}

/// The Go client lists what it listed before, and the timestamp version has not moved.
async fn assert_nothing_published(
    tb: &Testbed,
    gun: &str,
    listed: &std::collections::BTreeMap<String, String>,
    ts: u64,
) {
    assert_eq!(&notary_list(tb, gun, None), listed, "nothing published");
    assert_eq!(timestamp_version(tb, gun).await, ts, "nothing published");
}

pub use crate::common::timestamp_version;

fn pass_of(seed: &Seed, which: &str) -> Option<String> {
    match which {
        "deleg" => Some(passphrase(seed)),
        "targets" => Some(
            std::fs::read_to_string(seed.var("TARGETS_PASSPHRASE_FILE"))
                .unwrap()
                .trim()
                .to_string(),
        ),
        "wrong" => Some("wrong-passphrase".into()),
        "none" => None,
        other => panic!("unknown passphrase {other}"),
    }
}

fn fill(s: &str, seed: &Seed, tb: &Testbed) -> String {
    s.replace("{GUN}", &seed.gun)
        .replace("{KEY}", seed.var("DELEGATION_KEY"))
        .replace("{REPO_KEY}", seed.var("TARGETS_KEY"))
        .replace("{ROOT_KEY}", seed.var("ROOT_KEY"))
        .replace("{BAD}", corpus().to_str().unwrap())
        .replace("{NOTARY_URL}", tb.var("NOTARY_URL"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_bad_input_is_refused_with_its_message_and_exit_code() {
    let tb = Testbed::get();
    let seed = tb.seed("bad-cli");
    let listed = notary_list(tb, &seed.gun, None);
    let ts = timestamp_version(tb, &seed.gun).await;
    let secrets = [passphrase(&seed), "wrong-passphrase".to_string()];
    let mut wrong = vec![];
    let cases = cases("cli.cases");
    for c in &cases {
        let [name, code, pass, needle, args] = &c[..] else {
            panic!("bad case line {c:?}");
        };
        let args = fill(args, &seed, tb);
        let args: Vec<&str> = args.split_whitespace().collect();
        let cli = Cli::new(pass_of(&seed, pass));
        let o = cli.run(tb, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        let out = String::from_utf8_lossy(&o.stdout);
        let code: i32 = code.parse().unwrap();
        let mut problems = vec![];
        if o.status.code() != Some(code) {
            problems.push(format!("exit {:?}, want {code}", o.status.code()));
        }
        if !err.to_lowercase().contains(&needle.to_lowercase()) {
            problems.push(format!("stderr lacks {needle:?}"));
        }
        if code == 1 && err.contains("  ") {
            problems.push("a run of spaces in the message".into());
        }
        if code == 1 && err.trim().lines().count() != 1 {
            problems.push("not one line".into());
        }
        if secrets
            .iter()
            .any(|s| err.contains(s.as_str()) || out.contains(s.as_str()))
        {
            problems.push("a passphrase is in the output".into());
        }
        if !problems.is_empty() {
            wrong.push(format!("{name}: {}: {}", problems.join(", "), err.trim()));
        }
    }
    assert!(
        wrong.is_empty(),
        "cases not as documented:\n{}",
        wrong.join("\n")
    );
    assert_nothing_published(tb, &seed.gun, &listed, ts).await;
    report(&format!(
        "bad input (command line): {} cases refused with their message and exit code, nothing published",
        cases.len()
    ));
}

fn engine_spec(tb: &Testbed, seed: &Seed, changes: &str) -> SignedImageSpec {
    let base = spec(&seed.gun, tb.var("NOTARY_URL"), &["v1", "multi"]);
    let mut v = serde_json::to_value(&base).unwrap();
    for change in changes.split(';').filter(|c| !c.trim().is_empty()) {
        let (field, value) = change.split_once('=').unwrap();
        let value: serde_json::Value =
            serde_saphyr::from_str(&fill(value.trim(), seed, tb)).unwrap();
        v[field.trim()] = value;
    }
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_bad_input_gets_its_reason_and_publishes_nothing() {
    let tb = Testbed::get();
    let seed = tb.seed("bad-engine");
    // Something to sign, so that a run that got past the bad input would publish.
    tb.retag(&seed, "multi", "multi").await;
    let listed = notary_list(tb, &seed.gun, None);
    let ts = timestamp_version(tb, &seed.gun).await;
    let mut wrong = vec![];
    let cases = cases("engine.cases");
    for c in &cases {
        let [name, reason, needle, key, pass, changes] = &c[..] else {
            panic!("bad case line {c:?}");
        };
        let key_path = if key.starts_with('{') {
            fill(key, &seed, tb)
        } else {
            corpus().join(key).display().to_string()
        };
        let mut cr: RunSecrets = creds(tb, &seed);
        cr.signing_key_pem = Zeroizing::new(std::fs::read(&key_path).unwrap_or_default());
        cr.passphrase = pass_of(&seed, pass).map(SecretString::from);
        let mut spec_changes = String::new();
        for ch in changes.split(';') {
            if let Some(ca) = ch.trim().strip_prefix("@notary_ca=") {
                cr.notary_ca = Some(std::fs::read(corpus().join(ca)).unwrap());
            } else {
                spec_changes.push_str(ch);
                spec_changes.push(';');
            }
        }
        let spec = engine_spec(tb, &seed, &spec_changes);
        let o = run_engine(Duration::from_secs(20), &spec, cr, None).await;
        let (st, got, msg) = ready(&o);
        let mut problems = vec![];
        if st != "False" || got != *reason {
            problems.push(format!("{st} {got}, want {reason}"));
        }
        if !msg.to_lowercase().contains(&needle.to_lowercase()) {
            problems.push(format!("message lacks {needle:?}"));
        }
        if o.publishes != 0 {
            problems.push("published".into());
        }
        if msg.contains("  ") {
            problems.push("a run of spaces in the message".into());
        }
        if o.failure_reason
            != Some(got.as_str())
                .filter(|_| st == "False")
                .map(|_| o.failure_reason.unwrap_or_default())
        {
            problems.push("failure_reason differs".into());
        }
        if !problems.is_empty() {
            wrong.push(format!("{name}: {}: {msg}", problems.join(", ")));
        }
    }
    assert!(
        wrong.is_empty(),
        "cases not as documented:\n{}",
        wrong.join("\n")
    );
    assert_nothing_published(tb, &seed.gun, &listed, ts).await;
    report(&format!(
        "bad input (engine): {} cases got their Ready reason and message, nothing published",
        cases.len()
    ));
}

/// Flips one character inside the first signature of a metadata file.
fn tamper(body: &[u8]) -> Vec<u8> {
    let mut b = body.to_vec();
    let text = String::from_utf8_lossy(body);
    let at = text.find("\"sig\":\"").expect("a signature") + 10;
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_metadata_from_the_server_is_refused_and_nothing_is_published() {
    let tb = Testbed::get();
    let ca = tb.ca_pem();
    let cert = std::fs::read(tb.var("TESTBED_SERVER_CERT")).unwrap();
    let key = std::fs::read(tb.var("TESTBED_SERVER_KEY")).unwrap();
    let proxy = FaultProxy::start(tb.var("NOTARY_URL"), &ca, &cert, &key).await;
    let seed = tb.seed("bad-metadata");
    tb.retag(&seed, "v1", "fresh-0").await;
    let spec = spec(&seed.gun, &proxy.url, &["v1", "multi", "fresh-*"]);
    let t = Duration::from_secs(20);
    let first = run_engine(t, &spec, creds(tb, &seed), None).await;
    assert_eq!(ready(&first).0, "True", "{:?}", ready(&first));
    // An old timestamp, validly signed by the server, to replay after the next publish.
    let old_timestamp = {
        let http = reqwest::Client::builder()
            .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&ca).unwrap())
            .build()
            .unwrap();
        let url = format!(
            "{}/v2/{}/_trust/tuf/timestamp.json",
            tb.var("NOTARY_URL"),
            seed.gun
        );
        http.get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    };
    tb.retag(&seed, "oci-v1", "fresh-1").await;
    let o = run_engine(t, &spec, creds(tb, &seed), Some(&first.status)).await;
    assert_eq!(ready(&o).0, "True", "{:?}", ready(&o));
    let mut status = o.status;
    // Now something new is pending for every case below.
    tb.retag(&seed, "oci-multi", "fresh-2").await;
    let listed = notary_list(tb, &seed.gun, None);
    let ts = timestamp_version(tb, &seed.gun).await;

    let replay: Arc<Vec<u8>> = Arc::new(old_timestamp);
    let cases: Vec<(&str, Rule, &str, &str)> = vec![
        (
            "tampered targets signature",
            Rule::new(Some("GET"), Action::Replace(Arc::new(tamper))).path("/targets."),
            "MetadataInvalid",
            "targets",
        ),
        (
            "tampered delegation signature",
            Rule::new(Some("GET"), Action::Replace(Arc::new(tamper))).path("/targets/releases"),
            "MetadataInvalid",
            "targets/releases",
        ),
        (
            "rolled back timestamp",
            Rule::new(
                Some("GET"),
                Action::Replace(Arc::new(move |_| replay.as_ref().clone())),
            )
            .path("timestamp.json"),
            "RollbackDetected",
            "timestamp",
        ),
        (
            "oversized timestamp",
            Rule::new(
                Some("GET"),
                Action::Replace(Arc::new(|b| {
                    let mut v = b.to_vec();
                    v.resize(b.len() + (2 << 20), b' ');
                    v
                })),
            )
            .path("timestamp.json"),
            "MetadataInvalid",
            "timestamp",
        ),
        (
            "truncated snapshot",
            Rule::new(
                Some("GET"),
                Action::Replace(Arc::new(|b| b[..b.len() / 2].to_vec())),
            )
            .path("snapshot"),
            "MetadataInvalid",
            "snapshot",
        ),
    ];
    let mut wrong = vec![];
    let n = cases.len() + 1;
    for (name, rule, reason, needle) in cases {
        proxy.clear();
        proxy.add(rule.times(1000));
        let o = run_engine(t, &spec, creds(tb, &seed), Some(&status)).await;
        proxy.clear();
        let (st, got, msg) = ready(&o);
        if st != "False"
            || got != reason
            || !msg.contains(needle)
            || o.publishes != 0
            || msg.contains("  ")
        {
            wrong.push(format!(
                "{name}: {st} {got} (want {reason} naming {needle:?}), {} publishes: {msg}",
                o.publishes
            ));
        }
        // The trust anchor of the failed run is what the next run starts from.
        status = o.status;
    }
    // An expired repository role that only the repository key holder can renew.
    tb.run(&["age", tb.dir.to_str().unwrap(), &seed.gun, "targets", "-1d"]);
    let listed_aged = notary_list_allow_expired(tb, &seed.gun);
    let ts_aged = timestamp_version(tb, &seed.gun).await;
    let o = run_engine(t, &spec, creds(tb, &seed), Some(&status)).await;
    let (st, got, msg) = ready(&o);
    if st != "False"
        || got != "Expiring"
        || !msg.contains("trustkeeper witness")
        || o.publishes != 0
        || msg.contains("  ")
    {
        wrong.push(format!("expired targets: {st} {got}: {msg}"));
    }
    assert!(
        wrong.is_empty(),
        "cases not as documented:\n{}",
        wrong.join("\n")
    );
    assert_eq!(ts_aged, ts + 1, "only `age` published");
    assert_eq!(
        timestamp_version(tb, &seed.gun).await,
        ts_aged,
        "nothing published"
    );
    assert!(listed_aged.is_empty() || listed_aged == listed);
    report(&format!(
        "bad input (metadata served through the proxy): {n} cases refused (tampered, rolled back, oversized, truncated, expired), nothing published"
    ));
}

/// `notary list` of a repository whose targets expired: the Go client refuses (empty map).
fn notary_list_allow_expired(
    tb: &Testbed,
    gun: &str,
) -> std::collections::BTreeMap<String, String> {
    let out = tb.notary(&["list", gun]);
    if !out.status.success() {
        return Default::default();
    }
    notary_list(tb, gun, None)
}
