//! `haul pull`: fill the cache with images, write no tar (a CI warm-up, or before going offline).

use super::{Global, image_request};
use crate::cli::PullArgs;
use crate::pipeline::LayerForm;

pub async fn run(global: &Global, args: PullArgs) -> anyhow::Result<()> {
    let request = image_request(&args.images)?;
    let session = global
        .session(&args.images, usize::from(args.downloads.jobs))
        .await?;
    let resolved = session.resolve(&request).await?;
    let plan = session
        .plan(resolved, &request.platforms, LayerForm::AsServed)
        .await?;
    session.pull(&plan).await?;
    Ok(())
}
