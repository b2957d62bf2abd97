//! Secrets and ConfigMaps a SignedImage refers to, read with one `get` each per run, only from
//! the SignedImage's own namespace (no list, no watch: least privilege, and a rotated key is
//! picked up at the next run). Secret bytes move into `Zeroizing` the moment they are decoded.
//!
//! Only the Kubernetes side lives here ([`KubeSecrets`]); [`SecretSource`], [`gather`] and the
//! in-memory [`MapSecrets`] are the engine's (`engine::secrets`), which `reconcile -f` uses too.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use zeroize::Zeroizing;

use crate::engine::secrets::{GatherError, ReadError, SecretData, SecretSource};

/// Takes the Secret's data out of the API object at once, without copying the bytes.
pub fn secret_data(secret: Secret) -> SecretData {
    let data = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, ByteString(v))| (k, Zeroizing::new(v)))
        .collect();
    SecretData {
        type_: secret.type_,
        data,
    }
}

/// The production source: one `get` on the core API per object.
#[derive(Clone)]
pub struct KubeSecrets {
    client: Client,
}

impl KubeSecrets {
    pub fn new(client: Client) -> Self {
        KubeSecrets { client }
    }
}

/// An API failure (other than "not found", which `get_opt` answers as `None`), kept as the
/// source of a typed read error that names the object.
fn read_error(kind: &'static str, namespace: &str, name: &str, e: kube::Error) -> GatherError {
    GatherError::Read(ReadError {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
        source: Box::new(e),
    })
}

impl SecretSource for KubeSecrets {
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<SecretData>, GatherError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api
            .get_opt(name)
            .await
            .map_err(|e| read_error("Secret", namespace, name, e))?;
        Ok(secret.map(secret_data))
    }

    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, GatherError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let cm = api
            .get_opt(name)
            .await
            .map_err(|e| read_error("ConfigMap", namespace, name, e))?;
        Ok(cm.map(|cm| {
            let mut out: BTreeMap<String, Vec<u8>> = cm
                .binary_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, ByteString(v))| (k, v))
                .collect();
            for (k, v) in cm.data.unwrap_or_default() {
                out.insert(k, v.into_bytes());
            }
            out
        }))
    }
}
