//! The HTTP client under the registry client: TLS trust, proxies, timeouts, redirects.

use std::time::Duration;

use super::{RegistryError, RegistryOptions};

const USER_AGENT: &str = concat!("haul/", env!("CARGO_PKG_VERSION"));

/// One HTTP client for the run (connection pool, HTTP/2). It trusts the system's roots plus
/// `--ca-cert`, or, with `verify` false, any certificate. Proxies come from `HTTPS_PROXY`,
/// `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`, as curl reads them. Redirects are followed;
/// reqwest drops `Authorization` when a redirect leaves the host, which is what blob GETs
/// redirected to a storage host need.
///
/// With `read_timeout`, a request fails when its answer's headers, or then any read of its
/// body, take longer than the stall timeout. reqwest counts the first from the request's
/// start, body sent or not, so requests that send large bodies (uploads) use a client
/// without it, and watch for stalls themselves.
pub fn build_http_client(
    options: &RegistryOptions,
    verify: bool,
    read_timeout: bool,
) -> Result<reqwest::Client, RegistryError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(options.connect_timeout.unwrap_or(Duration::from_secs(30)))
        .redirect(reqwest::redirect::Policy::limited(10));
    if read_timeout {
        builder = builder.read_timeout(options.stall_timeout());
    }
    if verify {
        for path in &options.ca_certs {
            builder = builder.tls_certs_merge(load_ca_certs(path)?);
        }
    } else {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|source| RegistryError::HttpClient { source })
}

/// The certificates of a PEM file (one or several).
fn load_ca_certs(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, RegistryError> {
    let invalid = |source: Box<dyn std::error::Error + Send + Sync>| RegistryError::CaCert {
        path: path.to_path_buf(),
        source,
    };
    let pem = std::fs::read(path).map_err(|e| invalid(e.into()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| invalid(e.into()))?;
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
