//! Checks that an image tar (as `haul export` or `docker save` writes it) is whole, before it
//! is carried somewhere that cannot fetch again. One pass over the stream ([`scan`]) hashes
//! every file; then the references are checked against what was seen:
//!
//! - every file `manifest.json` names (Config, Layers) and every blob `index.json` reaches
//!   (index → manifests → config and layers, nested indexes followed) is there, at the size
//!   the descriptor says;
//! - every file under `blobs/sha256/` hashes to its name;
//! - each image has as many layers as its config has `rootfs.diff_ids`, and a layer that is
//!   an uncompressed tar (`<id>/layer.tar`, or a decompressed export) hashes to the diff_id at
//!   its position. A compressed layer outside `blobs/` can only be checked for presence.
//!
//! Reads only the tar, never the cache or the network; returns a [`Report`], never prints.

mod scan;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

use crate::delta::{BundleBlob, BundleImage, DeltaRecord, RECORD_NAME};
use crate::digest::Digest;
use crate::export::blob_path;
use crate::manifest::{
    DOCKER_CONFIG, Descriptor, ImageConfig, Index, MAX_MANIFEST_BYTES, Manifest, OCI_CONFIG,
    is_image_manifest, is_index,
};
pub use scan::{Contents, FileRecord, Kept};

/// Indexes nested deeper than this are not followed (a hostile tar could loop otherwise).
const MAX_DEPTH: usize = 8;
/// Links followed from one name before giving up (a loop).
const MAX_LINKS: usize = 16;

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
    pub problems: Vec<Problem>,
    /// The images as the tar holds them (diff_ids and layer blobs): its receipt.
    #[serde(skip)]
    pub bundle: Vec<BundleImage>,
    /// For a delta: the chains (diff_id prefixes) of the layers it left out, which the
    /// destination must hold.
    #[serde(skip)]
    pub needed_chains: BTreeSet<Vec<Digest>>,
    /// For a delta: the images of earlier bundles it relies on, as its record names them.
    #[serde(skip)]
    pub since: Vec<String>,
}

impl Report {
    pub fn is_whole(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One thing wrong with the tar. Each names the file, and who named the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// The input is not a tar, or stops being one; nothing after `offset` was read.
    #[error("not a readable tar at byte {offset}{}: {detail}", after_entry(.after))]
    Unreadable {
        offset: u64,
        after: Option<String>,
        detail: String,
    },
    /// The input ends inside an entry, or without the end-of-archive blocks: it was cut short.
    #[error("the tar is truncated: the input ends at byte {offset}{}", truncated_where(.entry, *.inside))]
    Truncated {
        offset: u64,
        entry: Option<String>,
        /// Inside the entry's data, else after it.
        inside: bool,
    },
    /// More entries than any image tar has; reading stopped.
    #[error("the tar has more than {limit} entries, far more than an image tar; stopped reading")]
    TooManyEntries { limit: usize },
    /// An absolute name or one that leaves the tar's root with `..`.
    #[error("unsafe path {path:?} (absolute, or leaving the tar's root){}", named(.named_by))]
    UnsafePath {
        path: String,
        named_by: Option<String>,
    },
    #[error("the tar has neither manifest.json nor index.json: it is not an image tar")]
    NoIndex,
    #[error("{path} is missing; {named_by} names it")]
    Missing { path: String, named_by: String },
    #[error("{path} does not hash to its name: expected {expected}, got {actual}")]
    BlobMismatch {
        path: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{path} is under blobs/ but is not named by a sha256 digest, so it cannot be checked")]
    UncheckableBlob { path: String },
    #[error("{path} holds {actual} bytes, but {named_by} says {expected}")]
    SizeMismatch {
        path: String,
        expected: u64,
        actual: u64,
        named_by: String,
    },
    #[error(
        "{image}: {layers} layers, but its config {config} lists {diff_ids} diff_ids; loaders refuse it"
    )]
    LayerCount {
        image: String,
        config: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error(
        "{image}: layer {position} ({path}) is an uncompressed tar whose sha256 is {actual}, \
         but its config's diff_id {position} is {expected}"
    )]
    DiffIdMismatch {
        image: String,
        path: String,
        /// 1-based.
        position: usize,
        expected: Digest,
        actual: Digest,
    },
    /// A metadata file (index, manifest, config) that cannot be read as what it should be.
    #[error("{path} is not a valid {what}: {detail}")]
    Malformed {
        path: String,
        what: String,
        detail: String,
    },
}

