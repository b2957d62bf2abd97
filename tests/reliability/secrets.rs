//! Secrets never leak: full command line runs at `RUST_LOG=trace` (sign, witness, inspect,
//! key inspect, reconcile -f, a failing run), the engine's Outcome (status, events) with its
//! trace logs captured in process, and the operator's metrics fed with them, are scanned for the passphrase, the key PEM body, the
//! decrypted key bytes (DER and the private scalar, in hex, base64 and Debug form), the
//! base64 forms a Secret carries, and a notary password.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};

use crate::common::{Seed, Testbed};
use crate::support::{Cli, b64, creds, passphrase, ready, report, resource, run_engine, spec};

const NOTARY_PASSWORD: &str = "s3cret-notary-password-0451";

/// Every form of secret material a leak could take.
fn needles(seed: &Seed) -> Vec<(String, String)> {
    let key_file = seed.var("DELEGATION_KEY");
    let pass = passphrase(seed);
    let pem = std::fs::read_to_string(key_file).unwrap();
    let mut out = vec![
        ("passphrase".to_string(), pass.clone()),
        ("passphrase base64".into(), STANDARD_NO_PAD.encode(&pass)),
        (
            "key file base64".into(),
            b64(pem.as_bytes())[..60].to_string(),
        ),
        ("notary password".into(), NOTARY_PASSWORD.into()),
        (
            "notary auth base64".into(),
            STANDARD_NO_PAD.encode(format!("u:{NOTARY_PASSWORD}")),
        ),
    ];
    for (i, line) in pem
        .lines()
        .filter(|l| l.len() >= 40 && !l.contains(':') && !l.starts_with("-----"))
        .enumerate()
    {
        out.push((format!("PEM body line {i}"), line.to_string()));
    }
    // The decrypted key, as openssl sees it (without notary's PEM headers, which it refuses).
    let bare: String = pem
        .lines()
        .filter(|l| !l.contains(": ") && !l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let bare_file = tmp.path().join("key.pem");
    std::fs::write(&bare_file, bare).unwrap();
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(["pkey", "-in"])
            .arg(&bare_file)
            .arg("-passin")
            .arg(format!("file:{}", seed.var("DELEGATION_PASSPHRASE_FILE")))
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "openssl pkey: {o:?}");
        o.stdout
    };
    let der = openssl(&["-outform", "DER"]);
    out.push((
        "decrypted DER base64".into(),
        STANDARD.encode(&der)[..40].to_string(),
    ));
    out.push((
        "decrypted DER hex".into(),
        hex::encode(&der)[..48].to_string(),
    ));
    let text = String::from_utf8_lossy(&openssl(&["-text", "-noout"])).into_owned();
    let scalar_hex: String = text
        .split("priv:")
        .nth(1)
        .and_then(|s| s.split("pub:").next())
        .unwrap()
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    let scalar = hex::decode(&scalar_hex).unwrap();
    let scalar = &scalar[scalar.len() - 32..];
    out.push(("scalar hex".into(), hex::encode(scalar)[..32].to_string()));
    out.push((
        "scalar HEX".into(),
        hex::encode_upper(scalar)[..32].to_string(),
    ));
    out.push((
        "scalar base64".into(),
        STANDARD.encode(scalar)[..24].to_string(),
    ));
    out.push((
        "scalar base64url".into(),
        URL_SAFE_NO_PAD.encode(scalar)[..24].to_string(),
    ));
    let debug = format!("{:?}", &scalar[..8]);
    out.push((
        "scalar Debug".into(),
        debug.trim_end_matches(']').to_string(),
    ));
    out
}

