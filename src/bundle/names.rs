//! The files of a bundle and their records: what the writer (`crate::export`) writes and
//! the reader ([`super::Bundle::read`]) reads, named once.
//!
//! ```text
//! manifest.json          [ManifestEntry]: docker's classic image store reads only this
//! index.json             an OCI index: the containerd image store and OCI tools read this
//! oci-layout             {"imageLayoutVersion":"1.0.0"}
//! repositories           {"name":{"tag":"<top layer id>"}} (old tools)
//! blobs/sha256/<hex>     configs, layers, manifests, indexes, attachments
//! <id>/layer.tar ...     the classic v1.2 layout's layers (--format docker-v1)
//! haul-delta.json        DeltaRecord: what a delta left out, and on which images it relies
//! haul-referrers.json    ReferrersRecord: what refers to the images (--referrers)
//! ```
//! Every loader ignores the two `haul-*` files.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest::Descriptor;

pub const MANIFEST_JSON: &str = "manifest.json";
pub const INDEX_JSON: &str = "index.json";
pub const OCI_LAYOUT: &str = "oci-layout";
pub const REPOSITORIES: &str = "repositories";
/// A delta's own record.
pub const DELTA_RECORD: &str = "haul-delta.json";
/// The record of a bundle's attachments.
pub const REFERRERS_RECORD: &str = "haul-referrers.json";
/// The sigstore trusted root a bundle carries, to check its keyless signatures at the site.
pub const TRUSTED_ROOT: &str = "haul-trusted-root.json";
/// What `oci-layout` holds.
pub const OCI_LAYOUT_BYTES: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The annotation of an `index.json` entry that containerd reads as the image's full name.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The annotation OCI tools read as the entry's tag.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The path of a blob inside the tar.
pub fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// The digest a `blobs/sha256/<hex>` path names, if it is one.
pub fn digest_of_path(path: &str) -> Option<Digest> {
    let hex = path.strip_prefix("blobs/sha256/")?;
    format!("sha256:{hex}").parse().ok()
}

/// One entry of `manifest.json`. Other fields docker writes (Parent, LayerSources) are not
/// needed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManifestEntry {
    #[serde(rename = "Config")]
    pub config: String,
    /// Docker's short names (`busybox:latest`, `host:5000/team/app:1`); `null` when docker
    /// saved the image by its ID.
    #[serde(
        rename = "RepoTags",
        default,
        deserialize_with = "crate::manifest::null_as_empty"
    )]
    pub repo_tags: Vec<String>,
    #[serde(rename = "Layers", deserialize_with = "crate::manifest::null_as_empty")]
    pub layers: Vec<String>,
}

/// `haul-delta.json`: the blobs the tar names but does not hold, expected at the destination.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaRecord {
    #[serde(rename = "haulDelta")]
    pub version: u32,
    #[serde(rename = "leftOut")]
    pub left_out: Vec<LeftOutBlob>,
    /// The images of earlier bundles whose layers it relies on: what to load first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub since: Vec<String>,
    /// The layers it carries as patches against layers the destination holds
    /// (`crate::patch`). A reader that does not know them finds those layers missing, and
    /// loads nothing: the safe way to fail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patched: Vec<PatchedLayer>,
}

const DELTA_RECORD_VERSION: u32 = 1;

/// A layer a delta carries as a patch.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PatchedLayer {
    /// Where the tar would hold the layer, as its manifests name it, and its blob.
    pub path: String,
    pub digest: Digest,
    pub size: u64,
    /// What its rebuilt uncompressed tar must hash to, and its size: what a site holds of it
    /// when it is rebuilt by content.
    #[serde(rename = "diffId")]
    pub diff_id: Digest,
    #[serde(rename = "tarSize")]
    pub tar_size: u64,
    /// The patch, in the tar.
    pub patch: LeftOutBlob,
    /// The layers it is rebuilt from, in the patch's order: held at the destination.
    pub sources: Vec<PatchSource>,
    pub rebuild: Rebuild,
    /// For an exact rebuild: how the blob is made from the rebuilt tar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recompress: Option<crate::patch::recompress::Recipe>,
}

/// A layer a patch is rebuilt from: its diff_id, and its blob as the destination holds it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PatchSource {
    #[serde(rename = "diffId")]
    pub diff_id: Digest,
    pub digest: Digest,
    pub size: u64,
}

