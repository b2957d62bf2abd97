//! Root pins hold also once a root is kept (a trust dir, a status with trust): against the real
//! testbed (notary-server and a repository seeded by the Go client), a wrong pin is refused
//! with its reason and the right one passes; first use says which root it trusted.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Seed, Testbed, ready, stderr_text};
use trustkeeper::api::{SignedImageSpec, reasons};
use trustkeeper::engine::Engine;

const WRONG: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn cli(tb: &Testbed, trust_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trustkeeper"));
    c.args(args)
        .env("TRUSTKEEPER_TRUST_DIR", trust_dir)
        .env("TRUSTKEEPER_CA_FILE", tb.var("CA_CERT"))
        .env("TRUSTKEEPER_NOTARY_URL", tb.var("NOTARY_URL"))
        .env_remove("TRUSTKEEPER_DOCKER_CONFIG")
        .env_remove("NOTARY_AUTH");
    common::cli_output(&mut c, trust_dir, env)
}

/// The root key ID(s) the trust dir keeps for `gun` after `inspect -o json`.
fn kept_root_ids(o: &Output) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["root_key_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no root_key_ids in {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn command_line_pins_hold_over_a_kept_root() {
    let tb = Testbed::get();
    let seed = tb.seed("pins-cli");
    let dir = tempfile::tempdir().unwrap();
    let o = cli(tb, dir.path(), &["inspect", &seed.gun, "-o", "json"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr_text(&o));
    let ids = kept_root_ids(&o);
    assert_eq!(ids.len(), 1);
    // First use says which root it trusted.
    let err = stderr_text(&o);
    assert!(
        err.contains("on first use") && err.contains(&ids[0]),
        "{err}"
    );
    // The trust dir now trusts the seeded root; a wrong pin is refused, by flag or environment.
    for env in [vec![], vec![("TRUSTKEEPER_ROOT_KEY_ID", WRONG)]] {
        let args: Vec<&str> = if env.is_empty() {
            vec!["inspect", &seed.gun, "--root-key-id", WRONG]
        } else {
            vec!["inspect", &seed.gun]
        };
        let o = cli(tb, dir.path(), &args, &env);
        let err = stderr_text(&o);
        assert_eq!(o.status.code(), Some(1), "{env:?}: {err}");
        assert!(
            err.contains("is not trusted") && err.contains(WRONG) && err.contains(&ids[0]),
            "{env:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // The right pin, as the TUF ID or the seed's recorded ID, passes; no first-use notice.
    for pin in [ids[0].as_str(), seed.var("ROOT_KEY_ID")] {
        let o = cli(
            tb,
            dir.path(),
            &["inspect", &seed.gun, "--root-key-id", pin],
            &[],
        );
        assert_eq!(o.status.code(), Some(0), "{pin}: {}", stderr_text(&o));
        assert!(
            !stderr_text(&o).contains("on first use"),
            "{}",
            stderr_text(&o)
        );
    }
}

fn spec(tb: &Testbed, seed: &Seed, pins: &[&str]) -> SignedImageSpec {
    let yaml = format!(
        "image: {}\ntags: [v1]\nsigningKey: {{secretRef: {{name: k}}}}\nnotary: {{url: {:?}, rootKeyIDs: {:?}}}\n",
        seed.gun,
        tb.var("NOTARY_URL"),
        pins
    );
    serde_saphyr::from_str(&yaml).unwrap()
}

#[tokio::test]
async fn engine_pins_hold_over_a_status_with_trust() {
    let tb = Testbed::get();
    let seed = tb.seed("pins-engine");
    let first = common::run_engine_as(
        Engine::default(),
        "pins",
        &spec(tb, &seed, &[]),
        common::seed_creds(tb, &seed),
        None,
    )
    .await;
    assert_eq!(ready(&first).0, "True", "{:?}", ready(&first));
    let trusted = first.status.trust.clone().expect("trust in the status");
    let id = trusted.root_key_ids[0].clone();

    let wrong = common::run_engine_as(
        Engine::default(),
        "pins",
        &spec(tb, &seed, &[WRONG]),
        common::seed_creds(tb, &seed),
        Some(&first.status),
    )
    .await;
    assert_eq!(wrong.failure_reason, Some(reasons::ROOT_MISMATCH));
    let (_, _, message) = ready(&wrong);
    assert!(
        message.contains(WRONG) && message.contains(&id),
        "{message}"
    );
    // The trust kept is not replaced by a refused root.
    assert_eq!(wrong.status.trust.as_ref(), Some(&trusted));

    let right = common::run_engine_as(
        Engine::default(),
        "pins",
        &spec(tb, &seed, &[&id]),
        common::seed_creds(tb, &seed),
        Some(&first.status),
    )
    .await;
    assert_eq!(ready(&right).0, "True", "{:?}", ready(&right));
}

/// A pin on a root the kept one was rotated from holds (walked back through `N.root.json`, each
/// older root's keys signing the next); a pin on no root of the chain does not. The `client-run`
/// vector rotates its root key at version 3.
#[tokio::test]
async fn a_pin_holds_through_valid_rotations_only() {
    use trustkeeper::notary::Error;
    use trustkeeper::notary::client::{TrustAnchor, update_with};
    const GUN: &str = "example.com/vectors/wire";
    const OLD: &str = "c7ddbee6deb020a391e4431b0495d8e3e4cb0735ea83e0cb08576bb5830b1f05";
    const NEW: &str = "15d9c8d8e869c639784e956b90f4fcaa6479ae42d47606e8e449585f51e57f31";
    let m = common::vectors::Memory::load("client-run");
    let now = common::vectors::now();
    let (_, state) = update_with(&m, GUN, &TrustAnchor::FirstUse, now)
        .await
        .unwrap();
    assert_eq!(
        (state.root_version, state.root_key_ids.clone()),
        (3, vec![NEW.to_string()])
    );
    let pinned = |pin: &str| TrustAnchor::PinnedState {
        pins: vec![pin.to_string()],
        state: state.clone(),
    };
    for pin in [OLD, NEW] {
        update_with(&m, GUN, &pinned(pin), now).await.unwrap();
    }
    let e = update_with(&m, GUN, &pinned(WRONG), now).await.unwrap_err();
    assert!(matches!(e, Error::UntrustedRoot { .. }), "{e}");
    // Without the old roots the chain back to the pinned one cannot be shown.
    let mut cut = m.clone();
    cut.files.remove("2.root.json");
    let e = update_with(&cut, GUN, &pinned(OLD), now).await.unwrap_err();
    assert!(
        matches!(&e, Error::UntrustedRoot { reason, .. } if reason.contains(OLD)),
        "{e}"
    );
}
