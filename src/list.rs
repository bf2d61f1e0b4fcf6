//! Image lists (`-f FILE`): one reference per line; `#` starts a comment (a whole line, or
//! after the reference); blank lines are ignored. A lock file (`haul lock`) is such a list,
//! each reference pinned by digest, its comments kept.

use std::fmt;

use crate::digest::Digest;
use crate::reference::{Reference, ReferenceError};
use crate::resolve::{PlatformKey, ResolvedImage};

/// One line of a list, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A reference, as written, and what follows it on the line (a comment), if anything.
    Reference {
        text: String,
        reference: Reference,
        comment: Option<String>,
    },
    /// A comment or blank line, kept as it is.
    Other(String),
}

/// A list read from a file (or standard input).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageList {
    pub lines: Vec<Line>,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {source}")]
pub struct ListError {
    /// The file, as the user named it (`standard input` for `-`).
    pub file: String,
    pub line: usize,
    #[source]
    pub source: ReferenceError,
}

impl ImageList {
    /// Parses `text`, read from `file` (named so in errors).
    pub fn parse(file: &str, text: &str) -> Result<ImageList, ListError> {
        let mut lines = Vec::new();
        for (number, raw) in text.lines().enumerate() {
            let (content, comment) = match raw.find('#') {
                Some(at) => (&raw[..at], Some(raw[at..].to_string())),
                None => (raw, None),
            };
            let text = content.trim();
            if text.is_empty() {
                lines.push(Line::Other(raw.to_string()));
                continue;
            }
            let reference = text.parse::<Reference>().map_err(|source| ListError {
                file: file.to_string(),
                line: number + 1,
                source,
            })?;
            lines.push(Line::Reference {
                text: text.to_string(),
                reference,
                comment,
            });
        }
        Ok(ImageList { lines })
    }

    /// Each reference pinned by digest (`name:tag@sha256:…`) becomes its tag again
    /// (`name:tag`), so that it is resolved anew.
    pub fn unpin_tags(&mut self) -> Result<(), ReferenceError> {
        for line in &mut self.lines {
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
        Ok(())
    }

    /// Each reference `pins` names pinned to its digest, as written with its tag spelt out.
    pub fn pin(&mut self, pins: &[(Reference, Digest)]) {
        for line in &mut self.lines {
            if let Line::Reference {
                text, reference, ..
            } = line
                && let Some((_, digest)) = pins.iter().find(|(r, _)| r == reference)
            {
                *text = pinned(text, reference, digest);
            }
        }
    }

    /// The references, in order.
    pub fn references(&self) -> impl Iterator<Item = &Reference> {
        self.lines.iter().filter_map(|line| match line {
            Line::Reference { reference, .. } => Some(reference),
            Line::Other(_) => None,
        })
    }
}

impl fmt::Display for ImageList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            match line {
                Line::Reference { text, comment, .. } => match comment {
                    Some(comment) => writeln!(f, "{text}  {comment}")?,
                    None => writeln!(f, "{text}")?,
                },
                Line::Other(text) => writeln!(f, "{text}")?,
            }
        }
        Ok(())
    }
}

/// What `haul lock` pins each reference to: for several platforms the index, else the image's
/// own manifest.
pub fn pins(resolved: &[ResolvedImage], several: bool) -> Vec<(Reference, Digest)> {
    let mut pins: Vec<(Reference, Digest)> = Vec::new();
    for image in resolved {
        let digest = match (&image.index, &image.platform_key) {
            (Some(index), PlatformKey::All) => &index.digest,
            (Some(index), _) if several => &index.digest,
            _ => &image.manifest.digest,
        };
        if !pins.iter().any(|(r, _)| *r == image.reference) {
            pins.push((image.reference.clone(), digest.clone()));
        }
    }
    pins
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

/// One image of a list that failed, and why (its whole error, on one line).
#[derive(Debug)]
pub struct ImageFailure {
    pub reference: String,
    pub reason: String,
}

impl ImageFailure {
    /// Each failure on a line of its own, indented.
    pub fn lines(failures: &[ImageFailure]) -> String {
        failures
            .iter()
            .map(|f| format!("\n  {}: {}", f.reference, f.reason))
            .collect()
    }

    pub fn new(reference: &Reference, error: &(dyn std::error::Error + 'static)) -> ImageFailure {
        ImageFailure {
            reference: reference.to_string(),
            reason: crate::error::describe(error),
        }
    }
}

/// `references` without repeats (the same image however it is spelt: `busybox` and
/// `docker.io/library/busybox:latest`), first occurrence kept.
pub fn distinct(references: impl IntoIterator<Item = Reference>) -> Vec<Reference> {
    let mut seen = std::collections::HashSet::new();
    references
        .into_iter()
        .filter(|r| seen.insert(r.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_references_comments_and_blank_lines() {
        let text = "# release 1.2\n\nbusybox:1.36\n  nginx:1.27   # the web tier\n\n# end\n";
        let list = ImageList::parse("images.txt", text).unwrap();
        let names: Vec<String> = list.references().map(ToString::to_string).collect();
        assert_eq!(
            names,
            vec![
                "docker.io/library/busybox:1.36",
                "docker.io/library/nginx:1.27"
            ]
        );
        // Written back, it keeps its comments and blank lines.
        assert_eq!(
            list.to_string(),
            "# release 1.2\n\nbusybox:1.36\nnginx:1.27  # the web tier\n\n# end\n"
        );
    }

    #[test]
    fn a_bad_line_is_named_by_file_and_number() {
        let error = ImageList::parse("images.txt", "busybox\n\nNot Valid!\n").unwrap_err();
        assert_eq!(error.line, 3);
        assert!(error.to_string().starts_with("images.txt:3: "), "{error}");
    }

    #[test]
    fn the_same_image_twice_is_taken_once() {
        let references: Vec<Reference> = ["busybox", "docker.io/library/busybox:latest", "nginx"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        assert_eq!(distinct(references).len(), 2);
    }

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
