//! `spec.dryRun` in a resource: the run stops after its plan, and the plan goes into
//! `status.plannedChanges` (bounded) with Ready False, reason `DryRun`. The CLI's `--dry-run`
//! prints the same plan ([`crate::dry_run`]); this is its status form.

use std::collections::BTreeSet;

use jiff::Timestamp;

use crate::api::{
    ConditionStatus, GoDuration, MAX_PLANNED_ENTRIES, MAX_PLANNED_NAME, MAX_PLANNED_WARNING,
    MAX_PLANNED_WARNINGS, PlannedChanges, PlannedRoleChange, PlannedTag, READY, SignedImageStatus,
    Time, reasons, set_condition,
};
use crate::dry_run::DryRun;
use crate::failure::Failure;
use crate::outcome::Done;
use crate::request::{EngineEvent, EventType, Outcome, Requests};
use crate::settings::Settings;
use crate::{schedule, status};

/// `s` cut to `max` characters, ending in `…` when cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl PlannedChanges {
    /// The status form of `plan`: at most [`MAX_PLANNED_ENTRIES`] roles and tags listed, in the
    /// plan's order, and [`MAX_PLANNED_WARNINGS`] warnings; the rest counted in `omitted`.
    /// `validity` is the lifetime every re-signed role gets from its publish.
    pub fn of(plan: &DryRun, validity: jiff::SignedDuration) -> PlannedChanges {
        let valid_for = GoDuration(validity).to_string();
        let mut budget = MAX_PLANNED_ENTRIES;
        let mut omitted = 0u64;
        let mut roles = Vec::new();
        for r in &plan.roles {
            if budget == 0 {
                omitted += 1 + (r.set.len() + r.remove.len()) as u64;
                continue;
            }
            budget -= 1;
            let add: Vec<PlannedTag> = (r.set.iter().take(budget))
                .map(|t| PlannedTag {
                    tag: clip(&t.tag, MAX_PLANNED_NAME),
                    digest: clip(&t.digest, 71),
                    size: t.size,
                })
                .collect();
            budget -= add.len();
            let remove: Vec<String> = (r.remove.iter().take(budget))
                .map(|t| clip(t, MAX_PLANNED_NAME))
                .collect();
            budget -= remove.len();
            omitted += (r.set.len() - add.len() + r.remove.len() - remove.len()) as u64;
            roles.push(PlannedRoleChange {
                role: clip(&r.role, MAX_PLANNED_NAME),
                action: r.action.to_string(),
                version: r.version,
                new_version: r.new_version,
                expires: r.expires.map(Time),
                valid_for: valid_for.clone(),
                add,
                remove,
            });
        }
        let distinct = |f: fn(&crate::dry_run::PlannedRole) -> Vec<&String>| {
            (plan.roles.iter().flat_map(f))
                .collect::<BTreeSet<_>>()
                .len() as u64
        };
        let warnings: Vec<String> = (plan.warnings.iter().take(MAX_PLANNED_WARNINGS))
            .map(|w| clip(w, MAX_PLANNED_WARNING))
            .collect();
        omitted += (plan.warnings.len() - warnings.len()) as u64;
        PlannedChanges {
            roles_to_resign: plan.roles.len() as u64,
            roles,
            tags_to_sign: distinct(|r| r.set.iter().map(|t| &t.tag).collect()),
            tags_to_remove: distinct(|r| r.remove.iter().collect()),
            signatures_to_make: plan.signatures.len() as u64,
            omitted,
            warnings,
        }
    }

    /// Ready's message while dry-running: what the plan holds and how to publish it.
    pub fn message(&self) -> String {
        if self.roles.is_empty() && self.omitted == 0 && self.signatures_to_make == 0 {
            return "dry run: nothing to publish, every selected tag is signed and every held \
                    role is fresh; set spec.dryRun to false to have trustkeeper keep it so"
                .to_string();
        }
        let roles = self.roles_to_resign;
        if roles == 0 && self.omitted == 0 && self.tags_to_sign + self.tags_to_remove == 0 {
            // Registry formats alone (a spec without notary, or notary already as asked).
            return format!(
                "dry run: {} in the registry formats, nothing pushed; set spec.dryRun to false \
                 to push them (the plan is in status.plannedChanges)",
                plural(
                    self.signatures_to_make,
                    "signature to push",
                    "signatures to push"
                )
            );
        }
        let mut m = format!(
            "dry run: {} planned ({} to sign, {} to remove, {} to re-sign), nothing published; \
             set spec.dryRun to false to publish them (the plan is in status.plannedChanges)",
            plural(
                self.tags_to_sign + self.tags_to_remove + roles,
                "change",
                "changes"
            ),
            plural(self.tags_to_sign, "tag", "tags"),
            self.tags_to_remove,
            plural(roles, "role", "roles"),
        );
        if self.signatures_to_make > 0 {
            m.push_str(&format!(
                "; {} in the registry formats",
                plural(
                    self.signatures_to_make,
                    "signature to push",
                    "signatures to push"
                )
            ));
        }
        for w in &self.warnings {
            m.push_str("; warning: ");
            m.push_str(w);
        }
        m
    }
}

