//! `reconcile -f`: runs SignedImage resources from YAML files without a cluster. Secrets and
//! ConfigMaps they reference come from the same files or from `--secrets-dir` (one folder per
//! object, one file per key, as Kubernetes mounts them). Each resource's status is printed and
//! written beside its file (`FILE.status.yaml`), which also carries the trust anchor to the next run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::Args;
use jiff::Timestamp;
use serde_json::Value;
use zeroize::Zeroizing;

use super::common::{self, CliError};
use super::{Global, Output};
use crate::api::{SignedImage, SignedImageStatus};
use crate::controller::secrets::{GatherError, SecretData, SecretSource, gather};
use crate::engine::{Failure, ReconcileRequest};

#[derive(Args, Debug)]
pub struct ReconcileArgs {
    /// SignedImage YAML files, or folders of them (`*.yaml`, `*.yml`).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Keep running: reconcile each resource again when its next sync time comes, and re-read
    /// the files each time.
    #[arg(long)]
    pub watch: bool,
    /// Folder with referenced Secrets/ConfigMaps as `NAME/KEY` files.
    #[arg(long, env = "TRUSTKEEPER_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
}

/// One SignedImage read from a file.
struct Item {
    file: PathBuf,
    resource: SignedImage,
}

/// Kind of an object in the input files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ObjectKind {
    Secret,
    ConfigMap,
}

/// (kind, namespace, name) of an object in the input files.
type ObjectKey = (ObjectKind, String, String);
/// Its type and data.
type ObjectValue = (Option<String>, BTreeMap<String, Vec<u8>>);

/// Objects from the input files and the secrets folder.
struct FileSource {
    objects: BTreeMap<ObjectKey, ObjectValue>,
    dir: Option<PathBuf>,
}

impl FileSource {
    fn object(&self, kind: ObjectKind, ns: &str, name: &str) -> Option<ObjectValue> {
        if let Some(v) = self.objects.get(&(kind, ns.to_string(), name.to_string())) {
            return Some(v.clone());
        }
        // The secrets folder: NAME/KEY files, as Kubernetes mounts a Secret or ConfigMap.
        let folder = self.dir.as_ref()?.join(name);
        let entries = std::fs::read_dir(&folder).ok()?;
        let mut data = BTreeMap::new();
        for e in entries.flatten() {
            let path = e.path();
            if path.is_file()
                && let Some(key) = path.file_name().and_then(|n| n.to_str())
                && !key.starts_with("..")
                && let Ok(bytes) = std::fs::read(&path)
            {
                data.insert(key.to_string(), bytes);
            }
        }
        // A folder has no Secret type: infer it from the keys, as the API would have it.
        let type_ = if data.contains_key(".dockerconfigjson") {
            Some("kubernetes.io/dockerconfigjson".to_string())
        } else if data.contains_key("username") && data.contains_key("password") {
            Some("kubernetes.io/basic-auth".to_string())
        } else {
            None
        };
        Some((type_, data))
    }
}

impl SecretSource for FileSource {
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<SecretData>, kube::Error> {
        Ok(self
            .object(ObjectKind::Secret, namespace, name)
            .map(|(type_, data)| SecretData {
                type_,
                data: data
                    .into_iter()
                    .map(|(k, v)| (k, Zeroizing::new(v)))
                    .collect(),
            }))
    }

    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, kube::Error> {
        Ok(self
            .object(ObjectKind::ConfigMap, namespace, name)
            .map(|(_, data)| data))
    }
}

fn yaml_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| CliError::new(format!("cannot read {}: {e}", p.display())))?
                .flatten()
                .map(|e| e.path())
                .filter(|f| {
                    let n = f.to_string_lossy();
                    (n.ends_with(".yaml") || n.ends_with(".yml")) && !n.ends_with(".status.yaml")
                })
                .collect();
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn b64(v: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .ok()
}

