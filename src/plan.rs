//! Plan: from resolved images to what the tar holds and what must be in the cache.
//!
//! The plan never shrinks. Each image keeps its full layer list, exactly as the manifest lists
//! it, duplicates and empty layers included; the cache only decides where a blob comes from,
//! never whether it is written. Only the download list is deduplicated (a blob shared by two
//! layers or two images is fetched once).

use std::collections::HashSet;

use crate::export::ExportImage;
use crate::fetch::BlobRequest;
use crate::resolve::ResolvedImage;

/// What one export writes and needs.
#[derive(Debug)]
pub struct Plan {
    /// The images, in the order given.
    pub images: Vec<ExportImage>,
    /// Every distinct blob the tar holds, in the order the tar writes them.
    pub blobs: Vec<BlobRequest>,
}

impl Plan {
    pub fn new(resolved: &[ResolvedImage]) -> Plan {
        let images: Vec<ExportImage> = resolved
            .iter()
            .map(|r| ExportImage {
                reference: r.reference.clone(),
                manifest: r.manifest.bytes.clone(),
                manifest_digest: r.manifest.digest.clone(),
                manifest_media_type: r.media_type.clone(),
                config: r.image.config.clone(),
                layers: r.image.layers.clone(),
            })
            .collect();
        let mut seen = HashSet::new();
        let mut blobs = Vec::new();
        for image in &images {
            for descriptor in std::iter::once(&image.config).chain(&image.layers) {
                if seen.insert(descriptor.digest.clone()) {
                    blobs.push(BlobRequest {
                        reference: image.reference.clone(),
                        descriptor: descriptor.clone(),
                    });
                }
            }
        }
        Plan { images, blobs }
    }
}
