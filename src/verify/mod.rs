//! `haul verify`'s report: what [`Bundle::read`] found of a tar (as `haul export` or `docker
//! save` writes it), counted and listed. The checks themselves are the bundle's read:
//!
//! - every file `manifest.json` names (Config, Layers) and every blob `index.json` reaches
//!   (index → manifests → config and layers, nested indexes followed) is there, at the size
//!   the descriptor says; a platform whose manifest the tar lacks is listed as absent;
//! - every file under `blobs/sha256/` hashes to its name;
//! - each image has as many layers as its config has `rootfs.diff_ids`, and a layer that is
//!   an uncompressed tar (`<id>/layer.tar`, or a decompressed export) hashes to the diff_id at
//!   its position. A compressed layer outside `blobs/` can only be checked for presence.
//!
//! Reads only the tar, never the cache or the network; never prints: it returns the lines
//! `haul verify` prints.

use serde::Serialize;
use tokio::io::AsyncRead;

use crate::bundle::names::Rebuild;
use crate::bundle::summary::Summary;
use crate::bundle::{Bundle, Problem};
use crate::progress::human_bytes;
use crate::units::count;

/// What was checked and what is wrong. Whole when `problems` is empty.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Distinct images (by config) the indexes name.
    pub images: usize,
    /// Files under `blobs/sha256/` that hash to their names.
    pub blobs: usize,
    /// Regular files in the tar, and their bytes (all hashed).
    pub files: usize,
    pub bytes: u64,
    /// Layers whose digest equals their config's diff_id (uncompressed layers).
    pub layers_matching_diff_ids: usize,
    /// Layers outside `blobs/` that are compressed: present, but their content cannot be
    /// checked without decompressing them.
    pub layers_unchecked: usize,
    /// Layer blobs a delta bundle names but leaves out, as its `haul-delta.json` declares:
    /// expected at the destination.
    pub left_out: usize,
    /// Layers a patch delta carries as patches: what each is rebuilt from, and whether the
    /// rebuild reaches the blob itself or its content.
    pub patched: Vec<crate::bundle::names::PatchedLayer>,
    pub problems: Vec<Problem>,
    /// What the bundle holds: each image with its names, platforms (and those absent),
    /// digests, sizes and what refers to it; whether it is a delta, and of what.
    pub contents: Summary,
}

impl Report {
    pub fn of(bundle: &Bundle) -> Report {
        Report {
            images: bundle.image_count(),
            blobs: bundle.blobs_verified,
            files: bundle.contents.files.len(),
            bytes: bundle.contents.bytes,
            layers_matching_diff_ids: bundle.layers_matching_diff_ids,
            layers_unchecked: bundle.layers_unchecked,
            left_out: bundle.left_out_count(),
            patched: bundle
                .delta
                .as_ref()
                .map(|d| d.patched.values().cloned().collect())
                .unwrap_or_default(),
            problems: bundle.problems.clone(),
            contents: Summary::of(bundle),
        }
    }

    pub fn is_whole(&self) -> bool {
        self.problems.is_empty()
    }

    /// `1 image, 4 blobs, 211.3 MiB verified`, and what could only be checked for presence.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{}, {}, {} verified",
            count(self.images, "image"),
            count(self.blobs, "blob"),
            human_bytes(self.bytes)
        );
        if self.layers_matching_diff_ids > 0 {
            text += &format!(
                "; diff_ids match for {}",
                count(self.layers_matching_diff_ids, "uncompressed layer")
            );
        }
        if self.layers_unchecked > 0 {
            text += &format!(
                "; {} outside blobs/ (compressed) checked for presence only",
                count(self.layers_unchecked, "layer")
            );
        }
        text
    }

    /// What a whole tar holds that a user should know: what a delta left out, how each patch
    /// travels, the platforms an index names that the tar does not hold. A line each.
    pub fn notes(&self, bundle: &Bundle) -> Vec<String> {
        let mut lines = Vec::new();
        if self.left_out > 0 {
            let since = bundle
                .delta
                .as_ref()
                .map(|d| d.since.clone())
                .unwrap_or_default();
            lines.push(format!(
                "delta: {} left out, expected at the destination{}",
                count(self.left_out, "blob"),
                if since.is_empty() {
                    String::new()
                } else {
                    format!(" (it relies on {})", since.join(", "))
                }
            ));
        }
        for layer in &self.patched {
            let sources: Vec<String> = layer
                .sources
                .iter()
                .map(|s| format!("layer {} (blob {})", s.diff_id, s.digest))
                .collect();
            lines.push(format!(
                "patched: {} ({}) travels as a {} patch against {}; it rebuilds {}",
                layer.digest,
                human_bytes(layer.size),
                human_bytes(layer.patch.size),
                sources.join(", "),
                match (layer.rebuild, layer.recompress) {
                    (Rebuild::Exact, Some(recipe)) => format!("its blob, exactly ({recipe})"),
                    _ => format!(
                        "its content (diff_id {}, {} uncompressed), under a new blob and \
                         manifest",
                        layer.diff_id,
                        human_bytes(layer.tar_size)
                    ),
                }
            ));
        }
        for image in bundle.images.iter().filter(|i| !i.absent.is_empty()) {
            let held: Vec<String> = image
                .platforms
                .iter()
                .filter_map(|p| p.platform.clone())
                .collect();
            lines.push(format!(
                "partial: {} holds {} of its index; not in the tar (by design, as docker save \
                 writes an image pulled for one platform): {}",
                image.label,
                held.join(", "),
                image.absent_platforms().join(", ")
            ));
        }
        lines
    }

    /// The report with `ok` and each problem's message, for scripts.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        value["ok"] = self.is_whole().into();
        if let Some(problems) = value["problems"].as_array_mut() {
            for (json, problem) in problems.iter_mut().zip(&self.problems) {
                json["message"] = problem.to_string().into();
            }
        }
        value
    }
}

/// Reads the tar from `reader` once and checks it.
pub async fn verify_tar<R: AsyncRead + Unpin>(reader: R) -> Report {
    Report::of(&Bundle::read(reader).await)
}
