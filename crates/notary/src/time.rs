//! Metadata times: readers accept any RFC 3339 offset and 0–9 fraction digits; writers emit
//! UTC whole seconds with `Z` (anything else makes notary-server re-encode differently).

use jiff::{SignedDuration, Timestamp};

/// Default lifetimes (notary-v1.md §9.1; a year = 365 days).
pub const ROOT_LIFETIME: SignedDuration = SignedDuration::from_hours(24 * 365 * 10);
pub const TARGETS_LIFETIME: SignedDuration = SignedDuration::from_hours(24 * 365 * 3);
pub const SNAPSHOT_LIFETIME: SignedDuration = SignedDuration::from_hours(24 * 365 * 3);

/// Parses an `expires` value.
pub fn parse(s: &str) -> Option<Timestamp> {
    s.parse::<Timestamp>().ok()
}

/// The writer form: `YYYY-MM-DDTHH:MM:SSZ` in UTC, fraction dropped.
pub fn format(t: Timestamp) -> String {
    let whole = Timestamp::from_second(t.as_second()).unwrap_or(t);
    whole.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Go's `time.Time.String()`-like form used in notary's messages (`Wed Nov 25 20:02:28 UTC 2026`).
pub fn display(t: Timestamp) -> String {
    t.strftime("%a %b %e %H:%M:%S UTC %Y").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_forms() {
        for s in [
            "2029-11-24T05:36:32.549305584Z",
            "2029-11-24T05:36:22.11021216Z",
            "2029-11-24T05:36:32Z",
            "2029-11-24T11:06:32+05:30",
        ] {
            assert!(parse(s).is_some(), "{s}");
        }
        assert_eq!(
            parse("2029-11-24T11:06:32+05:30"),
            parse("2029-11-24T05:36:32Z")
        );
    }

    #[test]
    fn writes_utc_whole_seconds() {
        let t = parse("2029-11-24T11:06:32.999+05:30").unwrap();
        assert_eq!(format(t), "2029-11-24T05:36:32Z");
        assert_eq!(display(t), "Sat Nov 24 05:36:32 UTC 2029");
    }
}
