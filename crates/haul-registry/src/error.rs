//! What can go wrong talking to a registry. Each message names the registry and what to do;
//! the cause (an HTTP or I/O error) is the error's source, printed after it once.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;

use haul_oci::digest::Digest;
use haul_oci::manifest::MAX_MANIFEST_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{}", connect_message(registry, source))]
    Connect {
        registry: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "the TLS certificate of {registry} ({host}) is not trusted (if a private certificate \
         authority signed it, pass --ca-cert FILE (PEM); to skip verification, \
         --insecure-registry {host})"
    )]
    Certificate {
        registry: String,
        host: String,
        #[source]
        source: reqwest::Error,
    },
    /// A certificate not trusted on a system that has no CA certificates of its own: the
    /// cause is then more likely the missing store than the server.
    #[error(
        "the TLS certificate of {registry} ({host}) is not trusted, and this system has no CA \
         certificates (none were found in its certificate store) to verify it with. Pass the \
         certificate authority that signed it with --ca-cert FILE (PEM) or the configuration \
         file's ca-certs, or install the ca-certificates package (or point SSL_CERT_FILE at a \
         CA bundle); to skip verification, --insecure-registry {host}"
    )]
    NoSystemRoots {
        registry: String,
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "{what} not found in {registry} ({detail}); check the repository name and the tag or digest"
    )]
    NotFound {
        registry: String,
        what: String,
        /// The registry's own words.
        detail: String,
    },
    #[error(
        "unauthorized: {registry} refused access to {repository} ({detail}). Check the credentials \
         (docker login, or --username with --password-stdin), that the repository exists and, for \
         a push, that they may push to it"
    )]
    Unauthorized {
        registry: String,
        repository: String,
        detail: String,
    },
    #[error("registry {registry} answered {status} for {url}: {detail}")]
    Status {
        registry: String,
        status: StatusCode,
        url: String,
        /// The registry's own words.
        detail: String,
        /// What the registry's `Retry-After` asked for.
        retry_after: Option<Duration>,
    },
    #[error(
        "the manifest of {reference} is larger than {MAX_MANIFEST_BYTES} bytes; refusing to read it"
    )]
    ManifestTooLarge { reference: String },
    #[error(
        "the manifest of {reference} does not match the digest it was asked by: \
         expected {expected}, got {actual}"
    )]
    ManifestDigestMismatch {
        reference: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("blob {expected} of {reference} does not match its digest (got {actual})")]
    BlobDigestMismatch {
        reference: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "blob {digest} of {reference} is {size} bytes, larger than the {MAX_MANIFEST_BYTES} \
         bytes haul reads into memory; refusing to read it"
    )]
    BlobTooLarge {
        reference: String,
        digest: Digest,
        size: u64,
    },
    #[error("transfer from {registry} failed")]
    Transfer {
        registry: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the connection to {registry} ended after {received} of {expected} bytes")]
    Truncated {
        registry: String,
        received: u64,
        expected: u64,
    },
    #[error(
        "{registry} sent more than the {expected} bytes the manifest declares; nothing was stored"
    )]
    TooLong { registry: String, expected: u64 },
    #[error(
        "{registry} serves {announced} bytes but the manifest declares {declared}; \
         the image in the registry is inconsistent, nothing was stored"
    )]
    LengthMismatch {
        registry: String,
        declared: u64,
        announced: u64,
    },
    #[error(
        "the upload to {registry} made no progress for {seconds} s (--stall-timeout); the \
         connection is stalled"
    )]
    UploadStalled { registry: String, seconds: u64 },
    /// A stop was asked for ([`crate::UploadGate::stop`]); the upload ended between requests,
    /// where the next run resumes it.
    #[error(
        "the upload of blob {digest} to {registry} stopped when asked to; the next run resumes it"
    )]
    Stopped { registry: String, digest: Digest },
    #[error("cannot read the blob to upload from {what}")]
    ReadBlob {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the token service {realm} of {registry} sent an unreadable answer")]
    TokenAnswer {
        registry: String,
        realm: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot use --ca-cert {path}", path = path.display())]
    CaCert {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("invalid URL {url}")]
    Url {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot set up the HTTP client")]
    HttpClient {
        #[source]
        source: reqwest::Error,
    },
}

impl RegistryError {
    /// How long the registry asked to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether trying again may help (connection trouble, a transfer cut, 5xx, 429, 408). A
    /// host name that does not resolve will not resolve a second later: not retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Connect { source, .. } => !is_name_resolution(source),
            RegistryError::Transfer { .. }
            | RegistryError::Truncated { .. }
            | RegistryError::UploadStalled { .. } => true,
            RegistryError::Status { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
            _ => false,
        }
    }

    /// One short line for a retry: what failed, with the innermost cause; the full message
    /// is for the error that ends the run.
    pub fn brief(&self) -> String {
        match self {
            RegistryError::Connect { registry, source } => {
                format!("cannot connect to {registry}: {}", innermost(source))
            }
            RegistryError::Transfer { registry, source } => {
                format!("transfer from {registry} cut: {}", innermost(source))
            }
            RegistryError::Status {
                registry, status, ..
            } => format!("{registry} answered {status}"),
            other => other.to_string(),
        }
    }
}

/// The last cause in `error`'s chain, as text.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// A name that does not resolve is a typo or the machine's DNS, never a missing
/// --insecure-registry.
fn connect_message(registry: &str, source: &reqwest::Error) -> String {
    if is_name_resolution(source) {
        format!(
            "could not connect to registry {registry}: its host name does not resolve (check \
             the name for a typo, and that this machine's DNS or /etc/hosts knows it)"
        )
    } else {
        format!(
            "could not connect to registry {registry} (check the registry name and port, that \
             it is running and reachable, and whether it needs --insecure-registry)"
        )
    }
}

/// Whether a connection failed because the host name does not resolve (hyper's and the
/// resolver's words, found in the cause chain).
fn is_name_resolution(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if text.contains("dns error")
            || text.contains("failed to lookup address")
            || text.contains("Name or service not known")
        {
            return true;
        }
        current = e.source();
    }
    false
}
