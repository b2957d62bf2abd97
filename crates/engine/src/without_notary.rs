//! A run whose `spec.formats` lacks `notary` (the off-ramp, after the cut-over): no trust data
//! is read and no notary server is needed. The registry's tags are resolved, the key loaded,
//! and the registry formats signed; the status says what is signed in which format.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::api::{
    ConditionStatus, FormatSignature, READY, SignatureFormat, SignedImageStatus, Time, reasons,
    set_condition,
};
use crate::failure::Failure;
use crate::keys::load_keys;
use crate::model::{Manifest, RepoView};
use crate::progress::{KEYS_DONE, NOTARY_DONE, Progress, REGISTRY_DONE};
use crate::request::{EngineEvent, EventType, Outcome, ReconcileRequest, Requests};
use crate::resolve::{check_new_manifests, resolve_tags};
use crate::settings::Settings;
use crate::{Engine, schedule};
use trustkeeper_formats::cosign_sign::CosignSigned;

/// The most entries `status.signatures` holds: a glob may select many tags, and the status
/// must stay far below the API server's object size limit.
pub const MAX_STATUS_SIGNATURES: usize = 1024;

/// What a run without notary signed.
pub(crate) struct Signed {
    pub(crate) desired: BTreeMap<String, Manifest>,
    pub(crate) cosign: Vec<CosignSigned>,
    pub(crate) cosign_key_id: Option<String>,
    pub(crate) notation: Vec<trustkeeper_formats::notation_sign::NotationSigned>,
    pub(crate) chain: Option<crate::notation::Chain>,
}

impl Engine {
    pub(crate) async fn attempt_without_notary(
        &self,
        req: &ReconcileRequest<'_>,
        settings: &Settings,
        registry: &trustkeeper_registry::RegistryClient,
        progress: &Progress,
        now: Timestamp,
        dry_run: bool,
    ) -> Result<Signed, Failure> {
        // Not waited for: a deadline names the registry alone.
        progress.mark(NOTARY_DONE);
        let lookup: Vec<String> = (req.spec.tags.iter())
            .filter(|t| !req.pinned.contains_key(*t))
            .cloned()
            .collect();
        let resolve = async {
            let r = resolve_tags(registry, &settings.image, &lookup).await;
            progress.mark(REGISTRY_DONE);
            r
        };
        let keys = async {
            let k = load_keys(&req.credentials).await;
            progress.mark(KEYS_DONE);
            k
        };
        let (keys, resolved) = tokio::try_join!(keys, resolve)?;
        // Without trust data there is no earlier signature to excuse a missing tag: it is an
        // error, as a tag that was never signed is for notary.
        if let Some(tag) = resolved.absent.iter().next() {
            return Err(Failure::new(
                reasons::TAG_NOT_FOUND,
                format!(
                    "tag {tag} is not in the registry ({}): push it, or remove it from the tags",
                    settings.image.gun()
                ),
            ));
        }
        // What the last run's status lists as signed in every format (same tag, same digest)
        // was checked then: the steady state costs the formats' own "ours is there" reads.
        let wanted: Vec<SignatureFormat> = (req.spec.formats.iter())
            .filter(|f| **f != SignatureFormat::Notary)
            .copied()
            .collect();
        let listed = req.previous.map_or(&[][..], |p| &p.signatures[..]);
        let fresh: BTreeMap<String, Manifest> = (resolved.desired.iter())
            .filter(|(tag, m)| {
                let d = format!("sha256:{}", m.sha256);
                !(wanted.iter()).all(|f| {
                    (listed.iter()).any(|s| &s.tag == *tag && s.digest == d && s.format == *f)
                })
            })
            .map(|(t, m)| (t.clone(), m.clone()))
            .collect();
        check_new_manifests(registry, &settings.image, &fresh, &RepoView::default()).await?;
        let mut desired = resolved.desired;
        desired.extend(req.pinned.clone());
        let crate::registry_formats::RegistrySigned {
            cosign,
            cosign_key_id,
            notation,
            chain,
        } = crate::registry_formats::sign(
            req,
            registry,
            &settings.image,
            &desired,
            &keys,
            now,
            dry_run,
        )
        .await?;
        Ok(Signed {
            notation,
            chain,
            desired,
            cosign,
            cosign_key_id,
        })
    }
}

/// `status.signatures` for the registry formats: one entry per selected tag and format, in tag
/// order, at most [`MAX_STATUS_SIGNATURES`].
pub(crate) fn signatures(
    desired: &BTreeMap<String, Manifest>,
    cosign: &[CosignSigned],
    cosign_key_id: &Option<String>,
) -> Vec<FormatSignature> {
    let mut out = Vec::new();
    for (tag, m) in desired {
        let digest = format!("sha256:{}", m.sha256);
        if cosign.iter().any(|c| c.digest == digest) {
            out.push(FormatSignature {
                tag: tag.clone(),
                digest: digest.clone(),
                format: SignatureFormat::Cosign,
                signer: cosign_key_id.clone().unwrap_or_default(),
                until: None,
                signature: None,
            });
        }
    }
    out.truncate(MAX_STATUS_SIGNATURES);
    out
}

