//! `sign --dry-run` and `witness --dry-run` on the real testbed: the plan printed (tags to add,
//! roles with their versions and new expiries) is what the real run then publishes, and the
//! dry run publishes nothing (the server's versions unchanged, the Go client lists no new tag).

mod common;

use std::process::{Command, Output};

use common::{Seed, Testbed, timestamp_version};
use serde_json::Value;

fn trustkeeper(tb: &Testbed, seed: &Seed, trust_dir: &std::path::Path, args: &[&str]) -> Output {
    let pass = std::fs::read_to_string(seed.var("DELEGATION_PASSPHRASE_FILE")).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_trustkeeper"));
    c.args(args)
        .env("TRUSTKEEPER_TRUST_DIR", trust_dir)
        .env("TRUSTKEEPER_CA_FILE", tb.var("CA_CERT"))
        .env("TRUSTKEEPER_NOTARY_URL", tb.var("NOTARY_URL"))
        .env("TRUSTKEEPER_PASSPHRASE", pass.trim())
        .env_remove("TRUSTKEEPER_DOCKER_CONFIG")
        .env_remove("NOTARY_AUTH")
        .env_remove("TRUSTKEEPER_ROOT_KEY_ID")
        .env("HOME", trust_dir);
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn role_version(tb: &Testbed, gun: &str, role: &str) -> u64 {
    let http = reqwest::Client::builder()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&tb.ca_pem()).unwrap())
        .build()
        .unwrap();
    let url = format!("{}/v2/{gun}/_trust/tuf/{role}.json", tb.var("NOTARY_URL"));
    let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
    v["signed"]["version"].as_u64().unwrap()
}

/// (timestamp, targets, targets/releases, targets/ci-bot) versions on the server.
async fn versions(tb: &Testbed, gun: &str) -> Vec<u64> {
    let mut v = vec![timestamp_version(tb, gun).await];
    for r in ["targets", "targets/releases", "targets/ci-bot"] {
        v.push(role_version(tb, gun, r).await);
    }
    v
}

