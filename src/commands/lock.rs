//! `haul lock`: each reference pinned by digest, as a list `haul export -f` reads. The input's
//! lines stay in order, with their comments; a reference pinned already is pinned again to
//! what its tag names now.

use std::io::Write as _;

use anyhow::Context;

use super::{Global, image_request_from, read_lists};
use crate::cli::LockArgs;
use crate::list::{ImageList, Line};

pub async fn run(global: &Global, args: LockArgs) -> anyhow::Result<()> {
    let mut lists = read_lists(&args.images.file, args.images.login.password_stdin)?;
    // The references given as arguments, as one more list after the files'.
    let mut extra = ImageList::default();
    for text in &args.images.references {
        extra.lines.push(Line::Reference {
            text: text.clone(),
            reference: text.parse()?,
            comment: None,
        });
    }
    lists.push(extra);
    // Tags are what is pinned: a reference pinned before is resolved by its tag again.
    for list in &mut lists {
        list.unpin_tags()?;
    }
    let request = image_request_from(&args.images, &lists)?;
    let session = global.session(&args.images, 4).await?;
    let resolved = session.resolve(&request).await?;
    let several = request.platforms == crate::resolve::PlatformChoice::All
        || request.platforms.explicit().len() > 1;
    let pins = crate::list::pins(&resolved, several);
    let text: String = lists
        .iter_mut()
        .map(|list| {
            list.pin(&pins);
            list.to_string()
        })
        .collect();
    match &args.output {
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
        Some(path) => {
            crate::fsx::write_atomic(path, text.as_bytes())
                .with_context(|| format!("cannot write the lock file {}", path.display()))?;
        }
    }
    Ok(())
}
