//! Resolve: from a reference to one image manifest. An index or manifest list is narrowed to
//! the wanted platform (the host's unless told otherwise) and its entry fetched by digest.

use crate::cache::{BlobStore, CacheError};
use crate::digest::Digest;
use crate::manifest::{
    DOCKER_MANIFEST, Descriptor, ImageConfig, ImageManifest, Index, Manifest, ManifestError,
    OCI_MANIFEST,
};
use crate::platform::{Platform, PlatformError};
use crate::reference::{Identifier, Reference};
use crate::registry::{Client, FetchedManifest, RegistryError};

/// An image manifest as the registry served it, with what it was resolved from.
#[derive(Clone, Debug)]
pub struct ResolvedImage {
    /// What the user asked for (names the image in the tar).
    pub reference: Reference,
    pub manifest: FetchedManifest,
    pub media_type: String,
    pub image: ImageManifest,
    /// Set when the reference named an index: the platform chosen from it.
    pub platform_from_index: Option<Platform>,
    /// The index the manifest was chosen from, if any (kept in the cache for --offline).
    pub index: Option<FetchedManifest>,
    /// What the cache index records the resolution under, for --offline.
    pub platform_key: PlatformKey,
    /// The same index, parsed: every platform it offers.
    pub parsed_index: Option<Index>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(
        "{reference} ({platform}) has not been pulled into this cache, so --offline cannot resolve it; \
         run `haul pull {reference}` once with network access"
    )]
    NotCached { reference: String, platform: String },
    #[error(
        "the manifest {digest} of {reference} is not in the cache, so --offline cannot use it; \
         run `haul pull {reference}` once with network access"
    )]
    ManifestNotCached { reference: String, digest: Digest },
    #[error(
        "{reference} is a single-platform image for {actual}, not {wanted}; \
         drop --platform or ask for {actual}"
    )]
    PlatformMismatch {
        reference: String,
        wanted: String,
        actual: String,
    },
}

/// References (or images) asked of registries at once: enough to hide a far registry's
/// latency for a long list, few enough to be polite to it.
pub const AT_ONCE: usize = 32;

/// Which images of a multi-platform reference to take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlatformChoice {
    /// These platforms: the ones asked for (`explicit`), else the host's.
    Some {
        platforms: Vec<Platform>,
        explicit: bool,
    },
    /// Every platform an index lists (attestation entries excepted).
    All,
}

impl PlatformChoice {
    /// What `--all-platforms` (`all`) and `--platform` (`platforms`, as written) ask for; the
    /// host's platform when neither is given.
    pub fn asked(all: bool, platforms: &[String]) -> Result<PlatformChoice, PlatformError> {
        if all {
            return Ok(PlatformChoice::All);
        }
        let platforms = platforms
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

    /// The platforms asked for with --platform (none for the host default or --all-platforms).
    pub fn explicit(&self) -> &[Platform] {
        match self {
            PlatformChoice::Some {
                platforms,
                explicit: true,
            } => platforms,
            _ => &[],
        }
    }
}

/// What the cache index records a resolution under, beside the reference: the platform
/// asked for, or every platform (`--all-platforms`, written `all`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlatformKey {
    One(Platform),
    All,
}

impl PlatformKey {
    const ALL: &str = "all";

    /// Reads a key as the index stores it; `None` for one this version does not know.
    pub fn parse(text: &str) -> Option<PlatformKey> {
        if text == PlatformKey::ALL {
            return Some(PlatformKey::All);
        }
        text.parse().ok().map(PlatformKey::One)
    }
}

impl std::fmt::Display for PlatformKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlatformKey::One(platform) => write!(f, "{platform}"),
            PlatformKey::All => f.write_str(PlatformKey::ALL),
        }
    }
}

/// Fetches the manifest `reference` names and, for an index, the entries `choice` selects.
/// A manifest asked for by digest is read from `store` when it is there (content by digest
/// never changes): a reference pinned by digest whose manifests are cached needs no request.
pub async fn resolve(
    client: &Client,
    store: &BlobStore,
    reference: &Reference,
    choice: &PlatformChoice,
) -> Result<Vec<ResolvedImage>, ResolveError> {
    let fetch = async |digest: &Digest| {
        if store.blob_path(digest).is_file()
            && let Ok(bytes) = store.read_verified(digest)
        {
            return Ok(FetchedManifest {
                digest: digest.clone(),
                bytes,
                content_type: None,
            });
        }
        client
            .get_manifest_by(reference, &Identifier::Digest(digest.clone()))
            .await
            .map_err(ResolveError::from)
    };
    let top = match reference.digest() {
        Some(digest) => fetch(digest).await?,
        None => client.get_manifest(reference).await?,
    };
    select(reference, top, choice, fetch).await
}

