//! The images of an image tar, as a push needs them: read from the tar file in place (each
//! blob is a run of bytes in it, found by the verifying pass), named at the destination.
//!
//! - An image `index.json` reaches has its manifest in the tar: it goes up byte for byte, and
//!   an index (`--all-platforms`) with every manifest it names.
//! - An image only `manifest.json` lists (`--format docker-v1`, `docker save` before Docker
//!   25) gets a new manifest ([`super::compose_manifest`]).
//! - A delta's left-out blobs are expected at the destination.
//!
//! Names map as `DEST/<repository>:<tag>`: the tar's name for the image without its registry
//! (`docker.io/library/nginx:1.27` → `DEST/library/nginx:1.27`), or `--as NAME`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use super::compose::LegacyLayer;
use super::{Origin, PushBlob, PushImage, PushManifest, compose_manifest};
use crate::cache::{BlobStore, CacheError};
use crate::delta::{DeltaRecord, RECORD_NAME};
use crate::digest::Digest;
use crate::export::blob_path;
use crate::manifest::{Descriptor, Index, Manifest, OCI_INDEX, OCI_MANIFEST};
use crate::reference::Reference;
use crate::referrers::Attachment;
use crate::registry::BlobFile;
use crate::verify::Contents;

/// Indexes nested deeper than this are not followed.
const MAX_DEPTH: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error(
        "{image} has no name in the tar (it was saved by ID or digest); give it one with \
         --as REPOSITORY[:TAG]"
    )]
    NoName { image: String },
    #[error(
        "--as names one image, but the tar holds {count}; push it without --as (each image \
         keeps its own name under the destination)"
    )]
    AsWithSeveral { count: usize },
    #[error("{what} is not a valid image name at {dest}: {detail}")]
    BadName {
        what: String,
        dest: String,
        detail: String,
    },
    #[error(
        "DEST {dest:?} must begin with a registry host (a name with a dot or a port, or \
         localhost), e.g. registry.site:5000 or registry.site:5000/mirror"
    )]
    NotARegistry { dest: String },
    #[error(
        "DEST {dest:?} names a tag or digest, but here DEST is REGISTRY[/PREFIX]: each image \
         goes to DEST/<repository>:<tag> with its own (to push one image under a name, use \
         --as, or haul copy SOURCE REGISTRY/REPOSITORY:TAG)"
    )]
    PrefixWithTag { dest: String },
    #[error("--as {name:?} names a digest; give REPOSITORY[:TAG] (the digest is the image's own)")]
    AsDigest { name: String },
    #[error(
        "{first} and {second} would both be pushed as {target}; push them one at a time with --as"
    )]
    SameTarget {
        first: String,
        second: String,
        target: String,
    },
    #[error(
        "{image} is a delta in the docker-v1 layout (or docker save's before Docker 25): a \
         registry knows its left-out layers by compressed digests this tar does not carry. Push \
         a delta exported in the default layout (--format docker), or the full bundle"
    )]
    ClassicDelta { image: String },
    #[error("{path} in the tar is not a readable manifest: {detail}")]
    Malformed { path: String, detail: String },
    #[error("the tar lacks {path}, which {named_by} names")]
    Missing { path: String, named_by: String },
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// The tar's images, ready to push.
pub struct TarImages {
    pub images: Vec<PushImage>,
    /// For a delta: the destination's repositories of the images it was made against, where
    /// its left-out blobs should be.
    pub holders: Vec<Reference>,
    /// What to push first if a left-out blob is missing.
    pub first: String,
}

