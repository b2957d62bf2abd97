//! `inspect --format notary,cosign,notation`: per tag, the formats it is signed in and by
//! whom. The registry formats sign the digest the registry serves now; notary's digest is
//! compared with it, so a stale notary entry shows beside fresh cosign and Notation ones.

use futures::StreamExt as _;
use serde::Serialize;

use super::common::{self, CliError};
use super::inspect::{InspectArgs, Inspection};
use super::{Global, Output, inspect_cosign, inspect_notation};
use crate::formats::Format;
use crate::registry::ImageRef;

/// Tags whose registry signatures are read at most (three registry reads each).
const MAX_TAGS: usize = 256;
/// Tags read at once.
const AT_ONCE: usize = 8;

#[derive(Serialize)]
struct TagFormats {
    tag: String,
    /// The digest the registry serves for the tag (what cosign and Notation sign).
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    /// The digest notary holds for the tag (absent: notary not shown, or no role holds it).
    #[serde(skip_serializing_if = "Option::is_none")]
    notary_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cosign: Option<inspect_cosign::TagSignatures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notation: Option<inspect_notation::TagSignatures>,
    /// What could not be read for the tag.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<String>,
}

#[derive(Serialize)]
struct Combined {
    #[serde(skip_serializing_if = "Option::is_none")]
    notary: Option<Inspection>,
    tags: Vec<TagFormats>,
    /// Tags beyond [`MAX_TAGS`] whose registry signatures were not read.
    #[serde(skip_serializing_if = "is_zero")]
    not_shown: usize,
}

/// The tag `inspect --format FORMAT` shows alone: its repository, a reader, and what the
/// registry serves for it now.
pub(super) struct OneTag {
    pub(super) gun: String,
    pub(super) image: ImageRef,
    pub(super) registry: crate::registry::RegistryClient,
    pub(super) tag: String,
    pub(super) descriptor: crate::registry::ManifestDescriptor,
}

