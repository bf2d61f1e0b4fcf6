//! Resolve: from a reference to one image manifest. An index or manifest list is narrowed to
//! the wanted platform (the host's unless told otherwise) and its entry fetched by digest.

use crate::cache::{BlobStore, CacheError};
use crate::digest::Digest;
use crate::manifest::{
    DOCKER_MANIFEST, ImageConfig, ImageManifest, Index, Manifest, ManifestError, OCI_MANIFEST,
};
use crate::platform::Platform;
use crate::reference::Reference;
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

/// Fetches the manifest `reference` names and, for an index, the entry for `wanted`.
pub async fn resolve(
    client: &Client,
    reference: &Reference,
    wanted: &Platform,
) -> Result<ResolvedImage, ResolveError> {
    let name = reference.to_string();
    let top = client.get_manifest(reference).await?;
    match Manifest::parse(&name, top.content_type.as_deref(), &top.bytes)? {
        Manifest::Image(image) => Ok(ResolvedImage {
            reference: reference.clone(),
            media_type: media_type_of(&image, top.content_type.as_deref()),
            manifest: top,
            image,
            platform_from_index: None,
            index: None,
            parsed_index: None,
        }),
        Manifest::Index(index) => {
            let entry = index.select(&name, wanted)?;
            let platform = entry.platform.as_ref().map(Platform::normalized);
            let fetched = client
                .get_manifest_by(reference, &entry.digest.to_string())
                .await?;
            match Manifest::parse(&name, fetched.content_type.as_deref(), &fetched.bytes)? {
                Manifest::Image(image) => Ok(ResolvedImage {
                    reference: reference.clone(),
                    media_type: media_type_of(&image, fetched.content_type.as_deref()),
                    manifest: fetched,
                    image,
                    platform_from_index: platform,
                    index: Some(top),
                    parsed_index: Some(index),
                }),
                Manifest::Index(_) => Err(ManifestError::NestedIndex { reference: name }.into()),
            }
        }
    }
}

/// Resolves from the cache alone: a digest reference through its cached manifest (and, for an
/// index, the cached entry for `wanted`); a tag through what it last resolved to here.
pub fn resolve_offline(
    store: &BlobStore,
    reference: &Reference,
    wanted: &Platform,
) -> Result<ResolvedImage, ResolveError> {
    let name = reference.to_string();
    let read = |digest: &Digest| -> Result<FetchedManifest, ResolveError> {
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
    let top_digest = match reference.digest() {
        Some(digest) => digest.clone(),
        None => {
            store
                .index()
                .lookup_ref(&name, &wanted.to_string())?
                .ok_or_else(|| ResolveError::NotCached {
                    reference: name.clone(),
                    platform: wanted.to_string(),
                })?
                .manifest
        }
    };
    let top = read(&top_digest)?;
    match Manifest::parse(&name, None, &top.bytes)? {
        Manifest::Image(image) => Ok(ResolvedImage {
            reference: reference.clone(),
            media_type: media_type_of(&image, None),
            manifest: top,
            image,
            platform_from_index: None,
            index: None,
            parsed_index: None,
        }),
        Manifest::Index(index) => {
            let entry = index.select(&name, wanted)?;
            let platform = entry.platform.as_ref().map(Platform::normalized);
            let fetched = read(&entry.digest)?;
            match Manifest::parse(&name, None, &fetched.bytes)? {
                Manifest::Image(image) => Ok(ResolvedImage {
                    reference: reference.clone(),
                    media_type: media_type_of(&image, None),
                    manifest: fetched,
                    image,
                    platform_from_index: platform,
                    index: Some(top),
                    parsed_index: Some(index),
                }),
                Manifest::Index(_) => Err(ManifestError::NestedIndex { reference: name }.into()),
            }
        }
    }
}

impl ResolvedImage {
    /// Checks the image against its config: the platform (when one was asked for explicitly
    /// and the image is single-platform) and the layer count, which loaders require to equal
    /// the config's diff_ids.
    pub fn check_config(
        &self,
        config: &ImageConfig,
        explicit_platform: Option<&Platform>,
    ) -> Result<(), ResolveError> {
        let name = self.reference.to_string();
        config.check_layer_count(&name, self.image.layers.len())?;
        if let Some(wanted) = explicit_platform
            && self.platform_from_index.is_none()
            && !config.architecture.is_empty()
            && !wanted.matches(&config.platform())
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
