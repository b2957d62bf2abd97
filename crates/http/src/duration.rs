//! Go-style durations (`720h`, `1h30m`, `1.5h`, `90s`), as the spec's duration fields and
//! Kubernetes CEL's `duration()` accept them. jiff does the arithmetic; we check the Go grammar
//! first so that Rust and the API server agree on what is valid.

use std::fmt;

use jiff::SignedDuration;

/// A positive duration in Go syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration(pub SignedDuration);

/// A duration string that is not a positive Go duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a Go duration such as 720h, 1h30m or 5m: {why}")]
pub struct DurationError {
    pub input: String,
    pub why: &'static str,
}

/// Parses a Go duration. Units: ns, us (µs), ms, s, m, h; fractions allowed; no sign.
pub fn parse_go_duration(input: &str) -> Result<GoDuration, DurationError> {
    let err = |why| DurationError {
        input: input.to_string(),
        why,
    };
    if input.is_empty() {
        return Err(err("it is empty"));
    }
    let mut total: i128 = 0; // nanoseconds
    let mut rest = input;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("a number lacks its unit"))?;
        let (num, after) = rest.split_at(num_len);
        if num.is_empty()
            || num.starts_with('.')
            || num.ends_with('.')
            || num.matches('.').count() > 1
        {
            return Err(err("expected a number before each unit"));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(err("a number lacks its unit")),
            _ => return Err(err("units are ns, us, ms, s, m and h (no d or y)")),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        let int: i128 = int.parse().map_err(|_| err("a number is too large"))?;
        let mut part = int
            .checked_mul(scale)
            .ok_or_else(|| err("it is too large"))?;
        if !frac.is_empty() {
            let digits = frac.len().min(18) as u32;
            let f: i128 = frac[..digits as usize]
                .parse()
                .map_err(|_| err("bad fraction"))?;
            part += f * scale / 10i128.pow(digits);
        }
        total = total
            .checked_add(part)
            .ok_or_else(|| err("it is too large"))?;
        rest = next;
    }
    if total <= 0 {
        return Err(err("it must be longer than zero"));
    }
    let secs = i64::try_from(total / 1_000_000_000).map_err(|_| err("it is too large"))?;
    let nanos = (total % 1_000_000_000) as i32;
    Ok(GoDuration(SignedDuration::new(secs, nanos)))
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 || (h == 0 && m == 0) {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

/// A timeout or deadline as the flags take it (`30s`, `5m`, `250ms`), for messages.
pub fn human(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    SignedDuration::try_from(d)
        .map(|d| GoDuration(d).to_string())
        .unwrap_or_else(|_| format!("{}s", d.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_forms() {
        let cases = [
            ("720h", 720 * 3600),
            ("26280h", 26280 * 3600),
            ("1h30m", 5400),
            ("2160h0m0s", 2160 * 3600),
            ("1.5h", 5400),
            ("5m", 300),
            ("90s", 90),
        ];
        for (s, secs) in cases {
            assert_eq!(parse_go_duration(s).unwrap().0.as_secs(), secs, "{s}");
        }
        assert_eq!(parse_go_duration("1500ms").unwrap().0.as_millis(), 1500);
    }

    #[test]
    fn refuses_what_go_refuses() {
        for s in [
            "", "30d", "1y", "h", "5", "-5m", "1..5h", ".5h", "0s", "P30D", "5 m",
        ] {
            assert!(parse_go_duration(s).is_err(), "{s} should be refused");
        }
    }
}