#[tokio::test]
async fn dry_run_prints_the_plan_and_publishes_nothing() {
    let tb = Testbed::get();
    let seed = tb.seed("dry-run");
    let trust = tempfile::tempdir().unwrap();
    let key = seed.var("DELEGATION_KEY");
    let image = format!("{}:multi", seed.gun);
    let before = versions(tb, &seed.gun).await;
    let releases = before[2];

    let o = trustkeeper(
        tb,
        &seed,
        trust.path(),
        &["sign", &image, "--key", key, "--dry-run"],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "would sign  targets/releases: version {releases} -> {}, expires ",
            releases + 1
        )),
        "{out}"
    );
    let digest = seed.digest("multi");
    assert!(
        out.contains(&format!("  add    {image} sha256:{digest} (")),
        "{out}"
    );
    assert!(
        out.contains("dry run: nothing was signed or published"),
        "{out}"
    );
    assert_eq!(
        versions(tb, &seed.gun).await,
        before,
        "the dry run published"
    );
    assert!(!tb.notary_digests(&seed.gun, None).contains_key("multi"));

    // witness --dry-run: every role the key holds, with the JSON form.
    let o = trustkeeper(
        tb,
        &seed,
        trust.path(),
        &[
            "witness",
            &seed.gun,
            "--key",
            key,
            "--dry-run",
            "-o",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap();
    let roles = plan["roles"].as_array().unwrap();
    assert!(!roles.is_empty(), "{plan}");
    for r in roles {
        assert_eq!(r["action"], "renew", "{r}");
        assert_eq!(
            r["newVersion"].as_u64().unwrap(),
            r["version"].as_u64().unwrap() + 1
        );
    }
    assert_eq!(
        versions(tb, &seed.gun).await,
        before,
        "the dry run published"
    );

    // The real run publishes what the dry run said.
    let o = trustkeeper(tb, &seed, trust.path(), &["sign", &image, "--key", key]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        role_version(tb, &seed.gun, "targets/releases").await,
        releases + 1
    );
    assert_eq!(
        tb.notary_digests(&seed.gun, Some("targets/releases"))["multi"],
        digest
    );
    // Now nothing is left to do.
    let o = trustkeeper(
        tb,
        &seed,
        trust.path(),
        &["sign", &image, "--key", key, "--dry-run"],
    );
    assert!(
        text(&o).contains("dry run: nothing to publish"),
        "{}",
        text(&o)
    );
}

/// A SignedImage file with its Secret, as `reconcile -f` reads it.
fn resource(seed: &Seed, tb: &Testbed, tags: &str) -> String {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let key = std::fs::read(seed.var("DELEGATION_KEY")).unwrap();
    let pass = std::fs::read(seed.var("DELEGATION_PASSPHRASE_FILE")).unwrap();
    let ca = std::fs::read(tb.var("CA_CERT")).unwrap();
    format!(
        "apiVersion: trustkeeper.dev/v1alpha1\nkind: SignedImage\nmetadata: {{name: app, namespace: ci}}\nspec:\n  image: {gun}\n  tags: {tags}\n  signingKey: {{secretRef: {{name: signer}}}}\n  registry: {{ca: {{secretKeyRef: {{name: signer, key: ca.crt}}}}}}\n  notary:\n    url: {url}\n    ca: {{secretKeyRef: {{name: signer, key: ca.crt}}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: signer, namespace: ci}}\ndata:\n  key.pem: {k}\n  passphrase: {p}\n  ca.crt: {c}\n",
        gun = seed.gun,
        url = tb.var("NOTARY_URL"),
        k = b64(&key),
        p = b64(&pass),
        c = b64(&ca),
    )
}

#[tokio::test]
async fn reconcile_dry_run_plans_each_resource_and_writes_nothing() {
    let tb = Testbed::get();
    let seed = tb.seed("dry-run-rec");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.yaml");
    std::fs::write(&file, resource(&seed, tb, "[v1, multi]")).unwrap();
    let before = versions(tb, &seed.gun).await;
    let releases = before[2];

    let o = trustkeeper(
        tb,
        &seed,
        dir.path(),
        &["reconcile", "-f", file.to_str().unwrap(), "--dry-run"],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("== ci/app ("), "{out}");
    assert!(
        out.contains(&format!(
            "would sign  targets/releases: version {releases} -> {}",
            releases + 1
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{}:multi sha256:{}",
            seed.gun,
            seed.digest("multi")
        )),
        "{out}"
    );
    // v1 is signed already: not in the plan.
    assert!(!out.contains(&format!("{}:v1 ", seed.gun)), "{out}");
    assert_eq!(
        versions(tb, &seed.gun).await,
        before,
        "the dry run published"
    );
    assert!(
        !dir.path().join("app.yaml.status.yaml").exists(),
        "a dry run wrote a status file"
    );
    let o = trustkeeper(
        tb,
        &seed,
        dir.path(),
        &[
            "reconcile",
            "-f",
            file.to_str().unwrap(),
            "--dry-run",
            "--watch",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// `spec.dryRun: true` in a file: `reconcile -f` (without `--dry-run`) plans, publishes nothing
/// and keeps the plan in the status; with the field removed the same command publishes it.
#[tokio::test]
async fn reconcile_of_a_dry_run_resource_keeps_the_plan_in_its_status() {
    let tb = Testbed::get();
    let seed = tb.seed("dry-run-spec");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.yaml");
    let plain = resource(&seed, tb, "[v1, multi]");
    std::fs::write(&file, plain.replace("  tags: ", "  dryRun: true\n  tags: ")).unwrap();
    let before = versions(tb, &seed.gun).await;
    let args = ["reconcile", "-f", file.to_str().unwrap(), "-o", "json"];

    let o = trustkeeper(tb, &seed, dir.path(), &args);
    assert!(o.status.success(), "{}", text(&o));
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    let ready = &st["conditions"][0];
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&"False".into(), &"DryRun".into()),
        "{st}"
    );
    let plan = &st["plannedChanges"];
    let releases = (plan["roles"].as_array().unwrap().iter())
        .find(|r| r["role"] == "targets/releases")
        .unwrap_or_else(|| panic!("{plan}"));
    assert_eq!(releases["newVersion"].as_u64().unwrap(), before[2] + 1);
    assert_eq!(releases["add"][0]["tag"], "multi", "{plan}");
    assert_eq!(
        releases["add"][0]["digest"],
        format!("sha256:{}", seed.digest("multi"))
    );
    assert_eq!(
        versions(tb, &seed.gun).await,
        before,
        "the dry run published"
    );
    let kept = std::fs::read_to_string(dir.path().join("app.yaml.status.yaml")).unwrap();
    assert!(kept.contains("plannedChanges:"), "{kept}");

    std::fs::write(&file, plain).unwrap();
    let o = trustkeeper(tb, &seed, dir.path(), &args);
    assert!(o.status.success(), "{}", text(&o));
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["conditions"][0]["reason"], "Signed", "{st}");
    assert!(st.get("plannedChanges").is_none(), "{st}");
    assert_eq!(
        role_version(tb, &seed.gun, "targets/releases").await,
        before[2] + 1
    );
    let kept = std::fs::read_to_string(dir.path().join("app.yaml.status.yaml")).unwrap();
    assert!(!kept.contains("plannedChanges"), "{kept}");
}

/// The tags of `repository` on the testbed registry that hold signatures (`sha256-…`).
async fn signature_tags(tb: &Testbed, repository: &str) -> Vec<String> {
    let http = reqwest::Client::builder()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&tb.ca_pem()).unwrap())
        .build()
        .unwrap();
    let url = format!("{}/v2/{repository}/tags/list", tb.var("REGISTRY_URL"));
    let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
    (v["tags"].as_array().into_iter().flatten())
        .filter_map(|t| t.as_str())
        .filter(|t| t.starts_with("sha256-"))
        .map(str::to_string)
        .collect()
}

