//! `haul cache ls | du | verify | prune | rm`: the cache's own commands. The work is
//! [`crate::cache::gc`]'s, the tables [`crate::cache::listing`]'s; this prints its summaries.

use std::io::Write;

use anyhow::bail;

use super::Global;
use crate::cache::prune::PrunePolicy;
use crate::cache::{BlobStore, LockMode, LockedFile, gc, listing};
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
        CacheCommand::Ls => Ok(listing::ls(&store, &mut std::io::stdout().lock())?),
        CacheCommand::Du => Ok(listing::du(&store, &mut std::io::stdout().lock())?),
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
