//! `haul load FILE.tar`: the far side of a delta. The work is [`crate::load`]'s; this finds
//! the file (standard input is kept in one first) and prints what docker and the rebuild say.

use std::sync::Arc;

use crate::bundle::BundleFile;
use crate::cli::LoadArgs;
use crate::engine::Engine;
use crate::load::{Said, load_bundle};
use crate::progress::{Progress, human_bytes};
use crate::rebuild::RebuiltLayer;

pub async fn run(args: &LoadArgs, progress: Arc<dyn Progress>) -> anyhow::Result<()> {
    let engine = Engine::local(args.host.clone());
    // An engine this system cannot reach is refused before the bundle is read.
    engine.reachable_from_here()?;
    // A patch delta is read again to be rebuilt: standard input is kept in a file first.
    let spool =
        crate::rebuild::scratch_dir().join(format!(".haul-load-{}.tar", std::process::id()));
    let (name, path, spool) = crate::bundle::file::in_file(
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
    load_bundle(tar, &name, engine, &args.from, progress, print_said).await?;
    Ok(())
}

/// docker's lines go to standard output, as docker prints them; the rebuild's to standard
/// error.
pub fn print_said(said: Said<'_>) {
    match said {
        Said::Docker(line) => println!("{line}"),
        Said::Rebuilt(layer) => say_rebuilt(layer),
        // Layers that went in by content keep the image IDs, not the manifest digests.
        Said::ByContent(count) => eprintln!(
            "{count} layer{} went in by content (uncompressed, diff_id checked): the image \
             IDs are the registry's, the manifest digests are new",
            if count == 1 { "" } else { "s" }
        ),
    }
}

pub fn say_rebuilt(layer: &RebuiltLayer) {
    let how = if layer.exact {
        "exact: its blob, every digest kept".to_string()
    } else {
        format!("by content: uncompressed as {}", layer.digest.short())
    };
    eprintln!(
        "rebuilt layer {} ({}) from its patch, diff_id checked; {how}",
        layer.record.digest.short(),
        human_bytes(layer.size)
    );
}
