//! The crate graph is the architecture: this check fails when a dependency crosses a layer.
//! It reads the resolved graph from `cargo metadata` (normal dependencies, transitively; dev
//! and build dependencies do not ship) and holds each library crate to what it may not reach.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// What each library crate must not depend on, directly or through another crate.
const RULES: &[(&str, &[&str])] = &[
    (
        "trustkeeper-http",
        &[
            "kube",
            "k8s-openapi",
            "trustkeeper-notary",
            "trustkeeper-registry",
            "trustkeeper-formats",
            "trustkeeper-engine",
        ],
    ),
    (
        "trustkeeper-notary",
        &[
            "kube",
            "k8s-openapi",
            "trustkeeper-registry",
            "trustkeeper-formats",
            "trustkeeper-engine",
        ],
    ),
    (
        "trustkeeper-registry",
        &[
            "kube",
            "k8s-openapi",
            "trustkeeper-notary",
            "trustkeeper-formats",
            "trustkeeper-engine",
        ],
    ),
    (
        "trustkeeper-formats",
        &["kube", "k8s-openapi", "trustkeeper-engine"],
    ),
    ("trustkeeper-engine", &["kube", "k8s-openapi"]),
];

/// `cargo metadata` of the workspace at `root`, for this host (the other platforms' crates are
/// not downloaded here, and `--offline` must not need them).
fn metadata(root: &Path) -> Value {
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc -vV names the host");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
            &host,
        ])
        .current_dir(root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// Every rule broken, as "crate reaches banned (via path)".
fn violations(meta: &Value) -> Vec<String> {
    let name_of: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    // Normal (shipped) edges only.
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let from = node["id"].as_str().unwrap();
        for dep in node["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            if normal {
                edges
                    .entry(from)
                    .or_default()
                    .push(dep["pkg"].as_str().unwrap());
            }
        }
    }
    let mut found = Vec::new();
    for (krate, banned) in RULES {
        let start = name_of
            .iter()
            .find(|(_, n)| *n == krate)
            .map(|(id, _)| *id)
            .unwrap_or_else(|| panic!("{krate} is not in the workspace any more: update RULES"));
        // Breadth-first, remembering how each crate was reached, for the message.
        let mut via: BTreeMap<&str, &str> = BTreeMap::new();
        let mut seen = BTreeSet::from([start]);
        let mut queue = vec![start];
        while let Some(at) = queue.pop() {
            for &next in edges.get(at).into_iter().flatten() {
                if seen.insert(next) {
                    via.insert(next, at);
                    queue.push(next);
                }
            }
        }
        for &id in &seen {
            let name = name_of[id];
            if banned.contains(&name)
                || banned
                    .iter()
                    .any(|b| *b == "kube" && name.starts_with("kube-"))
            {
                let mut path = vec![name];
                let mut at = id;
                while let Some(&prev) = via.get(at) {
                    path.push(name_of[prev]);
                    at = prev;
                }
                path.reverse();
                found.push(format!("{krate} depends on {name} ({})", path.join(" -> ")));
            }
        }
    }
    found
}

#[test]
fn no_crate_depends_across_its_layer() {
    let meta = metadata(Path::new(env!("CARGO_MANIFEST_DIR")));
    let v = violations(&meta);
    assert!(
        v.is_empty(),
        "dependencies cross the layers:\n  {}",
        v.join("\n  ")
    );
}

/// The check is not one that cannot fail: give the protocol crate a kube dependency in a copy
/// of the workspace and it must say so.
#[test]
fn the_check_fails_when_the_protocol_crate_gets_kube() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let copy = tempfile::tempdir().unwrap();
    for item in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "src",
        "crates",
        "tests",
        "benches",
    ] {
        copy_tree(&root.join(item), &copy.path().join(item));
    }
    let manifest = copy.path().join("crates/notary/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text.replacen(
        "[dependencies]\n",
        "[dependencies]\nkube.workspace = true\n",
        1,
    );
    std::fs::write(&manifest, text).unwrap();
    let v = violations(&metadata(copy.path()));
    assert!(
        v.iter()
            .any(|m| m.starts_with("trustkeeper-notary depends on kube ")),
        "the injected kube dependency went unnoticed: {v:?}"
    );
    // Through the protocol crate, the engine is caught as well.
    assert!(
        v.iter()
            .any(|m| m.starts_with("trustkeeper-engine depends on kube ")),
        "{v:?}"
    );
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() == "target" {
                continue;
            }
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else if from.exists() {
        std::fs::copy(from, to).unwrap();
    }
}
