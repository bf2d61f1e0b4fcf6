//! Where a pushed blob's bytes lie: a stretch of a file (a cached blob, or a file inside a
//! tar), or memory (a config haul made). The registry client reads them through
//! [`UploadSource`] and never opens files itself.

use std::io::SeekFrom;
use std::path::PathBuf;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::registry::{UploadReader, UploadSource};

/// `size` bytes of the file at `path` from `offset`.
#[derive(Clone, Debug)]
pub struct BlobFile {
    pub path: PathBuf,
    pub offset: u64,
    pub size: u64,
}

impl UploadSource for BlobFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn open(&self, offset: u64, len: u64) -> BoxFuture<'static, std::io::Result<UploadReader>> {
        let (path, start) = (self.path.clone(), self.offset + offset);
        async move {
            let mut file = tokio::fs::File::open(&path).await?;
            file.seek(SeekFrom::Start(start)).await?;
            Ok(Box::pin(file.take(len)) as UploadReader)
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
        let blob = BlobFile {
            path,
            offset: 6,
            size: 10,
        };
        let mut read = String::new();
        blob.open(5, 5)
            .await
            .unwrap()
            .read_to_string(&mut read)
            .await
            .unwrap();
        assert_eq!(read, "BYTES");
    }
}
