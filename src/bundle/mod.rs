//! A bundle on disk (a tar `haul export` or `docker save` wrote), read once into one model:
//! the images it holds, each with its names, its index and manifests, its platforms' configs
//! and layers and where each blob lies in the file; what refers to them; what a delta left
//! out and on which images it relies; and every problem found on the way. `haul verify`,
//! `push`, `load`, `inspect FILE.tar`, `export --since TAR` and the signature checks are
//! readers of a [`Bundle`]; no other code parses the bundle's files ([`names`] names them, and
//! the writer in `crate::export` uses the same names).
//!
//! - [`scan`]: the one pass over the bytes; every file hashed as it streams by, only the
//!   metadata kept.
//! - [`read`](Bundle::read): the walk over what the pass saw: `index.json` (nested indexes
//!   followed), then `manifest.json`, then the two `haul-*` records.
//!
//! A platform whose manifest the tar lacks is absent by design (`docker save` from the
//! containerd image store of an image pulled for one platform writes the whole index but only
//! that platform's blobs); a platform whose manifest is there but a config or layer is not is
//! damage.

pub mod file;
pub mod identify;
pub mod names;
mod problem;
mod read;
pub mod scan;
pub mod summary;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

use crate::digest::Digest;
use crate::manifest::Descriptor;
pub use file::BundleFile;
pub use names::{
    AttachedManifest, Attachment, DeltaRecord, LeftOutBlob, ManifestEntry, ReferrersRecord,
    blob_path,
};
pub use problem::Problem;
pub use scan::{Contents, FileRecord, Kept};

/// Indexes nested deeper than this are not followed (a hostile tar could loop otherwise).
pub const MAX_DEPTH: usize = 8;
/// Links followed from one name before giving up (a loop).
pub const MAX_LINKS: usize = 16;

/// A tar, as read: whole when `problems` is empty.
#[derive(Debug, Default)]
pub struct Bundle {
    /// What the pass saw: every file's digest, size and place in the tar, and the metadata.
    pub contents: Contents,
    /// The images, in the order the indexes list them: `index.json`'s first, then those only
    /// `manifest.json` lists.
    pub images: Vec<Image>,
    /// What refers to the images (`--referrers`), with their manifests' bytes.
    pub attachments: Vec<Attachment>,
    /// Set when the tar is a delta.
    pub delta: Option<Delta>,
    pub problems: Vec<Problem>,
    /// Files under `blobs/sha256/` that hash to their names.
    pub blobs_verified: usize,
    /// Layers whose digest equals their config's diff_id (uncompressed layers).
    pub layers_matching_diff_ids: usize,
    /// Layers outside `blobs/` that are compressed: present, but their content cannot be
    /// checked without decompressing them.
    pub layers_unchecked: usize,
}

/// A whole tar that holds no image: what to say instead of "not whole".
#[derive(Debug, thiserror::Error)]
#[error(
    "{name} is a tar, but not an image bundle: it has neither manifest.json nor index.json, so \
     no loader reads it (a bundle is what `haul export` or `docker save` writes); {outcome}"
)]
pub struct NotAnImageTar {
    pub name: String,
    pub outcome: &'static str,
}

/// One image of a bundle: what one entry of `index.json` points at (all its names together),
/// or an image only `manifest.json` lists.
#[derive(Clone, Debug)]
pub struct Image {
    /// Its full names, as `index.json` gives them (`io.containerd.image.name`), else
    /// `manifest.json`'s `RepoTags`.
    pub names: Vec<String>,
    /// `manifest.json`'s names for it (docker's short form).
    pub repo_tags: Vec<String>,
    /// What to call it in messages.
    pub label: String,
    /// `index.json`'s entry for it (a manifest or an index); none when only `manifest.json`
    /// lists it, as the classic layout does.
    pub root: Option<Descriptor>,
    /// The manifests and indexes the tar holds for it, children first, the root last.
    pub manifests: Vec<BundleManifest>,
    /// Its images, one per platform the tar holds.
    pub platforms: Vec<PlatformImage>,
    /// The entries of its index whose manifests the tar does not hold.
    pub absent: Vec<Descriptor>,
    /// The index it was chosen from (one platform of a multi-platform image), when the tar
    /// carries that index for what refers to it (`haul-referrers.json`'s `subjects`): a
    /// signature of the index stands for this image too.
    pub chosen_from: Vec<Digest>,
}

impl Image {
    /// The digest of what the image's name points at (index or manifest).
    pub fn digest(&self) -> Option<&Digest> {
        self.root.as_ref().map(|d| &d.digest)
    }

