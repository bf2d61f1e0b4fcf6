//! A bundle into an engine (`haul load`, and `export --patch --load`): read once and checked
//! as `haul verify` checks it; a delta only into an engine that holds every layer it left out
//! (else the error names what to load first); a patch delta rebuilt first ([`crate::rebuild`]),
//! from earlier bundles or from the engine's own `docker save`, every layer checked before the
//! engine sees a byte. Both passes over the file are told to [`Progress`]; docker's own lines
//! and each rebuilt layer are told to the caller, which prints them.

use std::path::PathBuf;
use std::sync::Arc;

use crate::bundle::{Bundle, BundleFile};
use crate::engine::{Engine, EngineError};
use crate::export::tar::TarWriter;
use crate::fsx::Scratch;
use crate::progress::{Event, Progress};
use crate::rebuild::{LeftOut, RebuildError, RebuildJob, RebuiltLayer, Sources};

/// What a load tells its caller as it goes.
pub enum Said<'a> {
    /// A line `docker load` printed.
    Docker(&'a str),
    /// A patched layer rebuilt and checked.
    Rebuilt(&'a RebuiltLayer),
    /// How many patched layers went in by content (uncompressed), once loaded: their images
    /// keep their IDs, not their manifest digests.
    ByContent(usize),
}

/// Why a bundle was not loaded. Each message ends by saying nothing was loaded.
#[derive(Debug, thiserror::Error)]
pub enum BundleLoadError {
    #[error("cannot read {name}")]
    Read {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{name} is not whole ({problem}; `haul verify {name}` lists every problem); nothing was \
         loaded"
    )]
    NotWhole { name: String, problem: String },
    #[error(transparent)]
    NotAnImageTar(#[from] crate::bundle::NotAnImageTar),
    #[error(
        "{name} is a delta, and the engine lacks {missing} of the {needed} layers it left out: \
         load {first} first ({whole}); nothing was loaded"
    )]
    LacksLayers {
        name: String,
        missing: usize,
        needed: usize,
        first: String,
        whole: &'static str,
    },
    #[error(
        "{name} is a patch delta that names no image it was made against; give the earlier \
         bundle with --from PREV. Nothing was loaded"
    )]
    NoImageNamed { name: String },
    #[error("cannot write in {dir}")]
    Scratch {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{name} is patched against {images}, taken from the engine: load {them} first, or give \
         the earlier bundle with --from PREV. Nothing was loaded"
    )]
    Saved {
        name: String,
        images: String,
        them: &'static str,
        #[source]
        source: EngineError,
    },
    #[error("{name} cannot be rebuilt; nothing was loaded")]
    Rebuild {
        name: String,
        #[source]
        source: RebuildError,
    },
    #[error("cannot run {command}")]
    RemoteStart {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{command}: haul is not there; a patch delta is rebuilt by haul where the engine is. \
         Install it there (or set HAUL_REMOTE_COMMAND to its path), or export without --patch"
    )]
    RemoteMissing { command: String },
    #[error("{command} failed ({status}); see its message above")]
    RemoteFailed { command: String, status: String },
    #[error("{name} was not loaded")]
    Engine {
        name: String,
        #[source]
        source: crate::engine::LoadError,
    },
}

