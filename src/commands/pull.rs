//! `haul pull`: fill the cache with images, write no tar (a CI warm-up, or before going offline).

use super::{Global, image_request, verify_keys};
use crate::cli::PullArgs;
use crate::pipeline::LayerForm;

pub async fn run(global: &Global, args: PullArgs) -> anyhow::Result<()> {
    let request = image_request(&args.images)?;
    let trust = verify_keys(&args.signatures)?;
    let session = global
        .session(&args.images, usize::from(args.downloads.jobs))
        .await?;
    if !args.keep_going {
        let resolved = session.resolve(&request).await?;
        if !trust.is_empty() {
            crate::signature::registry::check_images(&session.lookup(), &resolved, &trust).await?;
        }
        if args.signatures.referrers {
            session.lookup().attachments(&resolved).await?;
        }
        let plan = session
            .plan(resolved, &request.platforms, LayerForm::AsServed)
            .await?;
        session.pull(&plan).await?;
        return Ok(());
    }
    // --keep-going: what resolves is pulled; an image whose config or blobs fail spoils only
    // itself.
    let (resolved, failures) = session.resolve_each(&request).await?;
    if !trust.is_empty() {
        crate::signature::registry::check_images(&session.lookup(), &resolved, &trust).await?;
    }
    if args.signatures.referrers {
        session.lookup().attachments(&resolved).await?;
    }
    Ok(session.pull_each(&request, resolved, failures).await?)
}
