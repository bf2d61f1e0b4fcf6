//! `haul copy`: registry to registry through the cache. The sources are pulled into the cache
//! (or read from it with --offline), then pushed with every digest kept. As `cp` does with
//! folders: one SOURCE and DEST names the destination repository; several sources (or a list)
//! go under DEST as REGISTRY[/PREFIX], each keeping its repository and tag.

use super::{Global, print_pushed, read_lists, verify_keys};
use crate::cli::CopyArgs;
use crate::pipeline::{ImageRequest, LayerForm};
use crate::push::Pusher;
use crate::push::copy::FromCache;
use crate::push::tar::{check_destination, repository_of, single_target, target};
use crate::reference::Reference;
use crate::resolve::PlatformChoice;

pub async fn run(global: &Global, args: CopyArgs) -> anyhow::Result<()> {
    let (dest, sources) = args
        .paths
        .split_last()
        .expect("clap requires at least one path");
    let lists = read_lists(&args.file, args.login.password_stdin)?;
    let trust = verify_keys(&args.signatures)?;
    let mut references: Vec<Reference> = lists
        .iter()
        .flat_map(|list| list.references().cloned().collect::<Vec<_>>())
        .collect();
    for source in sources {
        references.push(source.parse()?);
    }
    let references = crate::list::distinct(references);
    anyhow::ensure!(
        !references.is_empty(),
        "nothing to copy: give SOURCE DEST, or a list with -f LIST and DEST"
    );
    let into_prefix = !args.file.is_empty() || sources.len() > 1;
    // One image: DEST is its repository. Check it before any download.
    let single = if into_prefix {
        check_destination(dest)?;
        None
    } else {
        Some(single_target(dest)?)
    };
    let platforms = PlatformChoice::asked(args.all_platforms, args.platform.as_slice())?;
    let jobs = usize::from(args.transfers.jobs);
    let session = global.session_with(&args.login, jobs, args.offline).await?;
    let request = ImageRequest {
        references,
        platforms,
    };
    let resolved = session.resolve(&request).await?;
    if !trust.is_empty() {
        crate::signature::registry::check_images(&session.lookup(), &resolved, &trust).await?;
    }
    let attachments = if args.signatures.referrers {
        session.lookup().attachments(&resolved).await?
    } else {
        Vec::new()
    };
    let plan = session
        .plan(resolved, &request.platforms, LayerForm::AsServed)
        .await?;
    session.pull(&plan).await?;
    let source = FromCache {
        client: session.client(),
        store: session.store(),
        fetcher: session.fetcher(),
        offline: args.offline,
    };
    let pusher = Pusher::new(
        session.client().clone(),
        session.store(),
        session.progress().clone(),
        jobs,
    );
    let summary = match single {
        Some((repository, tag)) => {
            source
                .copy(&pusher, &plan, &attachments, |source| {
                    // DEST's tag, else the source's; none for a digest alone.
                    let tags = match (&tag, source.tag()) {
                        (Some(tag), _) => vec![tag.clone()],
                        (None, Some(tag)) => vec![tag.to_string()],
                        (None, None) => Vec::new(),
                    };
                    (repository.clone(), tags)
                })
                .await?
        }
        None => {
            // Each under DEST with its own repository and tag (checked when parsed).
            let mut targets = Vec::new();
            for reference in &request.references {
                let name = repository_of(&reference.to_string())?;
                targets.push((reference.clone(), target(dest, &name, &name)?));
            }
            source
                .copy(&pusher, &plan, &attachments, |source| {
                    targets
                        .iter()
                        .find(|(r, _)| r == source)
                        .map(|(_, t)| t.clone())
                        .expect("every source has its target")
                })
                .await?
        }
    };
    session.remember_transports();
    print_pushed(global, &summary);
    Ok(())
}
