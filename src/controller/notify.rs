//! Registry push notifications (the distribution `notifications` envelope): which SignedImages a
//! push concerns. Pure; the HTTP endpoint (`http.rs`) authenticates and triggers.

use serde::Deserialize;

use crate::api::SignedImageSpec;
use crate::registry::TagSelector;
use crate::registry::reference::{DOCKER_HUB, ImageRef, is_docker_hub};

/// `{"events": [...]}` as the registry POSTs it
/// (`application/vnd.docker.distribution.events.v1+json`).
#[derive(Debug, Deserialize)]
pub struct Notification {
    #[serde(default)]
    pub events: Vec<NotifyEvent>,
}

#[derive(Debug, Deserialize)]
pub struct NotifyEvent {
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub target: Target,
    #[serde(default)]
    pub request: RequestInfo,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    #[serde(default)]
    pub repository: String,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub media_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RequestInfo {
    /// The Host the client pushed to (`registry.example.com:5000`).
    #[serde(default)]
    pub host: Option<String>,
}

/// A push of a manifest (not a blob): what can move a tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    pub host: Option<String>,
    pub repository: String,
    pub tag: Option<String>,
}

/// The manifest pushes in an envelope.
pub fn pushes(envelope: &Notification) -> Vec<Push> {
    envelope
        .events
        .iter()
        .filter(|e| e.action == "push" && !e.target.repository.is_empty())
        .filter(|e| {
            e.target.tag.as_deref().is_some_and(|t| !t.is_empty())
                || e.target
                    .media_type
                    .as_deref()
                    .is_some_and(|m| m.contains("manifest") || m.contains("index"))
        })
        .map(|e| Push {
            host: e.request.host.clone().filter(|h| !h.is_empty()),
            repository: e.target.repository.clone(),
            tag: e.target.tag.clone().filter(|t| !t.is_empty()),
        })
        .collect()
}

fn split_port(host: &str) -> (&str, Option<&str>) {
    match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, Some(p)),
        _ => (host, None),
    }
}

/// Whether the host a push names is the image's registry (its canonical name, as
/// [`ImageRef::registry_host`] gives it): any Docker Hub name for Docker Hub, else the same name
/// where one side may leave out the port (a proxy in front of the registry may drop it).
fn same_registry(image_host: &str, pushed: &str) -> bool {
    let pushed = if is_docker_hub(pushed) {
        DOCKER_HUB
    } else {
        pushed
    };
    if image_host.eq_ignore_ascii_case(pushed) {
        return true;
    }
    let ((ha, pa), (hb, pb)) = (split_port(image_host), split_port(pushed));
    ha.eq_ignore_ascii_case(hb) && (pa.is_none() || pb.is_none())
}

