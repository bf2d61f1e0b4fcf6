//! What a push asks of a registry: whether it holds a blob (HEAD), a mount from another
//! repository of the same registry, a blob upload, and a manifest (PUT, byte for byte).
//!
//! A blob larger than [`CHUNK_BYTES`] goes up in chunks (`PATCH` with `Content-Range`); after
//! each, the registry's new upload location is handed to an [`UploadJournal`], so a cut upload
//! resumes where the registry says it stands (`GET` of the location, its `Range` header), in
//! this run or the next. A registry that no longer knows the session (distribution drops one
//! whose last chunk was cut mid-way: the bytes it kept no longer match the session's state)
//! gets the blob from its start. Smaller blobs go in one `PUT`. On a stop ([`crate::UploadGate`]) the
//! request in flight ends whole and no other starts: Ctrl-C leaves sessions even distribution
//! resumes.
//!
//! Every request goes to the registry itself, never to a mirror, with push scope.
//!
//! Over 600 lines because the upload protocol (HEAD, mount, chunks, resume, the closing PUT
//! and its checks) is one sequence, told here in order.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::endpoint::Endpoint;
use super::retry::RateLimiter;
use super::{Access, BodyFactory, Call, Client, RegistryError, Target, warn_retry};
use haul_oci::digest::Digest;
use haul_oci::reference::Reference;

/// Blobs up to this size go up in one request; larger ones in chunks of this size, the most a
/// cut upload sends again.
pub const CHUNK_BYTES: u64 = 16 * 1024 * 1024;

/// Where one blob's upload session is remembered between attempts and runs: the location the
/// registry gave after the last chunk it took.
pub trait UploadJournal: Send + Sync {
    fn load(&self) -> Option<String>;
    fn save(&self, location: &str);
    fn clear(&self);
}

/// Told of body bytes as they are sent.
pub type UploadProgress = dyn Fn(u64) + Send + Sync;

/// How one upload went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadReport {
    /// Where the first attempt started: the bytes the registry already had.
    pub resumed_at: u64,
    /// Body bytes sent, over every attempt.
    pub sent: u64,
}

/// Where the bytes of a blob to upload come from: the caller's business (a cached blob, a file
/// inside a tar). The registry asks for ranges, and may ask for one again when a chunk is sent
/// again.
pub trait UploadSource: Send + Sync {
    /// The blob's size.
    fn size(&self) -> u64;
    /// A reader of `len` bytes from `offset`.
    fn open(&self, offset: u64, len: u64) -> BoxFuture<'static, std::io::Result<UploadReader>>;
    /// For messages: where the bytes are read from.
    fn describe(&self) -> String;
}

/// What [`UploadSource::open`] hands back.
pub type UploadReader = Pin<Box<dyn AsyncRead + Send>>;

impl Client {
    /// The registry itself: pushes never go to mirrors.
    fn push_endpoint(&self, repository: &Reference) -> Endpoint {
        let mut endpoints = self.options.routes.endpoints(repository);
        endpoints
            .pop()
            .expect("the registry itself is the last endpoint")
    }

    /// `attempt`, tried again after a transient failure as the retry policy says.
    async fn retrying<T>(
        &self,
        attempt: impl AsyncFnMut() -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        self.attempts(&warn_retry).run(attempt).await
    }

    /// A request of a push, tried again as the retry policy says.
    async fn push_request(
        &self,
        endpoint: &Endpoint,
        call: &Call<'_>,
    ) -> Result<reqwest::Response, RegistryError> {
        self.retrying(async || self.request_once(endpoint, call).await)
            .await
    }

    /// Whether `repository` holds blob `digest`.
    pub async fn has_blob(
        &self,
        repository: &Reference,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let endpoint = self.push_endpoint(repository);
        self.retrying(async || self.has_blob_at(&endpoint, digest).await)
            .await
    }

