//! `haul pull`: fill the cache with images, write no tar (a CI warm-up, or before going offline).

use super::Global;
use super::images::prepare;
use crate::cli::PullArgs;

pub async fn run(global: &Global, args: PullArgs) -> anyhow::Result<()> {
    let prepared = prepare(global, &args.images, &args.downloads, false).await?;
    let mut downloads = prepared.fetcher.start(prepared.plan.blobs.clone());
    for blob in &prepared.plan.blobs {
        downloads.wait(&blob.descriptor.digest).await?;
    }
    prepared.record()
}
