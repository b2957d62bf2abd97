//! Creating a repository (GUN) through the library, the way Docker does, checked against the
//! real notary-server and the real Go client (no mocks): the Go client reads what we created,
//! signs into it with a key we exported, reads what our Editor signed into it, and nothing is
//! published over an existing GUN. Needs `TRUSTKEEPER_TESTBED` (see tests/common/mod.rs).

mod common;
#[path = "common/fault_proxy.rs"]
mod fault_proxy;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Listed, Testbed};
use fault_proxy::{Action, FaultProxy, Rule};
use jiff::{SignedDuration, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use trustkeeper::notary::init::{NewRepository, RepositoryKeys};
use trustkeeper::notary::{
    Error, InitialMetadata, NotaryClient, SigningKey, create_repository,
    create_repository_with_new_keys,
};

fn pass(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

fn client(tb: &Testbed) -> NotaryClient {
    client_at(tb, tb.var("NOTARY_URL"))
}

fn client_at(tb: &Testbed, url: &str) -> NotaryClient {
    common::notary_client_at(tb, url)
}

/// The real Go client with its own trust directory (no cache, no keys but those imported).
fn go_in(tb: &Testbed, trust: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(tb.var("NOTARY_CLIENT"))
        .env("TESTBED_TRUST_DIR", trust)
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

/// Like [`go_in`], asserting success; stdout and stderr together.
fn go_ok(tb: &Testbed, trust: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let out = go_in(tb, trust, env, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "notary {args:?}:\n{text}");
    text
}

fn digest(content: &str) -> ([u8; 32], u64) {
    (Sha256::digest(content).into(), content.len() as u64)
}

/// Every current role file as the server serves it.
async fn served(c: &NotaryClient, gun: &str) -> Vec<Option<Vec<u8>>> {
    let mut out = Vec::new();
    for role in ["root", "targets", "snapshot", "timestamp"] {
        out.push(c.get_role(gun, role).await.unwrap());
    }
    out
}

#[tokio::test]
async fn created_repository_is_read_by_the_go_client_and_by_us() {
    let tb = Testbed::get();
    let c = client(tb);
    let gun = tb.unique_gun("init-read");
    let now = Timestamp::now();
    let (meta, keys) = create_repository_with_new_keys(&c, &gun, now)
        .await
        .unwrap();
    assert_eq!(meta.targets_key_id, keys.targets.key_id());

    // The server stores our bytes and made snapshot v1 and timestamp v1 over them.
    let files = served(&c, &gun).await;
    assert_eq!(files[0].as_deref(), Some(meta.files[0].bytes.as_slice()));
    assert_eq!(files[1].as_deref(), Some(meta.files[1].bytes.as_slice()));
    assert!(files[2].is_some() && files[3].is_some());

    // Our reader verifies everything, pinned to the new root.
    let (repo, st) = c.update(&gun, &meta.anchor(), now).await.unwrap();
    assert_eq!(st.root_key_ids, vec![meta.root_key_id()]);
    assert_eq!(
        (
            repo.root_info.version,
            repo.snapshot_info.version,
            repo.timestamp_info.version
        ),
        (1, 1, 1)
    );
    let t = repo.role("targets").unwrap();
    assert_eq!((t.version, t.targets.len()), (1, 0));
    assert_eq!(
        repo.root.roles["snapshot"].keyids,
        [meta.snapshot_key.key_id()]
    );
    let cert_left = repo.root_cert_expires.unwrap().duration_since(now);
    assert!(
        cert_left > SignedDuration::from_hours(24 * 3649),
        "{cert_left:?}"
    );

    // A fresh Go client lists it (no targets, no warning) and caches our root as is.
    let dir = tempfile::tempdir().unwrap();
    let text = go_ok(tb, dir.path(), &[], &["list", &gun]);
    assert!(
        text.contains("No targets present in this repository."),
        "{text}"
    );
    assert!(!text.contains("level=warn"), "{text}");
    let cached =
        std::fs::read(dir.path().join("tuf").join(&gun).join("metadata/root.json")).unwrap();
    assert_eq!(cached, meta.files[0].bytes);
}

#[tokio::test]
async fn go_client_signs_with_our_exported_targets_key() {
    let tb = Testbed::get();
    let c = client(tb);
    let gun = tb.unique_gun("init-go-signs");
    let (meta, keys) = create_repository_with_new_keys(&c, &gun, Timestamp::now())
        .await
        .unwrap();

    // Encrypted export → `notary key import` (stored as is) → addhash + publish.
    let pem_dir = tempfile::tempdir().unwrap();
    let file = pem_dir.path().join("targets.pem");
    std::fs::write(
        &file,
        keys.targets.export_pem(&pass("our targets pass")).unwrap(),
    )
    .unwrap();
    let trust = tempfile::tempdir().unwrap();
    let env = [("NOTARY_TARGETS_PASSPHRASE", "our targets pass")];
    go_ok(
        tb,
        trust.path(),
        &env,
        &["key", "import", file.to_str().unwrap()],
    );
    let listed = go_ok(tb, trust.path(), &env, &["key", "list"]);
    assert!(listed.contains(keys.targets.key_id()), "{listed}");
    let (h1, n1) = digest("manifest one");
    let (hex1, size1) = (hex::encode(h1), n1.to_string());
    go_ok(
        tb,
        trust.path(),
        &env,
        &["addhash", &gun, "v1", &size1, "--sha256", &hex1],
    );
    go_ok(tb, trust.path(), &env, &["publish", &gun]);

    // Unencrypted export → import (notary re-encrypts it with its own passphrase) → publish.
    std::fs::write(
        &file,
        keys.targets
            .export_pem_unencrypted()
            .unwrap()
            .expose_secret(),
    )
    .unwrap();
    let trust2 = tempfile::tempdir().unwrap();
    let env2 = [("NOTARY_TARGETS_PASSPHRASE", "another pass")];
    go_ok(
        tb,
        trust2.path(),
        &env2,
        &["key", "import", file.to_str().unwrap()],
    );
    let (h2, n2) = digest("manifest two");
    let (hex2, size2) = (hex::encode(h2), n2.to_string());
    go_ok(
        tb,
        trust2.path(),
        &env2,
        &["addhash", &gun, "v2", &size2, "--sha256", &hex2],
    );
    go_ok(tb, trust2.path(), &env2, &["publish", &gun]);

    // We read both back through the pinned root.
    let (repo, _) = c
        .update(&gun, &meta.anchor(), Timestamp::now())
        .await
        .unwrap();
    let t = repo.role("targets").unwrap();
    assert_eq!(t.version, 3, "v1 ours, v2 and v3 by the Go client");
    for (tag, h, n) in [("v1", h1, n1), ("v2", h2, n2)] {
        let w = repo.winner(tag).unwrap();
        assert_eq!((w.role, w.meta.length), ("targets", n), "{tag}");
        assert_eq!(w.meta.sha256().unwrap(), h, "{tag}");
    }
}

#[tokio::test]
async fn our_editor_signs_into_the_new_repository_and_its_first_delegation() {
    let tb = Testbed::get();
    let c = client(tb);
    let gun = tb.unique_gun("init-edit");
    let keys = RepositoryKeys::generate(&gun).unwrap();
    let signer = SigningKey::generate_ecdsa("targets/releases", "").unwrap();
    let signer_id = signer.key_id().to_string();
    let meta = NewRepository::new(&gun, &keys.root, &keys.targets)
        .with_delegation("targets/releases", signer.public().clone(), &[""])
        .unwrap()
        .create(&c, Timestamp::now())
        .await
        .unwrap();

    let (repo, st) = c
        .update(&gun, &meta.anchor(), Timestamp::now())
        .await
        .unwrap();
    assert_eq!(repo.declared_without_file(), ["targets/releases"]);
    let (h1, n1) = digest("top-level manifest");
    let (h2, n2) = digest("released manifest");
    let mut ed = repo.edit();
    ed.add_target("targets", "top", &h1, n1).unwrap();
    ed.add_target("targets/releases", "rel", &h2, n2).unwrap();
    let files = ed.sign(&[keys.targets, signer], Timestamp::now()).unwrap();
    let versions: Vec<(&str, u64)> = files.iter().map(|f| (f.role.as_str(), f.version)).collect();
    assert_eq!(versions, [("targets", 2), ("targets/releases", 1)]);
    c.publish(&gun, &files).await.unwrap();

    // The Go client lists both, each from its role; it lists our delegation with our key.
    let go = tb.notary_list(&gun, None);
    let row = |h: [u8; 32], size, role: &str| Listed {
        sha256: hex::encode(h),
        size,
        role: role.into(),
    };
    assert_eq!(go["top"], row(h1, n1, "targets"));
    assert_eq!(go["rel"], row(h2, n2, "targets/releases"));
    let dir = tempfile::tempdir().unwrap();
    let dl = go_ok(tb, dir.path(), &[], &["delegation", "list", &gun]);
    assert!(
        dl.contains("targets/releases") && dl.contains(&signer_id),
        "{dl}"
    );
    // And so do we, from the state of the first read.
    let (repo, _) = c
        .update(
            &gun,
            &trustkeeper::notary::TrustAnchor::State(st),
            Timestamp::now(),
        )
        .await
        .unwrap();
    assert_eq!(repo.winner("rel").unwrap().role, "targets/releases");
    assert_eq!(repo.winner("top").unwrap().role, "targets");
}

#[tokio::test]
async fn existing_gun_is_refused_and_left_untouched() {
    let tb = Testbed::get();
    let c = client(tb);

    // Created by us.
    let gun = tb.unique_gun("init-exists");
    create_repository_with_new_keys(&c, &gun, Timestamp::now())
        .await
        .unwrap();
    let before = served(&c, &gun).await;
    let keys = RepositoryKeys::generate(&gun).unwrap();
    let e = create_repository(&c, &gun, &keys.root, &keys.targets, Timestamp::now())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::RepositoryExists { gun: g } if *g == gun),
        "{e}"
    );
    assert!(e.to_string().contains("nothing was published"), "{e}");
    assert_eq!(served(&c, &gun).await, before);

    // Created by the Go client (`notary init` + `publish`).
    let gun = tb.unique_gun("init-exists-go");
    let trust = tempfile::tempdir().unwrap();
    go_ok(tb, trust.path(), &[], &["init", &gun]);
    go_ok(tb, trust.path(), &[], &["publish", &gun]);
    let before = served(&c, &gun).await;
    let e = create_repository_with_new_keys(&c, &gun, Timestamp::now())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RepositoryExists { .. }), "{e}");
    assert_eq!(served(&c, &gun).await, before);
    tb.notary_list(&gun, None);

    // A GUN that cannot be one is refused before any request.
    let e = create_repository(&c, "bad gun", &keys.root, &keys.targets, Timestamp::now())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidName { .. }), "{e}");
}

