//! `haul export`: resolve → plan → fetch → export, for one tar holding every image asked for.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::load::print_said;
use super::{Global, image_request, verify_keys};
use crate::cli::{ExportArgs, Format};
use crate::delta::Receipt;
use crate::engine::Engine;
use crate::export::parts::Split;
use crate::export::{Layout, Output};
use crate::pipeline::{Carried, LayerForm};

/// Where `-o` (or its absence) sends the tar, before the images are known.
enum Target {
    Ready(Output),
    /// The default file name, in this folder.
    DefaultName(PathBuf),
}

pub async fn run(global: &Global, args: ExportArgs) -> anyhow::Result<()> {
    let request = image_request(&args.images)?;
    let trust = verify_keys(&args.signatures)?;
    // The trusted root travels with what refers to the images, for `haul verify` at the site.
    let trusted_root = match (
        &args.signatures.keyless.trusted_root,
        args.signatures.referrers,
    ) {
        (Some(path), true) => Some(crate::signature::keyless::trust::TrustedRoot::read_bytes(
            path,
        )?),
        _ => None,
    };
    let count = request.references.len();
    let target = match args.output.as_deref() {
        _ if args.load => {
            let engine = Engine::local(None);
            engine.reachable_from_here()?;
            Target::Ready(Output::Engine(engine))
        }
        _ if args.to.is_some() => Target::Ready(Output::Engine(Engine::ssh(
            args.to.as_deref().unwrap_or_default(),
        )?)),
        Some("-") => {
            if std::io::stdout().is_terminal() {
                bail!(
                    "refusing to write a tar to the terminal; redirect it (-o - > file.tar, or | docker load) or give -o FILE"
                );
            }
            Target::Ready(Output::Stdout)
        }
        // A folder, as `cp` takes one: the tar gets its default name inside it.
        Some(path) if path.ends_with('/') || Path::new(path).is_dir() => {
            if count > 1 {
                bail!(
                    "{count} images go into one tar: name it with -o {}/FILE (-o DIR names a tar after its one image)",
                    path.trim_end_matches('/')
                );
            }
            Target::DefaultName(PathBuf::from(path))
        }
        Some(path) => Target::Ready(Output::File(PathBuf::from(path))),
        None if count > 1 => {
            bail!(
                "{count} images go into one tar: name it with -o FILE (or -o - for standard output)"
            )
        }
        None => Target::DefaultName(PathBuf::new()),
    };

    let layout = match args.format {
        Format::Docker => Layout::Docker,
        Format::DockerV1 => Layout::DockerV1,
        Format::Oci => Layout::Oci,
    };
    let platforms = if args.images.all_platforms {
        usize::MAX
    } else {
        args.images.platform.len()
    };
    if platforms > 1 && layout != Layout::Oci {
        bail!(
            "the docker formats hold one platform per image name (docker load keeps one); \
             use --format oci to export several platforms as one index"
        );
    }
    // The classic layout's layer.tar files are uncompressed tars.
    let layers = if args.decompress || layout == Layout::DockerV1 {
        LayerForm::Uncompressed
    } else {
        LayerForm::AsServed
    };
    // What the destination holds, read before anything is fetched: a bad --since fails fast.
    let mut since = Vec::new();
    for path in &args.since {
        since.push(Receipt::read(path).await?);
    }
    let session = global
        .session(&args.images, usize::from(args.downloads.jobs))
        .await?;
    let resolved = session.resolve(&request).await?;
    if !trust.is_empty() {
        crate::signature::registry::check_images(&session.lookup(), &resolved, &trust).await?;
    }
    let attachments = if args.signatures.referrers {
        session.lookup().attachments(&resolved).await?
    } else {
        Vec::new()
    };
    let plan = session.plan(resolved, &request.platforms, layers).await?;
    let output = match target {
        Target::Ready(output) => output,
        Target::DefaultName(folder) => {
            Output::File(folder.join(plan.default_file_name(args.images.all_platforms)))
        }
    };
    let output = match (output, args.split) {
        (Output::File(path), Some(part_size)) => Output::Parts(Split {
            path,
            part_size,
            parity: args.parity.map_or(0, usize::from),
        }),
        (output, _) => output,
    };
    if let Some(earlier) =
        crate::delta::unrelated(plan.images.iter().map(|i| i.diff_ids.as_slice()), &since)
        && !global.quiet
    {
        let earlier = match earlier.len() {
            0 => "images without names".to_string(),
            n if n > 3 => format!("{} and {} more", earlier[..3].join(", "), n - 3),
            _ => earlier.join(", "),
        };
        eprintln!(
            "warning: these images share no layer with the earlier bundles given with --since \
             (they hold {earlier}): nothing is left out{}. Is that the receipt (or tar) of \
             what this destination loaded?",
            if args.patch {
                ", though --patch may still patch layers against theirs"
            } else {
                "; the bundle is whole"
            }
        );
    }
    let destination = session.destination(since, &output, args.full).await;
    // A patch delta for an engine is written to a file in the cache folder first, then
    // loaded as `haul load` loads one: rebuilt from the engine's own layers (over ssh, by
    // the haul there) before the engine sees it.
    let (output, patched_for) = match output {
        Output::Engine(engine) if args.patch && !args.dry_run => {
            let file = crate::fsx::Scratch {
                path: session.store().spool_path("export-patch-delta"),
            };
            (Output::File(file.path.clone()), Some((engine, file)))
        }
        output => (output, None),
    };
    let carried = Carried {
        attachments: &attachments,
        trusted_root: trusted_root.as_deref(),
    };
    if args.dry_run {
        let measured = session.measure(&plan, &carried, layout, &destination)?;
        for line in measured.lines(&output, args.patch) {
            println!("{line}");
        }
        return Ok(());
    }
    let exported = session
        .export(&plan, &carried, layout, &output, &destination, args.patch)
        .await?;
    if !global.quiet {
        for line in exported
            .patches
            .iter()
            .filter_map(crate::export::PatchOutcome::line)
        {
            eprintln!("{line}");
        }
    }
    if let Some((engine, delta)) = patched_for {
        let progress = global.progress.clone();
        crate::load::load_where_the_engine_is(engine, &delta.path, progress, print_said).await?;
    }
    if let Some(root) = &trusted_root
        && !global.quiet
    {
        let digest = crate::digest::Digest::of(root);
        eprintln!(
            "the tar carries the trusted root {digest}: at the site, pin it with \
             `haul verify … --trusted-root-digest {digest}`"
        );
    }
    if let Some(path) = args.receipt {
        let receipt = Receipt::new(exported.bundle);
        crate::blocking::run({
            let path = path.clone();
            move || receipt.write(&path)
        })
        .await
        .with_context(|| format!("cannot write the receipt {}", path.display()))?;
    }
    Ok(())
}
