//! What export, pull and inspect share: resolve the references (online or from the cache)
//! and check them against their configs; for export and pull, plan and record the run in the
//! cache index.

use std::sync::Arc;

use anyhow::Context;
use futures::future::try_join_all;

use super::Global;
use crate::cache::{BlobStore, BlobUse, CacheLock, LockMode};
use crate::cli::{DownloadArgs, ImageArgs};
use crate::fetch::{BlobRequest, FetchOptions, Fetcher};
use crate::manifest::ImageConfig;
use crate::plan::Plan;
use crate::platform::Platform;
use crate::progress::Event;
use crate::reference::Reference;
use crate::registry::Client;
use crate::resolve::{ALL_PLATFORMS_KEY, PlatformChoice, ResolvedImage, resolve, resolve_offline};

/// The references resolved to image manifests (kept in the cache), and what the run uses to
/// reach the registry and the cache.
pub struct Resolution {
    pub resolved: Vec<ResolvedImage>,
    pub fetcher: Fetcher,
    pub store: BlobStore,
    /// The platforms asked for (a single-platform image must then be for them).
    choice: PlatformChoice,
    /// The cache's shared lock: no prune removes blobs while this run uses them.
    lock: CacheLock,
}

/// Resolves every reference (from the cache alone with --offline) and caches the manifests.
/// `jobs` bounds the fetcher's downloads.
pub async fn resolve_images(
    global: &Global,
    args: &ImageArgs,
    jobs: usize,
) -> anyhow::Result<Resolution> {
    let references = args
        .references
        .iter()
        .map(|r| r.parse::<Reference>())
        .collect::<Result<Vec<_>, _>>()?;
    let choice = platform_choice(args)?;

    let store = BlobStore::open(&global.cache_dir)?;
    let progress = global.progress.clone();
    let lock = store
        .lock(LockMode::Shared, || {
            progress.event(Event::Waiting {
                what: "a haul cache prune or rm".to_string(),
            })
        })
        .await?;
    let client = Arc::new(Client::new(global.registry_options(&args.login)?)?);
    let fetcher = Fetcher::new(
        client.clone(),
        store.clone(),
        global.progress.clone(),
        FetchOptions {
            jobs,
            retries: global.retries,
            offline: args.offline,
        },
    );

    let resolved: Vec<ResolvedImage> = if args.offline {
        try_join_all(
            references
                .iter()
                .map(|r| resolve_offline(&store, r, &choice)),
        )
        .await?
    } else {
        try_join_all(references.iter().map(|r| resolve(&client, r, &choice))).await?
    }
    .into_iter()
    .flatten()
    .collect();
    for image in &resolved {
        for manifest in std::iter::once(&image.manifest).chain(&image.index) {
            store
                .put_bytes(&manifest.digest, &manifest.bytes)
                .await
                .with_context(|| format!("{}: cannot cache the manifest", image.reference))?;
        }
    }
    Ok(Resolution {
        resolved,
        fetcher,
        store,
        choice,
        lock,
    })
}

/// What --platform and --all-platforms ask for; the host's platform when neither is given.
fn platform_choice(args: &ImageArgs) -> anyhow::Result<PlatformChoice> {
    if args.all_platforms {
        return Ok(PlatformChoice::All);
    }
    let platforms = args
        .platform
        .iter()
        .map(|p| p.parse::<Platform>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(if platforms.is_empty() {
        PlatformChoice::Some {
            platforms: vec![Platform::host()],
            explicit: false,
        }
    } else {
        PlatformChoice::Some {
            platforms,
            explicit: true,
        }
    })
}

impl Resolution {
    /// Parses an image's config and checks the image against it: the platform asked for,
    /// and the layer count loaders require.
    pub fn checked_config(
        &self,
        image: &ResolvedImage,
        bytes: &[u8],
    ) -> anyhow::Result<ImageConfig> {
        let config = ImageConfig::parse(
            &image.reference.to_string(),
            &image.image.config.digest,
            bytes,
        )?;
        image.check_config(&config, self.choice.explicit())?;
        Ok(config)
    }
}

/// Images resolved and checked, ready to fetch and export.
pub struct Prepared {
    pub resolved: Vec<ResolvedImage>,
    pub configs: Vec<ImageConfig>,
    pub plan: Plan,
    pub fetcher: Fetcher,
    pub store: BlobStore,
    /// The cache's shared lock: no prune removes blobs while this run uses them.
    _lock: CacheLock,
}

/// Resolves and checks the images `images` name and plans their blobs: each layer as the
/// registry serves it, or (`uncompressed`) in its uncompressed form.
pub async fn prepare(
    global: &Global,
    images: &ImageArgs,
    downloads: &DownloadArgs,
    uncompressed: bool,
) -> anyhow::Result<Prepared> {
    let resolution = resolve_images(global, images, usize::from(downloads.jobs)).await?;

    // Configs first: they decide whether the image is usable and name the output file.
    // Each distinct config once: two images sharing one would otherwise wait on each other's
    // download lock.
    let mut distinct: Vec<&ResolvedImage> = Vec::new();
    for image in &resolution.resolved {
        if !distinct
            .iter()
            .any(|d| d.image.config.digest == image.image.config.digest)
        {
            distinct.push(image);
        }
    }
    try_join_all(distinct.iter().map(|image| {
        let fetcher = resolution.fetcher.clone();
        let request = BlobRequest::new(image.reference.clone(), image.image.config.clone());
        async move { fetcher.fetch(&request).await }
    }))
    .await?;
    let mut configs = Vec::new();
    for image in &resolution.resolved {
        let bytes = resolution.store.read_verified(&image.image.config.digest)?;
        let config = resolution.checked_config(image, &bytes)?;
        global.progress.event(Event::Resolved {
            reference: image.reference.to_string(),
            digest: image.manifest.digest.clone(),
            platform: config.platform().to_string(),
        });
        configs.push(config);
    }
    // Several platforms of one reference are kept together, as an index.
    let choice = &resolution.choice;
    let as_indexes = *choice == PlatformChoice::All || choice.explicit().len() > 1;
    let plan = Plan::new(&resolution.resolved, &configs, uncompressed, as_indexes);
    let Resolution {
        resolved,
        fetcher,
        store,
        lock,
        ..
    } = resolution;
    Ok(Prepared {
        resolved,
        configs,
        plan,
        fetcher,
        store,
        _lock: lock,
    })
}

impl Prepared {
    /// After a successful run: what each reference resolved to (for --offline) and that
    /// every blob was just used (for least-recently-used pruning).
    pub fn record(&self) -> anyhow::Result<()> {
        let index = self.store.index();
        let mut uses = Vec::new();
        for image in &self.resolved {
            // Per platform: the image's manifest; for all platforms: the index.
            let top = match (&image.index, image.platform_key == ALL_PLATFORMS_KEY) {
                (Some(index), true) => &index.digest,
                _ => &image.manifest.digest,
            };
            index.record_ref(&image.reference.to_string(), &image.platform_key, top)?;
            for manifest in std::iter::once(&image.manifest).chain(&image.index) {
                uses.push(BlobUse {
                    digest: manifest.digest.clone(),
                    size: manifest.bytes.len() as u64,
                    media_type: String::new(),
                });
            }
        }
        for blob in &self.plan.blobs {
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
        index.touch_blobs(&uses)?;
        Ok(())
    }
}
