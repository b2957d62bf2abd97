//! Registry push notifications (the distribution `notifications` envelope): which SignedImages a
//! push concerns. Pure; the HTTP endpoint (`http.rs`) authenticates and triggers.

use serde::Deserialize;

use crate::api::SignedImageSpec;

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

const DOCKER_HUB: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// (registry host, repository path) of `spec.image`, Docker Hub short forms expanded.
pub fn image_location(image: &str) -> (String, String) {
    match image.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_ascii_lowercase(), rest.to_string())
        }
        Some(_) => ("docker.io".into(), image.to_string()),
        None => ("docker.io".into(), format!("library/{image}")),
    }
}

fn split_port(host: &str) -> (&str, Option<&str>) {
    match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, Some(p)),
        _ => (host, None),
    }
}

/// Whether two registry hosts are the same: equal, both Docker Hub, or the same name where one
/// side leaves out the port (a proxy in front of the registry may drop it).
pub fn same_host(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    if a == b || (DOCKER_HUB.contains(&a.as_str()) && DOCKER_HUB.contains(&b.as_str())) {
        return true;
    }
    let ((ha, pa), (hb, pb)) = (split_port(&a), split_port(&b));
    ha == hb && (pa.is_none() || pb.is_none())
}

/// Whether a tag is one of `spec.tags` (exact or glob). Unparsable globs count as a match: the
/// engine decides, the notification only wakes it.
fn tag_selected(patterns: &[String], tag: &str) -> bool {
    patterns.iter().any(|p| {
        p == tag
            || globset::Glob::new(p)
                .map(|g| g.compile_matcher().is_match(tag))
                .unwrap_or(true)
    })
}

/// Whether `push` concerns a SignedImage with this spec: same repository, same registry (when
/// the notification names it), and a selected tag (when it names one).
pub fn concerns(spec: &SignedImageSpec, push: &Push) -> bool {
    if spec.suspend {
        return false;
    }
    let (host, path) = image_location(&spec.image);
    if path != push.repository {
        return false;
    }
    if let Some(h) = &push.host
        && !same_host(&host, h)
    {
        return false;
    }
    match &push.tag {
        Some(tag) => tag_selected(&spec.tags, tag),
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
        assert_eq!(
            image_location("acme/app"),
            ("docker.io".into(), "acme/app".into())
        );
        assert_eq!(
            image_location("localhost/app"),
            ("localhost".into(), "app".into())
        );
    }
}
