//! `haul cache ls | du | verify | prune | rm`: the cache's own commands. The work is
//! [`crate::cache::gc`]'s; this prints its summaries.

use std::io::Write;

use anyhow::bail;

use super::Global;
use crate::cache::index::now_secs;
use crate::cache::prune::PrunePolicy;
use crate::cache::{BlobStore, LockMode, LockedFile, gc};
use crate::cli::CacheCommand;
use crate::progress::{Event, human_bytes};
use crate::reference::Reference;

pub async fn run(global: &Global, command: CacheCommand) -> anyhow::Result<()> {
    let cache_dir = global.cache_dir.clone();
    let store = crate::blocking::run(move || BlobStore::open(&cache_dir)).await?;
    // Commands that remove or move blobs wait for running exports and pulls.
    let _lock = match &command {
        CacheCommand::Ls | CacheCommand::Du => None,
        _ => Some(exclusive(global, &store).await?),
    };
    crate::blocking::run(move || match command {
        CacheCommand::Ls => ls(&store),
        CacheCommand::Du => du(&store),
        CacheCommand::Verify => verify(&store),
        CacheCommand::Prune(args) => prune(
            &store,
            &PrunePolicy {
                max_size: args.max_size,
                older_than: args.older_than,
                all: args.all,
            },
        ),
        CacheCommand::Rm { references } => rm(&store, &references),
    })
    .await
}

async fn exclusive(global: &Global, store: &BlobStore) -> anyhow::Result<LockedFile> {
    let progress = global.progress.clone();
    Ok(store
        .lock(LockMode::Exclusive, move || {
            progress.event(Event::Waiting {
                what: "running haul exports and pulls".to_string(),
            });
        })
        .await?)
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

fn verify(store: &BlobStore) -> anyhow::Result<()> {
    let verified = gc::verify_all(store)?;
    for damaged in &verified.damaged {
        eprintln!(
            "bad: {} hashes to {}; moved to {}",
            damaged.digest,
            damaged.actual,
            damaged.moved_to.display()
        );
    }
    if !verified.damaged.is_empty() {
        bail!(
            "{} of {} blobs were damaged and moved aside; the next export or pull downloads them again",
            verified.damaged.len(),
            verified.blobs
        );
    }
    writeln!(
        std::io::stdout(),
        "ok: {} blobs, {} verified",
        verified.blobs,
        human_bytes(verified.bytes)
    )?;
    Ok(())
}

fn prune(store: &BlobStore, policy: &PrunePolicy) -> anyhow::Result<()> {
    let pruned = gc::prune(store, policy)?;
    writeln!(
        std::io::stdout(),
        "removed {} blobs, {} partial downloads and {} upload records and compressed forms, \
         freed {}; the cache holds {}",
        pruned.swept.blobs,
        pruned.partials,
        pruned.derived,
        human_bytes(pruned.swept.freed + pruned.partial_bytes + pruned.derived_bytes),
        human_bytes(pruned.left)
    )?;
    Ok(())
}

fn rm(store: &BlobStore, references: &[String]) -> anyhow::Result<()> {
    let references = references
        .iter()
        .map(|r| r.parse::<Reference>())
        .collect::<Result<Vec<_>, _>>()?;
    let removed = gc::rm(store, &references)?;
    writeln!(
        std::io::stdout(),
        "removed {} image records and {} blobs, freed {}",
        removed.records,
        removed.swept.blobs,
        human_bytes(removed.swept.freed)
    )?;
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
