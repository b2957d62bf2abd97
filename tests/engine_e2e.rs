//! The engine end to end on the real testbed, with the real notary Go client as referee.

mod common;

use std::collections::BTreeMap;

use common::{Seed, Testbed, ready};
use secrecy::SecretString;
use trustkeeper::api::{SignedImageSpec, SignedImageStatus};
use trustkeeper::engine::{Engine, Outcome, ReconcileRequest, RunSecrets};

/// `notary list GUN [-r ROLE]` as tag → (sha256 hex, size, role).
pub fn notary_list(
    tb: &Testbed,
    gun: &str,
    role: Option<&str>,
) -> BTreeMap<String, (String, u64, String)> {
    tb.notary_list(gun, role)
        .into_iter()
        .map(|(t, r)| (t, (r.sha256, r.size, r.role)))
        .collect()
}

fn spec(tb: &Testbed, seed: &Seed, tags: &[&str], roles: &[&str]) -> SignedImageSpec {
    let yaml = format!(
        "image: {}\ntags: {:?}\nroles: {:?}\nsigningKey: {{secretRef: {{name: k}}}}\nnotary: {{url: {:?}}}\n",
        seed.gun,
        tags,
        roles,
        tb.var("NOTARY_URL")
    );
    let mut s: SignedImageSpec = serde_saphyr::from_str(&yaml).unwrap();
    // serde defaults mirror the CRD defaults.
    assert_eq!(s.validity, "26280h");
    s.renew_before = "4560h".into();
    s
}

async fn run(
    spec: &SignedImageSpec,
    creds: RunSecrets,
    prev: Option<&SignedImageStatus>,
) -> Outcome {
    common::run_engine_as(Engine::default(), "test", spec, creds, prev).await
}

#[tokio::test]
async fn signs_every_manifest_type_into_releases_and_the_go_client_agrees() {
    let tb = Testbed::get();
    let seed = tb.seed("engine-sign");
    let tags = ["v1", "latest", "multi", "oci-v1", "oci-multi"];
    let spec = spec(tb, &seed, &tags, &[]);
    let o = run(&spec, common::seed_creds(tb, &seed), None).await;
    assert_eq!(ready(&o).0, "True", "{:?}", ready(&o));
    assert_eq!(o.publishes, 1, "one publish for all tags and both roles");
    assert_eq!(o.status.tag_summary.as_deref(), Some("5/5"));
    // Default roles: every direct delegation listing our key (releases and ci-bot).
    for role in ["targets/releases", "targets/ci-bot"] {
        let listed = notary_list(tb, &seed.gun, Some(role));
        for tag in tags {
            let up = tag.to_uppercase().replace('-', "_");
            let want_digest = seed
                .var(&format!("TAG_{up}_DIGEST"))
                .trim_start_matches("sha256:")
                .to_string();
            let want_size: u64 = seed.var(&format!("TAG_{up}_SIZE")).parse().unwrap();
            assert_eq!(listed[tag].0, want_digest, "{role} {tag}");
            assert_eq!(listed[tag].1, want_size, "{role} {tag}");
        }
    }
    let all = notary_list(tb, &seed.gun, None);
    assert_eq!(all.len(), 5);
    assert!(all.values().all(|(_, _, role)| role == "targets/releases"));
    for t in &o.status.signed_tags {
        assert_eq!(t.role, "targets/releases");
    }
    // Trust anchor and versions are in the status.
    let trust = o.status.trust.as_ref().unwrap();
    assert_eq!(trust.root_key_ids.len(), 1);
    assert!(trust.versions["targets/releases"] >= 2);

    // Nothing new: no publish, Ready stays, no events.
    let again = run(&spec, common::seed_creds(tb, &seed), Some(&o.status)).await;
    assert_eq!(ready(&again).0, "True");
    assert_eq!(again.publishes, 0);
    assert!(again.events.is_empty(), "{:?}", again.events);
    assert_eq!(
        again.status.conditions[0].last_transition_time,
        o.status.conditions[0].last_transition_time
    );
}

#[tokio::test]
async fn renews_near_expiry_and_expired_delegations_keeping_their_targets() {
    let tb = Testbed::get();
    let seed = tb.seed("engine-renew");
    let dir = tb.dir.to_str().unwrap();
    tb.run(&["age", dir, &seed.gun, "targets/releases", "+90d"]);
    let spec = spec(tb, &seed, &[], &[]);
    let o = run(&spec, common::seed_creds(tb, &seed), None).await;
    assert_eq!(ready(&o).0, "True", "{:?}", ready(&o));
    assert_eq!(o.renewed, ["targets/releases"]);
    let releases = o
        .status
        .roles
        .iter()
        .find(|r| r.name == "targets/releases")
        .unwrap();
    let in_years = releases
        .expires
        .0
        .duration_since(jiff::Timestamp::now())
        .as_secs()
        / (365 * 86400);
    assert_eq!(in_years, 2, "renewed for 3 years (2.99…)");
    // The Go client no longer warns about nearing expiry.
    let out = tb.notary(&["list", &seed.gun]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("targets/releases metadata is nearing expiry"),
        "{stderr}"
    );

    // Expired: renewed with its old target kept, and a new tag signed in the same publish.
    tb.run(&["age", dir, &seed.gun, "targets/releases", "-1d"]);
    let spec = self::spec(tb, &seed, &["multi"], &["targets/releases"]);
    let o = run(&spec, common::seed_creds(tb, &seed), Some(&o.status)).await;
    assert_eq!(ready(&o).0, "True", "{:?}", ready(&o));
    let listed = notary_list(tb, &seed.gun, Some("targets/releases"));
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        ["multi", "v1"],
        "old v1 kept, multi added"
    );
}

