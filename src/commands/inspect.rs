//! `haul inspect`: what images are, without downloading their layers (see
//! [`crate::inspect`]), or what a bundle holds (an argument that names a file: see
//! [`crate::bundle::summary`]). The cache is left as resolving leaves it: manifests are kept,
//! nothing else.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context;

use super::{Global, image_request};
use crate::bundle::BundleFile;
use crate::bundle::summary::Summary;
use crate::cli::InspectArgs;
use crate::fetch::FetchOptions;
use crate::inspect::render;

pub async fn run(global: &Global, mut args: InspectArgs) -> anyhow::Result<()> {
    // A file is a bundle, read here; the rest are references.
    let (files, references): (Vec<String>, Vec<String>) =
        std::mem::take(&mut args.images.references)
            .into_iter()
            .partition(|r| Path::new(r).is_file());
    args.images.references = references;
    let mut bundles = Vec::new();
    for file in &files {
        bundles.push(bundle_listing(file).await?);
    }
    let mut json: Vec<serde_json::Value> = Vec::new();
    let mut text = String::new();
    for (file, summary, problems) in &bundles {
        if args.json {
            let mut value = serde_json::to_value(summary)?;
            value["file"] = file.clone().into();
            value["ok"] = problems.is_empty().into();
            value["problems"] = problems.clone().into();
            json.push(value);
        } else {
            text += &format!("{file}\n");
            for line in summary.render().lines() {
                text += &format!("  {line}\n");
            }
            for problem in problems {
                text += &format!("  problem: {problem}\n");
            }
        }
    }
    if !args.images.references.is_empty() || !args.images.file.is_empty() {
        let request = image_request(&args.images)?;
        let session = global
            .session(&args.images, FetchOptions::default().jobs)
            .await?;
        let inspections = session.inspect(&request).await?;
        if args.json {
            json.extend(
                inspections
                    .iter()
                    .map(serde_json::to_value)
                    .collect::<Result<Vec<_>, _>>()?,
            );
        } else {
            if !text.is_empty() {
                text.push('\n');
            }
            text += &render(&inspections);
        }
    }
    let text = if args.json {
        serde_json::to_string_pretty(&json)? + "\n"
    } else {
        text
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    let damaged: Vec<&String> = bundles
        .iter()
        .filter(|(_, _, problems)| !problems.is_empty())
        .map(|(file, _, _)| file)
        .collect();
    anyhow::ensure!(
        damaged.is_empty(),
        "{} not whole (`haul verify FILE` lists every problem)",
        match damaged.as_slice() {
            [one] => format!("{one} is"),
            many => format!(
                "{} are",
                many.iter()
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    );
    Ok(())
}

/// What the bundle at `file` holds, and what is wrong with it (shown, not fatal: a listing
/// of a damaged bundle still helps).
async fn bundle_listing(file: &str) -> anyhow::Result<(String, Summary, Vec<String>)> {
    let bundle = BundleFile::at(Path::new(file))?
        .read()
        .await
        .with_context(|| format!("cannot open {file}"))?;
    let problems = bundle.problems.iter().map(ToString::to_string).collect();
    Ok((file.to_string(), Summary::of(&bundle), problems))
}
