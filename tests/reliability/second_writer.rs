//! A second writer: the real Go client publishes `addhash` + `publish` in a loop into the role we
//! sign, while the engine reconciles new tags. Both writers' targets survive; the engine's
//! version-conflict retry (refetch, re-plan, re-sign) is what makes that so.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::Testbed;
use crate::support::{creds, digest, notary_list, ready, report, run_engine, spec};

const GO_TARGETS: usize = 8;
const OUR_TAGS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_writers_targets_survive() {
    let tb = Testbed::get();
    let seed = tb.seed("second-writer");
    let gun = seed.gun.clone();
    let spec = spec(&gun, tb.var("NOTARY_URL"), &["v1", "wr-*"]);
    tb.retag(&seed, "v1", "wr-base").await;
    let first = run_engine(Duration::from_secs(20), &spec, creds(tb, &seed), None).await;
    assert_eq!(ready(&first).0, "True", "{:?}", ready(&first));
    let mut status = first.status;

    // The Go client: one target per publish, retried when the other writer got there first.
    let stop = Arc::new(AtomicBool::new(false));
    let go = {
        let gun = gun.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let tb = Testbed::get();
            let mut published = BTreeMap::new();
            let mut go_failures = 0;
            for i in 0..GO_TARGETS {
                let name = format!("go-{i}");
                let hex = format!("{:064x}", 0xabc000 + i);
                let add = tb.notary(&[
                    "addhash",
                    &gun,
                    &name,
                    "42",
                    "--sha256",
                    &hex,
                    "-r",
                    "targets/releases",
                ]);
                assert!(add.status.success(), "{:?}", add);
                let mut ok = false;
                for _ in 0..10 {
                    let p = tb.notary(&["publish", &gun]);
                    if p.status.success() {
                        ok = true;
                        break;
                    }
                    go_failures += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                assert!(ok, "the Go client could not publish {name}");
                published.insert(name, hex);
                if stop.load(Ordering::SeqCst) && i + 1 >= GO_TARGETS / 2 {
                    break;
                }
            }
            (published, go_failures)
        })
    };

    let sources = ["multi", "oci-v1", "oci-multi", "latest"];
    let mut ours = BTreeMap::new();
    let mut conflicts = 0;
    let mut runs = 0;
    for j in 0..OUR_TAGS {
        let tag = format!("wr-{j}");
        let src = sources[j % sources.len()];
        tb.retag(&seed, src, &tag).await;
        // Conflicts may exhaust one run's retries; the next run converges.
        let mut done = false;
        for _ in 0..5 {
            runs += 1;
            let o = run_engine(
                Duration::from_secs(20),
                &spec,
                creds(tb, &seed),
                Some(&status),
            )
            .await;
            conflicts += o.publishes.saturating_sub(1);
            let (st, reason, msg) = ready(&o);
            status = o.status;
            if st == "True" {
                done = true;
                break;
            }
            assert!(
                reason == "Conflict" || reason == "VerifyFailed",
                "only the other writer may make a run fail: {reason}: {msg}"
            );
        }
        assert!(done, "{tag} never converged");
        ours.insert(tag, digest(&seed, src));
    }
    stop.store(true, Ordering::SeqCst);
    let (theirs, go_failures) = go.join().unwrap();

    let listed = notary_list(tb, &gun, Some("targets/releases"));
    for (t, d) in ours.iter().chain(theirs.iter()) {
        assert_eq!(listed.get(t), Some(d), "target {t} lost");
    }
    assert_eq!(
        listed.get("v1").map(String::as_str),
        Some(digest(&seed, "v1").as_str())
    );
    // A last run changes nothing: the Go client's targets are not ours to remove.
    let o = run_engine(
        Duration::from_secs(20),
        &spec,
        creds(tb, &seed),
        Some(&status),
    )
    .await;
    assert_eq!(ready(&o).0, "True", "{:?}", ready(&o));
    assert_eq!(o.publishes, 0);
    report(&format!(
        "second writer: {} Go client targets and {} of ours survived; {runs} engine runs, {conflicts} version conflicts retried by the engine, {go_failures} Go client publishes retried",
        theirs.len(),
        ours.len()
    ));
}
