//! The registry client against the real testbed registries (docker-registry 2.8.2):
//! anonymous, htpasswd basic auth and Docker-style token auth.
//!
//! Needs `TRUSTKEEPER_TESTBED` (`tests/support/testbed.sh up DIR`) and
//! `TRUSTKEEPER_TESTBED_TOKEN` (`tests/support/testbed.sh up DIR --token`).

mod common;

use std::time::Duration;

use common::{Seed, Testbed};
use trustkeeper::registry::manifest::sha256_digest;
use trustkeeper::registry::{
    Credentials, DockerConfig, ImageRef, RegistryClient, RegistryError, RegistryOptions,
    TagSelector,
};

const SEEDED_TAGS: [&str; 5] = ["v1", "latest", "multi", "oci-v1", "oci-multi"];

fn client(tb: &Testbed, credentials: Credentials) -> RegistryClient {
    RegistryClient::new(RegistryOptions {
        ca_pem: Some(tb.ca_pem()),
        credentials,
        timeout: Duration::from_secs(20),
        ..Default::default()
    })
    .expect("client")
}

fn seed_var(seed: &Seed, tag: &str, what: &str) -> String {
    let key = format!(
        "TAG_{}_{what}",
        tag.to_ascii_uppercase().replace(['-', '.'], "_")
    );
    seed.var(&key).to_string()
}

/// Every seeded tag resolves to the seed.env digest/size/media type and the saved raw bytes.
async fn check_seeded_tags(c: &RegistryClient, image: &ImageRef, seed: &Seed) {
    for tag in SEEDED_TAGS {
        let d = c
            .resolve(image, tag)
            .await
            .unwrap_or_else(|e| panic!("{tag}: {e}"));
        assert_eq!(d.digest, seed_var(seed, tag, "DIGEST"), "{tag} digest");
        assert_eq!(
            d.size.to_string(),
            seed_var(seed, tag, "SIZE"),
            "{tag} size"
        );
        assert_eq!(
            d.media_type,
            seed_var(seed, tag, "MEDIATYPE"),
            "{tag} media type"
        );
        let raw = seed.manifest(tag);
        assert_eq!(
            sha256_digest(&raw),
            d.digest,
            "{tag}: sha256 of the saved manifest"
        );
        assert_eq!(
            raw.len() as u64,
            d.size,
            "{tag}: length of the saved manifest"
        );
    }
}

/// The image in another registry of the same testbed (same storage, other host).
fn on_host(host: &str, seed: &Seed) -> ImageRef {
    ImageRef::parse(&format!("{host}/{}", seed.repository)).unwrap()
}

#[tokio::test]
async fn anonymous_resolves_every_seeded_tag_with_head_only() {
    let tb = Testbed::get();
    let seed = tb.seed("reg-anon");
    let image = ImageRef::parse(&seed.gun).unwrap();
    assert_eq!(image.gun(), seed.gun);
    let c = client(tb, Credentials::Anonymous);
    check_seeded_tags(&c, &image, &seed).await;
    let s = c.stats();
    assert_eq!((s.head, s.get, s.tag_list, s.token), (5, 0, 0, 0), "{s:?}");

    // raw manifests are byte-identical to what the seed saved
    for tag in SEEDED_TAGS {
        let raw = c.get_manifest_raw(&image, tag).await.unwrap();
        assert_eq!(raw.bytes, seed.manifest(tag), "{tag}");
        assert_eq!(raw.descriptor.digest, seed_var(&seed, tag, "DIGEST"));
        assert_eq!(raw.descriptor.media_type, seed_var(&seed, tag, "MEDIATYPE"));
    }
    // by digest too
    let digest = seed_var(&seed, "multi", "DIGEST");
    let d = c.resolve(&image, &digest).await.unwrap();
    assert_eq!(d.digest, digest);
    let raw = c.get_manifest_raw(&image, &digest).await.unwrap();
    assert_eq!(raw.bytes, seed.manifest("multi"));
}

#[tokio::test]
async fn steady_state_is_one_tag_list_and_one_head_per_selected_tag() {
    let tb = Testbed::get();
    let seed = tb.seed("reg-steady");
    let image = ImageRef::parse(&seed.gun).unwrap();
    let c = client(tb, Credentials::Anonymous);

    let selector = TagSelector::new(&["oci-*", "v1", "nothing-*", "absent"]).unwrap();
    let selection = c.select_tags(&image, &selector).await.unwrap();
    assert_eq!(selection.tags, ["oci-multi", "oci-v1", "v1"]);
    assert_eq!(selection.unmatched, ["nothing-*", "absent"]);

    let resolved = c.resolve_many(&image, &selection.tags).await;
    assert_eq!(resolved.len(), 3);
    for (tag, r) in &resolved {
        let d = r.as_ref().unwrap_or_else(|e| panic!("{tag}: {e}"));
        assert_eq!(d.digest, seed_var(&seed, tag, "DIGEST"), "{tag}");
    }
    let s = c.stats();
    assert_eq!(s.tag_list, 1, "{s:?}");
    assert_eq!(s.head, 3, "{s:?}");
    assert_eq!(s.get, 0, "{s:?}");
    assert_eq!(s.retries, 0, "{s:?}");
}

