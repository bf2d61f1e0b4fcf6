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
//! Reads only the tar, never the cache or the network; never prints.

use serde::Serialize;
use tokio::io::AsyncRead;

use crate::bundle::summary::Summary;
use crate::bundle::{Bundle, Problem};

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
}

/// Reads the tar from `reader` once and checks it.
pub async fn verify_tar<R: AsyncRead + Unpin>(reader: R) -> Report {
    Report::of(&Bundle::read(reader).await)
}
