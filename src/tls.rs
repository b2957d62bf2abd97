//! Process-wide TLS set-up shared by every HTTP client.

/// Installs aws-lc-rs as the process's rustls provider. Idempotent: a second call is a no-op.
///
/// kube and reqwest both build rustls configs from the process default; pinning it here means a
/// dependency that someday enables `ring` cannot make them disagree (kube panics when two
/// providers are compiled in and none is installed).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    /// Feature unification must not bring a second rustls provider back: with two compiled in,
    /// kube's client panics at start. Building both kinds of client here catches that.
    #[test]
    fn one_crypto_provider_for_kube_and_reqwest() {
        super::install_crypto_provider();
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