    /// Every manifest digest that stands for this image: its root, the manifests the tar
    /// holds and those its index names but the tar lacks (a signature may name any).
    pub fn digests(&self) -> Vec<&Digest> {
        let mut digests: Vec<&Digest> = Vec::new();
        let all = self
            .root
            .iter()
            .map(|d| &d.digest)
            .chain(self.manifests.iter().map(|m| &m.digest))
            .chain(self.absent.iter().map(|d| &d.digest))
            .chain(&self.chosen_from);
        for digest in all {
            if !digests.contains(&digest) {
                digests.push(digest);
            }
        }
        digests
    }

    /// The digests a signature of this image may name: its root (the index or manifest its
    /// name points at), and the index a platform was chosen from (in the tar, hash-checked,
    /// listing the root). Not its other manifests: a signature of one child, or of an entry
    /// the tar lacks, says nothing of an index the tar may have made up around it.
    pub fn signed_digests(&self) -> Vec<&Digest> {
        let mut digests: Vec<&Digest> = self.root.iter().map(|d| &d.digest).collect();
        for digest in &self.chosen_from {
            if !digests.contains(&digest) {
                digests.push(digest);
            }
        }
        digests
    }

    /// The platforms its index names that the tar lacks, as `os/arch[/variant]` (or the
    /// digest when the entry names none).
    pub fn absent_platforms(&self) -> Vec<String> {
        self.absent.iter().map(describe_entry).collect()
    }
}

/// An index entry as `os/arch[/variant]`, or its digest when it has no platform.
pub fn describe_entry(descriptor: &Descriptor) -> String {
    descriptor
        .platform
        .as_ref()
        .map_or_else(|| descriptor.digest.short(), ToString::to_string)
}

/// A manifest or index in the tar, as it goes up to a registry: its bytes as they are.
#[derive(Clone, Debug)]
pub struct BundleManifest {
    pub digest: Digest,
    /// The manifest's own (a registry checks the Content-Type against it), else the
    /// descriptor's, else OCI's (whose manifests may omit it).
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub is_index: bool,
}

/// One platform's image in a bundle: its config and layers as the tar holds them.
#[derive(Clone, Debug)]
pub struct PlatformImage {
    /// Its manifest in the tar; none for an image only `manifest.json` describes.
    pub manifest: Option<Digest>,
    /// As its index entry names it, else as its config says.
    pub platform: Option<String>,
    pub config: Blob,
    /// The config's media type when it is not an image config (an artifact); none for an
    /// image.
    pub artifact_type: Option<String>,
    /// The config's `rootfs.diff_ids` (empty for an artifact).
    pub diff_ids: Vec<Digest>,
    /// In manifest order, duplicates included.
    pub layers: Vec<Blob>,
}

impl PlatformImage {
    /// Distinct bytes of its config and layers.
    pub fn size(&self) -> u64 {
        let mut seen = BTreeSet::new();
        std::iter::once(&self.config)
            .chain(&self.layers)
            .filter(|b| seen.insert(&b.digest))
            .map(|b| b.size)
            .sum()
    }
}

/// A blob an image names, and where it is.
#[derive(Clone, Debug)]
pub struct Blob {
    /// Its path in the tar.
    pub path: String,
    /// For a file outside `blobs/` (the classic layout), the digest of the file itself.
    pub digest: Digest,
    pub size: u64,
    /// The descriptor's media type; empty for the classic layout.
    pub media_type: String,
    pub place: Place,
}

/// Where a blob of a bundle is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// In the tar: its bytes run unbroken from `offset`. `is_tar` when they are an
    /// uncompressed tar (then the digest is a diff_id).
    Tar { offset: u64, is_tar: bool },
    /// Left out by a delta: expected at the destination.
    LeftOut,
    /// Carried as a patch (the delta's `patched`, by the blob's path): rebuilt from layers the
    /// destination holds.
    Patched,
}

/// What a delta says of itself (`haul-delta.json`), and what follows from it.
#[derive(Clone, Debug, Default)]
pub struct Delta {
    /// The blobs it names but leaves out, by the path the tar would hold them at.
    pub left_out: BTreeMap<String, LeftOutBlob>,
    /// The images of earlier bundles it relies on: what to load first.
    pub since: Vec<String>,
    /// The layers it carries as patches, by the path the tar would hold them at.
    pub patched: BTreeMap<String, names::PatchedLayer>,
    /// The chains (diff_id prefixes) of the layers it left out: what the destination must
    /// hold.
    pub needed_chains: BTreeSet<Vec<Digest>>,
}