/// Whether `push` concerns a SignedImage with this spec: same repository, same registry (when
/// the notification names it), and a selected tag (when it names one). Names are read the way
/// the engine reads them ([`ImageRef`], [`TagSelector`]), so every form of a name agrees.
pub fn concerns(spec: &SignedImageSpec, push: &Push) -> bool {
    if spec.suspend {
        return false;
    }
    // An image the engine cannot parse is refused by it; a push does not change that.
    let Ok(image) = ImageRef::parse(&spec.image) else {
        return false;
    };
    if let Some(h) = &push.host
        && !same_registry(image.registry_host(), h)
    {
        return false;
    }
    // The pushed path read on the image's registry: Docker Hub's `library/` applies alike.
    match ImageRef::parse(&format!("{}/{}", image.registry_host(), push.repository)) {
        Ok(pushed)
            if pushed.tag().is_none()
                && pushed.digest().is_none()
                && pushed.repository() == image.repository() => {}
        _ => return false,
    }
    match &push.tag {
        // A selector the engine refuses: the notification only wakes it, the engine reports.
        Some(tag) => TagSelector::new(&spec.tags).map_or(true, |s| s.matches(tag)),
        None => !spec.tags.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(image: &str, tags: &[&str]) -> SignedImageSpec {
        serde_json::from_value(serde_json::json!({
            "image": image, "tags": tags,
            "signingKey": {"secretRef": {"name": "k"}, "keyField": "key.pem", "passphraseField": "passphrase"},
            "validity": "26280h", "renewBefore": "4560h", "interval": "5m"
        }))
        .unwrap()
    }

    fn envelope(json: &str) -> Vec<Push> {
        pushes(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn manifest_pushes_only() {
        let p = envelope(
            r#"{"events":[
            {"action":"push","target":{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","repository":"team/app","digest":"sha256:1"},"request":{"host":"reg.example.com:5000"}},
            {"action":"push","target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","repository":"team/app","tag":"v2","digest":"sha256:2"},"request":{"host":"reg.example.com:5000"}},
            {"action":"pull","target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","repository":"team/app","tag":"v2"}}
        ]}"#,
        );
        assert_eq!(
            p,
            vec![Push {
                host: Some("reg.example.com:5000".into()),
                repository: "team/app".into(),
                tag: Some("v2".into())
            }]
        );
    }

    #[test]
    fn matching_by_registry_repository_and_tag() {
        let push = |host: Option<&str>, repo: &str, tag: Option<&str>| Push {
            host: host.map(Into::into),
            repository: repo.into(),
            tag: tag.map(Into::into),
        };
        let s = spec("reg.example.com:5000/team/app", &["v*", "latest"]);
        assert!(concerns(
            &s,
            &push(Some("reg.example.com:5000"), "team/app", Some("v2"))
        ));
        assert!(concerns(
            &s,
            &push(Some("REG.example.com"), "team/app", Some("latest"))
        ));
        assert!(concerns(&s, &push(None, "team/app", Some("v2"))));
        assert!(!concerns(
            &s,
            &push(Some("reg.example.com:5000"), "team/app", Some("dev"))
        ));
        assert!(!concerns(
            &s,
            &push(Some("reg.example.com:5000"), "team/other", Some("v2"))
        ));
        assert!(!concerns(
            &s,
            &push(Some("other.example.com:5000"), "team/app", Some("v2"))
        ));
        assert!(!concerns(
            &s,
            &push(Some("reg.example.com:5001"), "team/app", Some("v2"))
        ));
        // Renew-only SignedImages sign nothing new: no wake-up.
        assert!(!concerns(
            &spec("reg.example.com:5000/team/app", &[]),
            &push(None, "team/app", Some("v2"))
        ));
        // Docker Hub short forms.
        let hub = spec("alpine", &["3*"]);
        assert!(concerns(
            &hub,
            &push(Some("registry-1.docker.io"), "library/alpine", Some("3.20"))
        ));
        assert!(concerns(
            &spec("acme/app", &["v*"]),
            &push(Some("docker.io"), "acme/app", Some("v1"))
        ));
        assert!(concerns(
            &spec("localhost/app", &["v*"]),
            &push(Some("localhost"), "app", Some("v1"))
        ));
    }

    fn push(host: Option<&str>, repo: &str, tag: Option<&str>) -> Push {
        Push {
            host: host.map(Into::into),
            repository: repo.into(),
            tag: tag.map(Into::into),
        }
    }

    #[test]
    fn every_form_of_a_docker_hub_name_reaches_its_signed_image() {
        let hub = Some("registry-1.docker.io");
        for image in [
            "alpine",
            "docker.io/alpine",
            "docker.io/library/alpine",
            "index.docker.io/library/alpine",
            "registry-1.docker.io/library/alpine",
        ] {
            let s = spec(image, &["3.*", "latest"]);
            for host in [
                None,
                hub,
                Some("docker.io"),
                Some("index.docker.io"),
                Some("REGISTRY-1.docker.io"),
            ] {
                for repo in ["library/alpine", "alpine"] {
                    assert!(
                        concerns(&s, &push(host, repo, Some("3.20"))),
                        "{image} / {host:?} / {repo}"
                    );
                }
            }
            // Another repository, another registry, a tag the globs do not select.
            assert!(!concerns(&s, &push(hub, "library/busybox", Some("3.20"))));
            assert!(!concerns(&s, &push(hub, "acme/alpine", Some("3.20"))));
            assert!(!concerns(
                &s,
                &push(Some("mirror.example.com"), "library/alpine", Some("3.20"))
            ));
            assert!(!concerns(&s, &push(hub, "library/alpine", Some("edge"))));
        }
        // A user namespace on the Hub gets no `library/`.
        let s = spec("docker.io/acme/app", &["v1"]);
        assert!(concerns(
            &s,
            &push(Some("index.docker.io"), "acme/app", Some("v1"))
        ));
        assert!(!concerns(
            &s,
            &push(Some("index.docker.io"), "library/app", Some("v1"))
        ));
    }

    #[test]
    fn a_private_registry_with_and_without_its_port() {
        let s = spec("host.example.com:5000/team/app", &["release-*"]);
        let ok = |host| concerns(&s, &push(host, "team/app", Some("release-2")));
        assert!(ok(Some("host.example.com:5000")));
        assert!(ok(Some("Host.Example.com:5000")));
        assert!(ok(Some("host.example.com")));
        assert!(ok(None));
        assert!(!ok(Some("host.example.com:5001")));
        assert!(!ok(Some("other.example.com:5000")));
        assert!(!ok(Some("docker.io")));
        assert!(!concerns(
            &s,
            &push(Some("host.example.com:5000"), "team/app", Some("v2"))
        ));
        assert!(!concerns(
            &s,
            &push(
                Some("host.example.com:5000"),
                "team/other",
                Some("release-2")
            )
        ));
        // Without the port in the spec, a push through the port is the same registry.
        let s = spec("host.example.com/team/app", &["release-2"]);
        assert!(concerns(
            &s,
            &push(Some("host.example.com:5000"), "team/app", Some("release-2"))
        ));
        // A repository that is not a path, and a Hub image pushed on a private registry.
        assert!(!concerns(
            &s,
            &push(
                Some("host.example.com"),
                "team/app:release-2",
                Some("release-2")
            )
        ));
        assert!(!concerns(
            &spec("alpine", &["3.20"]),
            &push(
                Some("host.example.com:5000"),
                "library/alpine",
                Some("3.20")
            )
        ));
    }

    #[test]
    fn an_unparsable_image_is_never_woken_and_a_bad_glob_wakes_the_engine() {
        assert!(!concerns(
            &spec("Team/App", &["v1"]),
            &push(None, "team/app", Some("v1"))
        ));
        assert!(concerns(
            &spec("reg.example.com/team/app", &["v[1"]),
            &push(None, "team/app", Some("v1"))
        ));
    }
}
