//! One blob being written into the cache: a partial file, its running hash, and the lock
//! that makes this process its only writer.
//!
//! [`Ingest`] is synchronous: it writes, hashes and fsyncs, so it lives on a blocking thread.
//! Async code (a download) feeds one through an [`IngestWriter`], which owns such a thread
//! and hands it the chunks over a bounded channel: memory stays at a few chunks, and the
//! async workers never wait on the disk.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::lock::{LockMode, LockedFile};
use super::{BlobStore, CacheError};
use crate::digest::{Digest, HashingWriter, Verifier};

/// Large writes: a download arrives in small chunks, the disk prefers big ones.
const WRITE_BUFFER: usize = 1 << 20;
/// Chunks on their way to the writer thread: a few, so the download does not wait for each
/// write, and no more, since a network chunk may pin a buffer of several hundred KiB
/// (measured on `make bench`'s image: 16 raised a cold export's peak RSS from 33 to 58 MiB;
/// gathering chunks into 256 KiB batches first made a 2 GB cold export slower, not faster).
const CHANNEL_CHUNKS: usize = 4;

/// A blob in the making. Dropping it keeps the partial file (the next run resumes it),
/// removes the lock file and releases the lock.
#[must_use = "an ingest does nothing until it is written and committed"]
pub struct Ingest {
    digest: Digest,
    partial_path: PathBuf,
    final_path: PathBuf,
    file: BufWriter<File>,
    verifier: Verifier,
    /// Held for the ingest's life; removed with it, so `ingest/` keeps no lock files.
    lock: Option<LockedFile>,
}

impl Ingest {
    /// Takes the blob's lock (waiting for another process that holds it), then opens its
    /// partial file and re-hashes what an earlier run left there, so writing goes on from
    /// its end. `None` when the blob is in the cache already, with `size` bytes when that is
    /// known (another process may have committed it while this one waited; a file of
    /// another size was damaged from outside, and is written anew). Blocks.
    pub fn open(
        store: &BlobStore,
        digest: &Digest,
        size: Option<u64>,
        on_wait: impl FnOnce(),
    ) -> Result<Option<Ingest>, CacheError> {
        let ingest_dir = store.ingest_dir();
        let lock_path = ingest_dir.join(format!("{}.lock", digest.hex()));
        let lock = LockedFile::acquire_blocking(&lock_path, LockMode::Exclusive, on_wait)?;
        let final_path = store.blob_path(digest);
        let committed = std::fs::metadata(&final_path)
            .is_ok_and(|m| m.is_file() && size.is_none_or(|size| m.len() == size));
        if committed {
            lock.remove();
            return Ok(None);
        }
        let partial_path = ingest_dir.join(format!("{}.partial", digest.hex()));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&partial_path)
            .map_err(CacheError::io("cannot open", &partial_path))?;
        let verifier = hash_existing(&mut file, &partial_path)?;
        Ok(Some(Ingest {
            digest: digest.clone(),
            final_path,
            partial_path,
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            verifier,
            lock: Some(lock),
        }))
    }

    /// Bytes written so far (including those an earlier run left): where a resumed download
    /// starts.
    pub fn offset(&self) -> u64 {
        self.verifier.len()
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), CacheError> {
        self.file
            .write_all(bytes)
            .map_err(CacheError::io("cannot write", &self.partial_path))?;
        self.verifier.update(bytes);
        Ok(())
    }

    /// Throws away what was written and starts from byte 0 (the registry ignored a Range
    /// request, or the partial data was bad).
    pub fn restart(&mut self) -> Result<(), CacheError> {
        let path = self.partial_path.clone();
        self.file
            .flush()
            .map_err(CacheError::io("cannot write", &path))?;
        let file = self.file.get_mut();
        file.set_len(0)
            .map_err(CacheError::io("cannot truncate", &path))?;
        file.seek(SeekFrom::Start(0))
            .map_err(CacheError::io("cannot seek", &path))?;
        self.verifier = Verifier::new();
        Ok(())
    }

    /// Verifies and publishes the blob: fsync, size (when one was declared), digest, rename
    /// into `blobs/`, fsync the folder, read-only. On a mismatch the partial file is deleted
    /// (its bytes are wrong, resuming it would only repeat the error) and nothing is stored.
    pub fn commit(mut self, expected_size: Option<u64>) -> Result<PathBuf, CacheError> {
        let partial = self.partial_path.clone();
        self.file
            .flush()
            .map_err(CacheError::io("cannot write", &partial))?;
        self.file
            .get_ref()
            .sync_all()
            .map_err(CacheError::io("cannot sync", &partial))?;
        let size = self.verifier.len();
        if let Some(expected_size) = expected_size
            && size != expected_size
        {
            let _ = std::fs::remove_file(&partial);
            return Err(CacheError::SizeMismatch {
                digest: self.digest.clone(),
                expected: expected_size,
                actual: size,
            });
        }
        let actual = std::mem::take(&mut self.verifier).finish();
        if actual != self.digest {
            let _ = std::fs::remove_file(&partial);
            return Err(CacheError::DigestMismatch {
                expected: self.digest.clone(),
                actual,
                size,
            });
        }
        let mut permissions = self
            .file
            .get_ref()
            .metadata()
            .map_err(CacheError::io("cannot stat", &partial))?
            .permissions();
        permissions.set_readonly(true);
        std::fs::set_permissions(&partial, permissions)
            .map_err(CacheError::io("cannot make read-only", &partial))?;
        std::fs::rename(&partial, &self.final_path)
            .map_err(CacheError::io("cannot move into place", &self.final_path))?;
        sync_dir(self.final_path.parent().expect("blob paths have a parent"));
        Ok(self.final_path.clone())
    }
}

