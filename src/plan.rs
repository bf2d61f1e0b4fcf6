//! Plan: from resolved images to what the tar holds and what must be in the cache.
//!
//! The plan never shrinks. Each image keeps its full layer list, exactly as the manifest lists
//! it, duplicates and empty layers included; the cache only decides where a blob comes from,
//! never whether it is written. Only the download list is deduplicated (a blob shared by two
//! layers or two images is fetched once).

use std::collections::HashSet;
use std::path::PathBuf;

use crate::export::{ExportImage, SourceIndex};
use crate::fetch::BlobRequest;
use crate::manifest::ImageConfig;
use crate::reference::Reference;
use crate::resolve::{PlatformKey, ResolvedImage};

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
                uncompressed,
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

impl Plan {
    /// The tar's name when none is given: after the first image, with its platforms (`all`
    /// with `--all-platforms`; several platforms of one reference are named together).
    pub fn default_file_name(&self, all_platforms: bool) -> PathBuf {
        let platform_part = if all_platforms {
            PlatformKey::All.to_string()
        } else {
            let parts: Vec<String> = self
                .configs
                .iter()
                .map(|c| c.platform().file_name_part())
                .collect();
            parts.join("+")
        };
        default_file_name(&self.resolved[0].reference, &platform_part)
    }
}

/// `<registry>_<repository with / as _>_<tag>_<arch>.tar`; a `:` (registry port) becomes
/// `_` too, and an untagged reference uses its digest's first 12 hex digits.
fn default_file_name(reference: &Reference, platform_part: &str) -> PathBuf {
    let tag = match (reference.tag(), reference.digest()) {
        (Some(tag), _) => tag.to_string(),
        (None, Some(digest)) => format!("sha256-{}", &digest.hex()[..12]),
        (None, None) => "latest".to_string(),
    };
    let name = format!(
        "{}_{}_{}_{}.tar",
        reference.registry(),
        reference.repository(),
        tag,
        platform_part
    );
    PathBuf::from(name.replace(['/', ':'], "_"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;

    #[test]
    fn default_file_names() {
        let amd64 = Platform::new("linux", "amd64", None).file_name_part();
        let name = |r: &str| default_file_name(&r.parse().unwrap(), &amd64);
        assert_eq!(
            name("busybox"),
            PathBuf::from("docker.io_library_busybox_latest_amd64.tar")
        );
        assert_eq!(
            name("127.0.0.1:5000/test/app:v1"),
            PathBuf::from("127.0.0.1_5000_test_app_v1_amd64.tar")
        );
        let arm = Platform::new("linux", "arm", Some("v7")).file_name_part();
        assert_eq!(
            default_file_name(&"ghcr.io/a/b:1".parse().unwrap(), &arm),
            PathBuf::from("ghcr.io_a_b_1_armv7.tar")
        );
    }
}
