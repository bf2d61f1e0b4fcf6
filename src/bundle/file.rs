//! Where a bundle is: one tar, or a parts set (named by its record `NAME.parts` or by its
//! first part `NAME.001`). Every command that takes a bundle file opens it here, so `verify`,
//! `load`, `push`, `inspect` and `--since` read a set as they read a tar: as one stream, never
//! joined on disk.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::identify::BundleCompression;
use super::{Bundle, Problem};
use crate::parts::read::{OpenError, PartProblem, PartsSet, ProblemLog};

/// Why a bundle file cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum BundleOpenError {
    #[error(transparent)]
    Parts(#[from] OpenError),
    #[error(transparent)]
    NotABundle(#[from] super::identify::NotABundle),
}

/// A bundle on disk.
#[derive(Clone, Debug)]
pub enum BundleFile {
    Tar(PathBuf),
    Parts(Arc<PartsSet>),
    /// A tar compressed after export (`gzip v1.tar`), read through its decompression as
    /// `docker load` reads it. Reading a stretch means decompressing up to it: commands that
    /// read blobs by offset take [`BundleFile::seekable`] first.
    Compressed(PathBuf, BundleCompression),
}

impl BundleFile {
    /// What `path` names: a parts set when it is a record or a first part with its record
    /// beside it, else a tar.
    pub fn at(path: &Path) -> Result<BundleFile, BundleOpenError> {
        match crate::parts::set_of(path) {
            Some(record) => Ok(BundleFile::Parts(Arc::new(PartsSet::open(&record)?))),
            None => {
                // Read once, for both questions.
                let start = super::identify::first_bytes(path);
                if let Some(compression) =
                    start.as_deref().and_then(super::identify::compression_of)
                {
                    return Ok(BundleFile::Compressed(path.to_path_buf(), compression));
                }
                match super::identify::not_a_bundle(path, start.as_deref()) {
                    Some(not) => Err(not.into()),
                    None => Ok(BundleFile::Tar(path.to_path_buf())),
                }
            }
        }
    }

    /// For messages.
    pub fn describe(&self) -> String {
        match self {
            BundleFile::Tar(path) | BundleFile::Compressed(path, _) => path.display().to_string(),
            BundleFile::Parts(set) => set.describe(),
        }
    }

    /// The tar's size (a compressed one's, compressed: what reading it goes through).
    pub fn len(&self) -> io::Result<u64> {
        match self {
            BundleFile::Tar(path) | BundleFile::Compressed(path, _) => {
                Ok(std::fs::metadata(path)?.len())
            }
            BundleFile::Parts(set) => Ok(set.record.size),
        }
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Reads the bundle once.
    pub async fn read(&self) -> io::Result<Bundle> {
        self.read_counting(|_| {}).await
    }

    /// Reads the bundle once, telling `on_read` of the bytes as they go. A set's parts are
    /// each checked on the way, and its recovery parts after: a part that is not as the set
    /// recorded is the problem, named with what to do (what the tar reader saw past it would
    /// only repeat it).
    pub async fn read_counting(
        &self,
        on_read: impl FnMut(u64) + Send + Unpin,
    ) -> io::Result<Bundle> {
        match self {
            BundleFile::Tar(path) => {
                let file = tokio::fs::File::open(path).await?;
                Ok(Bundle::read(crate::progress::Counting::new(file, on_read)).await)
            }
            BundleFile::Compressed(path, compression) => {
                // Progress counts the compressed bytes read, as len() gives them.
                let consumed = Arc::new(AtomicU64::new(0));
                let file = CountingFile {
                    file: std::fs::File::open(path)?,
                    consumed: Arc::clone(&consumed),
                };
                let reader = crate::blocking::Reader::new(decoder(file, *compression)?);
                let (mut on_read, mut told) = (on_read, 0);
                let counting = crate::progress::Counting::new(reader, move |_| {
                    let now = consumed.load(Ordering::Relaxed);
                    on_read(now - told);
                    told = now;
                });
                Ok(Bundle::read(counting).await)
            }
            BundleFile::Parts(set) => {
                let log = ProblemLog::default();
                let reader = crate::blocking::Reader::new(set.reader(log.clone(), false));
                let mut reader = crate::progress::Counting::new(reader, on_read);
                let mut bundle = Bundle::read(&mut reader).await;
                // The tar reader stops early where the tar stops making sense (past a missing
                // part, say): the rest is read too, so that every part is checked.
                tokio::io::copy(&mut reader, &mut tokio::io::sink()).await?;
                let mut problems: Vec<PartProblem> = log.lock().unwrap().clone();
                let checked = Arc::clone(set);
                let recovery = crate::blocking::run(move || {
                    let mut found = Vec::new();
                    for part in checked.record.recovery.iter().flat_map(|r| &r.parts) {
                        found.extend(checked.check_part(part)?);
                    }
                    Ok::<_, io::Error>(found)
                })
                .await?;
                problems.extend(recovery);
                if !problems.is_empty() {
                    let advice = set.advice(problems.len());
                    bundle.problems = problems
                        .iter()
                        .map(|p| Problem::Part {
                            file: p.file.clone(),
                            detail: format!("{p}; {advice}"),
                        })
                        .collect();
                }
                Ok(bundle)
            }
        }
    }

    /// The tar's bytes from the start, for a loader: a set stops at its first bad part, with
    /// an error that names it.
    pub fn stream(&self) -> io::Result<Box<dyn Read + Send>> {
        match self {
            BundleFile::Tar(path) => Ok(Box::new(std::fs::File::open(path)?)),
            BundleFile::Compressed(path, compression) => {
                decoder(std::fs::File::open(path)?, *compression)
            }
            BundleFile::Parts(set) => Ok(Box::new(set.reader(ProblemLog::default(), true))),
        }
    }

    /// `len` bytes of the tar from `offset`.
    pub fn range(&self, offset: u64, len: u64) -> io::Result<Box<dyn Read + Send>> {
        match self {
            BundleFile::Tar(path) => {
                use std::io::Seek;
                let mut file = std::fs::File::open(path)?;
                file.seek(io::SeekFrom::Start(offset))?;
                Ok(Box::new(file.take(len)))
            }
            BundleFile::Parts(set) => Ok(Box::new(set.range(offset, len)?)),
            BundleFile::Compressed(..) => {
                let mut stream = self.stream()?;
                io::copy(&mut (&mut stream).take(offset), &mut io::sink())?;
                Ok(Box::new(stream.take(len)))
            }
        }
    }

    /// The bundle where its stretches can be read directly: a compressed one decompressed
    /// into a scratch file in `dir` (kept while the returned guard lives), else itself.
    pub async fn seekable(
        self,
        dir: &Path,
    ) -> io::Result<(BundleFile, Option<crate::fsx::Scratch>)> {
        let BundleFile::Compressed(..) = &self else {
            return Ok((self, None));
        };
        let dir = dir.to_path_buf();
        crate::blocking::run(move || {
            std::fs::create_dir_all(&dir)?;
            let (scratch, mut file) = crate::fsx::Scratch::create(&dir, "bundle.tar")?;
            io::copy(&mut self.stream()?, &mut file)?;
            Ok((BundleFile::Tar(scratch.path.clone()), Some(scratch)))
        })
        .await
    }
}

/// The decompressed bytes of `file`.
fn decoder(
    file: impl Read + Send + 'static,
    compression: BundleCompression,
) -> io::Result<Box<dyn Read + Send>> {
    let file = io::BufReader::with_capacity(1 << 20, file);
    Ok(match compression {
        // Multi-member, as gzip's own tools and docker read it.
        BundleCompression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        BundleCompression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
    })
}

/// A file that counts the bytes read from it.
struct CountingFile {
    file: std::fs::File,
    consumed: Arc<AtomicU64>,
}

impl Read for CountingFile {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.file.read(buffer)?;
        self.consumed.fetch_add(read as u64, Ordering::Relaxed);
        Ok(read)
    }
}

/// Why a tar named on the command line could not be had as a file.
#[derive(Debug, thiserror::Error)]
pub enum InFileError {
    #[error("cannot open {input}")]
    Open {
        input: String,
        #[source]
        source: io::Error,
    },
    #[error("`-` reads the tar from standard input; pipe it in (e.g. {example}) or give a FILE")]
    Terminal { example: String },
    #[error("cannot keep the tar in {}", spool.display())]
    Spool {
        spool: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A tar named on the command line, where it can be read in any order and more than once: a
/// regular file or parts set as it is; standard input (`-`), a pipe or a device first copied
/// into `spool` (removed when the returned guard goes). Returns its name for messages, the
/// path to read and the guard. `example` shows how to pipe a tar in.
pub async fn in_file(
    input: &str,
    spool: PathBuf,
    example: &str,
) -> Result<(String, PathBuf, Option<crate::fsx::Scratch>), InFileError> {
    use std::io::IsTerminal;
    let open_error = |source| InFileError::Open {
        input: input.to_string(),
        source,
    };
    // A parts set is read where its parts lie (a missing one is named there).
    let regular = input != "-"
        && (crate::parts::set_of(Path::new(input)).is_some()
            || std::fs::metadata(input).map_err(open_error)?.is_file());
    if regular {
        return Ok((input.to_string(), PathBuf::from(input), None));
    }
    if input == "-" && std::io::stdin().is_terminal() {
        return Err(InFileError::Terminal {
            example: example.to_string(),
        });
    }
    let spool_error = |source| InFileError::Spool {
        spool: spool.clone(),
        source,
    };
    let (scratch, file) = crate::fsx::Scratch::at(spool.clone()).map_err(spool_error)?;
    let mut file = tokio::fs::File::from_std(file);
    if input == "-" {
        tokio::io::copy(&mut tokio::io::stdin(), &mut file).await
    } else {
        let mut source = tokio::fs::File::open(input).await.map_err(open_error)?;
        tokio::io::copy(&mut source, &mut file).await
    }
    .map_err(spool_error)?;
    let name = if input == "-" {
        "the tar on standard input".to_string()
    } else {
        input.to_string()
    };
    Ok((name, scratch.path.clone(), Some(scratch)))
}
