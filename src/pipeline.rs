//! The pipeline every image command runs, as library code: open the cache (under its shared
//! lock, so no prune deletes blobs meanwhile) and a registry client; resolve references
//! ([`Session::resolve`]); fetch and check the configs and plan ([`Session::plan`]); fetch
//! the blobs and write the tar ([`Session::export`]) or only fill the cache
//! ([`Session::pull`]); record the run in the cache index.
//!
//! The types follow the data: [`Reference`] → [`ResolvedImage`] → [`Plan`] → a tar.

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::try_join_all;

use crate::cache::{BlobStore, BlobUse, CacheError, LockMode, LockedFile, StoredBlob};
use crate::delta::{self, Destination, Receipt};
use crate::digest::Digest;
use crate::engine::Holdings;
use crate::export::{self, BlobSource, BoxError, ExportError, Exported, Layout, Output, TarJob};
use crate::fetch::{BlobRequest, Downloads, FetchError, FetchOptions, Fetcher};
use crate::inspect::Inspection;
use crate::manifest::{Descriptor, ImageConfig, Manifest, ManifestError};
use crate::plan::Plan;
use crate::progress::{Event, Progress};
use crate::push::{Origin, PushBlob, PushError, PushImage, PushManifest, PushSummary, Pusher};
use crate::reference::{Identifier, Reference};
use crate::referrers::{self, AttachedManifest, Attachment};
use crate::registry::FetchedManifest;
use crate::registry::{BlobFile, Client, RegistryError, RegistryOptions};
use crate::resolve::{
    PlatformChoice, PlatformKey, ResolveError, ResolvedImage, resolve, resolve_offline,
};
use crate::signature::{self, PublicKey};

/// What a pipeline step can fail with; each wraps a message that names the image or file.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Fetch(Box<FetchError>),
    #[error(transparent)]
    Push(#[from] PushError),
    #[error(
        "{} of the {total} images could not be used:{}",
        .failures.len(),
        ImageFailure::lines(.failures)
    )]
    Images {
        total: usize,
        failures: Vec<ImageFailure>,
    },
    #[error(
        "{} not signed by {keys}; stopped before writing anything:{}",
        if .failures.len() == 1 { "1 image is".to_string() } else { format!("{} images are", .failures.len()) },
        ImageFailure::lines(.failures)
    )]
    Unsigned {
        keys: String,
        failures: Vec<ImageFailure>,
    },
    #[error(
        "--verify-key looks the signatures up in the registry (they are tags that move); it \
         cannot be used with --offline"
    )]
    SignaturesOffline,
    #[error(
        "--referrers looks the signatures, attestations and SBOMs up in the registry; it cannot \
         be used with --offline"
    )]
    ReferrersOffline,
    #[error("export to {output} failed; {outcome}")]
    Export {
        output: String,
        /// What is left of the tar.
        outcome: &'static str,
        #[source]
        source: ExportError,
    },
}

/// Why an image's signature check did not pass: an error to stop on, or a rejection to report.
enum SignatureFailure {
    Error(PipelineError),
    Rejected(String),
}

/// One image of a list that failed, and why (its whole error, on one line).
#[derive(Debug)]
pub struct ImageFailure {
    pub reference: String,
    pub reason: String,
}

impl ImageFailure {
    /// Each failure on a line of its own, indented.
    fn lines(failures: &[ImageFailure]) -> String {
        failures
            .iter()
            .map(|f| format!("\n  {}: {}", f.reference, f.reason))
            .collect()
    }

    pub fn new(reference: &Reference, error: &PipelineError) -> ImageFailure {
        ImageFailure {
            reference: reference.to_string(),
            reason: crate::error::describe(error),
        }
    }
}

/// The transports remembered in `store` (none if the file is missing or unreadable).
fn remembered_transports(
    store: &BlobStore,
) -> std::collections::HashMap<String, crate::registry::endpoint::Transport> {
    std::fs::read_to_string(store.path_of(crate::cache::Bucket::Transports))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (host, name) = line.split_once(' ')?;
            Some((
                host.to_string(),
                crate::registry::endpoint::Transport::from_name(name.trim())?,
            ))
        })
        .collect()
}

/// References resolved at once: enough to hide a far registry's latency for a long list,
/// few enough to be polite to it.
const RESOLVE_AT_ONCE: usize = 32;

impl From<FetchError> for PipelineError {
    fn from(error: FetchError) -> Self {
        PipelineError::Fetch(Box::new(error))
    }
}

