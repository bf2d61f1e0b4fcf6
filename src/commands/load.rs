//! `haul load FILE.tar`: the far side of a delta. The bundle is read once and checked as
//! `haul verify` checks it; a delta is loaded only if the engine holds every layer it left
//! out (else the error names what to load first); then `docker load` reads it. Both passes
//! over the file show their progress (bytes, rate, time left), and the last line says what
//! was loaded.

use std::sync::Arc;

use anyhow::{Context, bail};

use crate::bundle::BundleFile;
use crate::cli::LoadArgs;
use crate::commands::rebuild::say_rebuilt;
use crate::engine::Engine;
use crate::export::tar::TarWriter;
use crate::progress::{Event, Progress};
use crate::rebuild::write::{LeftOut, write_bundle};
use crate::rebuild::{Sources, check_sources, rebuild_layers};

pub async fn run(args: &LoadArgs, progress: Arc<dyn Progress>) -> anyhow::Result<()> {
    let engine = Engine::local(args.host.clone());
    // An engine this system cannot reach is refused before the bundle is read.
    engine.reachable_from_here()?;
    // A patch delta is read again to be rebuilt: standard input is kept in a file first.
    let spool =
        crate::rebuild::scratch_dir().join(format!(".haul-load-{}.tar", std::process::id()));
    let (name, path, spool) = super::tar_in_file(
        &args.tar,
        spool,
        "haul export REF --since PREV --patch -o - | haul load -",
    )
    .await?;
    let tar = BundleFile::at(&path)?;
    // A file by its own name (a parts set by its record's); standard input as such.
    let name = if spool.is_some() {
        name
    } else {
        tar.describe()
    };
    load_bundle(tar, &name, engine, &args.from, progress).await
}

