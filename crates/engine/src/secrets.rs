//! Credentials a SignedImage refers to: its Secrets and ConfigMaps, read through a
//! [`SecretSource`] and turned into the engine's [`RunSecrets`] by [`gather`]. Knows nothing of
//! Kubernetes: the controller reads them from the API (`controller::secrets::KubeSecrets`),
//! `reconcile -f` from files, tests from a [`MapSecrets`]. Secret bytes are `Zeroizing` from the
//! moment a source hands them over.

use std::collections::BTreeMap;
use std::future::Future;

use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::api::{CaRef, SignedImageSpec, reasons};
use crate::{NotaryAuth, RunSecrets};

/// `type` of a docker config Secret.
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// Data key of a docker config Secret.
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
/// `type` of a basic-auth Secret.
pub const BASIC_AUTH_TYPE: &str = "kubernetes.io/basic-auth";

/// A Secret as the engine sees it: its type and its data, already zeroizing.
#[derive(Default)]
pub struct SecretData {
    /// `type` (`Opaque` when the source leaves it out).
    pub type_: Option<String>,
    pub data: BTreeMap<String, Zeroizing<Vec<u8>>>,
}

impl SecretData {
    /// A Secret of `type_` whose values are moved into zeroizing buffers.
    pub fn new(type_: Option<String>, data: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        SecretData {
            type_,
            data: data
                .into_iter()
                .map(|(k, v)| (k, Zeroizing::new(v)))
                .collect(),
        }
    }
}

/// Where Secrets and ConfigMaps come from. `Ok(None)` means "does not exist".
pub trait SecretSource: Send + Sync + 'static {
    fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<SecretData>, GatherError>> + Send;

    /// A ConfigMap's `data` and `binaryData`, merged (both are public: CA bundles only).
    fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<BTreeMap<String, Vec<u8>>>, GatherError>> + Send;
}

/// Why the referenced objects cannot be used: a Ready reason and a message naming the object,
/// the key and the spec field. Never contains secret data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SecretProblem {
    /// `SecretNotFound`, `SecretInvalid` or `BadKey`.
    pub reason: &'static str,
    /// The object at fault: `Secret ns/name` or `ConfigMap ns/name`.
    pub object: String,
    /// The data key at fault, when it is one key.
    pub key: Option<String>,
    pub message: String,
}

impl SecretProblem {
    /// A problem with `kind ns/name` (and `key`), told by `message`.
    pub fn new(
        reason: &'static str,
        kind: &str,
        ns: &str,
        name: &str,
        key: Option<&str>,
        message: String,
    ) -> Self {
        SecretProblem {
            reason,
            object: format!("{kind} {ns}/{name}"),
            key: key.map(str::to_string),
            message,
        }
    }
}

