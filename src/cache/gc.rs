//! What the recorded images need, and deleting what they do not: one [`mark`] that every
//! command deciding what to keep uses (`cache rm`, `cache prune`, `cache ls`'s COMPLETE
//! column), one [`sweep`], and [`verify_all`]. Each returns a summary; printing it is the
//! caller's job. All of it blocks: call it from a blocking thread, holding the root lock
//! exclusively when it deletes.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::index::now_secs;
use super::prune::{Candidate, PrunePolicy, select};
use super::{BlobStore, CacheError, RefRecord};
use crate::digest::Digest;
use crate::manifest::{ImageConfig, Manifest};
use crate::reference::Reference;

/// What one recorded image needs from the cache.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Every blob an export of it reads: its manifest (for an `--all-platforms` record, the
    /// index and every platform's manifest), configs and layers.
    pub blobs: BTreeSet<Digest>,
    /// Uncompressed forms of its layers (`--decompress`, docker-v1) that are in the cache:
    /// kept with the image, but not needed for it to be complete.
    pub uncompressed: BTreeSet<Digest>,
    /// The bytes of `blobs`, each counted once, as the manifests declare them.
    pub size: u64,
    /// Whether every manifest it names is in the cache: an `--offline` export can resolve it.
    pub resolvable: bool,
    /// Whether every blob in `blobs` is in the cache: an `--offline` export can write it.
    pub complete: bool,
}

/// What the record `record` needs: its manifest and, through it, the rest.
pub fn mark(store: &BlobStore, record: &RefRecord) -> Needs {
    let mut needs = Needs {
        resolvable: true,
        complete: true,
        ..Needs::default()
    };
    mark_manifest(store, &record.manifest, None, true, &mut needs);
    needs
}

/// Marks manifest `digest` and what it names (an index: its platforms' manifests, once).
fn mark_manifest(
    store: &BlobStore,
    digest: &Digest,
    declared_size: Option<u64>,
    may_be_index: bool,
    needs: &mut Needs,
) {
    let Ok(bytes) = store.read_verified(digest) else {
        needs.resolvable = false;
        needs.complete = false;
        if needs.blobs.insert(digest.clone()) {
            needs.size += declared_size.unwrap_or(0);
        }
        return;
    };
    if needs.blobs.insert(digest.clone()) {
        needs.size += bytes.len() as u64;
    }
    match Manifest::parse("", None, &bytes) {
        Ok(Manifest::Image(image)) => {
            for descriptor in std::iter::once(&image.config).chain(&image.layers) {
                if needs.blobs.insert(descriptor.digest.clone()) {
                    needs.size += descriptor.size;
                }
                if !store.contains(&descriptor.digest, descriptor.size) {
                    needs.complete = false;
                }
            }
            let config = store
                .read_verified(&image.config.digest)
                .ok()
                .and_then(|bytes| ImageConfig::parse("", &image.config.digest, &bytes).ok());
            for diff_id in config.iter().flat_map(|c| &c.rootfs.diff_ids) {
                if store.size_of(diff_id).is_some() {
                    needs.uncompressed.insert(diff_id.clone());
                }
            }
        }
        // What an `--all-platforms` export wrote: every image entry (attestations aside).
        Ok(Manifest::Index(index)) if may_be_index => {
            for entry in index.images() {
                mark_manifest(store, &entry.digest, Some(entry.size), false, needs);
            }
        }
        _ => {
            needs.resolvable = false;
            needs.complete = false;
        }
    }
}

/// Every recorded image, sorted by reference and platform, with what it needs.
pub fn images(store: &BlobStore) -> Result<Vec<(RefRecord, Needs)>, CacheError> {
    let mut records = store.index().refs()?;
    records.sort_by(|a, b| (&a.reference, &a.platform).cmp(&(&b.reference, &b.platform)));
    Ok(records
        .into_iter()
        .map(|record| {
            let needs = mark(store, &record);
            (record, needs)
        })
        .collect())
}

/// What [`sweep`] deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub blobs: usize,
    pub freed: u64,
}

/// Deletes these blobs and forgets them in the index.
pub fn sweep(store: &BlobStore, digests: &BTreeSet<Digest>) -> Result<Swept, CacheError> {
    let mut swept = Swept::default();
    let mut removed = Vec::new();
    for digest in digests {
        let Some(size) = store.size_of(digest) else {
            continue;
        };
        store.remove_blob(digest)?;
        swept.blobs += 1;
        swept.freed += size;
        removed.push(digest.clone());
    }
    store.index().forget_blobs(&removed)?;
    Ok(swept)
}

/// What [`rm`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub records: usize,
    pub swept: Swept,
}

