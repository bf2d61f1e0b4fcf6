//! The registry client: the distribution API v2 over HTTP(S), with authentication, mirrors,
//! retries and the rate limit. It knows HTTP and nothing of files or tars: manifests come back
//! as bytes, blobs as a [`BlobStream`] of chunks. Nothing outside this crate sees `reqwest`.
//!
//! - `error`: what can go wrong, and what to do about it;
//! - [`auth`]: challenges, credentials and the token exchange;
//! - [`endpoint`]: mirrors and transports (which host, which scheme);
//! - `http`: the HTTP client (TLS trust, proxies, timeouts);
//! - [`retry`]: the retry policy and the rate limiter;
//! - `blob`: a blob download that resumes itself.
//!
//! Over 600 lines because [`Client`] is one type: its requests share the authentication,
//! mirror and retry state; the parts that stand alone are the submodules.

pub mod auth;
mod blob;
pub mod endpoint;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod gate;
mod http;
pub mod retry;
mod upload;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};

pub use blob::BlobStream;
pub use error::RegistryError;
pub use retry::RetryReport;
pub use upload::{
    CHUNK_BYTES, UploadJournal, UploadProgress, UploadReader, UploadReport, UploadSource,
};

use auth::{Challenge, CredentialStore};
use endpoint::{Endpoint, Routes, Transport};
pub use gate::UploadGate;
use haul_oci::digest::Digest;
use haul_oci::manifest::{ACCEPT as MANIFEST_ACCEPT, MAX_MANIFEST_BYTES};
use haul_oci::reference::{Identifier, Reference};
use retry::{Attempts, RateLimiter, RetryPolicy};

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
    /// Further attempts after a transient failure (connection, 5xx, 408, 429, a cut transfer).
    pub retries: u32,
    /// One bandwidth cap, in bytes per second, shared by all downloads.
    pub limit_rate: Option<u64>,
    /// The transport each host took in earlier runs: tried first, so a plain-HTTP registry is
    /// not probed with TLS again on every run (only among the transports a host may use).
    pub remembered_transports: HashMap<String, Transport>,
    /// Stops uploads between requests when asked to.
    pub uploads: UploadGate,
}

