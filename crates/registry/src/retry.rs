//! Retry policy: jittered exponential backoff (backon) for 5xx, timeouts and connection errors;
//! `Retry-After` for 429; bounded attempts and total time.

use std::future::Future;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use super::error::{RegistryError, Result};
use trustkeeper_http::counters::Counters;

/// How transient failures are retried.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = no retry).
    pub max_attempts: usize,
    /// First backoff delay (before jitter).
    pub min_delay: Duration,
    /// Largest backoff delay.
    pub max_delay: Duration,
    /// Give up when the next wait would end later than this after the first attempt started.
    pub max_total: Duration,
    /// Longest wait a `Retry-After` header can impose; longer ones are capped to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
            max_total: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        }
    }

    /// Runs `op` until it succeeds, fails permanently, or the budget is spent.
    pub(crate) async fn run<T, F, Fut>(&self, counters: &Counters, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let start = Instant::now();
        let mut backoff = ExponentialBuilder::new()
            .with_jitter()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .without_max_times()
            .build();
        let mut attempt = 1;
        loop {
            let err = match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() => e,
                Err(e) => return Err(e),
            };
            if attempt >= self.max_attempts.max(1) {
                return Err(err);
            }
            let delay = match &err {
                RegistryError::RateLimited {
                    retry_after: Some(d),
                    ..
                } => (*d).min(self.max_retry_after),
                _ => backoff.next().unwrap_or(self.max_delay),
            };
            if start.elapsed() + delay > self.max_total {
                return Err(err);
            }
            tracing::debug!(error = %err, attempt, ?delay, "transient registry error, retrying");
            tokio::time::sleep(delay).await;
            counters.retry();
            attempt += 1;
        }
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP date (`Wed, 21 Oct 2026 07:28:00 GMT`).
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(v)
        .ok()?;
    let d = at.duration_since(now);
    Some(Duration::try_from(d).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now: jiff::Timestamp = "2026-11-25T20:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 20:00:12 GMT", now),
            Some(Duration::from_secs(12))
        );
        // a date in the past means "now"
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 19:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[tokio::test]
    async fn bounded_attempts_and_permanent_errors() {
        let counters = Counters::default();
        let policy = RetryPolicy {
            max_attempts: 3,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            ..Default::default()
        };
        let mut n = 0;
        let r: Result<()> = policy
            .run(&counters, || {
                n += 1;
                async {
                    Err(RegistryError::Server {
                        registry: "r".into(),
                        status: 503,
                    })
                }
            })
            .await;
        assert!(matches!(r, Err(RegistryError::Server { status: 503, .. })));
        assert_eq!(n, 3);
        assert_eq!(counters.snapshot().retries, 2);

        let mut n = 0;
        let r: Result<()> = policy
            .run(&counters, || {
                n += 1;
                async {
                    Err(RegistryError::NotFound {
                        reference: "x".into(),
                    })
                }
            })
            .await;
        assert!(matches!(r, Err(RegistryError::NotFound { .. })));
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn retry_after_beyond_total_budget_gives_up_at_once() {
        let counters = Counters::default();
        let policy = RetryPolicy {
            max_total: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(10),
            ..Default::default()
        };
        let t = Instant::now();
        let r: Result<()> = policy
            .run(&counters, || async {
                Err(RegistryError::RateLimited {
                    registry: "r".into(),
                    retry_after: Some(Duration::from_secs(5)),
                })
            })
            .await;
        assert!(matches!(r, Err(RegistryError::RateLimited { .. })));
        assert!(t.elapsed() < Duration::from_millis(500));
    }
}
