//! The `blobs/` layouts: the default format, the layout `docker save` writes since Docker 25
//! (`manifest.json` for Docker's classic image store, `index.json` + `oci-layout` for the
//! containerd image store and OCI tools, and the legacy `repositories`), and the OCI image
//! layout alone (`index.json` + `oci-layout`). Both indexes list every image completely:
//! `Layers` is the manifest's layer list as is, duplicates included.
//!
//! `index.json` points at the registry's own manifest bytes, so the image keeps its digest;
//! when the layers are stored uncompressed, it points at the same manifest with each layer
//! descriptor replaced by the uncompressed one, which is what `docker save` writes too.

use super::tar::Sink;
use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::{BlobSource, Blobs, Entries, ExportError, ExportImage, Layout, SourceIndex};
use crate::bundle::names::{
    CONTAINERD_NAME, INDEX_JSON, MANIFEST_JSON, OCI_LAYOUT, OCI_LAYOUT_BYTES, REF_NAME,
    REPOSITORIES,
};
use crate::bundle::{Attachment, ManifestEntry, blob_path};
use crate::cache::StoredBlob;
use crate::digest::Digest;
use crate::manifest::{Compression, Descriptor, OCI_INDEX};
use crate::reference::Reference;

/// One image as written: what the index files say of it.
pub struct Written {
    pub reference: Reference,
    pub manifest_digest: Digest,
    pub manifest_size: u64,
    pub manifest_media_type: String,
    /// Paths in the tar.
    pub config: String,
    pub layers: Vec<String>,
    /// What `repositories` names the image by (its top layer).
    pub top_layer_id: Option<String>,
}

pub(super) fn write<W, S>(
    images: &[ExportImage],
    layout: Layout,
    attachments: &[Attachment],
    blobs: &mut Blobs<'_, S>,
    tar: &mut Entries<W>,
) -> Result<(), ExportError>
where
    W: Sink,
    S: BlobSource,
{
    tar.dir("blobs/")?;
    tar.dir("blobs/sha256/")?;
    // A blob shared by layers or images is stored once; the indexes still list every use.
    let mut in_tar: HashSet<Digest> = HashSet::new();
    let mut written = Vec::new();
    for image in images {
        store_blob(&image.config, blobs, &mut in_tar, tar)?;
        let mut layers = Vec::with_capacity(image.layers.len());
        for (i, descriptor) in image.layers.iter().enumerate() {
            let path = blob_path(image.tar_blob(i));
            if let Some(held) = blobs.left_out(image, i, &path) {
                layers.push(held);
            } else if let Some((layer, patch)) = blobs.patched(image, i, &path) {
                if in_tar.insert(patch.digest.clone()) {
                    tar.file(&blob_path(&patch.digest), &patch)?;
                }
                layers.push(layer);
            } else {
                layers.push(store_blob(descriptor, blobs, &mut in_tar, tar)?);
            }
        }
        blobs.written(image, &layers);
        let (manifest, manifest_digest) = manifest_for(image, &layers);
        if in_tar.insert(manifest_digest.clone()) {
            tar.bytes(&blob_path(&manifest_digest), &manifest)?;
        }
        written.push(Written {
            reference: image.reference.clone(),
            manifest_size: manifest.len() as u64,
            manifest_digest,
            manifest_media_type: image.manifest_media_type.clone(),
            config: blob_path(&image.config.digest),
            layers: layers.iter().map(|l| blob_path(&l.digest)).collect(),
            top_layer_id: layers.last().map(|l| l.digest.hex().to_string()),
        });
    }
    let targets = index_targets(images, &written, &mut in_tar, tar)?;
    // OCI tools find attachments in index.json; docker's loaders would take them for images.
    let listed = if layout == Layout::Oci {
        attachments
    } else {
        &[]
    };
    tar.bytes(INDEX_JSON, &index_json(&targets, listed))?;
    if layout == Layout::Docker {
        tar.bytes(MANIFEST_JSON, &manifest_json(&written))?;
    }
    tar.bytes(OCI_LAYOUT, OCI_LAYOUT_BYTES)?;
    if layout == Layout::Docker {
        tar.bytes(REPOSITORIES, &repositories_json(&written))?;
    }
    Ok(())
}

