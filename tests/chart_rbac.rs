//! Least privilege, shown: the RBAC rules the Helm chart renders grant exactly the API calls the
//! controller makes (`controller::API_CALLS`, which the mocked-API scenarios enforce: a request
//! not on that list fails them). Nothing missing, nothing extra. The test API server runs no RBAC,
//! so this is where it is checked. Needs helm (`TRUSTKEEPER_HELM`, set by scripts/test.sh).

use std::collections::BTreeSet;

use serde_json::Value;

#[path = "common/chart.rs"]
mod chart;
use chart::render;

/// (verb, group, resource) granted by the Roles and ClusterRoles, and the namespaces of Roles.
fn granted(docs: &[Value]) -> (BTreeSet<(String, String, String)>, BTreeSet<String>, bool) {
    let mut out = BTreeSet::new();
    let mut role_namespaces = BTreeSet::new();
    let mut cluster_role = false;
    for d in docs {
        if is_aggregated(d) {
            continue;
        }
        match d["kind"].as_str() {
            Some("ClusterRole") => cluster_role = true,
            Some("Role") => {
                role_namespaces.insert(d["metadata"]["namespace"].as_str().unwrap().to_string());
            }
            _ => continue,
        }
        for rule in d["rules"].as_array().unwrap() {
            let strs = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default()
            };
            assert!(
                !strs("verbs").contains(&"*".to_string())
                    && !strs("resources").contains(&"*".to_string())
            );
            for g in strs("apiGroups") {
                for r in strs("resources") {
                    for v in strs("verbs") {
                        out.insert((v.clone(), g.clone(), r.clone()));
                    }
                }
            }
        }
    }
    (out, role_namespaces, cluster_role)
}

fn expected() -> BTreeSet<(String, String, String)> {
    trustkeeper::controller::API_CALLS
        .iter()
        .map(|(v, g, r)| (v.to_string(), g.to_string(), r.to_string()))
        .collect()
}

#[test]
fn cluster_wide_rbac_is_exactly_what_the_controller_calls() {
    let docs = render(&[]);
    let (granted, namespaces, cluster_role) = granted(&docs);
    assert!(cluster_role);
    assert_eq!(
        namespaces,
        BTreeSet::from(["trustkeeper".to_string()]),
        "the Lease Role only"
    );
    let want = expected();
    assert_eq!(
        granted.difference(&want).collect::<Vec<_>>(),
        Vec::<&(String, String, String)>::new(),
        "extra"
    );
    assert_eq!(
        want.difference(&granted).collect::<Vec<_>>(),
        Vec::<&(String, String, String)>::new(),
        "missing"
    );
}

#[test]
fn namespaced_mode_has_no_cluster_role() {
    let docs = render(&["--set", "watchNamespaces={team-a,team-b}"]);
    let (granted, namespaces, cluster_role) = granted(&docs);
    assert!(
        !cluster_role,
        "watching listed namespaces needs nothing cluster-wide"
    );
    assert_eq!(
        namespaces,
        ["team-a", "team-b", "trustkeeper"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(granted, expected());
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains("--namespace=team-a") && args.contains("--namespace=team-b"),
        "{args}"
    );
}

#[test]
fn pod_is_locked_down() {
    let docs = render(&[]);
    let d = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert!(
        c["resources"]["limits"]["memory"].is_string()
            && c["resources"]["requests"]["cpu"].is_string()
    );
    assert_eq!(c["args"][0], "controller");
}

/// The chart's reconcile deadline reaches the controller as a flag it accepts.
#[test]
fn reconcile_deadline_reaches_the_controller() {
    use clap::Parser;
    for (set, want) in [(None, "5m"), (Some("reconcileDeadline=90s"), "90s")] {
        let docs = match set {
            Some(s) => render(&["--set", s]),
            None => render(&[]),
        };
        let d = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
        let args: Vec<String> = d["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        assert!(args.contains(&format!("--deadline={want}")), "{args:?}");
        let cli = trustkeeper::cli::Cli::try_parse_from(
            std::iter::once("trustkeeper".to_string()).chain(args.clone()),
        )
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let secs = if want == "5m" { 300 } else { 90 };
        assert_eq!(cli.global.deadline.as_secs(), secs);
    }
}

/// A ClusterRole for the built-in view/edit/admin roles to aggregate (for people, not the
/// operator's ServiceAccount).
fn is_aggregated(d: &Value) -> bool {
    d["kind"] == "ClusterRole"
        && d["metadata"]["labels"].as_object().is_some_and(|l| {
            l.keys()
                .any(|k| k.starts_with("rbac.authorization.k8s.io/aggregate-to-"))
        })
}

/// The aggregated ClusterRoles: view (get/list/watch) into view, edit and admin; the writes into
/// edit and admin only; on the CRD's own group and plural; in both modes; off with a value. The
/// test API server runs no RBAC (apiextensions-apiserver), so what a user bound to `view` may
/// do is not tried against it: the labels and rules that make it so are checked here.
#[test]
fn aggregated_cluster_roles_extend_view_edit_and_admin() {
    let crd: Value = serde_saphyr::from_str(include_str!(
        "../charts/trustkeeper/crds/signedimages.trustkeeper.dev.yaml"
    ))
    .unwrap();
    let group = crd["spec"]["group"].as_str().unwrap();
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap();
    let strs = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let set = |a: &[&str]| -> BTreeSet<String> { a.iter().map(|s| s.to_string()).collect() };
    for args in [&[][..], &["--set", "watchNamespaces={team-a}"][..]] {
        let docs = render(args);
        let roles: Vec<&Value> = docs.iter().filter(|d| is_aggregated(d)).collect();
        assert_eq!(roles.len(), 2, "{args:?}");
        for (suffix, to, verbs) in [
            (
                "-view",
                &["view", "edit", "admin"][..],
                &["get", "list", "watch"][..],
            ),
            (
                "-edit",
                &["edit", "admin"][..],
                &["create", "update", "patch", "delete", "deletecollection"][..],
            ),
        ] {
            let r = roles
                .iter()
                .find(|r| r["metadata"]["name"].as_str().unwrap().ends_with(suffix))
                .unwrap();
            let labels = r["metadata"]["labels"].as_object().unwrap();
            let aggregated: BTreeSet<String> = labels
                .iter()
                .filter_map(|(k, v)| {
                    let to = k.strip_prefix("rbac.authorization.k8s.io/aggregate-to-")?;
                    assert_eq!(v, "true");
                    Some(to.to_string())
                })
                .collect();
            assert_eq!(aggregated, set(to), "{suffix}");
            let rules = r["rules"].as_array().unwrap();
            assert_eq!(rules.len(), 1);
            assert_eq!(strs(&rules[0]["apiGroups"]), set(&[group]));
            assert_eq!(strs(&rules[0]["resources"]), set(&[plural]));
            assert_eq!(strs(&rules[0]["verbs"]), set(verbs), "{suffix}");
        }
    }
    let off = render(&["--set", "rbac.aggregateClusterRoles=false"]);
    assert!(!off.iter().any(is_aggregated));
}
