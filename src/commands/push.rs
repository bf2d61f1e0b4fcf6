//! `haul push FILE|- DEST`: the images of a tar into a registry. The tar is checked whole
//! first, as `haul verify` checks it (nothing is pushed from a damaged tar); its blobs are then
//! read from the file in place (a parts set's from its parts). Standard input is first kept in a file in the cache folder
//! (removed afterwards), since a push reads blobs in the registry's order, not the tar's.

use anyhow::{Context, bail};

use super::load::say_rebuilt;
use super::{Global, print_pushed};
use crate::bundle::{Bundle, BundleFile};
use crate::cli::PushArgs;
use crate::push::Pusher;
use crate::push::delta::{AtDestination, ForPush, check_digests_kept, read_rebuilt};
use crate::push::tar::tar_images;
use crate::rebuild::Sources;

pub async fn run(global: &Global, args: PushArgs) -> anyhow::Result<()> {
    let jobs = usize::from(args.transfers.jobs);
    let session = global.session_with(&args.login, jobs, false).await?;
    let store = session.store().clone();
    // Blobs are read where they lie in the file (or across a parts set's files): a pipe or
    // device is kept in a file first.
    let (name, path, _spool) = crate::bundle::file::in_file(
        &args.tar,
        store.spool_path("push-stdin"),
        "haul export REF -o - | haul push - DEST",
    )
    .await?;
    // Blobs are read by offset: a compressed bundle is decompressed once, first.
    let (tar, _decompressed) = BundleFile::at(&path)?
        .seekable(&crate::rebuild::scratch_dir())
        .await
        .with_context(|| format!("cannot decompress {name}"))?;
    let bundle = tar
        .read()
        .await
        .with_context(|| format!("cannot open {name}"))?;
    if let Some(not) = bundle.not_an_image_tar(&name, "nothing was pushed") {
        return Err(not.into());
    }
    if !bundle.is_whole() {
        for problem in &bundle.problems {
            eprintln!("problem: {problem}");
        }
        bail!(
            "{name} is not whole ({} listed above; `haul verify` lists them too); nothing was pushed",
            if bundle.problems.len() == 1 {
                "the problem".to_string()
            } else {
                format!("{} problems", bundle.problems.len())
            }
        );
    }
    // A patch delta is rebuilt first, into a file in the cache folder, and that is pushed.
    let _rebuilt;
    let (tar, bundle) = if bundle.delta.as_ref().is_some_and(|d| !d.patched.is_empty()) {
        let spool = crate::fsx::Scratch {
            path: store.spool_path("push-rebuilt"),
        };
        let rebuilt = rebuild_for_push(&session, &args, &name, tar, bundle, &spool.path).await?;
        _rebuilt = spool;
        rebuilt
    } else {
        (tar, bundle)
    };
    let images = tar_images(
        &store,
        &tar,
        &bundle,
        &args.dest,
        args.as_name.as_deref(),
        args.platform.as_ref(),
        jobs,
    )
    .await?;
    let pusher = Pusher::new(
        session.client().clone(),
        &store,
        session.progress().clone(),
        jobs,
    );
    let summary = pusher
        .push(&images.images, &images.holders, &images.first)
        .await?;
    session.remember_transports();
    print_pushed(global, &summary);
    Ok(())
}

/// A patch delta, rebuilt into `path` from `--from`, else from the layers the destination
/// registry holds (see [`crate::push::delta`]), then read again.
async fn rebuild_for_push(
    session: &crate::pipeline::Session,
    args: &PushArgs,
    name: &str,
    tar: BundleFile,
    bundle: Bundle,
    path: &std::path::Path,
) -> anyhow::Result<(BundleFile, Bundle)> {
    check_digests_kept(&bundle, name, args.new_digests)?;
    let sources = if args.from.is_empty() {
        let wanted = AtDestination::of(&bundle, name, &args.dest, args.as_name.as_deref())?;
        let fetched = session.fetcher().fetch_all(&wanted.requests).await;
        wanted.sources(name, fetched)?
    } else {
        Sources::open(&args.from).await?
    };
    let (output, label) = (path.to_path_buf(), name.to_string());
    let (from_bundles, new_digests) = (!args.from.is_empty(), args.new_digests);
    crate::blocking::run(move || {
        ForPush {
            tar: &tar,
            bundle: &bundle,
            name: &label,
            sources: &sources,
            from_bundles,
            new_digests,
        }
        .write_file(&output, &mut say_rebuilt)
    })
    .await?;
    Ok(read_rebuilt(path.to_path_buf(), name).await?)
}
