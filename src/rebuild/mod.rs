//! The far side of a patch delta (`export --since PREV --patch`): each layer it carries as a
//! patch is rebuilt from the layers the site holds ([`sources`]) and checked against the
//! config's diff_id, every one before anything is written or loaded; then the bundle is
//! written again with those layers in it ([`write`]): for `haul rebuild` an ordinary whole
//! bundle (the left-out layers taken from the earlier bundles too), for `haul load` a tar
//! the engine loads (the left-out layers, which it holds, still left out).
//!
//! A layer whose blob the export could reproduce ("exact") is recompressed to that very
//! blob, and checked against its digest: every digest is kept. A "content" layer goes into
//! the tar uncompressed (as `docker save` writes layers), under manifests rewritten to name
//! it: the image ID (the config's digest) is kept; the manifest digest is new.

pub mod sources;
pub mod write;

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::bundle::names::{PatchedLayer, Rebuild};
use crate::bundle::{Bundle, BundleFile};
use crate::digest::Digest;
use crate::digest::HashingWriter;
use crate::export::tar::{Sink, TarWriter};
use crate::patch::recompress;
pub use sources::Sources;
use sources::Taken;
pub use write::LeftOut;
pub use write::check_left_out;
use write::write_bundle;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("{name}: {why}")]
    Source { name: String, why: String },
    #[error(
        "the delta is patched against {made_against} (its layer {diff_id}), which none of \
         {looked_in} holds; give the bundle that delivered {made_against} with --from (or \
         load it into the engine first)"
    )]
    MissingSource {
        made_against: String,
        diff_id: Digest,
        looked_in: String,
    },
    #[error(
        "the delta is patched against layer {diff_id}, which {name} itself carries as a patch: \
         rebuild it first (haul rebuild {name} --from …) and give the rebuilt bundle with --from"
    )]
    SourcePatched { diff_id: Digest, name: String },
    #[error(
        "the delta relies on {made_against}, and left out its blob {digest} ({path}), which \
         none of {looked_in} holds; give the bundle that delivered {made_against} with --from"
    )]
    MissingBlob {
        made_against: String,
        path: String,
        digest: Digest,
        looked_in: String,
    },
    #[error(
        "layer {layer} rebuilt from its patch hashes to {actual}, not its diff_id {expected}: \
         the patch or a layer it is rebuilt from is damaged"
    )]
    Mismatch {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("cannot read the delta's {what}: {source}")]
    Delta {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot use the scratch folder {dir} ({source}); set TMPDIR to a folder with room")]
    Scratch {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "layer {layer} did not rebuild to its very blob, so its image would get a new manifest \
         digest"
    )]
    NotExact { layer: Digest },
    #[error("cannot read {name}")]
    Read {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{name} is not whole ({problem}; `haul verify {name}` lists every problem); nothing was \
         rebuilt"
    )]
    NotWhole { name: String, problem: String },
    #[error("{name} is not a delta (it has no haul-delta.json): it is whole already")]
    NotADelta { name: String },
    #[error("cannot write {output}: {source}")]
    Write {
        output: String,
        #[source]
        source: io::Error,
    },
}

/// A patch delta made whole again where it is used: the one sequence `haul rebuild`,
/// `haul load` and `haul push` share. [`RebuildJob::layers`] rebuilds and checks every patched
/// layer before anything is written; [`RebuildJob::write`] writes the bundle with them.
pub struct RebuildJob<'a> {
    pub delta: &'a Bundle,
    /// Where the delta is read from (a tar or a parts set).
    pub file: &'a BundleFile,
    pub sources: &'a Sources,
    pub left_out: LeftOut<'a>,
    /// Refuses a layer that did not come out as its very blob (a push keeps digests).
    pub exact_only: bool,
}

