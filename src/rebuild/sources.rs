//! Where a patch delta's sources come from, never guessed: the earlier bundles named with
//! `--from` (tars or parts sets), or `docker save` of the images the delta names, which gives
//! back each layer as the engine holds it (the classic store recreates the uncompressed tar;
//! the containerd store gives the registry's blob). Either way a source is found by its
//! diff_id, decompressed to a scratch file and checked against it (an uncompressed layer in a
//! tar, checked when the tar was read, is read in place).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::RebuildError;
use crate::bundle::{Bundle, BundleFile, Place};
use crate::digest::{Digest, HashingWriter};
use crate::patch::SourceTar;

/// A bundle read whole, to take layers from.
pub struct Earlier {
    pub name: String,
    pub file: BundleFile,
    pub bundle: Bundle,
    /// A compressed bundle's decompressed copy, which `file` names, kept while this lives.
    _decompressed: Option<crate::fsx::Scratch>,
}

/// What the site holds, to rebuild from: earlier bundles, and layer blobs fetched from where
/// the images go (a push's destination registry), by diff_id.
#[derive(Default)]
pub struct Sources {
    pub earlier: Vec<Earlier>,
    pub fetched: Vec<Fetched>,
}

/// A layer blob fetched into the cache (checked against its digest there).
pub struct Fetched {
    pub diff_id: Digest,
    pub path: PathBuf,
    pub size: u64,
    /// Where it came from, for messages.
    pub from: String,
}

/// A layer found: in which file, where, and whether it is an uncompressed tar.
struct Found<'a> {
    name: &'a str,
    file: BundleFile,
    offset: u64,
    size: u64,
    is_tar: bool,
}

impl Sources {
    /// Reads each of `paths` whole; each must be a whole bundle.
    pub async fn open(paths: &[PathBuf]) -> Result<Sources, RebuildError> {
        let mut earlier = Vec::new();
        for path in paths {
            let file = BundleFile::at(path).map_err(|e| RebuildError::Source {
                name: path.display().to_string(),
                why: e.to_string(),
            })?;
            earlier.push(Self::read(file).await?);
        }
        Ok(Sources {
            earlier,
            fetched: Vec::new(),
        })
    }

    /// Reads one bundle whole (`docker save` output too).
    pub async fn read(file: BundleFile) -> Result<Earlier, RebuildError> {
        let name = file.describe();
        let source_error = |e: std::io::Error| RebuildError::Source {
            name: name.clone(),
            why: e.to_string(),
        };
        // Layers are read by offset: a compressed bundle is decompressed once, first.
        let (file, decompressed) = file
            .seekable(&super::scratch_dir())
            .await
            .map_err(source_error)?;
        let bundle = file.read().await.map_err(source_error)?;
        if let Some(problem) = bundle.problems.first() {
            return Err(RebuildError::Source {
                name,
                why: format!("it is not whole ({problem})"),
            });
        }
        Ok(Earlier {
            name,
            file,
            bundle,
            _decompressed: decompressed,
        })
    }

    pub fn describe(&self) -> String {
        let mut names: Vec<&str> = self.earlier.iter().map(|e| e.name.as_str()).collect();
        for fetched in &self.fetched {
            if !names.contains(&fetched.from.as_str()) {
                names.push(&fetched.from);
            }
        }
        if names.is_empty() {
            return "the sources given".to_string();
        }
        names.join(", ")
    }

