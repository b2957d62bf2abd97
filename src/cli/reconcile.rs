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

use super::common::{self, CliError};
use super::{Global, Output};
use crate::api::reasons;
use crate::api::{SignedImage, SignedImageStatus};
use crate::engine::secrets::{
    BASIC_AUTH_TYPE, DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, GatherError, SecretData,
    SecretProblem, SecretSource, gather,
};
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
    /// Print each resource's plan (tags to add, roles to re-sign with versions and new
    /// expiries) and publish nothing; no status file is written.
    #[arg(long, conflicts_with = "watch")]
    pub dry_run: bool,
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

/// Largest `--secrets-dir` file read for one key: what the key loader accepts, and what a
/// Kubernetes Secret holds in all.
const MAX_SECRET_FILE_BYTES: u64 = crate::notary::keys::MAX_KEY_BYTES as u64;
/// Largest `.dockerconfigjson` file: a docker config may list many registries.
const MAX_DOCKER_CONFIG_FILE_BYTES: u64 = 4 << 20;
/// Most keys read from one folder, and most bytes in all of them.
const MAX_FOLDER_KEYS: usize = 64;
const MAX_FOLDER_BYTES: u64 = 8 << 20;

impl FileSource {
    fn object(
        &self,
        kind: ObjectKind,
        ns: &str,
        name: &str,
    ) -> Result<Option<ObjectValue>, GatherError> {
        if let Some(v) = self.objects.get(&(kind, ns.to_string(), name.to_string())) {
            return Ok(Some(v.clone()));
        }
        // The secrets folder: NAME/KEY files, as Kubernetes mounts a Secret or ConfigMap.
        let Some(dir) = self.dir.as_ref() else {
            return Ok(None);
        };
        let folder = dir.join(name);
        let Ok(entries) = std::fs::read_dir(&folder) else {
            return Ok(None);
        };
        let kind_name = match kind {
            ObjectKind::Secret => "Secret",
            ObjectKind::ConfigMap => "ConfigMap",
        };
        let refuse = |key: Option<&str>, message: String| {
            GatherError::Problem(SecretProblem::new(
                reasons::SECRET_INVALID,
                kind_name,
                ns,
                name,
                key,
                message,
            ))
        };
        let mut data = BTreeMap::new();
        let mut total = 0u64;
        for e in entries.flatten() {
            let path = e.path();
            let Some(key) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !path.is_file() || key.starts_with("..") {
                continue;
            }
            if data.len() == MAX_FOLDER_KEYS {
                return Err(refuse(
                    None,
                    format!(
                        "{} (--secrets-dir, for {kind_name} {ns}/{name}) holds more than \
                         {MAX_FOLDER_KEYS} files: keep one file per key of that object only",
                        folder.display()
                    ),
                ));
            }
            let limit = if key == DOCKER_CONFIG_JSON_KEY {
                MAX_DOCKER_CONFIG_FILE_BYTES
            } else {
                MAX_SECRET_FILE_BYTES
            };
            let what = format!("--secrets-dir file for {kind_name} {ns}/{name}:");
            let hint = "a Secret or ConfigMap key holds at most 1 MiB (a docker config 4 MiB); \
                        store the key's value only";
            let mut bytes = common::read_file_bounded(&what, &path, limit, hint)
                .map_err(|e| refuse(Some(key), e.message))?;
            total += bytes.len() as u64;
            if total > MAX_FOLDER_BYTES {
                return Err(refuse(
                    None,
                    format!(
                        "the files in {} (--secrets-dir, for {kind_name} {ns}/{name}) hold more \
                         than {MAX_FOLDER_BYTES} bytes: keep one file per key of that object only",
                        folder.display()
                    ),
                ));
            }
            // Moved out, not copied: `secret()` wraps them in `Zeroizing` again.
            data.insert(key.to_string(), std::mem::take(&mut *bytes));
        }
        // A folder has no Secret type: infer it from the keys, as the API would have it.
        let type_ = if data.contains_key(DOCKER_CONFIG_JSON_KEY) {
            Some(DOCKER_CONFIG_JSON_TYPE.to_string())
        } else if data.contains_key("username") && data.contains_key("password") {
            Some(BASIC_AUTH_TYPE.to_string())
        } else {
            None
        };
        Ok(Some((type_, data)))
    }
}