/// Reads the images of the tar at `tar` (already verified whole, `contents` from that pass)
/// and names them under `dest` (`REGISTRY[/PREFIX]`), or `as_name` for a single image.
pub async fn tar_images(
    store: &BlobStore,
    tar: &Path,
    contents: &Contents,
    dest: &str,
    as_name: Option<&str>,
    jobs: usize,
) -> Result<TarImages, TarError> {
    check_destination(dest)?;
    if let Some(name) = as_name.filter(|n| n.contains('@')) {
        return Err(TarError::AsDigest {
            name: name.to_string(),
        });
    }
    let reader = TarReader::new(tar, contents);
    let attachments = crate::referrers::attachments_in(contents);
    let mut found = reader.images_in_index_json(&attachments)?;
    for legacy in reader.images_only_in_manifest_json(&found)? {
        let (manifest, blobs) =
            compose_manifest(store, legacy.config, &legacy.layers, jobs).await?;
        found.push(Found {
            names: legacy.names,
            label: legacy.label,
            manifests: vec![manifest],
            blobs,
        });
    }
    if as_name.is_some() && found.len() != 1 {
        return Err(TarError::AsWithSeveral { count: found.len() });
    }
    let mut images: Vec<PushImage> = Vec::new();
    for image in found {
        let targets = match as_name {
            Some(name) => vec![target(dest, name, &image.label)?],
            None if image.names.is_empty() => {
                return Err(TarError::NoName { image: image.label });
            }
            None => {
                let mut targets: Vec<(Reference, Vec<String>)> = Vec::new();
                for name in &image.names {
                    let (repository, tags) = target(dest, &repository_of(name)?, name)?;
                    match targets
                        .iter_mut()
                        .find(|(r, _)| r.full_name() == repository.full_name())
                    {
                        Some((_, existing)) => existing.extend(tags),
                        None => targets.push((repository, tags)),
                    }
                }
                targets
            }
        };
        let Some(top) = image.manifests.last() else {
            continue;
        };
        for (repository, tags) in targets {
            for tag in &tags {
                if let Some(other) = images.iter().find(|i| {
                    i.repository.full_name() == repository.full_name()
                        && i.tags.contains(tag)
                        && *i.digest() != top.digest
                }) {
                    return Err(TarError::SameTarget {
                        first: other.source_name.clone(),
                        second: image.label.clone(),
                        target: format!("{}:{tag}", repository.full_name()),
                    });
                }
            }
            images.push(PushImage {
                subject: None,
                repository,
                tags,
                manifests: image.manifests.clone(),
                blobs: image.blobs.clone(),
                source_name: image.label.clone(),
            });
        }
    }
    // Then what refers to them, read from the tar too.
    let attached = super::attachment_pushes(&images, &attachments, |descriptor| {
        reader
            .blob(
                &blob_path(&descriptor.digest),
                &descriptor.digest,
                descriptor.size,
                "haul-referrers.json",
            )
            .unwrap_or(PushBlob {
                digest: descriptor.digest.clone(),
                size: descriptor.size,
                origin: Origin::AtDestination,
            })
    });
    images.extend(attached);
    let since = reader.delta_since();
    let mut holders = Vec::new();
    for name in &since {
        if let Ok(repository) = repository_of(name)
            && let Ok((holder, _)) = target(dest, &repository, name)
        {
            holders.push(holder);
        }
    }
    let first = if since.is_empty() {
        "the bundles this delta was made against".to_string()
    } else {
        format!("the bundle holding {}", since.join(", "))
    };
    Ok(TarImages {
        images,
        holders,
        first,
    })
}

/// Refuses a `REGISTRY[/PREFIX]` destination that does not begin with a registry host (docker's
/// rule would read `myregistry/x` as Docker Hub's `myregistry/x`).
pub fn check_destination(dest: &str) -> Result<(), TarError> {
    let mut parts = dest.split('/');
    let host = parts.next().unwrap_or_default();
    if !(host.contains('.') || host.contains(':') || host == "localhost") {
        return Err(TarError::NotARegistry {
            dest: dest.to_string(),
        });
    }
    // Each image brings its own repository and tag: a prefix names neither.
    if parts.any(|part| part.contains(':') || part.contains('@')) {
        return Err(TarError::PrefixWithTag {
            dest: dest.to_string(),
        });
    }
    Ok(())
}

/// `name` (a full reference, or docker's short form) without its registry:
/// `library/nginx:1.27`, `team/app@sha256:…`.
pub fn repository_of(name: &str) -> Result<String, TarError> {
    let reference: Reference = name
        .parse()
        .map_err(|e: crate::reference::ReferenceError| TarError::BadName {
            what: name.to_string(),
            dest: "the source".to_string(),
            detail: e.to_string(),
        })?;
    Ok(match (reference.tag(), reference.digest()) {
        (Some(tag), _) => format!("{}:{tag}", reference.repository()),
        (None, Some(digest)) => format!("{}@{digest}", reference.repository()),
        (None, None) => reference.repository().to_string(),
    })
}

/// `DEST/name` as a repository and its tags (none when `name` is by digest alone).
pub fn target(dest: &str, name: &str, label: &str) -> Result<(Reference, Vec<String>), TarError> {
    let full = format!("{}/{name}", dest.trim_end_matches('/'));
    let reference: Reference = full
        .parse()
        .map_err(|e: crate::reference::ReferenceError| TarError::BadName {
            what: format!("{name} (for {label})"),
            dest: dest.to_string(),
            detail: e.to_string(),
        })?;
    let tags = match (reference.tag(), reference.digest()) {
        (Some(tag), _) => vec![tag.to_string()],
        (None, Some(_)) => Vec::new(),
        (None, None) => vec!["latest".to_string()],
    };
    Ok((reference, tags))
}

/// An image found in the tar, before naming.
struct Found {
    names: Vec<String>,
    /// What to call it in messages.
    label: String,
    manifests: Vec<PushManifest>,
    blobs: Vec<PushBlob>,
}

