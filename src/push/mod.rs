//! Push: images into a registry with every digest kept. Manifests go up byte for byte; the
//! blobs they name go up first, each only if the repository lacks it.
//!
//! The order makes a cut push harmless ([`Pusher::push`]):
//! 1. ask which blobs each repository holds (HEAD); link missing ones from another repository
//!    of the same registry known to hold them (a mount: no bytes sent);
//! 2. a delta's left-out blob that is still missing refuses the push here, before anything
//!    is written;
//! 3. upload the rest (chunked and resumable, see [`crate::registry`]);
//! 4. put the manifests by digest: image manifests, then the indexes that name them;
//! 5. last, the tags. A tag therefore only ever points at an image whose every part is in place.
//!
//! Where images come from is the caller's business: a tar ([`tar`]) or the cache (`haul copy`).

mod compose;
pub mod copy;
pub mod delta;
mod journal;
mod merge;
mod source;
pub mod tar;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;

use crate::bundle::Attachment;
use crate::cache::{LockMode, LockedFile};
use crate::digest::Digest;
use crate::manifest::Descriptor;
use crate::progress::{Event, Progress};
use crate::reference::Reference;
use crate::registry::{Client, RegistryError};
use crate::units::count;
pub use compose::compose_manifest;
pub use journal::{BlobLocations, FileJournal};
pub use source::{BlobFile, MemoryBlob};

/// One image to push: where it goes, its manifests and the blobs they name.
#[derive(Clone, Debug)]
pub struct PushImage {
    /// The repository it goes to, with the tags to write (none: by digest only).
    pub repository: Reference,
    pub tags: Vec<String>,
    /// In the order they go up: image manifests, then the index naming them. The last is the
    /// one the tags point at.
    pub manifests: Vec<PushManifest>,
    /// Configs and layers (and other blobs the manifests name), each once.
    pub blobs: Vec<PushBlob>,
    /// What the source calls it, for messages.
    pub source_name: String,
    /// For an artifact listed by the referrers API (no tag): the manifest it refers to. A
    /// destination without that API gets it listed under the OCI 1.1 fallback tag.
    pub subject: Option<Digest>,
}

impl PushImage {
    /// The digest its tags point at.
    pub fn digest(&self) -> &Digest {
        &self
            .manifests
            .last()
            .expect("an image has a manifest")
            .digest
    }
}

#[derive(Clone, Debug)]
pub struct PushManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct PushBlob {
    pub digest: Digest,
    pub size: u64,
    pub origin: Origin,
}

/// Where a blob's bytes are.
#[derive(Clone, Debug)]
pub enum Origin {
    /// In a file: the cache, or inside a tar.
    File(BlobFile),
    /// In memory: made by haul (a merged signature manifest's config).
    Memory(MemoryBlob),
    /// Nowhere here: a delta bundle left it out, as the destination holds it already.
    AtDestination,
}

/// What a push did.
#[derive(Clone, Debug, Default)]
pub struct PushSummary {
    /// Blobs the repositories held already.
    pub present: usize,
    /// Blobs linked from another repository of the registry.
    pub mounted: usize,
    /// Blobs uploaded, and the body bytes sent for them.
    pub uploaded: usize,
    pub sent_bytes: u64,
    /// Each image pushed: its repository, tags and digest.
    pub images: Vec<(Reference, Vec<String>, Digest)>,
}

impl PushSummary {
    /// Each image pushed, as `DEST/REPOSITORY:TAG@DIGEST` (a line per tag; without one, by
    /// digest alone).
    pub fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for (repository, tags, digest) in &self.images {
            if tags.is_empty() {
                names.push(format!("{}@{digest}", repository.full_name()));
            }
            for tag in tags {
                names.push(format!("{}:{tag}@{digest}", repository.full_name()));
            }
        }
        names
    }

    /// What went up: `N blobs: U uploaded (S sent), M mounted, P already there`.
    pub fn counts(&self) -> String {
        format!(
            "{} blobs: {} uploaded ({} sent), {} mounted, {} already there",
            self.present + self.mounted + self.uploaded,
            self.uploaded,
            crate::progress::human_bytes(self.sent_bytes),
            self.mounted,
            self.present
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error("cannot add to {tag} at the destination: {detail}; nothing was replaced")]
    Merge { tag: String, detail: String },
    #[error(
        "{} left out of this delta {} missing at {registry}: {}. Push {} there first (or push \
         a full bundle); no manifest or tag was written",
        count(.blobs.len(), "blob"),
        if .blobs.len() == 1 { "is" } else { "are" },
        .blobs.iter().map(|(digest, image)| format!("{} (of {image})", digest.short())).collect::<Vec<_>>().join(", "),
        .first
    )]
    MissingAtDestination {
        registry: String,
        /// Each blob, with the image that names it.
        blobs: Vec<(Digest, String)>,
        /// What to push first.
        first: String,
    },
}