    /// Asks the registry to link blob `digest` from its repository `from` into `repository`
    /// (no bytes sent). Whether it did: a registry that cannot (the blob is not there, mounts
    /// are off, the token does not cover `from`) is not an error.
    pub async fn mount_blob(
        &self,
        repository: &Reference,
        digest: &Digest,
        from: &str,
    ) -> Result<bool, RegistryError> {
        let endpoint = self.push_endpoint(repository);
        let what = format!("a mount of blob {digest} from {from}");
        let call = Call {
            method: Method::POST,
            target: Target::Suffix(format!("blobs/uploads/?mount={digest}&from={from}")),
            headers: HeaderMap::new(),
            body: None,
            access: Access::Push,
            what: &what,
        };
        let response = match self.push_request(&endpoint, &call).await {
            Ok(response) => response,
            Err(
                error @ (RegistryError::Connect { .. }
                | RegistryError::Certificate { .. }
                | RegistryError::NoSystemRoots { .. }),
            ) => {
                return Err(error);
            }
            Err(error) => {
                tracing::debug!("{what}: {}", haul_oci::error::describe(&error));
                return Ok(false);
            }
        };
        if response.status() == StatusCode::CREATED {
            return Ok(true);
        }
        // 202: the registry opened an upload instead; give it back.
        if let Some(location) = location_of(&response) {
            let cancel = Call {
                method: Method::DELETE,
                target: Target::Location(location),
                headers: HeaderMap::new(),
                body: None,
                access: Access::Push,
                what: &what,
            };
            let _ = self.request_once(&endpoint, &cancel).await;
        }
        Ok(false)
    }

    /// Uploads blob `digest` from `source` into `repository`, resuming the session `journal`
    /// remembers when the registry still has it. Transient failures are retried as the retry
    /// policy says, each attempt resuming where the registry stands.
    pub async fn upload_blob(
        &self,
        repository: &Reference,
        digest: &Digest,
        source: Arc<dyn UploadSource>,
        journal: &dyn UploadJournal,
        progress: Arc<UploadProgress>,
    ) -> Result<UploadReport, RegistryError> {
        let endpoint = self.push_endpoint(repository);
        let sent = Arc::new(AtomicU64::new(0));
        let counted: Arc<UploadProgress> = {
            let sent = sent.clone();
            Arc::new(move |bytes| {
                sent.fetch_add(bytes, Ordering::Relaxed);
                progress(bytes);
            })
        };
        let mut resumed_at = None;
        // Each attempt resumes where the registry stands.
        self.retrying(async || {
            self.upload_attempt(
                &endpoint,
                digest,
                &source,
                journal,
                &counted,
                &mut resumed_at,
            )
            .await
        })
        .await?;
        journal.clear();
        Ok(UploadReport {
            resumed_at: resumed_at.unwrap_or(0),
            sent: sent.load(Ordering::Relaxed),
        })
    }