fn after_entry(after: &Option<String>) -> String {
    match after {
        Some(name) => format!(" (after the entry {name:?})"),
        None => String::new(),
    }
}

fn truncated_where(entry: &Option<String>, inside: bool) -> String {
    match entry {
        Some(name) if inside => format!(", inside the entry {name:?}"),
        Some(name) => format!(", after the entry {name:?}, without the end-of-archive marker"),
        None => ", without the end-of-archive marker".to_string(),
    }
}

fn named(named_by: &Option<String>) -> String {
    match named_by {
        Some(by) => format!("; {by} names it"),
        None => String::new(),
    }
}

/// Reads the tar from `reader` once and checks it.
pub async fn verify_tar<R: AsyncRead + Unpin>(reader: R) -> Report {
    let contents = scan::scan(reader).await;
    check(&contents)
}

/// As [`verify_tar`], and what the pass saw: each file's digest, size and place in the tar,
/// and the metadata's bytes (for a push, which reads blobs from the tar file itself).
pub async fn verify_tar_contents<R: AsyncRead + Unpin>(reader: R) -> (Report, Contents) {
    let contents = scan::scan(reader).await;
    (check(&contents), contents)
}

/// The checks on what the pass saw.
fn check(contents: &Contents) -> Report {
    let mut checker = Checker {
        contents,
        left_out: BTreeMap::new(),
        bundle: Vec::new(),
        names: Vec::new(),
        needed_chains: BTreeSet::new(),
        since: Vec::new(),
        problems: contents.problems.clone(),
        reported_missing: BTreeSet::new(),
        checked_sizes: BTreeSet::new(),
        checked_images: BTreeSet::new(),
        visited: BTreeSet::new(),
        layers_matching_diff_ids: 0,
        layers_unchecked: 0,
    };
    checker.delta_record();
    let blobs = checker.blobs();
    let has_manifest_json = checker.resolve("manifest.json").is_some();
    let has_index_json = checker.resolve("index.json").is_some();
    let from_manifest_json = checker.manifest_json();
    let from_index_json = checker.index_json();
    // When reading stopped early, that is the problem; "no index" would only repeat it.
    if !has_manifest_json && !has_index_json && contents.complete {
        checker.problems.push(Problem::NoIndex);
    }
    Report {
        images: from_manifest_json.len().max(from_index_json.len()),
        blobs,
        files: contents.files.len(),
        bytes: contents.bytes,
        layers_matching_diff_ids: checker.layers_matching_diff_ids,
        layers_unchecked: checker.layers_unchecked,
        left_out: checker.left_out.len(),
        problems: checker.problems,
        bundle: checker.bundle,
        needed_chains: checker.needed_chains,
        since: checker.since,
    }
}

/// An entry of `manifest.json`; other fields (Parent, LayerSources) are not needed.
#[derive(Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", deserialize_with = "crate::manifest::null_as_empty")]
    layers: Vec<String>,
}

/// A layer as an image lists it: its path in the tar and the file there, if any.
struct LayerRef<'a> {
    path: String,
    file: Option<&'a FileRecord>,
}

struct Checker<'a> {
    contents: &'a Contents,
    /// What `haul-delta.json` declares left out: path → (digest, size).
    left_out: BTreeMap<String, (Digest, u64)>,
    /// Each image seen, as the tar holds it.
    bundle: Vec<BundleImage>,
    /// The names of the image being checked (RepoTags, or the containerd name).
    names: Vec<String>,
    /// Chains (diff_id prefixes) whose layer a delta left out.
    needed_chains: BTreeSet<Vec<Digest>>,
    /// Who the delta record says it relies on.
    since: Vec<String>,
    problems: Vec<Problem>,
    /// Each missing file is reported once, with the first name that named it.
    reported_missing: BTreeSet<String>,
    /// (path, size) pairs already compared: a blob named twice is reported once.
    checked_sizes: BTreeSet<(String, u64)>,
    /// (config, layers) already checked: manifest.json and index.json usually describe the
    /// same images.
    checked_images: BTreeSet<(String, Vec<String>)>,
    /// Blobs already walked from index.json.
    visited: BTreeSet<Digest>,
    layers_matching_diff_ids: usize,
    layers_unchecked: usize,
}