/// Pushes images into one registry.
pub struct Pusher {
    pub client: Arc<Client>,
    pub journal_dir: PathBuf,
    pub progress: Arc<dyn Progress>,
    /// Uploads at once.
    pub jobs: usize,
}

impl Pusher {
    /// Pushes with `client`, `jobs` uploads at once; cut uploads are remembered in the cache's
    /// `uploads/`, so that the next push resumes them.
    pub fn new(
        client: Arc<Client>,
        store: &crate::cache::BlobStore,
        progress: Arc<dyn Progress>,
        jobs: usize,
    ) -> Pusher {
        Pusher {
            client,
            journal_dir: store.path_of(crate::cache::Bucket::Uploads),
            progress,
            jobs,
        }
    }

    /// Pushes `images` in the order described in the module's documentation. `holders` are
    /// repositories of the destination that may hold blobs (a delta's base images): mounts are
    /// tried from them. `first` says what to push first when a left-out blob is missing.
    pub async fn push(
        &self,
        images: &[PushImage],
        holders: &[Reference],
        first: &str,
    ) -> Result<PushSummary, PushError> {
        let mut summary = PushSummary::default();
        let locations = BlobLocations::new(&self.journal_dir);
        let remember = |repository: &Reference, digest: &Digest| {
            locations.add(repository.registry(), digest, repository.repository());
        };
        // 1. What each repository holds.
        let wanted: BTreeMap<(String, Digest), (&PushImage, &PushBlob)> = images
            .iter()
            .flat_map(|image| {
                image.blobs.iter().map(move |blob| {
                    (
                        (image.repository.full_name(), blob.digest.clone()),
                        (image, blob),
                    )
                })
            })
            .collect();
        let checks = futures::stream::iter(wanted.iter().map(|(key, (image, blob))| async move {
            let present = self
                .client
                .has_blob(&image.repository, &blob.digest)
                .await?;
            Ok::<_, RegistryError>((key.clone(), present))
        }))
        .buffer_unordered(self.jobs.max(1))
        .collect::<Vec<_>>()
        .await;
        let mut missing: BTreeSet<(String, Digest)> = BTreeSet::new();
        // Where each blob is known to be: repositories of this registry.
        let mut known: BTreeMap<Digest, Vec<Reference>> = BTreeMap::new();
        for check in checks {
            let (key, present) = check?;
            let (image, blob) = wanted[&key];
            if present {
                summary.present += 1;
                self.progress.event(Event::BlobPresent {
                    digest: blob.digest.clone(),
                    size: blob.size,
                    mounted_from: None,
                });
                remember(&image.repository, &blob.digest);
                known
                    .entry(blob.digest.clone())
                    .or_default()
                    .push(image.repository.clone());
            } else {
                missing.insert(key);
            }
        }
        // Mounts from where the blob is known to be: another repository of this push that
        // holds it, a delta's base, or where earlier pushes put it.
        for key in missing.clone() {
            let (image, blob) = wanted[&key];
            let registry = image.repository.registry();
            let mut candidates: Vec<String> = known
                .get(&blob.digest)
                .into_iter()
                .flatten()
                .chain(holders.iter())
                .filter(|r| r.registry() == registry)
                .map(|r| r.repository().to_string())
                .chain(locations.get(registry, &blob.digest))
                .filter(|r| r != image.repository.repository())
                .collect();
            dedup_in_order(&mut candidates);
            for from in candidates {
                if self
                    .client
                    .mount_blob(&image.repository, &blob.digest, &from)
                    .await?
                {
                    summary.mounted += 1;
                    self.progress.event(Event::BlobPresent {
                        digest: blob.digest.clone(),
                        size: blob.size,
                        mounted_from: Some(from),
                    });
                    remember(&image.repository, &blob.digest);
                    missing.remove(&key);
                    known
                        .entry(blob.digest.clone())
                        .or_default()
                        .push(image.repository.clone());
                    break;
                }
            }
        }
        // 2. A left-out blob that is not there: refuse before writing anything.
        let absent: Vec<(Digest, String)> = missing
            .iter()
            .map(|key| wanted[key])
            .filter(|(_, blob)| matches!(blob.origin, Origin::AtDestination))
            .map(|(image, blob)| (blob.digest.clone(), image.source_name.clone()))
            .collect();
        if !absent.is_empty() {
            let registry = images[0].repository.registry().to_string();
            return Err(PushError::MissingAtDestination {
                registry,
                blobs: absent,
                first: first.to_string(),
            });
        }
        // 3. Uploads: each blob once; other repositories wanting it mount it afterwards.
        let mut by_digest: BTreeMap<Digest, Vec<&(String, Digest)>> = BTreeMap::new();
        for key in &missing {
            by_digest.entry(key.1.clone()).or_default().push(key);
        }
        let uploads = futures::stream::iter(by_digest.values().map(|keys| {
            let (image, blob) = wanted[keys[0]];
            async move {
                let sent = self.upload(image, blob).await?;
                remember(&image.repository, &blob.digest);
                Ok::<_, PushError>(sent)
            }
        }))
        .buffer_unordered(self.jobs.max(1))
        .collect::<Vec<_>>()
        .await;
        for upload in uploads {
            let sent = upload?;
            summary.uploaded += 1;
            summary.sent_bytes += sent;
        }
        for keys in by_digest.values() {
            let (first_image, _) = wanted[keys[0]];
            for key in &keys[1..] {
                let (image, blob) = wanted[*key];
                let from = first_image.repository.repository();
                if self
                    .client
                    .mount_blob(&image.repository, &blob.digest, from)
                    .await?
                {
                    summary.mounted += 1;
                    self.progress.event(Event::BlobPresent {
                        digest: blob.digest.clone(),
                        size: blob.size,
                        mounted_from: Some(from.to_string()),
                    });
                } else {
                    summary.sent_bytes += self.upload(image, blob).await?;
                    summary.uploaded += 1;
                }
                remember(&image.repository, &blob.digest);
            }
        }
        // 4. Manifests by digest, children before the indexes naming them.
        for image in images {
            for manifest in &image.manifests {
                self.client
                    .put_manifest(
                        &image.repository,
                        &manifest.digest.to_string(),
                        &manifest.media_type,
                        &manifest.bytes,
                    )
                    .await?;
            }
        }
        // 5. Tags, now that everything they reach is in place; and for artifacts the
        // referrers API would list, the fallback tag where the destination has no such API.
        self.list_referrers(images).await?;
        for image in images {
            let top = image.manifests.last().expect("an image has a manifest");
            for tag in &image.tags {
                match merge::CosignTag::of(tag) {
                    Some(kind) => self.put_cosign_tag(image, tag, top, kind).await?,
                    None => {
                        self.client
                            .put_manifest(&image.repository, tag, &top.media_type, &top.bytes)
                            .await?;
                    }
                }
            }
            self.progress.event(Event::Pushed {
                reference: match image.tags.as_slice() {
                    [] => format!("{}@{}", image.repository.full_name(), top.digest),
                    tags => format!("{}:{}", image.repository.full_name(), tags.join(",")),
                },
                digest: top.digest.clone(),
            });
            summary.images.push((
                image.repository.clone(),
                image.tags.clone(),
                top.digest.clone(),
            ));
        }
        Ok(summary)
    }

