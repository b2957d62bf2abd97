//! Scale bench of the controller's own share (fake engine, Secrets from a counting map) against
//! the real API server: N SignedImages (`TRUSTKEEPER_SCALE_N`, default 1000). Prints the time
//! for a first cycle (every status new: one write and one Event each) and for a cycle with
//! nothing new (a restarted controller re-reconciles all: no writes, no Events), the Secret
//! reads, and the peak RSS of this process. Ignored by default: run with
//! `cargo test --release --test controller_scale -- --ignored --nocapture`.

mod controller_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use controller_support::*;
use futures::StreamExt;
use kube::api::{Api, DeleteParams, ListParams};
use trustkeeper::api::SignedImage;
use trustkeeper::controller::MapSecrets;
use trustkeeper::controller::fake::FakeReconciler;
use trustkeeper::controller::secrets::{SecretData, SecretSource};

/// Counts Secret reads (each would be one GET on a real cluster).
#[derive(Clone)]
struct Counting(MapSecrets, Arc<AtomicU64>);

impl SecretSource for Counting {
    async fn secret(&self, ns: &str, name: &str) -> Result<Option<SecretData>, kube::Error> {
        self.1.fetch_add(1, Ordering::Relaxed);
        self.0.secret(ns, name).await
    }
    async fn config_map(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, Vec<u8>>>, kube::Error> {
        self.1.fetch_add(1, Ordering::Relaxed);
        self.0.config_map(ns, name).await
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn counter(running: &Running, name: &str) -> f64 {
    let text = reqwest::get(running.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    parse_metrics(&text)
        .into_iter()
        .find(|(s, _)| s == name)
        .map_or(0.0, |(_, v)| v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "scale bench: run explicitly"]
async fn scale_bench() {
    let n: usize = std::env::var("TRUSTKEEPER_SCALE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let client = plain_client().await;
    install_crd(&client).await;
    let ns = unique("ctl-scale");
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                create_image(
                    &client,
                    &ns,
                    &format!("img-{i}"),
                    &format!("registry.example.com/scale/img-{i}"),
                )
                .await;
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let create = t.elapsed();

    let reads = Arc::new(AtomicU64::new(0));
    // No next run time in the status: a restarted controller runs everything (cycle 2).
    let mut outcome = signed_outcome();
    outcome.status.next_sync_time = None;
    let fake = FakeReconciler::new(outcome);
    let mut cfg = config(&ns, "bench");
    cfg.concurrency = 16;

    // Cycle 1: everything new.
    let t = Instant::now();
    let running = Running::start(
        &client,
        fake.clone(),
        Counting(secrets(&ns), reads.clone()),
        cfg.clone(),
    )
    .await;
    let mut last = 0.0;
    while last < n as f64 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        last = counter(&running, "trustkeeper_status_writes_total").await;
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "cycle 1 stalled at {last}"
        );
    }
    let cycle1 = t.elapsed();
    let events1 = counter(&running, "trustkeeper_events_total").await;
    running.stop().await.unwrap();
    let reads1 = reads.swap(0, Ordering::Relaxed);

    // Cycle 2: nothing new (a restart re-reconciles every object once).
    let mut quiet = signed_outcome();
    quiet.events.clear();
    quiet.publishes = 0;
    quiet.signed.clear();
    // Same status as cycle 1 wrote (same transition time), so nothing to write.
    let first = fake.outcome.lock().unwrap().clone();
    quiet.status = first.status;
    fake.set_outcome(quiet);
    let before = fake.calls().len();
    let t = Instant::now();
    let running = Running::start(
        &client,
        fake.clone(),
        Counting(secrets(&ns), reads.clone()),
        cfg,
    )
    .await;
    while fake.calls().len() < before + n {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(t.elapsed() < Duration::from_secs(600), "cycle 2 stalled");
    }
    let cycle2 = t.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writes2 = counter(&running, "trustkeeper_status_writes_total").await;
    let events2 = counter(&running, "trustkeeper_events_total").await;
    running.stop().await.unwrap();
    let reads2 = reads.load(Ordering::Relaxed);

    println!("controller scale bench: {n} SignedImages (fake engine), concurrency 16");
    println!(
        "  create objects:            {:>8.2} s",
        create.as_secs_f64()
    );
    println!(
        "  cycle 1 (all new):         {:>8.2} s  status writes {n}, events {events1}, Secret reads {reads1}",
        cycle1.as_secs_f64()
    );
    println!(
        "  cycle 2 (nothing new):     {:>8.2} s  status writes {writes2}, events {events2}, Secret reads {reads2}",
        cycle2.as_secs_f64()
    );
    println!(
        "  peak RSS (whole test process, logs off): {} KiB",
        peak_rss_kib()
    );
    assert_eq!(writes2, 0.0);
    assert_eq!(events2, 0.0);

    let api: Api<SignedImage> = Api::namespaced(client.clone(), &ns);
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
}