impl<'a> Checker<'a> {
    /// `haul-delta.json`, if the tar is a delta: the blobs it leaves out on purpose.
    fn delta_record(&mut self) {
        if self.resolve(RECORD_NAME).is_none() {
            return;
        }
        let Some(bytes) = self.metadata(RECORD_NAME, "delta record") else {
            return;
        };
        match serde_json::from_slice::<DeltaRecord>(bytes) {
            Ok(record) => {
                self.since = record.since;
                for blob in record.left_out {
                    self.left_out.insert(blob.path, (blob.digest, blob.size));
                }
            }
            Err(e) => self.malformed(RECORD_NAME, "delta record", e),
        }
    }

    /// Every file under `blobs/` against its name; returns how many match.
    fn blobs(&mut self) -> usize {
        let mut good = 0;
        let names = self
            .contents
            .files
            .keys()
            .chain(self.contents.links.keys())
            .filter(|p| p.starts_with("blobs/"));
        for path in names {
            let expected = match path.split('/').collect::<Vec<_>>()[..] {
                ["blobs", "sha256", hex] => format!("sha256:{hex}").parse::<Digest>().ok(),
                _ => None,
            };
            let Some(expected) = expected else {
                self.problems
                    .push(Problem::UncheckableBlob { path: path.clone() });
                continue;
            };
            // A link is checked by what it leads to; a broken one is reported when named.
            let Some(file) = self.resolve(path) else {
                continue;
            };
            if file.digest == expected {
                good += 1;
            } else {
                self.problems.push(Problem::BlobMismatch {
                    path: path.clone(),
                    expected,
                    actual: file.digest.clone(),
                });
            }
        }
        good
    }

    /// `manifest.json`, as Docker's classic image store reads it. Returns the configs named.
    fn manifest_json(&mut self) -> BTreeSet<String> {
        let mut configs = BTreeSet::new();
        let Some(bytes) = self.metadata("manifest.json", "manifest.json") else {
            return configs;
        };
        let entries: Vec<ManifestEntry> = match serde_json::from_slice(bytes) {
            Ok(entries) => entries,
            Err(e) => {
                self.malformed("manifest.json", "manifest.json", e);
                return configs;
            }
        };
        for (i, entry) in entries.iter().enumerate() {
            let image = match entry.repo_tags.as_deref().and_then(|tags| tags.first()) {
                Some(tag) => format!("image {tag}"),
                None => format!("image {} of manifest.json", i + 1),
            };
            let named_by = format!("manifest.json ({image}, Config)");
            let config_path = self.safe_path(&entry.config, &named_by);
            let config = config_path.as_deref().and_then(|path| {
                configs.insert(path.to_string());
                self.require(path, &named_by)
            });
            let count = entry.layers.len();
            let mut layers = Vec::new();
            for (k, layer) in entry.layers.iter().enumerate() {
                let named_by = format!("manifest.json ({image}, layer {} of {count})", k + 1);
                if let Some(path) = self.safe_path(layer, &named_by) {
                    let file = self.require(&path, &named_by);
                    layers.push(LayerRef { path, file });
                }
            }
            if let (Some(path), Some(_)) = (&config_path, config)
                && layers.len() == count
            {
                self.names = entry.repo_tags.clone().unwrap_or_default();
                self.image(&image, path, &layers);
            }
        }
        configs
    }

