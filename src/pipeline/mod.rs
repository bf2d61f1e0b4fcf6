//! The pipeline every image command runs, as library code: open the cache (under its shared
//! lock, so no prune deletes blobs meanwhile) and a registry client; resolve references
//! ([`Session::resolve`]); fetch and check the configs and plan ([`Session::plan`]); fetch
//! the blobs and write the tar ([`Session::export`]) or only fill the cache
//! ([`Session::pull`]); record the run in the cache index.
//!
//! The types follow the data: [`Reference`] → [`ResolvedImage`] → [`Plan`] → a tar.
//!
//! This file keeps the flow; beside it: `tar_job` (what a tar is written from), `patches`
//! (layers made into patches for a patch delta), `transports` (the transport memory) and
//! `error`. What pushes, copies and checks signatures is its own module's ([`crate::push`],
//! [`crate::push::copy`], [`crate::signature::registry`], [`crate::referrers::lookup`]): the
//! session lends them its client, cache and fetcher.

mod error;
mod patches;
mod tar_job;
mod transports;

pub use error::PipelineError;
pub use tar_job::Carried;
use transports::remembered_transports;

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
use crate::list::ImageFailure;
use crate::manifest::{ImageConfig, ManifestError};
use crate::plan::Plan;
use crate::progress::{Event, Progress};
use crate::reference::Reference;
use crate::referrers::{Attachment, Lookup, ReferrersError};
use crate::registry::{Client, RegistryError, RegistryOptions};
use crate::resolve::{
    PlatformChoice, PlatformKey, ResolveError, ResolvedImage, resolve, resolve_offline,
};

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

    /// The registry client, for what pushes and copies.
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    pub fn progress(&self) -> &Arc<dyn Progress> {
        &self.progress
    }

    /// Referrers (signatures, attestations, SBOMs) looked up with this session's client and
    /// cache.
    pub fn lookup(&self) -> Lookup<'_> {
        Lookup {
            client: &self.client,
            store: &self.store,
            fetcher: &self.fetcher,
            offline: self.offline,
        }
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
        .buffered(crate::resolve::AT_ONCE)
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

    /// Parses an image's config and checks the image against it: the platform asked for,
    /// and the layer count loaders require.
    fn checked_config(
        &self,
        image: &ResolvedImage,
        choice: &PlatformChoice,
        bytes: &[u8],
    ) -> Result<ImageConfig, PipelineError> {
        // An artifact's config is not an image's: nothing in it to check.
        if let Some(artifact_type) = image.image.artifact_type() {
            return Ok(ImageConfig::of_artifact(&image.image, artifact_type));
        }
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
            self.lookup().discover_attachments(&resolved).await?.0
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
                platform: match &config.artifact_type {
                    Some(kind) => format!("artifact {kind}"),
                    None => config.platform().to_string(),
                },
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

    /// `pull --keep-going`: `resolved` pulled all together first (downloads in parallel
    /// across images), image by image only if that fails, to tell which (what was fetched
    /// stays in the cache). `failures` are those that did not resolve; the error lists every
    /// image that failed, in the order asked.
    pub async fn pull_each(
        &self,
        request: &ImageRequest,
        resolved: Vec<ResolvedImage>,
        mut failures: Vec<(Reference, PipelineError)>,
    ) -> Result<(), PipelineError> {
        let together = async {
            let plan = self
                .plan(resolved.clone(), &request.platforms, LayerForm::AsServed)
                .await?;
            self.pull(&plan).await
        };
        let resolved = match together.await {
            Ok(()) => Vec::new(),
            Err(_) => resolved,
        };
        let mut groups: Vec<Vec<ResolvedImage>> = Vec::new();
        for image in resolved {
            match groups
                .iter_mut()
                .find(|g| g[0].reference == image.reference)
            {
                Some(group) => group.push(image),
                None => groups.push(vec![image]),
            }
        }
        for group in groups {
            let reference = group[0].reference.clone();
            let pulled = async {
                let plan = self
                    .plan(group, &request.platforms, LayerForm::AsServed)
                    .await?;
                self.pull(&plan).await
            };
            if let Err(error) = pulled.await {
                failures.push((reference, error));
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        // In the order given.
        failures.sort_by_key(|(reference, _)| {
            request
                .references
                .iter()
                .position(|r| r == reference)
                .unwrap_or(usize::MAX)
        });
        Err(PipelineError::Images {
            total: request.references.len(),
            failures: failures
                .iter()
                .map(|(reference, error)| ImageFailure::new(reference, error))
                .collect(),
        })
    }

    /// The fetcher: blobs into the cache, each checked, under the session's limits.
    pub fn fetcher(&self) -> &Fetcher {
        &self.fetcher
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
                    "cannot tell what {} holds ({}); sending every layer",
                    output.describe(),
                    crate::error::describe(&why)
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
        carried: &Carried<'_>,
        layout: Layout,
        output: &Output,
        destination: &Destination,
        patch: bool,
    ) -> Result<Exported, PipelineError> {
        let (mut job, needed) = self.tar_job(plan, carried, layout, destination)?;
        // Dropping this future (Ctrl-C) drops `_cancel`: the writer's thread stops at its next
        // blob, and with it the downloads and a loader it feeds.
        let (_cancel, cancelled) = tokio::sync::watch::channel(());
        let mut downloads = self.fetcher.start(&needed);
        let mut ready = std::collections::HashMap::new();
        let patches = if patch {
            self.make_patches(plan, &mut job, destination, &mut downloads, &mut ready)
                .await?
        } else {
            Vec::new()
        };
        let downloads = FromDownloads {
            downloads,
            ready,
            runtime: tokio::runtime::Handle::current(),
            cancelled,
        };
        let mut exported = export::write_tar(job, downloads, output, self.progress.as_ref())
            .await
            .map_err(|source| PipelineError::Export {
                output: output.describe(),
                outcome: match output {
                    Output::File(_) => "no tar was written",
                    Output::Parts(_) => "no part was written",
                    Output::Stdout | Output::Engine(_) => "what was sent is not a whole tar",
                },
                source,
            })?;
        self.record(plan, &needed).await?;
        exported.patches = patches;
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
}

/// The downloads, as the tar writer's blocking thread sees them: it waits for each blob's
/// download on the runtime that runs it, unless the export was given up meanwhile.
struct FromDownloads {
    downloads: Downloads,
    /// Blobs waited for before the writer started (the layers patched).
    ready: std::collections::HashMap<Digest, StoredBlob>,
    runtime: tokio::runtime::Handle,
    /// Closed when the export's future is dropped.
    cancelled: tokio::sync::watch::Receiver<()>,
}

impl BlobSource for FromDownloads {
    fn blob(&mut self, digest: &Digest) -> Result<StoredBlob, BoxError> {
        if let Some(blob) = self.ready.remove(digest) {
            return Ok(blob);
        }
        let FromDownloads {
            downloads,
            runtime,
            cancelled,
            ..
        } = self;
        runtime.block_on(async {
            tokio::select! {
                blob = downloads.wait(digest) => Ok(blob?),
                _ = cancelled.changed() => Err("the export was cancelled".into()),
            }
        })
    }
}
