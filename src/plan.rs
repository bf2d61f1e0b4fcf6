//! Plan: from resolved images to what the tar holds and what must be in the cache.
//!
//! The plan never shrinks. Each image keeps its full layer list, exactly as the manifest lists
//! it, duplicates and empty layers included; the cache only decides where a blob comes from,
//! never whether it is written. Only the download list is deduplicated (a blob shared by two
//! layers or two images is fetched once).

use std::collections::HashSet;

use crate::export::{ExportImage, SourceIndex};
use crate::fetch::BlobRequest;
use crate::manifest::ImageConfig;
use crate::resolve::ResolvedImage;

/// What one export (or pull) writes and needs: the last of the pipeline's types, after
/// [`Reference`](crate::reference::Reference) → [`ResolvedImage`] → (config fetched and
/// checked) → `Plan`.
#[derive(Debug)]
pub struct Plan {
    /// The images as resolved, in the order given.
    pub resolved: Vec<ResolvedImage>,
    /// Their configs, in the same order.
    pub configs: Vec<ImageConfig>,
    /// The images as the tar holds them, in the same order.
    pub images: Vec<ExportImage>,
    /// Every distinct blob the tar holds, in the order the tar writes them.
    pub blobs: Vec<BlobRequest>,
}

impl Plan {
    /// `configs` are the images' configs, in the same order; with `uncompressed`, every layer
    /// is wanted in its uncompressed form (its diff_id); with `as_indexes`, the platforms of a
    /// reference go into the tar as one index, not as separate images.
    pub fn new(
        resolved: Vec<ResolvedImage>,
        configs: Vec<ImageConfig>,
        uncompressed: bool,
        as_indexes: bool,
    ) -> Plan {
        let images: Vec<ExportImage> = resolved
            .iter()
            .zip(&configs)
            .map(|(r, config)| ExportImage {
                reference: r.reference.clone(),
                manifest: r.manifest.bytes.clone(),
                manifest_digest: r.manifest.digest.clone(),
                manifest_media_type: r.media_type.clone(),
                config: r.image.config.clone(),
                layers: r.image.layers.clone(),
                diff_ids: config.rootfs.diff_ids.clone(),
                index: r
                    .index
                    .as_ref()
                    .filter(|_| as_indexes)
                    .map(|i| SourceIndex {
                        bytes: i.bytes.clone(),
                        digest: i.digest.clone(),
                    }),
            })
            .collect();
        let mut seen = HashSet::new();
        let mut blobs = Vec::new();
        for image in &images {
            if seen.insert(image.config.digest.clone()) {
                blobs.push(BlobRequest::new(
                    image.reference.clone(),
                    image.config.clone(),
                ));
            }
            for (layer, diff_id) in image.layers.iter().zip(&image.diff_ids) {
                if seen.insert(layer.digest.clone()) {
                    blobs.push(BlobRequest {
                        reference: image.reference.clone(),
                        descriptor: layer.clone(),
                        uncompressed: uncompressed.then(|| diff_id.clone()),
                    });
                }
            }
        }
        Plan {
            resolved,
            configs,
            images,
            blobs,
        }
    }
}