pub(super) async fn one_tag(
    g: &Global,
    image: &ImageRef,
    format: &str,
) -> Result<OneTag, CliError> {
    let tag = image.tag().ok_or_else(|| {
        CliError::new(format!(
            "inspect --format {format} needs IMAGE:TAG (the tag whose signatures to show)"
        ))
    })?;
    let repo = image.repository_only();
    let (settings, registry) = common::registry_reader(g, &repo)?;
    let descriptor = registry
        .resolve(&settings.image, tag)
        .await
        .map_err(|e| CliError::new(e.to_string()))?;
    Ok(OneTag {
        gun: repo.gun(),
        image: settings.image,
        registry,
        tag: tag.to_string(),
        descriptor,
    })
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// `inspect IMAGE[:TAG] --format F,G...` with two formats or more.
pub async fn inspect(
    g: &Global,
    a: &InspectArgs,
    r: &ImageRef,
    formats: &[Format],
) -> Result<(), CliError> {
    let with_notary = formats.contains(&Format::Notary);
    if a.check && !with_notary {
        return Err(CliError::new(
            "--check judges notary's roles: add notary to --format, or drop --check",
        )
        .with_code(2));
    }
    let spkis = inspect_cosign::public_keys(&a.keys)?;
    let (notary, readable) = if with_notary {
        let (n, readable) = super::inspect::notary(g, a, r).await?;
        (Some(n), readable)
    } else {
        (None, Ok(()))
    };
    let names: Vec<String> = match (r.tag(), &notary) {
        (Some(t), _) => vec![t.to_string()],
        (None, Some(n)) => n.tags.iter().map(|t| t.tag.clone()).collect(),
        (None, None) => {
            return Err(CliError::new(
                "--format cosign,notation needs IMAGE:TAG; or add notary to --format to show \
                 them for every tag notary lists",
            )
            .with_code(2));
        }
    };
    let not_shown = names.len().saturating_sub(MAX_TAGS);
    let repo = r.repository_only();
    let (settings, registry) = common::registry_reader(g, &repo)?;
    let (image, registry, spkis) = (&settings.image, &registry, &spkis);
    let notary_digest = |tag: &str| {
        (notary.as_ref()?.tags.iter())
            .find(|t| t.tag == tag)
            .map(|t| t.digest.clone())
    };
    if let (Some(first), true) = (
        names.first().and_then(|t| notary_digest(t)),
        formats.contains(&Format::Notation),
    ) {
        registry.learn_referrers_api(image, &first).await;
    }
    let tags: Vec<TagFormats> = futures::stream::iter(names.into_iter().take(MAX_TAGS))
        .map(|tag| {
            let notary_digest = notary_digest(&tag);
            async move {
                let mut row = TagFormats {
                    tag,
                    digest: None,
                    notary_digest,
                    cosign: None,
                    notation: None,
                    problems: vec![],
                };
                let d = match registry.resolve(image, &row.tag).await {
                    Ok(d) => d,
                    Err(e) => {
                        row.problems.push(e.to_string());
                        return row;
                    }
                };
                row.digest = Some(d.digest.clone());
                if formats.contains(&Format::Cosign) {
                    match inspect_cosign::read(registry, image, &row.tag, &d.digest, spkis).await {
                        Ok(c) => row.cosign = Some(c),
                        Err(e) => row.problems.push(format!("cosign: {e}")),
                    }
                }
                if formats.contains(&Format::Notation) {
                    match inspect_notation::read(registry, image, &row.tag, &d).await {
                        Ok(n) => row.notation = Some(n),
                        Err(e) => row.problems.push(format!("notation: {e}")),
                    }
                }
                row
            }
        })
        .buffered(AT_ONCE)
        .collect()
        .await;
    let out = Combined {
        notary,
        tags,
        not_shown,
    };
    if g.output == Output::Json {
        common::print_json(&out);
    } else {
        print_text(&repo.gun(), &out, formats, !spkis.is_empty());
    }
    match &out.notary {
        Some(n) => super::inspect::finish(a, n, readable),
        None => readable,
    }
}

fn print_text(gun: &str, out: &Combined, formats: &[Format], checked: bool) {
    if let Some(n) = &out.notary {
        super::inspect::print_text(n);
        outln!();
    }
    outln!("Signatures per tag of {gun}, by format\n");
    outln!(
        "{:<24} {:<19} {:<16} {:<26} NOTATION",
        "TAG",
        "DIGEST",
        "NOTARY",
        "COSIGN"
    );
    let short = |d: &str| d.chars().take(19).collect::<String>();
    for t in &out.tags {
        let notary = match (&t.notary_digest, &t.digest) {
            _ if !formats.contains(&Format::Notary) => "(not shown)".to_string(),
            (None, _) => "unsigned".to_string(),
            (Some(n), Some(d)) if n != d => format!("stale {}", short(n)),
            (Some(_), _) => "signed".to_string(),
        };
        let cosign = match &t.cosign {
            None => "-".to_string(),
            Some(c) => {
                let ours = c.signatures.iter().filter(|s| s.signs_digest).count();
                let verified = (c.signatures.iter())
                    .filter(|s| !s.verified_by.is_empty())
                    .count();
                if checked {
                    format!("{ours} signature(s), {verified} verify")
                } else {
                    format!("{ours} signature(s)")
                }
            }
        };
        let notation = match &t.notation {
            None => "-".to_string(),
            Some(n) => {
                let valid: Vec<_> = n.signatures.iter().filter(|s| s.valid).collect();
                match valid.first() {
                    None => format!("{} signature(s), none valid", n.signatures.len()),
                    Some(s) => format!(
                        "{} valid: {} until {}{}",
                        valid.len(),
                        s.certificate_subject.as_deref().unwrap_or("-"),
                        s.certificate_not_after.as_deref().unwrap_or("-"),
                        if valid.len() > 1 { ", ..." } else { "" }
                    ),
                }
            }
        };
        let digest = t.digest.as_deref().map_or("-".to_string(), short);
        outln!(
            "{:<24} {:<19} {:<16} {:<26} {}",
            t.tag,
            digest,
            notary,
            cosign,
            notation
        );
        for c in t.cosign.iter().flat_map(|c| &c.signatures) {
            outln!("    cosign   {} {}", c.layer, c.state(checked));
        }
        for n in t.notation.iter().flat_map(|n| &n.signatures) {
            outln!("    notation {} {}", n.manifest, n.state());
        }
        for p in &t.problems {
            outln!("    problem: {p}");
        }
    }
    if out.not_shown > 0 {
        outln!(
            "... and {} more tags whose cosign and Notation signatures were not read: give \
             IMAGE:TAG",
            out.not_shown
        );
    }
}