    /// `index.json`, as the containerd image store and OCI tools read it. Returns the configs
    /// of the images it reaches.
    fn index_json(&mut self) -> BTreeSet<String> {
        let mut configs = BTreeSet::new();
        let Some(bytes) = self.metadata("index.json", "OCI index") else {
            return configs;
        };
        let index: Index = match serde_json::from_slice(bytes) {
            Ok(index) => index,
            Err(e) => {
                self.malformed("index.json", "OCI index", e);
                return configs;
            }
        };
        // What refers to the images (`--referrers`) is not an image: checked for presence.
        let attachments: BTreeSet<Digest> = self
            .contents
            .bytes_of(crate::referrers::RECORD_NAME)
            .and_then(|b| serde_json::from_slice::<crate::referrers::ReferrersRecord>(b).ok())
            .map(|record| {
                record
                    .attachments
                    .iter()
                    .flat_map(|a| a.manifests.iter().map(|m| m.digest.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for descriptor in &index.manifests {
            if attachments.contains(&descriptor.digest) {
                self.require_sized(
                    &blob_path(&descriptor.digest),
                    descriptor.size,
                    "index.json",
                );
                continue;
            }
            let image = descriptor
                .annotations
                .get("io.containerd.image.name")
                .or_else(|| {
                    descriptor
                        .annotations
                        .get("org.opencontainers.image.ref.name")
                })
                .map_or_else(|| descriptor.digest.short(), std::clone::Clone::clone);
            self.names = descriptor
                .annotations
                .get("io.containerd.image.name")
                .cloned()
                .into_iter()
                .collect();
            self.walk(
                descriptor,
                &format!("image {image}"),
                "index.json",
                0,
                &mut configs,
            );
        }
        configs
    }

    /// A descriptor reached from index.json: the blob is there at its size, and when it is a
    /// manifest or an index, what it names in turn.
    fn walk(
        &mut self,
        descriptor: &Descriptor,
        image: &str,
        named_by: &str,
        depth: usize,
        configs: &mut BTreeSet<String>,
    ) {
        let path = blob_path(&descriptor.digest);
        let Some(file) = self.require_sized(&path, descriptor.size, named_by) else {
            return;
        };
        let media_type = descriptor.media_type.as_str();
        let is_manifest =
            media_type.is_empty() || is_index(media_type) || is_image_manifest(media_type);
        // Other blobs (attestations, artifacts) are checked for presence and size only.
        if !is_manifest || !self.visited.insert(descriptor.digest.clone()) {
            return;
        }
        if depth >= MAX_DEPTH {
            self.problems.push(Problem::Malformed {
                path,
                what: "index".to_string(),
                detail: format!("indexes nest deeper than {MAX_DEPTH} levels"),
            });
            return;
        }
        let Some(bytes) = self.bytes_of(&path, file, "manifest") else {
            return;
        };
        let content_type = Some(media_type).filter(|t| !t.is_empty());
        let manifest = match Manifest::parse(image, content_type, bytes) {
            Ok(manifest) => manifest,
            Err(e) => {
                self.problems.push(Problem::Malformed {
                    path,
                    what: "manifest".to_string(),
                    detail: crate::error::describe(&e),
                });
                return;
            }
        };
        match manifest {
            Manifest::Index(index) => {
                let named_by = format!("the index {path} ({image})");
                for child in &index.manifests {
                    self.walk(child, image, &named_by, depth + 1, configs);
                }
            }
            Manifest::Image(manifest) => {
                let named_by = format!("the manifest {path} ({image})");
                let config_path = blob_path(&manifest.config.digest);
                let config = self.require_sized(&config_path, manifest.config.size, &named_by);
                let count = manifest.layers.len();
                let layers: Vec<LayerRef> = manifest
                    .layers
                    .iter()
                    .enumerate()
                    .map(|(k, layer)| {
                        let path = blob_path(&layer.digest);
                        let named_by = format!("{named_by}, layer {} of {count}", k + 1);
                        let file = self.require_sized(&path, layer.size, &named_by);
                        LayerRef { path, file }
                    })
                    .collect();
                // Artifacts have configs that are not image configs: no diff_ids to compare.
                let config_type = manifest.config.media_type.as_str();
                if matches!(config_type, "" | DOCKER_CONFIG | OCI_CONFIG) {
                    configs.insert(config_path.clone());
                    if config.is_some() {
                        self.image(image, &config_path, &layers);
                    }
                }
            }
        }
    }

    /// An image's config against its layers: as many layers as diff_ids, and each
    /// uncompressed layer hashing to its diff_id.
    fn image(&mut self, image: &str, config_path: &str, layers: &[LayerRef<'a>]) {
        let key = (
            config_path.to_string(),
            layers.iter().map(|l| l.path.clone()).collect(),
        );
        if !self.checked_images.insert(key) {
            return;
        }
        let Some(file) = self.resolve(config_path) else {
            return;
        };
        let Some(bytes) = self.bytes_of(config_path, file, "image config") else {
            return;
        };
        let config: ImageConfig = match serde_json::from_slice(bytes) {
            Ok(config) => config,
            Err(e) => {
                self.malformed(config_path, "image config", e);
                return;
            }
        };
        let diff_ids = &config.rootfs.diff_ids;
        let blobs: Option<Vec<BundleBlob>> = layers.iter().map(|l| self.bundle_blob(l)).collect();
        if let Some(blobs) = blobs {
            self.bundle.push(BundleImage {
                names: self.names.clone(),
                diff_ids: diff_ids.clone(),
                layers: blobs,
            });
        }
        // The chains of the layers a delta left out: what the destination must hold.
        for (k, layer) in layers.iter().enumerate() {
            if layer.file.is_none() && self.left_out.contains_key(&layer.path) && k < diff_ids.len()
            {
                self.needed_chains.insert(diff_ids[..=k].to_vec());
            }
        }
        if diff_ids.len() != layers.len() {
            self.problems.push(Problem::LayerCount {
                image: image.to_string(),
                config: config_path.to_string(),
                layers: layers.len(),
                diff_ids: diff_ids.len(),
            });
        }
        for (k, layer) in layers.iter().enumerate() {
            let Some(file) = layer.file else { continue };
            if !file.is_tar {
                if !layer.path.starts_with("blobs/") {
                    self.layers_unchecked += 1;
                }
                continue;
            }
            match diff_ids.get(k) {
                Some(diff_id) if *diff_id == file.digest => self.layers_matching_diff_ids += 1,
                Some(diff_id) => self.problems.push(Problem::DiffIdMismatch {
                    image: image.to_string(),
                    path: layer.path.clone(),
                    position: k + 1,
                    expected: diff_id.clone(),
                    actual: file.digest.clone(),
                }),
                None => {} // the count mismatch is reported
            }
        }
    }

    /// A layer as the tar holds it (or, left out, as the delta record declares it): its
    /// digest (a `blobs/` name says it) and size.
    fn bundle_blob(&self, layer: &LayerRef<'_>) -> Option<BundleBlob> {
        if let Some((digest, size)) = self.left_out.get(&layer.path)
            && layer.file.is_none()
        {
            return Some(BundleBlob {
                digest: digest.clone(),
                size: *size,
            });
        }
        let file = layer.file?;
        Some(BundleBlob {
            digest: file.digest.clone(),
            size: file.size,
        })
    }

    /// The file at `path`, following links; None when absent (or a link goes nowhere).
    fn resolve(&self, path: &str) -> Option<&'a FileRecord> {
        self.contents.resolve(path)
    }

    /// The file at `path`, or a Missing problem naming who wanted it.
    fn require(&mut self, path: &str, named_by: &str) -> Option<&'a FileRecord> {
        let file = self.resolve(path);
        if file.is_none() && self.left_out.contains_key(path) {
            return None; // left out on purpose: expected at the destination
        }
        if file.is_none() && self.reported_missing.insert(path.to_string()) {
            self.problems.push(Problem::Missing {
                path: path.to_string(),
                named_by: named_by.to_string(),
            });
        }
        file
    }

    /// As [`Checker::require`], and of the size the descriptor says.
    fn require_sized(&mut self, path: &str, size: u64, named_by: &str) -> Option<&'a FileRecord> {
        let file = self.require(path, named_by)?;
        if file.size != size && self.checked_sizes.insert((path.to_string(), size)) {
            self.problems.push(Problem::SizeMismatch {
                path: path.to_string(),
                expected: size,
                actual: file.size,
                named_by: named_by.to_string(),
            });
        }
        Some(file)
    }

    /// A name from an index file as a path in the tar; an unsafe one is a problem.
    fn safe_path(&mut self, name: &str, named_by: &str) -> Option<String> {
        let path = scan::normalize(name, "").filter(|p| !p.is_empty());
        if path.is_none() {
            self.problems.push(Problem::UnsafePath {
                path: name.to_string(),
                named_by: Some(named_by.to_string()),
            });
        }
        path
    }

    /// The bytes of a top-level metadata file, if the tar has it.
    fn metadata(&mut self, path: &str, what: &str) -> Option<&'a [u8]> {
        let file = self.resolve(path)?;
        self.bytes_of(path, file, what)
    }

    /// The kept bytes of `file`, or a problem saying why there are none.
    fn bytes_of(&mut self, path: &str, file: &'a FileRecord, what: &str) -> Option<&'a [u8]> {
        let detail = match &file.kept {
            Kept::Bytes(bytes) => return Some(bytes),
            Kept::TooLarge => format!(
                "it is {} bytes; a {what} is at most {MAX_MANIFEST_BYTES}",
                file.size
            ),
            Kept::NotJson => "it is not JSON".to_string(),
            Kept::OverBudget => format!(
                "not checked: the tar's JSON files together exceed {} MiB",
                scan::METADATA_BUDGET >> 20
            ),
        };
        self.problems.push(Problem::Malformed {
            path: path.to_string(),
            what: what.to_string(),
            detail,
        });
        None
    }

    fn malformed(&mut self, path: &str, what: &str, error: serde_json::Error) {
        self.problems.push(Problem::Malformed {
            path: path.to_string(),
            what: what.to_string(),
            detail: error.to_string(),
        });
    }
}

#[cfg(test)]
mod tests;
