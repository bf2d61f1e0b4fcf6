//! The registry client: the distribution API v2 over HTTP(S), with authentication.
//! It knows HTTP and nothing of files or tars: manifests come back as bytes, blobs as a
//! response to stream from.

pub mod auth;
pub mod endpoint;
pub mod transport;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, RANGE,
    WWW_AUTHENTICATE,
};

use crate::digest::Digest;
use crate::manifest::{ACCEPT as MANIFEST_ACCEPT, MAX_MANIFEST_BYTES};
use crate::reference::Reference;
use auth::{Challenge, CredentialStore, TokenResponse};
use endpoint::{Endpoint, Routes, Transport};

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Mirrors, and the hosts allowed unverified HTTPS or plain HTTP.
    pub routes: Routes,
    /// PEM files of certificate authorities trusted besides the system's.
    pub ca_certs: Vec<PathBuf>,
    pub credentials: CredentialStore,
    pub connect_timeout: Option<Duration>,
    /// The longest a transfer may go without receiving a byte.
    pub read_timeout: Option<Duration>,
    /// Further attempts after a transient failure (connection, 5xx, 408, 429).
    pub retries: u32,
    /// One bandwidth cap, in bytes per second, shared by all downloads.
    pub limit_rate: Option<u64>,
}

/// What went wrong talking to a registry. Each message names the registry and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "could not connect to registry {registry}: {detail}. Check the registry name and port, \
         that it is running and reachable, and whether it needs --insecure-registry"
    )]
    Connect { registry: String, detail: String },
    #[error(
        "the TLS certificate of {registry} ({host}) is not trusted: {detail}. If a private \
         certificate authority signed it, pass --ca-cert FILE (PEM); to skip verification, \
         --insecure-registry {host}"
    )]
    Certificate {
        registry: String,
        host: String,
        detail: String,
    },
    #[error(
        "{what} not found in {registry} ({detail}); check the repository name and the tag or digest"
    )]
    NotFound {
        registry: String,
        what: String,
        detail: String,
    },
    #[error(
        "unauthorized: {registry} refused access to {repository} ({detail}). Check the credentials \
         (docker login, or --username with --password-stdin) and that the repository exists"
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
    #[error("transfer from {registry} failed: {detail}")]
    Transfer { registry: String, detail: String },
    #[error("cannot use --ca-cert {path}: {detail}", path = path.display())]
    CaCert { path: PathBuf, detail: String },
    #[error("invalid URL {url}: {detail}")]
    Url { url: String, detail: String },
}

impl RegistryError {
    /// How long the registry asked to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether trying again may help (connection trouble, 5xx, 429, 408).
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Connect { .. } | RegistryError::Transfer { .. } => true,
            RegistryError::Status { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
            _ => false,
        }
    }
}

/// A manifest as the registry served it: the exact bytes (their digest is the image's
/// identity) and the Content-Type.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    pub digest: Digest,
}

/// An open blob download.
pub struct BlobResponse {
    pub response: reqwest::Response,
    /// True when the registry honoured the Range request (206 from the asked offset);
    /// false means the body starts at byte 0 and the caller must start over.
    pub resumed: bool,
    /// Who served it: the registry, or one of its mirrors (for messages).
    pub source: String,
}

/// The `Authorization` header for one (host, repository), once known.
type AuthSlot = std::sync::Arc<tokio::sync::Mutex<Option<String>>>;

/// Registry client shared by every download of a run; cheap to share behind an `Arc`.
pub struct Client {
    /// Verifies certificates against the system's roots and `--ca-cert`.
    http: reqwest::Client,
    /// Accepts any certificate: only for hosts listed with `--insecure-registry`.
    http_unverified: Option<reqwest::Client>,
    options: RegistryOptions,
    /// `Authorization` header per (host, repository). Each has its own async lock, so
    /// concurrent requests for one repository wait for one token instead of each fetching
    /// its own, while other repositories go on.
    auth: Mutex<HashMap<(String, String), AuthSlot>>,
    /// The transport that worked for each host this run, so probing happens once.
    transports: Mutex<HashMap<String, Transport>>,
    /// Mirrors that could not be reached this run: not asked again.
    unreachable_mirrors: Mutex<HashSet<String>>,
    rate_limiter: Option<transport::RateLimiter>,
}

impl Client {
    pub fn new(options: RegistryOptions) -> Result<Client, RegistryError> {
        let http = transport::build_http_client(&options, true)?;
        let http_unverified = if options.routes.insecure_registries.is_empty() {
            None
        } else {
            Some(transport::build_http_client(&options, false)?)
        };
        Ok(Client {
            http,
            http_unverified,
            rate_limiter: options.limit_rate.map(transport::RateLimiter::new),
            options,
            auth: Mutex::new(HashMap::new()),
            transports: Mutex::new(HashMap::new()),
            unreachable_mirrors: Mutex::new(HashSet::new()),
        })
    }

