//! A manifest for an image a tar holds without one (`--format docker-v1`, `docker save`
//! before Docker 25): its config as it is, and each uncompressed layer gzip-compressed as
//! `docker push` does. The compressed layers are made on blocking threads into the cache,
//! which also remembers each one by its diff_id, so pushing the same tar again compresses
//! nothing.

use std::io::{BufReader, Read};

use futures::{StreamExt, TryStreamExt};
use serde_json::json;

use super::{BlobFile, Origin, PushBlob, PushManifest};
use crate::cache::{BlobStore, CacheError};
use crate::digest::Digest;
use crate::manifest::{DOCKER_CONFIG, DOCKER_MANIFEST};

const GZIP_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const ZSTD_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
const TAR_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const CHUNK: usize = 256 * 1024;

/// A layer of such an image: its bytes, and its digest (a diff_id when uncompressed).
#[derive(Clone, Debug)]
pub struct LegacyLayer {
    pub digest: Digest,
    pub file: BlobFile,
    /// An uncompressed tar (else it is pushed as it is, as gzip or zstd by its first bytes).
    pub is_tar: bool,
}

/// Builds the image's manifest: `config` as it is, each layer compressed (in the cache) unless
/// it already is. Returns the manifest and the blobs it names.
pub async fn compose_manifest(
    store: &BlobStore,
    config: PushBlob,
    layers: &[LegacyLayer],
    jobs: usize,
) -> Result<(PushManifest, Vec<PushBlob>), CacheError> {
    let pushed: Vec<(PushBlob, &'static str)> = futures::stream::iter(layers.iter().cloned())
        .map(|layer| {
            let store = store.clone();
            crate::blocking::run(move || layer_blob(&store, &layer))
        })
        .buffered(jobs.max(1))
        .try_collect()
        .await?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": config.size, "digest": config.digest.to_string()},
        "layers": pushed.iter().map(|(blob, media_type)| json!({
            "mediaType": media_type, "size": blob.size, "digest": blob.digest.to_string()
        })).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec_pretty(&manifest).expect("JSON values serialize");
    let mut blobs = vec![config];
    for (blob, _) in pushed {
        if !blobs.iter().any(|b| b.digest == blob.digest) {
            blobs.push(blob);
        }
    }
    Ok((
        PushManifest {
            digest: Digest::of(&bytes),
            media_type: DOCKER_MANIFEST.to_string(),
            bytes,
        },
        blobs,
    ))
}

/// The layer as it goes up, and its media type. Blocks.
fn layer_blob(
    store: &BlobStore,
    layer: &LegacyLayer,
) -> Result<(PushBlob, &'static str), CacheError> {
    let as_is = |media_type| {
        let blob = PushBlob {
            digest: layer.digest.clone(),
            size: layer.file.size,
            origin: Origin::File(layer.file.clone()),
        };
        Ok((blob, media_type))
    };
    if !layer.is_tar {
        let mut magic = [0u8; 4];
        let mut file = open_at(&layer.file)?;
        let _ = file.read_exact(&mut magic);
        return match magic {
            [0x1f, 0x8b, ..] => as_is(GZIP_LAYER),
            [0x28, 0xb5, 0x2f, 0xfd] => as_is(ZSTD_LAYER),
            _ => as_is(TAR_LAYER),
        };
    }
    let (digest, size) = match remembered(store, &layer.digest) {
        Some(known) => known,
        None => {
            let made = store.put_derived(|out| gzip(&layer.file, out))?;
            remember(store, &layer.digest, &made.0);
            made
        }
    };
    let blob = PushBlob {
        origin: Origin::File(BlobFile::new(store.blob_path(&digest), 0, size)),
        digest,
        size,
    };
    Ok((blob, GZIP_LAYER))
}

fn open_at(file: &BlobFile) -> Result<Box<dyn std::io::Read + Send>, CacheError> {
    file.read_range(0, file.size)
        .map_err(CacheError::io("cannot open", &file.path))
}

/// Gzip at the default level, as docker's push does; made as a patch delta's exact rebuild
/// makes it (`crate::patch::recompress`), so a later `export --patch` keeps its digest.
fn gzip(file: &BlobFile, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut input = BufReader::with_capacity(CHUNK, open_at(file).map_err(std::io::Error::other)?);
    let mut out = out;
    crate::patch::recompress::compress(
        crate::patch::recompress::Recipe::Gzip { level: 6 },
        &mut input,
        file.size,
        &mut out,
    )
}

/// The folder remembering, per uncompressed layer, the gzip blob made of it.
fn memo_path(store: &BlobStore, diff_id: &Digest) -> std::path::PathBuf {
    store
        .path_of(crate::cache::Bucket::Compressed)
        .join(diff_id.hex())
}

/// The compressed blob made of `diff_id` before, if it is still in the cache.
fn remembered(store: &BlobStore, diff_id: &Digest) -> Option<(Digest, u64)> {
    let text = std::fs::read_to_string(memo_path(store, diff_id)).ok()?;
    let digest: Digest = text.trim().parse().ok()?;
    let size = store.size_of(&digest)?;
    Some((digest, size))
}

fn remember(store: &BlobStore, diff_id: &Digest, compressed: &Digest) {
    let path = memo_path(store, diff_id);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(path, compressed.to_string());
}