impl RegistryOptions {
    /// How long a transfer may go without a byte before it counts as failed.
    pub fn stall_timeout(&self) -> Duration {
        self.read_timeout.unwrap_or(Duration::from_secs(60))
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

/// The `Authorization` header for one (host, repository), once known.
type AuthSlot = std::sync::Arc<tokio::sync::Mutex<Option<String>>>;

/// Registry client shared by every download of a run; cheap to share behind an `Arc`.
pub struct Client {
    /// Verifies certificates against the system's roots and `--ca-cert`.
    http: reqwest::Client,
    /// Accepts any certificate: only for hosts listed with `--insecure-registry`.
    http_unverified: Option<reqwest::Client>,
    /// The same two without a read timeout, for requests that send a body (see
    /// `http::build_http_client`).
    http_sending: reqwest::Client,
    http_sending_unverified: Option<reqwest::Client>,
    options: RegistryOptions,
    retry: RetryPolicy,
    /// `Authorization` header per (host, repository). Each has its own async lock, so
    /// concurrent requests for one repository wait for one token instead of each fetching
    /// its own, while other repositories go on.
    auth: Mutex<HashMap<(String, String), AuthSlot>>,
    /// The transport that worked for each host this run, so probing happens once.
    transports: Mutex<HashMap<String, Transport>>,
    /// Per host, held by the request that is finding its transport.
    probing: Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    /// Mirrors that could not be reached this run: not asked again.
    unreachable_mirrors: Mutex<HashSet<String>>,
    rate_limiter: Option<std::sync::Arc<RateLimiter>>,
}

impl Client {
    pub fn new(options: RegistryOptions) -> Result<Client, RegistryError> {
        let http = http::build_http_client(&options, true, true)?;
        let http_sending = http::build_http_client(&options, true, false)?;
        let (http_unverified, http_sending_unverified) =
            if options.routes.insecure_registries.is_empty() {
                (None, None)
            } else {
                (
                    Some(http::build_http_client(&options, false, true)?),
                    Some(http::build_http_client(&options, false, false)?),
                )
            };
        Ok(Client {
            http,
            http_unverified,
            http_sending,
            http_sending_unverified,
            rate_limiter: options
                .limit_rate
                .map(|rate| std::sync::Arc::new(RateLimiter::new(rate))),
            retry: RetryPolicy {
                retries: options.retries,
            },
            options,
            auth: Mutex::new(HashMap::new()),
            transports: Mutex::new(HashMap::new()),
            probing: Mutex::new(HashMap::new()),
            unreachable_mirrors: Mutex::new(HashSet::new()),
        })
    }

    /// GETs the manifest `reference` names (its digest when it has one, else its tag).
    pub async fn get_manifest(
        &self,
        reference: &Reference,
    ) -> Result<FetchedManifest, RegistryError> {
        self.get_manifest_by(reference, &reference.identifier())
            .await
    }

    /// GETs a manifest of `reference`'s repository by tag or digest, from the first of its
    /// mirrors (or the registry) that has it.
    pub async fn get_manifest_by(
        &self,
        reference: &Reference,
        identifier: &Identifier,
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
        identifier: &Identifier,
    ) -> Result<FetchedManifest, RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let what = format!(
            "image {}{}{identifier}",
            reference.full_name(),
            identifier.separator()
        );
        let response = self
            .get(
                endpoint,
                &format!("manifests/{identifier}"),
                headers,
                &what,
                &mut self.attempts(&warn_retry),
            )
            .await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = read_manifest_body(response, endpoint, &reference.to_string()).await?;
        let digest = Digest::of(&bytes);
        if let Identifier::Digest(expected) = identifier
            && *expected != digest
        {
            return Err(RegistryError::ManifestDigestMismatch {
                reference: reference.to_string(),
                expected: expected.clone(),
                actual: digest,
            });
        }
        Ok(FetchedManifest {
            bytes,
            content_type,
            digest,
        })
    }

    /// What the registry's referrers API lists for manifest `digest` (an OCI index), or
    /// `None` when the registry does not offer the API (404, or another 4xx).
    pub async fn get_referrers(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<Option<FetchedManifest>, RegistryError> {
        let endpoint = self
            .endpoints(reference)
            .pop()
            .expect("the registry itself is last");
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static(haul_oci::manifest::OCI_INDEX),
        );
        let what = format!("the referrers of {digest} in {}", reference.full_name());
        let response = match self
            .get(
                &endpoint,
                &format!("referrers/{digest}"),
                headers,
                &what,
                &mut self.attempts(&warn_retry),
            )
            .await
        {
            Ok(response) => response,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(RegistryError::Status { status, .. }) if status.is_client_error() => {
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = read_manifest_body(response, &endpoint, &what).await?;
        Ok(Some(FetchedManifest {
            digest: Digest::of(&bytes),
            bytes,
            content_type,
        }))
    }

    /// A small blob (a config, a signature payload) read whole into memory, its digest
    /// checked. One over [`MAX_MANIFEST_BYTES`] is refused unread.
    pub async fn get_small_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        if size > MAX_MANIFEST_BYTES {
            return Err(RegistryError::BlobTooLarge {
                reference: reference.to_string(),
                digest: digest.clone(),
                size,
            });
        }
        let mut stream = self
            .get_blob(reference, digest, size, 0, &warn_retry)
            .await?;
        // The stream hands out exactly `size` bytes, or fails.
        let mut bytes = Vec::with_capacity(size as usize);
        while let Some(chunk) = stream.next_chunk().await? {
            bytes.extend_from_slice(&chunk);
        }
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(RegistryError::BlobDigestMismatch {
                reference: reference.to_string(),
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Opens a download of blob `digest` (`size` bytes) from `reference`'s repository,
    /// resuming at byte `offset`; see [`BlobStream`]. Retries are told to `on_retry`.
    pub async fn get_blob<'a>(
        &'a self,
        reference: &'a Reference,
        digest: &'a Digest,
        size: u64,
        offset: u64,
        on_retry: &'a RetryReport,
    ) -> Result<BlobStream<'a>, RegistryError> {
        BlobStream::open(self, reference, digest, size, offset, on_retry).await
    }

    /// One GET of the blob from byte `offset`, from the first of the repository's mirrors (or
    /// the registry) that has it. Returns the response and who served it.
    async fn open_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        offset: u64,
        attempts: &mut Attempts<'_>,
    ) -> Result<(reqwest::Response, String), RegistryError> {
        let mut headers = HeaderMap::new();
        if offset > 0 {
            let range = HeaderValue::from_str(&format!("bytes={offset}-")).expect("ASCII header");
            headers.insert(reqwest::header::RANGE, range);
        }
        let what = format!("blob {digest} of {}", reference.full_name());
        let suffix = format!("blobs/{digest}");
        for endpoint in self.endpoints(reference) {
            match self
                .get(&endpoint, &suffix, headers.clone(), &what, attempts)
                .await
            {
                Ok(response) => return Ok((response, endpoint.registry)),
                Err(error) if endpoint.is_mirror => self.mirror_failed(&endpoint, error),
                Err(error) => return Err(error),
            }
        }
        unreachable!("the registry itself is the last endpoint")
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
        let text = haul_oci::error::describe(&error);
        match error {
            RegistryError::NotFound { .. } => {
                tracing::debug!("mirror {}: {text}; trying the next source", mirror.host);
            }
            RegistryError::Connect { .. }
            | RegistryError::Certificate { .. }
            | RegistryError::NoSystemRoots { .. } => {
                self.unreachable_mirrors
                    .lock()
                    .unwrap()
                    .insert(mirror.host.clone());
                tracing::warn!(
                    "mirror {}: {text}; not asking it again this run",
                    mirror.host
                );
            }
            _ => tracing::warn!("mirror {}: {text}; trying the next source", mirror.host),
        }
    }

    /// The failed attempts of one operation, counted and waited for as the retry policy
    /// says; each retry told to `report`.
    fn attempts<'a>(&self, report: &'a RetryReport) -> Attempts<'a> {
        Attempts::new(self.retry, report)
    }