impl SecretSource for FileSource {
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<SecretData>, GatherError> {
        Ok(self
            .object(ObjectKind::Secret, namespace, name)?
            .map(|(type_, data)| SecretData::new(type_, data)))
    }

    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, GatherError> {
        Ok(self
            .object(ObjectKind::ConfigMap, namespace, name)?
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

/// One resource's run: its Secrets, then the engine; a missing Secret is a failed outcome. A
/// suspended one reads nothing.
async fn run_one(
    engine: &crate::engine::Engine,
    src: &FileSource,
    item: &Item,
    id: &str,
    ns: &str,
    previous: Option<&SignedImageStatus>,
) -> crate::engine::Outcome {
    let generation = item.resource.metadata.generation;
    if let Some(suspended) =
        crate::engine::suspension(&item.resource.spec, previous, generation, Timestamp::now())
    {
        return suspended;
    }
    let gathered = gather(src, ns, &item.resource.spec)
        .await
        .map_err(|e| match e {
            GatherError::Problem(p) => Failure::new(p.reason, p.message),
            GatherError::Read(e) => {
                Failure::new(crate::api::reasons::SECRET_INVALID, e.to_string())
            }
        });
    match gathered {
        Ok(credentials) => {
            engine
                .run(ReconcileRequest {
                    id,
                    spec: &item.resource.spec,
                    generation,
                    previous,
                    credentials,
                    pinned: Default::default(),
                })
                .await
        }
        Err(f) => crate::engine::Outcome::failed(
            previous,
            generation,
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
    if a.dry_run {
        return dry_run(g, &engine, &a).await;
    }
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
            if let Some(at) = outcome.requeue_at {
                next = Some(next.map_or(at, |n: Timestamp| n.min(at)));
            }
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

/// `reconcile -f --dry-run`: each resource's plan, one after the other, under the status kept
/// beside its file (its trust anchor); nothing is published or written.
async fn dry_run(
    g: &Global,
    engine: &crate::engine::Engine,
    a: &ReconcileArgs,
) -> Result<(), CliError> {
    let (items, src) = load(&a.files, a.secrets_dir.as_deref())?;
    let mut failed = 0;
    let mut plans = Vec::new();
    for item in &items {
        let (name, ns) = name_and_namespace(item);
        let id = format!("{ns}/{name}");
        let previous = match read_statuses(&item.file) {
            Ok(m) => m
                .get(&name)
                .cloned()
                .or_else(|| item.resource.status.clone()),
            Err(e) => {
                eprintln!("error: {id}: {e}");
                failed += 1;
                continue;
            }
        };
        let plan = match gather(&src, &ns, &item.resource.spec).await {
            Err(GatherError::Problem(p)) => Err(Failure::new(p.reason, p.message)),
            Err(GatherError::Read(e)) => Err(Failure::new(reasons::SECRET_INVALID, e.to_string())),
            Ok(credentials) => {
                let options = crate::engine::request::RunOptions {
                    dry_run: true,
                    ..Default::default()
                };
                let request = ReconcileRequest {
                    id: &id,
                    spec: &item.resource.spec,
                    generation: item.resource.metadata.generation,
                    previous: previous.as_ref(),
                    credentials,
                    pinned: Default::default(),
                };
                engine.dry_run(request, &options).await
            }
        };
        match plan {
            Ok(plan) if g.output == Output::Json => {
                plans.push(serde_json::json!({"namespace": ns, "name": name, "plan": plan}))
            }
            Ok(plan) => {
                outln!("== {id} ({})", item.file.display());
                out!("{}", plan.text());
            }
            Err(f) => {
                eprintln!("error: {id}: {f}");
                failed += 1;
            }
        }
    }
    if g.output == Output::Json {
        common::print_json(&plans);
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(CliError::new(format!(
            "{failed} of {} resources cannot be planned (see above)",
            items.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with_registry_secret() -> crate::api::SignedImageSpec {
        serde_json::from_value(serde_json::json!({
            "image": "registry.example.com/team/app",
            "signingKey": {"secretRef": {"name": "signer"}, "keyField": "key.pem", "passphraseField": "passphrase"},
            "registry": {"credentialsSecretRef": {"name": "hub"}},
            "validity": "26280h", "renewBefore": "4560h", "interval": "5m"
        }))
        .unwrap()
    }

    fn source(dir: &Path) -> FileSource {
        FileSource {
            objects: BTreeMap::new(),
            dir: Some(dir.to_path_buf()),
        }
    }

    fn write(dir: &Path, object: &str, key: &str, len: usize) {
        std::fs::create_dir_all(dir.join(object)).unwrap();
        std::fs::write(dir.join(object).join(key), vec![b'A'; len]).unwrap();
    }

    fn problem(r: Result<crate::engine::RunSecrets, GatherError>) -> SecretProblem {
        match r {
            Err(GatherError::Problem(p)) => p,
            Err(GatherError::Read(e)) => panic!("read error {e}"),
            Ok(_) => panic!("expected a problem"),
        }
    }

    #[tokio::test]
    async fn secrets_dir_files_are_bounded_before_they_are_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let key_bound = crate::notary::keys::MAX_KEY_BYTES;
        write(dir, "signer", "key.pem", key_bound + 1);
        write(dir, "hub", DOCKER_CONFIG_JSON_KEY, 2 << 20);
        let p = problem(gather(&source(dir), "ns", &spec_with_registry_secret()).await);
        assert_eq!(p.reason, reasons::SECRET_INVALID);
        assert_eq!(p.object, "Secret ns/signer");
        assert_eq!(p.key.as_deref(), Some("key.pem"));
        assert!(
            p.message
                .contains("--secrets-dir file for Secret ns/signer")
                && p.message.contains("key.pem is larger than 1048576 bytes")
                && p.message.contains("store the key's value only"),
            "{}",
            p.message
        );

        // At the bound the key is read (and the engine judges it); a 2 MiB docker config is
        // within its own bound.
        write(dir, "signer", "key.pem", key_bound);
        let c = gather(&source(dir), "ns", &spec_with_registry_secret())
            .await
            .unwrap();
        assert_eq!(c.signing_key_pem.len(), key_bound);
        assert_eq!(c.registry_auth.unwrap().len(), 2 << 20);

        write(dir, "hub", DOCKER_CONFIG_JSON_KEY, (4 << 20) + 1);
        let p = problem(gather(&source(dir), "ns", &spec_with_registry_secret()).await);
        assert_eq!(p.object, "Secret ns/hub");
        assert!(
            p.message.contains("is larger than 4194304 bytes"),
            "{}",
            p.message
        );
    }

    #[tokio::test]
    async fn a_secrets_dir_folder_with_too_many_files_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for i in 0..=MAX_FOLDER_KEYS {
            write(dir, "signer", &format!("k{i}"), 1);
        }
        let p = problem(gather(&source(dir), "ns", &spec_with_registry_secret()).await);
        assert_eq!(p.reason, reasons::SECRET_INVALID);
        assert!(p.message.contains("more than 64 files"), "{}", p.message);
    }

    #[tokio::test]
    async fn a_secrets_dir_folder_over_the_total_bound_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for i in 0..9 {
            write(dir, "signer", &format!("k{i}"), 1 << 20);
        }
        let p = problem(gather(&source(dir), "ns", &spec_with_registry_secret()).await);
        assert!(
            p.message.contains("hold more than 8388608 bytes"),
            "{}",
            p.message
        );
    }
}
