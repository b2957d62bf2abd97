//! The TUF client against a hostile notary server on loopback (`common/hostile_notary.rs`):
//! metadata signed by keys the test makes, with absurd lengths, endless bodies, missing files
//! and absurd versions. Each refusal has its reason; memory, time and requests stay bounded; a
//! refused answer blocks nothing once the server is sane again. The command line runs against
//! the same server (the testbed's certificate and CA; no other testbed service is used).

mod common;
#[path = "common/hostile_notary.rs"]
mod hostile_notary;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Testbed, stderr_text};
use hostile_notary::{Body, Hostile, Repo};
use jiff::Timestamp;
use trustkeeper::notary::cache::{CachedFetch, Files};
use trustkeeper::notary::client::{Fetch, MAX_VERSION, TrustAnchor, TrustState, update_with};
use trustkeeper::notary::{Error, NotaryClient, ServerConfig};

const GUN: &str = "example.com/hostile/app";

async fn server(repo: &Repo) -> Hostile {
    let tb = Testbed::get();
    let h = Hostile::start(
        &std::fs::read(tb.var("TESTBED_SERVER_CERT")).unwrap(),
        &std::fs::read(tb.var("TESTBED_SERVER_KEY")).unwrap(),
    )
    .await;
    h.serve(repo);
    h
}

fn client(h: &Hostile, cap: u64) -> NotaryClient {
    NotaryClient::new(ServerConfig {
        ca_pem: Some(Testbed::get().ca_pem()),
        ca_only: true,
        timeout: Duration::from_secs(20),
        max_metadata_bytes: cap,
        ..ServerConfig::new(h.url.clone())
    })
    .unwrap()
}

async fn update(c: &impl Fetch, anchor: &TrustAnchor) -> Result<TrustState, Error> {
    update_with(c, GUN, anchor, Timestamp::now())
        .await
        .map(|(_, st)| st)
}

/// `trustkeeper ARGS` against the hostile server, with a trust dir, as a child process.
fn cli(h: &Hostile, trust_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let tb = Testbed::get();
    let mut c = Command::new(env!("CARGO_BIN_EXE_trustkeeper"));
    c.args(args)
        .arg("--notary-url")
        .arg(&h.url)
        .arg("--ca-file")
        .arg(tb.var("CA_CERT"))
        .arg("--trust-dir")
        .arg(trust_dir)
        .arg("--timeout")
        .arg("20s")
        .env_remove("TRUSTKEEPER_MAX_METADATA_SIZE");
    common::cli_output(&mut c, trust_dir, env)
}

/// Peak resident set of the largest child this process has waited for, in KiB.
fn children_max_rss_kib() -> i64 {
    // SAFETY: getrusage fills the struct it is given.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u.ru_maxrss
    }
}