    async fn upload_attempt(
        &self,
        endpoint: &Endpoint,
        digest: &Digest,
        source: &Arc<dyn UploadSource>,
        journal: &dyn UploadJournal,
        progress: &Arc<UploadProgress>,
        resumed_at: &mut Option<u64>,
    ) -> Result<(), RegistryError> {
        let size = source.size();
        let what = format!("the upload of blob {digest} to {}", endpoint.repository);
        let stopped = || RegistryError::Stopped {
            registry: endpoint.registry.clone(),
            digest: digest.clone(),
        };
        if self.options.uploads.stopping() {
            return Err(stopped());
        }
        let saved = journal.load();
        let resumed = match &saved {
            Some(location) => self.upload_status(endpoint, location, &what).await?,
            None => None,
        };
        let (mut location, mut offset) = match resumed {
            Some((location, offset)) if offset <= size => (location, offset),
            _ => {
                if saved.is_some() {
                    // The session may be gone because it completed (its answer was lost).
                    if self.has_blob_at(endpoint, digest).await? {
                        return Ok(());
                    }
                    tracing::warn!(
                        "{}: the registry no longer has {what} begun earlier; starting it over",
                        endpoint.registry
                    );
                }
                (self.start_upload(endpoint, &what).await?, 0)
            }
        };
        resumed_at.get_or_insert(offset);
        journal.save(&location);
        let limiter = self.rate_limiter.clone();
        let range_body = |start: u64, len: u64, watch: &BodyWatch| -> Box<BodyFactory> {
            let (source, limiter, progress) = (source.clone(), limiter.clone(), progress.clone());
            let watch = watch.clone();
            Box::new(move || {
                let body = range_body(
                    source.clone(),
                    start,
                    len,
                    limiter.clone(),
                    progress.clone(),
                    watch.clone(),
                );
                (len, body)
            })
        };
        if size <= CHUNK_BYTES && offset == 0 {
            // Small: the whole blob with the closing PUT.
            let _in_flight = self.options.uploads.enter().ok_or_else(stopped)?;
            let watch = BodyWatch::new(source.describe());
            let body = range_body(0, size, &watch);
            return self
                .finish_upload(endpoint, &location, digest, Some((&*body, &watch)), &what)
                .await;
        }
        while offset < size {
            // Between chunks, where a stop leaves a session the next run resumes.
            let _in_flight = self.options.uploads.enter().ok_or_else(stopped)?;
            let len = CHUNK_BYTES.min(size - offset);
            let watch = BodyWatch::new(source.describe());
            let body = range_body(offset, len, &watch);
            let mut headers = HeaderMap::new();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            let range = format!("{offset}-{}", offset + len - 1);
            headers.insert(
                CONTENT_RANGE,
                HeaderValue::from_str(&range).expect("ASCII header"),
            );
            let call = Call {
                method: Method::PATCH,
                target: Target::Location(location.clone()),
                headers,
                body: Some(&*body),
                access: Access::Push,
                what: &what,
            };
            let response = self.sending(endpoint, &call, &watch).await?;
            let expected = offset + len;
            let held = upload_range_end(&response).unwrap_or(expected);
            if held <= offset {
                // It took nothing: sending the chunk again would go round for ever.
                return Err(RegistryError::Status {
                    registry: endpoint.registry.clone(),
                    status: response.status(),
                    url: response.url().to_string(),
                    detail: format!(
                        "the registry took none of the chunk at byte {offset} of {what}"
                    ),
                    retry_after: None,
                });
            }
            if held != expected {
                tracing::debug!("{what}: the registry holds {held} bytes, not {expected}");
            }
            offset = held;
            location = location_of(&response).unwrap_or(location);
            journal.save(&location);
        }
        self.finish_upload(endpoint, &location, digest, None, &what)
            .await
    }

    /// Sends a request whose body is a blob's bytes, failing it when no byte goes out (or, after
    /// the last, no answer comes) for the stall timeout; an error reading the file is that
    /// error, not the network's.
    async fn sending(
        &self,
        endpoint: &Endpoint,
        call: &Call<'_>,
        watch: &BodyWatch,
    ) -> Result<reqwest::Response, RegistryError> {
        let limit = self.options.stall_timeout();
        let result = tokio::select! {
            result = self.request_once(endpoint, call) => result,
            () = watch.stalled(limit) => Err(RegistryError::UploadStalled {
                registry: endpoint.registry.clone(),
                seconds: limit.as_secs(),
            }),
        };
        match (result, watch.failure()) {
            (Err(_), Some(source)) => Err(RegistryError::ReadBlob {
                what: watch.what.clone(),
                source,
            }),
            (result, _) => result,
        }
    }

