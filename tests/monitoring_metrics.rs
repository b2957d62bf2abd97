//! Every metric the chart's alerts and dashboard query exists: the metric names (and the labels
//! they match on or group by) in the PrometheusRule template's `expr`s and the Grafana
//! dashboard's queries are checked against what the operator's metrics registry really encodes,
//! with one of each kind recorded (counters give `_total`, the histogram `_bucket/_sum/_count`).
//! A renamed or misspelt metric fails here, not silently in someone's Prometheus.

use std::collections::{BTreeMap, BTreeSet};

use trustkeeper::controller::metrics::{Metrics, RequestLabels};

const RULES: &str = include_str!("../charts/trustkeeper/templates/prometheusrule.yaml");
const DASHBOARD: &str = include_str!("../charts/trustkeeper/dashboards/trustkeeper.json");

/// Sample names and their label names, as `/metrics` serves them after one of everything.
fn exposed() -> BTreeMap<String, BTreeSet<String>> {
    let m = Metrics::new();
    let status: trustkeeper::api::SignedImageStatus = serde_json::from_value(serde_json::json!({
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "Signed", "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z"
        }],
        "signedTags": [{"tag": "v1", "digest": "sha256:00", "size": 1, "role": "targets"}],
        "roles": [{
            "name": "targets", "version": 1, "targets": 1,
            "expires": "2030-01-01T00:00:00Z", "renewalTime": "2029-07-01T00:00:00Z"
        }]
    }))
    .unwrap();
    m.set_status("ns", "app", &status);
    m.set_repository("ns", "app", "registry.example/team/app");
    m.failure("PublishFailed");
    m.requests
        .get_or_create(&RequestLabels {
            server: "notary",
            kind: "get",
        })
        .inc();
    for c in [
        &m.reconciles,
        &m.publishes,
        &m.renewals,
        &m.signed,
        &m.status_writes,
        &m.events,
    ] {
        c.inc();
    }
    drop(m.timer());
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in m.render().lines().filter(|l| !l.starts_with('#')) {
        let name_end = line.find(['{', ' ']).unwrap();
        let labels = out.entry(line[..name_end].to_string()).or_default();
        if line[name_end..].starts_with('{') {
            let body = &line[name_end + 1..line.rfind('}').unwrap()];
            // Our label values hold no `",` (names, reasons, role names).
            for pair in body.split("\",") {
                labels.insert(pair.split('=').next().unwrap().to_string());
            }
        }
    }
    out
}

/// The `expr`s of the rule template, single-line or block scalars, helm actions left in.
fn rule_exprs() -> Vec<String> {
    let lines: Vec<&str> = RULES.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest == "|" || rest == "|-" {
            let indent = line.len() - line.trim_start().len();
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.len() - l.trim_start().len() > indent)
                .copied()
                .collect();
            out.push(block.join("\n"));
        } else {
            out.push(rest.to_string());
        }
    }
    out
}

/// Panel queries, and the metric of the variables' `label_values(metric, label)`.
fn dashboard_exprs() -> Vec<String> {
    let d: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    let mut out: Vec<String> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            let args = q
                .strip_prefix("label_values(")
                .and_then(|a| a.strip_suffix(')'))
                .unwrap_or_else(|| panic!("a variable query that is not label_values: {q}"));
            let (metric, label) = args.split_once(',').unwrap();
            out.push(format!("sum by ({}) ({})", label.trim(), metric.trim()));
        }
    }
    out
}

#[derive(Debug, Default, PartialEq)]
struct Used {
    /// Metric name -> label names its selector matches on.
    metrics: BTreeMap<String, BTreeSet<String>>,
    /// Labels in `by (...)`, `without (...)`, `on (...)`, `ignoring (...)`, `group_left (...)`.
    grouping: BTreeSet<String>,
}

