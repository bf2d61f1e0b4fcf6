//! `haul push FILE|- DEST`: the images of a tar into a registry. The tar is checked whole
//! first, as `haul verify` checks it (nothing is pushed from a damaged tar); its blobs are then
//! read from the file in place (a parts set's from its parts). Standard input is first kept in a file in the cache folder
//! (removed afterwards), since a push reads blobs in the registry's order, not the tar's.

use anyhow::{Context, bail};

use super::{Global, print_pushed};
use crate::bundle::Place;
use crate::bundle::names::PatchSource;
use crate::bundle::names::{PatchedLayer, Rebuild};
use crate::bundle::{Bundle, BundleFile};
use crate::cli::PushArgs;
use crate::commands::rebuild::say_rebuilt;
use crate::export::tar::TarWriter;
use crate::fetch::BlobRequest;
use crate::manifest::Descriptor;
use crate::push::tar::tar_images;
use crate::push::tar::{repository_of, target};
use crate::rebuild::sources::Fetched;
use crate::rebuild::write::{LeftOut, write_bundle};
use crate::rebuild::{Sources, check_sources, rebuild_layers};

pub async fn run(global: &Global, args: PushArgs) -> anyhow::Result<()> {
    let jobs = usize::from(args.transfers.jobs);
    let session = global.session_with(&args.login, jobs, false).await?;
    let store = session.store().clone();
    // Blobs are read where they lie in the file (or across a parts set's files): a pipe or
    // device is kept in a file first.
    let (name, path, _spool) = super::tar_in_file(
        &args.tar,
        store.spool_path("push-stdin"),
        "haul export REF -o - | haul push - DEST",
    )
    .await?;
    let tar = BundleFile::at(&path)?;
    let bundle = tar
        .read()
        .await
        .with_context(|| format!("cannot open {name}"))?;
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
    let summary = session
        .pusher(jobs)
        .push(&images.images, &images.holders, &images.first)
        .await?;
    session.remember_transports();
    print_pushed(global, &summary);
    Ok(())
}

/// A patch delta, rebuilt into `path` from `--from`, else from the layers the destination
/// registry holds (fetched into the cache, each checked), its left-out layers still left out
/// (the registry holds them), then read again. Content-only layers change digests: refused
/// unless `--new-digests`, naming what the change breaks.
async fn rebuild_for_push(
    session: &crate::pipeline::Session,
    args: &PushArgs,
    name: &str,
    tar: BundleFile,
    bundle: Bundle,
    path: &std::path::Path,
) -> anyhow::Result<(BundleFile, Bundle)> {
    let content: Vec<&PatchedLayer> = bundle
        .delta
        .iter()
        .flat_map(|d| d.patched.values())
        .filter(|l| l.rebuild == Rebuild::Content)
        .collect();
    if !content.is_empty() && !args.new_digests {
        let digests: Vec<String> = bundle
            .images
            .iter()
            .filter(|image| {
                image.platforms.iter().any(|p| {
                    p.layers
                        .iter()
                        .any(|l| content.iter().any(|c| c.digest == l.digest))
                })
            })
            .map(|image| {
                let signed = bundle
                    .attachments
                    .iter()
                    .filter(|a| image.digests().contains(&&a.subject))
                    .count();
                format!(
                    "{} ({}{})",
                    image.label,
                    image
                        .digest()
                        .map_or_else(|| "no manifest".to_string(), ToString::to_string),
                    match signed {
                        0 => String::new(),
                        1 => ", and the 1 signature or attestation the tar carries for it"
                            .to_string(),
                        n => format!(
                            ", and the {n} signatures and attestations the tar carries for it"
                        ),
                    }
                )
            })
            .collect();
        bail!(
            "{} of {name}'s patched layers rebuild by content only (their compression cannot be \
             made again byte for byte): pushed, they go up uncompressed and these manifest \
             digests change: {}. Push with --new-digests to accept that (the image IDs are \
             kept), or push the full bundle. Nothing was pushed",
            content.len(),
            digests.join("; ")
        );
    }
    let sources = if args.from.is_empty() {
        from_destination(session, args, name, &bundle).await?
    } else {
        Sources::open(&args.from).await?
    };
    check_sources(&bundle, &sources).with_context(|| format!("{name}: nothing was pushed"))?;
    // Earlier bundles that also hold what the delta left out make it whole: then the
    // destination need not hold those layers (what it holds is not sent again).
    let fill =
        !args.from.is_empty() && crate::rebuild::write::check_left_out(&bundle, &sources).is_ok();
    let output = path.to_path_buf();
    let label = name.to_string();
    let new_digests = args.new_digests;
    crate::blocking::run(move || -> anyhow::Result<()> {
        let mut rebuilt = rebuild_layers(&bundle, &tar, &sources, &mut say_rebuilt)
            .with_context(|| format!("{label}: nothing was pushed"))?;
        // A layer recorded exact that did not come out so would change digests too.
        if let Some(layer) = rebuilt.iter().find(|l| !l.exact)
            && !new_digests
        {
            bail!(
                "layer {} of {label} did not rebuild to its very blob, so pushed its image \
                 would get a new manifest digest: push with --new-digests to accept that, or \
                 push the full bundle. Nothing was pushed",
                layer.record.digest
            );
        }
        let file = std::fs::File::create(&output)
            .with_context(|| format!("cannot create {}", output.display()))?;
        let mut writer = TarWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
        write_bundle(
            &bundle,
            &tar,
            &mut rebuilt,
            if fill {
                LeftOut::Fill(&sources)
            } else {
                LeftOut::Keep
            },
            &mut writer,
            &output.display().to_string(),
        )?;
        writer
            .finish()
            .and_then(|w| w.into_inner().map_err(std::io::IntoInnerError::into_error))
            .with_context(|| format!("cannot write {}", output.display()))?;
        Ok(())
    })
    .await?;
    let tar = BundleFile::Tar(path.to_path_buf());
    let bundle = tar
        .read()
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    if let Some(problem) = bundle.problems.first() {
        bail!("{name} rebuilt is not whole ({problem}); nothing was pushed");
    }
    Ok((tar, bundle))
}

