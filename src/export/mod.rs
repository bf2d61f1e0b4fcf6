//! Writes images into a tar from the cache. Knows files and tar, nothing of HTTP: each blob
//! comes from a [`BlobSource`] (the downloads under way), in manifest order, as it becomes
//! ready, so the tar grows while later layers still download.
//!
//! A file output is written under a temporary name in the same folder and renamed when
//! complete; on any failure (or Ctrl-C) the temporary file is removed, so a tar under its
//! final name is always whole.
//!
//! Over 600 lines because the one write (`write_tar` → `write_entries` → `Blobs`, `Entries`)
//! shares its types with every output (file, parts, standard output, an engine) and layout;
//! the layouts' own files and the parts writer stand beside it.

mod docker;
pub mod parts;
mod said;
pub mod tar;
mod v1;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::PathBuf;

use crate::bundle::names::{
    DELTA_RECORD, PatchSource, PatchedLayer, REFERRERS_RECORD, Rebuild, TRUSTED_ROOT,
};
use crate::bundle::{
    AttachedManifest, Attachment, DeltaRecord, LeftOutBlob, ReceiptBlob, ReceiptImage,
    ReferrersRecord, blob_path,
};
use crate::cache::StoredBlob;
use crate::delta::LeftOut;
use crate::digest::Digest;
use crate::fsx::TempFile;
use crate::manifest::Descriptor;
use crate::patch::recompress::Recipe;
use crate::progress::{Event, Progress};
use crate::reference::Reference;
use tar::{Sink, TarWriter};

/// One image to put in the tar, exactly as resolved: its layer list is the manifest's.
#[derive(Clone, Debug)]
pub struct ExportImage {
    /// The name the user asked for (RepoTags and the containerd name come from it).
    pub reference: Reference,
    /// The registry's manifest bytes, unchanged, so its digest survives the trip.
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// The config's diff_ids: the digests of the layers uncompressed, in order.
    pub diff_ids: Vec<Digest>,
    /// Set when this image is one platform of several exported together (OCI layout): the
    /// registry's index it was chosen from.
    pub index: Option<SourceIndex>,
    /// The layers go into the tar uncompressed (each as the blob named by its diff_id).
    pub uncompressed: bool,
}

impl ExportImage {
    /// The digest of the blob the tar holds for layer `i`: the layer as served, or its
    /// uncompressed form.
    pub fn tar_blob(&self, i: usize) -> &Digest {
        if self.uncompressed {
            &self.diff_ids[i]
        } else {
            &self.layers[i].digest
        }
    }
}

/// A registry's index (manifest list), exactly as served.
#[derive(Clone, Debug)]
pub struct SourceIndex {
    pub bytes: Vec<u8>,
    pub digest: Digest,
}

/// How the tar is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// What `docker save` writes since Docker 25: `blobs/`, `manifest.json` and `index.json`.
    Docker,
    /// What `docker save` wrote before: `<id>/layer.tar` (uncompressed), `<id>/json`,
    /// `<id>/VERSION`, `<config>.json`, `manifest.json`, `repositories`.
    DockerV1,
    /// An OCI image layout only: `blobs/`, `index.json`, `oci-layout`.
    Oci,
}

/// Where the tar goes.
#[derive(Clone, Debug)]
pub enum Output {
    File(PathBuf),
    Stdout,
    /// An engine's `docker load`, streamed into its standard input: no temporary file.
    Engine(crate::engine::Engine),
    /// Parts of at most a size, beside their record (`--split`).
    Parts(parts::Split),
}

