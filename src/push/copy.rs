//! Pushing from the cache: `haul copy` puts images it pulled into another registry, every
//! digest kept: each image's manifest as the registry served it, and for all platforms every
//! manifest the index names and the index itself.

use std::sync::Arc;

use super::{BlobFile, Origin, PushBlob, PushError, PushImage, PushManifest, PushSummary, Pusher};
use crate::cache::{BlobStore, CacheError};
use crate::digest::Digest;
use crate::fetch::{BlobRequest, FetchError, Fetcher};
use crate::manifest::{Descriptor, Manifest, ManifestError};
use crate::plan::Plan;
use crate::reference::Reference;
use crate::referrers::Attachment;
use crate::registry::{Client, RegistryError};
use crate::resolve::{PlatformKey, ResolvedImage};

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Fetch(Box<FetchError>),
    #[error(transparent)]
    Push(#[from] PushError),
}

impl From<FetchError> for CopyError {
    fn from(error: FetchError) -> Self {
        CopyError::Fetch(Box::new(error))
    }
}

/// Where a copy reads what it pushes: the cache a pull filled, and the registry for what the
/// pull did not take (an index's other manifests, its platforms not taken as images).
pub struct FromCache<'a> {
    pub client: &'a Arc<Client>,
    pub store: &'a BlobStore,
    pub fetcher: &'a Fetcher,
    /// `--offline`: the cache alone.
    pub offline: bool,
}

impl FromCache<'_> {
    /// Copies `plan`'s images (pulled into the cache: see [`crate::pipeline::Session::pull`]) each into the
    /// repository and tags `target` gives for its reference: each image's manifest as the
    /// registry served it, and for all platforms every manifest the index names and the index
    /// itself, so every digest is kept.
    pub async fn copy(
        &self,
        pusher: &Pusher,
        plan: &Plan,
        attachments: &[Attachment],
        target: impl Fn(&Reference) -> (Reference, Vec<String>),
    ) -> Result<PushSummary, CopyError> {
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
        // A platform copied alone stands for its index: what refers to the index goes with it.
        let chosen_from: Vec<(Digest, Digest)> = plan
            .resolved
            .iter()
            .filter(|r| !matches!(r.platform_key, PlatformKey::All))
            .filter_map(|r| Some((r.index.as_ref()?.digest.clone(), r.manifest.digest.clone())))
            .collect();
        let attached = super::attachment_pushes(&images, attachments, &chosen_from, |descriptor| {
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
        Ok(pusher.push(&images, &holders, "").await?)
    }

    /// An index and every manifest it names, children first, with their blobs: those the
    /// plan pulled, and the others (attestations, and platforms not taken as images)
    /// fetched now, so that the index's digest can be kept.
    async fn index_for_push(
        &self,
        plan: &Plan,
        resolved: &ResolvedImage,
        index: &crate::registry::FetchedManifest,
    ) -> Result<(Vec<PushManifest>, Vec<PushBlob>), CopyError> {
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
                origin: Origin::File(BlobFile::new(
                    self.store.blob_path(&descriptor.digest),
                    0,
                    descriptor.size,
                )),
            });
        }
        blobs
    }
}
