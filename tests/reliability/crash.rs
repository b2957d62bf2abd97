//! SIGKILL at random points of `trustkeeper sign` and `trustkeeper reconcile -f` (fixed seed),
//! each time with something new to sign. After every kill the trust file and the status file are
//! parseable or absent (never half-written) and no tag signed before is lost; a final run of each
//! converges, and the Go client lists every tag with its digest.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::common::Testbed;
use crate::support::{Cli, digest, notary_list, passphrase, report, resource};

const KILLS: usize = 20;

/// The trust state slots of a GUN (`trust.a.json`, `trust.b.json`).
fn trust_slots(cli: &Cli, gun: &str) -> [std::path::PathBuf; 2] {
    let dir = cli.trust_dir().join("tuf").join(gun);
    [dir.join("trust.a.json"), dir.join("trust.b.json")]
}

/// Whether a slot file is whole: its state hashes to the checksum it carries.
fn slot_intact(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Slot<'a> {
        sha256: String,
        #[serde(borrow)]
        state: &'a serde_json::value::RawValue,
    }
    serde_json::from_slice::<Slot>(bytes).is_ok_and(|s| {
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            s.state.get().as_bytes(),
        )) == s.sha256
    })
}

fn check_files(cli: &Cli, gun: &str, status: &std::path::Path, when: &str) {
    // A kill may tear the slot being written, never both: the other one is whole.
    let slots: Vec<Vec<u8>> = trust_slots(cli, gun)
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect();
    assert!(
        slots.is_empty() || slots.iter().any(|b| slot_intact(b)),
        "{when}: no whole trust state slot"
    );
    if let Ok(text) = std::fs::read_to_string(status) {
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{when}: status file half-written ({e}):\n{text}"));
        assert!(
            docs.iter().all(|d| d["status"].is_object()),
            "{when}: status file without a status:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_never_corrupts_and_converges() {
    let tb = Testbed::get();
    let seed = tb.seed("crash");
    let gun = seed.gun.clone();
    let cli = Cli::new(Some(passphrase(&seed)));
    let key = seed.var("DELEGATION_KEY").to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.yaml");
    std::fs::write(&file, resource(tb, &seed, "[v1, \"crash-*\"]")).unwrap();
    let status_file = dir.path().join("app.yaml.status.yaml");

    // How long an uninterrupted run takes: kills land anywhere from 0 to 1.2x that.
    tb.retag(&seed, "v1", "crash-base").await;
    let t0 = Instant::now();
    let o = cli.run(tb, &["reconcile", "-f", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let full_ms = (t0.elapsed().as_millis() as u64).max(200);
    let mut expected: BTreeMap<String, String> = notary_list(tb, &gun, Some("targets/releases"));

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x7275_7374);
    let sources = ["multi", "oci-v1", "oci-multi", "latest"];
    let (mut killed, mut finished) = (0, 0);
    let mut wanted = BTreeMap::new();
    for i in 0..KILLS {
        let tag = format!("crash-{i}");
        let src = sources[i % sources.len()];
        tb.retag(&seed, src, &tag).await;
        wanted.insert(tag.clone(), digest(&seed, src));
        let image = format!("{gun}:{tag}");
        let args: Vec<&str> = if i % 2 == 0 {
            vec!["sign", &image, "--key", &key, "--role", "targets/releases"]
        } else {
            vec!["reconcile", "-f", file.to_str().unwrap()]
        };
        let delay = rng.random_range(0..full_ms * 6 / 5);
        let mut child = cli
            .command(tb, &args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        match child.try_wait().unwrap() {
            Some(_) => finished += 1,
            None => {
                child.kill().unwrap(); // SIGKILL
                killed += 1;
            }
        }
        child.wait().unwrap();
        let when = format!("kill {i} after {delay} ms ({})", args[0]);
        check_files(&cli, &gun, &status_file, &when);
        let listed = notary_list(tb, &gun, Some("targets/releases"));
        for (t, d) in &expected {
            assert_eq!(listed.get(t), Some(d), "{when}: tag {t} lost");
        }
        // What a killed run managed to publish is complete: right digest or absent.
        for (t, d) in &wanted {
            assert!(
                listed.get(t).is_none_or(|x| x == d),
                "{when}: {t} has a wrong digest"
            );
        }
        expected.extend(
            listed
                .into_iter()
                .filter(|(t, _)| !t.starts_with("crash-") || wanted.contains_key(t)),
        );
    }

    // A temporary file an earlier kill left behind, old enough to be nobody's: the next write
    // of the same file removes it.
    let stale = status_file.with_file_name(".app.yaml.status.yaml.999999.tmp");
    std::fs::write(&stale, "half").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();

    // Started again without a kill: both commands converge.
    let mut sign = vec!["sign".to_string()];
    sign.extend(wanted.keys().map(|t| format!("{gun}:{t}")));
    sign.extend([
        "--key".into(),
        key.clone(),
        "--role".into(),
        "targets/releases".into(),
    ]);
    let sign: Vec<&str> = sign.iter().map(String::as_str).collect();
    let o = cli.run(tb, &sign);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = cli.run(tb, &["reconcile", "-f", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_files(&cli, &gun, &status_file, "after convergence");
    let status = std::fs::read_to_string(&status_file).unwrap();
    assert!(status.contains("reason: Signed"), "{status}");
    let listed = notary_list(tb, &gun, Some("targets/releases"));
    for (t, d) in expected.iter().chain(wanted.iter()) {
        assert_eq!(listed.get(t), Some(d), "after convergence: {t}");
    }
    // A half-written status file (which atomic writes prevent) would be refused.
    let good = std::fs::read(&status_file).unwrap();
    std::fs::write(&status_file, &good[..good.len() / 2]).unwrap();
    let o = cli.run(tb, &["reconcile", "-f", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is corrupt") && err.contains("remove it"),
        "{err}"
    );
    std::fs::write(&status_file, &good).unwrap();
    // A torn trust state slot (written in place) gives way to the other one; both torn are
    // refused, never silently replaced by trust on first use.
    let slots = trust_slots(&cli, &gun);
    let good: Vec<Vec<u8>> = slots.iter().map(|p| std::fs::read(p).unwrap()).collect();
    std::fs::write(&slots[0], &good[0][..good[0].len() / 2]).unwrap();
    let o = cli.run(tb, &sign);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (p, g) in slots.iter().zip(&good) {
        std::fs::write(p, &g[..g.len() / 2]).unwrap();
    }
    let o = cli.run(tb, &sign);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is corrupt") && err.contains("remove"),
        "{err}"
    );
    for (p, g) in slots.iter().zip(&good) {
        std::fs::write(p, g).unwrap();
    }
    assert!(!stale.exists(), "a stale temporary file is removed");
    let leftovers: Vec<String> = walk(cli.home.path())
        .into_iter()
        .chain(walk(dir.path()))
        .filter(|p| p.ends_with(".tmp"))
        .collect();
    report(&format!(
        "SIGKILL: {killed} runs killed at random points (0-{} ms), {finished} finished first; files never half-written; {} tags converged, none lost; {} recent temporary files left by kills (older ones are removed by the next write)",
        full_ms * 6 / 5,
        wanted.len(),
        leftovers.len()
    ));
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}
