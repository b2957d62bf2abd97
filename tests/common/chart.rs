//! The Helm chart rendered as it ships (`helm template`, namespace `trustkeeper`), for the tests
//! that check what it holds. Needs helm (`TRUSTKEEPER_HELM`, set by scripts/test.sh).

use std::process::Command;

use serde_json::Value;

/// The documents `helm template` renders with `args`, nulls dropped.
pub fn render(args: &[&str]) -> Vec<Value> {
    let helm = std::env::var("TRUSTKEEPER_HELM").expect(
        "TRUSTKEEPER_HELM is not set: run scripts/test.sh, or `tests/support/kube-testbed.sh tools DIR` \
         and export TRUSTKEEPER_HELM=DIR/bin/helm",
    );
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/trustkeeper");
    let out = Command::new(helm)
        .args(["template", "tk", chart, "-n", "trustkeeper"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap();
    docs.into_iter().filter(|d| !d.is_null()).collect()
}