    /// GETs the manifest `reference` names (its digest when it has one, else its tag).
    pub async fn get_manifest(
        &self,
        reference: &Reference,
    ) -> Result<FetchedManifest, RegistryError> {
        self.get_manifest_by(reference, &reference.manifest_identifier())
            .await
    }

    /// GETs a manifest of `reference`'s repository by tag or digest, from the first of its
    /// mirrors (or the registry) that has it.
    pub async fn get_manifest_by(
        &self,
        reference: &Reference,
        identifier: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        for endpoint in self.endpoints(reference) {
            match self
                .get_manifest_from(&endpoint, reference, identifier)
                .await
            {
                Err(error) if endpoint.is_mirror => self.mirror_failed(&endpoint, error),
                result => return result,
            }
        }
        unreachable!("the registry itself is the last endpoint")
    }

    async fn get_manifest_from(
        &self,
        endpoint: &Endpoint,
        reference: &Reference,
        identifier: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let separator = if identifier.contains(':') { "@" } else { ":" };
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let mut response = self
            .get(
                endpoint,
                &format!("manifests/{identifier}"),
                headers,
                &format!("image {}{}{identifier}", reference.full_name(), separator),
            )
            .await?;
        if response
            .content_length()
            .is_some_and(|len| len > MAX_MANIFEST_BYTES)
        {
            return Err(RegistryError::ManifestTooLarge {
                reference: reference.to_string(),
            });
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transfer_error(&endpoint.registry, &e))?
        {
            if bytes.len() as u64 + chunk.len() as u64 > MAX_MANIFEST_BYTES {
                return Err(RegistryError::ManifestTooLarge {
                    reference: reference.to_string(),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let digest = Digest::of(&bytes);
        if let Ok(expected) = identifier.parse::<Digest>()
            && expected != digest
        {
            return Err(RegistryError::ManifestDigestMismatch {
                reference: reference.to_string(),
                expected,
                actual: digest,
            });
        }
        Ok(FetchedManifest {
            bytes,
            content_type,
            digest,
        })
    }

    /// Opens a download of blob `digest` from `reference`'s repository, from byte `offset`,
    /// from the first of its mirrors (or the registry) that has it.
    pub async fn get_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        offset: u64,
    ) -> Result<BlobResponse, RegistryError> {
        let mut headers = HeaderMap::new();
        if offset > 0 {
            let range = HeaderValue::from_str(&format!("bytes={offset}-")).expect("ASCII header");
            headers.insert(RANGE, range);
        }
        let what = format!("blob {digest} of {}", reference.full_name());
        let mut served = None;
        for endpoint in self.endpoints(reference) {
            let suffix = format!("blobs/{digest}");
            match self.get(&endpoint, &suffix, headers.clone(), &what).await {
                Ok(response) => {
                    served = Some((response, endpoint.registry));
                    break;
                }
                Err(error) if endpoint.is_mirror => self.mirror_failed(&endpoint, error),
                Err(error) => return Err(error),
            }
        }
        let (response, source) = served.expect("the registry itself is the last endpoint");
        let resumed = offset > 0
            && response.status() == StatusCode::PARTIAL_CONTENT
            && content_range_start(response.headers()) == Some(offset);
        Ok(BlobResponse {
            response,
            resumed,
            source,
        })
    }

    /// Where to fetch `reference`'s content: its mirrors in order, less those found
    /// unreachable this run, then the registry itself.
    fn endpoints(&self, reference: &Reference) -> Vec<Endpoint> {
        let unreachable = self.unreachable_mirrors.lock().unwrap();
        self.options
            .routes
            .endpoints(reference)
            .into_iter()
            .filter(|e| !(e.is_mirror && unreachable.contains(&e.host)))
            .collect()
    }

    /// Logs why a mirror could not serve a request (the next source is asked instead), and
    /// stops asking a mirror that cannot be reached.
    fn mirror_failed(&self, mirror: &Endpoint, error: RegistryError) {
        match error {
            RegistryError::NotFound { .. } => {
                tracing::debug!("mirror {}: {error}; trying the next source", mirror.host);
            }
            RegistryError::Connect { .. } | RegistryError::Certificate { .. } => {
                self.unreachable_mirrors
                    .lock()
                    .unwrap()
                    .insert(mirror.host.clone());
                tracing::warn!(
                    "mirror {}: {error}; not asking it again this run",
                    mirror.host
                );
            }
            _ => tracing::warn!("mirror {}: {error}; trying the next source", mirror.host),
        }
    }

    /// A GET, tried again on connection errors, 5xx, 408 and 429 (waiting as `Retry-After`
    /// says, else with exponential backoff and jitter), up to `retries` more times. A mirror
    /// that cannot be connected to is not retried: the next source is.
    async fn get(
        &self,
        endpoint: &Endpoint,
        suffix: &str,
        headers: HeaderMap,
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut attempt = 0;
        loop {
            match self.get_once(endpoint, suffix, headers.clone(), what).await {
                Err(error @ RegistryError::Connect { .. }) if endpoint.is_mirror => {
                    return Err(error);
                }
                Err(error) if error.is_retryable() && attempt < self.options.retries => {
                    attempt += 1;
                    let wait = error
                        .retry_after()
                        .unwrap_or_else(|| transport::backoff(attempt));
                    tracing::warn!(
                        "{error}; retrying in {:.1}s (attempt {attempt} of {})",
                        wait.as_secs_f64(),
                        self.options.retries
                    );
                    tokio::time::sleep(wait).await;
                }
                result => return result,
            }
        }
    }

    /// Waits as long as `--limit-rate` requires before `bytes` more may be read.
    pub async fn throttle(&self, bytes: usize) {
        if let Some(limiter) = &self.rate_limiter {
            limiter.consume(bytes as u64).await;
        }
    }

    /// A GET with authentication: on 401 it answers the challenge once and tries again, which
    /// also renews an expired token.
    async fn get_once(
        &self,
        endpoint: &Endpoint,
        suffix: &str,
        headers: HeaderMap,
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let key = (endpoint.host.clone(), endpoint.repository.clone());
        let slot = self.auth.lock().unwrap().entry(key).or_default().clone();
        let mut answered_challenge = false;
        loop {
            let sent_auth = slot.lock().await.clone();
            let response = self
                .send(endpoint, suffix, headers.clone(), sent_auth.as_deref())
                .await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !answered_challenge {
                answered_challenge = true;
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(Challenge::parse);
                let mut current = slot.lock().await;
                // Another request may have renewed it meanwhile: use theirs.
                if *current != sent_auth {
                    continue;
                }
                *current = Some(self.answer_challenge(endpoint, challenge).await?);
                continue;
            }
            if status.is_success() {
                return Ok(response);
            }
            let url = response.url().to_string();
            let retry_after = transport::retry_after(response.headers());
            let detail = error_detail(response).await;
            return Err(match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
                    registry: endpoint.registry.clone(),
                    repository: endpoint.repository.clone(),
                    detail,
                },
                StatusCode::NOT_FOUND => RegistryError::NotFound {
                    registry: endpoint.registry.clone(),
                    what: what.to_string(),
                    detail,
                },
                status => RegistryError::Status {
                    registry: endpoint.registry.clone(),
                    status,
                    url,
                    detail,
                    retry_after,
                },
            });
        }
    }

    /// Sends one GET to `endpoint` over the transport known to work for its host, or else
    /// over each it may use in turn: HTTPS first, plain HTTP only where allowed and only when
    /// the host does not speak TLS (a certificate that fails verification is an error, not a
    /// reason to drop encryption).
    async fn send(
        &self,
        endpoint: &Endpoint,
        suffix: &str,
        headers: HeaderMap,
        authorization: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let known = self.transports.lock().unwrap().get(&endpoint.host).copied();
        let candidates = match known {
            Some(transport) => vec![transport],
            None => endpoint.transports.clone(),
        };
        let mut last_error = None;
        for transport in candidates {
            let http = match transport {
                Transport::Https { verify: false } => self.unverified_client(),
                _ => &self.http,
            };
            let mut request = http
                .get(endpoint.url(transport, suffix))
                .headers(headers.clone());
            if let Some(authorization) = authorization {
                request = request.header(AUTHORIZATION, authorization);
            }
            match request.send().await {
                Ok(response) => {
                    if known.is_none() {
                        self.learn_transport(endpoint, transport);
                    }
                    return Ok(response);
                }
                Err(error) if transport::is_certificate_error(&error) => {
                    return Err(RegistryError::Certificate {
                        registry: endpoint.registry.clone(),
                        host: endpoint.host.clone(),
                        detail: transport::describe(&error),
                    });
                }
                Err(error) => {
                    tracing::debug!(
                        "{} over {}: {}",
                        endpoint.host,
                        transport.scheme(),
                        transport::describe(&error)
                    );
                    last_error = Some(error);
                }
            }
        }
        let error = last_error.expect("an endpoint has at least one transport");
        Err(connect_error(&endpoint.registry, &error))
    }

    fn unverified_client(&self) -> &reqwest::Client {
        self.http_unverified.as_ref().unwrap_or(&self.http)
    }

    /// Remembers what worked for the host, and says once when it is not verified HTTPS.
    fn learn_transport(&self, endpoint: &Endpoint, transport: Transport) {
        let previous = self
            .transports
            .lock()
            .unwrap()
            .insert(endpoint.host.clone(), transport);
        if previous.is_some() {
            return;
        }
        match transport {
            Transport::Https { verify: false } => tracing::warn!(
                "{}: not verifying its TLS certificate (--insecure-registry)",
                endpoint.host
            ),
            Transport::Http if !endpoint::is_loopback(&endpoint.host) => tracing::warn!(
                "{}: talking plain HTTP, unencrypted (--insecure-registry)",
                endpoint.host
            ),
            _ => tracing::debug!("{}: using {}", endpoint.host, transport.scheme()),
        }
    }

    /// The `Authorization` header that answers `challenge` for `endpoint`'s repository.
    async fn answer_challenge(
        &self,
        endpoint: &Endpoint,
        challenge: Option<Challenge>,
    ) -> Result<String, RegistryError> {
        let credentials = self.options.credentials.get(&endpoint.registry);
        let unauthorized = |detail: &str| RegistryError::Unauthorized {
            registry: endpoint.registry.clone(),
            repository: endpoint.repository.clone(),
            detail: detail.to_string(),
        };
        match challenge {
            Some(Challenge::Basic) => match &credentials {
                Some(c) => Ok(c.basic_header()),
                None => Err(unauthorized(
                    "the registry requires a user name and password",
                )),
            },
            Some(Challenge::Bearer { realm, service, .. }) => {
                let scope = format!("repository:{}:pull", endpoint.repository);
                let mut url = reqwest::Url::parse(&realm).map_err(|e| RegistryError::Url {
                    url: realm.clone(),
                    detail: e.to_string(),
                })?;
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(service) = &service {
                        query.append_pair("service", service);
                    }
                    query.append_pair("scope", &scope);
                }
                // The token service is trusted as its host is: verified unless listed insecure.
                let realm_host = match url.port() {
                    Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
                    None => url.host_str().unwrap_or_default().to_string(),
                };
                let http = if self.options.routes.is_insecure(&realm_host) {
                    self.unverified_client()
                } else {
                    &self.http
                };
                let mut request = http.get(url.clone());
                if let Some(c) = &credentials {
                    request = request.header(AUTHORIZATION, c.basic_header());
                }
                let response = request.send().await.map_err(|e| {
                    if transport::is_certificate_error(&e) {
                        RegistryError::Certificate {
                            registry: format!("the token service of {}", endpoint.registry),
                            host: realm_host.clone(),
                            detail: transport::describe(&e),
                        }
                    } else {
                        connect_error(
                            &format!("{}'s token service {realm}", endpoint.registry),
                            &e,
                        )
                    }
                })?;
                let status = response.status();
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    let why = if credentials.is_some() {
                        "the token service rejected the credentials"
                    } else {
                        "the token service requires credentials"
                    };
                    return Err(unauthorized(why));
                }
                if !status.is_success() {
                    return Err(RegistryError::Status {
                        registry: endpoint.registry.clone(),
                        status,
                        url: url.to_string(),
                        retry_after: transport::retry_after(response.headers()),
                        detail: error_detail(response).await,
                    });
                }
                let unreadable = |detail: String| RegistryError::Transfer {
                    registry: endpoint.registry.clone(),
                    detail: format!(
                        "the token service {realm} sent an unreadable answer: {detail}"
                    ),
                };
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| unreadable(transport::describe(&e)))?;
                let body: TokenResponse =
                    serde_json::from_slice(&body).map_err(|e| unreadable(e.to_string()))?;
                let token = body
                    .into_token()
                    .ok_or_else(|| unauthorized("the token service answered without a token"))?;
                Ok(format!("Bearer {token}"))
            }
            None => Err(unauthorized(
                "the registry asked for authentication of a kind haul does not know",
            )),
        }
    }
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL` header.
fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// The registry's error text: the `errors` array of the distribution spec, else the status.
async fn error_detail(response: reqwest::Response) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let body = &body[..body.len().min(64 * 1024)];
    match serde_json::from_slice::<Errors>(body) {
        Ok(errors) if !errors.errors.is_empty() => errors
            .errors
            .iter()
            .map(|e| {
                let code = e.code.as_deref().unwrap_or("ERROR");
                match &e.message {
                    Some(message) => format!("{code}: {message}"),
                    None => code.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => status.to_string(),
    }
}

fn connect_error(registry: &str, error: &reqwest::Error) -> RegistryError {
    RegistryError::Connect {
        registry: registry.to_string(),
        detail: transport::describe(error),
    }
}

pub(crate) fn transfer_error(registry: &str, error: &reqwest::Error) -> RegistryError {
    RegistryError::Transfer {
        registry: registry.to_string(),
        detail: transport::describe(error),
    }
}
