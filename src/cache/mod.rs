//! The content-addressed blob cache. It knows files, not HTTP.
//!
//! ```text
//! <cache>/blobs/sha256/<hex>      verified blobs, read-only; a file here always hashes to its name
//! <cache>/ingest/<hex>.partial    a download in progress (kept across runs: it is resumed)
//! <cache>/ingest/<hex>.lock       held while a process writes that blob (one writer per digest)
//! <cache>/CACHEDIR.TAG            tells backup tools to skip the folder
//! ```
//!
//! A blob enters `blobs/` only through [`Ingest::commit`], which follows containerd's order:
//! flush and fsync, check the size, check the digest, rename, fsync the folder, make it
//! read-only. Nothing unverified is ever visible under `blobs/`.

mod ingest;

use std::io;
use std::path::{Path, PathBuf};

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
        let mut ingest = self.begin_ingest(digest).await?;
        ingest.restart()?;
        ingest.write(bytes)?;
        ingest.commit(bytes.len() as u64)
    }

    /// Starts (or resumes) writing blob `digest`. Waits while another process writes the
    /// same blob; when it returns, this process is the only writer.
    pub async fn begin_ingest(&self, digest: &Digest) -> Result<Ingest, CacheError> {
        let store = self.clone();
        let digest = digest.clone();
        tokio::task::spawn_blocking(move || Ingest::open(&store, &digest))
            .await
            .map_err(|e| CacheError::Io {
                action: "lost the task opening",
                path: PathBuf::from("ingest"),
                source: io::Error::other(e.to_string()),
            })?
    }

    /// Hashes a stored blob from disk (for checks of the whole cache).
    pub fn hash_file(path: &Path) -> Result<(Digest, u64), CacheError> {
        use std::io::Read;
        let mut file = std::fs::File::open(path).map_err(CacheError::io("cannot open", path))?;
        let mut verifier = Verifier::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = file
                .read(&mut buffer)
                .map_err(CacheError::io("cannot read", path))?;
            if n == 0 {
                break;
            }
            verifier.update(&buffer[..n]);
        }
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
            let mut ingest = store.begin_ingest(&digest).await.unwrap();
            ingest.write(&data[..6]).unwrap();
            ingest.flush().unwrap();
            // dropped without commit: the partial file stays
        }
        let mut ingest = store.begin_ingest(&digest).await.unwrap();
        assert_eq!(ingest.offset(), 6);
        ingest.write(&data[6..]).unwrap();
        let path = ingest.commit(data.len() as u64).unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data);
    }
}
