//! One blob being written into the cache: a partial file, its running hash, and the lock
//! that makes this process its only writer.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{BlobStore, CacheError};
use crate::digest::{Digest, Verifier};

/// Large writes: a download arrives in small chunks, the disk prefers big ones.
const WRITE_BUFFER: usize = 1 << 20;

/// A blob in the making. Dropping it keeps the partial file (the next run resumes it) and
/// releases the lock.
#[must_use = "an ingest does nothing until it is written and committed"]
pub struct Ingest {
    digest: Digest,
    partial_path: PathBuf,
    final_path: PathBuf,
    file: BufWriter<File>,
    verifier: Verifier,
    /// Held (exclusively locked) for the ingest's life; the OS releases it on drop or crash.
    _lock: File,
}

impl Ingest {
    /// Takes the blob's lock (waiting for another process that holds it), then opens its
    /// partial file and re-hashes what an earlier run left there, so writing goes on from
    /// its end.
    pub(super) fn open(
        store: &BlobStore,
        digest: &Digest,
        on_wait: impl FnOnce(),
    ) -> Result<Ingest, CacheError> {
        let ingest_dir = store.ingest_dir();
        let lock_path = ingest_dir.join(format!("{}.lock", digest.hex()));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(CacheError::io("cannot open lock", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                on_wait();
                lock.lock()
                    .map_err(CacheError::io("cannot lock", &lock_path))?;
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(CacheError::io("cannot lock", &lock_path)(e));
            }
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
        Ok(Ingest {
            digest: digest.clone(),
            final_path: store.blob_path(digest),
            partial_path,
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            verifier,
            _lock: lock,
        })
    }

    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Bytes written so far (including those an earlier run left): where a resumed download
    /// starts.
    pub fn offset(&self) -> u64 {
        self.verifier.len()
    }

    /// Whether the blob was committed (by another process) while this one waited for the lock.
    pub fn already_committed(&self, size: u64) -> bool {
        std::fs::metadata(&self.final_path).is_ok_and(|m| m.len() == size)
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), CacheError> {
        self.file
            .write_all(bytes)
            .map_err(CacheError::io("cannot write", &self.partial_path))?;
        self.verifier.update(bytes);
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), CacheError> {
        self.file
            .flush()
            .map_err(CacheError::io("cannot write", &self.partial_path))
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
    }
}
