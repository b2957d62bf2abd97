//! `SignedImage.spec`: what to sign, with which key, where, and how far ahead to renew.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default lifetime given to re-signed roles: notary's own 3 years for targets and delegations.
pub const DEFAULT_VALIDITY: &str = "26280h";
/// Default renewal lead: 190 days, outside the Go client's 6-month "nearing expiry" window.
pub const DEFAULT_RENEW_BEFORE: &str = "4560h";
/// Default registry poll period.
pub const DEFAULT_INTERVAL: &str = "5m";
/// Default data key of the signing key PEM in its Secret.
pub const DEFAULT_KEY_FIELD: &str = "key.pem";
/// Default data key of the passphrase in the signing key Secret.
pub const DEFAULT_PASSPHRASE_FIELD: &str = "passphrase";

/// Keeps an image repository's Docker Content Trust (Notary v1) metadata signed and fresh:
/// new digests of the selected tags are signed, every role the key can sign is re-signed before it
/// expires, and each publish is read back and verified.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!self.validity.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || !self.renewBefore.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self.renewBefore) < duration(self.validity)",
    "message": "renewBefore must be shorter than validity, or every re-signed role would be due again at once",
    "fieldPath": ".renewBefore"
}, {
    "rule": "!has(self.formats) || !self.formats.exists(f, f == 'notation') || has(self.notation)",
    "message": "formats lists notation: give spec.notation.certificateSecretRef (the signing certificate chain)",
    "fieldPath": ".notation"
}]))]
pub struct SignedImageSpec {
    /// The image repository, which is also the notary GUN, e.g. `docker.io/acme/app` or
    /// `registry.example.com:5000/team/app`. No tag or digest. Docker Hub short forms
    /// (`acme/app`, `alpine`) are expanded to `docker.io/...`.
    #[schemars(length(min = 1, max = 255))]
    #[schemars(regex(
        pattern = r"^([A-Za-z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*$"
    ))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "!self.matches(':[^/]*$') && !self.contains('@')", "message": "image names a repository only: remove the :tag or @digest and list tags under spec.tags"}]))]
    pub image: String,

    /// Tags to keep signed: exact names (`latest`, `v1.2.3`) and globs (`v*`, `release-[0-9]*`).
    /// Empty: sign nothing new, only keep the existing trust metadata renewed.
    #[serde(default)]
    #[schemars(
        length(max = 256),
        inner(
            length(min = 1, max = 128),
            regex(pattern = r"^[A-Za-z0-9_*?\[\]!.-]+$")
        )
    )]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": r#"self.all(t, t.matches(r'^([^\[\]]|\[!?[^\[\]]+\])+$'))"#, "message": "a tag glob has an unbalanced or empty [...] class"}]))]
    pub tags: Vec<String>,

    /// Roles to sign into, e.g. `targets/releases`. Empty: what `docker trust sign` picks, every
    /// direct child delegation of `targets` that lists our key and whose paths allow the tag, or
    /// `targets` itself when the repository has no delegations.
    #[serde(default)]
    #[schemars(
        length(max = 32),
        inner(
            length(min = 7, max = 255),
            regex(pattern = r"^targets(/[-a-z0-9_]+)*$")
        )
    )]
    pub roles: Vec<String>,

    /// Remove targets of tags that no longer exist in the registry. Off by default: a tag that
    /// vanished stays signed, so nothing that was signed is ever dropped by accident.
    #[serde(default)]
    pub prune_vanished_tags: bool,

    /// The signing key: a Secret holding the PEM written by `notary key export` (or
    /// `notary key generate -o`) and its passphrase.
    pub signing_key: SigningKeyRef,

    /// The registry that holds the image.
    #[serde(default)]
    pub registry: RegistrySpec,

    /// The notary server that holds the trust metadata.
    #[serde(default)]
    pub notary: NotarySpec,

    /// Lifetime of re-signed roles, a Go duration (`26280h` = 3 years, notary's own default).
    #[serde(default = "default_validity")]
    #[schemars(
        length(min = 2, max = 32),
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
    )]
    pub validity: String,

    /// Re-sign a role this long before it expires, a Go duration (default `4560h` = 190 days,
    /// outside the clients' 6-month "nearing expiry" warning).
    #[serde(default = "default_renew_before")]
    #[schemars(
        length(min = 2, max = 32),
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
    )]
    pub renew_before: String,

    /// How often the registry is polled for new or moved tags, a Go duration (default `5m`),
    /// jittered. Renewals are scheduled at their own time regardless.
    #[serde(default = "default_interval")]
    #[schemars(
        length(min = 2, max = 32),
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
    )]
    pub interval: String,

    /// Stop signing and renewing until set back to false.
    #[serde(default)]
    pub suspend: bool,

    /// Signature formats made for every selected tag's digest, with the same key: `notary`
    /// (Docker Content Trust on the notary server, the default) and `cosign` (Sigstore cosign's
    /// `sha256-<hex>.sig` tag in the registry, checked by `cosign verify --key PUB
    /// --insecure-ignore-tlog`, policy-controller and Kyverno; needs push access to the
    /// registry and an ECDSA P-256 key) and `notation` (Notary Project JWS signatures as OCI
    /// referrers, checked by `notation verify` and Ratify; needs `spec.notation`, the signing
    /// certificate chain). Dual-sign while admission policies move,
    /// then drop `notary` (the off-ramp): no trust data is read and no notary server is
    /// needed; `status.signatures` then says what is signed.
    #[serde(default = "default_formats")]
    #[schemars(length(min = 1, max = 3))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.all(f, self.exists_one(g, g == f))", "message": "a format is listed twice"}]))]
    pub formats: Vec<SignatureFormat>,

    /// Settings of the `notation` format (Notary Project signatures, JWS, stored as OCI
    /// referrers of the signed manifest): required when formats lists notation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notation: Option<NotationSpec>,

    /// Plan only, publish nothing: each run reads the registry and the notary server as usual
    /// and writes what it would sign, renew or remove, and the cosign and Notation signatures
    /// it would push, to `status.plannedChanges` (Ready False, reason `DryRun`) instead of
    /// publishing them. Set back to false to publish.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// A signature format: `notary` or `cosign`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureFormat {
    /// Docker Content Trust (Notary v1 / TUF).
    Notary,
    /// Sigstore cosign, key-based, in the registry.
    Cosign,
    /// Notary Project (Notation) signatures, JWS, as OCI referrers in the registry.
    Notation,
}