/// How to open a [`Session`].
pub struct SessionOptions {
    pub cache_dir: PathBuf,
    pub registry: RegistryOptions,
    pub progress: Arc<dyn Progress>,
    /// Downloads at once.
    pub jobs: usize,
    /// Resolve and fetch from the cache alone.
    pub offline: bool,
}

/// Which images to work on.
pub struct ImageRequest {
    pub references: Vec<Reference>,
    pub platforms: PlatformChoice,
}

/// How the plan wants layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerForm {
    /// As the registry serves them.
    AsServed,
    /// Uncompressed (`--decompress`, and the classic layout's `layer.tar`).
    Uncompressed,
}

/// One run's cache and registry client.
pub struct Session {
    store: BlobStore,
    client: Arc<Client>,
    fetcher: Fetcher,
    progress: Arc<dyn Progress>,
    offline: bool,
    /// The cache's shared lock: no prune removes blobs while this run uses them.
    _lock: LockedFile,
}

impl Session {
    /// Opens the cache (creating it) under its shared lock, waiting for a prune or rm that
    /// holds it, and sets up the registry client.
    pub async fn open(options: SessionOptions) -> Result<Session, PipelineError> {
        let cache_dir = options.cache_dir.clone();
        let store = crate::blocking::run(move || BlobStore::open(&cache_dir)).await?;
        let progress = options.progress.clone();
        let lock = store
            .lock(LockMode::Shared, move || {
                progress.event(Event::Waiting {
                    what: "a haul cache prune or rm".to_string(),
                });
            })
            .await?;
        let mut registry = options.registry;
        registry.remembered_transports = remembered_transports(&store);
        let client = Arc::new(Client::new(registry)?);
        let fetcher = Fetcher::new(
            client.clone(),
            store.clone(),
            options.progress.clone(),
            FetchOptions {
                jobs: options.jobs,
                offline: options.offline,
            },
        );
        Ok(Session {
            store,
            client,
            fetcher,
            progress: options.progress,
            offline: options.offline,
            _lock: lock,
        })
    }

    pub fn store(&self) -> &BlobStore {
        &self.store
    }

    /// Pushes into registries with this session's client, `jobs` uploads at once; cut
    /// uploads are remembered in the cache's `uploads/`.
    pub fn pusher(&self, jobs: usize) -> Pusher {
        Pusher {
            client: self.client.clone(),
            journal_dir: self.store.path_of(crate::cache::Bucket::Uploads),
            progress: self.progress.clone(),
            jobs,
        }
    }

    /// Copies `plan`'s images (pulled into the cache: see [`Session::pull`]) each into the
    /// repository and tags `target` gives for its reference: each image's manifest as the
    /// registry served it, and for all platforms every manifest the index names and the index
    /// itself, so every digest is kept.
    pub async fn copy(
        &self,
        plan: &Plan,
        attachments: &[Attachment],
        target: impl Fn(&Reference) -> (Reference, Vec<String>),
        jobs: usize,
    ) -> Result<PushSummary, PipelineError> {
        let mut images: Vec<PushImage> = Vec::new();
        for resolved in &plan.resolved {
            let top = match (&resolved.index, &resolved.platform_key) {
                (Some(index), PlatformKey::All) => index,
                _ => &resolved.manifest,
            };
            // The platforms of one index go up as one image.
            if images.iter().any(|i| {
                i.source_name == resolved.reference.to_string() && *i.digest() == top.digest
            }) {
                continue;
            }
            let (manifests, blobs) = match (&resolved.index, &resolved.platform_key) {
                (Some(index), PlatformKey::All) => {
                    self.index_for_push(plan, resolved, index).await?
                }
                _ => (
                    vec![PushManifest {
                        digest: resolved.manifest.digest.clone(),
                        media_type: resolved.media_type.clone(),
                        bytes: resolved.manifest.bytes.clone(),
                    }],
                    self.cached_blobs(
                        std::iter::once(&resolved.image.config).chain(&resolved.image.layers),
                    ),
                ),
            };
            let (repository, tags) = target(&resolved.reference);
            images.push(PushImage {
                subject: None,
                repository,
                tags,
                manifests,
                blobs,
                source_name: resolved.reference.to_string(),
            });
        }
        let attached = crate::push::attachment_pushes(&images, attachments, |descriptor| {
            self.cached_blobs(std::iter::once(descriptor)).remove(0)
        });
        images.extend(attached);
        // A source in the destination's registry lends its blobs by mount.
        let holders: Vec<Reference> = plan
            .resolved
            .iter()
            .map(|r| r.reference.clone())
            .filter(|r| {
                images
                    .iter()
                    .any(|i| i.repository.registry() == r.registry())
            })
            .collect();
        let summary = self.pusher(jobs).push(&images, &holders, "").await?;
        self.remember_transports();
        Ok(summary)
    }

