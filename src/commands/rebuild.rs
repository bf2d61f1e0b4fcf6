//! `haul rebuild DELTA --from PREV… -o FULL.tar`: a delta made whole again, for sites that
//! load with other tools. Its patched layers are rebuilt from the earlier bundles and checked
//! (see `crate::rebuild`), the layers it left out are taken from them, and the result is an
//! ordinary bundle, written under a temporary name and renamed once whole.

use anyhow::{Context, bail};

use crate::bundle::{Bundle, BundleFile};
use crate::cli::RebuildArgs;
use crate::export::tar::TarWriter;
use crate::fsx::TempFile;
use crate::progress::human_bytes;
use crate::rebuild::write::{LeftOut, write_bundle};
use crate::rebuild::{RebuiltLayer, Sources, check_sources, rebuild_layers};

pub async fn run(args: &RebuildArgs, quiet: bool) -> anyhow::Result<()> {
    let (file, delta) = read_delta(&args.delta).await?;
    let name = file.describe();
    if delta.delta.is_none() {
        bail!("{name} is not a delta (it has no haul-delta.json): it is whole already");
    }
    let sources = Sources::open(&args.from).await?;
    check_sources(&delta, &sources)?;
    crate::rebuild::write::check_left_out(&delta, &sources)?;
    let output = args.output.clone();
    let started = std::time::Instant::now();
    let (size, rebuilt) = crate::blocking::run(move || -> anyhow::Result<_> {
        let mut rebuilt = rebuild_layers(&delta, &file, &sources, &mut |layer| {
            if !quiet {
                say_rebuilt(layer);
            }
        })?;
        let temp = TempFile::create(&output)
            .with_context(|| format!("cannot write {}", output.display()))?;
        let mut writer = TarWriter::new(std::io::BufWriter::with_capacity(
            1 << 20,
            temp.file.try_clone()?,
        ));
        write_bundle(
            &delta,
            &file,
            &mut rebuilt,
            LeftOut::Fill(&sources),
            &mut writer,
            &output.display().to_string(),
        )?;
        let size = writer.finished_size();
        let written = writer
            .finish()
            .and_then(|w| w.into_inner().map_err(std::io::IntoInnerError::into_error))
            .with_context(|| format!("cannot write {}", output.display()))?;
        written.sync_all()?;
        temp.persist()
            .with_context(|| format!("cannot write {}", output.display()))?;
        Ok((size, rebuilt))
    })
    .await
    .with_context(|| format!("{name} was not rebuilt; nothing was written"))?;
    if !quiet {
        let content = rebuilt.iter().filter(|l| !l.exact).count();
        eprintln!(
            "wrote {} ({}) in {:.1} s: {} layer{} rebuilt ({} exact, {content} by content{})",
            args.output.display(),
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
    Ok(())
}

/// Reads a delta whole; a damaged one is refused before any work.
pub async fn read_delta(path: &std::path::Path) -> anyhow::Result<(BundleFile, Bundle)> {
    let file = BundleFile::at(path)?;
    let name = file.describe();
    let bundle = file
        .read()
        .await
        .with_context(|| format!("cannot read {name}"))?;
    if let Some(problem) = bundle.problems.first() {
        bail!(
            "{name} is not whole ({problem}; `haul verify {name}` lists every problem); \
             nothing was rebuilt"
        );
    }
    Ok((file, bundle))
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