/// The status of a dry run: what the run read (tags, roles, trust: as a run that found
/// nothing to do records them), Ready False/DryRun, and the plan.
pub fn dry_run_status(
    prev: Option<&SignedImageStatus>,
    generation: Option<i64>,
    seen: &status::Observed<'_>,
    planned: PlannedChanges,
    now: Timestamp,
) -> SignedImageStatus {
    let mut s = status::success(prev, generation, seen, &[], false, now);
    // `success` set Ready True; Ready is decided from the previous conditions instead, so that
    // its transition time stays put while the dry run goes on.
    s.conditions = prev.map(|p| p.conditions.clone()).unwrap_or_default();
    set_condition(
        &mut s.conditions,
        READY,
        ConditionStatus::False,
        reasons::DRY_RUN,
        &planned.message(),
        generation,
        now,
    );
    s.planned_changes = Some(planned);
    s
}

/// The outcome of a run under `spec.dryRun` (or `RunOptions::dry_run`): the plan in the status,
/// an Event when Ready changes, the next run at the next poll (a due renewal stays planned, not
/// retried every second).
pub(crate) fn outcome(
    prev: Option<&SignedImageStatus>,
    gen_: Option<i64>,
    settings: &Settings,
    result: Result<Done, Failure>,
    now: Timestamp,
    jitter: f64,
) -> Outcome {
    let done = match result {
        Ok(d) => d,
        Err(f) => return Outcome::failed(prev, gen_, f, now, jitter),
    };
    let plan = DryRun::of(&settings.gun, &done.repo, &done.plan).with_signatures(
        crate::without_notary::signed_formats(&done.cosign, &done.notation),
    );
    let planned = PlannedChanges::of(&plan, settings.validity);
    let seen = status::Observed {
        repo: &done.repo,
        desired: &done.desired,
        key_ids: &done.key_ids,
        renew_before: settings.renew_before,
        trust: (&done.trust).into(),
    };
    let st = dry_run_status(prev, gen_, &seen, planned, now);
    planned_outcome(prev, st, settings, now, jitter)
}

