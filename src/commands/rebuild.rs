//! `haul rebuild DELTA --from PREV… -o FULL.tar`: a delta made whole again, for sites that
//! load with other tools. The work is [`crate::rebuild`]'s: its patched layers rebuilt from the
//! earlier bundles and checked, the layers it left out taken from them, the result an ordinary
//! bundle, written under a temporary name and renamed once whole.

use anyhow::Context;

use super::load::say_rebuilt;
use crate::bundle::BundleFile;
use crate::cli::RebuildArgs;
use crate::fsx::TempFile;
use crate::progress::human_bytes;
use crate::rebuild::{LeftOut, RebuildJob, RebuiltLayer, Sources, check_left_out, check_sources};

pub async fn run(args: &RebuildArgs, quiet: bool) -> anyhow::Result<()> {
    let file = BundleFile::at(&args.delta)?;
    let name = file.describe();
    // Patches are read by offset: a compressed delta is decompressed once, first.
    let (file, _decompressed) = file
        .seekable(&crate::rebuild::scratch_dir())
        .await
        .with_context(|| format!("cannot decompress {name}"))?;
    let delta = crate::rebuild::read_delta(&file).await?;
    let sources = Sources::open(&args.from).await?;
    check_sources(&delta, &sources)?;
    check_left_out(&delta, &sources)?;
    let output = args.output.display().to_string();
    let started = std::time::Instant::now();
    // Under a temporary name, held here: an interruption drops it, and the file goes with it.
    let temp = TempFile::create(&args.output).with_context(|| format!("cannot write {output}"))?;
    let written = temp.file.try_clone()?;
    let (size, rebuilt) = crate::blocking::run(move || {
        let rebuild = RebuildJob {
            delta: &delta,
            file: &file,
            sources: &sources,
            left_out: LeftOut::Fill(&sources),
            exact_only: false,
        };
        rebuild.write_synced(written, &output, &mut |layer| {
            if !quiet {
                say_rebuilt(layer);
            }
        })
    })
    .await
    .with_context(|| format!("{name} was not rebuilt; nothing was written"))?;
    temp.persist()
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    if !quiet {
        print_rebuilt(&args.output, size, &rebuilt, started);
    }
    Ok(())
}

fn print_rebuilt(
    output: &std::path::Path,
    size: u64,
    rebuilt: &[RebuiltLayer],
    started: std::time::Instant,
) {
    let content = rebuilt.iter().filter(|l| !l.exact).count();
    eprintln!(
        "wrote {} ({}) in {:.1} s: {} layer{} rebuilt ({} exact, {content} by content{})",
        output.display(),
        human_bytes(size),
        started.elapsed().as_secs_f64(),
        rebuilt.len(),
        if rebuilt.len() == 1 { "" } else { "s" },
        rebuilt.len() - content,
        if content > 0 {
            ": uncompressed under new manifest digests, the image IDs kept"
        } else {
            ""
        }
    );
}