impl RebuildJob<'_> {
    /// Every patched layer rebuilt from the sources and checked (see [`rebuild_layers`]);
    /// `said` hears of each. Blocks.
    pub fn layers(
        &self,
        said: &mut dyn FnMut(&RebuiltLayer),
    ) -> Result<Vec<RebuiltLayer>, RebuildError> {
        let rebuilt = rebuild_layers(self.delta, self.file, self.sources, said)?;
        if let Some(layer) = rebuilt.iter().find(|l| !l.exact)
            && self.exact_only
        {
            return Err(RebuildError::NotExact {
                layer: layer.record.digest.clone(),
            });
        }
        Ok(rebuilt)
    }

    /// The bundle, with `rebuilt` in place of its patches, into `out` (called `output` in
    /// messages), ended with the end-of-archive marker. Blocks.
    pub fn write<W: Sink>(
        &self,
        rebuilt: &mut [RebuiltLayer],
        out: &mut TarWriter<W>,
        output: &str,
    ) -> Result<(), RebuildError> {
        write_bundle(self.delta, self.file, rebuilt, self.left_out, out, output)?;
        out.end().map_err(|source| RebuildError::Write {
            output: output.to_string(),
            source,
        })
    }

    /// Rebuilt into `file` (called `output` in messages), and synced. The caller holds the
    /// file's temporary name and renames it once this returns: an interruption, which drops
    /// the caller's guard while this thread still writes, then leaves nothing. Returns the
    /// size written and the layers rebuilt. Blocks.
    pub fn write_synced(
        &self,
        file: File,
        output: &str,
        said: &mut dyn FnMut(&RebuiltLayer),
    ) -> Result<(u64, Vec<RebuiltLayer>), RebuildError> {
        let mut rebuilt = self.layers(said)?;
        let write_error = |source| RebuildError::Write {
            output: output.to_string(),
            source,
        };
        let mut writer = TarWriter::new(io::BufWriter::with_capacity(1 << 20, file));
        self.write(&mut rebuilt, &mut writer, output)?;
        let size = writer.written();
        let file = writer
            .into_inner()
            .into_inner()
            .map_err(|e| write_error(e.into_error()))?;
        file.sync_all().map_err(write_error)?;
        Ok((size, rebuilt))
    }
}

/// Reads the delta in `file` whole; a damaged bundle, or one that is not a delta, is refused
/// before any work.
pub async fn read_delta(file: &BundleFile) -> Result<Bundle, RebuildError> {
    let name = file.describe();
    let bundle = file.read().await.map_err(|source| RebuildError::Read {
        name: name.clone(),
        source,
    })?;
    if let Some(problem) = bundle.problems.first() {
        return Err(RebuildError::NotWhole {
            name,
            problem: problem.to_string(),
        });
    }
    if bundle.delta.is_none() {
        return Err(RebuildError::NotADelta { name });
    }
    Ok(bundle)
}

/// A patched layer, rebuilt and checked, in a scratch file.
pub struct RebuiltLayer {
    pub record: PatchedLayer,
    /// The blob as it goes into the tar: the very blob (exact), or the uncompressed tar.
    pub file: File,
    pub digest: Digest,
    pub size: u64,
    /// Whether `digest` is the blob the manifests name (else the diff_id: new manifests).
    pub exact: bool,
}

impl RebuiltLayer {
    /// Where the tar holds it: where the record says, or, for content, the uncompressed
    /// blob's own path in the `blobs/` layouts.
    pub fn path(&self) -> String {
        if self.exact || !self.record.path.starts_with("blobs/") {
            self.record.path.clone()
        } else {
            crate::bundle::blob_path(&self.digest)
        }
    }
}

/// Names every layer a patch needs that `sources` lacks, before any work is done.
pub fn check_sources(delta: &Bundle, sources: &Sources) -> Result<(), RebuildError> {
    for layer in patched(delta) {
        for source in &layer.sources {
            if !sources.has_layer(&source.diff_id) {
                if let Some(name) = sources.patched_in(&source.diff_id) {
                    return Err(RebuildError::SourcePatched {
                        diff_id: source.diff_id.clone(),
                        name: name.to_string(),
                    });
                }
                return Err(RebuildError::MissingSource {
                    made_against: made_against(delta),
                    diff_id: source.diff_id.clone(),
                    looked_in: sources.describe(),
                });
            }
        }
    }
    Ok(())
}