/// Between the existence check and the answer to the publish, faults are told apart by the root
/// the server then serves: our own (the answer was lost: success), none (the error stands), or
/// another writer's (it created the GUN first: `RepositoryExists`, its data untouched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_and_a_concurrent_creator_are_told_apart() {
    let tb = Testbed::get();
    let cert = std::fs::read(tb.var("TESTBED_SERVER_CERT")).unwrap();
    let key = std::fs::read(tb.var("TESTBED_SERVER_KEY")).unwrap();
    let proxy = FaultProxy::start(tb.var("NOTARY_URL"), &tb.ca_pem(), &cert, &key).await;
    let via = client_at(tb, &proxy.url);
    let direct = client(tb);

    // 1. The publish lands, its answer is lost: the repository is ours, created.
    let gun = tb.unique_gun("init-lost-answer");
    proxy.add(Rule::new(Some("POST"), Action::CutAfterForward));
    let (meta, _) = create_repository_with_new_keys(&via, &gun, Timestamp::now())
        .await
        .unwrap();
    assert!(proxy.rules_spent(), "the answer was cut");
    let root = direct.get_role(&gun, "root").await.unwrap();
    assert_eq!(root.as_deref(), Some(meta.files[0].bytes.as_slice()));
    tb.notary_list(&gun, None);

    // 2. The publish never reaches the server: the error stands, nothing exists, a retry works.
    let gun = tb.unique_gun("init-503");
    proxy.add(Rule::new(Some("POST"), Action::Status(503)));
    let keys = RepositoryKeys::generate(&gun).unwrap();
    let e = create_repository(&via, &gun, &keys.root, &keys.targets, Timestamp::now())
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert_eq!(direct.get_role(&gun, "root").await.unwrap(), None);
    create_repository(&via, &gun, &keys.root, &keys.targets, Timestamp::now())
        .await
        .unwrap();

    // 3. Another writer creates the GUN while our key fetch is held up: we refuse, and what
    //    the other writer published stays as it is.
    let gun = tb.unique_gun("init-race");
    proxy.add(
        Rule::new(Some("GET"), Action::Delay(Duration::from_millis(1500))).path("snapshot.key"),
    );
    let ours = create_repository_with_new_keys(&via, &gun, Timestamp::now());
    let theirs = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        create_repository_with_new_keys(&direct, &gun, Timestamp::now()).await
    };
    let (ours, theirs) = tokio::join!(ours, theirs);
    let (theirs, _) = theirs.unwrap();
    assert!(proxy.rules_spent(), "our key fetch was held up");
    // Our check saw no root; the server refused our publish over theirs.
    let seen: Vec<(String, u16)> = proxy
        .requests()
        .into_iter()
        .filter(|(_, path, _)| path.contains("init-race"))
        .map(|(method, path, status)| {
            (
                format!("{method} {}", path.rsplit('/').next().unwrap()),
                status,
            )
        })
        .collect();
    assert_eq!(
        seen.first(),
        Some(&("GET root.json".to_string(), 404)),
        "{seen:?}"
    );
    assert!(seen.contains(&("POST ".to_string(), 400)), "{seen:?}");
    match ours {
        Err(Error::RepositoryExists { gun: g }) => assert_eq!(g, gun),
        other => panic!("expected RepositoryExists, got {other:?}"),
    }
    let files = served(&direct, &gun).await;
    assert_eq!(files[0].as_deref(), Some(theirs.files[0].bytes.as_slice()));
    assert_eq!(files[1].as_deref(), Some(theirs.files[1].bytes.as_slice()));
    let (repo, _) = direct
        .update(&gun, &theirs.anchor(), Timestamp::now())
        .await
        .unwrap();
    assert_eq!(repo.root_info.version, 1);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Informational: how long one creation takes on the testbed (never asserted).
