//! The HTTP layer under the client: TLS trust, proxies, timeouts, redirects.

use std::time::Duration;

use super::{RegistryError, RegistryOptions};

const USER_AGENT: &str = concat!("haul/", env!("CARGO_PKG_VERSION"));

/// One HTTP client for the run (connection pool, HTTP/2). It trusts the system's roots plus
/// `--ca-cert`, or, with `verify` false, any certificate. Proxies come from `HTTPS_PROXY`,
/// `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`, as curl reads them. Redirects are followed;
/// reqwest drops `Authorization` when a redirect leaves the host, which is what blob GETs
/// redirected to a storage host need.
pub fn build_http_client(
    options: &RegistryOptions,
    verify: bool,
) -> Result<reqwest::Client, RegistryError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(options.connect_timeout.unwrap_or(Duration::from_secs(30)))
        .read_timeout(options.read_timeout.unwrap_or(Duration::from_secs(60)))
        .redirect(reqwest::redirect::Policy::limited(10));
    if verify {
        for path in &options.ca_certs {
            builder = builder.tls_certs_merge(load_ca_certs(path)?);
        }
    } else {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    builder.build().map_err(|e| RegistryError::Transfer {
        registry: String::new(),
        detail: format!("cannot set up the HTTP client: {}", describe(&e)),
    })
}

/// The certificates of a PEM file (one or several).
fn load_ca_certs(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, RegistryError> {
    let invalid = |detail: String| RegistryError::CaCert {
        path: path.to_path_buf(),
        detail,
    };
    let pem = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| invalid(describe(&e)))?;
    if certs.is_empty() {
        return Err(invalid(
            "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

/// Whether the TLS handshake failed because the server's certificate was not trusted, as
/// opposed to the server not speaking TLS at all.
pub fn is_certificate_error(error: &reqwest::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = next {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return matches!(
                tls,
                rustls::Error::InvalidCertificate(_) | rustls::Error::InvalidCertRevocationList(_)
            );
        }
        // io::Error hides what it wraps from source(): step inside it instead.
        next = match cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => cause.source(),
        };
    }
    false
}

/// An error and its causes on one line (`error sending request: connection refused`).
pub fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
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