/// An image with no manifest in the tar.
struct Legacy {
    names: Vec<String>,
    label: String,
    config: PushBlob,
    layers: Vec<LegacyLayer>,
}

#[derive(Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(
        rename = "RepoTags",
        default,
        deserialize_with = "crate::manifest::null_as_empty"
    )]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers", deserialize_with = "crate::manifest::null_as_empty")]
    layers: Vec<String>,
}

struct TarReader<'a> {
    tar: &'a Path,
    contents: &'a Contents,
    /// A delta's left-out blobs, by path.
    left_out: BTreeMap<String, Digest>,
    manifest_json: Vec<ManifestEntry>,
}

impl<'a> TarReader<'a> {
    fn new(tar: &'a Path, contents: &'a Contents) -> TarReader<'a> {
        let record: Option<DeltaRecord> = contents
            .bytes_of(RECORD_NAME)
            .and_then(|bytes| serde_json::from_slice(bytes).ok());
        let left_out = record
            .map(|r| {
                r.left_out
                    .into_iter()
                    .map(|blob| (blob.path, blob.digest))
                    .collect()
            })
            .unwrap_or_default();
        let manifest_json = contents
            .bytes_of("manifest.json")
            .and_then(|bytes| serde_json::from_slice(bytes).ok())
            .unwrap_or_default();
        TarReader {
            tar,
            contents,
            left_out,
            manifest_json,
        }
    }

    fn delta_since(&self) -> Vec<String> {
        self.contents
            .bytes_of(RECORD_NAME)
            .and_then(|bytes| serde_json::from_slice::<DeltaRecord>(bytes).ok())
            .map(|record| record.since)
            .unwrap_or_default()
    }

    /// The blob at `path`: in the tar, or left out by a delta.
    fn blob(
        &self,
        path: &str,
        digest: &Digest,
        size: u64,
        named_by: &str,
    ) -> Result<PushBlob, TarError> {
        if let Some(file) = self.contents.resolve(path) {
            return Ok(PushBlob {
                digest: digest.clone(),
                size,
                origin: Origin::File(BlobFile {
                    path: self.tar.to_path_buf(),
                    offset: file.offset,
                    size: file.size,
                }),
            });
        }
        if self.left_out.contains_key(path) {
            return Ok(PushBlob {
                digest: digest.clone(),
                size,
                origin: Origin::AtDestination,
            });
        }
        Err(TarError::Missing {
            path: path.to_string(),
            named_by: named_by.to_string(),
        })
    }

    fn images_in_index_json(&self, attachments: &[Attachment]) -> Result<Vec<Found>, TarError> {
        let Some(bytes) = self.contents.bytes_of("index.json") else {
            return Ok(Vec::new());
        };
        let index: Index = serde_json::from_slice(bytes).map_err(|e| TarError::Malformed {
            path: "index.json".to_string(),
            detail: e.to_string(),
        })?;
        let mut found = Vec::new();
        for descriptor in &index.manifests {
            // An attachment (OCI layout) is pushed with what it refers to, not as an image.
            if attachments
                .iter()
                .any(|a| a.top().digest == descriptor.digest)
            {
                continue;
            }
            let mut manifests = Vec::new();
            let mut blobs = Vec::new();
            let mut configs = Vec::new();
            self.walk(
                descriptor,
                "index.json",
                0,
                &mut manifests,
                &mut blobs,
                &mut configs,
            )?;
            let mut names: Vec<String> = descriptor
                .annotations
                .get("io.containerd.image.name")
                .cloned()
                .into_iter()
                .collect();
            if names.is_empty() {
                // docker's manifest.json names the image by its config.
                names = self
                    .manifest_json
                    .iter()
                    .filter(|entry| configs.contains(&entry.config))
                    .flat_map(|entry| entry.repo_tags.iter().cloned())
                    .collect();
            }
            let label = names
                .first()
                .cloned()
                .unwrap_or_else(|| format!("image {}", descriptor.digest.short()));
            found.push(Found {
                names,
                label,
                manifests,
                blobs,
            });
        }
        Ok(found)
    }

    /// Collects the manifest `descriptor` names (children first) and the blobs they name.
    fn walk(
        &self,
        descriptor: &Descriptor,
        named_by: &str,
        depth: usize,
        manifests: &mut Vec<PushManifest>,
        blobs: &mut Vec<PushBlob>,
        configs: &mut Vec<String>,
    ) -> Result<(), TarError> {
        let path = blob_path(&descriptor.digest);
        if manifests.iter().any(|m| m.digest == descriptor.digest) {
            return Ok(());
        }
        let malformed = |detail: String| TarError::Malformed {
            path: path.clone(),
            detail,
        };
        if depth >= MAX_DEPTH {
            return Err(malformed(format!(
                "indexes nest deeper than {MAX_DEPTH} levels"
            )));
        }
        let bytes = self
            .contents
            .bytes_of(&path)
            .ok_or_else(|| TarError::Missing {
                path: path.clone(),
                named_by: named_by.to_string(),
            })?;
        let content_type = Some(descriptor.media_type.as_str()).filter(|t| !t.is_empty());
        let manifest = Manifest::parse(&path, content_type, bytes)
            .map_err(|e| malformed(crate::error::describe(&e)))?;
        // The manifest's own (a registry checks the Content-Type against it), else the
        // descriptor's, else OCI's (whose manifests may omit it).
        let own = match &manifest {
            Manifest::Image(m) => m.media_type.clone(),
            Manifest::Index(i) => i.media_type.clone(),
        };
        let media_type =
            own.or(content_type.map(str::to_string))
                .unwrap_or_else(|| match manifest {
                    Manifest::Image(_) => OCI_MANIFEST.to_string(),
                    Manifest::Index(_) => OCI_INDEX.to_string(),
                });
        match &manifest {
            Manifest::Index(index) => {
                let named_by = format!("the index {path}");
                for child in &index.manifests {
                    self.walk(child, &named_by, depth + 1, manifests, blobs, configs)?;
                }
            }
            Manifest::Image(image) => {
                let named_by = format!("the manifest {path}");
                configs.push(blob_path(&image.config.digest));
                for blob in std::iter::once(&image.config).chain(&image.layers) {
                    if blobs.iter().any(|b| b.digest == blob.digest) {
                        continue;
                    }
                    blobs.push(self.blob(
                        &blob_path(&blob.digest),
                        &blob.digest,
                        blob.size,
                        &named_by,
                    )?);
                }
            }
        }
        manifests.push(PushManifest {
            digest: descriptor.digest.clone(),
            media_type,
            bytes: bytes.to_vec(),
        });
        Ok(())
    }

    /// Images `manifest.json` lists that no manifest in the tar describes.
    fn images_only_in_manifest_json(&self, found: &[Found]) -> Result<Vec<Legacy>, TarError> {
        let covered: BTreeSet<&Digest> = found
            .iter()
            .flat_map(|f| f.blobs.iter().map(|b| &b.digest))
            .collect();
        let mut legacy = Vec::new();
        for (i, entry) in self.manifest_json.iter().enumerate() {
            let label = entry
                .repo_tags
                .first()
                .cloned()
                .unwrap_or_else(|| format!("image {} of manifest.json", i + 1));
            let named_by = format!("manifest.json ({label})");
            let config_file =
                self.contents
                    .resolve(&entry.config)
                    .ok_or_else(|| TarError::Missing {
                        path: entry.config.clone(),
                        named_by: named_by.clone(),
                    })?;
            if covered.contains(&config_file.digest) {
                continue;
            }
            let config = self.blob(
                &entry.config,
                &config_file.digest,
                config_file.size,
                &named_by,
            )?;
            if entry.layers.iter().any(|p| self.left_out.contains_key(p)) {
                return Err(TarError::ClassicDelta { image: label });
            }
            let mut layers = Vec::new();
            for path in &entry.layers {
                let file = self
                    .contents
                    .resolve(path)
                    .ok_or_else(|| TarError::Missing {
                        path: path.clone(),
                        named_by: named_by.clone(),
                    })?;
                layers.push(LegacyLayer {
                    digest: file.digest.clone(),
                    file: BlobFile {
                        path: self.tar.to_path_buf(),
                        offset: file.offset,
                        size: file.size,
                    },
                    is_tar: file.is_tar,
                });
            }
            legacy.push(Legacy {
                names: entry.repo_tags.clone(),
                label,
                config,
                layers,
            });
        }
        Ok(legacy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_under_the_destination() {
        let repository = repository_of("docker.io/library/nginx:1.27").unwrap();
        assert_eq!(repository, "library/nginx:1.27");
        assert_eq!(
            repository_of("busybox:1.36").unwrap(),
            "library/busybox:1.36"
        );
        assert_eq!(
            repository_of("127.0.0.1:5000/team/app:v1").unwrap(),
            "team/app:v1"
        );
        let (target_ref, tags) = target("site:5000/mirror", &repository, "x").unwrap();
        assert_eq!(target_ref.full_name(), "site:5000/mirror/library/nginx");
        assert_eq!(tags, vec!["1.27".to_string()]);
        // By digest alone: no tag.
        let digest = Digest::of(b"m");
        let (target_ref, tags) = target("site:5000", &format!("app@{digest}"), "x").unwrap();
        assert_eq!(target_ref.full_name(), "site:5000/app");
        assert!(tags.is_empty());
        // No tag given: latest, as docker does.
        let (_, tags) = target("site:5000", "app", "x").unwrap();
        assert_eq!(tags, vec!["latest".to_string()]);
    }
}