/// (digest, format) of every signature pushed in this run.
pub(crate) fn signed_formats(
    cosign: &[CosignSigned],
    notation: &[trustkeeper_formats::notation_sign::NotationSigned],
) -> Vec<(String, SignatureFormat)> {
    let c =
        (cosign.iter().filter(|c| c.added)).map(|c| (c.digest.clone(), SignatureFormat::Cosign));
    let n = (notation.iter().filter(|n| n.added))
        .map(|n| (n.digest.clone(), SignatureFormat::Notation));
    c.chain(n).collect()
}

/// Events of the cosign signatures pushed in this run.
pub(crate) fn cosign_events(cosign: &[CosignSigned]) -> Vec<EngineEvent> {
    (cosign.iter().filter(|c| c.added))
        .map(|c| EngineEvent {
            type_: EventType::Normal,
            reason: "SignedCosign".into(),
            note: format!(
                "signed {} in cosign ({} signatures on {})",
                c.digest, c.signatures, c.tag
            ),
        })
        .collect()
}

impl Outcome {
    /// The outcome of a run without notary: no roles, no trust anchor, the tags signed in
    /// every registry format the spec lists.
    pub(crate) fn of_registry_run(
        prev: Option<&SignedImageStatus>,
        gen_: Option<i64>,
        settings: &Settings,
        formats: &[SignatureFormat],
        result: Result<Signed, Failure>,
        now: Timestamp,
        jitter: f64,
    ) -> Outcome {
        let done = match result {
            Ok(d) => d,
            Err(f) => return Outcome::failed(prev, gen_, f, now, jitter),
        };
        let prev_ready = prev.and_then(SignedImageStatus::ready);
        let mut s = prev.cloned().unwrap_or_default();
        s.observed_generation = gen_;
        s.planned_changes = None;
        // What notary held is not this resource's any more: no signed tags, roles or trust.
        s.signed_tags.clear();
        s.roles.clear();
        s.earliest_expiry = None;
        s.trust = None;
        s.next_sync_time = None;
        s.failed_attempts = 0;
        s.signatures = signatures(&done.desired, &done.cosign, &done.cosign_key_id);
        s.signatures.extend(crate::notation::signatures(
            &done.desired,
            &done.notation,
            done.chain.as_ref(),
        ));
        s.signatures
            .sort_by(|a, b| (&a.tag, a.format as u8).cmp(&(&b.tag, b.format as u8)));
        s.signatures.truncate(MAX_STATUS_SIGNATURES);
        let registry_formats: Vec<SignatureFormat> = (formats.iter())
            .filter(|f| **f != SignatureFormat::Notary)
            .copied()
            .collect();
        let good = (done.desired.keys())
            .filter(|t| {
                (registry_formats.iter())
                    .all(|f| s.signatures.iter().any(|x| &x.tag == *t && x.format == *f))
            })
            .count();
        s.tag_summary = Some(format!("{good}/{}", done.desired.len()));
        crate::notation::warn_in_ready(&mut s, done.chain.as_ref(), settings, now);
        let mut events = cosign_events(&done.cosign);
        events.extend(crate::notation::events(&done.notation));
        if !events.is_empty() {
            s.last_publish_time = Some(Time(now));
        }
        let names: Vec<String> = (registry_formats.iter())
            .map(|f| format!("{f:?}").to_lowercase())
            .collect();
        let message = format!(
            "{good}/{} selected tags signed in {} (no notary: formats lacks it)",
            done.desired.len(),
            names.join(", ")
        );
        set_condition(
            &mut s.conditions,
            READY,
            ConditionStatus::True,
            reasons::SIGNED,
            &message,
            gen_,
            now,
        );
        if prev_ready.is_some_and(|c| c.is(ConditionStatus::False)) && events.is_empty() {
            events.push(EngineEvent {
                type_: EventType::Normal,
                reason: "Recovered".into(),
                note: "every selected tag is signed again".into(),
            });
        }
        let mut signed: Vec<String> = (done.desired.iter())
            .filter(|(_, m)| {
                let d = format!("sha256:{}", m.sha256);
                (done.cosign.iter()).any(|c| c.added && c.digest == d)
                    || (done.notation.iter()).any(|c| c.added && c.digest == d)
            })
            .map(|(t, _)| t.clone())
            .collect();
        signed.sort();
        Outcome {
            status: s,
            events,
            requeue_at: Some(schedule::next_after_success(
                now,
                settings.interval,
                crate::notation::next_due(done.chain.as_ref(), settings, now),
                jitter,
            )),
            publishes: 0,
            renewed: vec![],
            signed,
            signed_formats: signed_formats(&done.cosign, &done.notation),
            failure_reason: None,
            requests: Requests::default(),
        }
    }
}
