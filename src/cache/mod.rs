//! The content-addressed blob cache. It knows files, not HTTP. Its layout, every file and
//! folder under the root, is in [`bucket`].
//!
//! A blob enters `blobs/` only through [`Ingest::commit`], which follows containerd's order:
//! flush and fsync, check the size, check the digest, rename, fsync the folder, make it
//! read-only. Nothing unverified is ever visible under `blobs/`.

pub mod bucket;
pub mod gc;
pub mod index;
mod ingest;
pub mod listing;
mod lock;
pub mod prune;

use std::io;
use std::path::{Path, PathBuf};

pub use bucket::Bucket;
pub use index::{BlobRecord, BlobUse, CacheIndex, RefRecord};
pub use ingest::{Ingest, IngestStart, IngestWriter};
pub use lock::{LockMode, LockedFile};

use crate::digest::{Digest, Verifier};

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by haul.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

/// Cache failures. Each names the path or blob involved.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache: {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cache: cannot use the index {path}")]
    Index {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error(
        "digest mismatch: expected {expected}, but the {size} bytes received hash to {actual}; \
         nothing was stored. The registry's copy is corrupt or was altered on the way"
    )]
    DigestMismatch {
        expected: Digest,
        actual: Digest,
        size: u64,
    },
    #[error(
        "size mismatch for blob {digest}: expected {expected} bytes, received {actual}; nothing was stored"
    )]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
}

/// A blob in the cache, ready to be read: what was asked for, or its uncompressed form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlob {
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
}

impl CacheError {
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CacheError {
        let path = path.to_path_buf();
        move |source| CacheError::Io {
            action,
            path,
            source,
        }
    }
}

/// Hashes everything `reader` yields (`path` names it in errors).
fn hash_reader(mut reader: impl std::io::Read, path: &Path) -> Result<Verifier, CacheError> {
    let mut verifier = Verifier::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buffer)
            .map_err(CacheError::io("cannot read", path))?;
        if n == 0 {
            return Ok(verifier);
        }
        verifier.update(&buffer[..n]);
    }
}