/// The layers a patch delta is rebuilt from, fetched from where its images go: the site
/// registry that took the earlier bundle holds them, by digest, in the image's repository.
async fn from_destination(
    session: &crate::pipeline::Session,
    args: &PushArgs,
    name: &str,
    bundle: &Bundle,
) -> anyhow::Result<Sources> {
    let mut requests = Vec::new();
    let mut wanted: Vec<(PatchSource, String)> = Vec::new();
    let delta = bundle.delta.as_ref();
    for image in &bundle.images {
        let records: Vec<&PatchedLayer> = image
            .platforms
            .iter()
            .flat_map(|p| &p.layers)
            .filter(|l| l.place == Place::Patched)
            .filter_map(|l| delta?.patched.get(&l.path))
            .collect();
        if records.is_empty() {
            continue;
        }
        let repository = match (&args.as_name, image.names.first()) {
            (Some(as_name), _) => target(&args.dest, as_name, &image.label)?.0,
            (None, Some(first)) => target(&args.dest, &repository_of(first)?, first)?.0,
            (None, None) => bail!(
                "{} in {name} has no name to push it under; give --as REPOSITORY[:TAG]",
                image.label
            ),
        };
        for source in records.iter().flat_map(|r| &r.sources) {
            requests.push(BlobRequest::new(
                repository.clone(),
                Descriptor {
                    media_type: String::new(),
                    digest: source.digest.clone(),
                    size: source.size,
                    platform: None,
                    annotations: Default::default(),
                },
            ));
            wanted.push((source.clone(), repository.full_name()));
        }
    }
    let made_against = match delta.map(|d| d.since.join(", ")) {
        Some(names) if !names.is_empty() => names,
        _ => "the bundle it was made against".to_string(),
    };
    let fetched = session.fetch_blobs(&requests).await.with_context(|| {
        format!(
            "{name} is rebuilt from the layers the destination holds, and fetching one failed: \
             push {made_against} there first, or give the bundle that brought it with --from \
             PREV. Nothing was pushed"
        )
    })?;
    let mut sources = Sources::default();
    for (source, from) in wanted {
        if let Some(blob) = fetched.get(&source.digest) {
            sources.fetched.push(Fetched {
                diff_id: source.diff_id,
                path: blob.path.clone(),
                size: blob.size,
                from,
            });
        }
    }
    Ok(sources)
}