    /// Whether the endpoint's repository holds `digest` now (HEAD, once).
    async fn has_blob_at(
        &self,
        endpoint: &Endpoint,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let what = format!("blob {digest}");
        let call = Call {
            method: Method::HEAD,
            target: Target::Suffix(format!("blobs/{digest}")),
            headers: HeaderMap::new(),
            body: None,
            access: Access::Push,
            what: &what,
        };
        match self.request_once(endpoint, &call).await {
            Ok(_) => Ok(true),
            Err(RegistryError::NotFound { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Opens an upload session; returns its location.
    async fn start_upload(&self, endpoint: &Endpoint, what: &str) -> Result<String, RegistryError> {
        let call = Call {
            method: Method::POST,
            target: Target::Suffix("blobs/uploads/".to_string()),
            headers: HeaderMap::new(),
            body: None,
            access: Access::Push,
            what,
        };
        let response = self.request_once(endpoint, &call).await?;
        location_of(&response).ok_or_else(|| RegistryError::Status {
            registry: endpoint.registry.clone(),
            status: response.status(),
            url: response.url().to_string(),
            detail: "the answer to a blob upload has no Location".to_string(),
            retry_after: None,
        })
    }

    /// Where the session at `location` stands: its current location and how many bytes it
    /// holds, or `None` when the registry no longer has it.
    async fn upload_status(
        &self,
        endpoint: &Endpoint,
        location: &str,
        what: &str,
    ) -> Result<Option<(String, u64)>, RegistryError> {
        let call = Call {
            method: Method::GET,
            target: Target::Location(location.to_string()),
            headers: HeaderMap::new(),
            body: None,
            access: Access::Push,
            what,
        };
        match self.request_once(endpoint, &call).await {
            Ok(response) => {
                let offset = upload_range_end(&response).unwrap_or(0);
                let location = location_of(&response).unwrap_or(location.to_string());
                Ok(Some((location, offset)))
            }
            Err(error) if error.is_retryable() => Err(error),
            Err(error) => {
                tracing::debug!("{what}: {}", haul_oci::error::describe(&error));
                Ok(None)
            }
        }
    }

    /// The closing PUT (with the whole blob when `body` is given): the registry checks the
    /// digest and keeps the blob.
    async fn finish_upload(
        &self,
        endpoint: &Endpoint,
        location: &str,
        digest: &Digest,
        body: Option<(&BodyFactory, &BodyWatch)>,
        what: &str,
    ) -> Result<(), RegistryError> {
        let separator = if location.contains('?') { '&' } else { '?' };
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let empty: &BodyFactory = &|| (0, reqwest::Body::from(Bytes::new()));
        let call = Call {
            method: Method::PUT,
            target: Target::Location(format!("{location}{separator}digest={digest}")),
            headers,
            body: Some(body.map_or(empty, |(factory, _)| factory)),
            access: Access::Push,
            what,
        };
        match body {
            Some((_, watch)) => self.sending(endpoint, &call, watch).await?,
            None => self.request_once(endpoint, &call).await?,
        };
        Ok(())
    }

    /// What `repository` holds under `identifier` at the registry itself (never a mirror: a
    /// push reads what it is about to add to), or `None`.
    pub async fn get_pushed_manifest(
        &self,
        repository: &Reference,
        identifier: &haul_oci::reference::Identifier,
    ) -> Result<Option<super::FetchedManifest>, RegistryError> {
        let endpoint = self.push_endpoint(repository);
        match self
            .get_manifest_from(&endpoint, repository, identifier)
            .await
        {
            Ok(fetched) => Ok(Some(fetched)),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// PUTs a manifest (or index) byte for byte under `identifier` (its digest, or a tag) in
    /// `repository`. A registry that answers with another digest changed it: an error.
    pub async fn put_manifest(
        &self,
        repository: &Reference,
        identifier: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        let endpoint = self.push_endpoint(repository);
        let what = format!(
            "manifest {identifier} of {} (a blob it names may be missing)",
            repository.full_name()
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type).map_err(|e| RegistryError::Url {
                url: media_type.to_string(),
                source: e.into(),
            })?,
        );
        let body = Bytes::copy_from_slice(bytes);
        let factory: &BodyFactory = &move || (body.len() as u64, reqwest::Body::from(body.clone()));
        let call = Call {
            method: Method::PUT,
            target: Target::Suffix(format!("manifests/{identifier}")),
            headers,
            body: Some(factory),
            access: Access::Push,
            what: &what,
        };
        let response = self.push_request(&endpoint, &call).await?;
        let expected = Digest::of(bytes);
        if let Some(stored) = header(
            &response,
            reqwest::header::HeaderName::from_static("docker-content-digest"),
        ) && stored != expected.to_string()
        {
            return Err(RegistryError::Status {
                registry: endpoint.registry.clone(),
                status: response.status(),
                url: response.url().to_string(),
                detail: format!(
                    "the registry stored manifest {identifier} as {stored}, not {expected}: it \
                     changed the bytes, so the image's digest would not be kept"
                ),
                retry_after: None,
            });
        }
        Ok(())
    }
}

/// The `Location` of an answer, made absolute against the request's URL.
fn location_of(response: &reqwest::Response) -> Option<String> {
    let location = header(response, LOCATION)?;
    Some(
        response
            .url()
            .join(&location)
            .map_or(location, |url| url.to_string()),
    )
}

/// What a body being sent reports: when its last bytes went out, and a failure to read them.
#[derive(Clone)]
struct BodyWatch {
    /// Where the bytes are read from (for messages).
    what: String,
    last: Arc<Mutex<tokio::time::Instant>>,
    failure: Arc<Mutex<Option<std::io::Error>>>,
}

impl BodyWatch {
    fn new(what: String) -> BodyWatch {
        BodyWatch {
            what,
            last: Arc::new(Mutex::new(tokio::time::Instant::now())),
            failure: Arc::default(),
        }
    }

    fn touch(&self) {
        *self.last.lock().unwrap() = tokio::time::Instant::now();
    }

    fn fail(&self, error: &std::io::Error) {
        *self.failure.lock().unwrap() = Some(std::io::Error::new(error.kind(), error.to_string()));
    }

    fn failure(&self) -> Option<std::io::Error> {
        self.failure.lock().unwrap().take()
    }

    /// Returns once nothing has moved for `limit`.
    async fn stalled(&self, limit: Duration) {
        loop {
            let last = *self.last.lock().unwrap();
            tokio::time::sleep_until(last + limit).await;
            if *self.last.lock().unwrap() == last {
                return;
            }
        }
    }
}

fn header(response: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The byte after the last one the registry holds, from an upload's `Range: 0-N` (or
/// `bytes=0-N`). `0-0` is read as nothing held: distribution says the same for 0 and 1 bytes.
fn upload_range_end(response: &reqwest::Response) -> Option<u64> {
    range_end(&header(response, reqwest::header::RANGE)?)
}

pub(crate) fn range_end(range: &str) -> Option<u64> {
    let range = range.trim().trim_start_matches("bytes=");
    let (_, end) = range.split_once('-')?;
    let end: u64 = end.trim().parse().ok()?;
    // A registry's u64::MAX names no byte haul could have sent: not a number, not a panic.
    if end == 0 {
        Some(0)
    } else {
        end.checked_add(1)
    }
}

/// `len` bytes of `source` from `offset`, read as they are sent, under the rate limit.
fn range_body(
    source: Arc<dyn UploadSource>,
    offset: u64,
    len: u64,
    limiter: Option<Arc<RateLimiter>>,
    progress: Arc<UploadProgress>,
    watch: BodyWatch,
) -> reqwest::Body {
    let stream = futures::stream::try_unfold(
        RangeState {
            reader: None,
            remaining: len,
        },
        move |mut state| {
            let (source, limiter, progress) = (source.clone(), limiter.clone(), progress.clone());
            let watch = watch.clone();
            async move {
                if state.remaining == 0 {
                    return Ok::<_, std::io::Error>(None);
                }
                let read = read_some(&*source, offset, &mut state).await;
                let buffer = read.inspect_err(|e| watch.fail(e))?;
                state.remaining -= buffer.len() as u64;
                if let Some(limiter) = &limiter {
                    limiter.consume(buffer.len() as u64).await;
                }
                progress(buffer.len() as u64);
                watch.touch();
                Ok(Some((Bytes::from(buffer), state)))
            }
        },
    );
    reqwest::Body::wrap_stream(stream)
}

/// The next bytes of the range (opening it the first time).
async fn read_some(
    source: &dyn UploadSource,
    offset: u64,
    state: &mut RangeState,
) -> std::io::Result<Vec<u8>> {
    const READ_BYTES: u64 = 256 * 1024;
    let reader = match &mut state.reader {
        Some(reader) => reader,
        None => state
            .reader
            .insert(source.open(offset, state.remaining).await?),
    };
    let mut buffer = vec![0u8; READ_BYTES.min(state.remaining) as usize];
    let read = reader.read(&mut buffer).await?;
    if read == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "{} ended before the blob did (was it changed?)",
                source.describe()
            ),
        ));
    }
    buffer.truncate(read);
    Ok(buffer)
}

/// Where a range body stands.
struct RangeState {
    reader: Option<UploadReader>,
    remaining: u64,
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_how_much_the_registry_holds() {
        assert_eq!(super::range_end("0-16777215"), Some(16 << 20));
        assert_eq!(super::range_end("bytes=0-99"), Some(100));
        assert_eq!(super::range_end("0-0"), Some(0));
        assert_eq!(super::range_end("garbage"), None);
    }

    #[test]
    fn chunks_are_large_enough_for_every_registry() {
        // Some registries refuse chunks under 5 MiB (but the last).
        const { assert!(super::CHUNK_BYTES >= 5 * 1024 * 1024) };
    }
}