#[tokio::test]
async fn missing_tag_and_repository_are_not_found() {
    let tb = Testbed::get();
    let seed = tb.seed("reg-404");
    let image = ImageRef::parse(&seed.gun).unwrap();
    let c = client(tb, Credentials::Anonymous);
    let err = c.resolve(&image, "no-such-tag").await.unwrap_err();
    assert!(
        matches!(err, RegistryError::NotFound { ref reference } if reference.ends_with(":no-such-tag")),
        "{err}"
    );
    let other = ImageRef::parse(&format!(
        "{}/test/never-pushed-xyz",
        tb.var("REGISTRY_HOST")
    ))
    .unwrap();
    let err = c.list_tags(&other).await.unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
    assert_eq!(c.stats().retries, 0);
}

#[tokio::test]
async fn without_the_ca_tls_fails_fast() {
    let tb = Testbed::get();
    let image = ImageRef::parse(&format!("{}/test/anything", tb.var("REGISTRY_HOST"))).unwrap();
    let c = RegistryClient::new(RegistryOptions::default()).unwrap();
    let t = std::time::Instant::now();
    let err = c.resolve(&image, "v1").await.unwrap_err();
    assert!(matches!(err, RegistryError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("CA"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(c.stats().retries, 0);

    // trusting only the testbed CA works (the repository just doesn't exist)
    let c = RegistryClient::new(RegistryOptions {
        ca_pem: Some(tb.ca_pem()),
        ca_only: true,
        ..Default::default()
    })
    .unwrap();
    let err = c.resolve(&image, "v1").await.unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn many_pushed_tags_are_all_listed_and_globs_select_them() {
    let tb = Testbed::get();
    let seed = tb.seed("reg-many");
    let image = ImageRef::parse(&seed.gun).unwrap();
    let manifest = seed.manifest("v1");
    let media_type = seed_var(&seed, "v1", "MEDIATYPE");
    let names: Vec<String> = (0..120).map(|i| format!("rel-{i:03}")).collect();
    push_tags(tb, &seed, &names, &manifest, &media_type).await;

    // a small page size: registry 2.8 ignores `n`, later registries page with Link
    let c = RegistryClient::new(RegistryOptions {
        ca_pem: Some(tb.ca_pem()),
        tags_page_size: Some(10),
        ..Default::default()
    })
    .unwrap();
    let tags = c.list_tags(&image).await.unwrap();
    assert_eq!(tags.len(), 125, "{tags:?}");
    for n in &names {
        assert!(tags.contains(n), "{n} missing");
    }
    let sel = TagSelector::new(&["rel-0[0-4]?", "rel-119"])
        .unwrap()
        .select(&tags);
    assert_eq!(sel.tags.len(), 51, "{:?}", sel.tags);
    assert!(sel.unmatched.is_empty());

    let resolved = c.resolve_many(&image, &sel.tags).await;
    let want = seed_var(&seed, "v1", "DIGEST");
    for (tag, r) in resolved {
        assert_eq!(r.unwrap().digest, want, "{tag}");
    }
    let s = c.stats();
    assert_eq!((s.head, s.get), (51, 0), "{s:?}");

    // moving a tag changes what it resolves to
    let multi = seed.manifest("multi");
    let multi_type = seed_var(&seed, "multi", "MEDIATYPE");
    push_tags(tb, &seed, &["rel-000".to_string()], &multi, &multi_type).await;
    let d = c.resolve(&image, "rel-000").await.unwrap();
    assert_eq!(d.digest, seed_var(&seed, "multi", "DIGEST"));
}

#[tokio::test]
async fn basic_auth_registry_with_good_wrong_and_no_credentials() {
    let tb = Testbed::get();
    let seed = tb.seed("reg-basic");
    let host = tb.var("REGISTRY_BASIC_HOST");
    let image = on_host(host, &seed);

    // credentials from a dockerconfigjson document keyed by URL
    let doc = serde_json::json!({"auths": {
        format!("https://{host}/v2/"): {
            "username": tb.var("REGISTRY_BASIC_USER"),
            "password": tb.var("REGISTRY_BASIC_PASSWORD"),
        }
    }});
    let cfg = DockerConfig::from_json(doc.to_string().as_bytes()).unwrap();
    let c = client(tb, cfg.credentials_for(image.registry_host()));
    check_seeded_tags(&c, &image, &seed).await;
    let tags = c.list_tags(&image).await.unwrap();
    assert_eq!(tags.len(), 5);
    let s = c.stats();
    // the first request learns that the registry wants Basic; the rest send it at once
    assert_eq!(s.unauthorized, 1, "{s:?}");
    assert_eq!((s.head, s.tag_list), (6, 1), "{s:?}");

    for (label, creds) in [
        (
            "wrong password",
            Credentials::basic(tb.var("REGISTRY_BASIC_USER"), "wrong"),
        ),
        ("anonymous", Credentials::Anonymous),
    ] {
        let c = client(tb, creds);
        for tag in ["v1", "multi"] {
            let r = c.resolve(&image, tag).await;
            let err = r.expect_err(label);
            assert!(
                matches!(&err, RegistryError::Unauthorized { registry, .. } if registry == host),
                "{label}: {err}"
            );
            assert!(err.to_string().contains(host), "{err}");
        }
        let err = c.list_tags(&image).await.unwrap_err();
        assert!(
            matches!(err, RegistryError::Unauthorized { .. }),
            "{label}: {err}"
        );
        assert_eq!(c.stats().retries, 0);
    }
}

#[tokio::test]
async fn token_auth_registry_with_good_wrong_and_no_credentials() {
    let tb = Testbed::token();
    let seed = tb.seed("reg-token");
    let image = ImageRef::parse(&seed.gun).unwrap();
    let host = tb.var("REGISTRY_HOST");

    let good = Credentials::basic(tb.var("TOKEN_USER"), tb.var("TOKEN_PASSWORD"));
    let c = client(tb, good);
    let tags = c.list_tags(&image).await.unwrap();
    assert_eq!(tags.len(), 5);
    check_seeded_tags(&c, &image, &seed).await;
    let resolved = c.resolve_many(&image, &tags).await;
    assert!(resolved.iter().all(|(_, r)| r.is_ok()));
    let s = c.stats();
    // one challenge, one token, reused for everything after it
    assert_eq!((s.unauthorized, s.token), (1, 1), "{s:?}");
    assert_eq!((s.tag_list, s.head, s.get), (2, 10, 0), "{s:?}");

    for (label, creds) in [
        (
            "wrong password",
            Credentials::basic(tb.var("TOKEN_USER"), "wrong"),
        ),
        ("anonymous", Credentials::Anonymous),
    ] {
        let c = client(tb, creds);
        let err = c.resolve(&image, "v1").await.expect_err(label);
        assert!(
            matches!(&err, RegistryError::Unauthorized { registry, .. } if registry == host),
            "{label}: {err}"
        );
        let err = c.list_tags(&image).await.unwrap_err();
        assert!(
            matches!(err, RegistryError::Unauthorized { .. }),
            "{label}: {err}"
        );
        assert_eq!(c.stats().retries, 0);
    }
}

/// Pushes `manifest` under each tag (anonymous registry; the blobs already exist).
async fn push_tags(tb: &Testbed, seed: &Seed, tags: &[String], manifest: &[u8], media_type: &str) {
    for tag in tags {
        tb.push_manifest(&seed.repository, tag, manifest, media_type)
            .await;
    }
}

/// The clients the engine builds for a run (the product's only way to a registry): credentials
/// from the docker config entry of the image's registry (a credential helper never run), the CA
/// for every registry, one kept client per registry reused by later runs.
#[tokio::test]
async fn engine_clients_pick_credentials_and_ca_per_registry() {
    use trustkeeper::engine::{Engine, RunSecrets, Settings};
    let tb = Testbed::get();
    let seed = tb.seed("reg-pool");
    let basic_host = tb.var("REGISTRY_BASIC_HOST");
    let auth = base64_encode(&format!(
        "{}:{}",
        tb.var("REGISTRY_BASIC_USER"),
        tb.var("REGISTRY_BASIC_PASSWORD")
    ));
    let doc = serde_json::json!({"auths": {basic_host: {"auth": auth}}, "credsStore": "desktop"});
    let engine = Engine {
        extra_ca: Some(tb.ca_pem()),
        ..Default::default()
    };
    let creds = RunSecrets {
        registry_auth: Some(zeroize::Zeroizing::new(doc.to_string().into_bytes())),
        ..Default::default()
    };
    let settings = |image: &ImageRef| Settings {
        image: image.clone(),
        gun: image.gun(),
        notary_url: tb.var("NOTARY_URL").to_string(),
        validity: jiff::SignedDuration::from_hours(1),
        renew_before: jiff::SignedDuration::from_mins(10),
        interval: jiff::SignedDuration::from_mins(10),
        insecure_registry_realm: false,
        insecure_notary_realm: false,
    };
    let anon = ImageRef::parse(&seed.gun).unwrap();
    let basic = on_host(basic_host, &seed);
    let want = seed_var(&seed, "v1", "DIGEST");
    // The basic-auth registry's first HEAD is answered 401, then sent again with the password;
    // the kept client sends it at once from then on.
    for (image, heads) in [(&anon, 1), (&basic, 2), (&anon, 1), (&basic, 1)] {
        let c = engine.clients(&settings(image), &creds).unwrap();
        assert_eq!(c.registry.resolve(image, "v1").await.unwrap().digest, want);
        assert_eq!(c.registry.stats().head, heads, "{image:?}");
    }
    // Without the docker config the basic-auth registry refuses.
    let anonymous = engine
        .clients(&settings(&basic), &RunSecrets::default())
        .unwrap();
    assert!(matches!(
        anonymous.registry.resolve(&basic, "v1").await,
        Err(RegistryError::Unauthorized { .. })
    ));
    assert_eq!(
        format!("{:?}", engine.client_pool),
        "ClientPool(3)",
        "one kept client pair per registry and credentials"
    );
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
