//! The walk over what the pass saw: the records first (a delta's left-out blobs change what
//! counts as missing), every `blobs/` file against its name, then `index.json` (nested
//! indexes followed, each manifest walked once), then `manifest.json` (whose images are the
//! same as `index.json`'s in the default layout, and checked again: docker's classic store
//! reads only it). Each check that fails is a [`Problem`] naming the file and who named it.
//!
//! Over 600 lines because it is one walk: every check shares what was already reported
//! (each missing file once, each size once) and what was already walked; split, that state
//! would be passed between files.

use std::collections::{BTreeMap, BTreeSet};

use super::names::{
    CONTAINERD_NAME, DELTA_RECORD, INDEX_JSON, MANIFEST_JSON, REF_NAME, REFERRERS_RECORD,
    blob_path, digest_of_path,
};
use super::scan::{self, Contents, FileRecord, Kept};
use super::{
    AttachedManifest, Attachment, Blob, Bundle, BundleManifest, Delta, DeltaRecord, Image,
    MAX_DEPTH, ManifestEntry, Place, PlatformImage, Problem, ReferrersRecord,
};
use crate::digest::Digest;
use crate::manifest::{
    DOCKER_CONFIG, Descriptor, ImageConfig, ImageManifest, Index, MAX_MANIFEST_BYTES, Manifest,
    OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, is_image_manifest, is_index,
};

pub(super) fn read(contents: Contents) -> Bundle {
    let mut reader = Reader {
        contents: &contents,
        problems: contents.problems.clone(),
        delta: None,
        images: Vec::new(),
        walked: BTreeMap::new(),
        reported_missing: BTreeSet::new(),
        checked_sizes: BTreeSet::new(),
        checked_images: BTreeSet::new(),
        layers_matching_diff_ids: 0,
        layers_unchecked: 0,
    };
    reader.delta_record();
    let blobs_verified = reader.blobs();
    let (attachments, subjects) = reader.attachments();
    let has_manifest_json = contents.resolve(MANIFEST_JSON).is_some();
    let has_index_json = contents.resolve(INDEX_JSON).is_some();
    // manifest.json first: a file both name is reported as docker's classic store would.
    let classic = reader.manifest_json();
    reader.index_json(&attachments);
    reader.merge(classic);
    reader.link_subjects(&subjects);
    // When reading stopped early, that is the problem; "no index" would only repeat it.
    if !has_manifest_json && !has_index_json && contents.complete {
        reader.problems.push(Problem::NoIndex);
    }
    // A fallback tag's index (as earlier versions carried it) is read as the referrers it
    // lists, as discovery reads it now.
    let attachments: Vec<Attachment> = attachments
        .into_iter()
        .flat_map(Attachment::into_referrers)
        .collect();
    let Reader {
        problems,
        delta,
        mut images,
        layers_matching_diff_ids,
        layers_unchecked,
        ..
    } = reader;
    for image in &mut images {
        if image.names.is_empty() {
            image.names = image.repo_tags.clone();
        }
    }
    Bundle {
        contents,
        images,
        attachments,
        delta,
        problems,
        blobs_verified,
        layers_matching_diff_ids,
        layers_unchecked,
    }
}

/// What a manifest (and, for an index, what it names) holds: walked once per digest.
#[derive(Clone, Default)]
struct Subtree {
    manifests: Vec<BundleManifest>,
    platforms: Vec<PlatformImage>,
    absent: Vec<Descriptor>,
}

impl Subtree {
    fn extend(&mut self, other: Subtree) {
        for manifest in other.manifests {
            if !self.manifests.iter().any(|m| m.digest == manifest.digest) {
                self.manifests.push(manifest);
            }
        }
        self.platforms.extend(other.platforms);
        self.absent.extend(other.absent);
    }
}

/// A file an index names: in the tar, left out by a delta, carried as a patch, or missing.
enum Found<'a> {
    File(&'a FileRecord),
    LeftOut(Digest, u64),
    Patched(Digest, u64),
    Missing,
}

