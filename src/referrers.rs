//! Artifacts that refer to an image manifest (signatures, attestations, SBOMs), and how they
//! travel (`--referrers`).
//!
//! A registry lists them for a manifest digest through the OCI 1.1 referrers API, where it
//! offers it; otherwise through tags: cosign's `sha256-<hex>.sig`, `.att` and `.sbom`, and the
//! OCI 1.1 fallback tag `sha256-<hex>` (an index of the referrers). What refers to an
//! artifact (a signature of an SBOM) is followed too.
//!
//! In a tar they sit in `blobs/`; `haul-referrers.json` at the top level says which manifest
//! each is attached to and under which tag. The OCI layout also lists them in `index.json`
//! (named by their tag), where OCI tools look; the docker layouts do not, so that `docker
//! load` sees exactly the images it would without them.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest::Descriptor;

/// The record of a tar's attachments, at its top level.
pub const RECORD_NAME: &str = "haul-referrers.json";
/// How deep attachments of attachments are followed.
pub const MAX_DEPTH: usize = 3;

/// The tags under which artifacts attached to `digest` may be found: cosign's, then the OCI
/// 1.1 fallback index.
pub fn tags_for(digest: &Digest) -> Vec<String> {
    let base = format!("{}-{}", digest.algorithm(), digest.hex());
    vec![
        format!("{base}.sig"),
        format!("{base}.att"),
        format!("{base}.sbom"),
        base,
    ]
}

/// An artifact attached to a manifest.
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
}

impl ReferrersRecord {
    pub fn new(attachments: &[Attachment]) -> ReferrersRecord {
        ReferrersRecord {
            version: 1,
            attachments: attachments.to_vec(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("the record serializes")
    }
}

/// The attachments a tar carries, as its `haul-referrers.json` records them, with their
/// manifests' bytes and their blobs read from the tar (an attachment whose manifest is not
/// there is left out: `haul verify` reports the tar's missing files).
pub fn attachments_in(contents: &crate::verify::Contents) -> Vec<Attachment> {
    let Some(record) = contents
        .bytes_of(RECORD_NAME)
        .and_then(|bytes| serde_json::from_slice::<ReferrersRecord>(bytes).ok())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    'attachments: for mut attachment in record.attachments {
        let mut blobs: Vec<Descriptor> = Vec::new();
        for manifest in &mut attachment.manifests {
            let path = crate::export::blob_path(&manifest.digest);
            let Some(bytes) = contents.bytes_of(&path) else {
                continue 'attachments;
            };
            manifest.bytes = bytes.to_vec();
            if let Ok(image) = serde_json::from_slice::<crate::manifest::ImageManifest>(bytes) {
                for d in std::iter::once(&image.config).chain(&image.layers) {
                    if !blobs.iter().any(|b| b.digest == d.digest) {
                        blobs.push(d.clone());
                    }
                }
            }
        }
        attachment.blobs = blobs;
        out.push(attachment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_cosign_and_the_oci_fallback() {
        let digest = Digest::of(b"m");
        let hex = digest.hex();
        assert_eq!(
            tags_for(&digest),
            vec![
                format!("sha256-{hex}.sig"),
                format!("sha256-{hex}.att"),
                format!("sha256-{hex}.sbom"),
                format!("sha256-{hex}"),
            ]
        );
    }
}
