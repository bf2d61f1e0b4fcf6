//! The cache's tables (`haul cache ls`, `haul cache du`), written to what the caller gives.

use std::io::Write;

use super::index::now_secs;
use super::{BlobStore, CacheError, gc};
use crate::progress::human_bytes;

#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("cannot write the listing")]
    Write(#[from] std::io::Error),
}

fn ago(last_used: u64) -> String {
    let seconds = now_secs().saturating_sub(last_used);
    match seconds {
        0..60 => format!("{seconds}s ago"),
        60..3600 => format!("{}m ago", seconds / 60),
        3600..86_400 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86_400),
    }
}

/// `haul cache ls`: the images recorded, then every blob, as two tables.
pub fn ls(store: &BlobStore, out: &mut dyn Write) -> Result<(), ListingError> {
    let images = gc::images(store)?;
    let records = store.index().blobs()?;
    writeln!(out, "IMAGES")?;
    // As wide as the longest reference (`name:tag@sha256:…` is long), so columns line up.
    let width = images
        .iter()
        .map(|(record, _)| record.reference.chars().count())
        .max()
        .unwrap_or(0)
        .max("REFERENCE".len());
    let platform_width = images
        .iter()
        .map(|(record, _)| record.platform.chars().count())
        .max()
        .unwrap_or(0)
        .max("PLATFORM".len());
    writeln!(
        out,
        "{:<width$} {:<platform_width$} {:<20} {:>10} {:>10}  COMPLETE",
        "REFERENCE", "PLATFORM", "MANIFEST", "SIZE", "LAST USED"
    )?;
    for (record, needs) in &images {
        let size = if needs.resolvable {
            human_bytes(needs.size)
        } else {
            "?".to_string()
        };
        writeln!(
            out,
            "{:<width$} {:<platform_width$} {:<20} {:>10} {:>10}  {}",
            record.reference,
            record.platform,
            record.manifest.short(),
            size,
            ago(record.last_used),
            if needs.complete { "yes" } else { "no" }
        )?;
    }
    writeln!(out)?;
    writeln!(out, "BLOBS")?;
    writeln!(
        out,
        "{:<20} {:>10} {:>10}  MEDIA TYPE",
        "DIGEST", "SIZE", "LAST USED"
    )?;
    for (digest, size) in store.list_blobs()? {
        let (last_used, recorded) = match records.get(&digest) {
            Some(r) => (ago(r.last_used), r.media_type.clone()),
            None => ("-".to_string(), String::new()),
        };
        // Manifests are recorded without one: their own bytes say what they are.
        let media_type = if recorded.is_empty() {
            manifest_media_type(store, &digest, size).unwrap_or_else(|| "-".to_string())
        } else {
            recorded
        };
        writeln!(
            out,
            "{:<20} {:>10} {:>10}  {media_type}",
            digest.short(),
            human_bytes(size),
            last_used
        )?;
    }
    Ok(())
}

/// `haul cache du`: files and bytes of each part of the cache, and the total.
pub fn du(store: &BlobStore, out: &mut dyn Write) -> Result<(), ListingError> {
    let blobs = store.list_blobs()?;
    let blob_bytes: u64 = blobs.iter().map(|(_, size)| size).sum();
    let partials = store.list_partials()?;
    let partial_bytes: u64 = partials.iter().map(|(_, size, _)| size).sum();
    writeln!(
        out,
        "{:<18} {:>6} files  {:>10}",
        "blobs",
        blobs.len(),
        human_bytes(blob_bytes)
    )?;
    writeln!(
        out,
        "{:<18} {:>6} files  {:>10}",
        "partial downloads",
        partials.len(),
        human_bytes(partial_bytes)
    )?;
    let mut total = blob_bytes + partial_bytes;
    let derived = store.list_derived()?;
    for bucket in crate::cache::Bucket::DERIVED {
        let files: Vec<u64> = derived
            .iter()
            .filter(|(b, ..)| *b == bucket)
            .map(|(_, _, size, _)| *size)
            .collect();
        let bytes: u64 = files.iter().sum();
        total += bytes;
        writeln!(
            out,
            "{:<18} {:>6} files  {:>10}",
            bucket.description(),
            files.len(),
            human_bytes(bytes)
        )?;
    }
    writeln!(
        out,
        "{:<18} {:>6}        {:>10}",
        "total",
        "",
        human_bytes(total)
    )?;
    writeln!(out, "({})", store.root().display())?;
    Ok(())
}

/// The media type of a small cached blob that is a manifest or an index, from its bytes.
fn manifest_media_type(
    store: &BlobStore,
    digest: &crate::digest::Digest,
    size: u64,
) -> Option<String> {
    use crate::manifest::{Manifest, OCI_INDEX, OCI_MANIFEST};
    if size > crate::manifest::MAX_MANIFEST_BYTES {
        return None;
    }
    let bytes = std::fs::read(store.blob_path(digest)).ok()?;
    if !bytes.starts_with(b"{") {
        return None;
    }
    let parsed = Manifest::parse("", None, &bytes).ok()?;
    Some(match parsed {
        Manifest::Image(m) => m.media_type.unwrap_or_else(|| OCI_MANIFEST.to_string()),
        Manifest::Index(i) => i.media_type.unwrap_or_else(|| OCI_INDEX.to_string()),
    })
}
