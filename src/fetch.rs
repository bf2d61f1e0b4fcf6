//! Downloads blobs into the cache: several at once, each streamed through the verifier into
//! its partial file, resumed with a Range request when a partial file exists, retried on
//! transient errors. The only module that uses both the registry client and the cache.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use reqwest::StatusCode;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::cache::{BlobStore, CacheError, StoredBlob};
use crate::decompress::{DecompressError, decompress_layer};
use crate::digest::Digest;
use crate::manifest::{Compression, Descriptor, MAX_MANIFEST_BYTES};
use crate::progress::{Event, Progress};
use crate::reference::Reference;
use crate::registry::{Client, RegistryError, transfer_error};

/// A blob to have in the cache, and the image (repository) to fetch it from.
#[derive(Clone, Debug)]
pub struct BlobRequest {
    pub reference: Reference,
    pub descriptor: Descriptor,
    /// Wanted uncompressed, as the blob with this digest (the layer's diff_id).
    pub uncompressed: Option<Digest>,
}

impl BlobRequest {
    pub fn new(reference: Reference, descriptor: Descriptor) -> BlobRequest {
        BlobRequest {
            reference,
            descriptor,
            uncompressed: None,
        }
    }
}

/// A download that failed, naming the image and the blob.
#[derive(Debug, thiserror::Error)]
#[error("{image}: blob {digest}: {kind}")]
pub struct FetchError {
    pub image: String,
    pub digest: Digest,
    pub kind: FetchErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchErrorKind {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(
        "the registry sent more than the {expected} bytes the manifest declares; nothing was stored"
    )]
    TooLong { expected: u64 },
    #[error(
        "the registry serves {announced} bytes but the manifest declares {declared}; \
         the image in the registry is inconsistent, nothing was stored"
    )]
    LengthMismatch { declared: u64, announced: u64 },
    #[error(
        "not in the cache, and --offline forbids downloading it; run `haul pull` for this image once with network access"
    )]
    NotCached,
    #[error("its media type {0:?} is not a layer compression haul can undo (gzip, zstd or none)")]
    UnknownCompression(String),
    #[error(transparent)]
    Decompress(#[from] DecompressError),
    #[error("the download task was lost: {0}")]
    Task(String),
    #[error("it declares {size} bytes, more than the {limit} haul reads into memory")]
    TooLargeToRead { size: u64, limit: u64 },
}

/// Settings for a run's downloads.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Downloads at once.
    pub jobs: usize,
    /// Further attempts after a transfer cut mid-way.
    pub retries: u32,
    /// Use the cache only.
    pub offline: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            jobs: 4,
            retries: 3,
            offline: false,
        }
    }
}

/// Fetches blobs for one run. Cheap to clone.
#[derive(Clone)]
pub struct Fetcher {
    client: Arc<Client>,
    store: BlobStore,
    progress: Arc<dyn Progress>,
    options: FetchOptions,
    slots: Arc<Semaphore>,
    /// Blobs already reported as cached, so a blob checked twice in a run is told once.
    reported: Arc<std::sync::Mutex<std::collections::HashSet<Digest>>>,
}

/// Downloads under way, one task per distinct blob, started in plan order. Dropping it
/// cancels what has not finished (partial files stay for the next run).
pub struct Downloads {
    tasks: HashMap<Digest, JoinHandle<Result<StoredBlob, FetchError>>>,
}

impl Fetcher {
    pub fn new(
        client: Arc<Client>,
        store: BlobStore,
        progress: Arc<dyn Progress>,
        options: FetchOptions,
    ) -> Fetcher {
        let slots = Arc::new(Semaphore::new(options.jobs.max(1)));
        Fetcher {
            client,
            store,
            progress,
            options,
            slots,
            reported: Arc::default(),
        }
    }

    /// Starts every request at once; at most `jobs` transfer at a time, the rest wait in
    /// order (tokio's semaphore is fair), so the tar writer's next blob comes first.
    /// First says what the run needs and what of it is missing ([`Event::Planned`]).
    pub fn start(&self, requests: Vec<BlobRequest>) -> Downloads {
        let mut seen = std::collections::HashSet::new();
        let requests: Vec<BlobRequest> = requests
            .into_iter()
            .filter(|request| seen.insert(request.descriptor.digest.clone()))
            .collect();
        let missing: Vec<&BlobRequest> = requests.iter().filter(|r| !self.has(r)).collect();
        self.progress.event(Event::Planned {
            blobs: requests.len(),
            bytes: requests.iter().map(|r| r.descriptor.size).sum(),
            missing: missing.len(),
            missing_bytes: missing.iter().map(|r| r.descriptor.size).sum(),
        });
        let mut tasks = HashMap::new();
        for request in requests {
            let fetcher = self.clone();
            let digest = request.descriptor.digest.clone();
            tasks.insert(
                digest,
                tokio::spawn(async move { fetcher.fetch(&request).await }),
            );
        }
        Downloads { tasks }
    }

