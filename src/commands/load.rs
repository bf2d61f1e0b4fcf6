//! `haul load FILE.tar`: the far side of a delta. The bundle is read once and checked as
//! `haul verify` checks it; a delta is loaded only if the engine holds every layer it left
//! out (else the error names what to load first); then `docker load` reads it.

use anyhow::{Context, bail};

use crate::bundle::Bundle;
use crate::cli::LoadArgs;
use crate::engine::Engine;

pub async fn run(args: &LoadArgs) -> anyhow::Result<()> {
    let name = args.tar.display().to_string();
    let file = tokio::fs::File::open(&args.tar)
        .await
        .with_context(|| format!("cannot open {name}"))?;
    let bundle = Bundle::read(file).await;
    let engine = Engine::local(args.host.clone());
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
    let path = args.tar.clone();
    let loader = engine.clone();
    let status = crate::blocking::run(move || {
        loader
            .docker(&["load", "-i", &path.to_string_lossy()])
            .status()
    })
    .await
    .context("cannot run `docker load`")?;
    if !status.success() {
        bail!(
            "{} of {name} failed ({status}); see its message above",
            engine.describe()
        );
    }
    Ok(())
}