/// `out` holds `line(format)` for cosign and for notation.
fn says_for_both(out: &str, line: impl Fn(&str) -> String) {
    for f in ["cosign", "notation"] {
        assert!(out.contains(&line(f)), "{f}: {out}");
    }
}

/// No signature tag in the registry, every notary version as `before`.
async fn nothing_pushed(tb: &Testbed, seed: &Seed, before: &[u64]) {
    assert_eq!(
        signature_tags(tb, &seed.repository).await,
        Vec::<String>::new()
    );
    assert_eq!(
        versions(tb, &seed.gun).await,
        before,
        "the dry run published"
    );
}

/// `--dry-run` with cosign and Notation lists the signatures those formats would push and
/// pushes none: `sign`, and `reconcile -f` with and without notary in the formats; after the
/// real run the same dry run has nothing to do.
#[tokio::test]
async fn a_dry_run_lists_the_registry_signatures_and_pushes_none() {
    let tb = Testbed::get();
    let seed = tb.seed("dry-run-formats");
    let dir = tempfile::tempdir().unwrap();
    let key = seed.var("DELEGATION_KEY");
    let cert = dir.path().join("signer.crt");
    let o = trustkeeper(
        tb,
        &seed,
        dir.path(),
        &[
            "key",
            "certificate",
            "--key",
            key,
            "--out",
            cert.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let image = format!("{}:multi", seed.gun);
    let digest = format!("sha256:{}", seed.digest("multi"));
    let before = versions(tb, &seed.gun).await;
    let sign = |dry: bool| {
        let mut args = vec![
            "sign",
            &image,
            "--key",
            key,
            "--format",
            "notary,cosign,notation",
        ];
        args.extend(["--certificate", cert.to_str().unwrap()]);
        if dry {
            args.push("--dry-run");
        }
        trustkeeper(tb, &seed, dir.path(), &args)
    };
    let o = sign(true);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    says_for_both(&out, |f| format!("would sign {image} {digest} in {f} ("));
    nothing_pushed(tb, &seed, &before).await;

    // reconcile -f --dry-run: with notary, and with the registry formats alone
    let cert_b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&cert).unwrap())
    };
    let three = resource(&seed, tb, "[multi]").replacen(
        "  signingKey:",
        "  formats: [notary, cosign, notation]\n  notation: {certificateSecretRef: {name: cert}}\n  signingKey:",
        1,
    ) + &format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: cert, namespace: ci}}\ndata:\n  tls.crt: {cert_b64}\n"
    );
    let file = dir.path().join("app.yaml");
    for spec in [
        three.clone(),
        three.replace("[notary, cosign, notation]", "[cosign, notation]"),
    ] {
        std::fs::write(&file, &spec).unwrap();
        let o = trustkeeper(
            tb,
            &seed,
            dir.path(),
            &["reconcile", "-f", file.to_str().unwrap(), "--dry-run"],
        );
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        says_for_both(&out, |f| {
            format!("would sign {}@{digest} in {f}\n", seed.gun)
        });
        assert!(
            out.contains("dry run: nothing was signed or published"),
            "{out}"
        );
        nothing_pushed(tb, &seed, &before).await;
    }

    // spec.dryRun without notary: the plan in the status, nothing pushed.
    let registry_only = three
        .replace("[notary, cosign, notation]", "[cosign, notation]")
        .replace("  tags: ", "  dryRun: true\n  tags: ");
    std::fs::write(&file, registry_only).unwrap();
    let o = trustkeeper(
        tb,
        &seed,
        dir.path(),
        &["reconcile", "-f", file.to_str().unwrap(), "-o", "json"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    let ready = &st["conditions"][0];
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&"False".into(), &"DryRun".into()),
        "{st}"
    );
    assert_eq!(st["plannedChanges"]["signaturesToMake"], 2, "{st}");
    assert!(
        (ready["message"].as_str().unwrap()).starts_with("dry run: 2 signatures to push"),
        "{st}"
    );
    nothing_pushed(tb, &seed, &before).await;

    // the real run pushes both; the same dry run then has nothing to push
    let o = sign(false);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(signature_tags(tb, &seed.repository).await.len(), 2);
    let o = sign(true);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(!out.contains("would sign"), "{out}");
    says_for_both(&out, |f| format!("unchanged {image} {digest} in {f} ("));
}
