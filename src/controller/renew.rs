//! "Renew now": the annotations that ask for a reconcile now (or a forced re-sign of every role
//! the key holds), as Flux's `reconcile.fluxcd.io/requestedAt` and `cmctl renew` do. The status
//! echoes the request handled last (`status.lastHandledRenewRequest`), so a script can wait.

use std::hash::{Hash, Hasher};

use kube::ResourceExt;

use crate::api::{SignedImage, SignedImageStatus};

/// Any new value asks for a reconcile now: the time it was asked (RFC 3339) or any unique token.
pub const RENEW_REQUESTED_AT: &str = "trustkeeper.dev/renew-requested-at";
/// `force`: the request of [`RENEW_REQUESTED_AT`] also re-signs every role the key holds, due or
/// not. Read with that request; changing it alone asks for nothing.
pub const RENEW_MODE: &str = "trustkeeper.dev/renew-mode";
/// The one value of [`RENEW_MODE`].
pub const MODE_FORCE: &str = "force";
/// The longest request value accepted: it is copied into the status.
pub const MAX_REQUEST_LEN: usize = 128;

/// A request not handled yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewRequest {
    pub token: String,
    pub force: bool,
}

/// What the annotations of a SignedImage ask for, given the status written last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Renew {
    /// No annotation, or its value was handled already.
    None,
    Pending(RenewRequest),
    /// A value that cannot be handled, with the message saying what to do (a Warning Event).
    Invalid(String),
}

/// Checks a request value (also what `trustkeeper renew` sets).
pub fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() || token.len() > MAX_REQUEST_LEN {
        return Err(format!(
            "the {RENEW_REQUESTED_AT} annotation is {} bytes long; it must be 1 to \
             {MAX_REQUEST_LEN}: set the current time, e.g. `kubectl annotate --overwrite \
             signedimage NAME {RENEW_REQUESTED_AT}=\"$(date -u +%FT%TZ)\"`",
            token.len()
        ));
    }
    Ok(())
}

/// The pending request of `obj`, if any.
pub fn read(obj: &SignedImage, previous: Option<&SignedImageStatus>) -> Renew {
    let annotations = obj.annotations();
    let Some(token) = annotations.get(RENEW_REQUESTED_AT) else {
        return Renew::None;
    };
    if previous.and_then(|s| s.last_handled_renew_request.as_deref()) == Some(token.as_str()) {
        return Renew::None;
    }
    if let Err(message) = check_token(token) {
        return Renew::Invalid(message);
    }
    let force = match annotations.get(RENEW_MODE).map(String::as_str) {
        None | Some("") => false,
        Some(MODE_FORCE) => true,
        Some(other) => {
            let shown: String = other.chars().take(32).collect();
            return Renew::Invalid(format!(
                "the {RENEW_MODE} annotation is {shown:?}, which trustkeeper does not know: set \
                 it to {MODE_FORCE:?} to re-sign every role the key holds, or remove it for a \
                 plain reconcile; the request {token:?} waits until then"
            ));
        }
    };
    Renew::Pending(RenewRequest {
        token: token.clone(),
        force,
    })
}

/// The watch predicate beside `metadata.generation`: a new request value gets through, our own
/// status writes (which change neither) do not. `None` when there is no request, so that
/// combined with the generation it hashes as the generation alone would.
pub fn request_predicate(obj: &SignedImage) -> Option<u64> {
    let token = obj.annotations().get(RENEW_REQUESTED_AT)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    token.hash(&mut h);
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::{Predicate, predicates};

    fn image(annotations: &[(&str, &str)]) -> SignedImage {
        let mut si: SignedImage = serde_json::from_value(serde_json::json!({
            "apiVersion": "trustkeeper.dev/v1alpha1", "kind": "SignedImage",
            "metadata": {"name": "app", "namespace": "ns", "generation": 3},
            "spec": {"image": "r.example/app", "signingKey": {"secretRef": {"name": "s"}}}
        }))
        .unwrap();
        for (k, v) in annotations {
            si.annotations_mut().insert(k.to_string(), v.to_string());
        }
        si
    }

    fn handled(token: &str) -> SignedImageStatus {
        SignedImageStatus {
            last_handled_renew_request: Some(token.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_new_value_is_pending_until_the_status_echoes_it() {
        let si = image(&[(RENEW_REQUESTED_AT, "2026-12-03T17:00:00Z")]);
        let want = Renew::Pending(RenewRequest {
            token: "2026-12-03T17:00:00Z".into(),
            force: false,
        });
        assert_eq!(read(&si, None), want);
        assert_eq!(read(&si, Some(&handled("earlier"))), want);
        assert_eq!(
            read(&si, Some(&handled("2026-12-03T17:00:00Z"))),
            Renew::None
        );
        assert_eq!(read(&image(&[]), None), Renew::None);
        // The mode alone asks for nothing.
        assert_eq!(read(&image(&[(RENEW_MODE, MODE_FORCE)]), None), Renew::None);
    }

    #[test]
    fn force_mode_and_refusals() {
        let forced = image(&[(RENEW_REQUESTED_AT, "t1"), (RENEW_MODE, "force")]);
        assert!(matches!(read(&forced, None), Renew::Pending(r) if r.force));
        let typo = image(&[(RENEW_REQUESTED_AT, "t1"), (RENEW_MODE, "froce")]);
        let Renew::Invalid(m) = read(&typo, None) else {
            panic!("a mode typo is refused")
        };
        assert!(m.contains("\"froce\"") && m.contains("\"force\""), "{m}");
        let long = "x".repeat(MAX_REQUEST_LEN + 1);
        let Renew::Invalid(m) = read(&image(&[(RENEW_REQUESTED_AT, &long)]), None) else {
            panic!("an over-long request is refused")
        };
        assert!(m.contains("129 bytes") && m.contains("date -u"), "{m}");
        assert!(!m.contains(&long));
        assert!(matches!(
            read(&image(&[(RENEW_REQUESTED_AT, "")]), None),
            Renew::Invalid(_)
        ));
    }

    #[test]
    fn the_predicate_changes_with_the_request_and_the_generation_only() {
        let p = predicates::generation.combine(request_predicate);
        let plain = image(&[]);
        let mut status_written = plain.clone();
        status_written.status = Some(handled("x"));
        status_written.metadata.resource_version = Some("99".into());
        assert_eq!(
            p.hash_property(&plain),
            p.hash_property(&status_written),
            "a status write passes no event"
        );
        let a = image(&[(RENEW_REQUESTED_AT, "a")]);
        let b = image(&[(RENEW_REQUESTED_AT, "b")]);
        assert_ne!(p.hash_property(&plain), p.hash_property(&a));
        assert_ne!(p.hash_property(&a), p.hash_property(&b));
        let mut a_other = a.clone();
        a_other
            .annotations_mut()
            .insert("unrelated".into(), "x".into());
        assert_eq!(p.hash_property(&a), p.hash_property(&a_other));
        let mut next_gen = a.clone();
        next_gen.metadata.generation = Some(4);
        assert_ne!(p.hash_property(&a), p.hash_property(&next_gen));
    }
}