#[derive(Debug, thiserror::Error)]
pub enum RmError {
    #[error("{0} is not in the cache; `haul cache ls` lists what is")]
    NotInCache(String),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Forgets every record of these references (all their platforms) and deletes the blobs they
/// needed that no other record needs.
pub fn rm(store: &BlobStore, references: &[Reference]) -> Result<Removed, RmError> {
    let index = store.index();
    let records = index.refs()?;
    let mut removed: Vec<RefRecord> = Vec::new();
    for reference in references {
        let name = reference.to_string();
        let matching: Vec<&RefRecord> = records.iter().filter(|r| r.reference == name).collect();
        if matching.is_empty() {
            return Err(RmError::NotInCache(name));
        }
        removed.extend(matching.into_iter().cloned());
    }
    let mut kept = BTreeSet::new();
    for record in records.iter().filter(|r| !removed.contains(r)) {
        let needs = mark(store, record);
        kept.extend(needs.blobs);
        kept.extend(needs.uncompressed);
    }
    let mut garbage = BTreeSet::new();
    for record in &removed {
        let needs = mark(store, record);
        garbage.extend(needs.blobs.into_iter().chain(needs.uncompressed));
    }
    let garbage: BTreeSet<Digest> = garbage.difference(&kept).cloned().collect();
    index.forget_refs(&removed)?;
    let swept = sweep(store, &garbage)?;
    Ok(Removed {
        records: removed.len(),
        swept,
    })
}

/// What [`prune`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub swept: Swept,
    pub partials: usize,
    pub partial_bytes: u64,
    /// Upload records and compressed forms removed, and their bytes.
    pub derived: usize,
    pub derived_bytes: u64,
    /// Records forgotten because a manifest they name is gone.
    pub records: usize,
    /// What the cache holds afterwards (blobs and partial downloads).
    pub left: u64,
}

/// Something prune may delete.
#[derive(Clone, Debug)]
enum Prunable {
    Blob(Digest),
    Partial(PathBuf),
    /// A file of a derived bucket (see `Bucket::DERIVED`).
    Derived(PathBuf),
}

/// Deletes blobs and partial downloads as `policy` says, least recently used first; then
/// forgets the records that can no longer be resolved offline (a manifest is gone, for an
/// `--all-platforms` record any platform's), so that `cache ls` and `--offline` tell the truth.
pub fn prune(store: &BlobStore, policy: &PrunePolicy) -> Result<Pruned, CacheError> {
    let index = store.index();
    let records = index.blobs()?;
    let mut candidates = Vec::new();
    for (digest, size) in store.list_blobs()? {
        let last_used = match records.get(&digest) {
            Some(record) => record.last_used,
            None => modified_secs(&store.blob_path(&digest)),
        };
        candidates.push(Candidate {
            key: Prunable::Blob(digest),
            size,
            last_used,
        });
    }
    for (path, size, modified) in store.list_partials()? {
        let last_used = modified
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        candidates.push(Candidate {
            key: Prunable::Partial(path),
            size,
            last_used,
        });
    }
    for (_, path, size, modified) in store.list_derived()? {
        let last_used = modified
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        candidates.push(Candidate {
            key: Prunable::Derived(path),
            size,
            last_used,
        });
    }
    let total: u64 = candidates.iter().map(|c| c.size).sum();
    let mut pruned = Pruned::default();
    let mut blobs = BTreeSet::new();
    for candidate in select(candidates, policy, now_secs()) {
        match candidate.key {
            Prunable::Blob(digest) => {
                blobs.insert(digest);
            }
            Prunable::Partial(path) => {
                store.remove_partial(&path)?;
                pruned.partials += 1;
                pruned.partial_bytes += candidate.size;
            }
            Prunable::Derived(path) => {
                store.remove_partial(&path)?;
                pruned.derived += 1;
                pruned.derived_bytes += candidate.size;
            }
        }
    }
    pruned.swept = sweep(store, &blobs)?;
    store.remove_stray_locks()?;
    let unresolvable: Vec<RefRecord> = index
        .refs()?
        .into_iter()
        .filter(|record| !mark(store, record).resolvable)
        .collect();
    pruned.records = unresolvable.len();
    index.forget_refs(&unresolvable)?;
    pruned.left = total - pruned.swept.freed - pruned.partial_bytes - pruned.derived_bytes;
    Ok(pruned)
}

/// What [`verify_all`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    pub blobs: usize,
    pub bytes: u64,
    pub damaged: Vec<Damaged>,
}

/// A blob whose content does not hash to its name, moved out of `blobs/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damaged {
    pub digest: Digest,
    pub actual: Digest,
    pub moved_to: PathBuf,
}

/// Hashes every blob; a damaged one is moved to `quarantine/` and forgotten, so the next
/// export or pull downloads it again.
pub fn verify_all(store: &BlobStore) -> Result<Verified, CacheError> {
    let blobs = store.list_blobs()?;
    let mut verified = Verified {
        blobs: blobs.len(),
        ..Verified::default()
    };
    for (digest, _) in &blobs {
        let (actual, size) = BlobStore::hash_file(&store.blob_path(digest))?;
        verified.bytes += size;
        if &actual != digest {
            let moved_to = store.quarantine_blob(digest)?;
            verified.damaged.push(Damaged {
                digest: digest.clone(),
                actual,
                moved_to,
            });
        }
    }
    let damaged: Vec<Digest> = verified.damaged.iter().map(|d| d.digest.clone()).collect();
    store.index().forget_blobs(&damaged)?;
    Ok(verified)
}

fn modified_secs(path: &std::path::Path) -> u64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}