fn load(
    inputs: &[PathBuf],
    secrets_dir: Option<&Path>,
) -> Result<(Vec<Item>, FileSource), CliError> {
    let mut items = Vec::new();
    let mut src = FileSource {
        objects: BTreeMap::new(),
        dir: secrets_dir.map(Path::to_path_buf),
    };
    for file in yaml_files(inputs)? {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| CliError::new(format!("cannot read {}: {e}", file.display())))?;
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .map_err(|e| CliError::new(format!("{} is not valid YAML: {e}", file.display())))?;
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let ns = doc["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string();
            match kind.as_str() {
                "SignedImage" => {
                    let resource: SignedImage = serde_json::from_value(doc).map_err(|e| {
                        CliError::new(format!(
                            "{}: SignedImage {name:?} is invalid: {e}",
                            file.display()
                        ))
                    })?;
                    items.push(Item {
                        file: file.clone(),
                        resource,
                    });
                }
                "Secret" | "ConfigMap" => {
                    let k = if kind == "Secret" {
                        ObjectKind::Secret
                    } else {
                        ObjectKind::ConfigMap
                    };
                    let mut data = BTreeMap::new();
                    if let Some(m) = doc["data"].as_object() {
                        for (key, v) in m {
                            let v = v.as_str().unwrap_or_default();
                            let bytes = if k == ObjectKind::Secret {
                                b64(v).ok_or_else(|| {
                                    CliError::new(format!(
                                        "{}: Secret {name} key {key} is not base64",
                                        file.display()
                                    ))
                                })?
                            } else {
                                v.as_bytes().to_vec()
                            };
                            data.insert(key.clone(), bytes);
                        }
                    }
                    if let Some(m) = doc["stringData"].as_object() {
                        for (key, v) in m {
                            data.insert(
                                key.clone(),
                                v.as_str().unwrap_or_default().as_bytes().to_vec(),
                            );
                        }
                    }
                    let type_ = doc["type"].as_str().map(str::to_string);
                    src.objects.insert((k, ns, name), (type_, data));
                }
                other => {
                    return Err(CliError::new(format!(
                        "{}: unexpected kind {other:?}: give SignedImage, Secret and ConfigMap objects",
                        file.display()
                    )));
                }
            }
        }
    }
    if items.is_empty() {
        return Err(CliError::new("no SignedImage in the given files"));
    }
    Ok((items, src))
}

fn status_file(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".status.yaml");
    PathBuf::from(s)
}

/// Statuses kept beside a file: name → status. A status file that cannot be read is an error,
/// not an empty map: it carries the trust anchor and the versions seen, and dropping it silently
/// would trust the server's root anew and forget rollback protection.
fn read_statuses(file: &Path) -> Result<BTreeMap<String, SignedImageStatus>, CliError> {
    let path = status_file(file);
    let corrupt = |e: &dyn std::fmt::Display| {
        CliError::new(format!(
            "{} is corrupt ({e}): remove it to trust the server's root anew",
            path.display()
        ))
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(CliError::new(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| corrupt(&e))?;
    let mut out = BTreeMap::new();
    for d in docs {
        let Some(name) = d["metadata"]["name"].as_str() else {
            return Err(corrupt(&"a document without metadata.name"));
        };
        let st = serde_json::from_value(d["status"].clone()).map_err(|e| corrupt(&e))?;
        out.insert(name.to_string(), st);
    }
    Ok(out)
}

fn write_statuses(
    file: &Path,
    statuses: &BTreeMap<String, (String, SignedImageStatus)>,
) -> Result<(), CliError> {
    let mut out = String::from(
        "# Written by `trustkeeper reconcile`; carries the trust anchor to the next run.\n",
    );
    for (name, (ns, st)) in statuses {
        let doc = serde_json::json!({
            "apiVersion": "trustkeeper.dev/v1alpha1",
            "kind": "SignedImage",
            "metadata": {"name": name, "namespace": ns},
            "status": st,
        });
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&doc).map_err(|e| CliError::new(e.to_string()))?);
    }
    common::write_atomic(&status_file(file), out.as_bytes())
}

/// Resources reconciled at once: a slow one (bounded by the deadline) does not hold up the rest.
const AT_ONCE: usize = 4;

/// One resource's run: its Secrets, then the engine; a missing Secret is a failed outcome.
async fn run_one(
    engine: &crate::engine::Engine,
    src: &FileSource,
    item: &Item,
    id: &str,
    ns: &str,
    previous: Option<&SignedImageStatus>,
) -> crate::engine::Outcome {
    let gathered = gather(src, ns, &item.resource.spec)
        .await
        .map_err(|e| match e {
            GatherError::Problem(p) => Failure::new(p.reason, p.message),
            GatherError::Api(e) => Failure::new(crate::api::reasons::SECRET_INVALID, e.to_string()),
        });
    match gathered {
        Ok(credentials) => {
            engine
                .run(ReconcileRequest {
                    id,
                    spec: &item.resource.spec,
                    generation: item.resource.metadata.generation,
                    previous,
                    credentials,
                    pinned: Default::default(),
                })
                .await
        }
        Err(f) => crate::engine::Engine::failed(
            previous,
            item.resource.metadata.generation,
            f,
            Timestamp::now(),
            rand::random(),
        ),
    }
}

