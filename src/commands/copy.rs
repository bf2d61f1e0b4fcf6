//! `haul copy SOURCE DEST`: registry to registry through the cache. The source is pulled into
//! the cache (or read from it with --offline), then pushed with every digest kept.

use super::{Global, print_pushed};
use crate::cli::CopyArgs;
use crate::pipeline::{ImageRequest, LayerForm};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::resolve::PlatformChoice;

pub async fn run(global: &Global, args: CopyArgs) -> anyhow::Result<()> {
    let source: Reference = args.source.parse()?;
    if !args.dest.contains('/') {
        anyhow::bail!(
            "DEST {:?} names no repository: give REGISTRY/REPOSITORY[:TAG], e.g. \
             registry.site:5000/team/app",
            args.dest
        );
    }
    let dest: Reference = args.dest.parse()?;
    if dest.digest().is_some() {
        anyhow::bail!(
            "{}: give the destination as REGISTRY/REPOSITORY[:TAG], without a digest (the \
             digest is the source's, and is kept)",
            args.dest
        );
    }
    let platforms = if args.all_platforms {
        PlatformChoice::All
    } else {
        match &args.platform {
            Some(platform) => PlatformChoice::Some {
                platforms: vec![platform.parse::<Platform>()?],
                explicit: true,
            },
            None => PlatformChoice::Some {
                platforms: vec![Platform::host()],
                explicit: false,
            },
        }
    };
    let jobs = usize::from(args.transfers.jobs);
    let session = global.session_with(&args.login, jobs, args.offline).await?;
    let request = ImageRequest {
        references: vec![source],
        platforms,
    };
    let resolved = session.resolve(&request).await?;
    let plan = session
        .plan(resolved, &request.platforms, LayerForm::AsServed)
        .await?;
    session.pull(&plan).await?;
    // A tag DEST spells out (parsing fills in `latest` when it names none).
    let dest_tag = args
        .dest
        .rsplit('/')
        .next()
        .filter(|last| last.contains(':') && !args.dest.contains('@'))
        .and(dest.tag());
    let summary = session.copy(&plan, &dest, dest_tag, jobs).await?;
    print_pushed(global, &summary);
    Ok(())
}
