//! `haul pull`: fill the cache with images, write no tar (a CI warm-up, or before going offline).

use super::{Global, image_request, verify_keys};
use crate::cli::PullArgs;
use crate::list::ImageFailure;
use crate::pipeline::{LayerForm, PipelineError};
use crate::resolve::ResolvedImage;

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
    let (resolved, mut failures) = session.resolve_each(&request).await?;
    if !trust.is_empty() {
        crate::signature::registry::check_images(&session.lookup(), &resolved, &trust).await?;
    }
    if args.signatures.referrers {
        session.lookup().attachments(&resolved).await?;
    }
    // All together first (downloads in parallel across images); image by image only if that
    // fails, to tell which (what was fetched stays in the cache).
    let together = async {
        let plan = session
            .plan(resolved.clone(), &request.platforms, LayerForm::AsServed)
            .await?;
        session.pull(&plan).await
    };
    let resolved = match together.await {
        Ok(()) => Vec::new(),
        Err(_) => resolved,
    };
    let mut groups: Vec<Vec<ResolvedImage>> = Vec::new();
    for image in resolved {
        match groups
            .iter_mut()
            .find(|g| g[0].reference == image.reference)
        {
            Some(group) => group.push(image),
            None => groups.push(vec![image]),
        }
    }
    for group in groups {
        let reference = group[0].reference.clone();
        let pulled = async {
            let plan = session
                .plan(group, &request.platforms, LayerForm::AsServed)
                .await?;
            session.pull(&plan).await
        };
        if let Err(error) = pulled.await {
            failures.push((reference, error));
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    // In the order given.
    failures.sort_by_key(|(reference, _)| {
        request
            .references
            .iter()
            .position(|r| r == reference)
            .unwrap_or(usize::MAX)
    });
    Err(PipelineError::Images {
        total: request.references.len(),
        failures: failures
            .iter()
            .map(|(reference, error)| ImageFailure::new(reference, error))
            .collect(),
    }
    .into())
}
