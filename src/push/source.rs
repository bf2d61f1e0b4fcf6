//! Where a pushed blob's bytes lie: a stretch of a file (a cached blob, or a file inside a
//! tar), or memory (a config haul made). The registry client reads them through
//! [`UploadSource`] and never opens files itself.

use std::io::{Read, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::bundle::BundleFile;
use crate::registry::{UploadReader, UploadSource};

/// `size` bytes of the file at `path` from `offset`; or, when `within` is set, of the tar a
/// parts set or a compressed bundle holds (`path` is then the bundle's, for messages).
#[derive(Clone, Debug)]
pub struct BlobFile {
    pub path: PathBuf,
    pub offset: u64,
    pub size: u64,
    pub within: Option<Arc<BundleFile>>,
}

impl BlobFile {
    /// A whole file, or a stretch of one.
    pub fn new(path: PathBuf, offset: u64, size: u64) -> BlobFile {
        BlobFile {
            path,
            offset,
            size,
            within: None,
        }
    }

    /// A stretch of the tar at `bundle` (a file, a parts set, a compressed tar).
    pub fn in_bundle(bundle: &BundleFile, offset: u64, size: u64) -> BlobFile {
        match bundle {
            BundleFile::Tar(path) => BlobFile::new(path.clone(), offset, size),
            BundleFile::Parts(set) => BlobFile {
                path: set.path.clone(),
                offset,
                size,
                within: Some(Arc::new(bundle.clone())),
            },
            BundleFile::Compressed(path, _) => BlobFile {
                path: path.clone(),
                offset,
                size,
                within: Some(Arc::new(bundle.clone())),
            },
        }
    }

    /// Its bytes from `offset` (within it), `len` of them, for blocking code.
    pub fn read_range(&self, offset: u64, len: u64) -> std::io::Result<Box<dyn Read + Send>> {
        let start = self.offset + offset;
        match &self.within {
            Some(bundle) => bundle.range(start, len),
            None => {
                let mut file = std::fs::File::open(&self.path)?;
                std::io::Seek::seek(&mut file, SeekFrom::Start(start))?;
                Ok(Box::new(file.take(len)))
            }
        }
    }
}

impl UploadSource for BlobFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn open(&self, offset: u64, len: u64) -> BoxFuture<'static, std::io::Result<UploadReader>> {
        let (path, start) = (self.path.clone(), self.offset + offset);
        let within = self.within.clone();
        async move {
            if let Some(bundle) = within {
                let range = bundle.range(start, len)?;
                return Ok(Box::pin(crate::blocking::Reader::new(range)) as UploadReader);
            }
            let mut file = tokio::fs::File::open(&path).await?;
            file.seek(SeekFrom::Start(start)).await?;
            Ok(Box::pin(AsyncReadExt::take(file, len)) as UploadReader)
        }
        .boxed()
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// A small blob haul made (the config of a merged signature manifest).
#[derive(Clone, Debug)]
pub struct MemoryBlob(pub bytes::Bytes);

impl UploadSource for MemoryBlob {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    fn open(&self, offset: u64, len: u64) -> BoxFuture<'static, std::io::Result<UploadReader>> {
        let part = self.0.slice(offset as usize..(offset + len) as usize);
        async move { Ok(Box::pin(std::io::Cursor::new(part)) as UploadReader) }.boxed()
    }

    fn describe(&self) -> String {
        "memory".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_the_stretch_it_is_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tar");
        std::fs::write(&path, b"headerBLOB-BYTEStrailer").unwrap();
        let blob = BlobFile::new(path, 6, 10);
        let mut read = String::new();
        AsyncReadExt::read_to_string(&mut blob.open(5, 5).await.unwrap(), &mut read)
            .await
            .unwrap();
        assert_eq!(read, "BYTES");
    }
}
