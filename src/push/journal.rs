//! What pushes remember between runs, under the cache's `uploads/` folder:
//! - [`FileJournal`]: per (repository, blob), the location the registry gave after the last
//!   chunk it took. A rerun asks the registry where that session stands and goes on from there.
//! - [`BlobLocations`]: per (registry, blob), the repositories it went to or was found in, so a
//!   later push into another repository of that registry mounts it instead of sending it.
//!   Only a hint: a mount that fails (the repository was deleted) falls back to an upload.

use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::reference::Reference;
use crate::registry::UploadJournal;

pub struct FileJournal {
    path: PathBuf,
}

impl FileJournal {
    /// The lock file that makes one process at a time the uploader of this blob to this
    /// repository (two resuming one session would interleave chunks).
    pub fn lock_path(&self) -> PathBuf {
        self.path.with_extension("lock")
    }
}

impl FileJournal {
    pub fn new(dir: &Path, repository: &Reference, digest: &Digest) -> FileJournal {
        // One name per registry, repository and blob; the names themselves may hold `/` and `:`.
        let key = Digest::of(format!("{}\n{digest}", repository.full_name()).as_bytes());
        FileJournal {
            path: dir.join(key.hex()),
        }
    }
}

impl UploadJournal for FileJournal {
    fn load(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        Some(text.trim().to_string()).filter(|t| !t.is_empty())
    }

    /// Best effort: losing it costs a resend, never a wrong blob (the registry checks digests).
    fn save(&self, location: &str) {
        let _ = crate::fsx::write_record(&self.path, location.as_bytes());
    }

    fn clear(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Repositories of a registry known to hold a blob (see the module's documentation).
pub struct BlobLocations {
    dir: PathBuf,
}

/// Repositories remembered per blob: the latest few are enough to mount from.
const MAX_LOCATIONS: usize = 8;

impl BlobLocations {
    pub fn new(dir: &Path) -> BlobLocations {
        BlobLocations {
            dir: dir.join("known"),
        }
    }

    fn path(&self, registry: &str, digest: &Digest) -> PathBuf {
        let key = Digest::of(format!("{registry}\n{digest}").as_bytes());
        self.dir.join(key.hex())
    }

    /// Repositories of `registry` that held `digest`, latest first.
    pub fn get(&self, registry: &str, digest: &Digest) -> Vec<String> {
        std::fs::read_to_string(self.path(registry, digest))
            .map(|text| text.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Best effort, as the journal.
    pub fn add(&self, registry: &str, digest: &Digest, repository: &str) {
        let mut repositories = self.get(registry, digest);
        repositories.retain(|r| r != repository);
        repositories.insert(0, repository.to_string());
        repositories.truncate(MAX_LOCATIONS);
        let path = self.path(registry, digest);
        let _ = crate::fsx::write_record(&path, repositories.join("\n").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_a_location_per_repository_and_blob() {
        let dir = tempfile::tempdir().unwrap();
        let digest = Digest::of(b"blob");
        let a: Reference = "127.0.0.1:5000/a:1".parse().unwrap();
        let b: Reference = "127.0.0.1:5000/b:1".parse().unwrap();
        let journal_a = FileJournal::new(dir.path(), &a, &digest);
        let journal_b = FileJournal::new(dir.path(), &b, &digest);
        assert_eq!(journal_a.load(), None);
        journal_a.save("/v2/a/blobs/uploads/1?_state=x");
        assert_eq!(
            journal_a.load().as_deref(),
            Some("/v2/a/blobs/uploads/1?_state=x")
        );
        assert_eq!(journal_b.load(), None);
        journal_a.clear();
        assert_eq!(journal_a.load(), None);
    }

    #[test]
    fn remembers_where_blobs_are_latest_first() {
        let dir = tempfile::tempdir().unwrap();
        let locations = BlobLocations::new(dir.path());
        let digest = Digest::of(b"layer");
        assert!(locations.get("r:5000", &digest).is_empty());
        locations.add("r:5000", &digest, "a");
        locations.add("r:5000", &digest, "b");
        locations.add("r:5000", &digest, "a");
        assert_eq!(locations.get("r:5000", &digest), vec!["a", "b"]);
        assert!(locations.get("other:5000", &digest).is_empty());
        for n in 0..20 {
            locations.add("r:5000", &digest, &format!("repo{n}"));
        }
        assert_eq!(locations.get("r:5000", &digest).len(), MAX_LOCATIONS);
    }
}
