//! trustkeeper: keeps Docker Content Trust (Notary v1 / TUF) trust metadata signed and fresh.
//!
//! This crate is the operator (`controller`) and the command line (`cli`); what they run lives
//! in the workspace's library crates, each knowing only those below it (a dependency check in
//! `tests/layering.rs` holds the line):
//! `trustkeeper-engine` (resolve → plan → apply → verify → status; the `SignedImage` spec and
//! status as plain data; no Kubernetes) → `trustkeeper-notary` (TUF metadata, keys, the server
//! API) and `trustkeeper-registry` (references, tags, digests), which share `trustkeeper-http`
//! (challenges, the token flow, request counters, TLS) and not each other.
//! They are re-exported here under their module names, so `trustkeeper::notary::...` is
//! `trustkeeper_notary::...`.

pub mod api;
pub mod cli;
pub mod controller;

pub use trustkeeper_engine as engine;
pub use trustkeeper_formats as formats;
pub use trustkeeper_http as http_auth;
pub use trustkeeper_http::tls;
pub use trustkeeper_notary as notary;
pub use trustkeeper_registry as registry;

#[cfg(test)]
mod crypto_provider {
    /// Feature unification must not bring a second rustls provider back: with two compiled in,
    /// kube's client panics at start. Building both kinds of client here catches that.
    #[test]
    fn one_crypto_provider_for_kube_and_reqwest() {
        crate::tls::install_crypto_provider();
        let kubeconfig = kube::config::Kubeconfig::from_yaml(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\n\
             contexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {token: t}\n",
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .unwrap();
            kube::Client::try_from(config).expect("kube client builds");
        });
        reqwest::Client::builder()
            .build()
            .expect("reqwest client builds");
    }
}