/// A referenced object could not be read at all (the API failed or refused): worth a retry,
/// unlike a [`SecretProblem`].
#[derive(Debug, thiserror::Error)]
#[error("cannot read {kind} {namespace}/{name}: {source}")]
pub struct ReadError {
    /// `Secret` or `ConfigMap`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Failure to gather credentials: a problem the user fixes (status), or a read error (retry).
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    #[error(transparent)]
    Problem(#[from] SecretProblem),
    #[error(transparent)]
    Read(#[from] ReadError),
}

fn not_found(kind: &str, ns: &str, name: &str, field: &str) -> GatherError {
    GatherError::Problem(SecretProblem::new(
        reasons::SECRET_NOT_FOUND,
        kind,
        ns,
        name,
        None,
        format!("{kind} {ns}/{name} (referenced by {field}) does not exist"),
    ))
}

fn missing_key(kind: &str, ns: &str, name: &str, key: &str, field: &str) -> GatherError {
    GatherError::Problem(SecretProblem::new(
        reasons::SECRET_INVALID,
        kind,
        ns,
        name,
        Some(key),
        format!("{kind} {ns}/{name} (referenced by {field}) has no data key {key:?}"),
    ))
}

fn wrong_type(ns: &str, name: &str, got: Option<&str>, want: &str, field: &str) -> GatherError {
    GatherError::Problem(SecretProblem::new(
        reasons::SECRET_INVALID,
        "Secret",
        ns,
        name,
        None,
        format!(
            "Secret {ns}/{name} (referenced by {field}) has type {:?}, expected {want}",
            got.unwrap_or("Opaque")
        ),
    ))
}

async fn get_secret<S: SecretSource>(
    source: &S,
    ns: &str,
    name: &str,
    field: &str,
) -> Result<SecretData, GatherError> {
    source
        .secret(ns, name)
        .await?
        .ok_or_else(|| not_found("Secret", ns, name, field))
}

fn take_key(
    secret: &mut SecretData,
    ns: &str,
    name: &str,
    key: &str,
    field: &str,
) -> Result<Zeroizing<Vec<u8>>, GatherError> {
    secret
        .data
        .remove(key)
        .ok_or_else(|| missing_key("Secret", ns, name, key, field))
}

fn not_utf8(ns: &str, name: &str, key: &str, field: &str) -> GatherError {
    GatherError::Problem(SecretProblem::new(
        reasons::SECRET_INVALID,
        "Secret",
        ns,
        name,
        Some(key),
        format!("Secret {ns}/{name} (referenced by {field}): data key {key:?} is not UTF-8 text"),
    ))
}

fn utf8_secret(
    bytes: Zeroizing<Vec<u8>>,
    ns: &str,
    name: &str,
    key: &str,
    field: &str,
) -> Result<SecretString, GatherError> {
    match std::str::from_utf8(&bytes) {
        // The trailing newline `kubectl create secret --from-file` keeps is not part of it.
        Ok(s) => Ok(SecretString::from(s.trim_end_matches(['\n', '\r']))),
        Err(_) => Err(not_utf8(ns, name, key, field)),
    }
}

async fn docker_config<S: SecretSource>(
    source: &S,
    ns: &str,
    name: &str,
    field: &str,
) -> Result<Zeroizing<Vec<u8>>, GatherError> {
    let mut secret = get_secret(source, ns, name, field).await?;
    if secret.type_.as_deref() != Some(DOCKER_CONFIG_JSON_TYPE) {
        return Err(wrong_type(
            ns,
            name,
            secret.type_.as_deref(),
            DOCKER_CONFIG_JSON_TYPE,
            field,
        ));
    }
    take_key(&mut secret, ns, name, DOCKER_CONFIG_JSON_KEY, field)
}

async fn notary_auth<S: SecretSource>(
    source: &S,
    ns: &str,
    name: &str,
    field: &str,
) -> Result<NotaryAuth, GatherError> {
    let mut secret = get_secret(source, ns, name, field).await?;
    match secret.type_.as_deref() {
        Some(DOCKER_CONFIG_JSON_TYPE) => Ok(NotaryAuth::DockerConfig(take_key(
            &mut secret,
            ns,
            name,
            DOCKER_CONFIG_JSON_KEY,
            field,
        )?)),
        Some(BASIC_AUTH_TYPE) => {
            let user = take_key(&mut secret, ns, name, "username", field)?;
            let password = take_key(&mut secret, ns, name, "password", field)?;
            let username = String::from_utf8(user.to_vec())
                .map_err(|_| not_utf8(ns, name, "username", field))?;
            Ok(NotaryAuth::Basic {
                username,
                password: utf8_secret(password, ns, name, "password", field)?,
            })
        }
        other => Err(wrong_type(
            ns,
            name,
            other,
            "kubernetes.io/dockerconfigjson or kubernetes.io/basic-auth",
            field,
        )),
    }
}

async fn ca_bundle<S: SecretSource>(
    source: &S,
    ns: &str,
    ca: &CaRef,
    field: &str,
) -> Result<Vec<u8>, GatherError> {
    if let Some(sel) = &ca.secret_key_ref {
        let field = format!("{field}.secretKeyRef");
        let mut secret = get_secret(source, ns, &sel.name, &field).await?;
        let bytes = take_key(&mut secret, ns, &sel.name, &sel.key, &field)?;
        return Ok(bytes.to_vec());
    }
    if let Some(sel) = &ca.config_map_key_ref {
        let field = format!("{field}.configMapKeyRef");
        let mut data = source
            .config_map(ns, &sel.name)
            .await?
            .ok_or_else(|| not_found("ConfigMap", ns, &sel.name, &field))?;
        return data
            .remove(&sel.key)
            .ok_or_else(|| missing_key("ConfigMap", ns, &sel.name, &sel.key, &field));
    }
    // The schema's CEL rule requires exactly one of the two.
    Err(GatherError::Problem(SecretProblem {
        reason: reasons::SECRET_INVALID,
        object: field.to_string(),
        key: None,
        message: format!("{field} names neither a secretKeyRef nor a configMapKeyRef"),
    }))
}

/// Reads everything `spec` refers to from namespace `ns` and builds the engine's credentials.
pub async fn gather<S: SecretSource>(
    source: &S,
    ns: &str,
    spec: &SignedImageSpec,
) -> Result<RunSecrets, GatherError> {
    let key = &spec.signing_key;
    let field = "spec.signingKey.secretRef";
    let mut secret = get_secret(source, ns, &key.secret_ref.name, field).await?;
    let signing_key_pem = take_key(
        &mut secret,
        ns,
        &key.secret_ref.name,
        &key.key_field,
        "spec.signingKey.keyField",
    )?;
    // Bounded before anything parses it (the engine refuses it too; this names the Secret).
    if signing_key_pem.len() > trustkeeper_notary::keys::MAX_KEY_BYTES {
        return Err(GatherError::Problem(SecretProblem::new(
            reasons::BAD_KEY,
            "Secret",
            ns,
            &key.secret_ref.name,
            Some(&key.key_field),
            format!(
                "Secret {ns}/{} (referenced by spec.signingKey.secretRef): data key {:?} holds {} \
                 bytes, more than the {} a key file may have; store the PEM `notary key export` \
                 wrote (under 2 KiB)",
                key.secret_ref.name,
                key.key_field,
                signing_key_pem.len(),
                trustkeeper_notary::keys::MAX_KEY_BYTES
            ),
        )));
    }
    let passphrase = match secret.data.remove(&key.passphrase_field) {
        Some(bytes) => Some(utf8_secret(
            bytes,
            ns,
            &key.secret_ref.name,
            &key.passphrase_field,
            "spec.signingKey.passphraseField",
        )?),
        None => None,
    };
    drop(secret);

    let registry_auth = match &spec.registry.credentials_secret_ref {
        Some(r) => {
            Some(docker_config(source, ns, &r.name, "spec.registry.credentialsSecretRef").await?)
        }
        None => None,
    };
    let registry_ca = match &spec.registry.ca {
        Some(ca) => Some(ca_bundle(source, ns, ca, "spec.registry.ca").await?),
        None => None,
    };
    let notary_auth = match &spec.notary.credentials_secret_ref {
        Some(r) => {
            Some(notary_auth(source, ns, &r.name, "spec.notary.credentialsSecretRef").await?)
        }
        None => None,
    };
    let notary_ca = match &spec.notary.ca {
        Some(ca) => Some(ca_bundle(source, ns, ca, "spec.notary.ca").await?),
        None => None,
    };
    let notation_chain_pem = match &spec.notation {
        Some(n) => Some(notation_chain(source, ns, &n.certificate_secret_ref).await?),
        None => None,
    };
    Ok(RunSecrets {
        signing_key_pem,
        passphrase,
        registry_auth,
        registry_ca,
        notary_auth,
        notary_ca,
        notation_chain_pem,
    })
}

/// The most bytes a Notation certificate chain may have: a chain of a few certificates is a
/// few KiB.
pub const MAX_CHAIN_BYTES: usize = 64 * 1024;

/// The PEM certificate chain of `spec.notation.certificateSecretRef`, bounded before it is
/// parsed, with at least one CERTIFICATE block.
async fn notation_chain<S: SecretSource>(
    source: &S,
    ns: &str,
    r: &crate::api::CertificateSecretRef,
) -> Result<Vec<u8>, GatherError> {
    let field = "spec.notation.certificateSecretRef";
    let mut secret = get_secret(source, ns, &r.name, field).await?;
    let pem = take_key(&mut secret, ns, &r.name, &r.key, field)?;
    let bad = |why: String| {
        GatherError::Problem(SecretProblem::new(
            reasons::SECRET_INVALID,
            "Secret",
            ns,
            &r.name,
            Some(&r.key),
            format!(
                "Secret {ns}/{} (referenced by {field}): data key {:?} {why}",
                r.name, r.key
            ),
        ))
    };
    if pem.len() > MAX_CHAIN_BYTES {
        return Err(bad(format!(
            "holds {} bytes, more than the {MAX_CHAIN_BYTES} a certificate chain may have; \
             store the PEM chain, leaf first",
            pem.len()
        )));
    }
    let blocks = pem::parse_many(&pem[..]).map_err(|e| bad(format!("is not PEM ({e})")))?;
    if !blocks.iter().any(|b| b.tag() == "CERTIFICATE") {
        return Err(bad(
            "holds no CERTIFICATE block: store the PEM certificate chain, leaf first".into(),
        ));
    }
    Ok(pem.to_vec())
}

/// `(namespace, name)` of an object.
pub type ObjectKey = (String, String);
/// A Secret's type and data in a [`MapSecrets`].
pub type StoredSecret = (Option<String>, BTreeMap<String, Vec<u8>>);

/// A [`SecretSource`] over in-memory objects: for tests and for an API server without the core API.
#[derive(Default, Clone)]
pub struct MapSecrets {
    /// `(namespace, name)` → (type, data).
    pub secrets: BTreeMap<ObjectKey, StoredSecret>,
    pub config_maps: BTreeMap<ObjectKey, BTreeMap<String, Vec<u8>>>,
}

impl MapSecrets {
    /// Adds a Secret.
    pub fn with_secret(
        mut self,
        ns: &str,
        name: &str,
        type_: Option<&str>,
        data: &[(&str, &[u8])],
    ) -> Self {
        self.secrets.insert(
            (ns.into(), name.into()),
            (
                type_.map(Into::into),
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_vec()))
                    .collect(),
            ),
        );
        self
    }

