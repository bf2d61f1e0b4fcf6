//! What refers to images, looked up where their registries keep it: the referrers API,
//! cosign's tags and the OCI 1.1 fallback tag, followed recursively, every manifest kept in
//! the cache and the blobs fetched through it.

use std::sync::Arc;

use super::{AttachedManifest, Attachment};
use crate::cache::{BlobStore, CacheError};
use crate::digest::Digest;
use crate::fetch::{BlobRequest, FetchError, Fetcher};
use crate::manifest::{Descriptor, Manifest, ManifestError};
use crate::plan::Plan;
use crate::reference::{Identifier, Reference};
use crate::registry::{Client, FetchedManifest, RegistryError};
use crate::resolve::ResolvedImage;

/// Why what refers to an image could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum ReferrersError {
    #[error(
        "--referrers looks the signatures, attestations and SBOMs up in the registry; it cannot \
         be used with --offline"
    )]
    Offline,
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Fetch(Box<FetchError>),
}

impl From<FetchError> for ReferrersError {
    fn from(error: FetchError) -> Self {
        ReferrersError::Fetch(Box::new(error))
    }
}

/// The registry client and the cache a run looks referrers up with.
pub struct Lookup<'a> {
    pub client: &'a Arc<Client>,
    pub store: &'a BlobStore,
    pub fetcher: &'a Fetcher,
    /// `--offline`: nothing can be looked up.
    pub offline: bool,
}

impl Lookup<'_> {
    /// What refers to the manifests of `resolved` (each image's, and the index it came from):
    /// signatures, attestations, SBOMs, and what refers to those in turn; their manifests and
    /// blobs fetched into the cache.
    pub async fn attachments(
        &self,
        resolved: &[ResolvedImage],
    ) -> Result<Vec<Attachment>, ReferrersError> {
        let (found, requests) = self.discover_attachments(resolved).await?;
        let mut downloads = self.fetcher.start(&requests);
        for request in &requests {
            downloads.wait(&request.descriptor.digest).await?;
        }
        Ok(found)
    }

    /// What refers to `resolved` (their manifests kept in the cache, their blobs not fetched),
    /// and the requests for those blobs.
    pub async fn discover_attachments(
        &self,
        resolved: &[ResolvedImage],
    ) -> Result<(Vec<Attachment>, Vec<BlobRequest>), ReferrersError> {
        if self.offline {
            return Err(ReferrersError::Offline);
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
            let mut listed: Vec<Attachment> = Vec::new();
            for (tag, top) in self.referrers_of(&reference, &subject).await? {
                let attachment = self
                    .attachment(&reference, subject.clone(), tag, top)
                    .await?;
                // The fallback tag's index is a list: its referrers count, one by one.
                listed.extend(attachment.into_referrers());
            }
            for attachment in listed {
                let top = attachment.top();
                if found
                    .iter()
                    .any(|a| a.top().digest == top.digest && a.tag == attachment.tag)
                {
                    continue;
                }
                for manifest in &attachment.manifests {
                    if depth + 1 < super::MAX_DEPTH && seen.insert(manifest.digest.clone()) {
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
    pub async fn referrers_of(
        &self,
        reference: &Reference,
        subject: &Digest,
    ) -> Result<Vec<(Option<String>, FetchedManifest)>, ReferrersError> {
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
        for tag in super::tags_for(subject) {
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
    pub async fn manifest_by_digest(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<FetchedManifest, ReferrersError> {
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
    pub async fn attachment(
        &self,
        reference: &Reference,
        subject: Digest,
        tag: Option<String>,
        top: FetchedManifest,
    ) -> Result<Attachment, ReferrersError> {
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
}

/// The indexes single platforms of `plan` were chosen from that something refers to (a
/// signature of the index): the tar carries them, so that the reference holds offline.
pub fn chosen_from_signed_indexes(
    plan: &Plan,
    attachments: &[Attachment],
) -> Vec<AttachedManifest> {
    let mut out: Vec<AttachedManifest> = Vec::new();
    for (resolved, image) in plan.resolved.iter().zip(&plan.images) {
        let Some(index) = &resolved.index else {
            continue;
        };
        let written_whole = image.index.is_some();
        let referred = attachments.iter().any(|a| a.subject == index.digest);
        if written_whole || !referred || out.iter().any(|s| s.digest == index.digest) {
            continue;
        }
        out.push(AttachedManifest {
            digest: index.digest.clone(),
            media_type: index
                .content_type
                .clone()
                .filter(|t| crate::manifest::is_index(t))
                .unwrap_or_else(|| crate::manifest::OCI_INDEX.to_string()),
            size: index.bytes.len() as u64,
            bytes: index.bytes.clone(),
        });
    }
    out
}
