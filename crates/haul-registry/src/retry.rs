//! When and how long to wait before trying again, and how fast to read: the one retry
//! policy of every request and transfer, the one loop that applies it ([`Attempts`]: requests,
//! blob downloads and uploads), and the `--limit-rate` token bucket.

use std::time::Duration;

use super::RegistryError;

/// How many times to try again, and how long to wait before each attempt.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Further attempts after a transient failure.
    pub retries: u32,
}

impl RetryPolicy {
    /// The wait before attempt `attempt` (1, 2, …) after `error`, or `None` when it is not
    /// worth trying again: the error is not transient, or the attempts are used up. The
    /// registry's `Retry-After` wins over the backoff.
    pub fn wait(&self, error: &RegistryError, attempt: u32) -> Option<Duration> {
        if !error.is_retryable() || attempt > self.retries {
            return None;
        }
        Some(error.retry_after().unwrap_or_else(|| backoff(attempt)))
    }
}

/// Told of each retry: the attempt (1, 2, …), what failed, and the wait before trying again.
pub type RetryReport = dyn Fn(u32, &RegistryError, Duration) + Send + Sync;

/// The failed attempts of one operation (a request, a blob's download over several requests,
/// an upload), and the one place that decides whether and when to try again.
pub struct Attempts<'a> {
    policy: RetryPolicy,
    failures: u32,
    report: &'a RetryReport,
}

impl<'a> Attempts<'a> {
    pub fn new(policy: RetryPolicy, report: &'a RetryReport) -> Attempts<'a> {
        Attempts {
            policy,
            failures: 0,
            report,
        }
    }

    /// After `error`: tells of the retry, waits as the policy says and returns; or gives
    /// `error` back when it is not worth trying again.
    pub async fn after(&mut self, error: RegistryError) -> Result<(), RegistryError> {
        if !error.is_retryable() {
            return Err(error);
        }
        self.failures += 1;
        let Some(wait) = self.policy.wait(&error, self.failures) else {
            return Err(error);
        };
        (self.report)(self.failures, &error, wait);
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// `attempt`, again and again, until it succeeds or fails in a way not worth retrying.
    pub async fn run<T>(
        &mut self,
        mut attempt: impl AsyncFnMut() -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) => self.after(error).await?,
            }
        }
    }
}

/// The wait before retry `attempt` (1, 2, …): 1 s, 2 s, 4 s … up to 30 s, plus up to 50%
/// jitter so that parallel downloads do not retry in step.
pub fn backoff(attempt: u32) -> Duration {
    let base =
        Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30));
    base + base.mul_f64(jitter_fraction() * 0.5)
}

/// A number in [0, 1) that differs between calls; randomness enough to spread retries.
fn jitter_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    (hasher.finish() % 10_000) as f64 / 10_000.0
}

/// The longest `Retry-After` haul honours; a registry asking for more gets this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// `Retry-After: <seconds>` or `Retry-After: <HTTP date>`.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// A token bucket shared by every download of a run: `--limit-rate` caps their sum.
pub struct RateLimiter {
    bytes_per_second: u64,
    /// When the bytes granted so far will have been "paid for" at the cap.
    next_free: tokio::sync::Mutex<tokio::time::Instant>,
}

impl RateLimiter {
    pub fn new(bytes_per_second: u64) -> RateLimiter {
        RateLimiter {
            bytes_per_second: bytes_per_second.max(1),
            next_free: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Accounts for `bytes` just read and sleeps until the average is back under the cap.
    /// A burst of up to a quarter second's worth is allowed, so small chunks do not each sleep.
    pub async fn consume(&self, bytes: u64) {
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
        let deadline = {
            let mut next_free = self.next_free.lock().await;
            let now = tokio::time::Instant::now();
            let burst = Duration::from_millis(250);
            let start = (*next_free).max(now.checked_sub(burst).unwrap_or(now));
            *next_free = start + cost;
            *next_free
        };
        tokio::time::sleep_until(deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) >= Duration::from_secs(1) && backoff(1) < Duration::from_millis(1500));
        assert!(backoff(3) >= Duration::from_secs(4) && backoff(3) < Duration::from_secs(6));
        assert!(backoff(30) <= Duration::from_secs(45));
    }

    #[test]
    fn reads_retry_after() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(reqwest::header::RETRY_AFTER, "99999".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_holds_the_average() {
        let limiter = RateLimiter::new(1000);
        let start = tokio::time::Instant::now();
        for _ in 0..10 {
            limiter.consume(500).await;
        }
        // 5000 bytes at 1000 B/s: about 5 s, less the 0.25 s burst allowance.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(4700) && elapsed <= Duration::from_millis(5100),
            "{elapsed:?}"
        );
    }
}
