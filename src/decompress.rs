//! Uncompressed layers (`--decompress`, and the docker-v1 format): a cached layer blob is
//! decompressed into the cache under its diff_id. The diff_id is the digest of the
//! uncompressed tar, so the ingest's verifier checks the result against the image config, and
//! the next export that wants it finds it there and does neither the download nor the work.
//!
//! Decompressing is CPU and disk work: it runs on a blocking thread, reading and writing std
//! files. async-compression's decoders are driven there synchronously (through
//! `futures::io::AllowStdIo` and `block_on`), so haul keeps one decompression library.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use async_compression::futures::bufread::{GzipDecoder, ZstdDecoder};
use futures::io::{AllowStdIo, AsyncRead, AsyncReadExt};

use crate::cache::{BlobStore, CacheError, Ingest};
use crate::digest::Digest;
use crate::manifest::Compression;

/// Decompressed data is read and written in chunks of this size.
const CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("cannot decompress the layer ({}); the blob is damaged", compression.name())]
    Corrupt {
        compression: Compression,
        #[source]
        source: std::io::Error,
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
/// Blocks: call it from a blocking thread.
pub fn decompress_layer(
    store: &BlobStore,
    compressed: &Path,
    compression: Compression,
    diff_id: &Digest,
) -> Result<(PathBuf, u64), DecompressError> {
    let done = |store: &BlobStore| {
        store
            .size_of(diff_id)
            .map(|size| (store.blob_path(diff_id), size))
    };
    if let Some(done) = done(store) {
        return Ok(done);
    }
    // `None`: another process finished it while this one waited for the blob's lock.
    let Some(mut ingest) =
        Ingest::open(store, diff_id, None, || {}).map_err(DecompressError::Cache)?
    else {
        return done(store).ok_or_else(|| {
            DecompressError::Cache(CacheError::io("cannot read", &store.blob_path(diff_id))(
                std::io::ErrorKind::NotFound.into(),
            ))
        });
    };
    // Derived data is cheap to redo: never resume a partial one.
    ingest.restart().map_err(DecompressError::Cache)?;
    let file = File::open(compressed)
        .map_err(|e| DecompressError::Cache(CacheError::io("cannot open", compressed)(e)))?;
    let input = AllowStdIo::new(BufReader::with_capacity(CHUNK, file));
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
        // The input is a std file: every poll completes at once, nothing waits on a runtime.
        let n = futures::executor::block_on(decoder.read(&mut buffer)).map_err(|source| {
            // Keep no partial output: it would be redone from the start anyway.
            let _ = ingest.restart();
            DecompressError::Corrupt {
                compression,
                source,
            }
        })?;
        if n == 0 {
            break;
        }
        ingest.write(&buffer[..n]).map_err(DecompressError::Cache)?;
    }
    let path = ingest.commit(None).map_err(|e| match e {
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

    #[test]
    fn decompresses_once_and_checks_the_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&dir.path().join("cache")).unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        // Two gzip members: one layer.
        let mut compressed = gzip(&data[..1_000_000]);
        compressed.extend(gzip(&data[1_000_000..]));
        let source = dir.path().join("layer.gz");
        std::fs::write(&source, &compressed).unwrap();
        let diff_id = Digest::of(&data);

        let (path, size) = decompress_layer(&store, &source, Compression::Gzip, &diff_id).unwrap();
        assert_eq!(size, data.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        // Done once: a second call does not read the source at all.
        std::fs::remove_file(&source).unwrap();
        let (again, _) = decompress_layer(&store, &source, Compression::Gzip, &diff_id).unwrap();
        assert_eq!(again, path);

        // A diff_id that does not match: an error naming both, nothing stored.
        std::fs::write(&source, gzip(b"other")).unwrap();
        let wrong = Digest::of(b"something else");
        let error = decompress_layer(&store, &source, Compression::Gzip, &wrong).unwrap_err();
        assert!(
            matches!(&error, DecompressError::DiffIdMismatch { expected, actual }
                if *expected == wrong && *actual == Digest::of(b"other")),
            "{error}"
        );
        assert!(store.size_of(&wrong).is_none());

        // Not gzip at all.
        std::fs::write(&source, b"not compressed").unwrap();
        let error = decompress_layer(&store, &source, Compression::Gzip, &wrong).unwrap_err();
        assert!(matches!(error, DecompressError::Corrupt { .. }), "{error}");
        assert!(store.size_of(&wrong).is_none());
    }
}