/// What `index.json` points at: each image's manifest, or, for the platforms of one reference
/// exported together, their index (written here). That is the registry's own index when it
/// is whole in the tar, else an index of the platforms exported (and of the manifests as
/// stored).
fn index_targets<W: Sink>(
    images: &[ExportImage],
    written: &[Written],
    in_tar: &mut HashSet<Digest>,
    tar: &mut Entries<W>,
) -> Result<Vec<IndexTarget>, ExportError> {
    let mut targets: Vec<IndexTarget> = Vec::new();
    let mut done: HashSet<(String, Digest)> = HashSet::new();
    for (image, this) in images.iter().zip(written) {
        let Some(source) = &image.index else {
            targets.push(IndexTarget {
                reference: this.reference.clone(),
                media_type: this.manifest_media_type.clone(),
                digest: this.manifest_digest.clone(),
                size: this.manifest_size,
            });
            continue;
        };
        if !done.insert((image.reference.to_string(), source.digest.clone())) {
            continue;
        }
        // Every platform of this reference from this index, as written.
        let members: Vec<(&Digest, &Written)> = images
            .iter()
            .zip(written)
            .filter(|(other, _)| {
                other.reference == image.reference
                    && other.index.as_ref().map(|i| &i.digest) == Some(&source.digest)
            })
            .map(|(other, w)| (&other.manifest_digest, w))
            .collect();
        let (bytes, digest, media_type) = index_for(source, &members);
        if in_tar.insert(digest.clone()) {
            tar.bytes(&blob_path(&digest), &bytes)?;
        }
        targets.push(IndexTarget {
            reference: image.reference.clone(),
            media_type,
            digest,
            size: bytes.len() as u64,
        });
    }
    Ok(targets)
}

/// The registry's index when every entry is in the tar unchanged; else the same index with
/// only the exported entries, each pointing at its manifest as stored.
fn index_for(source: &SourceIndex, members: &[(&Digest, &Written)]) -> (Vec<u8>, Digest, String) {
    let mut index: serde_json::Value =
        serde_json::from_slice(&source.bytes).expect("the index parsed when resolved");
    let media_type = index
        .get("mediaType")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(OCI_INDEX)
        .to_string();
    let mut changed = false;
    if let Some(entries) = index
        .get_mut("manifests")
        .and_then(serde_json::Value::as_array_mut)
    {
        let before = entries.len();
        entries.retain(|entry| {
            members
                .iter()
                .any(|(digest, _)| entry["digest"].as_str() == Some(&digest.to_string()))
        });
        changed |= entries.len() != before;
        for entry in entries.iter_mut() {
            let Some((_, written)) = members
                .iter()
                .find(|(digest, _)| entry["digest"].as_str() == Some(&digest.to_string()))
            else {
                continue;
            };
            if written.manifest_digest.to_string() != entry["digest"].as_str().unwrap_or("") {
                entry["digest"] = written.manifest_digest.to_string().into();
                entry["size"] = written.manifest_size.into();
                changed = true;
            }
        }
    }
    if !changed {
        return (source.bytes.clone(), source.digest.clone(), media_type);
    }
    let bytes = serde_json::to_vec(&index).expect("an index serializes");
    let digest = Digest::of(&bytes);
    (bytes, digest, media_type)
}

/// Gets a blob from `blobs` (once per run) and writes it into the tar (once per tar).
fn store_blob<W, S>(
    descriptor: &Descriptor,
    blobs: &mut Blobs<'_, S>,
    in_tar: &mut HashSet<Digest>,
    tar: &mut Entries<W>,
) -> Result<StoredBlob, ExportError>
where
    W: Sink,
    S: BlobSource,
{
    let blob = blobs.get(&descriptor.digest)?;
    if in_tar.insert(blob.digest.clone()) {
        tar.file(&blob_path(&blob.digest), &blob)?;
    }
    Ok(blob)
}