    /// A GET, tried again as the retry policy says (connection errors, 5xx, 408 and 429,
    /// waiting as `Retry-After` says, else with backoff). `attempts` counts the failed
    /// attempts of the whole operation (a blob's download may make several GETs). A mirror
    /// that cannot be connected to is not retried: the next source is.
    async fn get(
        &self,
        endpoint: &Endpoint,
        suffix: &str,
        headers: HeaderMap,
        what: &str,
        attempts: &mut Attempts<'_>,
    ) -> Result<reqwest::Response, RegistryError> {
        // Written out rather than through `Attempts::run`: an async closure borrowing these
        // would make the download future not `Send` (rust-lang/rust#110338).
        loop {
            match self.get_once(endpoint, suffix, headers.clone(), what).await {
                Ok(response) => return Ok(response),
                Err(error @ RegistryError::Connect { .. }) if endpoint.is_mirror => {
                    return Err(error);
                }
                Err(error) => attempts.after(error).await?,
            }
        }
    }

    /// Waits as long as `--limit-rate` requires before `bytes` more may be read.
    async fn throttle(&self, bytes: usize) {
        if let Some(limiter) = &self.rate_limiter {
            limiter.consume(bytes as u64).await;
        }
    }

    /// A GET with authentication (pull access); see [`Client::request_once`].
    async fn get_once(
        &self,
        endpoint: &Endpoint,
        suffix: &str,
        headers: HeaderMap,
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let call = Call {
            method: Method::GET,
            target: Target::Suffix(suffix.to_string()),
            headers,
            body: None,
            access: Access::Pull,
            what,
        };
        self.request_once(endpoint, &call).await
    }

