//! The images of an image tar, as a push needs them: read from the tar file in place (each
//! blob is a run of bytes in it, found by the verifying pass), named at the destination.
//!
//! - An image `index.json` reaches has its manifest in the tar: it goes up byte for byte, and
//!   an index (`--all-platforms`) with every manifest it names.
//! - An image only `manifest.json` lists (`--format docker-v1`, `docker save` before Docker
//!   25) gets a new manifest ([`super::compose_manifest`]).
//! - A delta's left-out blobs are expected at the destination.
//! - An index whose platforms the tar does not all hold (`docker save` from the containerd
//!   store) cannot go up whole: `--platform` pushes one it holds, as its own manifest.
//!
//! Names map as `DEST/<repository>:<tag>`: the tar's name for the image without its registry
//! (`docker.io/library/nginx:1.27` → `DEST/library/nginx:1.27`), or `--as NAME`.

use super::compose::LegacyLayer;
use super::{BlobFile, Origin, PushBlob, PushImage, PushManifest, compose_manifest};
use crate::bundle::{Bundle, BundleFile, BundleManifest, Image, Place, PlatformImage, blob_path};
use crate::cache::{BlobStore, CacheError};
use crate::platform::Platform;
use crate::reference::Reference;

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error(
        "DEST {dest:?} names no repository: give REGISTRY/REPOSITORY[:TAG], e.g. \
         registry.site:5000/team/app"
    )]
    NoRepository { dest: String },
    #[error(
        "DEST {dest:?} does not begin with a registry host (a name with a dot or a port, or \
         localhost), e.g. registry.site:5000/{dest}; for Docker Hub write it out: \
         docker.io/{dest}"
    )]
    NoRegistryHost { dest: String },
    #[error(
        "{dest}: give the destination as REGISTRY/REPOSITORY[:TAG], without a digest (the \
         digest is the source's, and is kept)"
    )]
    DestinationDigest { dest: String },
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
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
    #[error(
        "{image}: its layer {digest} travels as a patch against layers the destination holds \
         (a patch delta, export --patch); a registry takes blobs, not patches. Push the full \
         bundle"
    )]
    PatchDelta { image: String, digest: String },
    #[error(
        "{image} is an index whose platforms {absent} are not in the tar (it holds {held}), \
         so the index cannot be pushed: a registry refuses an index whose manifests it lacks. \
         Push what it holds with --platform {example} (the tag then names that platform's \
         manifest, whose digest is kept), or save the image with every platform"
    )]
    AbsentPlatforms {
        image: String,
        absent: String,
        held: String,
        example: String,
    },
    #[error("--platform {platform}: the tar holds {image} only for {held}")]
    PlatformNotHeld {
        image: String,
        platform: String,
        held: String,
    },
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