    /// Whether the cache already has what `request` asks for: the blob, or its uncompressed
    /// form when that is wanted.
    fn has(&self, request: &BlobRequest) -> bool {
        let descriptor = &request.descriptor;
        self.store.contains(&descriptor.digest, descriptor.size)
            || request
                .uncompressed
                .as_ref()
                .is_some_and(|diff_id| self.store.size_of(diff_id).is_some())
    }

    /// Makes sure one blob (or its uncompressed form, when asked) is in the cache.
    pub async fn fetch(&self, request: &BlobRequest) -> Result<StoredBlob, FetchError> {
        let descriptor = &request.descriptor;
        let error = |kind: FetchErrorKind| FetchError {
            image: request.reference.to_string(),
            digest: descriptor.digest.clone(),
            kind,
        };
        let as_is = |path| StoredBlob {
            path,
            digest: descriptor.digest.clone(),
            size: descriptor.size,
        };
        let Some(diff_id) = &request.uncompressed else {
            return self.fetch_blob(request).await.map(as_is);
        };
        let compression = match Compression::of_layer(&descriptor.media_type) {
            Compression::Unknown => {
                return Err(error(FetchErrorKind::UnknownCompression(
                    descriptor.media_type.clone(),
                )));
            }
            Compression::Uncompressed => return self.fetch_blob(request).await.map(as_is),
            compression => compression,
        };
        // Decompressed by an earlier run: neither the download nor the work is needed.
        if let Some(size) = self.store.size_of(diff_id) {
            self.report_cached(diff_id, size);
            return Ok(StoredBlob {
                path: self.store.blob_path(diff_id),
                digest: diff_id.clone(),
                size,
            });
        }
        let compressed = self.fetch_blob(request).await?;
        self.progress.event(Event::DecompressStarted {
            digest: descriptor.digest.clone(),
            size: descriptor.size,
        });
        let (path, size) = decompress_layer(&self.store, &compressed, compression, diff_id)
            .await
            .map_err(|e| error(e.into()))?;
        self.progress.event(Event::Decompressed {
            digest: descriptor.digest.clone(),
            diff_id: diff_id.clone(),
            size,
        });
        Ok(StoredBlob {
            path,
            digest: diff_id.clone(),
            size,
        })
    }

    /// Says once per run that a blob was found in the cache.
    fn report_cached(&self, digest: &Digest, size: u64) {
        let first_time = self
            .reported
            .lock()
            .is_ok_and(|mut reported| reported.insert(digest.clone()));
        if first_time {
            self.progress.event(Event::Cached {
                digest: digest.clone(),
                size,
            });
        }
    }

    /// Makes sure the blob itself is in the cache and returns its path.
    async fn fetch_blob(&self, request: &BlobRequest) -> Result<PathBuf, FetchError> {
        let digest = &request.descriptor.digest;
        let error = |kind: FetchErrorKind| FetchError {
            image: request.reference.to_string(),
            digest: digest.clone(),
            kind,
        };
        let size = request.descriptor.size;
        if self.store.contains(digest, size) {
            self.report_cached(digest, size);
            return Ok(self.store.blob_path(digest));
        }
        if self.options.offline {
            return Err(error(FetchErrorKind::NotCached));
        }
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| error(FetchErrorKind::Task(e.to_string())))?;
        let progress = self.progress.clone();
        let waiting = digest.clone();
        let mut ingest = self
            .store
            .begin_ingest(digest, move || {
                progress.event(Event::WaitingForLock { digest: waiting })
            })
            .await
            .map_err(|e| error(e.into()))?;
        if ingest.already_committed(size) {
            // Another process (or task: two images with one config) finished it while this
            // one waited for the lock.
            self.report_cached(digest, size);
            return Ok(self.store.blob_path(digest));
        }