/// What a patched layer's rebuild reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rebuild {
    /// The blob itself, byte for byte (its compression reproduced): every digest is kept.
    Exact,
    /// Its content (the diff_id): the image ID is kept; the blob and the manifest are new.
    Content,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LeftOutBlob {
    /// Where the tar would hold it.
    pub path: String,
    pub digest: Digest,
    pub size: u64,
}

impl DeltaRecord {
    pub fn new(
        left_out: impl IntoIterator<Item = LeftOutBlob>,
        since: impl IntoIterator<Item = String>,
    ) -> DeltaRecord {
        let left_out: std::collections::BTreeSet<LeftOutBlob> = left_out.into_iter().collect();
        let since: std::collections::BTreeSet<String> = since.into_iter().collect();
        DeltaRecord {
            version: DELTA_RECORD_VERSION,
            left_out: left_out.into_iter().collect(),
            since: since.into_iter().collect(),
            patched: Vec::new(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a delta record serializes")
    }
}

/// An artifact attached to a manifest (a signature, an attestation, an SBOM).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attachment {
    /// The manifest it refers to.
    pub subject: Digest,
    /// The tag it is found under; none when the referrers API listed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Its manifests, children first; the last is the attachment itself.
    pub manifests: Vec<AttachedManifest>,
    /// The blobs its manifests name, each once.
    #[serde(skip)]
    pub blobs: Vec<Descriptor>,
}

impl Attachment {
    /// The attachment's own manifest (the last).
    pub fn top(&self) -> &AttachedManifest {
        self.manifests.last().expect("an attachment has a manifest")
    }

    /// Whether it is the OCI 1.1 fallback tag's index (`sha256-<hex>`, no suffix): a list of
    /// referrers, not a referrer.
    pub fn is_fallback_index(&self) -> bool {
        self.tag.as_deref().is_some_and(|tag| {
            tag.split_once('-')
                .is_some_and(|(_, hex)| !hex.contains('.'))
                && crate::manifest::is_index(&self.top().media_type)
        })
    }

    /// The referrers a fallback tag's index lists, each its own attachment with no tag, as
    /// the referrers API would list them: every command then sees one artifact as one
    /// attachment, and a push rebuilds the index at the destination merged with what it
    /// lists there. Any other attachment is returned as it is.
    pub fn into_referrers(self) -> Vec<Attachment> {
        if !self.is_fallback_index() {
            return vec![self];
        }
        let subject = self.subject;
        let blobs = self.blobs;
        let mut manifests = self.manifests;
        manifests.pop();
        manifests
            .into_iter()
            .map(|manifest| {
                let named: Vec<Descriptor> =
                    serde_json::from_slice::<crate::manifest::ImageManifest>(&manifest.bytes)
                        .map(|image| std::iter::once(image.config).chain(image.layers).collect())
                        .unwrap_or_default();
                let mut own: Vec<Descriptor> = Vec::new();
                for descriptor in named {
                    if !own.iter().any(|d| d.digest == descriptor.digest) {
                        // The size as the bundle or registry checked it.
                        let checked = blobs.iter().find(|b| b.digest == descriptor.digest);
                        own.push(checked.cloned().unwrap_or(descriptor));
                    }
                }
                Attachment {
                    subject: subject.clone(),
                    tag: None,
                    manifests: vec![manifest],
                    blobs: own,
                }
            })
            .collect()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// `haul-referrers.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReferrersRecord {
    #[serde(rename = "haulReferrers")]
    pub version: u32,
    pub attachments: Vec<Attachment>,
    /// Manifests the attachments refer to that the tar holds for that alone (in `blobs/`,
    /// not in an index): the index one platform was chosen from, so that the index's
    /// signatures are checked for that platform, and pushed with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<AttachedManifest>,
}

impl ReferrersRecord {
    pub fn new(attachments: &[Attachment], subjects: &[AttachedManifest]) -> ReferrersRecord {
        ReferrersRecord {
            version: 1,
            attachments: attachments.to_vec(),
            subjects: subjects.to_vec(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("the record serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_paths_round_trip() {
        let digest = Digest::of(b"x");
        assert_eq!(digest_of_path(&blob_path(&digest)), Some(digest));
        assert_eq!(digest_of_path("blobs/sha256/zz"), None);
        assert_eq!(digest_of_path("abc/layer.tar"), None);
    }
}