/// Loads the bundle `tar` (called `name` in messages) into `engine`; a patch delta is
/// rebuilt first, from the earlier bundles `from`, else from the engine's own images.
pub async fn load_bundle(
    tar: BundleFile,
    name: &str,
    engine: Engine,
    from: &[PathBuf],
    progress: Arc<dyn Progress>,
    said: fn(Said<'_>),
) -> Result<Vec<String>, BundleLoadError> {
    let name = name.to_string();
    let read_error = |source| BundleLoadError::Read {
        name: name.clone(),
        source,
    };
    let bytes = tar.len().map_err(read_error)?;
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
        .map_err(read_error)?
    };
    if let Some(not) = bundle.not_an_image_tar(&name, "nothing was loaded") {
        return Err(not.into());
    }
    if let Some(problem) = bundle.problems.first() {
        return Err(BundleLoadError::NotWhole {
            name,
            problem: problem.to_string(),
        });
    }
    check_engine_holds(&bundle, &engine, &name, from).await?;
    let images = if bundle.delta.as_ref().is_some_and(|d| !d.patched.is_empty()) {
        load_patched(from, tar, &name, bundle, &engine, &progress, said).await?
    } else {
        // What goes to the loader is the tar itself, decompressed when the file is not.
        let bytes = match &tar {
            BundleFile::Compressed(..) => bundle.tar_size(),
            _ => bytes,
        };
        progress.event(Event::LoadStep {
            step: "loading",
            path: name.clone(),
            bytes,
        });
        // A parts set stops at its first bad part: the loader is stopped before it sees the end.
        let mut stream = tar.stream().map_err(read_error)?;
        let (loader, sending) = (engine.clone(), progress.clone());
        crate::blocking::run(move || {
            loader.load(
                &mut stream,
                &mut |sent| sending.event(Event::LoadProgress { bytes: sent }),
                &mut |line| said(Said::Docker(line)),
            )
        })
        .await
        .map_err(|source| BundleLoadError::Engine {
            name: name.clone(),
            source,
        })?
    };
    progress.event(Event::Loaded {
        path: name,
        engine: engine.describe(),
        bytes,
        images: images.clone(),
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(images)
}

/// The patch delta at `path` into `engine`, rebuilt where the engine is: here, as
/// [`load_bundle`] does; over ssh, by the haul there (`haul load -`), which prints its own
/// lines.
pub async fn load_where_the_engine_is(
    engine: Engine,
    path: &std::path::Path,
    progress: Arc<dyn Progress>,
    said: fn(Said<'_>),
) -> Result<(), BundleLoadError> {
    let Some(mut remote) = engine.remote_haul(&["load", "-"]) else {
        let tar = BundleFile::Tar(path.to_path_buf());
        load_bundle(tar, "the patch delta", engine, &[], progress, said).await?;
        return Ok(());
    };
    let command = format!(
        "`{}`",
        std::iter::once(remote.get_program())
            .chain(remote.get_args())
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let delta = std::fs::File::open(path).map_err(|source| BundleLoadError::Read {
        name: format!("the patch delta {}", path.display()),
        source,
    })?;
    let status = crate::blocking::run(move || remote.stdin(delta).status())
        .await
        .map_err(|source| BundleLoadError::RemoteStart {
            command: command.clone(),
            source,
        })?;
    match status.code() {
        Some(0) => Ok(()),
        // ssh's remote shell: command not found.
        Some(127) => Err(BundleLoadError::RemoteMissing { command }),
        _ => Err(BundleLoadError::RemoteFailed {
            command,
            status: status.to_string(),
        }),
    }
}

/// A delta goes only into an engine that holds every layer it left out. An engine that
/// cannot be asked is warned about, and the load goes on.
async fn check_engine_holds(
    bundle: &Bundle,
    engine: &Engine,
    name: &str,
    from: &[PathBuf],
) -> Result<(), BundleLoadError> {
    let Some(delta) = bundle
        .delta
        .as_ref()
        .filter(|d| !d.needed_chains.is_empty())
    else {
        return Ok(());
    };
    let asked = engine.clone();
    match crate::blocking::run(move || asked.holdings().chains()).await {
        Ok(held) => {
            let missing = delta
                .needed_chains
                .iter()
                .filter(|chain| !held.contains(*chain))
                .count();
            if missing > 0 {
                return Err(BundleLoadError::LacksLayers {
                    name: name.to_string(),
                    missing,
                    needed: delta.needed_chains.len(),
                    first: if delta.since.is_empty() {
                        "the bundles it was made against".to_string()
                    } else {
                        delta.since.join(", ")
                    },
                    whole: if from.is_empty() {
                        "or export a full bundle"
                    } else {
                        "--from only gives what its patches are made against; `haul rebuild \
                         DELTA --from PREV -o FULL.tar` writes a whole bundle"
                    },
                });
            }
        }
        Err(why) => tracing::warn!(
            "cannot check that the engine holds the {} layers {name} left out ({}); loading it \
             anyway",
            delta.needed_chains.len(),
            crate::error::describe(&why)
        ),
    }
    Ok(())
}

/// A patch delta: its layers rebuilt from `from` or from the engine's own copies of the
/// images it names (`docker save`), each checked, before the engine sees a byte; then the
/// bundle, rebuilt, streams into `docker load`.
async fn load_patched(
    from: &[PathBuf],
    tar: BundleFile,
    name: &str,
    bundle: Bundle,
    engine: &Engine,
    progress: &Arc<dyn Progress>,
    said: fn(Said<'_>),
) -> Result<Vec<String>, BundleLoadError> {
    // The engine's copy is kept only while this runs.
    let (sources, _saved) = if from.is_empty() {
        let (sources, saved) = saved_by_engine(&bundle, engine, name, progress).await?;
        (sources, Some(saved))
    } else {
        let sources = Sources::open(from)
            .await
            .map_err(|source| BundleLoadError::Rebuild {
                name: name.to_string(),
                source,
            })?;
        (sources, None)
    };
    crate::rebuild::check_sources(&bundle, &sources).map_err(|source| {
        BundleLoadError::Rebuild {
            name: name.to_string(),
            source,
        }
    })?;
    progress.event(Event::LoadStep {
        step: "rebuilding",
        path: name.to_string(),
        bytes: 0,
    });
    // Patches are read by offset: a compressed delta is decompressed once, first.
    let (tar, _decompressed) =
        tar.seekable(&crate::rebuild::scratch_dir())
            .await
            .map_err(|source| BundleLoadError::Read {
                name: name.to_string(),
                source,
            })?;
    let (loader, sending, described) = (engine.clone(), progress.clone(), name.to_string());
    let output = engine.describe();
    crate::blocking::run(move || -> Result<Vec<String>, BundleLoadError> {
        let rebuild = RebuildJob {
            delta: &bundle,
            file: &tar,
            sources: &sources,
            left_out: LeftOut::Keep,
            exact_only: false,
        };
        let rebuild_error = |source| BundleLoadError::Rebuild {
            name: described.clone(),
            source,
        };
        let mut rebuilt = rebuild
            .layers(&mut |layer| said(Said::Rebuilt(layer)))
            .map_err(rebuild_error)?;
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
                match rebuild.write(layers, &mut out, &output) {
                    Ok(()) => {
                        let _ = out.into_inner().finish();
                    }
                    Err(e) => out.into_inner().fail(std::io::Error::other(e.to_string())),
                }
            });
            // The reader goes when the loader is done with it, whatever happened: a writer
            // still sending then stops (the pipe is broken) instead of waiting forever.
            let mut reader = reader;
            let loaded = loader.load(
                &mut reader,
                &mut |sent| sending.event(Event::LoadProgress { bytes: sent }),
                &mut |line| said(Said::Docker(line)),
            );
            drop(reader);
            loaded
        })
        .map_err(|source| BundleLoadError::Engine {
            name: described.clone(),
            source,
        })?;
        let by_content = rebuilt.iter().filter(|l| !l.exact).count();
        if by_content > 0 {
            said(Said::ByContent(by_content));
        }
        Ok(images)
    })
    .await
}

/// The engine's own copy of the images the delta names, saved into a scratch file: what its
/// patches are rebuilt from when no earlier bundle is given.
async fn saved_by_engine(
    bundle: &Bundle,
    engine: &Engine,
    name: &str,
    progress: &Arc<dyn Progress>,
) -> Result<(Sources, Scratch), BundleLoadError> {
    let names = bundle
        .delta
        .as_ref()
        .map(|d| d.since.clone())
        .unwrap_or_default();
    if names.is_empty() {
        return Err(BundleLoadError::NoImageNamed {
            name: name.to_string(),
        });
    }
    progress.event(Event::LoadStep {
        step: "saving",
        path: names.join(", "),
        bytes: 0,
    });
    let scratch = crate::rebuild::scratch_dir();
    // A new file: never one a link left there points at.
    let (save, file) = Scratch::create(&scratch, "engine-save.tar").map_err(|source| {
        BundleLoadError::Scratch {
            dir: scratch.clone(),
            source,
        }
    })?;
    let (asked, listed) = (engine.clone(), names.clone());
    crate::blocking::run(move || asked.save(&listed, file))
        .await
        .map_err(|source| BundleLoadError::Saved {
            name: name.to_string(),
            images: names.join(", "),
            them: if names.len() == 1 { "it" } else { "them" },
            source,
        })?;
    let earlier = Sources::read(BundleFile::Tar(save.path.clone()))
        .await
        .map_err(|source| BundleLoadError::Rebuild {
            name: name.to_string(),
            source,
        })?;
    Ok((
        Sources {
            earlier: vec![earlier],
            fetched: Vec::new(),
        },
        save,
    ))
}
