//! The index files of the default format, the layout `docker save` writes since Docker 25:
//! `manifest.json` (read by Docker's classic image store), `index.json` + `oci-layout` (read
//! by the containerd image store and OCI tools), and the legacy `repositories`.
//!
//! Both indexes list every image completely: `Layers` is the manifest's layer list as is,
//! duplicates included, and `index.json` points at the registry's own manifest bytes.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ExportImage;
use crate::digest::Digest;
use crate::manifest::OCI_INDEX;

pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The path of a blob inside the tar.
pub fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

#[derive(Serialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// `manifest.json`: one entry per distinct image (by manifest digest), with every name
/// asked for it in `RepoTags`.
pub fn manifest_json(images: &[ExportImage]) -> Vec<u8> {
    let mut entries: Vec<(Digest, ManifestEntry)> = Vec::new();
    for image in images {
        let tag = image.reference.familiar_tagged();
        if let Some((_, entry)) = entries
            .iter_mut()
            .find(|(d, _)| *d == image.manifest_digest)
        {
            if let Some(tag) = tag
                && !entry.repo_tags.contains(&tag)
            {
                entry.repo_tags.push(tag);
            }
            continue;
        }
        entries.push((
            image.manifest_digest.clone(),
            ManifestEntry {
                config: blob_path(&image.config.digest),
                repo_tags: tag.into_iter().collect(),
                layers: image.layers.iter().map(|l| blob_path(&l.digest)).collect(),
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

/// `index.json`: one entry per name, pointing at the registry's manifest, named the way
/// containerd reads names (`io.containerd.image.name` is the full reference).
pub fn index_json(images: &[ExportImage]) -> Vec<u8> {
    let mut manifests: Vec<IndexEntry> = Vec::new();
    for image in images {
        let mut annotations = BTreeMap::new();
        annotations.insert("io.containerd.image.name", image.reference.full_tagged());
        if let Some(tag) = image.reference.tag() {
            annotations.insert("org.opencontainers.image.ref.name", tag.to_string());
        }
        let entry = IndexEntry {
            media_type: image.manifest_media_type.clone(),
            digest: image.manifest_digest.clone(),
            size: image.manifest.len() as u64,
            annotations,
        };
        let duplicate = manifests
            .iter()
            .any(|m| m.digest == entry.digest && m.annotations == entry.annotations);
        if !duplicate {
            manifests.push(entry);
        }
    }
    let index = OciIndex {
        schema_version: 2,
        media_type: OCI_INDEX,
        manifests,
    };
    serde_json::to_vec(&index).expect("index.json serializes")
}

/// `repositories`: `{"name":{"tag":"<top layer>"}}`, as docker save writes it; loaders that
/// read `manifest.json` ignore it, older tools still look for it.
pub fn repositories_json(images: &[ExportImage]) -> Vec<u8> {
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for image in images {
        let (Some(tag), Some(top)) = (image.reference.tag(), image.layers.last()) else {
            continue;
        };
        repositories
            .entry(image.reference.familiar_name())
            .or_default()
            .insert(tag.to_string(), top.digest.hex().to_string());
    }
    serde_json::to_vec(&repositories).expect("repositories serializes")
}
