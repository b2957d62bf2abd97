//! Stage 2, resolve: what the registry holds for the selected tags (HEADs; one checked GET per
//! digest not signed before), and how a failed read of the trust data is reported.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::reasons;
use crate::failure::Failure;
use crate::model::{Manifest, RepoView};
use crate::settings::invalid;
use trustkeeper_registry::{ImageRef, RegistryClient, TagSelector};

/// A failed read of the trust data: a 5xx or 429 answer to a GET means the server is not
/// available (`NotaryUnreachable`, retried with backoff), not that a publish was refused.
pub(crate) fn fetch_failure(e: trustkeeper_notary::Error) -> Failure {
    match &e {
        trustkeeper_notary::Error::Server { status, .. } if *status >= 500 || *status == 429 => {
            Failure::new(reasons::NOTARY_UNREACHABLE, e.to_string())
        }
        _ => e.into(),
    }
}

/// What the registry holds for the selection.
pub struct Resolved {
    /// Selected tags present in the registry.
    pub desired: BTreeMap<String, Manifest>,
    /// Exact names in the selection that the registry lacks.
    pub absent: BTreeSet<String>,
    /// The full tag list, when it was fetched (globs).
    pub listed: Option<BTreeSet<String>>,
    pub selector: Option<TagSelector>,
}

/// Resolves the selected tags to what a pull by tag gets now.
pub async fn resolve_tags(
    reg: &RegistryClient,
    image: &ImageRef,
    patterns: &[String],
) -> Result<Resolved, Failure> {
    let mut out = Resolved {
        desired: BTreeMap::new(),
        absent: BTreeSet::new(),
        listed: None,
        selector: None,
    };
    if patterns.is_empty() {
        return Ok(out);
    }
    let selector = TagSelector::new(patterns).map_err(|e| invalid(format!("spec.tags: {e}")))?;
    let names = if selector.is_exact_only() {
        selector.exact_tags()
    } else {
        // Only the matching tags are kept while paging.
        let sel = reg.select_tags(image, &selector).await?;
        if let Some(glob) = sel
            .unmatched
            .iter()
            .find(|p| !selector.exact_tags().contains(p))
        {
            return Err(Failure::new(
                reasons::TAG_NOT_FOUND,
                format!(
                    "the pattern {glob:?} matches no tag of {}: push a matching tag or fix spec.tags",
                    image.gun()
                ),
            ));
        }
        out.absent.extend(sel.unmatched.iter().cloned());
        out.listed = Some(sel.tags.iter().cloned().collect());
        sel.tags
    };
    for (tag, res) in reg.resolve_many(image, &names).await {
        match res {
            Ok(d) => {
                out.desired.insert(
                    tag,
                    Manifest {
                        sha256: d.sha256_hex().to_string(),
                        size: d.size,
                        media_type: Some(d.media_type),
                    },
                );
            }
            Err(trustkeeper_registry::RegistryError::NotFound { .. }) => {
                out.absent.insert(tag);
            }
            Err(e) => return Err(e.into()),
        }
    }
    out.selector = Some(selector);
    Ok(out)
}

/// Checks what the registry's HEADs announced before it is signed for the first time: a
/// digest and size that some role already holds is trusted as signed before (the steady
/// state: HEADs only); any other is fetched once by digest (bounded) and its sha256 and size
/// must match. A lying registry or CDN is refused before anything is signed or published.
pub async fn check_new_manifests(
    reg: &RegistryClient,
    image: &ImageRef,
    desired: &BTreeMap<String, Manifest>,
    view: &RepoView,
) -> Result<(), Failure> {
    use futures::StreamExt as _;
    let signed: BTreeSet<(&str, u64)> = (view.roles.iter())
        .flat_map(|r| r.targets.values())
        .map(|t| (t.sha256.as_str(), t.length))
        .collect();
    let mut fresh: Vec<trustkeeper_registry::ManifestDescriptor> = (desired.values())
        .filter(|m| !signed.contains(&(m.sha256.as_str(), m.size)))
        .map(|m| trustkeeper_registry::ManifestDescriptor {
            digest: format!("sha256:{}", m.sha256),
            size: m.size,
            media_type: m.media_type.clone().unwrap_or_default(),
        })
        .collect();
    fresh.sort_by(|a, b| a.digest.cmp(&b.digest));
    fresh.dedup();
    let mut checks = futures::stream::iter(fresh)
        .map(|d| async move { reg.verify_descriptor(image, &d).await })
        .buffer_unordered(8);
    while let Some(r) = checks.next().await {
        r?;
    }
    Ok(())
}

/// Names signed in the repository that match the selection but are gone from the registry.
pub(crate) fn vanished(resolved: &Resolved, view: &RepoView) -> BTreeSet<String> {
    let Some(selector) = &resolved.selector else {
        return BTreeSet::new();
    };
    let signed: BTreeSet<&String> = view.roles.iter().flat_map(|r| r.targets.keys()).collect();
    signed
        .into_iter()
        .filter(|n| match &resolved.listed {
            Some(listed) => selector.matches(n) && !listed.contains(*n),
            None => resolved.absent.contains(*n),
        })
        .cloned()
        .collect()
}