        let mut fetched = 0u64;
        let mut attempt = 0u32;
        loop {
            match self.transfer(request, &mut ingest, &mut fetched).await {
                Ok(()) => break,
                Err(kind) => {
                    // Requests are retried inside the client; here only a body cut mid-way,
                    // which resumes from where it stopped.
                    let retryable = matches!(
                        &kind,
                        FetchErrorKind::Registry(RegistryError::Transfer { .. })
                    );
                    if !retryable || attempt >= self.options.retries {
                        return Err(error(kind));
                    }
                    attempt += 1;
                    self.progress.event(Event::Retrying {
                        digest: digest.clone(),
                        attempt,
                        error: kind.to_string(),
                    });
                    tokio::time::sleep(crate::registry::transport::backoff(attempt)).await;
                }
            }
        }
        // Before the commit releases the lock: a task waiting for it then says nothing more.
        if let Ok(mut reported) = self.reported.lock() {
            reported.insert(digest.clone());
        }
        let path = tokio::task::spawn_blocking(move || ingest.commit(Some(size)))
            .await
            .map_err(|e| error(FetchErrorKind::Task(e.to_string())))?
            .map_err(|e| error(e.into()))?;
        self.progress.event(Event::DownloadFinished {
            digest: digest.clone(),
            size,
            fetched,
        });
        Ok(path)
    }

    /// A small blob (an image config): from the cache when it is there, else downloaded into
    /// memory and checked against its size and digest, but not stored (`inspect` looks and
    /// leaves the cache as it was).
    pub async fn read_small(&self, request: &BlobRequest) -> Result<Vec<u8>, FetchError> {
        let digest = &request.descriptor.digest;
        let size = request.descriptor.size;
        let error = |kind: FetchErrorKind| FetchError {
            image: request.reference.to_string(),
            digest: digest.clone(),
            kind,
        };
        if self.store.contains(digest, size) {
            return self
                .store
                .read_verified(digest)
                .map_err(|e| error(e.into()));
        }
        if self.options.offline {
            return Err(error(FetchErrorKind::NotCached));
        }
        if size > MAX_MANIFEST_BYTES {
            return Err(error(FetchErrorKind::TooLargeToRead {
                size,
                limit: MAX_MANIFEST_BYTES,
            }));
        }
        let blob = self
            .client
            .get_blob(&request.reference, digest, 0)
            .await
            .map_err(|e| error(e.into()))?;
        let mut response = blob.response;
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| error(transfer_error(&blob.source, &e).into()))?
        {
            if bytes.len() as u64 + chunk.len() as u64 > size {
                return Err(error(FetchErrorKind::TooLong { expected: size }));
            }
            self.client.throttle(chunk.len()).await;
            bytes.extend_from_slice(&chunk);
        }
        if bytes.len() as u64 != size {
            return Err(error(
                CacheError::SizeMismatch {
                    digest: digest.clone(),
                    expected: size,
                    actual: bytes.len() as u64,
                }
                .into(),
            ));
        }
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(error(
                CacheError::DigestMismatch {
                    expected: digest.clone(),
                    actual,
                    size,
                }
                .into(),
            ));
        }
        Ok(bytes)
    }

    /// One attempt: from the partial file's end (Range) or from 0, up to the declared size.
    async fn transfer(
        &self,
        request: &BlobRequest,
        ingest: &mut crate::cache::Ingest,
        fetched: &mut u64,
    ) -> Result<(), FetchErrorKind> {
        let digest = &request.descriptor.digest;
        let size = request.descriptor.size;
        let mut offset = ingest.offset();
        if offset > size {
            ingest.restart()?;
            offset = 0;
        }
        if offset == size && size > 0 {
            return Ok(()); // complete from an earlier run; commit verifies it
        }
        let blob = match self
            .client
            .get_blob(&request.reference, digest, offset)
            .await
        {
            Err(RegistryError::Status { status, .. })
                if status == StatusCode::RANGE_NOT_SATISFIABLE =>
            {
                ingest.restart()?;
                offset = 0;
                self.client.get_blob(&request.reference, digest, 0).await?
            }
            other => other?,
        };
        if offset > 0 && !blob.resumed {
            ingest.restart()?;
            self.progress.event(Event::Restarted {
                digest: digest.clone(),
            });
        }
        self.progress.event(Event::DownloadStarted {
            digest: digest.clone(),
            size,
            offset: ingest.offset(),
        });
        let source = blob.source;
        let mut response = blob.response;
        // A body whose announced length differs from what the manifest declares can only
        // fail verification: say so now, without downloading it.
        let expected = size - ingest.offset();
        if let Some(announced) = response.content_length()
            && announced != expected
        {
            ingest.restart()?;
            return Err(FetchErrorKind::LengthMismatch {
                declared: size,
                announced: announced + (size - expected),
            });
        }
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    ingest.flush()?;
                    return Err(transfer_error(&source, &e).into());
                }
            };
            // Never write past the declared size: a registry that sends more is wrong.
            if ingest.offset() + chunk.len() as u64 > size {
                ingest.restart()?;
                return Err(FetchErrorKind::TooLong { expected: size });
            }
            self.client.throttle(chunk.len()).await;
            ingest.write(&chunk)?;
            *fetched += chunk.len() as u64;
            self.progress.event(Event::Downloaded {
                digest: digest.clone(),
                bytes: chunk.len() as u64,
            });
        }
        ingest.flush()?;
        if ingest.offset() < size {
            return Err(RegistryError::Transfer {
                registry: request.reference.registry().to_string(),
                detail: format!(
                    "the connection ended after {} of {size} bytes",
                    ingest.offset()
                ),
            }
            .into());
        }
        Ok(())
    }
}

impl Downloads {
    /// Waits for the request for blob `digest` and returns what it stored. Each blob is
    /// waited for once (the tar holds it once).
    pub async fn wait(&mut self, digest: &Digest) -> Result<StoredBlob, FetchError> {
        let lost = |detail: String| FetchError {
            image: String::new(),
            digest: digest.clone(),
            kind: FetchErrorKind::Task(detail),
        };
        let task = self
            .tasks
            .remove(digest)
            .ok_or_else(|| lost("the blob was not planned, or was waited for twice".to_string()))?;
        task.await.map_err(|e| lost(e.to_string()))?
    }
}

impl Drop for Downloads {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}