#[tokio::test]
async fn key_not_delegated_publishes_nothing() {
    let tb = Testbed::get();
    let seed = tb.seed("engine-notdeleg");
    // The repository (targets) key is not a delegation signer: docker's
    // "no valid signing keys for delegation roles".
    let c = common::key_file_creds(
        tb,
        seed.var("TARGETS_KEY"),
        seed.var("TARGETS_PASSPHRASE_FILE"),
    );
    let spec = spec(tb, &seed, &["multi"], &[]);
    let before = notary_list(tb, &seed.gun, None);
    let o = run(&spec, c, None).await;
    let (status, reason, message) = ready(&o);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "KeyNotDelegated"),
        "{message}"
    );
    assert!(
        message.starts_with("no valid signing keys for delegation roles"),
        "{message}"
    );
    assert!(
        message.contains(&seed.var("TARGETS_KEY_ID")[..12]),
        "{message}"
    );
    assert_eq!(o.publishes, 0);
    assert_eq!(o.status.failed_attempts, 1);
    assert_eq!(o.events.len(), 1);
    assert_eq!(
        notary_list(tb, &seed.gun, None),
        before,
        "server state unchanged"
    );
}

#[tokio::test]
async fn wrong_passphrase_and_unknown_tag_are_specific() {
    let tb = Testbed::get();
    let seed = tb.seed("engine-bad");
    let mut c = common::seed_creds(tb, &seed);
    c.passphrase = Some(SecretString::from("not-the-passphrase".to_string()));
    let o = run(&spec(tb, &seed, &["v1"], &[]), c, None).await;
    assert_eq!(ready(&o).1, "WrongPassphrase", "{:?}", ready(&o));
    assert!(!ready(&o).2.contains("not-the-passphrase"));

    let o = run(
        &spec(tb, &seed, &["nope"], &[]),
        common::seed_creds(tb, &seed),
        None,
    )
    .await;
    assert_eq!(ready(&o).1, "TagNotFound", "{:?}", ready(&o));
    assert!(ready(&o).2.contains("nope"));

    let o = run(
        &spec(tb, &seed, &["zz*"], &[]),
        common::seed_creds(tb, &seed),
        None,
    )
    .await;
    assert_eq!(ready(&o).1, "TagNotFound", "{:?}", ready(&o));
    assert!(ready(&o).2.contains("zz*"));
}

/// The metadata an engine verified is kept between its runs (as the operator runs it): an
/// unchanged repository then costs one notary request (`timestamp.json`) and no manifest GET;
/// a change by another writer is read with the changed files only, never the root.
#[tokio::test]
async fn an_unchanged_repository_costs_one_notary_request() {
    trustkeeper::tls::install_crypto_provider();
    let tb = Testbed::get();
    let seed = tb.seed("engine-cache");
    let spec = spec(tb, &seed, &["v1", "latest"], &["targets/releases"]);
    let engine = Engine::default();
    let run_with = |engine: &Engine, prev: Option<SignedImageStatus>| {
        let engine = engine.clone();
        let spec = spec.clone();
        let creds = common::seed_creds(tb, &seed);
        async move {
            engine
                .run(ReconcileRequest {
                    id: "test",
                    spec: &spec,
                    generation: Some(1),
                    previous: prev.as_ref(),
                    credentials: creds,
                    pinned: Default::default(),
                })
                .await
        }
    };
    let first = run_with(&engine, None).await;
    assert_eq!(ready(&first).0, "True", "{:?}", ready(&first));
    assert_eq!(first.publishes, 1);
    // root, timestamp, snapshot, targets, releases, ci-bot; the publish; the read-back
    // (timestamp and the new snapshot: the rest is known).
    assert_eq!(first.requests.notary.post, 1);
    assert_eq!(first.requests.notary.get, 6 + 2, "{:?}", first.requests);

    let quiet = run_with(&engine, Some(first.status.clone())).await;
    assert_eq!(ready(&quiet).0, "True", "{:?}", ready(&quiet));
    assert_eq!(quiet.publishes, 0);
    assert_eq!(quiet.requests.notary.total(), 1, "{:?}", quiet.requests);
    assert_eq!(quiet.requests.registry.get, 0, "{:?}", quiet.requests);
    assert_eq!(quiet.requests.registry.head, 2, "{:?}", quiet.requests);

    // Another writer publishes into targets/releases: timestamp, snapshot and that role only.
    tb.go_publish_target(&seed.gun, "other", &"cd".repeat(32), "targets/releases");
    let after = run_with(&engine, Some(quiet.status.clone())).await;
    assert_eq!(ready(&after).0, "True", "{:?}", ready(&after));
    assert_eq!(after.publishes, 0);
    assert_eq!(after.requests.notary.get, 3, "{:?}", after.requests);
    let versions = |o: &Outcome| o.status.trust.as_ref().unwrap().versions.clone();
    assert!(versions(&after)["targets/releases"] > versions(&quiet)["targets/releases"]);

    // A new process (empty cache) starts from the root again.
    let cold = run_with(&Engine::default(), Some(after.status.clone())).await;
    assert_eq!(ready(&cold).0, "True", "{:?}", ready(&cold));
    assert_eq!(cold.requests.notary.get, 6, "{:?}", cold.requests);
}
