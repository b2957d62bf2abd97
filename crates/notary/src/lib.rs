//! Notary v1 (TUF) protocol: canonical JSON, metadata model, keys, TUF client and server API.
//! Knows nothing of the registry, the engine or Kubernetes.
//!
//! # Files
//! - [`canonical`]: canonical JSON as notary signs it; Go's HTML escaping for file bytes.
//! - [`time`]: reading any RFC 3339 `expires`; writing UTC whole seconds `Z`.
//! - [`metadata`]: serde view of the files ([`metadata::Envelope`] keeps `signed` as raw JSON so
//!   members we don't model survive a re-sign; [`metadata::file_bytes`] = Go's encoder).
//! - [`keys`]: [`PublicKey`] (TUF and canonical IDs, verification of `ecdsa`, `rsapss`,
//!   `rsapkcs1v15`, `eddsa`), [`SigningKey`] (import of notary's PEM files, signing), the
//!   signing seam [`Signer`] (raw signature bytes, no TUF type) and [`KeySource`].
//! - [`client`]: TUF update and verification; [`Repository`], [`TrustAnchor`], [`TrustState`].
//! - [`memo`]: [`SignatureMemo`], signatures found valid, a value its owner passes to the update.
//! - [`cache`]: verified metadata kept so that it is not downloaded again (and the list of the
//!   caching layers, their owners and bounds).
//! - [`edit`]: [`Editor`] (staged changes) → [`SignedFile`]s.
//! - [`server`]: [`NotaryClient`] (HTTP API, auth, limits, publish).
//! - [`init`]: creating a repository as Docker does ([`create_repository`]): root certificate,
//!   root v1 + targets v1 published without a snapshot (the server keeps snapshot/timestamp).
//! - [`error`]: [`Error`], one variant per thing the user fixes differently.
//!
//! # Use
//! ```no_run
//! # async fn demo(pem: &[u8], pass: secrecy::SecretString, state: trustkeeper_notary::TrustState,
//! #               digest: [u8; 32], size: u64) -> trustkeeper_notary::Result<()> {
//! use trustkeeper_notary::*;
//! let keys = SigningKey::from_pem(pem, Some(&pass))?;          // one per PEM block
//! let client = NotaryClient::new(ServerConfig::new("https://notary.example.com"))?;
//! let gun = "registry.example.com/team/app";
//! let now = jiff::Timestamp::now();
//! let (repo, state) = client.update(gun, &TrustAnchor::State(state), now).await?;
//! for r in repo.expiries() { let _ = (r.name, r.expires, r.expired); }
//! let _winner = repo.winner("v1");                              // what Docker would use
//! let mut ed = repo.edit();
//! ed.add_target("targets/releases", "v2", &digest, size)?;
//! ed.witness("targets/ci", None)?;                              // renew: version + 1
//! let files = ed.sign(&keys, now)?;                             // no I/O; refuses early
//! match client.publish(gun, &files).await {
//!     Err(Error::VersionConflict { .. }) => { /* update again, re-plan, retry */ }
//!     other => other?,
//! }
//! # let _ = state; Ok(()) }
//! ```
//!
//! # API summary
//! - `SigningKey::from_pem(&[u8], Option<&SecretString>) -> Result<Vec<SigningKey>>`,
//!   `SigningKey::from_pem_with(&[u8], Fn(&headers) -> Option<SecretString>)`;
//!   `.key_id()`, `.public()`, `.headers()`, `.role()`, `.gun()`, `.sign(msg, label_id)`.
//!   Debug prints only the ID.
//! - `trait Signer: Debug + Send + Sync { key_id, public_key, algorithm, sign(msg) -> Result<Vec<u8>> }`
//!   (`SignatureAlgorithm::{EcdsaP256Sha256 (r‖s), Ed25519}`); `SigningKey` and `Box<S>`
//!   implement it. `trait KeySource { signers() -> Result<Vec<Box<dyn Signer>>> }`;
//!   `PemKeySource { pem, passphrase }`.
//!   `SigningKey::generate_ecdsa(role, gun)`; `.export_pem(&SecretString) -> String`
//!   (`notary key export` layout), `.export_pem_unencrypted() -> SecretString`.
//! - `PublicKey { keytype, public }`: `from_pem`, `key_id`, `canonical_id`, `verify`.
//! - `NotaryClient::new(ServerConfig { url, ca_pem, ca_only, auth: Auth::{Anonymous, Basic}, timeout, max_metadata_bytes })`;
//!   `update(gun, &TrustAnchor, now) -> Result<(Repository, TrustState)>`;
//!   `publish(gun, &[SignedFile]) -> Result<()>`; `get_role`, `get_role_version`,
//!   `get_role_by_hash`, `server_key`, `rotate_server_key`.
//! - `TrustAnchor::{FirstUse, PinnedKeys(Vec<String>), State(TrustState), PinnedState { pins, state }}`;
//!   `TrustState { root_key_ids, root_version, versions }` (serde, camelCase).
//! - `Repository`: `roles()` (reading order), `role(name)` (`TargetsRole` with `version`,
//!   `expires`, `expired`, `health`, `targets`, `delegations`, effective `paths`),
//!   `signers_of(role)`, `list(role)` (= `notary list -r`), `lookup(tag)` (= `notary lookup`),
//!   `winner(tag)` (= Docker), `all_entries(tag)`, `expiries()`, `root_cert_expires`,
//!   `declared_without_file()`, `edit()`.
//! - `Editor`: `add_target(role, name, &[u8; 32], len)`, `remove_target(role, name)`,
//!   `witness(role, Option<expires>)`, `set_expiry(role, expires)`,
//!   `sign(&[impl Signer], now) -> Result<Vec<SignedFile>>` (changed roles, plus `snapshot`
//!   when a key for it is given); the TUF `method` follows the signer's algorithm.
//! - `create_repository(&client, gun, &root, &targets, now) -> Result<InitialMetadata>`
//!   ([`Error::RepositoryExists`] if the GUN has trust data), `create_repository_with_new_keys`,
//!   `NewRepository::new(..).with_delegation(name, key, paths)?.create(&client, now)`;
//!   `init::root_certificate(&root, gun, now) -> PublicKey` (`ecdsa-x509`).
//!
//! Expired or badly signed targets roles don't fail [`NotaryClient::update`]: they are loaded,
//! flagged and hidden from lookups (as the Go client hides them), and can be re-signed with all
//! their targets. Expired root/snapshot/timestamp, rollbacks, bad hashes and base roles below
//! threshold fail the update.

pub mod cache;
pub mod canonical;
pub mod client;
pub mod delegations;
pub mod edit;
pub mod error;
pub mod init;
pub mod keys;
pub mod memo;
pub mod metadata;
pub mod rotate;
pub mod server;
pub mod time;

pub use client::{Repository, TrustAnchor, TrustState};
pub use edit::{Editor, SignedFile};
pub use error::{Error, Result};
pub use init::{
    InitialMetadata, NewRepository, RepositoryKeys, create_repository,
    create_repository_with_new_keys,
};
pub use keys::{KeySource, PemKeySource, PublicKey, SignatureAlgorithm, Signer, SigningKey};
pub use memo::SignatureMemo;
pub use server::{Auth, NotaryClient, ServerConfig};
