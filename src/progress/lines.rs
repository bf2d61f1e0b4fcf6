//! Plain lines: one line per finished step on stderr, readable in CI logs and not chatty.

use std::io::Write;

use super::{Event, Progress, human_bytes};

/// One line per finished step on stderr (`--progress plain`, or auto without a terminal).
#[derive(Default)]
pub struct Lines;

impl Progress for Lines {
    fn event(&self, event: Event) {
        if let Some(line) = line(&event) {
            // One write per line, so lines from several tasks never interleave.
            let _ = std::io::stderr()
                .lock()
                .write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// The line an event deserves, if any: finished steps and the unusual (waits, retries).
/// The bars print the same lines above themselves.
pub(super) fn line(event: &Event) -> Option<String> {
    let line = match event {
        Event::Resolved {
            reference,
            digest,
            platform,
        } => {
            // A pinned reference names its digest already: once is enough.
            if reference.ends_with(&format!("@{digest}")) {
                format!("{reference} ({platform})")
            } else {
                format!("{reference}: {digest} ({platform})")
            }
        }
        Event::Cached { digest, size } => {
            format!("{}: cached ({})", digest.short(), human_bytes(*size))
        }
        Event::Waiting { what } => format!("waiting for {what} to finish…"),
        Event::WaitingForLock { digest } => {
            format!(
                "{}: waiting for another haul process downloading it",
                digest.short()
            )
        }
        Event::DownloadStarted {
            digest,
            size,
            offset,
        } if *offset > 0 => format!(
            "{}: resuming at {} of {}",
            digest.short(),
            human_bytes(*offset),
            human_bytes(*size)
        ),
        Event::Restarted { digest } => format!(
            "{}: registry ignored the resume request; starting over",
            digest.short()
        ),
        Event::Retrying {
            digest,
            attempt,
            error,
        } => {
            format!(
                "{}: attempt {attempt} failed ({error}); retrying",
                digest.short()
            )
        }
        Event::DownloadFinished {
            digest,
            size,
            fetched,
        } => format!(
            "{}: downloaded {} ({} fetched)",
            digest.short(),
            human_bytes(*size),
            human_bytes(*fetched)
        ),
        Event::Decompressed {
            digest,
            diff_id,
            size,
        } => format!(
            "{}: decompressed to {} ({})",
            digest.short(),
            diff_id.short(),
            human_bytes(*size)
        ),
        Event::Exported {
            path,
            bytes,
            into_engine,
            left_out,
            since,
            parts,
            patched,
            by_content,
        } => {
            let mut line = match parts {
                _ if *into_engine => format!("sent {} into {path}", human_bytes(*bytes)),
                None => format!("wrote {path} ({})", human_bytes(*bytes)),
                Some((data, recovery)) => format!(
                    "wrote {path} ({} in {data} part{}{})",
                    human_bytes(*bytes),
                    if *data == 1 { "" } else { "s" },
                    match recovery {
                        0 => String::new(),
                        1 => " and 1 recovery part".to_string(),
                        n => format!(" and {n} recovery parts"),
                    }
                ),
            };
            let held = if since.is_empty() {
                " (the destination holds them)".to_string()
            } else {
                format!(", held where {} is loaded", since.join(", "))
            };
            if *patched > 0 {
                let left = if *left_out > 0 {
                    format!(
                        " and {} left out",
                        crate::units::count(*left_out, "layer blob")
                    )
                } else {
                    String::new()
                };
                line += &format!(
                    ": a patch delta, {} as patches{left}{held}; plain `docker load` does not \
                     take it (haul load, rebuild or push does)",
                    crate::units::count(*patched, "layer"),
                );
                if *by_content > 0 {
                    line += &format!(
                        "; {by_content} rebuild by content, so haul push needs --new-digests"
                    );
                }
            } else if *left_out > 0 {
                line += &format!(
                    ": a delta, {left_out} layer blob{} left out{held}",
                    if *left_out == 1 { "" } else { "s" },
                );
            }
            line
        }
        Event::BlobPresent {
            digest,
            size,
            mounted_from,
        } => match mounted_from {
            None => format!("{}: already there ({})", digest.short(), human_bytes(*size)),
            Some(from) => format!(
                "{}: mounted from {from} ({})",
                digest.short(),
                human_bytes(*size)
            ),
        },
        Event::UploadFinished {
            digest,
            size,
            sent,
            resumed_at,
        } => {
            let resumed = if *resumed_at > 0 {
                format!(", resumed at {}", human_bytes(*resumed_at))
            } else {
                String::new()
            };
            format!(
                "{}: uploaded {} ({} sent{resumed})",
                digest.short(),
                human_bytes(*size),
                human_bytes(*sent)
            )
        }
        // A step of unknown length (saving from the engine, rebuilding) says no size.
        Event::LoadStep {
            step,
            path,
            bytes: 0,
        } => format!("{step} {path}…"),
        Event::LoadStep { step, path, bytes } => {
            format!("{step} {path} ({})…", human_bytes(*bytes))
        }
        Event::Loaded {
            path,
            engine,
            bytes,
            images,
            seconds,
        } => {
            let rate = if *seconds > 0.0 {
                format!(", {}/s", human_bytes((*bytes as f64 / seconds) as u64))
            } else {
                String::new()
            };
            format!(
                "loaded {path} into {engine}: {} ({} in {seconds:.1} s{rate})",
                match images.len() {
                    1 => "1 image".to_string(),
                    n => format!("{n} images"),
                },
                human_bytes(*bytes)
            )
        }
        // Standard output names what was pushed.
        Event::Pushed { .. } | Event::UploadStarted { .. } | Event::Uploaded { .. } => {
            return None;
        }
        Event::Planned { .. }
        | Event::DownloadStarted { .. }
        | Event::Downloaded { .. }
        | Event::DecompressStarted { .. }
        | Event::LoadProgress { .. } => {
            return None;
        }
    };
    Some(line)
}