/// The images a delta was made against, for messages: what its record names.
fn made_against(delta: &Bundle) -> String {
    match delta.delta.as_ref().map(|d| d.since.join(", ")) {
        Some(names) if !names.is_empty() => names,
        _ => "the images it was made against".to_string(),
    }
}

fn patched(delta: &Bundle) -> impl Iterator<Item = &PatchedLayer> {
    delta.delta.iter().flat_map(|d| d.patched.values())
}

/// The folder a site's rebuild keeps its scratch files in (the sources' layers, the patches,
/// the rebuilt layers; also `haul load`'s copy of the engine's `docker save`): the system's
/// temporary folder, which `TMPDIR` names. Each file is unnamed or removed when done.
pub fn scratch_dir() -> PathBuf {
    std::env::temp_dir()
}

/// Rebuilds every patched layer of `delta` (read from `file`) from `sources`, in scratch
/// files in [`scratch_dir`], each checked against its diff_id (and, exact, its digest).
/// `progress` is told of each layer done. Blocks.
pub fn rebuild_layers(
    delta: &Bundle,
    file: &BundleFile,
    sources: &Sources,
    progress: &mut dyn FnMut(&RebuiltLayer),
) -> Result<Vec<RebuiltLayer>, RebuildError> {
    check_sources(delta, sources)?;
    let scratch = scratch_dir();
    let scratch = scratch.as_path();
    let scratch_error = |source| RebuildError::Scratch {
        dir: scratch.to_path_buf(),
        source,
    };
    let mut taken = Taken::default();
    let mut rebuilt = Vec::new();
    // Each source's scratch copy goes once the last patch that needs it is applied.
    let records: Vec<&PatchedLayer> = patched(delta).collect();
    let last_use: std::collections::HashMap<&Digest, usize> = records
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.sources.iter().map(move |s| (&s.diff_id, i)))
        .collect();
    for (index, record) in records.iter().copied().enumerate() {
        let mut tars = Vec::new();
        for source in &record.sources {
            let tar = match taken.files.get(&source.diff_id) {
                Some(tar) => tar.try_clone().map_err(scratch_error)?,
                None => {
                    let tar = sources.layer_tar(&source.diff_id, scratch)?;
                    taken.files.insert(
                        source.diff_id.clone(),
                        tar.try_clone().map_err(scratch_error)?,
                    );
                    tar
                }
            };
            tars.push(tar);
        }
        tracing::debug!("sources of {} ready", record.digest);
        let patch = copy_patch(delta, file, record, scratch)?;
        let mut tar = crate::fsx::unnamed_file(scratch, "layer").map_err(scratch_error)?;
        let mut hashed = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, &mut tar));
        let made = crate::patch::rebuild::rebuild(&patch, &tars, &mut hashed);
        let (diff_id, _, writer) = hashed.finish().map_err(scratch_error)?;
        drop(writer);
        match made {
            Ok(header) if header.target == record.diff_id => {}
            Ok(header) => {
                return Err(RebuildError::Source {
                    name: record.patch.path.clone(),
                    why: format!(
                        "the patch rebuilds layer {}, but the delta's record says {}",
                        header.target, record.diff_id
                    ),
                });
            }
            Err(e) => {
                return Err(RebuildError::Delta {
                    what: format!("patch of layer {}", record.digest),
                    source: e,
                });
            }
        }
        if diff_id != record.diff_id {
            return Err(RebuildError::Mismatch {
                layer: record.digest.clone(),
                expected: record.diff_id.clone(),
                actual: diff_id,
            });
        }
        let size = tar.seek(SeekFrom::End(0)).map_err(scratch_error)?;
        tracing::debug!("layer {} rebuilt and checked", record.digest);
        taken
            .files
            .retain(|diff_id, _| last_use.get(diff_id).is_some_and(|&last| last > index));
        let layer = match exact_blob(record, &mut tar, size, scratch)? {
            Some((file, size)) => RebuiltLayer {
                record: record.clone(),
                file,
                digest: record.digest.clone(),
                size,
                exact: true,
            },
            None => RebuiltLayer {
                record: record.clone(),
                file: tar,
                digest: record.diff_id.clone(),
                size,
                exact: false,
            },
        };
        progress(&layer);
        rebuilt.push(layer);
    }
    Ok(rebuilt)
}

