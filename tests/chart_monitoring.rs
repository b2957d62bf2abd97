//! The chart's monitoring: the PrometheusRule, rendered by helm exactly as it ships, checked and
//! unit-tested by promtool (tests/promtool/rules_test.yaml); the Grafana dashboard ConfigMap.
//! Needs helm (`TRUSTKEEPER_HELM`) and promtool (`PROMTOOL`, or `TRUSTKEEPER_REFEREES/bin/promtool`),
//! both set by scripts/test.sh.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

#[path = "common/chart.rs"]
mod chart;
use chart::render as helm;

fn promtool() -> PathBuf {
    if let Ok(p) = std::env::var("PROMTOOL") {
        return p.into();
    }
    let dir = std::env::var("TRUSTKEEPER_REFEREES").expect(
        "neither PROMTOOL nor TRUSTKEEPER_REFEREES is set: run scripts/test.sh, or \
         `tests/support/referees.sh install DIR` and export TRUSTKEEPER_REFEREES=DIR",
    );
    PathBuf::from(dir).join("bin/promtool")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}: {text}");
    text
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn prometheus_rule_is_off_by_default() {
    assert!(of_kind(&helm(&[]), "PrometheusRule").is_empty());
}

#[test]
fn prometheus_rule_passes_promtool_check_and_unit_tests() {
    let docs = helm(&[
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--show-only",
        "templates/prometheusrule.yaml",
    ]);
    let rule = match of_kind(&docs, "PrometheusRule")[..] {
        [r] => r,
        ref other => panic!("one PrometheusRule, not {}", other.len()),
    };
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], "trustkeeper");
    let dir = tempfile::tempdir().unwrap();
    // JSON is YAML: promtool reads the PrometheusRule's spec (`groups:`) as a rules file.
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_json::to_string_pretty(&rule["spec"]).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/promtool/rules_test.yaml"
        ),
        dir.path().join("rules_test.yaml"),
    )
    .unwrap();
    let checked = run(Command::new(promtool())
        .arg("check")
        .arg("rules")
        .arg(dir.path().join("rules.yaml")));
    assert!(checked.contains("SUCCESS: 6 rules found"), "{checked}");
    let tested = run(Command::new(promtool()).current_dir(dir.path()).args([
        "test",
        "rules",
        "rules_test.yaml",
    ]));
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn prometheus_rule_values_reach_the_rules() {
    let docs = helm(&[
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "metrics.prometheusRule.additionalLabels.release=kube-prometheus-stack",
        "--set",
        "metrics.prometheusRule.nearExpiryDays=45",
        "--set",
        "metrics.prometheusRule.notReadyFor=2h",
    ]);
    let rule = of_kind(&docs, "PrometheusRule")[0];
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let rules = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    let find = |name: &str| rules.iter().find(|r| r["alert"] == name).unwrap();
    assert!(
        find("TrustkeeperRoleNearExpiry")["expr"]
            .as_str()
            .unwrap()
            .contains("< 45 * 86400")
    );
    assert_eq!(find("TrustkeeperSignedImageNotReady")["for"], "2h");
}

fn dashboard_file() -> Value {
    serde_json::from_str(include_str!(
        "../charts/trustkeeper/dashboards/trustkeeper.json"
    ))
    .unwrap()
}

/// Every panel query of the dashboard (`targets[].expr`).
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn dashboard_is_off_by_default() {
    assert!(of_kind(&helm(&[]), "ConfigMap").is_empty());
}

#[test]
fn dashboard_configmap_is_the_file_with_the_sidecar_label() {
    let docs = helm(&[
        "--set",
        "grafana.dashboard.enabled=true",
        "--set",
        "grafana.dashboard.namespace=monitoring",
        "--set",
        "grafana.dashboard.annotations.grafana_folder=Supply chain",
    ]);
    let cm = match of_kind(&docs, "ConfigMap")[..] {
        [c] => c,
        ref other => panic!("one ConfigMap, not {}", other.len()),
    };
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        cm["metadata"]["annotations"]["grafana_folder"],
        "Supply chain"
    );
    let shipped: Value =
        serde_json::from_str(cm["data"]["trustkeeper.json"].as_str().unwrap()).unwrap();
    assert_eq!(shipped, dashboard_file());

    // The sidecar label is configurable; the namespace defaults to the release's.
    let docs = helm(&[
        "--set",
        "grafana.dashboard.enabled=true",
        "--set",
        "grafana.dashboard.labels.grafana_dashboard=null",
        "--set-string",
        "grafana.dashboard.labels.dashboards=trustkeeper",
    ]);
    let cm = of_kind(&docs, "ConfigMap")[0];
    assert_eq!(cm["metadata"]["namespace"], "trustkeeper");
    assert!(cm["metadata"]["labels"]["grafana_dashboard"].is_null());
    assert_eq!(cm["metadata"]["labels"]["dashboards"], "trustkeeper");
}

/// promtool parses every panel query (as a recording rule; Grafana's variables replaced by
/// what they expand to).
#[test]
fn dashboard_queries_are_valid_promql() {
    let exprs = dashboard_exprs(&dashboard_file());
    assert!(exprs.len() >= 12, "{exprs:?}");
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            serde_json::json!({
                "record": format!("trustkeeper_dashboard:query_{i}"),
                "expr": e.replace("$__rate_interval", "2m").replace("$namespace", ".*"),
            })
        })
        .collect();
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard-queries.yaml");
    std::fs::write(&path, file.to_string()).unwrap();
    let out = run(Command::new(promtool()).args(["check", "rules"]).arg(&path));
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{out}"
    );
}