    /// An index and every manifest it names, children first, with their blobs: those the
    /// plan pulled, and the others (attestations, and platforms not taken as images)
    /// fetched now, so that the index's digest can be kept.
    async fn index_for_push(
        &self,
        plan: &Plan,
        resolved: &ResolvedImage,
        index: &crate::registry::FetchedManifest,
    ) -> Result<(Vec<PushManifest>, Vec<PushBlob>), PipelineError> {
        let parsed = resolved
            .parsed_index
            .as_ref()
            .expect("a resolution from an index keeps it parsed");
        let mut manifests = Vec::new();
        let mut descriptors: Vec<Descriptor> = Vec::new();
        for child in &parsed.manifests {
            let pulled = plan
                .resolved
                .iter()
                .find(|r| r.reference == resolved.reference && r.manifest.digest == child.digest);
            let (bytes, media_type, image) = match pulled {
                Some(r) => (
                    r.manifest.bytes.clone(),
                    r.media_type.clone(),
                    r.image.clone(),
                ),
                None => {
                    let reference = resolved.reference.with_digest(child.digest.clone());
                    let fetched = match self.store.read_verified(&child.digest) {
                        Ok(bytes) => bytes,
                        Err(_) if !self.offline => {
                            let fetched = self.client.get_manifest(&reference).await?;
                            self.store.put_bytes(&fetched.digest, &fetched.bytes)?;
                            fetched.bytes
                        }
                        Err(e) => return Err(e.into()),
                    };
                    let name = reference.to_string();
                    let Manifest::Image(image) = Manifest::parse(
                        &name,
                        Some(child.media_type.as_str()).filter(|t| !t.is_empty()),
                        &fetched,
                    )?
                    else {
                        return Err(ManifestError::UnsupportedMediaType {
                            reference: name,
                            media_type: "an index nested in an index".to_string(),
                        }
                        .into());
                    };
                    let requests: Vec<BlobRequest> = std::iter::once(&image.config)
                        .chain(&image.layers)
                        .map(|d| BlobRequest::new(resolved.reference.clone(), d.clone()))
                        .collect();
                    let mut downloads = self.fetcher.start(&requests);
                    for request in &requests {
                        downloads.wait(&request.descriptor.digest).await?;
                    }
                    (fetched, child.media_type.clone(), image)
                }
            };
            descriptors.extend(std::iter::once(image.config.clone()).chain(image.layers.clone()));
            manifests.push(PushManifest {
                digest: child.digest.clone(),
                media_type,
                bytes,
            });
        }
        manifests.push(PushManifest {
            digest: index.digest.clone(),
            media_type: index
                .content_type
                .clone()
                .or_else(|| parsed.media_type.clone())
                .unwrap_or_else(|| crate::manifest::OCI_INDEX.to_string()),
            bytes: index.bytes.clone(),
        });
        Ok((manifests, self.cached_blobs(descriptors.iter())))
    }