/// A snapshot announced as 1 TiB and served without end (chunked, or with a matching
/// `Content-Length`) is refused at the fixed cap, read once, quickly.
#[tokio::test]
async fn endless_snapshot_is_cut_at_the_cap_and_read_once() {
    let mut repo = Repo::new(GUN);
    let sane = server(&repo).await;
    let st = update(&client(&sane, 1 << 20), &TrustAnchor::FirstUse)
        .await
        .unwrap();
    repo.snapshot_length = Some(1 << 40);
    for announce in [None, Some(1u64 << 40)] {
        let h = server(&repo).await;
        h.set(&h.snapshot_name(), Body::Endless { announce });
        let c = client(&h, 1 << 20);
        let started = Instant::now();
        let e = update(&c, &TrustAnchor::FirstUse).await.unwrap_err();
        assert!(
            matches!(&e, Error::MetadataTooLarge { limit, .. } if *limit == 1 << 20),
            "{announce:?}: {e}"
        );
        assert!(e.to_string().contains("--max-metadata-size"), "{e}");
        assert_eq!(h.requests(&h.snapshot_name()), 1, "{announce:?}");
        // With a kept state and root (the path that reads again after a failure): once more,
        // not twice.
        let cached = CachedFetch::with_files(
            &c,
            Files {
                root: Some(repo.root.clone()),
                ..Default::default()
            },
        );
        let e = update(&cached, &TrustAnchor::State(st.clone()))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::MetadataTooLarge { .. }), "{e}");
        assert_eq!(h.requests(&h.snapshot_name()), 2, "{announce:?}");
        assert_eq!(h.requests("root.json"), 1, "the kept root stands in");
        // A snapshot that fails its hash is not read again on a fresh root either.
        let name = h.snapshot_name();
        h.set(&name, Body::Bytes(b"{}".to_vec()));
        let e = update(&cached, &TrustAnchor::State(st.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::Tampered { role, .. } if role == "snapshot"),
            "{e}"
        );
        assert_eq!(h.requests(&name), 3, "{announce:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

/// The cap is on all files of one update together, not only on each.
#[tokio::test]
async fn the_cap_bounds_every_file_of_an_update_together() {
    let mut repo = Repo::new(GUN);
    repo.release_tags = 200;
    let h = server(&repo).await;
    let total: u64 = repo
        .files()
        .iter()
        .filter(|(k, _)| k.as_str() != "1.root.json")
        .map(|(_, v)| v.len() as u64)
        .sum();
    // Enough for each file alone, not for all of them.
    let biggest = repo.files().values().map(|v| v.len() as u64).max().unwrap();
    assert!(biggest < total - 100);
    let e = update(&client(&h, total - 100), &TrustAnchor::FirstUse)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::MetadataTooLarge { .. }), "{e}");
    update(&client(&h, total), &TrustAnchor::FirstUse)
        .await
        .unwrap();
}

/// The announced length is a limit, as for the Go client: a shorter file with the right hashes
/// is the file; a longer one is cut there and refused.
#[tokio::test]
async fn length_is_a_limit_and_the_hashes_decide() {
    let mut repo = Repo::new(GUN);
    repo.extra_length = 1000;
    let h = server(&repo).await;
    update(&client(&h, 1 << 20), &TrustAnchor::FirstUse)
        .await
        .unwrap();
    // A body longer than announced (same hash name) is refused as tampered.
    let repo = Repo::new(GUN);
    let h = server(&repo).await;
    let mut long = h.bytes(&h.snapshot_name());
    long.extend_from_slice(b"    ");
    h.set(&h.snapshot_name(), Body::Bytes(long));
    let e = update(&client(&h, 1 << 20), &TrustAnchor::FirstUse)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Tampered { role, what, .. } if role == "snapshot" && what.contains("longer than the announced")),
        "{e}"
    );
}

/// A delegation the snapshot lists but the server answers 404 for fails the update (as it fails
/// `docker pull`), with a reason; the CLI exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_delegation_without_a_file_is_refused() {
    let mut repo = Repo::new(GUN);
    repo.releases_file = false;
    let h = server(&repo).await;
    let e = update(&client(&h, 1 << 20), &TrustAnchor::FirstUse)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::MissingRoleFile { role, .. } if role == "targets/releases"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let o = cli(&h, dir.path(), &["inspect", GUN], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr_text(&o));
    assert!(
        stderr_text(&o).contains("lists targets/releases"),
        "{}",
        stderr_text(&o)
    );
    // Not listed at all: a declared delegation without a file yet, as before.
    repo.list_releases = false;
    h.serve(&repo);
    let o = cli(&h, dir.path(), &["inspect", GUN], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr_text(&o));
}

