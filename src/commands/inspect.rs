//! `haul inspect`: what images are, without downloading their layers (see
//! [`crate::inspect`]), or what a bundle holds (an argument that names a file: see
//! [`crate::bundle::summary`]). The cache is left as resolving leaves it: manifests are kept,
//! nothing else.

use std::io::Write as _;
use std::path::Path;

use super::{Global, image_request};
use crate::bundle::summary::Listing;
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
        bundles.push(Listing::of(file).await?);
    }
    let mut json: Vec<serde_json::Value> = Vec::new();
    let mut text = String::new();
    for listing in &bundles {
        if args.json {
            json.push(listing.to_json()?);
        } else {
            text += &listing.text();
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
        .filter(|listing| !listing.problems.is_empty())
        .map(|listing| &listing.file)
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