    /// Uploads one blob; returns the body bytes sent.
    async fn upload(&self, image: &PushImage, blob: &PushBlob) -> Result<u64, PushError> {
        let source: Arc<dyn crate::registry::UploadSource> = match &blob.origin {
            Origin::File(file) => Arc::new(file.clone()),
            Origin::Memory(bytes) => Arc::new(bytes.clone()),
            Origin::AtDestination => unreachable!("left-out blobs are refused before uploads"),
        };
        let journal = FileJournal::new(&self.journal_dir, &image.repository, &blob.digest);
        std::fs::create_dir_all(&self.journal_dir).map_err(crate::cache::CacheError::io(
            "cannot create",
            &self.journal_dir,
        ))?;
        let progress = self.progress.clone();
        let waited = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waiting = {
            let (progress, digest) = (self.progress.clone(), blob.digest.clone());
            let waited = waited.clone();
            move || {
                waited.store(true, std::sync::atomic::Ordering::Relaxed);
                progress.event(Event::WaitingForLock { digest });
            }
        };
        let lock = LockedFile::acquire(&journal.lock_path(), LockMode::Exclusive, waiting).await?;
        // Another process may have pushed it while this one waited (only then is it worth
        // asking again: the blob was missing a moment ago).
        if waited.load(std::sync::atomic::Ordering::Relaxed)
            && self
                .client
                .has_blob(&image.repository, &blob.digest)
                .await?
        {
            lock.remove();
            return Ok(0);
        }
        let digest = blob.digest.clone();
        let on_bytes = Arc::new(move |bytes| {
            progress.event(Event::Uploaded {
                digest: digest.clone(),
                bytes,
            });
        });
        self.progress.event(Event::UploadStarted {
            digest: blob.digest.clone(),
            size: blob.size,
        });
        let report = self
            .client
            .upload_blob(&image.repository, &blob.digest, source, &journal, on_bytes)
            .await;
        lock.remove();
        let report = report?;
        self.progress.event(Event::UploadFinished {
            digest: blob.digest.clone(),
            size: blob.size,
            sent: report.sent,
            resumed_at: report.resumed_at,
        });
        Ok(report.sent)
    }
}

