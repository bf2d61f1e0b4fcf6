//! Uncompressed layers (`--decompress`, and the docker-v1 format): a cached layer blob is
//! decompressed into the cache under its diff_id. The diff_id is the digest of the
//! uncompressed tar, so the ingest's verifier checks the result against the image config, and
//! the next export that wants it finds it there and does neither the download nor the work.

use std::path::{Path, PathBuf};

use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};

use crate::cache::{BlobStore, CacheError};
use crate::digest::Digest;
use crate::manifest::Compression;

/// Decompressed data is written in chunks of this size.
const CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error(
        "cannot decompress the layer ({}): {detail}; the blob is damaged",
        compression.name()
    )]
    Corrupt {
        compression: Compression,
        detail: String,
    },
    #[error(
        "the layer decompresses to {actual}, but the image config says its diff_id is \
         {expected}; the image is inconsistent and no loader would accept it. Nothing was stored"
    )]
    DiffIdMismatch { expected: Digest, actual: Digest },
    #[error(transparent)]
    Cache(CacheError),
}

/// Decompresses the layer at `compressed` into the cache as blob `diff_id`, unless it is
/// there already; returns its path and size. Memory stays at a few buffers whatever the size.
pub async fn decompress_layer(
    store: &BlobStore,
    compressed: &Path,
    compression: Compression,
    diff_id: &Digest,
) -> Result<(PathBuf, u64), DecompressError> {
    if let Some(size) = store.size_of(diff_id) {
        return Ok((store.blob_path(diff_id), size));
    }
    let mut ingest = store
        .begin_ingest(diff_id, || {})
        .await
        .map_err(DecompressError::Cache)?;
    // Another process may have finished it while this one waited for the blob's lock.
    if let Some(size) = store.size_of(diff_id) {
        return Ok((store.blob_path(diff_id), size));
    }
    // Derived data is cheap to redo: never resume a partial one.
    ingest.restart().map_err(DecompressError::Cache)?;
    let file = tokio::fs::File::open(compressed)
        .await
        .map_err(|e| DecompressError::Cache(CacheError::io("cannot open", compressed)(e)))?;
    let input = BufReader::with_capacity(CHUNK, file);
    let mut decoder: Box<dyn AsyncRead + Unpin + Send> = match compression {
        Compression::Gzip => {
            let mut decoder = GzipDecoder::new(input);
            // Some tools write a layer as several gzip members; all of them are the layer.
            decoder.multiple_members(true);
            Box::new(decoder)
        }
        Compression::Zstd => {
            let mut decoder = ZstdDecoder::new(input);
            decoder.multiple_members(true);
            Box::new(decoder)
        }
        Compression::Uncompressed | Compression::Unknown => Box::new(input),
    };
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = match decoder.read(&mut buffer).await {
            Ok(n) => n,
            Err(e) => {
                // Keep no partial output: it would be redone from the start anyway.
                let _ = ingest.restart();
                return Err(DecompressError::Corrupt {
                    compression,
                    detail: e.to_string(),
                });
            }
        };
        if n == 0 {
            break;
        }
        ingest.write(&buffer[..n]).map_err(DecompressError::Cache)?;
    }
    let path = tokio::task::spawn_blocking(move || ingest.commit(None))
        .await
        .map_err(|e| {
            DecompressError::Cache(CacheError::io("lost the task committing", compressed)(
                std::io::Error::other(e.to_string()),
            ))
        })?
        .map_err(|e| match e {
            CacheError::DigestMismatch {
                expected, actual, ..
            } => DecompressError::DiffIdMismatch { expected, actual },
            other => DecompressError::Cache(other),
        })?;
    let size = store.size_of(diff_id).unwrap_or_default();
    Ok((path, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[tokio::test]
    async fn decompresses_once_and_checks_the_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&dir.path().join("cache")).unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        // Two gzip members: one layer.
        let mut compressed = gzip(&data[..1_000_000]);
        compressed.extend(gzip(&data[1_000_000..]));
        let source = dir.path().join("layer.gz");
        std::fs::write(&source, &compressed).unwrap();
        let diff_id = Digest::of(&data);

        let (path, size) = decompress_layer(&store, &source, Compression::Gzip, &diff_id)
            .await
            .unwrap();
        assert_eq!(size, data.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        // Done once: a second call does not read the source at all.
        std::fs::remove_file(&source).unwrap();
        let (again, _) = decompress_layer(&store, &source, Compression::Gzip, &diff_id)
            .await
            .unwrap();
        assert_eq!(again, path);

        // A diff_id that does not match: an error naming both, nothing stored.
        std::fs::write(&source, gzip(b"other")).unwrap();
        let wrong = Digest::of(b"something else");
        let error = decompress_layer(&store, &source, Compression::Gzip, &wrong)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, DecompressError::DiffIdMismatch { expected, actual }
                if *expected == wrong && *actual == Digest::of(b"other")),
            "{error}"
        );
        assert!(store.size_of(&wrong).is_none());

        // Not gzip at all.
        std::fs::write(&source, b"not compressed").unwrap();
        let error = decompress_layer(&store, &source, Compression::Gzip, &wrong)
            .await
            .unwrap_err();
        assert!(matches!(error, DecompressError::Corrupt { .. }), "{error}");
        assert!(store.size_of(&wrong).is_none());
    }
}
