//! The controller cluster-wide (no namespace list) against the real API server. A test binary of
//! its own: a cluster-wide controller would reconcile the objects of tests running beside it.

mod controller_support;

use std::time::Duration;

use controller_support::*;
use kube::api::Api;
use trustkeeper::api::SignedImage;
use trustkeeper::controller::fake::FakeReconciler;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_wide_controller_sees_every_namespace() {
    let client = client().await;
    install_crd(&client).await;
    let ns1 = unique("ctl-all-a");
    let ns2 = unique("ctl-all-b");
    let fake = FakeReconciler::new(signed_outcome());
    let mut cfg = config(&ns1, "solo");
    cfg.namespaces = None;
    let mut all = secrets(&ns1);
    all.secrets.extend(secrets(&ns2).secrets);
    let running = Running::start(&client, fake.clone(), all, cfg).await;
    create_image(&client, &ns1, "one", "registry.example.com/team/one").await;
    create_image(&client, &ns2, "two", "registry.example.com/team/two").await;
    for (ns, name) in [(&ns1, "one"), (&ns2, "two")] {
        let api: Api<SignedImage> = Api::namespaced(client.clone(), ns);
        eventually(Duration::from_secs(30), || async {
            ready_of(&api.get(name).await.unwrap())
                == Some(("True".into(), "Signed".into(), Some(1)))
        })
        .await
        .unwrap_or_else(|_| panic!("{ns}/{name} reconciled"));
    }
    let ids: Vec<String> = fake.calls().into_iter().map(|c| c.id).collect();
    assert!(ids.contains(&format!("{ns1}/one")) && ids.contains(&format!("{ns2}/two")));
    running.stop().await.unwrap();
}
