//! The HTTP layer under the client: TLS, timeouts, redirects, and which hosts get plain HTTP.

use std::time::Duration;

use super::{RegistryError, RegistryOptions};
use crate::reference::{Reference, host_without_port};

const USER_AGENT: &str = concat!("haul/", env!("CARGO_PKG_VERSION"));

/// One HTTP client for the run (connection pool, HTTP/2, system proxy settings).
/// Redirects are followed; reqwest drops `Authorization` when a redirect leaves the host,
/// which is what blob GETs redirected to a storage host need.
pub fn build_http_client(options: &RegistryOptions) -> Result<reqwest::Client, RegistryError> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(options.connect_timeout.unwrap_or(Duration::from_secs(30)))
        .read_timeout(options.read_timeout.unwrap_or(Duration::from_secs(60)))
        .redirect(reqwest::redirect::Policy::limited(10))
        .build()
        .map_err(|e| RegistryError::Transfer {
            registry: String::new(),
            detail: format!("cannot set up the HTTP client: {}", describe(&e)),
        })
}

/// Plain HTTP for loopback registries and those listed with `--insecure-registry`, as docker.
pub fn use_plain_http(reference: &Reference, insecure: &[String]) -> bool {
    reference.is_loopback()
        || insecure
            .iter()
            .any(|h| h == reference.registry() || h == host_without_port(reference.registry()))
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
