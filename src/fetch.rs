//! Downloads blobs into the cache: several at once, each streamed from the registry's
//! [`BlobStream`](crate::registry::BlobStream) into its ingest, resumed from the partial file
//! an earlier run left. The only module that uses both the registry client and the cache.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::cache::{BlobStore, CacheError, IngestStart, IngestWriter, StoredBlob};
use crate::decompress::{DecompressError, decompress_layer};
use crate::digest::Digest;
use crate::manifest::{Compression, Descriptor, MAX_MANIFEST_BYTES};
use crate::progress::{Event, Progress};
use crate::reference::Reference;
use crate::registry::{Client, RegistryError};

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

    /// The blob the request ends in: the one asked for, or its uncompressed form.
    pub fn tar_blob(&self) -> &Digest {
        self.uncompressed
            .as_ref()
            .unwrap_or(&self.descriptor.digest)
    }
}

/// A download that failed, naming the image and the blob; the cause is its source.
#[derive(Debug, thiserror::Error)]
#[error("{image}: blob {digest}")]
pub struct FetchError {
    pub image: String,
    pub digest: Digest,
    #[source]
    pub kind: FetchErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchErrorKind {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(
        "not in the cache, and --offline forbids downloading it; run `haul pull` for this image once with network access"
    )]
    NotCached,
    #[error("its media type {0:?} is not a layer compression haul can undo (gzip, zstd or none)")]
    UnknownCompression(String),
    #[error(transparent)]
    Decompress(#[from] DecompressError),
    #[error("it declares {size} bytes, more than the {limit} haul reads into memory")]
    TooLargeToRead { size: u64, limit: u64 },
    #[error("the download was cancelled")]
    Cancelled,
}

/// Settings for a run's downloads.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Downloads at once.
    pub jobs: usize,
    /// Use the cache only.
    pub offline: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            jobs: 4,
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
    reported: Arc<Mutex<HashSet<Digest>>>,
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

    /// Every blob of `requests` into the cache (each distinct one once), waited for: by
    /// digest, where each lies.
    pub async fn fetch_all(
        &self,
        requests: &[BlobRequest],
    ) -> Result<HashMap<Digest, StoredBlob>, FetchError> {
        let mut downloads = self.start(requests);
        let mut blobs = HashMap::new();
        for request in requests {
            let digest = &request.descriptor.digest;
            if !blobs.contains_key(digest) {
                let blob = downloads.wait(digest).await?;
                blobs.insert(digest.clone(), blob);
            }
        }
        Ok(blobs)
    }

