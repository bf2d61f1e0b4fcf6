//! `haul inspect`: what images are, without downloading their layers (see
//! [`crate::inspect`]). The cache is left as resolving leaves it: manifests are kept, nothing
//! else.

use std::io::Write as _;

use super::{Global, image_request};
use crate::cli::InspectArgs;
use crate::fetch::FetchOptions;
use crate::inspect::render;

pub async fn run(global: &Global, args: InspectArgs) -> anyhow::Result<()> {
    let request = image_request(&args.images)?;
    let session = global
        .session(&args.images, FetchOptions::default().jobs)
        .await?;
    let inspections = session.inspect(&request).await?;
    let text = if args.json {
        serde_json::to_string_pretty(&inspections)? + "\n"
    } else {
        render(&inspections)
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}
