//! `haul cache ls | du | verify | prune | rm`.

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::bail;

use super::Global;
use crate::cache::index::now_secs;
use crate::cache::prune::{Candidate, PrunePolicy, select};
use crate::cache::{BlobStore, CacheLock, LockMode, RefRecord};
use crate::cli::{CacheCommand, PruneArgs};
use crate::digest::Digest;
use crate::manifest::Manifest;
use crate::progress::{Event, human_bytes};
use crate::reference::Reference;

pub async fn run(global: &Global, command: CacheCommand) -> anyhow::Result<()> {
    let store = BlobStore::open(&global.cache_dir)?;
    match command {
        CacheCommand::Ls => ls(&store),
        CacheCommand::Du => du(&store),
        CacheCommand::Verify => {
            let _lock = exclusive(global, &store).await?;
            verify(&store)
        }
        CacheCommand::Prune(args) => {
            let _lock = exclusive(global, &store).await?;
            prune(&store, &args)
        }
        CacheCommand::Rm { references } => {
            let _lock = exclusive(global, &store).await?;
            rm(&store, &references)
        }
    }
}

/// Commands that remove or move blobs wait for running exports and pulls.
async fn exclusive(global: &Global, store: &BlobStore) -> anyhow::Result<CacheLock> {
    let progress = global.progress.clone();
    Ok(store
        .lock(LockMode::Exclusive, || {
            progress.event(Event::Waiting {
                what: "running haul exports and pulls".to_string(),
            })
        })
        .await?)
}