    /// Adds a ConfigMap.
    pub fn with_config_map(mut self, ns: &str, name: &str, data: &[(&str, &[u8])]) -> Self {
        self.config_maps.insert(
            (ns.into(), name.into()),
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
        );
        self
    }
}

impl SecretSource for MapSecrets {
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<SecretData>, GatherError> {
        Ok(self
            .secrets
            .get(&(namespace.to_string(), name.to_string()))
            .map(|(t, d)| SecretData::new(t.clone(), d.clone())))
    }

    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, GatherError> {
        Ok(self
            .config_maps
            .get(&(namespace.to_string(), name.to_string()))
            .cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{KeySelector, SecretRef, SigningKeyRef};
    use secrecy::ExposeSecret;

    fn spec() -> SignedImageSpec {
        serde_json::from_value(serde_json::json!({
            "image": "registry.example.com/team/app",
            "signingKey": {"secretRef": {"name": "signer"}, "keyField": "key.pem", "passphraseField": "passphrase"},
            "validity": "26280h", "renewBefore": "4560h", "interval": "5m"
        }))
        .unwrap()
    }

    fn base() -> MapSecrets {
        MapSecrets::default().with_secret(
            "ns",
            "signer",
            None,
            &[("key.pem", b"PEM"), ("passphrase", b"hunter2\n")],
        )
    }

    fn problem(r: Result<RunSecrets, GatherError>) -> SecretProblem {
        match r {
            Err(GatherError::Problem(p)) => p,
            Err(GatherError::Read(e)) => panic!("read error {e}"),
            Ok(_) => panic!("expected a problem"),
        }
    }

    #[tokio::test]
    async fn key_and_passphrase() {
        let c = gather(&base(), "ns", &spec()).await.unwrap();
        assert_eq!(&*c.signing_key_pem, b"PEM");
        assert_eq!(c.passphrase.unwrap().expose_secret(), "hunter2");
        assert!(c.registry_auth.is_none() && c.notary_auth.is_none());
    }

    #[tokio::test]
    async fn a_signing_key_over_the_size_bound_is_refused_naming_the_secret() {
        let big = vec![b'A'; trustkeeper_notary::keys::MAX_KEY_BYTES + 1];
        let src = MapSecrets::default().with_secret("ns", "signer", None, &[("key.pem", &big)]);
        let p = problem(gather(&src, "ns", &spec()).await);
        assert_eq!(p.reason, reasons::BAD_KEY);
        assert!(
            p.message.contains("Secret ns/signer") && p.message.contains("1048577 bytes"),
            "{}",
            p.message
        );
        // At the bound it is the engine's to judge.
        let edge = vec![b'A'; trustkeeper_notary::keys::MAX_KEY_BYTES];
        let src = MapSecrets::default().with_secret("ns", "signer", None, &[("key.pem", &edge)]);
        assert!(gather(&src, "ns", &spec()).await.is_ok());
    }

    #[tokio::test]
    async fn missing_secret_and_key_name_the_object() {
        let p = problem(gather(&MapSecrets::default(), "ns", &spec()).await);
        assert_eq!(p.reason, reasons::SECRET_NOT_FOUND);
        assert_eq!(
            p.message,
            "Secret ns/signer (referenced by spec.signingKey.secretRef) does not exist"
        );
        let mut s = spec();
        s.signing_key = SigningKeyRef {
            secret_ref: SecretRef {
                name: "signer".into(),
            },
            key_field: "other.pem".into(),
            passphrase_field: "passphrase".into(),
        };
        let p = problem(gather(&base(), "ns", &s).await);
        assert_eq!(p.reason, reasons::SECRET_INVALID);
        assert!(p.message.contains("\"other.pem\""), "{}", p.message);
        assert!(!p.message.contains("hunter2"));
    }

    #[tokio::test]
    async fn registry_secret_must_be_dockerconfigjson() {
        let mut s = spec();
        s.registry.credentials_secret_ref = Some(SecretRef { name: "hub".into() });
        let src = base().with_secret("ns", "hub", Some("Opaque"), &[(".dockerconfigjson", b"{}")]);
        let p = problem(gather(&src, "ns", &s).await);
        assert_eq!(p.reason, reasons::SECRET_INVALID);
        assert_eq!(
            p.message,
            "Secret ns/hub (referenced by spec.registry.credentialsSecretRef) has type \"Opaque\", expected kubernetes.io/dockerconfigjson"
        );
        let src = base().with_secret(
            "ns",
            "hub",
            Some(DOCKER_CONFIG_JSON_TYPE),
            &[(".dockerconfigjson", b"{\"auths\":{}}")],
        );
        let c = gather(&src, "ns", &s).await.unwrap();
        assert_eq!(c.registry_auth.unwrap().as_slice(), b"{\"auths\":{}}");
    }

    #[tokio::test]
    async fn notary_basic_auth_and_cas() {
        let mut s = spec();
        s.notary.credentials_secret_ref = Some(SecretRef {
            name: "notary".into(),
        });
        s.notary.ca = Some(CaRef {
            secret_key_ref: None,
            config_map_key_ref: Some(KeySelector {
                name: "cas".into(),
                key: "ca.crt".into(),
            }),
        });
        s.registry.ca = Some(CaRef {
            secret_key_ref: Some(KeySelector {
                name: "reg-ca".into(),
                key: "ca.crt".into(),
            }),
            config_map_key_ref: None,
        });
        let src = base()
            .with_secret(
                "ns",
                "notary",
                Some(BASIC_AUTH_TYPE),
                &[("username", b"bob"), ("password", b"pw")],
            )
            .with_secret("ns", "reg-ca", None, &[("ca.crt", b"REGCA")])
            .with_config_map("ns", "cas", &[("ca.crt", b"NOTARYCA")]);
        let c = gather(&src, "ns", &s).await.unwrap();
        match c.notary_auth.unwrap() {
            NotaryAuth::Basic { username, password } => {
                assert_eq!(username, "bob");
                assert_eq!(password.expose_secret(), "pw");
            }
            NotaryAuth::DockerConfig(_) => panic!("basic expected"),
        }
        assert_eq!(c.registry_ca.unwrap(), b"REGCA");
        assert_eq!(c.notary_ca.unwrap(), b"NOTARYCA");

        let src2 = base()
            .with_secret(
                "ns",
                "notary",
                Some(BASIC_AUTH_TYPE),
                &[("username", b"bob")],
            )
            .with_secret("ns", "reg-ca", None, &[("ca.crt", b"REGCA")])
            .with_config_map("ns", "cas", &[("ca.crt", b"NOTARYCA")]);
        let p = problem(gather(&src2, "ns", &s).await);
        assert!(p.message.contains("\"password\""), "{}", p.message);
        let src3 = base()
            .with_secret(
                "ns",
                "notary",
                Some(BASIC_AUTH_TYPE),
                &[("username", b"bob"), ("password", b"pw")],
            )
            .with_secret("ns", "reg-ca", None, &[("ca.crt", b"REGCA")]);
        let p = problem(gather(&src3, "ns", &s).await);
        assert_eq!(p.reason, reasons::SECRET_NOT_FOUND);
        assert_eq!(
            p.message,
            "ConfigMap ns/cas (referenced by spec.notary.ca.configMapKeyRef) does not exist"
        );
    }
}
