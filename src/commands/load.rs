//! `haul load FILE.tar`: the far side of a delta. The bundle is read once and checked as
//! `haul verify` checks it; a delta is loaded only if the engine holds every layer it left
//! out (else the error names what to load first); then `docker load` reads it. Both passes
//! over the file show their progress (bytes, rate, time left), and the last line says what
//! was loaded.

use std::sync::Arc;

use anyhow::{Context, bail};

use crate::bundle::BundleFile;
use crate::cli::LoadArgs;
use crate::engine::Engine;
use crate::progress::{Event, Progress};

pub async fn run(args: &LoadArgs, progress: Arc<dyn Progress>) -> anyhow::Result<()> {
    let tar = BundleFile::at(&args.tar)?;
    let name = tar.describe();
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
    let engine = Engine::local(args.host.clone());
    if let Some(problem) = bundle.problems.first() {
        bail!(
            "{name} is not whole ({problem}; `haul verify {name}` lists every problem); nothing was loaded"
        );
    }
    if let Some(layer) = bundle
        .delta
        .as_ref()
        .and_then(|d| d.patched.values().next())
    {
        bail!(
            "{name} carries layer {} as a patch against layers the engine holds (a patch \
             delta, export --patch); this haul loads only whole layers and left-out ones. \
             Nothing was loaded: load the full bundle",
            layer.digest
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
                    bail!(
                        "{name} is a delta, and the engine lacks {missing} of the {} layers it \
                         left out: load {first} first (or export a full bundle); nothing was loaded",
                        delta.needed_chains.len()
                    );
                }
            }
            Err(why) => tracing::warn!(
                "cannot check that the engine holds the {} layers {name} left out ({why}); \
                 loading it anyway",
                delta.needed_chains.len()
            ),
        }
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
        loader.load(&mut stream, &mut |sent| {
            sending.event(Event::LoadProgress { bytes: sent });
        })
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
