//! Progress events and how they are shown. Library code only emits [`Event`]s through a
//! [`Progress`] sink; the command line picks the renderer: bars on a terminal ([`Bars`]),
//! plain lines ([`Lines`]), JSON lines ([`Json`]) or nothing ([`Silent`]).

mod bars;
mod counting;
mod json;
mod lines;
pub mod log;

pub use bars::Bars;
pub use counting::Counting;
pub use json::Json;
pub use lines::Lines;

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
    /// The distinct blobs the images need are known: `missing` of them (`missing_bytes`)
    /// are not in the cache and will be downloaded. Sizes are as the registry serves them.
    Planned {
        blobs: usize,
        bytes: u64,
        missing: usize,
        missing_bytes: u64,
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
    /// A cached layer is being decompressed (`--decompress`, docker-v1).
    DecompressStarted { digest: Digest, size: u64 },
    /// A layer was decompressed into the cache under its diff_id.
    Decompressed {
        digest: Digest,
        diff_id: Digest,
        size: u64,
    },
    /// The tar is complete: written to `path`, or (`into_engine`) streamed into an engine's
    /// `docker load`. A delta left out `left_out` layer blobs, held by the images `since`.
    Exported {
        path: String,
        bytes: u64,
        into_engine: bool,
        left_out: usize,
        since: Vec<String>,
        /// With `--split`: how many data parts and recovery parts hold it.
        parts: Option<(usize, usize)>,
        /// A patch delta: the layers it carries as patches, and how many of those rebuild
        /// by content only (a push then needs `--new-digests`).
        patched: usize,
        by_content: usize,
    },
    /// A push found a blob at the destination: there already, or linked from another
    /// repository of the registry (`mounted_from`). Nothing to upload.
    BlobPresent {
        digest: Digest,
        size: u64,
        mounted_from: Option<String>,
    },
    /// An upload starts.
    UploadStarted { digest: Digest, size: u64 },
    /// Bytes went up.
    Uploaded { digest: Digest, bytes: u64 },
    /// A blob is in the destination repository: `sent` body bytes, after the `resumed_at`
    /// bytes the registry had from an earlier, cut upload.
    UploadFinished {
        digest: Digest,
        size: u64,
        sent: u64,
        resumed_at: u64,
    },
    /// An image's manifests and tags are in place.
    Pushed { reference: String, digest: Digest },
    /// `haul load` reads the bundle at `path` whole, `bytes` long: `step` is `checking` (the
    /// pass that hashes every file) or `loading` (into the engine's `docker load`).
    LoadStep {
        step: &'static str,
        path: String,
        bytes: u64,
    },
    /// Bytes of the bundle the current step has read.
    LoadProgress { bytes: u64 },
    /// The bundle is in the engine: `images` as `docker load` named them.
    Loaded {
        path: String,
        engine: String,
        bytes: u64,
        images: Vec<String>,
        seconds: f64,
    },
}

/// Where events go. Implementations must be cheap: `Downloaded` fires per network chunk,
/// from several tasks at once.
pub trait Progress: Send + Sync {
    fn event(&self, event: Event);

    /// The run is over (done, failed or interrupted): leave the terminal clean before the
    /// last message. Renderers may ignore events that come after.
    fn finish(&self) {}
}

/// Shows nothing (`-q`, `--progress none`).
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _: Event) {}
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