/// The manifest for the layers as stored: the registry's bytes when they are stored as
/// served, else the same manifest with each changed layer descriptor replaced by its
/// uncompressed form (digest = diff_id, size, tar media type).
fn manifest_for(image: &ExportImage, layers: &[StoredBlob]) -> (Vec<u8>, Digest) {
    let unchanged = image
        .layers
        .iter()
        .zip(layers)
        .all(|(descriptor, blob)| descriptor.digest == blob.digest);
    if unchanged {
        return (image.manifest.clone(), image.manifest_digest.clone());
    }
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&image.manifest).expect("the manifest parsed when resolved");
    let media_type = Compression::uncompressed_media_type(&image.manifest_media_type);
    if let Some(entries) = manifest
        .get_mut("layers")
        .and_then(serde_json::Value::as_array_mut)
    {
        for ((entry, descriptor), blob) in entries.iter_mut().zip(&image.layers).zip(layers) {
            if descriptor.digest == blob.digest {
                continue;
            }
            if let Some(entry) = entry.as_object_mut() {
                entry.insert("mediaType".into(), media_type.into());
                entry.insert("digest".into(), blob.digest.to_string().into());
                entry.insert("size".into(), blob.size.into());
                // Where to fetch the compressed blob from no longer applies.
                entry.remove("urls");
            }
        }
    }
    let bytes = serde_json::to_vec(&manifest).expect("a manifest serializes");
    let digest = Digest::of(&bytes);
    (bytes, digest)
}

/// `manifest.json`: one entry per distinct image (by manifest digest), with every name
/// asked for it in `RepoTags`.
pub fn manifest_json(images: &[Written]) -> Vec<u8> {
    let mut entries: Vec<(&Digest, ManifestEntry)> = Vec::new();
    for image in images {
        let tag = image.reference.familiar_tagged();
        if let Some((_, entry)) = entries
            .iter_mut()
            .find(|(d, _)| **d == image.manifest_digest)
        {
            if let Some(tag) = tag
                && !entry.repo_tags.contains(&tag)
            {
                entry.repo_tags.push(tag);
            }
            continue;
        }
        entries.push((
            &image.manifest_digest,
            ManifestEntry {
                config: image.config.clone(),
                repo_tags: tag.into_iter().collect(),
                layers: image.layers.clone(),
            },
        ));
    }
    let entries: Vec<ManifestEntry> = entries.into_iter().map(|(_, e)| e).collect();
    serde_json::to_vec(&entries).expect("manifest.json serializes")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OciIndex {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<IndexEntry>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    media_type: String,
    digest: Digest,
    size: u64,
    annotations: BTreeMap<&'static str, String>,
}

/// One entry of `index.json`: a name and the manifest or index it points at.
pub struct IndexTarget {
    pub reference: Reference,
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// `index.json`: one entry per name, named the way containerd reads names
/// (`io.containerd.image.name` is the full reference) and OCI tools read tags
/// (`org.opencontainers.image.ref.name`).
pub fn index_json(targets: &[IndexTarget], attachments: &[Attachment]) -> Vec<u8> {
    let mut manifests: Vec<IndexEntry> = Vec::new();
    for target in targets {
        let mut annotations = BTreeMap::new();
        annotations.insert(CONTAINERD_NAME, target.reference.full_tagged());
        if let Some(tag) = target.reference.tag() {
            annotations.insert(REF_NAME, tag.to_string());
        }
        let entry = IndexEntry {
            media_type: target.media_type.clone(),
            digest: target.digest.clone(),
            size: target.size,
            annotations,
        };
        let duplicate = manifests
            .iter()
            .any(|m| m.digest == entry.digest && m.annotations == entry.annotations);
        if !duplicate {
            manifests.push(entry);
        }
    }
    // Each attachment, named by its tag when it has one (as cosign and the OCI fallback name
    // them).
    for attachment in attachments {
        let top = attachment.top();
        let mut annotations = BTreeMap::new();
        if let Some(tag) = &attachment.tag {
            annotations.insert(REF_NAME, tag.clone());
        }
        if !manifests.iter().any(|m| m.digest == top.digest) {
            manifests.push(IndexEntry {
                media_type: top.media_type.clone(),
                digest: top.digest.clone(),
                size: top.size,
                annotations,
            });
        }
    }
    let index = OciIndex {
        schema_version: 2,
        media_type: OCI_INDEX,
        manifests,
    };
    serde_json::to_vec(&index).expect("index.json serializes")
}

/// `repositories`: `{"name":{"tag":"<top layer id>"}}`, as docker save writes it; loaders that
/// read `manifest.json` ignore it, older tools still look for it.
pub fn repositories_json(images: &[Written]) -> Vec<u8> {
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for image in images {
        let (Some(tag), Some(top)) = (image.reference.tag(), &image.top_layer_id) else {
            continue;
        };
        repositories
            .entry(image.reference.familiar_name())
            .or_default()
            .insert(tag.to_string(), top.clone());
    }
    serde_json::to_vec(&repositories).expect("repositories serializes")
}