fn scan(what: &str, text: &str, needles: &[(String, String)]) {
    for (name, n) in needles {
        assert!(!text.contains(n.as_str()), "{what} leaks the {name}");
    }
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn no_secret_in_logs_status_or_events() {
    let tb = Testbed::get();
    let seed = tb.seed("secrets");
    let needles = needles(&seed);
    let key = seed.var("DELEGATION_KEY");
    let gun = seed.gun.clone();
    tb.retag(&seed, "multi", "secret-1").await;

    // The command line at trace level, with a notary password in NOTARY_AUTH.
    let mut cli = Cli::new(Some(passphrase(&seed)));
    cli.extra_env = vec![
        ("RUST_LOG".into(), "trace".into()),
        (
            "NOTARY_AUTH".into(),
            STANDARD.encode(format!("u:{NOTARY_PASSWORD}")),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.yaml");
    std::fs::write(&file, resource(tb, &seed, "[v1, \"secret-*\"]")).unwrap();
    let image = format!("{gun}:secret-1");
    let unknown = format!("{gun}:nope");
    let runs: Vec<(Vec<&str>, bool)> = vec![
        (vec!["key", "inspect", key], true),
        (vec!["sign", &image, "--key", key], true),
        (vec!["witness", &gun, "--key", key], true),
        (vec!["inspect", &gun, "-o", "json"], true),
        (vec!["reconcile", "-f", file.to_str().unwrap()], true),
        (vec!["sign", &unknown, "--key", key], false),
    ];
    let mut bytes = 0;
    let mut lines = 0;
    for (args, ok) in &runs {
        let o = cli.run(tb, args);
        let err = String::from_utf8_lossy(&o.stderr);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.success(), *ok, "{args:?}: {err}");
        // Everything but `key inspect` talks to the servers and logs at trace level.
        assert!(
            args[0] == "key" || err.contains("TRACE"),
            "{args:?}: no trace logs: {err}"
        );
        scan(&format!("{args:?} stderr"), &err, &needles);
        scan(&format!("{args:?} stdout"), &out, &needles);
        bytes += err.len() + out.len();
        lines += err.lines().count();
    }
    let status = std::fs::read_to_string(dir.path().join("app.yaml.status.yaml")).unwrap();
    scan("status file", &status, &needles);
    let mut wrong = Cli::new(Some("wrong-passphrase".into()));
    wrong.extra_env = vec![("RUST_LOG".into(), "trace".into())];
    let o = wrong.run(tb, &["sign", &image, "--key", key]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("wrong-passphrase"),
        "the wrong passphrase leaks"
    );
    scan("wrong passphrase run", &err, &needles);

    // The engine in process, with every log line captured at trace level.
    let buf = Buffer::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    tb.retag(&seed, "oci-v1", "secret-2").await;
    let spec = spec(&gun, tb.var("NOTARY_URL"), &["v1", "secret-*"]);
    let o = run_engine(Duration::from_secs(20), &spec, creds(tb, &seed), None).await;
    assert_eq!(ready(&o).0, "True", "{:?}", ready(&o));
    assert!(!o.events.is_empty(), "a publish has events");
    let mut bad = creds(tb, &seed);
    bad.passphrase = Some("wrong-passphrase".to_string().into());
    let failed = run_engine(Duration::from_secs(20), &spec, bad, Some(&o.status)).await;
    assert_eq!(ready(&failed).1, "WrongPassphrase");
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("TRACE"), "trace logs captured");
    for (what, outcome) in [("outcome", &o), ("failed outcome", &failed)] {
        scan(
            &format!("{what} status"),
            &serde_json::to_string(&outcome.status).unwrap(),
            &needles,
        );
        scan(
            &format!("{what} events"),
            &format!("{:?}", outcome.events),
            &needles,
        );
        scan(&format!("{what} Debug"), &format!("{outcome:?}"), &needles);
    }
    assert!(!format!("{:?}{logs}", failed.events).contains("wrong-passphrase"));
    // The operator's metrics, fed with both outcomes as the controller feeds them.
    let metrics = trustkeeper::controller::metrics::Metrics::new();
    metrics.set_status("ci", "app", &o.status);
    metrics.set_status("ci", "failing", &failed.status);
    if let Some(r) = failed.failure_reason {
        metrics.failure(r);
    }
    let rendered = metrics.render();
    assert!(
        rendered.contains("ci"),
        "metrics carry the images: {rendered}"
    );
    scan("metrics", &rendered, &needles);
    scan("engine trace logs", &logs, &needles);
    report(&format!(
        "secrets: {} runs, 2 engine outcomes and the metrics scanned ({} KiB of output, {} log lines in process) for {} forms of key material and passwords: none found",
        runs.len() + 1,
        (bytes + logs.len()) / 1024,
        logs.lines().count() + lines,
        needles.len()
    ));
}