/// The images of `bundle` (read from the tar file at `tar`, and whole), named under `dest`
/// (`REGISTRY[/PREFIX]`), or `as_name` for a single image. With `platform`, an index whose
/// platforms the tar does not all hold goes up as that platform's manifest alone.
pub async fn tar_images(
    store: &BlobStore,
    tar: &BundleFile,
    bundle: &Bundle,
    dest: &str,
    as_name: Option<&str>,
    platform: Option<&Platform>,
    jobs: usize,
) -> Result<TarImages, TarError> {
    check_destination(dest)?;
    if let Some(name) = as_name.filter(|n| n.contains('@')) {
        return Err(TarError::AsDigest {
            name: name.to_string(),
        });
    }
    let mut found = Vec::new();
    for image in &bundle.images {
        found.push(match image.root {
            Some(_) => with_manifests(tar, image, platform)?,
            None => legacy(store, tar, image, jobs).await?,
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
    let chosen_from: Vec<(crate::digest::Digest, crate::digest::Digest)> = bundle
        .images
        .iter()
        .filter_map(|image| Some((image.chosen_from.clone(), image.digest()?.clone())))
        .flat_map(|(indexes, manifest)| indexes.into_iter().map(move |i| (i, manifest.clone())))
        .collect();
    let attached =
        super::attachment_pushes(&images, &bundle.attachments, &chosen_from, |descriptor| {
            let origin = match bundle.contents.resolve(&blob_path(&descriptor.digest)) {
                Some(file) => Origin::File(BlobFile::in_bundle(tar, file.offset, file.size)),
                None => Origin::AtDestination,
            };
            PushBlob {
                digest: descriptor.digest.clone(),
                size: descriptor.size,
                origin,
            }
        });
    images.extend(attached);
    let since = bundle
        .delta
        .as_ref()
        .map(|d| d.since.clone())
        .unwrap_or_default();
    let mut holders = Vec::new();
    for name in &since {
        if let Ok(repository) = repository_of(name)
            && let Ok((holder, _)) = target(dest, &repository, name)
        {
            holders.push(holder);
        }
    }
    // An image the tar names in the destination's own registry may be there already, under
    // its own repository: its blobs are mounted from there rather than sent again.
    let dest_host = dest.split('/').next().unwrap_or_default();
    for image in &bundle.images {
        for name in image.names.iter().chain(&image.repo_tags) {
            if let Ok(reference) = name.parse::<Reference>()
                && reference.registry() == dest_host
                && !holders
                    .iter()
                    .any(|h| h.full_name() == reference.full_name())
            {
                holders.push(reference);
            }
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

/// An image whose manifests the tar holds: they go up byte for byte, children first. An
/// index that names platforms the tar lacks cannot (the registry would refuse it): then only
/// the `--platform` asked for goes up, as its own manifest.
fn with_manifests(
    tar: &BundleFile,
    image: &Image,
    platform: Option<&Platform>,
) -> Result<Found, TarError> {
    let label = image.label.clone();
    let is_index = image.manifests.last().is_some_and(|m| m.is_index);
    let held: Vec<String> = image
        .platforms
        .iter()
        .filter_map(|p| p.platform.clone())
        .collect();
    let (manifests, platforms): (Vec<&BundleManifest>, Vec<&PlatformImage>) =
        match platform.filter(|_| is_index) {
            None if image.absent.is_empty() => (
                image.manifests.iter().collect(),
                image.platforms.iter().collect(),
            ),
            None => {
                return Err(TarError::AbsentPlatforms {
                    image: label,
                    absent: image.absent_platforms().join(", "),
                    held: held.join(", "),
                    example: held.first().cloned().unwrap_or_else(|| "OS/ARCH".into()),
                });
            }
            Some(wanted) => {
                let chosen = image
                    .platforms
                    .iter()
                    .find(|p| {
                        p.platform
                            .as_deref()
                            .and_then(|text| text.parse::<Platform>().ok())
                            .is_some_and(|p| wanted.matches(&p))
                    })
                    .ok_or_else(|| TarError::PlatformNotHeld {
                        image: label.clone(),
                        platform: wanted.to_string(),
                        held: held.join(", "),
                    })?;
                let manifest = image
                    .manifests
                    .iter()
                    .find(|m| Some(&m.digest) == chosen.manifest.as_ref())
                    .expect("a platform image's manifest is among the image's");
                (vec![manifest], vec![chosen])
            }
        };
    let mut blobs: Vec<PushBlob> = Vec::new();
    for platform in platforms {
        for blob in std::iter::once(&platform.config).chain(&platform.layers) {
            if blobs.iter().any(|b| b.digest == blob.digest) {
                continue;
            }
            blobs.push(PushBlob {
                digest: blob.digest.clone(),
                size: blob.size,
                origin: match blob.place {
                    Place::Tar { offset, .. } => {
                        Origin::File(BlobFile::in_bundle(tar, offset, blob.size))
                    }
                    Place::LeftOut => Origin::AtDestination,
                    Place::Patched => {
                        return Err(TarError::PatchDelta {
                            image: label.clone(),
                            digest: blob.digest.to_string(),
                        });
                    }
                },
            });
        }
    }
    Ok(Found {
        names: image.names.clone(),
        label,
        manifests: manifests
            .into_iter()
            .map(|m| PushManifest {
                digest: m.digest.clone(),
                media_type: m.media_type.clone(),
                bytes: m.bytes.clone(),
            })
            .collect(),
        blobs,
    })
}

/// An image only `manifest.json` lists (`--format docker-v1`, `docker save` before Docker
/// 25): it gets a manifest of its own.
async fn legacy(
    store: &BlobStore,
    tar: &BundleFile,
    image: &Image,
    jobs: usize,
) -> Result<Found, TarError> {
    let platform = &image.platforms[0];
    let file = |blob: &crate::bundle::Blob| match blob.place {
        Place::Tar { offset, is_tar } => {
            Some((BlobFile::in_bundle(tar, offset, blob.size), is_tar))
        }
        Place::LeftOut | Place::Patched => None,
    };
    let Some((config_file, _)) = file(&platform.config) else {
        return Err(TarError::ClassicDelta {
            image: image.label.clone(),
        });
    };
    let config = PushBlob {
        digest: platform.config.digest.clone(),
        size: platform.config.size,
        origin: Origin::File(config_file),
    };
    let mut layers = Vec::new();
    for layer in &platform.layers {
        let Some((file, is_tar)) = file(layer) else {
            return Err(TarError::ClassicDelta {
                image: image.label.clone(),
            });
        };
        layers.push(LegacyLayer {
            digest: layer.digest.clone(),
            file,
            is_tar,
        });
    }
    let (manifest, blobs) = compose_manifest(store, config, &layers, jobs).await?;
    Ok(Found {
        names: image.names.clone(),
        label: image.label.clone(),
        manifests: vec![manifest],
        blobs,
    })
}

/// The repository `dest` names for one image (`REGISTRY/REPOSITORY[:TAG]`, as `haul copy
/// SOURCE DEST` takes it), and the tag it spells out.
pub fn single_target(dest: &str) -> Result<(Reference, Option<String>), TarError> {
    if !dest.contains('/') {
        return Err(TarError::NoRepository {
            dest: dest.to_string(),
        });
    }
    // A copy publishes: DEST names its registry, as push's does (docker's rule would send
    // `team/app` to Docker Hub).
    let host = dest.split('/').next().unwrap_or_default();
    if !(host.contains('.') || host.contains(':') || host == "localhost") {
        return Err(TarError::NoRegistryHost {
            dest: dest.to_string(),
        });
    }
    let reference: Reference = dest.parse()?;
    if reference.digest().is_some() {
        return Err(TarError::DestinationDigest {
            dest: dest.to_string(),
        });
    }
    // A tag DEST spells out (parsing fills in `latest` when it names none).
    let last = dest.rsplit('/').next().unwrap_or(dest);
    let tag = last
        .contains(':')
        .then(|| reference.tag().map(str::to_string))
        .flatten();
    Ok((reference, tag))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

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