/// [`outcome`] for a spec without notary: the plan is the signatures the registry formats
/// would push; what the last run recorded as signed stays in the status.
pub(crate) fn registry_outcome(
    prev: Option<&SignedImageStatus>,
    gen_: Option<i64>,
    settings: &Settings,
    result: Result<crate::without_notary::Signed, Failure>,
    now: Timestamp,
    jitter: f64,
) -> Outcome {
    let done = match result {
        Ok(d) => d,
        Err(f) => return Outcome::failed(prev, gen_, f, now, jitter),
    };
    let plan = DryRun {
        gun: settings.gun.clone(),
        roles: vec![],
        warnings: vec![],
        signatures: vec![],
    }
    .with_signatures(crate::without_notary::signed_formats(
        &done.cosign,
        &done.notation,
    ));
    let planned = PlannedChanges::of(&plan, settings.validity);
    let mut st = prev.cloned().unwrap_or_default();
    st.observed_generation = gen_;
    set_condition(
        &mut st.conditions,
        READY,
        ConditionStatus::False,
        reasons::DRY_RUN,
        &planned.message(),
        gen_,
        now,
    );
    st.planned_changes = Some(planned);
    planned_outcome(prev, st, settings, now, jitter)
}

/// A dry run's status as an outcome: an Event when Ready changes, the next run at the next
/// poll (a due renewal stays planned, not retried every second).
fn planned_outcome(
    prev: Option<&SignedImageStatus>,
    st: SignedImageStatus,
    settings: &Settings,
    now: Timestamp,
    jitter: f64,
) -> Outcome {
    let events = match st.ready() {
        Some(c) if status::ready_transition(prev, &st) => vec![EngineEvent {
            type_: EventType::Normal,
            reason: c.reason.clone(),
            note: c.message.chars().take(1000).collect(),
        }],
        _ => vec![],
    };
    Outcome {
        status: st,
        events,
        requeue_at: Some(schedule::next_after_success(
            now,
            settings.interval,
            None,
            jitter,
        )),
        publishes: 0,
        renewed: vec![],
        signed: vec![],
        signed_formats: vec![],
        failure_reason: None,
        requests: Requests::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TrustStatus;
    use crate::dry_run::{PlannedRole, PlannedTarget};
    use crate::model::RepoView;
    use jiff::SignedDuration;
    use std::collections::BTreeMap;

    fn role(name: &str, action: &'static str, tags: usize, remove: usize) -> PlannedRole {
        PlannedRole {
            role: name.into(),
            action,
            version: 7,
            new_version: 8,
            expires: Some("2027-01-01T00:00:00Z".parse().unwrap()),
            new_expires: Timestamp::now(),
            set: (0..tags)
                .map(|i| PlannedTarget {
                    tag: format!("v{i}"),
                    digest: format!("sha256:{}", "a".repeat(64)),
                    size: 500 + i as u64,
                })
                .collect(),
            remove: (0..remove).map(|i| format!("old{i}")).collect(),
        }
    }

    fn validity() -> SignedDuration {
        SignedDuration::from_hours(26280)
    }

    #[test]
    fn a_huge_plan_is_listed_up_to_the_bound_and_the_rest_counted() {
        let plan = DryRun {
            gun: "r.example/app".into(),
            roles: vec![
                role("targets/releases", "sign", 10_000, 300),
                role("targets", "renew", 0, 0),
            ],
            warnings: vec!["w".repeat(5000); 40],
            signatures: vec![],
        };
        let p = PlannedChanges::of(&plan, validity());
        let listed: usize = p.roles.len()
            + p.roles
                .iter()
                .map(|r| r.add.len() + r.remove.len())
                .sum::<usize>();
        assert_eq!(listed, MAX_PLANNED_ENTRIES);
        assert_eq!(p.roles.len(), 1, "the second role is past the bound");
        assert_eq!(p.roles[0].add.len(), MAX_PLANNED_ENTRIES - 1);
        assert!(p.roles[0].remove.is_empty());
        // Every entry is either listed or counted.
        assert_eq!(
            p.omitted as usize,
            10_000 + 300 + 2 - MAX_PLANNED_ENTRIES + 40 - 16
        );
        assert_eq!(
            (p.tags_to_sign, p.tags_to_remove, p.roles_to_resign),
            (10_000, 300, 2)
        );
        assert_eq!(p.warnings.len(), MAX_PLANNED_WARNINGS);
        assert!(
            p.warnings
                .iter()
                .all(|w| w.chars().count() == MAX_PLANNED_WARNING)
        );
        let json = serde_json::to_vec(&p).unwrap();
        assert!(json.len() < 64 * 1024, "{} bytes", json.len());
        assert_eq!(p.roles[0].valid_for, "26280h");
        assert!(
            p.message().starts_with(
                "dry run: 10302 changes planned (10000 tags to sign, 300 to remove, 2 roles to \
                 re-sign), nothing published; set spec.dryRun to false"
            ),
            "{}",
            p.message()
        );
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary() {
        let mut r = role(&"é".repeat(400), "sign", 1, 0);
        r.set[0].tag = "ü".repeat(300);
        let plan = DryRun {
            gun: "g".into(),
            roles: vec![r],
            warnings: vec![],
            signatures: vec![],
        };
        let p = PlannedChanges::of(&plan, validity());
        assert_eq!(p.roles[0].role.chars().count(), MAX_PLANNED_NAME);
        assert!(p.roles[0].role.ends_with('…'));
        assert_eq!(p.roles[0].add[0].tag.chars().count(), MAX_PLANNED_NAME);
    }

    fn seen<'a>(
        repo: &'a RepoView,
        desired: &'a BTreeMap<String, crate::model::Manifest>,
    ) -> status::Observed<'a> {
        status::Observed {
            repo,
            desired,
            key_ids: &[],
            renew_before: SignedDuration::from_hours(4560),
            trust: TrustStatus::default(),
        }
    }

    #[test]
    fn an_unchanged_plan_is_the_same_status_and_a_real_run_clears_it() {
        let (repo, desired) = (RepoView { roles: vec![] }, BTreeMap::new());
        let t0: Timestamp = "2026-12-03T10:00:00Z".parse().unwrap();
        // The plan as a later poll computes it: new expiries moved with the clock.
        let plan_at = |t: Timestamp| {
            let mut r = role("targets/releases", "sign", 1, 0);
            r.new_expires = t + validity();
            DryRun {
                gun: "g".into(),
                roles: vec![r],
                warnings: vec![],
                signatures: vec![],
            }
        };
        let first = dry_run_status(
            None,
            Some(2),
            &seen(&repo, &desired),
            PlannedChanges::of(&plan_at(t0), validity()),
            t0,
        );
        let c = first.ready().unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", reasons::DRY_RUN)
        );
        assert_eq!(
            first.planned_changes.as_ref().unwrap().roles[0].new_version,
            8
        );
        let later = t0 + SignedDuration::from_mins(5);
        let again = dry_run_status(
            Some(&first),
            Some(2),
            &seen(&repo, &desired),
            PlannedChanges::of(&plan_at(later), validity()),
            later,
        );
        assert_eq!(
            again, first,
            "an unchanged plan five minutes later is no write"
        );

        // dryRun false: the real run's status has no plan, and Ready flips.
        let published = status::success(
            Some(&again),
            Some(3),
            &seen(&repo, &desired),
            &[],
            true,
            later,
        );
        assert_eq!(published.planned_changes, None);
        assert_eq!(published.ready().unwrap().last_transition_time.0, later);
        let (failed, _) = status::failure(
            Some(&first),
            Some(2),
            reasons::NOTARY_UNREACHABLE,
            "down",
            later,
            0.0,
        );
        assert_eq!(
            failed.planned_changes, None,
            "a failure keeps no stale plan"
        );

        // From Ready True, the dry run flips Ready once, then keeps its transition time.
        let dry = dry_run_status(
            Some(&published),
            Some(4),
            &seen(&repo, &desired),
            PlannedChanges::default(),
            later + SignedDuration::from_mins(5),
        );
        let c = dry.ready().unwrap();
        assert_eq!(
            c.last_transition_time.0,
            later + SignedDuration::from_mins(5)
        );
        assert!(
            c.message.starts_with("dry run: nothing to publish"),
            "{}",
            c.message
        );
    }
}