impl Output {
    pub fn describe(&self) -> String {
        match self {
            Output::File(path) => path.display().to_string(),
            Output::Parts(split) => crate::parts::record_path(&split.path).display().to_string(),
            Output::Stdout => "standard output".to_string(),
            Output::Engine(engine) => engine.describe(),
        }
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Gives a blob from the cache once it is there (waiting for its download): the blob asked
/// for, or its uncompressed form when the plan asked for that. Called from the writer's
/// blocking thread; it may block.
pub trait BlobSource: Send {
    fn blob(&mut self, digest: &Digest) -> Result<StoredBlob, BoxError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Blob(BoxError),
    #[error("{command} failed ({status}); see its message above")]
    Loader { command: String, status: String },
}

/// What to write: the images, their layout, and the layer blobs a delta leaves out (with
/// their sizes), which the destination already holds.
pub struct TarJob {
    pub images: Vec<ExportImage>,
    pub layout: Layout,
    pub left_out: LeftOut,
    /// What refers to the images (`--referrers`): carried in `blobs/`, recorded in
    /// `haul-referrers.json`, and listed in `index.json` in the OCI layout only.
    pub attachments: Vec<Attachment>,
    /// Manifests the attachments refer to that the tar holds for that alone (the index one
    /// platform was chosen from): in `blobs/`, recorded in `haul-referrers.json`.
    pub subjects: Vec<AttachedManifest>,
    /// The sigstore trusted root that travels with the attachments (`--trusted-root`), for
    /// `haul verify` to check keyless signatures at the site: `haul-trusted-root.json`.
    pub trusted_root: Option<Vec<u8>>,
    /// Layer blobs a patch delta carries as patches (`--patch`), by the blob's digest.
    pub patched: BTreeMap<Digest, PatchedBlob>,
}

/// A layer carried as a patch against layers the destination holds.
#[derive(Clone, Debug)]
pub struct PatchedBlob {
    /// The patch, in the cache.
    pub patch: StoredBlob,
    /// The layer's blob as the tar would hold it.
    pub size: u64,
    pub diff_id: Digest,
    /// The uncompressed layer's size.
    pub tar_size: u64,
    pub sources: Vec<PatchSource>,
    /// How the very blob is made again from the rebuilt tar, when it can be.
    pub recompress: Option<Recipe>,
}

/// A tar written.
#[derive(Debug)]
pub struct Exported {
    /// Its size, the end-of-archive marker included.
    pub size: u64,
    /// Its images as it holds them (for its receipt).
    pub bundle: Vec<ReceiptImage>,
    /// With `--patch`: each layer tried as a patch, and how it travels.
    pub patches: Vec<PatchOutcome>,
}

/// What `--patch` did to one layer, for the closing lines.
#[derive(Clone, Debug)]
pub struct PatchOutcome {
    pub image: String,
    pub layer: Digest,
    /// The blob's size, and the patch's when one travels.
    pub blob_size: u64,
    pub patch_size: Option<u64>,
    /// Why it travels whole, when it does.
    pub whole_because: Option<WholeBecause>,
}

/// Why `--patch` sends a layer whole.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WholeBecause {
    #[error("the layer it would be patched against ({against}) is not in this cache, {fetch}")]
    SourceNotCached { against: Digest, fetch: String },
    #[error("its patch ({patch_size} bytes) is no smaller")]
    PatchNoSmaller { patch_size: u64 },
}

/// Writes `job` as one tar to `output`. The tar is written on a blocking thread, with std
/// files (so that copying a cached blob is the kernel's work); a file output goes under a
/// temporary name, removed if this future is dropped (Ctrl-C) or fails, and renamed into
/// place once synced.
pub async fn write_tar<S: BlobSource + 'static>(
    job: TarJob,
    mut blobs: S,
    output: &Output,
    progress: &dyn Progress,
) -> Result<Exported, ExportError> {
    let name = output.describe();
    // What the closing line says of a delta.
    let (left_out, since): (usize, Vec<String>) = (
        job.left_out.blobs.len(),
        job.left_out.since.iter().cloned().collect(),
    );
    let patched = job.patched.len();
    let by_content = job
        .patched
        .values()
        .filter(|p| p.recompress.is_none())
        .count();
    let write_error = {
        let name = name.clone();
        move |source| ExportError::Write { path: name, source }
    };
    // With `--split`: how many data and recovery parts the set has.
    let mut parts_written = None;
    let exported = match output {
        Output::File(path) => {
            let path = path.clone();
            let temp = crate::blocking::run(move || TempFile::create(&path))
                .await
                .map_err(write_error.clone())?;
            let file = temp.file.try_clone().map_err(write_error.clone())?;
            let exported = crate::blocking::run(move || {
                let (writer, bundle) =
                    write_entries(&job, &mut blobs, TarWriter::new(file), &name)?;
                let size = writer.finished_size();
                let file = writer.finish().map_err(write_error.clone())?;
                file.sync_all().map_err(write_error.clone())?;
                Ok::<_, ExportError>(Exported {
                    size,
                    bundle,
                    patches: Vec::new(),
                })
            })
            .await?;
            let write_error = {
                let name = output.describe();
                move |source| ExportError::Write { path: name, source }
            };
            crate::blocking::run(move || temp.persist())
                .await
                .map_err(write_error)?;
            exported
        }
        Output::Stdout => {
            crate::blocking::run(move || {
                let (writer, bundle) =
                    write_entries(&job, &mut blobs, TarWriter::new(io::stdout()), &name)?;
                let size = writer.finished_size();
                writer.finish().map_err(write_error)?;
                Ok::<_, ExportError>(Exported {
                    size,
                    bundle,
                    patches: Vec::new(),
                })
            })
            .await?
        }
        Output::Parts(split) => {
            let split = split.clone();
            crate::blocking::run(move || {
                let writer = parts::PartsWriter::new(split).map_err(write_error.clone())?;
                let (writer, bundle) =
                    write_entries(&job, &mut blobs, TarWriter::new(writer), &name)?;
                let size = writer.finished_size();
                let parts = writer.finish().map_err(write_error.clone())?;
                let record = parts.finish().map_err(write_error)?;
                let counts = (record.parts.len(), record.parity());
                Ok::<_, ExportError>((
                    Exported {
                        size,
                        bundle,
                        patches: Vec::new(),
                    },
                    counts,
                ))
            })
            .await
            .map(|(exported, counts)| {
                parts_written = Some(counts);
                exported
            })?
        }
        Output::Engine(engine) => {
            let command = engine.load_command();
            crate::blocking::run(move || write_to_command(&job, &mut blobs, command, &name)).await?
        }
    };
    progress.event(Event::Exported {
        path: output.describe(),
        bytes: exported.size,
        into_engine: matches!(output, Output::Engine(_)),
        left_out,
        since,
        parts: parts_written,
        patched,
        by_content,
    });
    Ok(exported)
}

