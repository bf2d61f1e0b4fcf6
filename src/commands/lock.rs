//! `haul lock`: each reference pinned by digest, as a list `haul export -f` reads. The input's
//! lines stay in order, with their comments; a reference pinned already is pinned again to
//! what its tag names now.

use std::io::Write as _;

use anyhow::Context;

use super::{Global, image_request_from, read_lists};
use crate::cli::LockArgs;
use crate::digest::Digest;
use crate::list::{ImageList, Line};
use crate::reference::Reference;
use crate::resolve::PlatformKey;

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
        for line in &mut list.lines {
            if let Line::Reference {
                text, reference, ..
            } = line
                && reference.tag().is_some()
                && let Some((name, _)) = text.clone().split_once('@')
            {
                *reference = name.parse()?;
                *text = name.to_string();
            }
        }
    }
    let request = image_request_from(&args.images, &lists)?;
    let session = global.session(&args.images, 4).await?;
    let resolved = session.resolve(&request).await?;
    // Per reference: the index for several platforms, else the image's own manifest.
    let several = request.platforms == crate::resolve::PlatformChoice::All
        || request.platforms.explicit().len() > 1;
    let mut pins: Vec<(Reference, Digest)> = Vec::new();
    for image in &resolved {
        let digest = match (&image.index, &image.platform_key) {
            (Some(index), PlatformKey::All) => &index.digest,
            (Some(index), _) if several => &index.digest,
            _ => &image.manifest.digest,
        };
        if !pins.iter().any(|(r, _)| *r == image.reference) {
            pins.push((image.reference.clone(), digest.clone()));
        }
    }
    let mut text = String::new();
    for list in &mut lists {
        for line in &mut list.lines {
            if let Line::Reference {
                text, reference, ..
            } = line
                && let Some((_, digest)) = pins.iter().find(|(r, _)| r == reference)
            {
                *text = pinned(text, reference, digest);
            }
        }
        text += &list.to_string();
    }
    match &args.output {
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
        Some(path) => {
            crate::fsx::write_atomic(path, text.as_bytes())
                .with_context(|| format!("cannot write the lock file {}", path.display()))?;
        }
    }
    Ok(())
}

/// `text` (as the user wrote it) pinned to `digest`, its tag spelt out: `busybox` →
/// `busybox:latest@sha256:…`.
fn pinned(text: &str, reference: &Reference, digest: &Digest) -> String {
    let name = text.split('@').next().unwrap_or(text);
    let last = name.rsplit('/').next().unwrap_or(name);
    match reference.tag() {
        Some(tag) if !last.contains(':') => format!("{name}:{tag}@{digest}"),
        _ => format!("{name}@{digest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_keep_the_name_as_written_and_spell_the_tag() {
        let digest = Digest::of(b"manifest");
        let pin = |text: &str| pinned(text, &text.parse().unwrap(), &digest);
        assert_eq!(pin("busybox"), format!("busybox:latest@{digest}"));
        assert_eq!(pin("nginx:1.27"), format!("nginx:1.27@{digest}"));
        assert_eq!(
            pin("127.0.0.1:5000/team/app:v1"),
            format!("127.0.0.1:5000/team/app:v1@{digest}")
        );
        assert_eq!(
            pin("localhost:5000/app"),
            format!("localhost:5000/app:latest@{digest}")
        );
    }
}
