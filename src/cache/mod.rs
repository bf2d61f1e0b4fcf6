//! The content-addressed blob cache. It knows files, not HTTP.
//!
//! ```text
//! <cache>/blobs/sha256/<hex>      verified blobs, read-only; a file here always hashes to its name
//! <cache>/ingest/<hex>.partial    a download in progress (kept across runs: it is resumed)
//! <cache>/ingest/<hex>.lock       held while a process writes that blob (one writer per digest)
//! <cache>/index-v1/               sled index: blob sizes, media types, last use; reference →
//!                                 manifest (derived data, rebuilt from blobs/ if lost)
//! <cache>/quarantine/<hex>        blobs `haul cache verify` found damaged, moved aside
//! <cache>/.lock                   shared by exports and pulls, exclusive for prune and rm
//! <cache>/CACHEDIR.TAG            tells backup tools to skip the folder
//! ```
//!
//! A blob enters `blobs/` only through [`Ingest::commit`], which follows containerd's order:
//! flush and fsync, check the size, check the digest, rename, fsync the folder, make it
//! read-only. Nothing unverified is ever visible under `blobs/`.

pub mod index;
mod ingest;
pub mod prune;

use std::io;
use std::path::{Path, PathBuf};

pub use index::{BlobRecord, BlobUse, CacheIndex, RefRecord};
pub use ingest::Ingest;

use crate::digest::{Digest, Verifier};

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by haul.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

/// Cache failures. Each names the path or blob involved.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache: {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
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

/// How the root lock is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// The held root lock; released on drop (or by the OS if the process dies).
#[must_use = "the lock is released when this is dropped"]
pub struct CacheLock {
    _file: std::fs::File,
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
        let tag = root.join("CACHEDIR.TAG");
        if !tag.exists() {
            std::fs::write(&tag, CACHEDIR_TAG).map_err(CacheError::io("cannot write", &tag))?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
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
            .filter(|m| m.is_file())
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

    /// Stores bytes already in memory (a manifest) under their digest.
    pub async fn put_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<PathBuf, CacheError> {
        if self.contains(digest, bytes.len() as u64) {
            return Ok(self.blob_path(digest));
        }
        let mut ingest = self.begin_ingest(digest, || {}).await?;
        ingest.restart()?;
        ingest.write(bytes)?;
        ingest.commit(Some(bytes.len() as u64))
    }

    /// Starts (or resumes) writing blob `digest`. Waits while another process writes the
    /// same blob; when it returns, this process is the only writer.
    /// `on_wait` is called once if another process holds the blob.
    pub async fn begin_ingest(
        &self,
        digest: &Digest,
        on_wait: impl FnOnce() + Send + 'static,
    ) -> Result<Ingest, CacheError> {
        let store = self.clone();
        let digest = digest.clone();
        tokio::task::spawn_blocking(move || Ingest::open(&store, &digest, on_wait))
            .await
            .map_err(|e| CacheError::Io {
                action: "lost the task opening",
                path: PathBuf::from("ingest"),
                source: io::Error::other(e.to_string()),
            })?
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
        on_wait: impl FnOnce(),
    ) -> Result<CacheLock, CacheError> {
        let path = self.root.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(CacheError::io("cannot open lock", &path))?;
        let attempt = match mode {
            LockMode::Shared => file.try_lock_shared(),
            LockMode::Exclusive => file.try_lock(),
        };
        match attempt {
            Ok(()) => return Ok(CacheLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => on_wait(),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(CacheError::io("cannot lock", &path)(e));
            }
        }
        let waiting_path = path.clone();
        tokio::task::spawn_blocking(move || {
            match mode {
                LockMode::Shared => file.lock_shared(),
                LockMode::Exclusive => file.lock(),
            }
            .map(|()| CacheLock { _file: file })
        })
        .await
        .map_err(|e| CacheError::io("cannot lock", &waiting_path)(io::Error::other(e.to_string())))?
        .map_err(CacheError::io("cannot lock", &path))
    }

    /// Every file in `blobs/sha256/` whose name is a digest, with its size.
    pub fn list_blobs(&self) -> Result<Vec<(Digest, u64)>, CacheError> {
        let dir = self.blobs_dir();
        let mut blobs = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(CacheError::io("cannot list", &dir))? {
            let entry = entry.map_err(CacheError::io("cannot list", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(digest) = format!("sha256:{name}").parse::<Digest>() {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
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
        let dir = self.root.join("quarantine");
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

    #[tokio::test]
    async fn stores_verified_bytes_and_refuses_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        assert!(dir.path().join("CACHEDIR.TAG").exists());
        let good = Digest::of(b"hello");
        let path = store.put_bytes(&good, b"hello").await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        assert!(store.contains(&good, 5));
        assert!(std::fs::metadata(&path).unwrap().permissions().readonly());
        // Stored again: no error, same file.
        store.put_bytes(&good, b"hello").await.unwrap();

        let wrong = Digest::of(b"other");
        let err = store.put_bytes(&wrong, b"hello").await.unwrap_err();
        assert!(matches!(err, CacheError::DigestMismatch { .. }), "{err}");
        assert!(!store.blob_path(&wrong).exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("ingest"))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "partial")
                })
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn resumes_a_partial_ingest() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let data = b"0123456789abcdef";
        let digest = Digest::of(data);
        {
            let mut ingest = store.begin_ingest(&digest, || {}).await.unwrap();
            ingest.write(&data[..6]).unwrap();
            ingest.flush().unwrap();
            // dropped without commit: the partial file stays
        }
        let mut ingest = store.begin_ingest(&digest, || {}).await.unwrap();
        assert_eq!(ingest.offset(), 6);
        ingest.write(&data[6..]).unwrap();
        let path = ingest.commit(Some(data.len() as u64)).unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data);
    }
}