/// What a tar would hold (`--dry-run`).
#[derive(Debug)]
pub struct Measured {
    /// Its size, the end-of-archive marker included.
    pub size: u64,
    /// Set when some layer's size is its compressed one, standing for an uncompressed form
    /// not yet made.
    pub estimated: bool,
    /// Each image: its name, the bytes of its config and layers the tar holds, and the layers
    /// (and their bytes) a delta leaves out.
    pub images: Vec<MeasuredImage>,
    /// The earlier bundles' images a delta relies on.
    pub since: Vec<String>,
}

#[derive(Debug)]
pub struct MeasuredImage {
    pub name: String,
    /// Bytes of blobs the tar holds that no image before it in the tar holds.
    pub bytes: u64,
    /// Bytes of blobs an image before it holds too (the tar holds each blob once), and
    /// those images.
    pub shared_bytes: u64,
    pub shared_with: Vec<String>,
    pub left_out: usize,
    pub left_out_bytes: u64,
}

/// Measures `job` without reading a blob or writing a byte: the same entries, each blob at
/// the size `sizes` gives.
pub fn measure(
    job: &TarJob,
    sizes: std::collections::HashMap<Digest, u64>,
) -> Result<Measured, ExportError> {
    struct Sized(std::collections::HashMap<Digest, u64>);
    impl BlobSource for Sized {
        fn blob(&mut self, digest: &Digest) -> Result<StoredBlob, BoxError> {
            let size = *self
                .0
                .get(digest)
                .ok_or_else(|| format!("the plan does not know the size of {digest}"))?;
            Ok(StoredBlob {
                path: PathBuf::new(),
                digest: digest.clone(),
                size,
            })
        }
    }
    // Each blob counts once, for the first image that holds it.
    let mut counted: std::collections::HashMap<&Digest, String> = Default::default();
    let mut images = Vec::new();
    for image in &job.images {
        let name = image.reference.to_string();
        let mut measured = MeasuredImage {
            name: name.clone(),
            bytes: 0,
            shared_bytes: 0,
            shared_with: Vec::new(),
            left_out: 0,
            left_out_bytes: 0,
        };
        let config = (&image.config.digest, image.config.size);
        let layers = (0..image.layers.len()).map(|i| (image.tar_blob(i), image.layers[i].size));
        for (i, (blob, declared)) in std::iter::once(config).chain(layers).enumerate() {
            let size = sizes.get(blob).copied().unwrap_or(declared);
            if i > 0 && job.left_out.blobs.contains_key(blob) {
                measured.left_out += 1;
                measured.left_out_bytes += size;
                continue;
            }
            match counted.get(blob) {
                None => {
                    counted.insert(blob, name.clone());
                    measured.bytes += size;
                }
                Some(first) if *first == name => {}
                Some(first) => {
                    measured.shared_bytes += size;
                    if !measured.shared_with.contains(first) {
                        measured.shared_with.push(first.clone());
                    }
                }
            }
        }
        images.push(measured);
    }
    let (writer, _) = write_entries(
        job,
        &mut Sized(sizes.clone()),
        TarWriter::new(tar::Counter),
        "",
    )?;
    Ok(Measured {
        size: writer.finished_size(),
        estimated: false,
        images,
        since: job.left_out.since.iter().cloned().collect(),
    })
}