/// `attachments` (signatures, attestations, SBOMs) as pushes, each into the repository of
/// what it is attached to (an image of `images`, or another attachment), under its tag; their
/// blobs' bytes from `blob`. They go after the images: `Pusher::push` writes every manifest
/// before any tag. `chosen_from` pairs an index that is not pushed with a manifest that is
/// (one platform chosen from it): what refers to the index goes where that manifest goes.
pub fn attachment_pushes(
    images: &[PushImage],
    attachments: &[Attachment],
    chosen_from: &[(Digest, Digest)],
    blob: impl Fn(&Descriptor) -> PushBlob,
) -> Vec<PushImage> {
    let mut placed: Vec<(Digest, Reference)> = images
        .iter()
        .flat_map(|i| {
            i.manifests
                .iter()
                .map(|m| (m.digest.clone(), i.repository.clone()))
        })
        .collect();
    for (index, manifest) in chosen_from {
        let repository = placed
            .iter()
            .find(|(digest, _)| digest == manifest)
            .map(|(_, repository)| repository.clone());
        if let Some(repository) = repository
            && !placed.iter().any(|(digest, _)| digest == index)
        {
            placed.push((index.clone(), repository));
        }
    }
    let mut pushes = Vec::new();
    let mut pending: Vec<&Attachment> = attachments.iter().collect();
    // Attachments of attachments find their repository once their subject has one.
    loop {
        let before = pending.len();
        pending.retain(|attachment| {
            let Some((_, repository)) = placed.iter().find(|(d, _)| *d == attachment.subject)
            else {
                return true;
            };
            let repository = repository.clone();
            placed.extend(
                attachment
                    .manifests
                    .iter()
                    .map(|m| (m.digest.clone(), repository.clone())),
            );
            let mut blobs: Vec<PushBlob> = Vec::new();
            for descriptor in &attachment.blobs {
                if !blobs.iter().any(|b| b.digest == descriptor.digest) {
                    blobs.push(blob(descriptor));
                }
            }
            pushes.push(PushImage {
                subject: attachment.tag.is_none().then(|| attachment.subject.clone()),
                repository,
                tags: attachment.tag.iter().cloned().collect(),
                manifests: attachment
                    .manifests
                    .iter()
                    .map(|m| PushManifest {
                        digest: m.digest.clone(),
                        media_type: m.media_type.clone(),
                        bytes: m.bytes.clone(),
                    })
                    .collect(),
                blobs,
                source_name: format!(
                    "{} of {}",
                    attachment
                        .tag
                        .clone()
                        .unwrap_or_else(|| attachment.top().digest.short()),
                    attachment.subject.short()
                ),
            });
            false
        });
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    pushes
}

/// Keeps the first of each.
fn dedup_in_order(items: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    items.retain(|item| seen.insert(item.clone()));
}
