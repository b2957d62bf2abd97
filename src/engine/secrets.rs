//! Gathers a SignedImage's credentials from named objects (Secrets and ConfigMaps), wherever they
//! come from: the Kubernetes API for the controller, YAML files or a directory for
//! `reconcile -f`. Errors name the object and the key, and never carry their values.

use std::collections::BTreeMap;
use std::future::Future;

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::failure::Failure;
use super::request::{Credentials, NotaryAuth};
use crate::api::{CaRef, SignedImageSpec, reasons};

/// Kind of a referenced object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectKind {
    Secret,
    ConfigMap,
}

/// A Secret's or ConfigMap's type and data (values zeroized on drop).
#[derive(Default)]
pub struct ObjectData {
    /// The Secret's `type` (`kubernetes.io/dockerconfigjson`, …); `None` for ConfigMaps.
    pub type_: Option<String>,
    pub data: BTreeMap<String, Zeroizing<Vec<u8>>>,
}

/// Where referenced objects are read from, in the SignedImage's own namespace.
pub trait SecretSource: Sync {
    fn get(
        &self,
        kind: ObjectKind,
        name: &str,
    ) -> impl Future<Output = Result<Option<ObjectData>, Failure>> + Send;
}

pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
pub const BASIC_AUTH: &str = "kubernetes.io/basic-auth";

async fn object<S: SecretSource>(
    src: &S,
    kind: ObjectKind,
    name: &str,
    what: &str,
) -> Result<ObjectData, Failure> {
    src.get(kind, name).await?.ok_or_else(|| {
        Failure::new(
            reasons::SECRET_NOT_FOUND,
            format!("{kind:?} {name:?} ({what}) does not exist in the SignedImage's namespace: create it"),
        )
    })
}

fn field(
    obj: &mut ObjectData,
    kind: ObjectKind,
    name: &str,
    key: &str,
) -> Result<Zeroizing<Vec<u8>>, Failure> {
    obj.data.remove(key).ok_or_else(|| {
        let have: Vec<&str> = obj.data.keys().map(String::as_str).collect();
        Failure::new(
            reasons::SECRET_INVALID,
            format!("{kind:?} {name:?} has no key {key:?} (it has: {}): add it or fix the key name in the spec", have.join(", ")),
        )
    })
}

fn utf8(bytes: Zeroizing<Vec<u8>>, name: &str, key: &str) -> Result<SecretString, Failure> {
    let s = std::str::from_utf8(&bytes).map_err(|_| {
        Failure::new(
            reasons::SECRET_INVALID,
            format!("Secret {name:?} key {key:?} is not UTF-8 text"),
        )
    })?;
    Ok(SecretString::from(
        s.trim_end_matches(['\r', '\n']).to_string(),
    ))
}

async fn docker_config<S: SecretSource>(
    src: &S,
    name: &str,
    what: &str,
) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut obj = object(src, ObjectKind::Secret, name, what).await?;
    check_type(&obj, name, &[DOCKER_CONFIG_JSON])?;
    field(&mut obj, ObjectKind::Secret, name, ".dockerconfigjson")
}

fn check_type(obj: &ObjectData, name: &str, allowed: &[&str]) -> Result<(), Failure> {
    match obj.type_.as_deref() {
        Some(t) if !allowed.contains(&t) => Err(Failure::new(
            reasons::SECRET_INVALID,
            format!(
                "Secret {name:?} has type {t}, expected {}",
                allowed.join(" or ")
            ),
        )),
        _ => Ok(()),
    }
}

async fn ca<S: SecretSource>(src: &S, r: &Option<CaRef>) -> Result<Option<Vec<u8>>, Failure> {
    let Some(r) = r else { return Ok(None) };
    let (kind, sel) = match (&r.secret_key_ref, &r.config_map_key_ref) {
        (Some(s), _) => (ObjectKind::Secret, s),
        (None, Some(c)) => (ObjectKind::ConfigMap, c),
        (None, None) => return Ok(None),
    };
    let mut obj = object(src, kind, &sel.name, "CA certificates").await?;
    Ok(Some(field(&mut obj, kind, &sel.name, &sel.key)?.to_vec()))
}

/// Reads everything the spec references.
pub async fn gather<S: SecretSource>(
    spec: &SignedImageSpec,
    src: &S,
) -> Result<Credentials, Failure> {
    let sk = &spec.signing_key;
    let name = &sk.secret_ref.name;
    let mut obj = object(src, ObjectKind::Secret, name, "signing key").await?;
    let signing_key_pem = field(&mut obj, ObjectKind::Secret, name, &sk.key_field)?;
    let passphrase = match obj.data.remove(&sk.passphrase_field) {
        Some(p) => Some(utf8(p, name, &sk.passphrase_field)?),
        None => None,
    };
    let registry_auth = match &spec.registry.credentials_secret_ref {
        Some(r) => Some(docker_config(src, &r.name, "registry credentials").await?),
        None => None,
    };
    let notary_auth = match &spec.notary.credentials_secret_ref {
        Some(r) => {
            let mut obj = object(src, ObjectKind::Secret, &r.name, "notary credentials").await?;
            check_type(&obj, &r.name, &[DOCKER_CONFIG_JSON, BASIC_AUTH])?;
            if obj.type_.as_deref() == Some(BASIC_AUTH) || obj.data.contains_key("username") {
                let user = utf8(
                    field(&mut obj, ObjectKind::Secret, &r.name, "username")?,
                    &r.name,
                    "username",
                )?;
                let password = utf8(
                    field(&mut obj, ObjectKind::Secret, &r.name, "password")?,
                    &r.name,
                    "password",
                )?;
                use secrecy::ExposeSecret;
                Some(NotaryAuth::Basic {
                    username: user.expose_secret().to_string(),
                    password,
                })
            } else {
                Some(NotaryAuth::DockerConfig(field(
                    &mut obj,
                    ObjectKind::Secret,
                    &r.name,
                    ".dockerconfigjson",
                )?))
            }
        }
        None => None,
    };
    Ok(Credentials {
        signing_key_pem,
        passphrase,
        registry_auth,
        registry_ca: ca(src, &spec.registry.ca).await?,
        notary_auth,
        notary_ca: ca(src, &spec.notary.ca).await?,
    })
}