fn name_and_namespace(item: &Item) -> (String, String) {
    let name = item.resource.metadata.name.clone().unwrap_or_default();
    let ns = item
        .resource
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    (name, ns)
}

pub async fn reconcile(g: &Global, a: ReconcileArgs) -> Result<(), CliError> {
    use futures::StreamExt;
    let engine = common::engine(g)?;
    loop {
        let (items, src) = load(&a.files, a.secrets_dir.as_deref())?;
        // The statuses kept beside each file, read once. A corrupt one fails the resources of
        // its own file (and is left as it is); the other files' resources still run.
        let mut kept: BTreeMap<PathBuf, Result<BTreeMap<String, SignedImageStatus>, String>> =
            BTreeMap::new();
        for item in &items {
            kept.entry(item.file.clone())
                .or_insert_with(|| read_statuses(&item.file).map_err(|e| e.message));
        }
        // What each status file holds while the runs go on: every resource's previous status
        // until its own run ends, so that writing one early never drops another's.
        let mut by_file: BTreeMap<PathBuf, BTreeMap<String, (String, SignedImageStatus)>> =
            BTreeMap::new();
        let mut previous: Vec<Option<SignedImageStatus>> = Vec::new();
        for item in &items {
            let (name, ns) = name_and_namespace(item);
            let prev = match kept.get(&item.file) {
                Some(Ok(m)) => m
                    .get(&name)
                    .cloned()
                    .or_else(|| item.resource.status.clone()),
                _ => None,
            };
            if let Some(st) = &prev {
                by_file
                    .entry(item.file.clone())
                    .or_default()
                    .insert(name, (ns, st.clone()));
            }
            previous.push(prev);
        }
        let (engine, src, kept) = (&engine, &src, &kept);
        let runs = items.iter().zip(&previous).map(|(item, prev)| async move {
            let (name, ns) = name_and_namespace(item);
            let id = format!("{ns}/{name}");
            let outcome = match kept.get(&item.file) {
                Some(Err(message)) => Err(message.clone()),
                _ => Ok(run_one(engine, src, item, &id, &ns, prev.as_ref()).await),
            };
            (item, name, ns, id, outcome)
        });
        let mut done = futures::stream::iter(runs).buffer_unordered(AT_ONCE);
        let mut failed = 0;
        let mut next: Option<Timestamp> = None;
        while let Some((item, name, ns, id, outcome)) = done.next().await {
            if g.output == Output::Text {
                outln!("== {id} ({})", item.file.display());
            }
            let outcome = match outcome {
                Ok(o) => o,
                Err(message) => {
                    eprintln!("error: {id}: {message}");
                    failed += 1;
                    continue;
                }
            };
            let mut not_ready = false;
            if let Err(e) = super::sign::report(g, &item.resource.spec.image, &outcome) {
                eprintln!("error: {id}: {e}");
                not_ready = true;
            }
            next = Some(next.map_or(outcome.requeue_at, |n| n.min(outcome.requeue_at)));
            let statuses = by_file.entry(item.file.clone()).or_default();
            statuses.insert(name, (ns, outcome.status));
            // Written as each run ends: one still running, or a kill, costs no other status.
            if let Err(e) = write_statuses(&item.file, statuses) {
                eprintln!("error: {id}: {e}");
                not_ready = true;
            }
            failed += usize::from(not_ready);
        }
        if !a.watch {
            return if failed == 0 {
                Ok(())
            } else {
                Err(CliError::new(format!(
                    "{failed} of {} SignedImages are not Ready",
                    items.len()
                )))
            };
        }
        let wait = next.map_or(std::time::Duration::from_secs(60), |n| {
            n.duration_since(Timestamp::now())
                .unsigned_abs()
                .max(std::time::Duration::from_secs(1))
        });
        tokio::time::sleep(wait).await;
    }
}