/// The patch blob, out of the delta (a tar or a parts set) into a scratch file.
fn copy_patch(
    delta: &Bundle,
    file: &BundleFile,
    record: &PatchedLayer,
    scratch: &Path,
) -> Result<File, RebuildError> {
    let what = || format!("patch {}", record.patch.path);
    let found = delta
        .contents
        .resolve(&record.patch.path)
        .ok_or_else(|| RebuildError::Delta {
            what: what(),
            source: io::Error::new(io::ErrorKind::NotFound, "it is not in the tar"),
        })?;
    let mut patch =
        crate::fsx::unnamed_file(scratch, "patch").map_err(|source| RebuildError::Scratch {
            dir: scratch.to_path_buf(),
            source,
        })?;
    let delta_error = |source| RebuildError::Delta {
        what: what(),
        source,
    };
    let mut reader = file.range(found.offset, found.size).map_err(delta_error)?;
    let mut hashed = HashingWriter::new(&mut patch);
    io::copy(&mut reader, &mut hashed).map_err(delta_error)?;
    let (digest, _, _) = hashed.finish().map_err(delta_error)?;
    // The tar's pass hashed it already; this copy is what the rebuild reads.
    if digest != record.patch.digest {
        return Err(delta_error(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it hashes to {digest}, not {}", record.patch.digest),
        )));
    }
    Ok(patch)
}

/// For an exact layer, its very blob made again from the rebuilt tar and checked against its
/// digest; none when the record says content, or when the blob made is another (a warning:
/// the layer then goes in by content, still checked).
fn exact_blob(
    record: &PatchedLayer,
    tar: &mut File,
    size: u64,
    scratch: &Path,
) -> Result<Option<(File, u64)>, RebuildError> {
    let (Rebuild::Exact, Some(recipe)) = (record.rebuild, record.recompress) else {
        return Ok(None);
    };
    let scratch_error = |source| RebuildError::Scratch {
        dir: scratch.to_path_buf(),
        source,
    };
    if recipe == recompress::Recipe::None {
        // The blob is the tar itself: its digest is the diff_id just checked, or the record
        // is wrong.
        if record.digest != record.diff_id {
            tracing::warn!(
                "layer {} is recorded as an uncompressed tar, but its diff_id is {}; it goes in \
                 by content",
                record.digest,
                record.diff_id
            );
            return Ok(None);
        }
        return Ok(Some((tar.try_clone().map_err(scratch_error)?, size)));
    }
    let mut blob = crate::fsx::unnamed_file(scratch, "blob").map_err(scratch_error)?;
    tar.seek(SeekFrom::Start(0)).map_err(scratch_error)?;
    let mut hashed = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, &mut blob));
    recompress::compress(
        recipe,
        &mut io::BufReader::new(&mut *tar),
        size,
        &mut hashed,
    )
    .map_err(scratch_error)?;
    let (digest, _, writer) = hashed.finish().map_err(scratch_error)?;
    drop(writer);
    if digest != record.digest {
        tracing::warn!(
            "layer {} recompressed ({recipe}) to {digest}, not the blob the export made again \
             (is this haul another build than the exporter's?); it goes in by content (its \
             diff_id checked), under a new manifest, and a receipt of the delta no longer says \
             what the site holds: give the next export `--since` this bundle as rebuilt",
            record.digest
        );
        return Ok(None);
    }
    let blob_size = blob.seek(SeekFrom::End(0)).map_err(scratch_error)?;
    Ok(Some((blob, blob_size)))
}