/// One image of a bundle, as a receipt records it: what a site holds after loading it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReceiptImage {
    /// What the tar names it (`RepoTags`, or the containerd name in an OCI layout); empty
    /// for an image exported by digest alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(rename = "diffIds")]
    pub diff_ids: Vec<Digest>,
    /// The layer blobs, in order, as the tar names them.
    pub layers: Vec<ReceiptBlob>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReceiptBlob {
    pub digest: Digest,
    pub size: u64,
}

impl Bundle {
    /// Reads the tar from `reader` once. Never fails: what is wrong is in `problems`.
    pub async fn read<R: AsyncRead + Unpin>(reader: R) -> Bundle {
        read::read(scan::scan(reader).await)
    }

    pub fn is_whole(&self) -> bool {
        self.problems.is_empty()
    }

    /// The tar's size as its entries place it (their last byte, the end-of-archive blocks):
    /// for the progress of a compressed bundle's tar, whose size no file gives.
    pub fn tar_size(&self) -> u64 {
        let end = self
            .contents
            .files
            .values()
            .map(|f| f.offset + f.size.div_ceil(512) * 512)
            .max()
            .unwrap_or(0);
        end + 1024
    }

    /// Set when the tar is whole but holds no image at all: neither index, and nothing an
    /// image tar holds (so not an image tar cut before its index).
    pub fn not_an_image_tar(&self, name: &str, outcome: &'static str) -> Option<NotAnImageTar> {
        let image_like = self.contents.files.keys().any(|path| {
            path.starts_with("blobs/") || path.ends_with("/layer.tar") || path == "oci-layout"
        });
        (self.contents.complete && self.problems == [Problem::NoIndex] && !image_like).then(|| {
            NotAnImageTar {
                name: name.to_string(),
                outcome,
            }
        })
    }

    /// Distinct images by config (each platform counts; artifacts do not).
    pub fn image_count(&self) -> usize {
        self.images
            .iter()
            .flat_map(|i| &i.platforms)
            .filter(|p| p.artifact_type.is_none())
            .map(|p| &p.config.path)
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Layer blobs the delta leaves out.
    pub fn left_out_count(&self) -> usize {
        self.delta.as_ref().map_or(0, |d| d.left_out.len())
    }

    /// What a site holds after loading this bundle: each platform image, with every name the
    /// tar gives it.
    pub fn receipt_images(&self) -> Vec<ReceiptImage> {
        self.images
            .iter()
            .flat_map(|image| {
                image
                    .platforms
                    .iter()
                    .filter(|p| p.artifact_type.is_none())
                    .map(|p| ReceiptImage {
                        names: image
                            .names
                            .iter()
                            .chain(&image.repo_tags)
                            .cloned()
                            .collect(),
                        diff_ids: p.diff_ids.clone(),
                        layers: p.layers.iter().map(|l| self.held_blob(l)).collect(),
                    })
            })
            .collect()
    }

    /// The blob a site holds for layer `layer` once this bundle is loaded: the blob, or for a
    /// layer a patch rebuilds by content, its uncompressed tar.
    fn held_blob(&self, layer: &Blob) -> ReceiptBlob {
        let patched = (layer.place == Place::Patched)
            .then(|| self.delta.as_ref()?.patched.get(&layer.path))
            .flatten()
            .filter(|p| p.rebuild == names::Rebuild::Content);
        match patched {
            Some(patched) => ReceiptBlob {
                digest: patched.diff_id.clone(),
                size: patched.tar_size,
            },
            None => ReceiptBlob {
                digest: layer.digest.clone(),
                size: layer.size,
            },
        }
    }

    /// The bytes of the blob `digest` when the tar keeps them (JSON metadata).
    pub fn bytes_of(&self, digest: &Digest) -> Option<&[u8]> {
        self.contents.bytes_of(&blob_path(digest))
    }

    /// The sigstore trusted root the tar carries (`export --referrers --trusted-root`).
    pub fn trusted_root(&self) -> Option<&[u8]> {
        self.contents.bytes_of(names::TRUSTED_ROOT)
    }

    /// Whether the tar carries a record of attachments (exported with `--referrers`).
    pub fn has_referrers_record(&self) -> bool {
        self.contents.resolve(names::REFERRERS_RECORD).is_some()
    }
}

#[cfg(test)]
mod tests;