/// Resolves from the cache alone: a digest reference through its cached manifest (and, for an
/// index, the cached entries); a tag through what it last resolved to here.
pub async fn resolve_offline(
    store: &BlobStore,
    reference: &Reference,
    choice: &PlatformChoice,
) -> Result<Vec<ResolvedImage>, ResolveError> {
    let name = reference.to_string();
    let read = async |digest: &Digest| -> Result<FetchedManifest, ResolveError> {
        if !store.blob_path(digest).exists() {
            return Err(ResolveError::ManifestNotCached {
                reference: name.clone(),
                digest: digest.clone(),
            });
        }
        let bytes = store.read_verified(digest)?;
        Ok(FetchedManifest {
            digest: digest.clone(),
            bytes,
            content_type: None,
        })
    };
    if let Some(digest) = reference.digest() {
        let top = read(digest).await?;
        return select(reference, top, choice, read).await;
    }
    // A tag: what it last resolved to, per platform (or for all of them).
    let keys: Vec<PlatformKey> = match choice {
        PlatformChoice::All => vec![PlatformKey::All],
        PlatformChoice::Some { platforms, .. } => {
            platforms.iter().cloned().map(PlatformKey::One).collect()
        }
    };
    let mut resolved = Vec::new();
    for key in keys {
        let (index, lookup_name, lookup_key) = (store.index(), name.clone(), key.to_string());
        let record = crate::blocking::run(move || {
            // One platform of an image pulled with --all-platforms: the whole index serves.
            match index.lookup_ref(&lookup_name, &lookup_key)? {
                None if lookup_key != PlatformKey::ALL => {
                    index.lookup_ref(&lookup_name, PlatformKey::ALL)
                }
                found => Ok(found),
            }
        })
        .await?;
        let digest = record
            .ok_or_else(|| ResolveError::NotCached {
                reference: name.clone(),
                platform: key.to_string(),
            })?
            .manifest;
        let top = read(&digest).await?;
        let one = match &key {
            PlatformKey::One(platform) => PlatformChoice::Some {
                platforms: vec![platform.clone()],
                explicit: !choice.explicit().is_empty(),
            },
            PlatformKey::All => PlatformChoice::All,
        };
        resolved.extend(select(reference, top, &one, &read).await?);
    }
    Ok(resolved)
}

/// From the top manifest: itself when it is an image, else the index entries `choice` wants,
/// each fetched (by digest) with `fetch`.
async fn select(
    reference: &Reference,
    top: FetchedManifest,
    choice: &PlatformChoice,
    fetch: impl AsyncFn(&Digest) -> Result<FetchedManifest, ResolveError>,
) -> Result<Vec<ResolvedImage>, ResolveError> {
    let name = reference.to_string();
    let index = match Manifest::parse(&name, top.content_type.as_deref(), &top.bytes)? {
        Manifest::Image(image) => {
            let platform_key = match choice {
                PlatformChoice::All => PlatformKey::All,
                PlatformChoice::Some { platforms, .. } => PlatformKey::One(platforms[0].clone()),
            };
            return Ok(vec![ResolvedImage {
                reference: reference.clone(),
                media_type: media_type_of(&image, top.content_type.as_deref()),
                manifest: top,
                image,
                platform_from_index: None,
                index: None,
                platform_key,
                parsed_index: None,
            }]);
        }
        Manifest::Index(index) => index,
    };
    let entries: Vec<(&Descriptor, PlatformKey)> = match choice {
        PlatformChoice::All => {
            let entries = index.images();
            if entries.is_empty() {
                return Err(ManifestError::NoMatchingPlatform {
                    reference: name,
                    wanted: Platform::host(),
                    available: index.platforms_listing(),
                }
                .into());
            }
            entries.into_iter().map(|d| (d, PlatformKey::All)).collect()
        }
        PlatformChoice::Some { platforms, .. } => {
            let mut entries: Vec<(&Descriptor, PlatformKey)> = Vec::new();
            for platform in platforms {
                let entry = index.select(&name, platform)?;
                // linux/arm64 and linux/arm64/v8 are one entry: take it once.
                if !entries.iter().any(|(d, _)| d.digest == entry.digest) {
                    entries.push((entry, PlatformKey::One(platform.clone())));
                }
            }
            entries
        }
    };
    let mut resolved = Vec::with_capacity(entries.len());
    for (entry, platform_key) in entries {
        let fetched = fetch(&entry.digest).await?;
        match Manifest::parse(&name, fetched.content_type.as_deref(), &fetched.bytes)? {
            Manifest::Image(image) => resolved.push(ResolvedImage {
                reference: reference.clone(),
                media_type: media_type_of(&image, fetched.content_type.as_deref()),
                manifest: fetched,
                image,
                platform_from_index: entry.platform.as_ref().map(Platform::normalized),
                index: Some(top.clone()),
                platform_key,
                parsed_index: Some(index.clone()),
            }),
            Manifest::Index(_) => {
                return Err(ManifestError::NestedIndex { reference: name }.into());
            }
        }
    }
    Ok(resolved)
}

impl ResolvedImage {
    /// Checks the image against its config: the platform (when one was asked for explicitly
    /// and the image is single-platform) and the layer count, which loaders require to equal
    /// the config's diff_ids.
    pub fn check_config(
        &self,
        config: &ImageConfig,
        explicit_platforms: &[Platform],
    ) -> Result<(), ResolveError> {
        let name = self.reference.to_string();
        config.check_layer_count(&name, self.image.layers.len())?;
        let mismatch = explicit_platforms
            .iter()
            .find(|wanted| !wanted.matches(&config.platform()));
        if let Some(wanted) = mismatch
            && self.platform_from_index.is_none()
            && !config.architecture.is_empty()
        {
            return Err(ResolveError::PlatformMismatch {
                reference: name,
                wanted: wanted.to_string(),
                actual: config.platform().to_string(),
            });
        }
        Ok(())
    }
}

/// The manifest's media type for index.json: its own field, else the Content-Type, else
/// guessed from the config's media type.
fn media_type_of(image: &ImageManifest, content_type: Option<&str>) -> String {
    if let Some(media_type) = &image.media_type {
        return media_type.clone();
    }
    if let Some(content_type) = content_type.map(|c| c.split(';').next().unwrap_or("").trim())
        && (content_type == DOCKER_MANIFEST || content_type == OCI_MANIFEST)
    {
        return content_type.to_string();
    }
    if image.config.media_type == crate::manifest::DOCKER_CONFIG {
        DOCKER_MANIFEST.to_string()
    } else {
        OCI_MANIFEST.to_string()
    }
}