    /// One request with authentication: on 401 it answers the challenge once and tries
    /// again, which also renews an expired token and widens a token's scope (pull, then
    /// push). A non-success answer becomes the error that says what to do.
    async fn request_once(
        &self,
        endpoint: &Endpoint,
        call: &Call<'_>,
    ) -> Result<reqwest::Response, RegistryError> {
        let key = (endpoint.host.clone(), endpoint.repository.clone());
        let slot = self.auth.lock().unwrap().entry(key).or_default().clone();
        let mut answered_challenge = false;
        loop {
            let sent_auth = slot.lock().await.clone();
            let response = self.send(endpoint, call, sent_auth.as_deref()).await?;
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
                *current = Some(
                    self.answer_challenge(endpoint, challenge, call.access)
                        .await?,
                );
                continue;
            }
            if status.is_success() {
                return Ok(response);
            }
            let url = response.url().to_string();
            let retry_after = retry::retry_after(response.headers());
            let detail = error_detail(response).await;
            return Err(match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
                    registry: endpoint.registry.clone(),
                    repository: endpoint.repository.clone(),
                    detail,
                },
                StatusCode::NOT_FOUND => RegistryError::NotFound {
                    registry: endpoint.registry.clone(),
                    what: call.what.to_string(),
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

    /// Sends one request to `endpoint` over the transport known to work for its host, or else
    /// over each it may use in turn: HTTPS first, plain HTTP only where allowed and only when
    /// the host does not speak TLS (a certificate that fails verification is an error, not a
    /// reason to drop encryption). Credentials go only to the endpoint's own host: an upload
    /// location elsewhere (a storage service) gets none.
    async fn send(
        &self,
        endpoint: &Endpoint,
        call: &Call<'_>,
        authorization: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut known = self.transports.lock().unwrap().get(&endpoint.host).copied();
        // The first request to a host finds its transport; requests started meanwhile wait for
        // it instead of each probing (a host that lets a TLS attempt hang would hold them all).
        // A transport remembered from an earlier run is tried at once, by all.
        let remembered = self
            .options
            .remembered_transports
            .get(&endpoint.host)
            .is_some_and(|t| endpoint.transports.contains(t));
        let _probing = match known {
            Some(_) => None,
            None if remembered => None,
            None => {
                let gate = self
                    .probing
                    .lock()
                    .unwrap()
                    .entry(endpoint.host.clone())
                    .or_default()
                    .clone();
                let held = gate.lock_owned().await;
                known = self.transports.lock().unwrap().get(&endpoint.host).copied();
                // Found meanwhile: go on at once, alongside the others.
                known.is_none().then_some(held)
            }
        };
        let candidates = match known {
            Some(transport) => vec![transport],
            None => {
                // What worked last time first, then the others in their order.
                let mut candidates = endpoint.transports.clone();
                if let Some(remembered) = self.options.remembered_transports.get(&endpoint.host)
                    && let Some(at) = candidates.iter().position(|t| t == remembered)
                {
                    let remembered = candidates.remove(at);
                    candidates.insert(0, remembered);
                }
                candidates
            }
        };
        let mut last_error = None;
        for transport in candidates {
            let sending = call.body.is_some();
            let http = match (transport, sending) {
                (Transport::Https { verify: false }, false) => self.unverified_client(),
                (Transport::Https { verify: false }, true) => self
                    .http_sending_unverified
                    .as_ref()
                    .unwrap_or(&self.http_sending),
                (_, false) => &self.http,
                (_, true) => &self.http_sending,
            };
            let (url, same_origin) = match &call.target {
                Target::Suffix(suffix) => (endpoint.url(transport, suffix), true),
                Target::Location(location) => {
                    let invalid =
                        |e: <reqwest::Url as std::str::FromStr>::Err| RegistryError::Url {
                            url: location.clone(),
                            source: e.into(),
                        };
                    let base = reqwest::Url::parse(&format!(
                        "{}://{}/",
                        transport.scheme(),
                        endpoint.host
                    ))
                    .map_err(invalid)?;
                    let url = base.join(location).map_err(invalid)?;
                    // Credentials go only where they were asked for: same scheme, host and
                    // port (an upload location on a storage host, or over plain HTTP, gets none).
                    let same_origin = url.scheme() == base.scheme()
                        && url.host_str() == base.host_str()
                        && url.port_or_known_default() == base.port_or_known_default();
                    (url.to_string(), same_origin)
                }
            };
            let mut request = http
                .request(call.method.clone(), &url)
                .headers(call.headers.clone());
            if let Some(authorization) = authorization.filter(|_| same_origin) {
                request = request.header(AUTHORIZATION, authorization);
            }
            if let Some(body) = call.body {
                let (length, body) = body();
                request = request
                    .header(reqwest::header::CONTENT_LENGTH, length)
                    .body(body);
            }
            match request.send().await {
                Ok(response) => {
                    if known.is_none() {
                        self.learn_transport(endpoint, transport);
                    }
                    return Ok(response);
                }
                Err(source) if http::is_certificate_error(&source) => {
                    return Err(http::untrusted_certificate(
                        endpoint.registry.clone(),
                        endpoint.host.clone(),
                        source,
                    ));
                }
                Err(error) => {
                    tracing::debug!(
                        "{} over {}: {}",
                        endpoint.host,
                        transport.scheme(),
                        haul_oci::error::describe(&error)
                    );
                    last_error = Some(error);
                }
            }
        }
        Err(RegistryError::Connect {
            registry: endpoint.registry.clone(),
            source: last_error.expect("an endpoint has at least one transport"),
        })
    }

    /// The transport each host took this run (to remember for the next).
    pub fn learned_transports(&self) -> HashMap<String, Transport> {
        self.transports.lock().unwrap().clone()
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
        access: Access,
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
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                // The token service is trusted as its host is: verified unless listed insecure.
                let insecure = reqwest::Url::parse(&realm)
                    .is_ok_and(|url| self.options.routes.is_insecure(&auth::realm_host(&url)));
                let http = if insecure {
                    self.unverified_client()
                } else {
                    &self.http
                };
                // What the registry asked for (a mount also needs the source repository),
                // and what this request needs.
                let mut scopes: Vec<String> = scope
                    .as_deref()
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                let own = format!("repository:{}:{}", endpoint.repository, access.actions());
                if !scopes.contains(&own) {
                    scopes.push(own);
                }
                auth::fetch_token(
                    http,
                    &endpoint.registry,
                    &endpoint.repository,
                    &realm,
                    service.as_deref(),
                    &scopes,
                    credentials.as_ref(),
                )
                .await
            }
            None => Err(unauthorized(
                "the registry asked for authentication of a kind haul does not know",
            )),
        }
    }
}