#[tokio::test]
async fn create_repository_timing() {
    let tb = Testbed::get();
    let c = client(tb);
    const N: usize = 20;
    let root = SigningKey::generate_ecdsa("root", "").unwrap();
    let mut given_keys = Vec::new();
    let mut new_keys = Vec::new();
    let mut last: Option<InitialMetadata> = None;
    for _ in 0..N {
        let gun = tb.unique_gun("init-timing");
        // One root key for every GUN (as one notary trust dir has), a targets key per GUN.
        let targets = SigningKey::generate_ecdsa("targets", &gun).unwrap();
        let t = Instant::now();
        last = Some(
            create_repository(&c, &gun, &root, &targets, Timestamp::now())
                .await
                .unwrap(),
        );
        given_keys.push(t.elapsed());

        let gun = tb.unique_gun("init-timing-new");
        let t = Instant::now();
        create_repository_with_new_keys(&c, &gun, Timestamp::now())
            .await
            .unwrap();
        new_keys.push(t.elapsed());
    }
    // The offline part (root certificate, two signatures, their checks) of one creation.
    let meta = last.unwrap();
    let targets = SigningKey::generate_ecdsa("targets", &meta.gun).unwrap();
    let offline: Vec<Duration> = (0..N)
        .map(|_| {
            let t = Instant::now();
            NewRepository::new(&meta.gun, &root, &targets)
                .sign(
                    meta.snapshot_key.clone(),
                    meta.timestamp_key.clone(),
                    Timestamp::now(),
                )
                .unwrap();
            t.elapsed()
        })
        .collect();
    // Straight to stderr, past the test harness's capture: CI logs show it on every run.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "create_repository on the testbed (median of {N}, {} build): {:.1} ms with given keys, \
         {:.1} ms with key generation (min {:.1} ms, max {:.1} ms); of which signing offline \
         {:.1} ms",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        median(given_keys.clone()).as_secs_f64() * 1e3,
        median(new_keys.clone()).as_secs_f64() * 1e3,
        given_keys.iter().min().unwrap().as_secs_f64() * 1e3,
        given_keys.iter().max().unwrap().as_secs_f64() * 1e3,
        median(offline).as_secs_f64() * 1e3,
    );
}