    fn find_layer(&self, diff_id: &Digest) -> Option<Found<'_>> {
        for earlier in &self.earlier {
            for platform in earlier.bundle.images.iter().flat_map(|i| &i.platforms) {
                for (layer, id) in platform.layers.iter().zip(&platform.diff_ids) {
                    if id != diff_id {
                        continue;
                    }
                    if let Place::Tar { offset, is_tar } = layer.place {
                        return Some(Found {
                            name: &earlier.name,
                            file: earlier.file.clone(),
                            offset,
                            size: layer.size,
                            is_tar,
                        });
                    }
                }
            }
        }
        self.fetched
            .iter()
            .find(|f| &f.diff_id == diff_id)
            .map(|f| Found {
                name: &f.from,
                file: BundleFile::Tar(f.path.clone()),
                offset: 0,
                size: f.size,
                // Sniffed when read.
                is_tar: false,
            })
    }

    /// Whether some bundle holds the layer `diff_id`.
    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.find_layer(diff_id).is_some()
    }

    /// The bundle that carries layer `diff_id` as a patch itself (a patch delta given as a
    /// source): it must be rebuilt first.
    pub fn patched_in(&self, diff_id: &Digest) -> Option<&str> {
        self.earlier.iter().find_map(|earlier| {
            let patched = earlier
                .bundle
                .images
                .iter()
                .flat_map(|i| &i.platforms)
                .flat_map(|p| p.layers.iter().zip(&p.diff_ids))
                .any(|(layer, id)| id == diff_id && layer.place == Place::Patched);
            patched.then_some(earlier.name.as_str())
        })
    }

    /// Where some bundle holds the blob `digest` of `size` bytes (a left-out layer).
    pub fn find_blob(&self, digest: &Digest, size: u64) -> Option<(&BundleFile, u64)> {
        self.earlier.iter().find_map(|earlier| {
            earlier
                .bundle
                .contents
                .files
                .values()
                .find(|f| &f.digest == digest && f.size == size)
                .map(|f| (&earlier.file, f.offset))
        })
    }

    /// The uncompressed tar of layer `diff_id`, in a scratch file in `scratch`, checked
    /// against its diff_id. Blocks.
    pub fn layer_tar(&self, diff_id: &Digest, scratch: &Path) -> Result<SourceTar, RebuildError> {
        let found = self
            .find_layer(diff_id)
            .ok_or_else(|| RebuildError::MissingSource {
                // check_sources, run first, names the image.
                made_against: "the images it was made against".to_string(),
                diff_id: diff_id.clone(),
                looked_in: self.describe(),
            })?;
        let io_error = |e: io::Error| RebuildError::Source {
            name: found.name.to_string(),
            why: format!("cannot read layer {diff_id}: {e}"),
        };
        // An uncompressed layer in a tar is read where it lies: reading the bundle checked it
        // against its diff_id already, and the rebuilt layer is checked against its own.
        if let (true, BundleFile::Tar(path)) = (found.is_tar, &found.file) {
            let file = File::open(path).map_err(io_error)?;
            return Ok(SourceTar {
                file,
                start: found.offset,
                len: found.size,
            });
        }
        let mut blob = io::BufReader::with_capacity(
            1 << 20,
            found
                .file
                .range(found.offset, found.size)
                .map_err(io_error)?,
        );
        let mut reader: Box<dyn Read> = if found.is_tar {
            Box::new(blob)
        } else {
            let magic = io::BufRead::fill_buf(&mut blob).map_err(io_error)?;
            match magic {
                [0x1f, 0x8b, ..] => Box::new(flate2::bufread::MultiGzDecoder::new(blob)),
                [0x28, 0xb5, 0x2f, 0xfd, ..] => {
                    Box::new(zstd::stream::read::Decoder::with_buffer(blob).map_err(io_error)?)
                }
                _ => Box::new(blob),
            }
        };
        let mut file =
            crate::fsx::unnamed_file(scratch, "layer").map_err(|e| RebuildError::Scratch {
                dir: scratch.to_path_buf(),
                source: e,
            })?;
        let scratch_error = |source| RebuildError::Scratch {
            dir: scratch.to_path_buf(),
            source,
        };
        let mut hashed = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, &mut file));
        // Read and write errors apart: a full scratch disk is not a damaged bundle.
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(e)),
            };
            hashed.write_all(&buffer[..read]).map_err(scratch_error)?;
        }
        let (digest, _, writer) = hashed.finish().map_err(scratch_error)?;
        drop(writer);
        if &digest != diff_id {
            return Err(RebuildError::Source {
                name: found.name.to_string(),
                why: format!("its layer {diff_id} decompresses to {digest}: it is damaged"),
            });
        }
        SourceTar::whole(file).map_err(scratch_error)
    }
}

/// Layers already taken out to scratch files, by diff_id: a source used by several patches
/// is decompressed once.
#[derive(Default)]
pub struct Taken {
    pub files: HashMap<Digest, SourceTar>,
}
