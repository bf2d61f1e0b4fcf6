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
/// A system without CA certificates (a minimal root without the ca-certificates package, or
/// `SSL_CERT_FILE` / `SSL_CERT_DIR` naming nothing) is not an error here: the client then
/// trusts only `--ca-cert`, plain HTTP works as ever, and an HTTPS registry it cannot verify
/// fails when it is reached, saying why (`RegistryError::NoSystemRoots`).
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
    let builder = || {
        let builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(options.connect_timeout.unwrap_or(Duration::from_secs(30)))
            .redirect(reqwest::redirect::Policy::limited(10));
        if read_timeout {
            builder.read_timeout(options.stall_timeout())
        } else {
            builder
        }
    };
    if !verify {
        return builder()
            .tls_danger_accept_invalid_certs(true)
            .build()
            .map_err(|source| RegistryError::HttpClient { source });
    }
    let mut given = Vec::new();
    for path in &options.ca_certs {
        given.extend(load_ca_certs(path)?);
    }
    match builder().tls_certs_merge(given.clone()).build() {
        Ok(client) => {
            if given.is_empty() {
                // That build loaded the system's roots and found some.
                let _ = SYSTEM_ROOTS_MISSING.set(false);
            }
            Ok(client)
        }
        Err(error) if is_missing_system_roots(&error) => {
            let _ = SYSTEM_ROOTS_MISSING.set(true);
            tracing::debug!(
                "no system CA certificates ({}); trusting only --ca-cert",
                haul_oci::error::describe(&error)
            );
            builder()
                .tls_certs_only(given)
                .build()
                .map_err(|source| RegistryError::HttpClient { source })
        }
        Err(source) => Err(RegistryError::HttpClient { source }),
    }
}

/// Whether the system's CA store yields no certificate, once known for the process.
static SYSTEM_ROOTS_MISSING: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Whether the system has no CA certificates (no store found, or an empty one). Known from
/// building the clients when no `--ca-cert` was given; otherwise asked once, here, when a
/// certificate was not trusted (with `--ca-cert` roots the build succeeds either way).
pub fn system_roots_missing() -> bool {
    *SYSTEM_ROOTS_MISSING.get_or_init(|| match reqwest::Client::builder().build() {
        Ok(_) => false,
        Err(error) => is_missing_system_roots(&error),
    })
}

/// Whether building a client failed because the platform verifier found no system roots:
/// rustls-platform-verifier reports that, on Linux, as `rustls::Error::General` ("No CA
/// certificates were loaded from the system"), the only general error of its set-up (bad
/// extra roots are `InvalidCertificate`, the rest are not rustls errors).
fn is_missing_system_roots(error: &reqwest::Error) -> bool {
    rustls_error(error).is_some_and(|tls| matches!(tls, rustls::Error::General(_)))
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

/// The error for a server certificate `is_certificate_error` found untrusted: it says the
/// system has no CA certificates when that is so.
pub fn untrusted_certificate(
    registry: String,
    host: String,
    source: reqwest::Error,
) -> RegistryError {
    if system_roots_missing() {
        RegistryError::NoSystemRoots {
            registry,
            host,
            source,
        }
    } else {
        RegistryError::Certificate {
            registry,
            host,
            source,
        }
    }
}

/// Whether the TLS handshake failed because the server's certificate was not trusted, as
/// opposed to the server not speaking TLS at all.
pub fn is_certificate_error(error: &reqwest::Error) -> bool {
    rustls_error(error).is_some_and(|tls| {
        matches!(
            tls,
            rustls::Error::InvalidCertificate(_) | rustls::Error::InvalidCertRevocationList(_)
        )
    })
}

/// The rustls error in `error`'s cause chain, if any.
fn rustls_error(error: &reqwest::Error) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = next {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return Some(tls);
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
    None
}