    /// `descriptors`' blobs, each once, read from the cache.
    fn cached_blobs<'a>(&self, descriptors: impl Iterator<Item = &'a Descriptor>) -> Vec<PushBlob> {
        let mut blobs: Vec<PushBlob> = Vec::new();
        for descriptor in descriptors {
            if blobs.iter().any(|b| b.digest == descriptor.digest) {
                continue;
            }
            blobs.push(PushBlob {
                digest: descriptor.digest.clone(),
                size: descriptor.size,
                origin: Origin::File(BlobFile {
                    path: self.store.blob_path(&descriptor.digest),
                    offset: 0,
                    size: descriptor.size,
                }),
            });
        }
        blobs
    }

    /// Resolves every reference to image manifests (from the cache alone when offline) and
    /// keeps the manifests in the cache. Every reference that fails is reported, each with
    /// its reason (one failing alone is its own error).
    pub async fn resolve(
        &self,
        request: &ImageRequest,
    ) -> Result<Vec<ResolvedImage>, PipelineError> {
        let (resolved, mut failures) = self.resolve_each(request).await?;
        match failures.len() {
            0 => Ok(resolved),
            1 if request.references.len() == 1 => Err(failures.remove(0).1),
            _ => Err(PipelineError::Images {
                total: request.references.len(),
                failures: failures
                    .into_iter()
                    .map(|(reference, error)| ImageFailure::new(&reference, &error))
                    .collect(),
            }),
        }
    }

    /// Resolves what it can: the images of the references that resolve, and each that does
    /// not with its error. References resolve concurrently (a few round trips for a long list,
    /// not one per image); one given by digest whose manifest is cached needs no request.
    pub async fn resolve_each(
        &self,
        request: &ImageRequest,
    ) -> Result<(Vec<ResolvedImage>, Vec<(Reference, PipelineError)>), PipelineError> {
        let choice = &request.platforms;
        let outcomes = futures::stream::iter(request.references.iter().map(|r| async move {
            let result = if self.offline {
                resolve_offline(&self.store, r, choice).await
            } else {
                resolve(&self.client, &self.store, r, choice).await
            };
            (r, result)
        }))
        .buffered(RESOLVE_AT_ONCE)
        .collect::<Vec<_>>()
        .await;
        let mut resolved = Vec::new();
        let mut failures = Vec::new();
        for (reference, outcome) in outcomes {
            match outcome {
                Ok(images) => resolved.extend(images),
                Err(error) => failures.push((reference.clone(), PipelineError::from(error))),
            }
        }
        // Each manifest once (the platforms of one index share it).
        let manifests: std::collections::BTreeMap<Digest, Vec<u8>> = resolved
            .iter()
            .flat_map(|image| std::iter::once(&image.manifest).chain(&image.index))
            .map(|m| (m.digest.clone(), m.bytes.clone()))
            .collect();
        let store = self.store.clone();
        crate::blocking::run(move || {
            for (digest, bytes) in &manifests {
                store.put_bytes(digest, bytes)?;
            }
            Ok::<_, CacheError>(())
        })
        .await?;
        Ok((resolved, failures))
    }

    /// Checks that every image of `resolved` carries a cosign signature by one of `keys`
    /// (on its own manifest, or on the index it was chosen from), fetched from its registry.
    /// Every image without one is reported, with the reason.
    pub async fn check_signatures(
        &self,
        resolved: &[ResolvedImage],
        keys: &[PublicKey],
    ) -> Result<(), PipelineError> {
        if self.offline {
            return Err(PipelineError::SignaturesOffline);
        }
        let outcomes = futures::stream::iter(
            resolved
                .iter()
                .map(|image| async move { (image, self.signed(image, keys).await) }),
        )
        .buffered(RESOLVE_AT_ONCE)
        .collect::<Vec<_>>()
        .await;
        let mut failures = Vec::new();
        for (image, outcome) in outcomes {
            match outcome {
                Ok(()) => {}
                Err(SignatureFailure::Error(error)) => return Err(error),
                Err(SignatureFailure::Rejected(reason)) => failures.push(ImageFailure {
                    reference: format!("{} ({})", image.reference, image.manifest.digest),
                    reason,
                }),
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        Err(PipelineError::Unsigned {
            keys: keys
                .iter()
                .map(|k| k.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            failures,
        })
    }

    /// Whether `image` carries a signature by one of `keys`, and if not, why.
    async fn signed(
        &self,
        image: &ResolvedImage,
        keys: &[PublicKey],
    ) -> Result<(), SignatureFailure> {
        let mut digests = vec![&image.manifest.digest];
        digests.extend(image.index.as_ref().map(|i| &i.digest));
        let mut reason = None;
        for digest in &digests {
            let tag = signature::signature_tag(digest);
            let fetched = match self
                .client
                .get_manifest_by(&image.reference, &Identifier::Tag(tag))
                .await
            {
                Ok(fetched) => fetched,
                Err(RegistryError::NotFound { .. }) => continue,
                Err(error) => return Err(SignatureFailure::Error(error.into())),
            };
            let layers = match signature::signature_layers(&fetched.bytes) {
                Ok(layers) => layers,
                Err(rejection) => {
                    reason = Some(rejection);
                    continue;
                }
            };
            for layer in layers {
                let Some(signed) = &layer.signature else {
                    continue;
                };
                let request = BlobRequest::new(
                    image.reference.clone(),
                    Descriptor {
                        media_type: signature::SIMPLE_SIGNING.to_string(),
                        digest: layer.payload.clone(),
                        size: layer.size,
                        platform: None,
                        annotations: Default::default(),
                    },
                );
                let payload = self
                    .fetcher
                    .read_small(&request)
                    .await
                    .map_err(|e| SignatureFailure::Error(e.into()))?;
                match signature::check(keys, &payload, signed, &digests) {
                    Ok(()) => return Ok(()),
                    Err(rejection) => reason = Some(rejection),
                }
            }
        }
        Err(SignatureFailure::Rejected(match reason {
            Some(rejection) => rejection.to_string(),
            None => format!(
                "it has no cosign signature (no tag {} in its repository)",
                signature::signature_tag(&image.manifest.digest)
            ),
        }))
    }

    /// What refers to the manifests of `resolved` (each image's, and the index it came from):
    /// signatures, attestations, SBOMs, and what refers to those in turn; their manifests and
    /// blobs fetched into the cache.
    pub async fn attachments(
        &self,
        resolved: &[ResolvedImage],
    ) -> Result<Vec<Attachment>, PipelineError> {
        let (found, requests) = self.discover_attachments(resolved).await?;
        let mut downloads = self.fetcher.start(&requests);
        for request in &requests {
            downloads.wait(&request.descriptor.digest).await?;
        }
        Ok(found)
    }

    /// What refers to `resolved` (their manifests kept in the cache, their blobs not fetched),
    /// and the requests for those blobs.
    async fn discover_attachments(
        &self,
        resolved: &[ResolvedImage],
    ) -> Result<(Vec<Attachment>, Vec<BlobRequest>), PipelineError> {
        if self.offline {
            return Err(PipelineError::ReferrersOffline);
        }
        let mut queue: Vec<(Reference, Digest, usize)> = Vec::new();
        for image in resolved {
            queue.push((image.reference.clone(), image.manifest.digest.clone(), 0));
            if let Some(index) = &image.index {
                queue.push((image.reference.clone(), index.digest.clone(), 0));
            }
        }
        let mut seen: std::collections::HashSet<Digest> =
            queue.iter().map(|q| q.1.clone()).collect();
        let mut found: Vec<Attachment> = Vec::new();
        let mut requests: Vec<BlobRequest> = Vec::new();
        while let Some((reference, subject, depth)) = queue.pop() {
            for (tag, top) in self.referrers_of(&reference, &subject).await? {
                if found
                    .iter()
                    .any(|a| a.top().digest == top.digest && a.tag == tag)
                {
                    continue;
                }
                let attachment = self
                    .attachment(&reference, subject.clone(), tag, top)
                    .await?;
                for manifest in &attachment.manifests {
                    if depth + 1 < referrers::MAX_DEPTH && seen.insert(manifest.digest.clone()) {
                        queue.push((reference.clone(), manifest.digest.clone(), depth + 1));
                    }
                }
                for descriptor in &attachment.blobs {
                    // Each blob once: attachments share configs.
                    if !requests
                        .iter()
                        .any(|r| r.descriptor.digest == descriptor.digest)
                    {
                        requests.push(BlobRequest::new(reference.clone(), descriptor.clone()));
                    }
                }
                found.push(attachment);
            }
        }
        Ok((found, requests))
    }

    /// The manifests that refer to `subject`, each with the tag it was found under (none for
    /// the referrers API's).
    async fn referrers_of(
        &self,
        reference: &Reference,
        subject: &Digest,
    ) -> Result<Vec<(Option<String>, FetchedManifest)>, PipelineError> {
        let mut out = Vec::new();
        if let Some(index) = self.client.get_referrers(reference, subject).await?
            && let Ok(Manifest::Index(index)) = Manifest::parse(
                &reference.to_string(),
                Some(crate::manifest::OCI_INDEX),
                &index.bytes,
            )
        {
            for descriptor in &index.manifests {
                let fetched = self
                    .manifest_by_digest(reference, &descriptor.digest)
                    .await?;
                out.push((None, fetched));
            }
        }
        for tag in referrers::tags_for(subject) {
            match self
                .client
                .get_manifest_by(reference, &Identifier::Tag(tag.clone()))
                .await
            {
                Ok(fetched) => out.push((Some(tag), fetched)),
                Err(RegistryError::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(out)
    }

    /// A manifest by digest: from the cache, else the registry (then kept).
    async fn manifest_by_digest(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<FetchedManifest, PipelineError> {
        if let Ok(bytes) = self.store.read_verified(digest) {
            return Ok(FetchedManifest {
                digest: digest.clone(),
                bytes,
                content_type: None,
            });
        }
        let fetched = self
            .client
            .get_manifest_by(reference, &Identifier::Digest(digest.clone()))
            .await?;
        self.store.put_bytes(&fetched.digest, &fetched.bytes)?;
        Ok(fetched)
    }

    /// The attachment whose manifest is `top`: for an index (the OCI fallback tag's), its
    /// manifests too; the blobs they name.
    async fn attachment(
        &self,
        reference: &Reference,
        subject: Digest,
        tag: Option<String>,
        top: FetchedManifest,
    ) -> Result<Attachment, PipelineError> {
        self.store.put_bytes(&top.digest, &top.bytes)?;
        let name = reference.to_string();
        let media_type = |fetched: &FetchedManifest, manifest: &Manifest| {
            let own = match manifest {
                Manifest::Image(m) => m.media_type.clone(),
                Manifest::Index(i) => i.media_type.clone(),
            };
            own.or(fetched.content_type.clone())
                .unwrap_or_else(|| match manifest {
                    Manifest::Image(_) => crate::manifest::OCI_MANIFEST.to_string(),
                    Manifest::Index(_) => crate::manifest::OCI_INDEX.to_string(),
                })
        };
        let parsed = Manifest::parse(&name, top.content_type.as_deref(), &top.bytes)?;
        let mut manifests = Vec::new();
        let mut blobs: Vec<Descriptor> = Vec::new();
        let mut add_blobs = |image: &crate::manifest::ImageManifest| {
            for d in std::iter::once(&image.config).chain(&image.layers) {
                if !blobs.iter().any(|b| b.digest == d.digest) {
                    blobs.push(d.clone());
                }
            }
        };
        match &parsed {
            Manifest::Image(image) => add_blobs(image),
            Manifest::Index(index) => {
                for child in &index.manifests {
                    let fetched = self.manifest_by_digest(reference, &child.digest).await?;
                    let child_parsed = Manifest::parse(&name, None, &fetched.bytes)?;
                    if let Manifest::Image(image) = &child_parsed {
                        add_blobs(image);
                    }
                    manifests.push(AttachedManifest {
                        digest: fetched.digest.clone(),
                        media_type: media_type(&fetched, &child_parsed),
                        size: fetched.bytes.len() as u64,
                        bytes: fetched.bytes.clone(),
                    });
                }
            }
        }
        manifests.push(AttachedManifest {
            digest: top.digest.clone(),
            media_type: media_type(&top, &parsed),
            size: top.bytes.len() as u64,
            bytes: top.bytes.clone(),
        });
        Ok(Attachment {
            subject,
            tag,
            manifests,
            blobs,
        })
    }

    /// Parses an image's config and checks the image against it: the platform asked for,
    /// and the layer count loaders require.
    fn checked_config(
        &self,
        image: &ResolvedImage,
        choice: &PlatformChoice,
        bytes: &[u8],
    ) -> Result<ImageConfig, PipelineError> {
        let config = ImageConfig::parse(
            &image.reference.to_string(),
            &image.image.config.digest,
            bytes,
        )?;
        image.check_config(&config, choice.explicit())?;
        Ok(config)
    }

    /// An image's config, from the cache or read into memory (and verified), never stored:
    /// for looking at an image without changing the cache.
    async fn read_config(&self, image: &ResolvedImage) -> Result<Vec<u8>, PipelineError> {
        let request = BlobRequest::new(image.reference.clone(), image.image.config.clone());
        Ok(self.fetcher.read_small(&request).await?)
    }

    /// What the images `request` names are, and what of them the cache holds: resolves
    /// (keeping the manifests, as resolving does) and reads each config (from the cache or
    /// into memory, never stored), checking the image against it as an export would.
    pub async fn inspect(&self, request: &ImageRequest) -> Result<Vec<Inspection>, PipelineError> {
        let resolved = self.resolve(request).await?;
        let configs = try_join_all(resolved.iter().map(|image| self.read_config(image))).await?;
        // What refers to them, when the registry can be asked (manifests only).
        let attachments = if self.offline {
            Vec::new()
        } else {
            self.discover_attachments(&resolved).await?.0
        };
        let mut inspections = Vec::new();
        for (image, bytes) in resolved.iter().zip(&configs) {
            let config = self.checked_config(image, &request.platforms, bytes)?;
            inspections.push(
                Inspection::new(image, &config, |blob| {
                    self.store.contains(&blob.digest, blob.size)
                })
                .with_referrers(&attachments),
            );
        }
        Ok(inspections)
    }

    /// Fetches the configs of `resolved` into the cache, checks each image against its
    /// config, and plans the blobs: every layer as `layers` asks.
    pub async fn plan(
        &self,
        resolved: Vec<ResolvedImage>,
        choice: &PlatformChoice,
        layers: LayerForm,
    ) -> Result<Plan, PipelineError> {
        // Configs first: they decide whether the image is usable and name the output file.
        // Each distinct config once: two images sharing one would otherwise wait on each
        // other's download lock.
        let mut distinct: Vec<&ResolvedImage> = Vec::new();
        for image in &resolved {
            if !distinct
                .iter()
                .any(|d| d.image.config.digest == image.image.config.digest)
            {
                distinct.push(image);
            }
        }
        try_join_all(distinct.iter().map(|image| {
            let request = BlobRequest::new(image.reference.clone(), image.image.config.clone());
            async move { self.fetcher.fetch(&request).await }
        }))
        .await?;
        let mut configs = Vec::new();
        for image in &resolved {
            let bytes = self.store.read_verified(&image.image.config.digest)?;
            let config = self.checked_config(image, choice, &bytes)?;
            self.progress.event(Event::Resolved {
                reference: image.reference.to_string(),
                digest: image.manifest.digest.clone(),
                platform: config.platform().to_string(),
            });
            configs.push(config);
        }
        // Several platforms of one reference are kept together, as an index.
        let as_indexes = *choice == PlatformChoice::All || choice.explicit().len() > 1;
        let uncompressed = layers == LayerForm::Uncompressed;
        Ok(Plan::new(resolved, configs, uncompressed, as_indexes))
    }

    /// Fetches every blob of `plan` into the cache, and records the run.
    pub async fn pull(&self, plan: &Plan) -> Result<(), PipelineError> {
        let mut downloads = self.fetcher.start(&plan.blobs);
        for blob in &plan.blobs {
            downloads.wait(&blob.descriptor.digest).await?;
        }
        self.record(plan, &plan.blobs).await
    }

    /// What the destination of `output` holds: the bundles delivered before (`since`, as
    /// receipts); else, for a loader (`--load`, `--to`), what its engine says, unless `full`;
    /// else nothing known. An engine that cannot be asked is warned about once.
    pub async fn destination(
        &self,
        since: Vec<Receipt>,
        output: &Output,
        full: bool,
    ) -> Destination {
        if !since.is_empty() {
            return Destination::Bundles(since);
        }
        let Output::Engine(engine) = output else {
            return Destination::Unknown;
        };
        if full {
            return Destination::Unknown;
        }
        let engine = engine.clone();
        match crate::blocking::run(move || engine.holdings()).await {
            Holdings::Chains(chains) => Destination::Chains(chains),
            // Its images' manifests (by digest: any copy is that manifest) name the blobs its
            // content store holds.
            Holdings::Images(images) => {
                let receipt = Receipt::of_engine_images(&images, |digest| {
                    self.store.read_verified(digest).ok()
                });
                if receipt.images.len() < images.len() {
                    tracing::warn!(
                        "{} of the {} images {} holds are unknown here (their manifests are not \
                         in this cache): what they hold is sent again; `--since RECEIPT` of the \
                         bundles loaded there tells more",
                        images.len() - receipt.images.len(),
                        images.len(),
                        output.describe()
                    );
                }
                Destination::Bundles(vec![receipt])
            }
            Holdings::Unknown(why) => {
                tracing::warn!(
                    "cannot tell what {} holds ({why}); sending every layer",
                    output.describe()
                );
                Destination::Unknown
            }
        }
    }

    /// Writes `plan`'s images as one tar in `layout` to `output` while their blobs download,
    /// and records the run. When the destination is known to hold some layers (it loaded
    /// earlier bundles, or an engine said so), the tar is a delta: it leaves out those layer
    /// blobs (see [`crate::delta`]), which are then not downloaded either.
    pub async fn export(
        &self,
        plan: &Plan,
        attachments: &[Attachment],
        layout: Layout,
        output: &Output,
        destination: &Destination,
    ) -> Result<Exported, PipelineError> {
        let candidates: Vec<delta::Candidate> = plan
            .images
            .iter()
            .map(|image| delta::Candidate {
                diff_ids: &image.diff_ids,
                blobs: (0..image.layers.len())
                    .map(|i| image.tar_blob(i).clone())
                    .collect(),
                sizes: (0..image.layers.len())
                    .map(|i| {
                        if image.uncompressed {
                            self.store.size_of(image.tar_blob(i))
                        } else {
                            Some(image.layers[i].size)
                        }
                    })
                    .collect(),
            })
            .collect();
        let left_out = delta::left_out(&candidates, destination);
        let mut needed: Vec<BlobRequest> = plan
            .blobs
            .iter()
            .filter(|request| !left_out.blobs.contains_key(request.tar_blob()))
            .cloned()
            .collect();
        // The attachments' blobs (in the cache already: found and fetched with them).
        if let Some(first) = plan.resolved.first() {
            for descriptor in attachments.iter().flat_map(|a| &a.blobs) {
                if !needed
                    .iter()
                    .any(|r| r.descriptor.digest == descriptor.digest)
                {
                    needed.push(BlobRequest::new(
                        first.reference.clone(),
                        descriptor.clone(),
                    ));
                }
            }
        }
        // Dropping this future (Ctrl-C) drops `_cancel`: the writer's thread stops at its next
        // blob, and with it the downloads and a loader it feeds.
        let (_cancel, cancelled) = tokio::sync::watch::channel(());
        let downloads = FromDownloads {
            downloads: self.fetcher.start(&needed),
            runtime: tokio::runtime::Handle::current(),
            cancelled,
        };
        let job = TarJob {
            images: plan.images.clone(),
            layout,
            left_out,
            attachments: attachments.to_vec(),
        };
        let exported = export::write_tar(job, downloads, output, self.progress.as_ref())
            .await
            .map_err(|source| PipelineError::Export {
                output: output.describe(),
                outcome: match output {
                    Output::File(_) => "no tar was written",
                    Output::Stdout | Output::Engine(_) => "what was sent is not a whole tar",
                },
                source,
            })?;
        self.record(plan, &needed).await?;
        Ok(exported)
    }

    /// After a successful run: what each reference resolved to (for --offline) and that
    /// every blob was just used (for least-recently-used pruning).
    async fn record(&self, plan: &Plan, used: &[BlobRequest]) -> Result<(), PipelineError> {
        let mut refs = Vec::new();
        let mut uses = Vec::new();
        for image in &plan.resolved {
            // Per platform: the image's manifest; for all platforms: the index.
            let top = match (&image.index, &image.platform_key) {
                (Some(index), PlatformKey::All) => &index.digest,
                _ => &image.manifest.digest,
            };
            refs.push((
                image.reference.to_string(),
                image.platform_key.to_string(),
                top.clone(),
            ));
            for manifest in std::iter::once(&image.manifest).chain(&image.index) {
                uses.push(BlobUse {
                    digest: manifest.digest.clone(),
                    size: manifest.bytes.len() as u64,
                    media_type: String::new(),
                });
            }
        }
        for blob in used {
            uses.push(BlobUse {
                digest: blob.descriptor.digest.clone(),
                size: blob.descriptor.size,
                media_type: blob.descriptor.media_type.clone(),
            });
            // The uncompressed form, when this run made or used it.
            if let Some(diff_id) = &blob.uncompressed
                && let Some(size) = self.store.size_of(diff_id)
            {
                uses.push(BlobUse {
                    digest: diff_id.clone(),
                    size,
                    media_type: String::new(),
                });
            }
        }
        let index = self.store.index();
        crate::blocking::run(move || index.record_run(&refs, &uses)).await?;
        self.remember_transports();
        Ok(())
    }

    /// Keeps the transport each host took for the next run (best effort: losing it costs one
    /// probe). Only hosts that may use more than one are worth it, but all are cheap.
    pub fn remember_transports(&self) {
        let mut all = remembered_transports(&self.store);
        let learned = self.client.learned_transports();
        if learned.iter().all(|(host, t)| all.get(host) == Some(t)) {
            return;
        }
        all.extend(learned);
        let mut text: Vec<String> = all
            .iter()
            .map(|(host, transport)| format!("{host} {}", transport.name()))
            .collect();
        text.sort();
        let path = self.store.path_of(crate::cache::Bucket::Transports);
        let _ = crate::fsx::write_record(&path, (text.join("\n") + "\n").as_bytes());
    }
}

/// The downloads, as the tar writer's blocking thread sees them: it waits for each blob's
/// download on the runtime that runs it, unless the export was given up meanwhile.
struct FromDownloads {
    downloads: Downloads,
    runtime: tokio::runtime::Handle,
    /// Closed when the export's future is dropped.
    cancelled: tokio::sync::watch::Receiver<()>,
}

impl BlobSource for FromDownloads {
    fn blob(&mut self, digest: &Digest) -> Result<StoredBlob, BoxError> {
        let FromDownloads {
            downloads,
            runtime,
            cancelled,
        } = self;
        runtime.block_on(async {
            tokio::select! {
                blob = downloads.wait(digest) => Ok(blob?),
                _ = cancelled.changed() => Err("the export was cancelled".into()),
            }
        })
    }
}