/// Loads the bundle `tar` (called `name` in messages) into `engine`; a patch delta is
/// rebuilt first, from the earlier bundles `from`, else from the engine's own images.
pub async fn load_bundle(
    tar: BundleFile,
    name: &str,
    engine: Engine,
    from: &[std::path::PathBuf],
    progress: Arc<dyn Progress>,
) -> anyhow::Result<()> {
    let name = name.to_string();
    let bytes = tar.len().with_context(|| format!("cannot read {name}"))?;
    let started = std::time::Instant::now();
    progress.event(Event::LoadStep {
        step: "checking",
        path: name.clone(),
        bytes,
    });
    let bundle = {
        let progress = progress.clone();
        tar.read_counting(move |read| {
            progress.event(Event::LoadProgress { bytes: read });
        })
        .await
        .with_context(|| format!("cannot read {name}"))?
    };
    if let Some(problem) = bundle.problems.first() {
        bail!(
            "{name} is not whole ({problem}; `haul verify {name}` lists every problem); nothing was loaded"
        );
    }
    if let Some(delta) = bundle
        .delta
        .as_ref()
        .filter(|d| !d.needed_chains.is_empty())
    {
        let asked = engine.clone();
        match crate::blocking::run(move || asked.holdings().chains()).await {
            Ok(held) => {
                let missing = delta
                    .needed_chains
                    .iter()
                    .filter(|chain| !held.contains(*chain))
                    .count();
                if missing > 0 {
                    let first = if delta.since.is_empty() {
                        "the bundles it was made against".to_string()
                    } else {
                        delta.since.join(", ")
                    };
                    let whole = if from.is_empty() {
                        "or export a full bundle"
                    } else {
                        "--from only gives what its patches are made against; `haul rebuild \
                         DELTA --from PREV -o FULL.tar` writes a whole bundle"
                    };
                    bail!(
                        "{name} is a delta, and the engine lacks {missing} of the {} layers it \
                         left out: load {first} first ({whole}); nothing was loaded",
                        delta.needed_chains.len()
                    );
                }
            }
            Err(why) => tracing::warn!(
                "cannot check that the engine holds the {} layers {name} left out ({}); \
                 loading it anyway",
                delta.needed_chains.len(),
                crate::error::describe(&why)
            ),
        }
    }
    if bundle.delta.as_ref().is_some_and(|d| !d.patched.is_empty()) {
        return load_patched(from, tar, name, bundle, engine, progress, started).await;
    }
    progress.event(Event::LoadStep {
        step: "loading",
        path: name.clone(),
        bytes,
    });
    // A parts set stops at its first bad part: the loader is stopped before it sees the end.
    let mut stream = tar
        .stream()
        .with_context(|| format!("cannot open {name}"))?;
    let (loader, sending) = (engine.clone(), progress.clone());
    let images = crate::blocking::run(move || {
        loader.load(
            &mut stream,
            &mut |sent| sending.event(Event::LoadProgress { bytes: sent }),
            &mut print_docker_line,
        )
    })
    .await
    .with_context(|| format!("{name} was not loaded"))?;
    progress.event(Event::Loaded {
        path: name,
        engine: engine.describe(),
        bytes,
        images,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(())
}

/// A patch delta: its layers rebuilt from `--from` or from the engine's own copies of the
/// images it names (`docker save`), each checked, before the engine sees a byte; then the
/// bundle, rebuilt, streams into `docker load`.
async fn load_patched(
    from: &[std::path::PathBuf],
    tar: BundleFile,
    name: String,
    bundle: crate::bundle::Bundle,
    engine: Engine,
    progress: Arc<dyn Progress>,
    started: std::time::Instant,
) -> anyhow::Result<()> {
    let bytes = tar.len().unwrap_or_default();
    let scratch = crate::rebuild::scratch_dir();
    // The engine's copy is kept only while this runs.
    let mut saved: Option<crate::fsx::Scratch> = None;
    let sources = if from.is_empty() {
        let names = bundle
            .delta
            .as_ref()
            .map(|d| d.since.clone())
            .unwrap_or_default();
        if names.is_empty() {
            bail!(
                "{name} is a patch delta that names no image it was made against; give the \
                 earlier bundle with --from PREV. Nothing was loaded"
            );
        }
        progress.event(Event::LoadStep {
            step: "saving",
            path: names.join(", "),
            bytes: 0,
        });
        // A new file: never one a link left there points at.
        let (save, file) = crate::fsx::Scratch::create(&scratch, "engine-save.tar")
            .with_context(|| format!("cannot write in {}", scratch.display()))?;
        let (asked, listed) = (engine.clone(), names.clone());
        crate::blocking::run(move || asked.save(&listed, file))
            .await
            .with_context(|| {
                format!(
                    "{name} is patched against {}, taken from the engine: load {} first, or \
                     give the earlier bundle with --from PREV. Nothing was loaded",
                    names.join(", "),
                    if names.len() == 1 { "it" } else { "them" }
                )
            })?;
        let file = BundleFile::Tar(save.path.clone());
        saved = Some(save);
        Sources {
            earlier: vec![Sources::read(file).await?],
            fetched: Vec::new(),
        }
    } else {
        Sources::open(from).await?
    };
    check_sources(&bundle, &sources)
        .with_context(|| format!("{name} cannot be rebuilt; nothing was loaded"))?;
    progress.event(Event::LoadStep {
        step: "rebuilding",
        path: name.clone(),
        bytes: 0,
    });
    let (loader, sending) = (engine.clone(), progress.clone());
    let output = engine.describe();
    let described = name.clone();
    let (images, rebuilt) = crate::blocking::run(move || -> anyhow::Result<_> {
        let mut rebuilt = rebuild_layers(&bundle, &tar, &sources, &mut say_rebuilt)
            .with_context(|| format!("{described}: nothing was loaded"))?;
        let bytes = bundle.contents.bytes + rebuilt.iter().map(|l| l.size).sum::<u64>();
        sending.event(Event::LoadStep {
            step: "loading",
            path: described.clone(),
            bytes,
        });
        let (writer, reader) = crate::blocking::pipe();
        let layers = &mut rebuilt;
        let images = std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut out = TarWriter::new(writer);
                match write_bundle(&bundle, &tar, layers, LeftOut::Keep, &mut out, &output) {
                    // The end-of-archive marker, then the end of the stream.
                    Ok(()) => match out.end() {
                        Ok(()) => {
                            let _ = out.into_inner().finish();
                        }
                        Err(e) => out.into_inner().fail(e),
                    },
                    Err(e) => out.into_inner().fail(std::io::Error::other(e.to_string())),
                }
            });
            // The reader goes when the loader is done with it, whatever happened: a writer
            // still sending then stops (the pipe is broken) instead of waiting forever.
            let mut reader = reader;
            let loaded = loader.load(
                &mut reader,
                &mut |sent| sending.event(Event::LoadProgress { bytes: sent }),
                &mut print_docker_line,
            );
            drop(reader);
            loaded
        })
        .with_context(|| format!("{described} was not loaded"))?;
        Ok((images, rebuilt))
    })
    .await?;
    drop(saved);
    let content = rebuilt.iter().filter(|l| !l.exact).count();
    if content > 0 {
        eprintln!(
            "{content} layer{} went in by content (uncompressed, diff_id checked): the image \
             IDs are the registry's, the manifest digests are new",
            if content == 1 { "" } else { "s" }
        );
    }
    progress.event(Event::Loaded {
        path: name,
        engine: engine.describe(),
        bytes,
        images,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(())
}

/// What `docker load` prints goes to standard output, as docker prints it.
fn print_docker_line(line: &str) {
    println!("{line}");
}