/// Versions that could never be incremented are refused in every role, before they are
/// trusted; the repository reads again once the server is sane.
#[tokio::test]
async fn absurd_versions_are_refused_and_block_nothing() {
    let mut repo = Repo::new(GUN);
    let h = server(&repo).await;
    let c = client(&h, 1 << 20);
    let st = update(&c, &TrustAnchor::FirstUse).await.unwrap();
    for role in ["timestamp", "snapshot", "targets", "targets/releases"] {
        for v in [u64::MAX, MAX_VERSION + 1] {
            let mut bad = repo.clone();
            match role {
                "timestamp" => bad.timestamp_version = v,
                "snapshot" => bad.snapshot_version = v,
                "targets" => bad.targets_version = v,
                _ => bad.releases_version = v,
            }
            h.serve(&bad);
            let e = update(&c, &TrustAnchor::State(st.clone()))
                .await
                .unwrap_err();
            assert!(
                matches!(&e, Error::AbsurdVersion { role: r, version, .. } if r == role && *version == v),
                "{role} {v}: {e}"
            );
        }
    }
    // The largest usable version is accepted.
    repo.timestamp_version = MAX_VERSION;
    h.serve(&repo);
    update(&c, &TrustAnchor::State(st.clone())).await.unwrap();
    // A floor an earlier release stored at u64::MAX does not block the repository.
    repo.timestamp_version = 2;
    h.serve(&repo);
    let mut poisoned = st.clone();
    poisoned.versions.insert("timestamp".into(), u64::MAX);
    let after = update(&c, &TrustAnchor::State(poisoned)).await.unwrap();
    assert_eq!(after.versions["timestamp"], 2);
}

/// The command line against the same hostile cases: exit 1 with the reason (never 101), memory
/// and time bounded, and a trust dir that reads the repository again once the server is sane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_against_the_hostile_server() {
    let mut repo = Repo::new(GUN);
    let h = server(&repo).await;
    let dir = tempfile::tempdir().unwrap();
    let o = cli(&h, dir.path(), &["inspect", GUN], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr_text(&o));
    // First use says which root it trusted.
    assert!(
        stderr_text(&o).contains("on first use") && stderr_text(&o).contains(&repo.root_key_id),
        "{}",
        stderr_text(&o)
    );
    let o = cli(&h, dir.path(), &["inspect", GUN], &[]);
    assert!(
        !stderr_text(&o).contains("on first use"),
        "{}",
        stderr_text(&o)
    );

    // An endless snapshot announced as 1 TiB, with a 2 MiB cap from the environment.
    let mut huge = repo.clone();
    huge.snapshot_version = 2;
    huge.timestamp_version = 2;
    huge.snapshot_length = Some(1 << 40);
    h.serve(&huge);
    h.set(&h.snapshot_name(), Body::Endless { announce: None });
    let started = Instant::now();
    let o = cli(
        &h,
        dir.path(),
        &["inspect", GUN],
        &[("TRUSTKEEPER_MAX_METADATA_SIZE", "2MiB")],
    );
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}", stderr_text(&o));
    assert!(
        stderr_text(&o).contains("limit of 2097152 bytes"),
        "{}",
        stderr_text(&o)
    );
    assert_eq!(h.requests(&h.snapshot_name()), 1);
    assert!(took < Duration::from_secs(10), "{took:?}");
    let rss = children_max_rss_kib();
    assert!(rss < 100 << 10, "peak RSS {rss} KiB");
    eprintln!("endless snapshot, CLI: {took:?}, children's peak RSS {rss} KiB");

    // The targets role at u64::MAX: `witness` (whose plan increments versions) exits 1.
    let mut top = repo.clone();
    top.targets_version = u64::MAX;
    top.snapshot_version = 3;
    top.timestamp_version = 3;
    h.serve(&top);
    let key = dir.path().join("targets.key");
    std::fs::write(
        &key,
        secrecy::ExposeSecret::expose_secret(&repo.targets_key.export_pem_unencrypted().unwrap()),
    )
    .unwrap();
    let o = cli(
        &h,
        dir.path(),
        &["witness", GUN, "--key", key.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr_text(&o));
    assert!(
        stderr_text(&o).contains("above the largest usable version"),
        "{}",
        stderr_text(&o)
    );

    // The timestamp at u64::MAX: refused, and not kept as the rollback floor.
    let mut ts = repo.clone();
    ts.timestamp_version = u64::MAX;
    h.serve(&ts);
    let o = cli(&h, dir.path(), &["inspect", GUN], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr_text(&o));
    assert!(
        stderr_text(&o).contains("timestamp has version 18446744073709551615"),
        "{}",
        stderr_text(&o)
    );

    // Sane again: the same trust dir reads the repository.
    repo.snapshot_version = 4;
    repo.timestamp_version = 4;
    h.serve(&repo);
    let o = cli(&h, dir.path(), &["inspect", GUN], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr_text(&o));
}