/// See [`BlobStore::put_derived`]. The file is private to this call (no lock needed): two
/// processes making the same blob each rename a whole, verified copy into place.
pub(super) fn put_derived(
    store: &BlobStore,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(Digest, u64), CacheError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = store
        .ingest_dir()
        .join(format!("derived-{}-{n}.partial", std::process::id()));
    let file = File::create(&temp).map_err(CacheError::io("cannot create", &temp))?;
    let mut writer = HashingWriter::new(BufWriter::with_capacity(WRITE_BUFFER, file));
    let result = write(&mut writer).and_then(|()| {
        let (digest, size, inner) = writer.finish()?;
        inner.get_ref().sync_all()?;
        Ok((digest, size))
    });
    let (digest, size) = match result {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            return Err(CacheError::io("cannot write", &temp)(e));
        }
    };
    let final_path = store.blob_path(&digest);
    if store.contains(&digest, size) {
        let _ = std::fs::remove_file(&temp);
        return Ok((digest, size));
    }
    let mut permissions = std::fs::metadata(&temp)
        .map_err(CacheError::io("cannot stat", &temp))?
        .permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&temp, permissions)
        .map_err(CacheError::io("cannot make read-only", &temp))?;
    std::fs::rename(&temp, &final_path)
        .map_err(CacheError::io("cannot move into place", &final_path))?;
    sync_dir(final_path.parent().expect("blob paths have a parent"));
    Ok((digest, size))
}

/// Re-hashes the bytes already in a partial file and leaves the cursor at its end.
fn hash_existing(file: &mut File, path: &Path) -> Result<Verifier, CacheError> {
    let verifier = super::hash_reader(&mut *file, path)?;
    file.seek(SeekFrom::End(0))
        .map_err(CacheError::io("cannot seek", path))?;
    Ok(verifier)
}

/// Makes a rename durable. Best effort: a failure here loses nothing already verified.
fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        // Keep what was received for the next run; errors here have nowhere to go.
        let _ = self.file.flush();
        if let Some(lock) = self.lock.take() {
            lock.remove();
        }
    }
}

/// What the writer thread is asked to do, in order.
enum Op {
    Write(Bytes),
    Restart,
    Commit(Option<u64>),
}