/// Default data key of the certificate chain in its Secret: what cert-manager writes.
pub const DEFAULT_CERTIFICATE_KEY: &str = "tls.crt";

fn default_certificate_key() -> String {
    DEFAULT_CERTIFICATE_KEY.into()
}

/// The `notation` format's settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotationSpec {
    /// The Secret holding the signing certificate chain, PEM, leaf first; the leaf is for the
    /// signing key (`trustkeeper key certificate` makes a self-signed one, cert-manager
    /// renews one). The trust store of `notation verify` holds its root. A renewed
    /// certificate makes new signatures on the next run.
    pub certificate_secret_ref: CertificateSecretRef,
}

/// A certificate chain in a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct CertificateSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Data key of the PEM chain (default `tls.crt`, as cert-manager writes it).
    #[serde(default = "default_certificate_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// `[notary]`: what a SignedImage made before formats existed.
pub fn default_formats() -> Vec<SignatureFormat> {
    vec![SignatureFormat::Notary]
}

fn default_validity() -> String {
    DEFAULT_VALIDITY.into()
}
fn default_renew_before() -> String {
    DEFAULT_RENEW_BEFORE.into()
}
fn default_interval() -> String {
    DEFAULT_INTERVAL.into()
}
fn default_key_field() -> String {
    DEFAULT_KEY_FIELD.into()
}
fn default_passphrase_field() -> String {
    DEFAULT_PASSPHRASE_FIELD.into()
}

/// A Secret in the SignedImage's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Where the signing key and its passphrase are.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeyRef {
    /// The Secret with the key PEM and passphrase.
    pub secret_ref: SecretRef,
    /// Data key of the PEM (default `key.pem`).
    #[serde(default = "default_key_field")]
    #[schemars(length(min = 1, max = 253))]
    pub key_field: String,
    /// Data key of the passphrase (default `passphrase`). Unused for an unencrypted key.
    #[serde(default = "default_passphrase_field")]
    #[schemars(length(min = 1, max = 253))]
    pub passphrase_field: String,
}

/// A CA bundle (PEM) from a Secret or a ConfigMap key in the SignedImage's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "has(self.secretKeyRef) != has(self.configMapKeyRef)", "message": "set exactly one of secretKeyRef and configMapKeyRef"}]))]
pub struct CaRef {
    /// A key of a Secret holding PEM certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeySelector>,
    /// A key of a ConfigMap holding PEM certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeySelector>,
}

/// One data key of a Secret or ConfigMap.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct KeySelector {
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Data key, e.g. `ca.crt`.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Registry access.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistrySpec {
    /// A `kubernetes.io/dockerconfigjson` Secret with credentials for the registry. Credential
    /// helpers named in it are not executed. Absent: anonymous access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
    /// CA certificates that sign the registry's TLS certificate, added to the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaRef>,
    /// Accept a plain-`http://` token realm from this registry: the credentials and tokens
    /// then travel in the clear. Off: such a realm is refused and nothing is sent to it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_token_realm: bool,
}

/// Notary server access and first-time trust.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotarySpec {
    /// Notary server URL (https). Default, as docker picks it: `DOCKER_CONTENT_TRUST_SERVER`,
    /// then `https://notary.docker.io` for Docker Hub images, otherwise `https://<registry host>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https://[^\s/]+(/\S*)?$"))]
    pub url: Option<String>,
    /// Credentials for the notary server: a `kubernetes.io/dockerconfigjson` or a
    /// `kubernetes.io/basic-auth` Secret. Absent: anonymous, or the registry credentials when
    /// they hold an entry for the notary host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
    /// CA certificates that sign the notary server's TLS certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaRef>,
    /// Pin the root: the repository's root must be signed by these key IDs (64 hex digits, as
    /// `trustkeeper inspect` or `notary key list` shows them). Empty: trust on first use, after
    /// which the root seen first is kept in the status.
    #[serde(default, rename = "rootKeyIDs")]
    #[schemars(length(max = 16), inner(regex(pattern = r"^[0-9a-f]{64}$")))]
    pub root_key_ids: Vec<String>,
    /// Accept a plain-`http://` token realm from the notary server: its credentials and
    /// tokens then travel in the clear. Off: such a realm is refused and nothing is sent to it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_token_realm: bool,
}