struct Reader<'a> {
    contents: &'a Contents,
    problems: Vec<Problem>,
    delta: Option<Delta>,
    images: Vec<Image>,
    /// Each manifest walked, by digest.
    walked: BTreeMap<Digest, Subtree>,
    /// Each missing file is reported once, with the first name that named it.
    reported_missing: BTreeSet<String>,
    /// (path, size) pairs already compared: a blob named twice is reported once.
    checked_sizes: BTreeSet<(String, u64)>,
    /// (config, layers) already checked: manifest.json and index.json usually describe the
    /// same images.
    checked_images: BTreeSet<(String, Vec<String>)>,
    layers_matching_diff_ids: usize,
    layers_unchecked: usize,
}

impl<'a> Reader<'a> {
    /// `haul-delta.json`, if the tar is a delta: the blobs it leaves out on purpose.
    fn delta_record(&mut self) {
        if self.contents.resolve(DELTA_RECORD).is_none() {
            return;
        }
        let Some(bytes) = self.metadata(DELTA_RECORD, "delta record") else {
            return;
        };
        match serde_json::from_slice::<DeltaRecord>(bytes) {
            Ok(record) => {
                self.delta = Some(Delta {
                    left_out: record
                        .left_out
                        .into_iter()
                        .map(|blob| (blob.path.clone(), blob))
                        .collect(),
                    since: record.since,
                    patched: record
                        .patched
                        .into_iter()
                        .map(|layer| (layer.path.clone(), layer))
                        .collect(),
                    needed_chains: BTreeSet::new(),
                });
            }
            Err(e) => self.malformed(DELTA_RECORD, "delta record", e),
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
            let Some(expected) = digest_of_path(path).filter(|_| path.matches('/').count() == 2)
            else {
                self.problems
                    .push(Problem::UncheckableBlob { path: path.clone() });
                continue;
            };
            // A link is checked by what it leads to; a broken one is reported when named.
            let Some(file) = self.contents.resolve(path) else {
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

    /// `haul-referrers.json`: each attachment with its manifests' bytes and the blobs they
    /// name, all of which the tar must hold. One whose manifests are not all there is
    /// reported and left out of the list.
    fn attachments(&mut self) -> (Vec<Attachment>, Vec<AttachedManifest>) {
        if self.contents.resolve(REFERRERS_RECORD).is_none() {
            return Default::default();
        }
        let Some(bytes) = self.metadata(REFERRERS_RECORD, "referrers record") else {
            return Default::default();
        };
        let record = match serde_json::from_slice::<ReferrersRecord>(bytes) {
            Ok(record) => record,
            Err(e) => {
                self.malformed(REFERRERS_RECORD, "referrers record", e);
                return Default::default();
            }
        };
        let mut subjects = Vec::new();
        for mut subject in record.subjects {
            let path = blob_path(&subject.digest);
            let Found::File(file) = self.require_sized(&path, subject.size, REFERRERS_RECORD)
            else {
                continue;
            };
            if let Some(bytes) = self.bytes_of(&path, file, "index") {
                subject.bytes = bytes.to_vec();
                subjects.push(subject);
            }
        }
        let mut out = Vec::new();
        'attachments: for mut attachment in record.attachments {
            let mut blobs: Vec<Descriptor> = Vec::new();
            for manifest in &mut attachment.manifests {
                let path = blob_path(&manifest.digest);
                let Found::File(file) = self.require_sized(&path, manifest.size, REFERRERS_RECORD)
                else {
                    continue 'attachments;
                };
                let Some(bytes) = self.bytes_of(&path, file, "manifest") else {
                    continue 'attachments;
                };
                manifest.bytes = bytes.to_vec();
                if let Ok(image) = serde_json::from_slice::<ImageManifest>(bytes) {
                    for d in std::iter::once(&image.config).chain(&image.layers) {
                        if !blobs.iter().any(|b| b.digest == d.digest) {
                            blobs.push(d.clone());
                        }
                    }
                }
            }
            let named_by = format!("{REFERRERS_RECORD} (what refers to {})", attachment.subject);
            for blob in &blobs {
                self.require_sized(&blob_path(&blob.digest), blob.size, &named_by);
            }
            attachment.blobs = blobs;
            out.push(attachment);
        }
        (out, subjects)
    }

    /// Each image the tar holds one platform of, linked to the index it was chosen from when
    /// the record carries that index and the index names the image's manifest.
    fn link_subjects(&mut self, subjects: &[AttachedManifest]) {
        for subject in subjects {
            let Ok(index) = serde_json::from_slice::<Index>(&subject.bytes) else {
                continue;
            };
            for image in &mut self.images {
                let listed = image
                    .digest()
                    .is_some_and(|d| index.manifests.iter().any(|m| &m.digest == d));
                if listed && !image.chosen_from.contains(&subject.digest) {
                    image.chosen_from.push(subject.digest.clone());
                }
            }
        }
    }

    /// `index.json`, as the containerd image store and OCI tools read it.
    fn index_json(&mut self, attachments: &[Attachment]) {
        let Some(bytes) = self.metadata(INDEX_JSON, "OCI index") else {
            return;
        };
        let index: Index = match serde_json::from_slice(bytes) {
            Ok(index) => index,
            Err(e) => {
                self.malformed(INDEX_JSON, "OCI index", e);
                return;
            }
        };
        for descriptor in &index.manifests {
            // What refers to the images (`--referrers`) is not an image: checked for presence.
            if attachments
                .iter()
                .any(|a| a.top().digest == descriptor.digest)
            {
                self.require_sized(&blob_path(&descriptor.digest), descriptor.size, INDEX_JSON);
                continue;
            }
            let name = descriptor.annotations.get(CONTAINERD_NAME).cloned();
            // Several entries for one digest are one image under several names.
            if let Some(image) = self
                .images
                .iter_mut()
                .find(|i| i.digest() == Some(&descriptor.digest))
            {
                if let Some(name) = name
                    && !image.names.contains(&name)
                {
                    image.names.push(name);
                }
                continue;
            }
            let label = name
                .clone()
                .or_else(|| descriptor.annotations.get(REF_NAME).cloned())
                .unwrap_or_else(|| descriptor.digest.short());
            let subtree = self.walk(descriptor, &format!("image {label}"), INDEX_JSON, 0);
            self.images.push(Image {
                label: name.clone().unwrap_or_else(|| format!("image {label}")),
                names: name.into_iter().collect(),
                repo_tags: Vec::new(),
                root: Some(descriptor.clone()),
                manifests: subtree.manifests,
                platforms: subtree.platforms,
                absent: subtree.absent,
                chosen_from: Vec::new(),
            });
        }
    }

    /// A descriptor reached from index.json: the blob is there at its size, and when it is a
    /// manifest or an index, what it names in turn. An index's child whose manifest the tar
    /// lacks is an absent platform, not damage.
    fn walk(
        &mut self,
        descriptor: &Descriptor,
        image: &str,
        named_by: &str,
        depth: usize,
    ) -> Subtree {
        if let Some(done) = self.walked.get(&descriptor.digest) {
            return done.clone();
        }
        let path = blob_path(&descriptor.digest);
        let media_type = descriptor.media_type.as_str();
        let is_manifest =
            media_type.is_empty() || is_index(media_type) || is_image_manifest(media_type);
        if depth > 0 && is_manifest && self.contents.resolve(&path).is_none() {
            return Subtree {
                absent: vec![descriptor.clone()],
                ..Subtree::default()
            };
        }
        let Found::File(file) = self.require_sized(&path, descriptor.size, named_by) else {
            return Subtree::default();
        };
        // Other blobs (attestations, artifacts) are checked for presence and size only.
        if !is_manifest {
            return Subtree::default();
        }
        if depth >= MAX_DEPTH {
            self.problems.push(Problem::Malformed {
                path,
                what: "index".to_string(),
                detail: format!("indexes nest deeper than {MAX_DEPTH} levels"),
            });
            return Subtree::default();
        }
        // Marked before its children are walked: a loop back to it ends here.
        self.walked
            .insert(descriptor.digest.clone(), Subtree::default());
        let Some(bytes) = self.bytes_of(&path, file, "manifest") else {
            return Subtree::default();
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
                return Subtree::default();
            }
        };
        let own = match &manifest {
            Manifest::Image(m) => m.media_type.clone(),
            Manifest::Index(i) => i.media_type.clone(),
        };
        let mut subtree = Subtree::default();
        match &manifest {
            Manifest::Index(index) => {
                let named_by = format!("the index {path} ({image})");
                for child in &index.manifests {
                    let walked = self.walk(child, image, &named_by, depth + 1);
                    subtree.extend(walked);
                }
                let held = subtree.platforms.len() + subtree.manifests.len();
                if held == 0 && !index.manifests.is_empty() && !subtree.absent.is_empty() {
                    self.problems.push(Problem::NoPlatformHeld {
                        image: image.to_string(),
                        path: path.clone(),
                        count: index.manifests.len(),
                    });
                }
            }
            Manifest::Image(manifest) => {
                let platform = descriptor.platform.as_ref().map(ToString::to_string);
                if let Some(found) =
                    self.image_manifest(manifest, &descriptor.digest, &path, image, platform)
                {
                    subtree.platforms.push(found);
                }
            }
        }
        let is_index = matches!(manifest, Manifest::Index(_));
        subtree.manifests.push(BundleManifest {
            digest: descriptor.digest.clone(),
            media_type: own
                .or(content_type.map(str::to_string))
                .unwrap_or_else(|| if is_index { OCI_INDEX } else { OCI_MANIFEST }.to_string()),
            bytes: bytes.to_vec(),
            is_index,
        });
        self.walked
            .insert(descriptor.digest.clone(), subtree.clone());
        subtree
    }

    /// An image manifest in the tar: its config and layers are there (or left out), at their
    /// sizes; for an image config, the layers agree with its diff_ids.
    fn image_manifest(
        &mut self,
        manifest: &ImageManifest,
        digest: &Digest,
        path: &str,
        image: &str,
        platform: Option<String>,
    ) -> Option<PlatformImage> {
        let named_by = format!("the manifest {path} ({image})");
        let config_path = blob_path(&manifest.config.digest);
        let config = self.require_sized(&config_path, manifest.config.size, &named_by);
        let count = manifest.layers.len();
        let layers: Vec<(String, Found<'a>, &Descriptor)> = manifest
            .layers
            .iter()
            .enumerate()
            .map(|(k, layer)| {
                let path = blob_path(&layer.digest);
                let named_by = format!("{named_by}, layer {} of {count}", k + 1);
                let found = self.require_sized(&path, layer.size, &named_by);
                (path, found, layer)
            })
            .collect();
        let Found::File(config_file) = config else {
            return None;
        };
        let blobs: Option<Vec<Blob>> = layers
            .iter()
            .map(|(path, found, d)| blob(path, found, &d.media_type))
            .collect();
        let config_blob = Blob {
            path: config_path.clone(),
            digest: manifest.config.digest.clone(),
            size: manifest.config.size,
            media_type: manifest.config.media_type.clone(),
            place: place(config_file),
        };
        // Artifacts have configs that are not image configs: no diff_ids to compare.
        let config_type = manifest.config.media_type.as_str();
        if !matches!(config_type, "" | DOCKER_CONFIG | OCI_CONFIG) {
            return Some(PlatformImage {
                manifest: Some(digest.clone()),
                platform,
                config: config_blob,
                artifact_type: Some(config_type.to_string()),
                diff_ids: Vec::new(),
                layers: blobs?,
            });
        }
        let refs: Vec<(&str, &Found<'a>)> = layers
            .iter()
            .map(|(path, found, _)| (path.as_str(), found))
            .collect();
        let config = self.image_config(image, &config_path, config_file, &refs)?;
        Some(PlatformImage {
            manifest: Some(digest.clone()),
            platform: platform.or_else(|| Some(config.platform().to_string())),
            config: config_blob,
            artifact_type: None,
            diff_ids: config.rootfs.diff_ids,
            layers: blobs?,
        })
    }

    /// `manifest.json`, as Docker's classic image store reads it: each entry as an image
    /// with no manifest (see [`Reader::merge`]).
    fn manifest_json(&mut self) -> Vec<Image> {
        let mut images = Vec::new();
        let Some(bytes) = self.metadata(MANIFEST_JSON, MANIFEST_JSON) else {
            return images;
        };
        let entries: Vec<ManifestEntry> = match serde_json::from_slice(bytes) {
            Ok(entries) => entries,
            Err(e) => {
                self.malformed(MANIFEST_JSON, MANIFEST_JSON, e);
                return images;
            }
        };
        for (i, entry) in entries.iter().enumerate() {
            let label = match entry.repo_tags.first() {
                Some(tag) => format!("image {tag}"),
                None => format!("image {} of manifest.json", i + 1),
            };
            let named_by = format!("manifest.json ({label}, Config)");
            let config_path = self.safe_path(&entry.config, &named_by);
            let config = config_path
                .as_deref()
                .map(|path| self.require(path, &named_by));
            let count = entry.layers.len();
            let mut layers: Vec<(String, Found<'a>)> = Vec::new();
            for (k, layer) in entry.layers.iter().enumerate() {
                let named_by = format!("manifest.json ({label}, layer {} of {count})", k + 1);
                if let Some(path) = self.safe_path(layer, &named_by) {
                    let found = self.require(&path, &named_by);
                    layers.push((path, found));
                }
            }
            let (Some(config_path), Some(Found::File(config_file))) = (config_path, config) else {
                continue;
            };
            if layers.len() != count {
                continue;
            }
            let refs: Vec<(&str, &Found<'a>)> = layers
                .iter()
                .map(|(path, found)| (path.as_str(), found))
                .collect();
            let Some(config) = self.image_config(&label, &config_path, config_file, &refs) else {
                continue;
            };
            let blobs: Option<Vec<Blob>> = layers
                .iter()
                .map(|(path, found)| blob(path, found, ""))
                .collect();
            let Some(blobs) = blobs else { continue };
            let platform = config.platform().to_string();
            images.push(Image {
                names: Vec::new(),
                repo_tags: entry.repo_tags.clone(),
                label: entry.repo_tags.first().cloned().unwrap_or(label),
                root: None,
                manifests: Vec::new(),
                platforms: vec![PlatformImage {
                    manifest: None,
                    platform: Some(platform),
                    config: Blob {
                        path: config_path.clone(),
                        digest: digest_of_path(&config_path)
                            .unwrap_or_else(|| config_file.digest.clone()),
                        size: config_file.size,
                        media_type: String::new(),
                        place: place(config_file),
                    },
                    artifact_type: None,
                    diff_ids: config.rootfs.diff_ids,
                    layers: blobs,
                }],
                absent: Vec::new(),
                chosen_from: Vec::new(),
            });
        }
        images
    }

    /// `manifest.json`'s images: one describing an image `index.json` reached (the same
    /// config and layers) adds its names to it; any other is an image of its own.
    fn merge(&mut self, classic: Vec<Image>) {
        for image in classic {
            let platform = &image.platforms[0];
            let known = self.images.iter_mut().find(|known| {
                known.root.is_some()
                    && known.platforms.iter().any(|p| {
                        p.config.path == platform.config.path
                            && p.layers
                                .iter()
                                .map(|l| &l.path)
                                .eq(platform.layers.iter().map(|l| &l.path))
                    })
            });
            match known {
                Some(known) => {
                    for tag in image.repo_tags {
                        if !known.repo_tags.contains(&tag) {
                            known.repo_tags.push(tag);
                        }
                    }
                }
                None => self.images.push(image),
            }
        }
    }

    /// An image's config against its layers: as many layers as diff_ids, and each
    /// uncompressed layer hashing to its diff_id; and the chains a delta relies on. The
    /// config, when it can be read. Each (config, layers) is checked once.
    fn image_config(
        &mut self,
        image: &str,
        config_path: &str,
        file: &'a FileRecord,
        layers: &[(&str, &Found<'a>)],
    ) -> Option<ImageConfig> {
        let bytes = self.bytes_of(config_path, file, "image config")?;
        let config: ImageConfig = match serde_json::from_slice(bytes) {
            Ok(config) => config,
            Err(e) => {
                self.malformed(config_path, "image config", e);
                return None;
            }
        };
        let key = (
            config_path.to_string(),
            layers.iter().map(|(p, _)| p.to_string()).collect(),
        );
        if !self.checked_images.insert(key) {
            return Some(config);
        }
        let diff_ids = &config.rootfs.diff_ids;
        // The chains of the layers a delta left out: what the destination must hold.
        if let Some(delta) = &mut self.delta {
            for (k, (_, found)) in layers.iter().enumerate() {
                if matches!(found, Found::LeftOut(..)) && k < diff_ids.len() {
                    delta.needed_chains.insert(diff_ids[..=k].to_vec());
                }
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
        for (k, (path, found)) in layers.iter().enumerate() {
            let Found::File(file) = found else { continue };
            if !file.is_tar {
                if !path.starts_with("blobs/") {
                    self.layers_unchecked += 1;
                }
                continue;
            }
            match diff_ids.get(k) {
                Some(diff_id) if *diff_id == file.digest => self.layers_matching_diff_ids += 1,
                Some(diff_id) => self.problems.push(Problem::DiffIdMismatch {
                    image: image.to_string(),
                    path: path.to_string(),
                    position: k + 1,
                    expected: diff_id.clone(),
                    actual: file.digest.clone(),
                }),
                None => {} // the count mismatch is reported
            }
        }
        Some(config)
    }

    /// The file at `path`, or (left out by a delta) what it would be, or a Missing problem
    /// naming who wanted it.
    fn require(&mut self, path: &str, named_by: &str) -> Found<'a> {
        if let Some(file) = self.contents.resolve(path) {
            return Found::File(file);
        }
        if let Some(blob) = self.delta.as_ref().and_then(|d| d.left_out.get(path)) {
            return Found::LeftOut(blob.digest.clone(), blob.size);
        }
        if let Some(layer) = self.delta.as_ref().and_then(|d| d.patched.get(path)) {
            let (digest, size) = (layer.digest.clone(), layer.size);
            // The patch itself must be in the tar, whole.
            let patch = layer.patch.clone();
            let named_by = format!("{DELTA_RECORD} (the patch of {path})");
            if let Found::File(file) = self.require_sized(&patch.path, patch.size, &named_by)
                && file.digest != patch.digest
                && !patch.path.starts_with("blobs/")
            {
                self.problems.push(Problem::Malformed {
                    path: patch.path.clone(),
                    what: "patch".to_string(),
                    detail: format!(
                        "its SHA-256 is {}, the record says {}",
                        file.digest, patch.digest
                    ),
                });
            }
            return Found::Patched(digest, size);
        }
        if self.reported_missing.insert(path.to_string()) {
            self.problems.push(Problem::Missing {
                path: path.to_string(),
                named_by: named_by.to_string(),
            });
        }
        Found::Missing
    }

    /// As [`Reader::require`], and of the size the descriptor says.
    fn require_sized(&mut self, path: &str, size: u64, named_by: &str) -> Found<'a> {
        let found = self.require(path, named_by);
        if let Found::File(file) = &found
            && file.size != size
            && self.checked_sizes.insert((path.to_string(), size))
        {
            self.problems.push(Problem::SizeMismatch {
                path: path.to_string(),
                expected: size,
                actual: file.size,
                named_by: named_by.to_string(),
            });
        }
        found
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
        let file = self.contents.resolve(path)?;
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

fn place(file: &FileRecord) -> Place {
    Place::Tar {
        offset: file.offset,
        is_tar: file.is_tar,
    }
}

/// A layer as the image names it: in the tar (by the digest its `blobs/` name says, else the
/// file's own) or left out; none when missing.
fn blob(path: &str, found: &Found<'_>, media_type: &str) -> Option<Blob> {
    let (digest, size, place) = match found {
        Found::File(file) => (
            digest_of_path(path).unwrap_or_else(|| file.digest.clone()),
            file.size,
            place(file),
        ),
        Found::LeftOut(digest, size) => (digest.clone(), *size, Place::LeftOut),
        Found::Patched(digest, size) => (digest.clone(), *size, Place::Patched),
        Found::Missing => return None,
    };
    Some(Blob {
        path: path.to_string(),
        digest,
        size,
        media_type: media_type.to_string(),
        place,
    })
}