/// An [`Ingest`] on its own blocking thread, fed from async code. Dropping it without
/// [`commit`](IngestWriter::commit) keeps the partial file for the next run.
pub struct IngestWriter {
    digest: Digest,
    sender: mpsc::Sender<Op>,
    /// The thread's outcome: the committed path, or `None` when it was dropped uncommitted.
    /// Taken once it has been awaited.
    worker: Option<tokio::task::JoinHandle<Result<Option<PathBuf>, CacheError>>>,
    offset: u64,
}

/// What [`BlobStore::begin_ingest`] found.
pub enum IngestStart {
    /// This process is the blob's only writer now.
    Writing(IngestWriter),
    /// The blob is in the cache already.
    Committed,
}

impl IngestWriter {
    /// Opens the ingest of `digest` on a new blocking thread, which then serves the writer.
    pub(super) async fn start(
        store: BlobStore,
        digest: Digest,
        size: Option<u64>,
        on_wait: impl FnOnce() + Send + 'static,
    ) -> Result<IngestStart, CacheError> {
        let (opened_tx, opened_rx) = oneshot::channel();
        let (sender, mut receiver) = mpsc::channel::<Op>(CHANNEL_CHUNKS);
        let thread_digest = digest.clone();
        let worker = tokio::task::spawn_blocking(move || {
            let mut ingest = match Ingest::open(&store, &thread_digest, size, on_wait) {
                Ok(Some(ingest)) => {
                    let _ = opened_tx.send(Ok(Some(ingest.offset())));
                    ingest
                }
                Ok(None) => {
                    let _ = opened_tx.send(Ok(None));
                    return Ok(None);
                }
                Err(error) => {
                    let _ = opened_tx.send(Err(error));
                    return Ok(None);
                }
            };
            while let Some(op) = receiver.blocking_recv() {
                match op {
                    Op::Write(bytes) => ingest.write(&bytes)?,
                    Op::Restart => ingest.restart()?,
                    Op::Commit(size) => return ingest.commit(size).map(Some),
                }
            }
            Ok(None)
        });
        let opened = opened_rx
            .await
            .unwrap_or_else(|_| panic!("the ingest thread of {digest} ended without a word"));
        Ok(match opened? {
            Some(offset) => IngestStart::Writing(IngestWriter {
                digest,
                sender,
                worker: Some(worker),
                offset,
            }),
            None => IngestStart::Committed,
        })
    }

    /// Bytes written so far, an earlier run's included: where a resumed download starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Appends `bytes` (written and hashed on the writer thread).
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), CacheError> {
        self.offset += bytes.len() as u64;
        self.send(Op::Write(bytes)).await
    }

    /// Starts over from byte 0.
    pub async fn restart(&mut self) -> Result<(), CacheError> {
        self.offset = 0;
        self.send(Op::Restart).await
    }

    /// Verifies and publishes the blob (see [`Ingest::commit`]); returns its path.
    pub async fn commit(mut self, expected_size: Option<u64>) -> Result<PathBuf, CacheError> {
        self.send(Op::Commit(expected_size)).await?;
        drop(self.sender);
        let committed = join(self.worker.take()).await?;
        Ok(committed.unwrap_or_else(|| panic!("the ingest of {} was not committed", self.digest)))
    }

    /// Stops writing without committing, and waits until what was sent is on disk in the
    /// partial file (the next run resumes from there) and the blob's lock is released.
    pub async fn close(mut self) {
        drop(self.sender);
        let _ = join(self.worker.take()).await;
    }

    async fn send(&mut self, op: Op) -> Result<(), CacheError> {
        if self.sender.send(op).await.is_ok() {
            return Ok(());
        }
        // The thread stopped on an error: that is the answer.
        match join(self.worker.take()).await {
            Err(error) => Err(error),
            Ok(_) => panic!("the ingest thread of {} stopped early", self.digest),
        }
    }
}

/// The writer thread's outcome (`Ok(None)` when it was awaited already).
async fn join(
    worker: Option<tokio::task::JoinHandle<Result<Option<PathBuf>, CacheError>>>,
) -> Result<Option<PathBuf>, CacheError> {
    let Some(worker) = worker else {
        return Ok(None);
    };
    match worker.await {
        Ok(outcome) => outcome,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down; what the thread wrote stays in the partial file.
        Err(_) => Ok(None),
    }
}