/// Metric names and label names of one PromQL expression. Helm actions (`{{ ... }}`) and
/// Grafana variables (`$x`) are values, never names.
fn parse(expr: &str) -> Used {
    // Operators, and the aggregations (which may come before their `by (...)`).
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "group_left",
        "group_right",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    // Label lists; group_left/group_right may have one (the labels copied from the other side).
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let mut s = expr.to_string();
    while let Some(a) = s.find("{{") {
        let b = s[a..].find("}}").expect("unclosed helm action") + a;
        s.replace_range(a..b + 2, "0");
    }
    let c: Vec<char> = s.chars().collect();
    let ident = |ch: char| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':';
    let mut used = Used::default();
    let mut i = 0;
    let skip_ws = |mut j: usize| {
        while j < c.len() && c[j].is_whitespace() {
            j += 1;
        }
        j
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '"' || ch == '\'' {
            i += 1;
            while c[i] != ch {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if ch == '[' {
            while c[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if ch.is_ascii_digit() || ch == '.' || ch == '$' {
            // Numbers, durations (1h, 2e5) and variables.
            i += 1;
            while i < c.len() && ident(c[i]) {
                i += 1;
            }
        } else if ident(ch) {
            let start = i;
            while i < c.len() && ident(c[i]) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let next = skip_ws(i);
            if GROUPING.contains(&word.as_str()) && c.get(next) == Some(&'(') {
                let close = next + c[next..].iter().position(|&x| x == ')').unwrap();
                let list: String = c[next + 1..close].iter().collect();
                used.grouping.extend(
                    list.split(',')
                        .map(|l| l.trim().to_string())
                        .filter(|l| !l.is_empty()),
                );
                i = close + 1;
            } else if c.get(next) == Some(&'(') || KEYWORDS.contains(&word.as_str()) {
                // A function or aggregation, or an operator keyword.
            } else {
                let labels = used.metrics.entry(word).or_default();
                if c.get(next) == Some(&'{') {
                    // label op "value", ...: the values may hold commas and braces.
                    i = next + 1;
                    loop {
                        while c[i].is_whitespace() || c[i] == ',' {
                            i += 1;
                        }
                        if c[i] == '}' {
                            i += 1;
                            break;
                        }
                        let start = i;
                        while ident(c[i]) {
                            i += 1;
                        }
                        labels.insert(c[start..i].iter().collect());
                        while c[i] != '"' && c[i] != '\'' {
                            i += 1;
                        }
                        let q = c[i];
                        i += 1;
                        while c[i] != q {
                            i += if c[i] == '\\' { 2 } else { 1 };
                        }
                        i += 1;
                    }
                }
            }
        } else if ch == '{' {
            panic!("a selector without a metric name in {expr}: name the metric");
        } else {
            i += 1;
        }
    }
    used
}

/// What in `exprs` the registry does not expose: unknown metrics, labels a metric lacks, and
/// grouping labels no metric of the expression has.
fn missing(exprs: &[String], exposed: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut out = Vec::new();
    for e in exprs {
        let used = parse(e);
        assert!(!used.metrics.is_empty(), "no metric found in {e}");
        let mut all_labels = BTreeSet::new();
        for (metric, labels) in &used.metrics {
            let Some(have) = exposed.get(metric) else {
                out.push(format!("metric {metric} (in {e})"));
                continue;
            };
            all_labels.extend(have.iter().cloned());
            for l in labels.difference(have) {
                out.push(format!("label {l} of {metric} (in {e})"));
            }
        }
        for l in used.grouping.difference(&all_labels) {
            out.push(format!("grouping label {l} (in {e})"));
        }
    }
    out
}

#[test]
fn the_registry_exposes_one_of_each_kind() {
    let exposed = exposed();
    for name in [
        "trustkeeper_failures_total",
        "trustkeeper_reconcile_duration_seconds_bucket",
        "trustkeeper_reconcile_duration_seconds_sum",
        "trustkeeper_reconcile_duration_seconds_count",
        "trustkeeper_role_expiry_timestamp_seconds",
        "trustkeeper_signedimage_ready",
        "trustkeeper_signedimage_info",
    ] {
        assert!(exposed.contains_key(name), "{name}: {exposed:?}");
    }
    assert!(exposed["trustkeeper_reconcile_duration_seconds_bucket"].contains("le"));
}

#[test]
fn every_metric_an_alert_uses_exists() {
    let exprs = rule_exprs();
    assert_eq!(exprs.len(), 6, "{exprs:?}");
    assert_eq!(missing(&exprs, &exposed()), Vec::<String>::new());
}

#[test]
fn every_metric_a_dashboard_panel_uses_exists() {
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 18, "{exprs:?}");
    assert_eq!(missing(&exprs, &exposed()), Vec::<String>::new());
}

/// The checker itself: it finds what it must, and refuses what does not exist.
#[test]
fn the_checker_finds_names_and_refuses_unknown_ones() {
    let used = parse(
        r#"histogram_quantile(0.9, sum by (le) (rate(trustkeeper_reconcile_duration_seconds_bucket[$__rate_interval])))
           / on() group_left max without (pod) (trustkeeper_signedimage_ready{namespace=~"$namespace", reason!="a,b"}) > {{ .Values.x }} * 86400"#,
    );
    assert_eq!(
        used.metrics.keys().collect::<Vec<_>>(),
        [
            "trustkeeper_reconcile_duration_seconds_bucket",
            "trustkeeper_signedimage_ready"
        ]
    );
    assert_eq!(
        used.metrics["trustkeeper_signedimage_ready"],
        BTreeSet::from(["namespace".to_string(), "reason".to_string()])
    );
    assert_eq!(
        used.grouping,
        BTreeSet::from(["le".to_string(), "pod".to_string()])
    );
    let exposed = exposed();
    let bad = missing(
        &[
            "trustkeeper_role_expiry_seconds - time() < 0".to_string(),
            "trustkeeper_failures_total{repository=\"x\"}".to_string(),
            "sum by (repository) (trustkeeper_signed_tags)".to_string(),
        ],
        &exposed,
    );
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert!(bad[0].starts_with("metric trustkeeper_role_expiry_seconds "));
    assert!(bad[1].starts_with("label repository of trustkeeper_failures_total "));
    assert!(bad[2].starts_with("grouping label repository "));
    // group_left's list names labels of the other side.
    let joined = "trustkeeper_signed_tags * on (namespace, name) group_left (repository) trustkeeper_signedimage_info";
    assert_eq!(
        missing(&[joined.to_string()], &exposed),
        Vec::<String>::new()
    );
    let bad = missing(&[joined.replace("(repository)", "(image)")], &exposed);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].starts_with("grouping label image "), "{bad:?}");
}
