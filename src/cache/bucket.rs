//! Every file and folder under the cache root, named once (uv's `CacheBucket` is the
//! example). Nothing else in haul spells a path under the root; `cache du` and `cache prune`
//! go through this list, so none is forgotten.
//!
//! ```text
//! <cache>/blobs/sha256/<hex>       Blobs: verified blobs, read-only; each hashes to its name
//! <cache>/ingest/<hex>.partial     Ingest: downloads in progress (resumed on the next run);
//!        /<hex>.lock                 held while a process writes that blob;
//!        /push-stdin-<pid>.partial   a tar `haul push -` reads, kept while it is pushed
//! <cache>/index-v1/                Index: sled (blob sizes, media types, last use; reference ->
//! <cache>/index-v1.lock              manifest), derived data rebuilt from blobs/ if lost;
//! <cache>/index-v1.journal           runs append their records here, folded in by readers
//! <cache>/quarantine/<hex>         Quarantine: blobs `cache verify` found damaged
//! <cache>/uploads/<hash>           Uploads: where a cut upload resumes (per registry, blob);
//!        /known/<hash>               repositories of a registry known to hold a blob (mounts)
//! <cache>/compressed/<diff_id hex> Compressed: uncompressed layers compressed for a push
//! <cache>/transports               Transports: the transport each host took (HTTPS, HTTP)
//! <cache>/.lock                    RootLock: shared by runs, exclusive for prune and rm
//! <cache>/CACHEDIR.TAG             Tag: tells backup tools to skip the folder
//! ```
//! Bump a name's version (`index-v1` → `index-v2`) instead of migrating.

use std::path::{Path, PathBuf};

/// One file or folder of the cache root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Blobs,
    Ingest,
    Index,
    IndexLock,
    IndexJournal,
    Quarantine,
    Uploads,
    Compressed,
    Transports,
    RootLock,
    Tag,
}

impl Bucket {
    /// Every bucket.
    pub const ALL: [Bucket; 11] = [
        Bucket::Blobs,
        Bucket::Ingest,
        Bucket::Index,
        Bucket::IndexLock,
        Bucket::IndexJournal,
        Bucket::Quarantine,
        Bucket::Uploads,
        Bucket::Compressed,
        Bucket::Transports,
        Bucket::RootLock,
        Bucket::Tag,
    ];

    /// Its name under the root.
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Blobs => "blobs",
            Bucket::Ingest => "ingest",
            Bucket::Index => "index-v1",
            Bucket::IndexLock => "index-v1.lock",
            Bucket::IndexJournal => "index-v1.journal",
            Bucket::Quarantine => "quarantine",
            Bucket::Uploads => "uploads",
            Bucket::Compressed => "compressed",
            Bucket::Transports => "transports",
            Bucket::RootLock => ".lock",
            Bucket::Tag => "CACHEDIR.TAG",
        }
    }

    /// Its path under `root`.
    pub fn path(self, root: &Path) -> PathBuf {
        root.join(self.name())
    }

    /// Buckets whose files are kept for a later run's sake only (a resumed upload, a mount,
    /// a compressed form): pruned by age like blobs, and all of them by `--all`.
    pub const DERIVED: [Bucket; 2] = [Bucket::Uploads, Bucket::Compressed];

    /// What `cache du` calls it.
    pub fn description(self) -> &'static str {
        match self {
            Bucket::Blobs => "blobs",
            Bucket::Ingest => "partial downloads",
            Bucket::Uploads => "upload records",
            Bucket::Compressed => "compressed forms",
            Bucket::Quarantine => "quarantined blobs",
            Bucket::Index | Bucket::IndexLock | Bucket::IndexJournal => "index",
            Bucket::Transports | Bucket::RootLock | Bucket::Tag => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bucket_has_its_own_name() {
        let names: std::collections::BTreeSet<&str> =
            Bucket::ALL.iter().map(|b| b.name()).collect();
        assert_eq!(names.len(), Bucket::ALL.len());
    }
}