/// Streams the tar into the standard input of `command` (`docker load`) and waits for it.
fn write_to_command<S: BlobSource>(
    job: &TarJob,
    blobs: &mut S,
    mut command: std::process::Command,
    name: &str,
) -> Result<Exported, ExportError> {
    let write_error = |source| ExportError::Write {
        path: name.to_string(),
        source,
    };
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(write_error)?;
    let stdin = child.stdin.take().expect("stdin is piped");
    let written =
        write_entries(job, blobs, TarWriter::new(stdin), name).and_then(|(writer, bundle)| {
            let size = writer.finished_size();
            // Finishing closes stdin: the loader sees the end of the tar.
            writer
                .finish()
                .map(|_| Exported {
                    size,
                    bundle,
                    patches: Vec::new(),
                })
                .map_err(write_error)
        });
    let exported = match written {
        Ok(exported) => exported,
        Err(ExportError::Write { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
            // The loader stopped reading: its own exit status and message say why.
            let status = child
                .wait()
                .map_or_else(|e| e.to_string(), |s| s.to_string());
            return Err(ExportError::Loader {
                command: name.to_string(),
                status,
            });
        }
        Err(error) => {
            // Stop the loader before it takes a truncated tar as complete.
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
    };
    let status = child.wait().map_err(write_error)?;
    if !status.success() {
        return Err(ExportError::Loader {
            command: name.to_string(),
            status: status.to_string(),
        });
    }
    Ok(exported)
}

fn write_entries<W: Sink, S: BlobSource>(
    job: &TarJob,
    blobs: &mut S,
    writer: TarWriter<W>,
    output: &str,
) -> Result<(TarWriter<W>, Vec<ReceiptImage>), ExportError> {
    let mut entries = Entries {
        writer,
        output: output.to_string(),
    };
    let mut blobs = Blobs {
        source: blobs,
        taken: HashMap::new(),
        left_out: &job.left_out.blobs,
        patched: &job.patched,
        record: Vec::new(),
        patched_record: Vec::new(),
        bundle: Vec::new(),
        layout: job.layout,
    };
    match job.layout {
        Layout::Docker | Layout::Oci => {
            docker::write(
                &job.images,
                job.layout,
                &job.attachments,
                &mut blobs,
                &mut entries,
            )?;
        }
        Layout::DockerV1 => v1::write(&job.images, &mut blobs, &mut entries)?,
    }
    if !job.attachments.is_empty() {
        write_attachments(
            &job.attachments,
            &job.subjects,
            job.layout,
            &mut blobs,
            &mut entries,
        )?;
    }
    if let Some(root) = &job.trusted_root {
        entries.bytes(TRUSTED_ROOT, root)?;
    }
    // A delta says what it left out, for `haul verify` and `haul load`.
    if !blobs.record.is_empty() || !blobs.patched_record.is_empty() {
        let mut record = DeltaRecord::new(
            std::mem::take(&mut blobs.record),
            job.left_out.since.iter().cloned(),
        );
        let patched: std::collections::BTreeSet<PatchedLayer> =
            std::mem::take(&mut blobs.patched_record)
                .into_iter()
                .collect();
        record.patched = patched.into_iter().collect();
        entries.bytes(DELTA_RECORD, &record.to_bytes())?;
    }
    Ok((entries.writer, blobs.bundle))
}

/// The attachments' blobs and manifests into `blobs/` (each once: an image may have written
/// one already), and their record.
fn write_attachments<W: Sink, S: BlobSource>(
    attachments: &[Attachment],
    subjects: &[AttachedManifest],
    layout: Layout,
    blobs: &mut Blobs<'_, S>,
    entries: &mut Entries<W>,
) -> Result<(), ExportError> {
    if layout == Layout::DockerV1 {
        entries.dir("blobs/")?;
        entries.dir("blobs/sha256/")?;
    }
    let mut written: std::collections::HashSet<Digest> = blobs.taken.keys().cloned().collect();
    for attachment in attachments {
        for descriptor in &attachment.blobs {
            let blob = blobs.get(&descriptor.digest)?;
            if written.insert(blob.digest.clone()) {
                entries.file(&blob_path(&blob.digest), &blob)?;
            }
        }
        for manifest in &attachment.manifests {
            if written.insert(manifest.digest.clone()) {
                entries.bytes(&blob_path(&manifest.digest), &manifest.bytes)?;
            }
        }
    }
    for subject in subjects {
        if written.insert(subject.digest.clone()) {
            entries.bytes(&blob_path(&subject.digest), &subject.bytes)?;
        }
    }
    entries.bytes(
        REFERRERS_RECORD,
        &ReferrersRecord::new(attachments, subjects).to_bytes(),
    )
}

/// The run's blobs, as the layouts see them: each taken from the [`BlobSource`] once (it
/// hands each out once) and kept for the layers and images that use it again; or left out
/// of a delta, and recorded as such.
struct Blobs<'a, S> {
    source: &'a mut S,
    taken: HashMap<Digest, StoredBlob>,
    /// Layer blobs the destination holds: not written.
    left_out: &'a BTreeMap<Digest, u64>,
    /// Layer blobs carried as patches: not written, their patches are.
    patched: &'a BTreeMap<Digest, PatchedBlob>,
    /// Where the left-out blobs would be (for `haul-delta.json`).
    record: Vec<LeftOutBlob>,
    /// The layers carried as patches, where they would be (for `haul-delta.json`).
    patched_record: Vec<PatchedLayer>,
    /// Each image as written.
    bundle: Vec<ReceiptImage>,
    /// Names images in the receipt as the layout's index files do.
    layout: Layout,
}

impl<S: BlobSource> Blobs<'_, S> {
    fn get(&mut self, digest: &Digest) -> Result<StoredBlob, ExportError> {
        if let Some(blob) = self.taken.get(digest) {
            return Ok(blob.clone());
        }
        let blob = self.source.blob(digest).map_err(ExportError::Blob)?;
        self.taken.insert(digest.clone(), blob.clone());
        Ok(blob)
    }

    /// Layer `i` of `image` when the delta leaves it out: the blob as the destination holds
    /// it (no file: nothing is read), recorded at `path`.
    fn left_out(&mut self, image: &ExportImage, i: usize, path: &str) -> Option<StoredBlob> {
        let digest = image.tar_blob(i);
        let size = *self.left_out.get(digest)?;
        self.record.push(LeftOutBlob {
            path: path.to_string(),
            digest: digest.clone(),
            size,
        });
        Some(StoredBlob {
            path: PathBuf::new(),
            digest: digest.clone(),
            size,
        })
    }

    /// Layer `i` of `image` when the delta carries it as a patch: the blob as it will be
    /// rebuilt (no file), and the patch to write, recorded at `path`.
    fn patched(
        &mut self,
        image: &ExportImage,
        i: usize,
        path: &str,
    ) -> Option<(StoredBlob, StoredBlob)> {
        let digest = image.tar_blob(i);
        let patched = self.patched.get(digest)?;
        self.patched_record.push(PatchedLayer {
            path: path.to_string(),
            digest: digest.clone(),
            size: patched.size,
            diff_id: patched.diff_id.clone(),
            tar_size: patched.tar_size,
            patch: LeftOutBlob {
                path: blob_path(&patched.patch.digest),
                digest: patched.patch.digest.clone(),
                size: patched.patch.size,
            },
            sources: patched.sources.clone(),
            rebuild: if patched.recompress.is_some() {
                Rebuild::Exact
            } else {
                Rebuild::Content
            },
            recompress: patched.recompress,
        });
        let layer = StoredBlob {
            path: PathBuf::new(),
            digest: digest.clone(),
            size: patched.size,
        };
        Some((layer, patched.patch.clone()))
    }

    /// Notes an image as written, with its layer blobs.
    fn written(&mut self, image: &ExportImage, layers: &[StoredBlob]) {
        // As the tar names it: RepoTags in manifest.json, the containerd name in index.json.
        let name = match self.layout {
            Layout::Docker | Layout::DockerV1 => image.reference.familiar_tagged(),
            Layout::Oci => Some(image.reference.full_tagged()),
        };
        self.bundle.push(ReceiptImage {
            names: name.into_iter().collect(),
            diff_ids: image.diff_ids.clone(),
            // A layer rebuilt by content is held as its uncompressed tar.
            layers: layers
                .iter()
                .map(|b| match self.patched.get(&b.digest) {
                    Some(p) if p.recompress.is_none() => ReceiptBlob {
                        digest: p.diff_id.clone(),
                        size: p.tar_size,
                    },
                    _ => ReceiptBlob {
                        digest: b.digest.clone(),
                        size: b.size,
                    },
                })
                .collect(),
        });
    }
}

/// The tar being written, as the layouts see it: files from bytes or from the cache.
struct Entries<W: Sink> {
    writer: TarWriter<W>,
    /// Names the output in errors.
    output: String,
}

impl<W: Sink> Entries<W> {
    fn write_error(&self, source: io::Error) -> ExportError {
        ExportError::Write {
            path: self.output.clone(),
            source,
        }
    }

    fn dir(&mut self, name: &str) -> Result<(), ExportError> {
        let result = self.writer.append_dir(name);
        result.map_err(|e| self.write_error(e))
    }

    fn bytes(&mut self, name: &str, bytes: &[u8]) -> Result<(), ExportError> {
        let result = self.writer.append_bytes(name, bytes);
        result.map_err(|e| self.write_error(e))
    }

    /// Copies a cached blob in (file to file, the kernel copies).
    fn file(&mut self, name: &str, blob: &StoredBlob) -> Result<(), ExportError> {
        let result = self.writer.append_file(name, &blob.path, blob.size);
        result.map_err(|e| self.write_error(e))
    }
}