/// What a request needs of the repository, for the token's scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Pull,
    Push,
}

impl Access {
    fn actions(self) -> &'static str {
        match self {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        }
    }
}

/// Where a request goes: a path under the repository, or a location the registry gave
/// (an upload's, absolute or relative to the host).
enum Target {
    Suffix(String),
    Location(String),
}

/// A request body that can be made again (a 401 or a retry sends it anew): its length and
/// the body.
type BodyFactory = dyn Fn() -> (u64, reqwest::Body) + Send + Sync;

/// One request, as [`Client::request_once`] sends it.
struct Call<'a> {
    method: Method,
    target: Target,
    headers: HeaderMap,
    body: Option<&'a BodyFactory>,
    access: Access,
    /// What is asked for, for a 404's message.
    what: &'a str,
}

/// A manifest's (or index's) body, read up to [`MAX_MANIFEST_BYTES`] and no further: a
/// registry cannot make haul hold more.
async fn read_manifest_body(
    mut response: reqwest::Response,
    endpoint: &Endpoint,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::ManifestTooLarge {
        reference: what.to_string(),
    };
    if response
        .content_length()
        .is_some_and(|len| len > MAX_MANIFEST_BYTES)
    {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| RegistryError::Transfer {
            registry: endpoint.registry.clone(),
            source,
        })?
    {
        if bytes.len() as u64 + chunk.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Says that a request for a manifest is tried again.
fn warn_retry(attempt: u32, error: &RegistryError, wait: Duration) {
    tracing::warn!(
        "{}; retrying in {:.1}s (attempt {attempt})",
        error.brief(),
        wait.as_secs_f64(),
    );
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
