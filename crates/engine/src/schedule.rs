//! When to run next: the next poll or the earliest renewal, whichever comes first; after a
//! failure, exponential backoff with jitter, capped. Pure: the caller passes the clock and the
//! random draw.

use jiff::{SignedDuration, Timestamp};

/// First retry delay after a failure.
pub const BACKOFF_BASE: SignedDuration = SignedDuration::from_secs(60);
/// Longest delay between retries.
pub const BACKOFF_CAP: SignedDuration = SignedDuration::from_secs(3600);

/// Next run after a success. `jitter` in [0, 1) spreads polls of many resources over ±10% of the
/// interval, so that they do not hit the registry in step.
pub fn next_after_success(
    now: Timestamp,
    interval: SignedDuration,
    renewal: Option<Timestamp>,
    jitter: f64,
) -> Timestamp {
    let factor = 0.9 + 0.2 * jitter.clamp(0.0, 1.0);
    let poll = now + SignedDuration::from_secs_f64(interval.as_secs_f64() * factor);
    match renewal {
        Some(r) if r < poll => r.max(now),
        _ => poll,
    }
}

/// Delay before retry number `failures` (1 = first failure): base·2^(n-1), capped, scaled by a
/// jitter in [0.5, 1.0) ("equal jitter") so that failing resources do not retry in step.
pub fn backoff(failures: u32, jitter: f64) -> SignedDuration {
    let exp = failures.saturating_sub(1).min(16);
    let raw = BACKOFF_BASE.as_secs_f64() * f64::from(1u32 << exp);
    let capped = raw.min(BACKOFF_CAP.as_secs_f64());
    SignedDuration::from_secs_f64(capped * (0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
}

/// First bound of the wait after a lost publish race (a version conflict).
pub const CONFLICT_BACKOFF_BASE: std::time::Duration = std::time::Duration::from_millis(100);
/// Largest bound of that wait.
pub const CONFLICT_BACKOFF_CAP: std::time::Duration = std::time::Duration::from_secs(2);

/// Wait before refetching after the `lost`-th lost publish race: uniform in [0, bound) with the
/// bound doubling from the base up to the cap ("full jitter"), so that writers that collided
/// spread out instead of colliding again.
pub fn conflict_backoff(lost: u32, jitter: f64) -> std::time::Duration {
    let exp = lost.saturating_sub(1).min(16);
    let bound = CONFLICT_BACKOFF_BASE
        .saturating_mul(1u32 << exp)
        .min(CONFLICT_BACKOFF_CAP);
    bound.mul_f64(jitter.clamp(0.0, 1.0))
}

/// Next run after a failure.
pub fn next_after_failure(now: Timestamp, failures: u32, jitter: f64) -> Timestamp {
    now + backoff(failures, jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn poll_or_renewal_whichever_first() {
        let five = SignedDuration::from_mins(5);
        assert_eq!(next_after_success(now(), five, None, 0.5), now() + five);
        let soon = now() + SignedDuration::from_mins(2);
        assert_eq!(next_after_success(now(), five, Some(soon), 0.5), soon);
        let overdue = now() - SignedDuration::from_mins(2);
        assert_eq!(next_after_success(now(), five, Some(overdue), 0.5), now());
        // Jitter stays within ±10%.
        let lo = next_after_success(now(), five, None, 0.0);
        let hi = next_after_success(now(), five, None, 0.999);
        assert_eq!(lo, now() + SignedDuration::from_secs(270));
        assert!(
            hi < now() + SignedDuration::from_secs(330)
                && hi > now() + SignedDuration::from_secs(329)
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let secs: Vec<i64> = (1..=9).map(|n| backoff(n, 0.999_999).as_secs()).collect();
        assert_eq!(secs, [59, 119, 239, 479, 959, 1919, 3599, 3599, 3599]);
        assert_eq!(backoff(1, 0.0).as_secs(), 30);
        assert_eq!(backoff(u32::MAX, 0.0).as_secs(), 1800);
    }

    #[test]
    fn conflict_backoff_spreads_and_caps() {
        use std::time::Duration;
        assert_eq!(conflict_backoff(1, 0.0), Duration::ZERO);
        assert_eq!(conflict_backoff(1, 0.5), Duration::from_millis(50));
        assert_eq!(conflict_backoff(3, 0.5), Duration::from_millis(200));
        assert_eq!(conflict_backoff(10, 0.5), Duration::from_secs(1));
        assert_eq!(conflict_backoff(u32::MAX, 1.0), CONFLICT_BACKOFF_CAP);
    }

    #[test]
    fn failure_retry_after_backoff() {
        let t = next_after_failure(now(), 3, 0.0);
        assert_eq!(t, now() + SignedDuration::from_secs(120));
    }
}