    /// Starts every request at once; at most `jobs` transfer at a time, the rest wait in
    /// order (tokio's semaphore is fair), so the tar writer's next blob comes first.
    /// First says what the run needs and what of it is missing ([`Event::Planned`]).
    pub fn start(&self, requests: &[BlobRequest]) -> Downloads {
        let mut seen = HashSet::new();
        let requests: Vec<&BlobRequest> = requests
            .iter()
            .filter(|request| seen.insert(request.descriptor.digest.clone()))
            .collect();
        let missing: Vec<&&BlobRequest> = requests.iter().filter(|r| !self.has(r)).collect();
        self.progress.event(Event::Planned {
            blobs: requests.len(),
            bytes: requests.iter().map(|r| r.descriptor.size).sum(),
            missing: missing.len(),
            missing_bytes: missing.iter().map(|r| r.descriptor.size).sum(),
        });
        let mut tasks = HashMap::new();
        for request in requests {
            let fetcher = self.clone();
            let request = request.clone();
            tasks.insert(
                request.descriptor.digest.clone(),
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
        let (store, target) = (self.store.clone(), diff_id.clone());
        let (path, size) = crate::blocking::run(move || {
            decompress_layer(&store, &compressed, compression, &target)
        })
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
            .expect("the semaphore is never closed");
        let progress = self.progress.clone();
        let waiting = digest.clone();
        let started = self
            .store
            .begin_ingest(digest, size, move || {
                progress.event(Event::WaitingForLock { digest: waiting });
            })
            .await
            .map_err(|e| error(e.into()))?;
        let ingest = match started {
            IngestStart::Writing(ingest) => ingest,
            // Another process (or task: two images with one config) finished it while this
            // one waited for the lock.
            IngestStart::Committed => {
                self.report_cached(digest, size);
                return Ok(self.store.blob_path(digest));
            }
        };
        self.download(request, ingest).await.map_err(error)
    }

    /// Streams the blob into `ingest`, from where its partial file ends, and commits it.
    /// On failure the partial file keeps what arrived, for the next attempt or run.
    async fn download(
        &self,
        request: &BlobRequest,
        mut ingest: IngestWriter,
    ) -> Result<PathBuf, FetchErrorKind> {
        let digest = &request.descriptor.digest;
        let size = request.descriptor.size;
        let fetched = match self.stream_into(request, &mut ingest).await {
            Ok(fetched) => fetched,
            Err(error) => {
                ingest.close().await;
                return Err(error);
            }
        };
        // Before the commit releases the lock: a task waiting for it then says nothing more.
        if let Ok(mut reported) = self.reported.lock() {
            reported.insert(digest.clone());
        }
        let path = ingest.commit(Some(size)).await?;
        self.progress.event(Event::DownloadFinished {
            digest: digest.clone(),
            size,
            fetched,
        });
        Ok(path)
    }

    /// Writes what the registry sends into `ingest`, from its offset; returns the bytes
    /// received.
    async fn stream_into(
        &self,
        request: &BlobRequest,
        ingest: &mut IngestWriter,
    ) -> Result<u64, FetchErrorKind> {
        let digest = &request.descriptor.digest;
        let size = request.descriptor.size;
        if ingest.offset() > size {
            ingest.restart().await?;
        }
        // A partial file complete from an earlier run needs no request: commit verifies it.
        if ingest.offset() == size && size > 0 {
            return Ok(0);
        }
        let progress = self.progress.clone();
        let retrying = digest.clone();
        let on_retry = move |attempt: u32, error: &RegistryError, _wait: Duration| {
            progress.event(Event::Retrying {
                digest: retrying.clone(),
                attempt,
                error: error.brief(),
            });
        };
        let mut stream = self
            .client
            .get_blob(&request.reference, digest, size, ingest.offset(), &on_retry)
            .await?;
        if stream.start() != ingest.offset() {
            ingest.restart().await?;
            self.progress.event(Event::Restarted {
                digest: digest.clone(),
            });
        }
        self.progress.event(Event::DownloadStarted {
            digest: digest.clone(),
            size,
            offset: stream.start(),
        });
        let mut fetched = 0u64;
        loop {
            let chunk = match stream.next_chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return Ok(fetched),
                // What was received may be wrong too: resuming it would only repeat this.
                Err(
                    error @ (RegistryError::TooLong { .. } | RegistryError::LengthMismatch { .. }),
                ) => {
                    ingest.restart().await?;
                    return Err(error.into());
                }
                Err(error) => return Err(error.into()),
            };
            let bytes = chunk.len() as u64;
            fetched += bytes;
            ingest.write(chunk).await?;
            self.progress.event(Event::Downloaded {
                digest: digest.clone(),
                bytes,
            });
        }
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
        self.client
            .get_small_blob(&request.reference, digest, size)
            .await
            .map_err(|e| error(e.into()))
    }
}

impl Downloads {
    /// Waits for the request for blob `digest` and returns what it stored. Each blob is
    /// waited for once (the tar holds it once).
    pub async fn wait(&mut self, digest: &Digest) -> Result<StoredBlob, FetchError> {
        let task = self
            .tasks
            .remove(digest)
            .unwrap_or_else(|| panic!("{digest} was not planned, or was waited for twice"));
        match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down (Ctrl-C).
            Err(_) => Err(FetchError {
                image: String::new(),
                digest: digest.clone(),
                kind: FetchErrorKind::Cancelled,
            }),
        }
    }
}

impl Drop for Downloads {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}
