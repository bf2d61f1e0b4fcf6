//! Progress events and how they are shown. Library code only emits [`Event`]s through a
//! [`Progress`] sink; the command line picks the renderer (plain lines on stderr, or nothing).

use std::io::Write;
use std::sync::Mutex;

use crate::digest::Digest;

/// Something worth telling the user about.
#[derive(Debug, Clone)]
pub enum Event {
    /// A reference resolved to a manifest.
    Resolved {
        reference: String,
        digest: Digest,
        platform: String,
    },
    /// A blob was already in the cache: nothing to download.
    Cached { digest: Digest, size: u64 },
    /// Another process is downloading this blob; waiting for it.
    WaitingForLock { digest: Digest },
    /// Waiting for another process (a prune, or exports while pruning).
    Waiting { what: String },
    /// A download starts (at `offset` when it resumes a partial file).
    DownloadStarted {
        digest: Digest,
        size: u64,
        offset: u64,
    },
    /// Bytes arrived.
    Downloaded { digest: Digest, bytes: u64 },
    /// The registry ignored a resume request; starting the blob over.
    Restarted { digest: Digest },
    /// A download failed and will be tried again.
    Retrying {
        digest: Digest,
        attempt: u32,
        error: String,
    },
    /// A blob is verified and in the cache.
    DownloadFinished {
        digest: Digest,
        size: u64,
        fetched: u64,
    },
    /// A layer was decompressed into the cache under its diff_id.
    Decompressed {
        digest: Digest,
        diff_id: Digest,
        size: u64,
    },
    /// The tar is complete.
    Exported { path: String, bytes: u64 },
}

/// Where events go. Implementations must be cheap: `Downloaded` fires per network chunk.
pub trait Progress: Send + Sync {
    fn event(&self, event: Event);
}

/// Shows nothing (`-q`).
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _: Event) {}
}

/// One line per finished step on stderr: readable in CI logs, and not chatty.
#[derive(Default)]
pub struct Lines {
    out: Mutex<()>,
}

impl Progress for Lines {
    fn event(&self, event: Event) {
        let line = match event {
            Event::Resolved {
                reference,
                digest,
                platform,
            } => format!("{reference}: {digest} ({platform})"),
            Event::Cached { digest, size } => {
                format!("{}: cached ({})", digest.short(), human_bytes(size))
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
            } if offset > 0 => format!(
                "{}: resuming at {} of {}",
                digest.short(),
                human_bytes(offset),
                human_bytes(size)
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
                human_bytes(size),
                human_bytes(fetched)
            ),
            Event::Decompressed {
                digest,
                diff_id,
                size,
            } => format!(
                "{}: decompressed to {} ({})",
                digest.short(),
                diff_id.short(),
                human_bytes(size)
            ),
            Event::Exported { path, bytes } => format!("wrote {path} ({})", human_bytes(bytes)),
            Event::DownloadStarted { .. } | Event::Downloaded { .. } => return,
        };
        let _guard = self.out.lock();
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

/// `1.5 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_bytes() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