/// The blobs an image needs (manifest, config, layers), if its manifest is cached.
fn image_blobs(store: &BlobStore, manifest: &Digest) -> Option<(BTreeSet<Digest>, u64)> {
    let bytes = store.read_verified(manifest).ok()?;
    let Ok(Manifest::Image(image)) = Manifest::parse("", None, &bytes) else {
        return None;
    };
    let mut blobs = BTreeSet::from([manifest.clone()]);
    let mut size = bytes.len() as u64;
    for descriptor in std::iter::once(&image.config).chain(&image.layers) {
        if blobs.insert(descriptor.digest.clone()) {
            size += descriptor.size;
        }
    }
    Some((blobs, size))
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

fn ls(store: &BlobStore) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let index = store.index();
    let mut refs = index.refs()?;
    refs.sort_by(|a, b| (&a.reference, &a.platform).cmp(&(&b.reference, &b.platform)));
    let records = index.blobs()?;
    writeln!(out, "IMAGES")?;
    writeln!(
        out,
        "{:<50} {:<15} {:<20} {:>10} {:>10}  COMPLETE",
        "REFERENCE", "PLATFORM", "MANIFEST", "SIZE", "LAST USED"
    )?;
    for record in &refs {
        let (size, complete) = match image_blobs(store, &record.manifest) {
            Some((blobs, size)) => {
                let complete = blobs.iter().all(|d| store.blob_path(d).exists());
                (human_bytes(size), if complete { "yes" } else { "no" })
            }
            None => ("?".to_string(), "no"),
        };
        writeln!(
            out,
            "{:<50} {:<15} {:<20} {:>10} {:>10}  {complete}",
            record.reference,
            record.platform,
            record.manifest.short(),
            size,
            ago(record.last_used)
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
        let (last_used, media_type) = match records.get(&digest) {
            Some(r) => (ago(r.last_used), r.media_type.as_str()),
            None => ("-".to_string(), ""),
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

fn du(store: &BlobStore) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
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
    writeln!(
        out,
        "{:<18} {:>6}        {:>10}",
        "total",
        "",
        human_bytes(blob_bytes + partial_bytes)
    )?;
    writeln!(out, "({})", store.root().display())?;
    Ok(())
}

fn verify(store: &BlobStore) -> anyhow::Result<()> {
    let blobs = store.list_blobs()?;
    let mut bad = Vec::new();
    let mut bytes = 0;
    for (digest, _) in &blobs {
        let (actual, size) = BlobStore::hash_file(&store.blob_path(digest))?;
        bytes += size;
        if &actual != digest {
            let moved = store.quarantine_blob(digest)?;
            eprintln!(
                "bad: {digest} hashes to {actual}; moved to {}",
                moved.display()
            );
            bad.push(digest.clone());
        }
    }
    store.index().forget_blobs(&bad)?;
    if !bad.is_empty() {
        bail!(
            "{} of {} blobs were damaged and moved aside; the next export or pull downloads them again",
            bad.len(),
            blobs.len()
        );
    }
    writeln!(
        std::io::stdout(),
        "ok: {} blobs, {} verified",
        blobs.len(),
        human_bytes(bytes)
    )?;
    Ok(())
}

/// Something prune may delete.
#[derive(Clone, Debug)]
enum Prunable {
    Blob(Digest),
    Partial(std::path::PathBuf),
}

fn prune(store: &BlobStore, args: &PruneArgs) -> anyhow::Result<()> {
    let policy = PrunePolicy {
        max_size: args.max_size,
        older_than: args.older_than,
        all: args.all,
    };
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
    let total: u64 = candidates.iter().map(|c| c.size).sum();
    let chosen = select(candidates, &policy, now_secs());
    let mut freed = 0;
    let mut removed_blobs = Vec::new();
    let mut removed_partials = 0;
    for candidate in &chosen {
        match &candidate.key {
            Prunable::Blob(digest) => {
                store.remove_blob(digest)?;
                removed_blobs.push(digest.clone());
            }
            Prunable::Partial(path) => {
                std::fs::remove_file(path).or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                })?;
                removed_partials += 1;
            }
        }
        freed += candidate.size;
    }
    index.forget_blobs(&removed_blobs)?;
    // Images whose manifest is gone cannot be exported offline any more: forget them.
    let orphaned: Vec<RefRecord> = index
        .refs()?
        .into_iter()
        .filter(|r| !store.blob_path(&r.manifest).exists())
        .collect();
    index.forget_refs(&orphaned)?;
    writeln!(
        std::io::stdout(),
        "removed {} blobs and {removed_partials} partial downloads, freed {}; the cache holds {}",
        removed_blobs.len(),
        human_bytes(freed),
        human_bytes(total - freed)
    )?;
    Ok(())
}

fn modified_secs(path: &std::path::Path) -> u64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

fn rm(store: &BlobStore, references: &[String]) -> anyhow::Result<()> {
    let index = store.index();
    let records = index.refs()?;
    let mut removed = Vec::new();
    for text in references {
        let name = text.parse::<Reference>()?.to_string();
        let matching: Vec<RefRecord> = records
            .iter()
            .filter(|r| r.reference == name)
            .cloned()
            .collect();
        if matching.is_empty() {
            bail!("{name} is not in the cache; `haul cache ls` lists what is");
        }
        removed.extend(matching);
    }
    let kept: BTreeSet<Digest> = records
        .iter()
        .filter(|r| !removed.contains(r))
        .filter_map(|r| image_blobs(store, &r.manifest))
        .flat_map(|(blobs, _)| blobs)
        .collect();
    let mut deleted = Vec::new();
    let mut freed = 0;
    for record in &removed {
        let Some((blobs, _)) = image_blobs(store, &record.manifest) else {
            continue;
        };
        for digest in blobs.difference(&kept) {
            if deleted.contains(digest) {
                continue;
            }
            freed += std::fs::metadata(store.blob_path(digest)).map_or(0, |m| m.len());
            store.remove_blob(digest)?;
            deleted.push(digest.clone());
        }
    }
    index.forget_refs(&removed)?;
    index.forget_blobs(&deleted)?;
    writeln!(
        std::io::stdout(),
        "removed {} image records and {} blobs, freed {}",
        removed.len(),
        deleted.len(),
        human_bytes(freed)
    )?;
    Ok(())
}