/// The cache's blob store at one root folder.
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Opens (creating if needed) the cache at `root`.
    pub fn open(root: &Path) -> Result<BlobStore, CacheError> {
        let store = BlobStore {
            root: root.to_path_buf(),
        };
        for dir in [store.blobs_dir(), store.ingest_dir()] {
            std::fs::create_dir_all(&dir).map_err(CacheError::io("cannot create", &dir))?;
        }
        let tag = Bucket::Tag.path(root);
        if !tag.exists() {
            std::fs::write(&tag, CACHEDIR_TAG).map_err(CacheError::io("cannot write", &tag))?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `bucket` is in this cache.
    pub fn path_of(&self, bucket: Bucket) -> PathBuf {
        bucket.path(&self.root)
    }

    fn blobs_dir(&self) -> PathBuf {
        self.path_of(Bucket::Blobs).join("sha256")
    }

    fn ingest_dir(&self) -> PathBuf {
        self.path_of(Bucket::Ingest)
    }

    /// A working file of this run in the cache folder (standard input kept by `haul push -`, a
    /// rebuilt or patch delta on its way), `what` naming it.
    pub fn spool_path(&self, what: &str) -> PathBuf {
        // `.partial`: a copy a killed run leaves is cleared by `cache prune`.
        self.ingest_dir()
            .join(format!("{what}-{}.partial", std::process::id()))
    }

    /// The files of the derived buckets (upload records, compressed forms): path, size and
    /// modification time.
    pub fn list_derived(
        &self,
    ) -> Result<Vec<(Bucket, PathBuf, u64, std::time::SystemTime)>, CacheError> {
        let mut out = Vec::new();
        for bucket in Bucket::DERIVED {
            let mut pending = vec![self.path_of(bucket)];
            while let Some(dir) = pending.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(CacheError::io("cannot list", &dir)(e)),
                };
                for entry in entries {
                    let entry = entry.map_err(CacheError::io("cannot list", &dir))?;
                    let Ok(meta) = entry.metadata() else { continue };
                    if meta.is_dir() {
                        pending.push(entry.path());
                    } else {
                        out.push((
                            bucket,
                            entry.path(),
                            meta.len(),
                            meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Where blob `digest` lives once verified.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// Whether the verified blob is present with the expected size. (Its content was checked
    /// when it was committed; the size check catches a file damaged from outside.)
    pub fn contains(&self, digest: &Digest, size: u64) -> bool {
        std::fs::metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// The size of blob `digest` if it is in the cache (for blobs whose size no manifest
    /// declares: uncompressed layers).
    pub fn size_of(&self, digest: &Digest) -> Option<u64> {
        std::fs::metadata(self.blob_path(digest))
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len())
    }

    /// Reads a small blob (a config or manifest) and checks it against its digest again,
    /// since its content is about to be trusted.
    pub fn read_verified(&self, digest: &Digest) -> Result<Vec<u8>, CacheError> {
        let path = self.blob_path(digest);
        let bytes = std::fs::read(&path).map_err(CacheError::io("cannot read", &path))?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(CacheError::DigestMismatch {
                expected: digest.clone(),
                actual,
                size: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// Stores bytes already in memory (a manifest) under their digest. Blocks.
    pub fn put_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<PathBuf, CacheError> {
        if self.contains(digest, bytes.len() as u64) {
            return Ok(self.blob_path(digest));
        }
        let size = bytes.len() as u64;
        let Some(mut ingest) = Ingest::open(self, digest, Some(size), || {})? else {
            return Ok(self.blob_path(digest));
        };
        ingest.restart()?;
        ingest.write(bytes)?;
        ingest.commit(Some(size))
    }

    /// Stores a blob made here whose digest is known only once it is written (a layer
    /// compressed for a push): `write` fills a new file, which is hashed as it is written and
    /// moved into place under its digest. Returns the digest and size. Blocks.
    pub fn put_derived(
        &self,
        write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<(Digest, u64), CacheError> {
        ingest::put_derived(self, write)
    }

    /// Starts (or resumes) writing blob `digest` of `size` bytes from async code, on a
    /// blocking thread. Waits while another process writes the same blob; `on_wait` is
    /// called once if it has to. [`IngestStart::Committed`] when the blob is in the cache
    /// by then.
    pub async fn begin_ingest(
        &self,
        digest: &Digest,
        size: u64,
        on_wait: impl FnOnce() + Send + 'static,
    ) -> Result<IngestStart, CacheError> {
        IngestWriter::start(self.clone(), digest.clone(), Some(size), on_wait).await
    }

    /// The index of this cache (opened per operation).
    pub fn index(&self) -> CacheIndex {
        CacheIndex::new(&self.root, self.blobs_dir())
    }

    /// Takes the cache's root lock: shared for exports and pulls (many at once), exclusive for
    /// commands that delete blobs, so nothing is deleted under a running export. Calls
    /// `on_wait` once if it has to wait.
    pub async fn lock(
        &self,
        mode: LockMode,
        on_wait: impl FnOnce() + Send + 'static,
    ) -> Result<LockedFile, CacheError> {
        LockedFile::acquire(&self.path_of(Bucket::RootLock), mode, on_wait).await
    }

    /// Every file in `blobs/sha256/` whose name is a digest, with its size.
    pub fn list_blobs(&self) -> Result<Vec<(Digest, u64)>, CacheError> {
        let dir = self.blobs_dir();
        let mut blobs = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(CacheError::io("cannot list", &dir))? {
            let entry = entry.map_err(CacheError::io("cannot list", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(digest) = format!("sha256:{name}").parse::<Digest>() {
                let size = entry.metadata().map_or(0, |m| m.len());
                blobs.push((digest, size));
            }
        }
        blobs.sort();
        Ok(blobs)
    }

    /// Partial downloads in `ingest/`, with their sizes and modification times.
    pub fn list_partials(&self) -> Result<Vec<(PathBuf, u64, std::time::SystemTime)>, CacheError> {
        let dir = self.ingest_dir();
        let mut partials = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(CacheError::io("cannot list", &dir))? {
            let entry = entry.map_err(CacheError::io("cannot list", &dir))?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "partial")
                && let Ok(meta) = entry.metadata()
            {
                partials.push((
                    path,
                    meta.len(),
                    meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                ));
            }
        }
        Ok(partials)
    }

    /// Deletes a partial download.
    pub fn remove_partial(&self, path: &Path) -> Result<(), CacheError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CacheError::io("cannot remove", path)(e)),
        }
    }

    /// Deletes the lock files in `ingest/` that no partial download goes with (earlier
    /// versions of haul left one per blob ever downloaded). Only under the exclusive root
    /// lock, when no process writes a blob.
    pub fn remove_stray_locks(&self) -> Result<(), CacheError> {
        let dir = self.ingest_dir();
        for entry in std::fs::read_dir(&dir).map_err(CacheError::io("cannot list", &dir))? {
            let path = entry.map_err(CacheError::io("cannot list", &dir))?.path();
            if path.extension().is_some_and(|e| e == "lock")
                && !path.with_extension("partial").exists()
                && let Some(lock) = LockedFile::try_acquire(&path, LockMode::Exclusive)?
            {
                lock.remove();
            }
        }
        Ok(())
    }

    /// Deletes a blob (its file is read-only; the folder is not).
    pub fn remove_blob(&self, digest: &Digest) -> Result<(), CacheError> {
        let path = self.blob_path(digest);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CacheError::io("cannot remove", &path)(e)),
        }
    }

    /// Moves a damaged blob out of `blobs/` into `quarantine/`, where it can be inspected.
    pub fn quarantine_blob(&self, digest: &Digest) -> Result<PathBuf, CacheError> {
        let dir = self.path_of(Bucket::Quarantine);
        std::fs::create_dir_all(&dir).map_err(CacheError::io("cannot create", &dir))?;
        let target = dir.join(digest.hex());
        std::fs::rename(self.blob_path(digest), &target)
            .map_err(CacheError::io("cannot move aside", &target))?;
        Ok(target)
    }

    /// Hashes a stored blob from disk (for checks of the whole cache).
    pub fn hash_file(path: &Path) -> Result<(Digest, u64), CacheError> {
        let file = std::fs::File::open(path).map_err(CacheError::io("cannot open", path))?;
        let verifier = hash_reader(file, path)?;
        let len = verifier.len();
        Ok((verifier.finish(), len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn stores_verified_bytes_and_refuses_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        assert!(dir.path().join("CACHEDIR.TAG").exists());
        let good = Digest::of(b"hello");
        let path = store.put_bytes(&good, b"hello").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        assert!(store.contains(&good, 5));
        assert!(std::fs::metadata(&path).unwrap().permissions().readonly());
        // Stored again: no error, same file.
        store.put_bytes(&good, b"hello").unwrap();

        let wrong = Digest::of(b"other");
        let err = store.put_bytes(&wrong, b"hello").unwrap_err();
        assert!(matches!(err, CacheError::DigestMismatch { .. }), "{err}");
        assert!(!store.blob_path(&wrong).exists());
        // No partial file, and no lock file either: ingest/ is left empty.
        assert_eq!(files_in(&dir.path().join("ingest")), Vec::<String>::new());
    }

    #[tokio::test]
    async fn resumes_a_partial_ingest_and_leaves_no_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let data = b"0123456789abcdef";
        let digest = Digest::of(data);
        let writer = |start| match start {
            IngestStart::Writing(writer) => writer,
            IngestStart::Committed => panic!("not committed yet"),
        };
        {
            let mut ingest = writer(
                store
                    .begin_ingest(&digest, data.len() as u64, || {})
                    .await
                    .unwrap(),
            );
            ingest
                .write(bytes::Bytes::from_static(&data[..6]))
                .await
                .unwrap();
            // dropped without commit: the partial file stays
        }
        // The writer thread lets go of the blob soon after: wait for it.
        let mut ingest = loop {
            let started = store
                .begin_ingest(&digest, data.len() as u64, || {})
                .await
                .unwrap();
            let ingest = writer(started);
            if ingest.offset() == 6 {
                break ingest;
            }
            drop(ingest);
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        ingest
            .write(bytes::Bytes::from_static(&data[6..]))
            .await
            .unwrap();
        let path = ingest.commit(Some(data.len() as u64)).await.unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data);
        assert_eq!(files_in(&dir.path().join("ingest")), Vec::<String>::new());
        assert!(matches!(
            store
                .begin_ingest(&digest, data.len() as u64, || {})
                .await
                .unwrap(),
            IngestStart::Committed
        ));
    }

    /// A blob damaged from outside (another size than its digest's) is written anew, not
    /// taken for committed.
    #[test]
    fn a_blob_of_the_wrong_size_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let digest = Digest::of(b"hello");
        let path = store.put_bytes(&digest, b"hello").unwrap();
        let mut permissions = std::fs::metadata(&path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        permissions.set_readonly(false);
        std::fs::set_permissions(&path, permissions).unwrap();
        std::fs::write(&path, b"hel").unwrap();
        assert!(!store.contains(&digest, 5));
        store.put_bytes(&digest, b"hello").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
    }
}
