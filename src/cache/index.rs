//! The cache index (sled, in `index-v1/`): per blob its size, media type and last use; per
//! reference and platform the manifest digest it last resolved to (what `--offline` uses).
//!
//! It is derived data: `blobs/` stays the source of truth. sled locks its database for one
//! process, so the index is opened only for the moment of a read or write, under haul's own
//! lock file; if it cannot be opened it is thrown away and rebuilt from `blobs/` (the blob
//! records come back; the reference records, which only a registry can tell, do not).
//!
//! A run's records (what it resolved, which blobs it used) are appended to a journal
//! (`index-v1.journal`, one JSON line per run) instead: opening sled costs in proportion to
//! the index (about 2 ms at 20,000 blobs), appending a line does not. Whoever opens the index
//! next folds the journal into it first, so every reader sees every run; a journal grown past
//! [`JOURNAL_FOLD_BYTES`] is folded by the run that grew it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::CacheError;
use super::lock::{LockMode, LockedFile};
use crate::digest::Digest;

const BLOBS_TREE: &str = "blobs";
const REFS_TREE: &str = "refs";
/// A journal this large is folded into the index by the run that makes it so.
pub const JOURNAL_FOLD_BYTES: u64 = 1 << 20;

/// One run's records, as the journal keeps them.
#[derive(Serialize, Deserialize)]
struct JournalEntry {
    /// When the run ended (seconds since the Unix epoch): its records' last use.
    at: u64,
    refs: Vec<(String, String, Digest)>,
    uses: Vec<(Digest, u64, String)>,
}

/// What the index knows of one blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    pub size: u64,
    #[serde(default)]
    pub media_type: String,
    /// Seconds since the Unix epoch of the last export or pull that used it.
    pub last_used: u64,
}

/// What a reference resolved to, for one platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefRecord {
    pub reference: String,
    pub platform: String,
    pub manifest: Digest,
    pub last_used: u64,
}

/// A blob the index should remember.
#[derive(Clone, Debug)]
pub struct BlobUse {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// Handle on the index of one cache; opens the database per operation.
#[derive(Clone, Debug)]
pub struct CacheIndex {
    dir: PathBuf,
    lock_path: PathBuf,
    journal_path: PathBuf,
    blobs_dir: PathBuf,
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl CacheIndex {
    pub(super) fn new(root: &Path, blobs_dir: PathBuf) -> CacheIndex {
        CacheIndex {
            dir: super::Bucket::Index.path(root),
            lock_path: super::Bucket::IndexLock.path(root),
            journal_path: super::Bucket::IndexJournal.path(root),
            blobs_dir,
        }
    }

    /// Runs `f` on the open database, under the index lock. An index that cannot be opened
    /// is rebuilt from `blobs/` first.
    fn with_db<T>(&self, f: impl FnOnce(&sled::Db) -> sled::Result<T>) -> Result<T, CacheError> {
        let lock = LockedFile::acquire_blocking(&self.lock_path, LockMode::Exclusive, || {})?;
        let db = match self.open_patiently() {
            Ok(db) => db,
            Err(error) => {
                tracing::warn!(
                    "the cache index {} is unreadable ({}); rebuilding it from blobs/",
                    self.dir.display(),
                    crate::error::describe(&error)
                );
                self.rebuild()?
            }
        };
        let folded = self.fold_journal(&db)?;
        let result = f(&db).and_then(|value| db.flush().map(|_| value));
        drop(db);
        // Only once its records are in the index (flushed above) does the journal go.
        if folded && result.is_ok() {
            std::fs::remove_file(&self.journal_path)
                .map_err(CacheError::io("cannot remove", &self.journal_path))?;
        }
        drop(lock);
        result.map_err(|e| self.sled_error(e))
    }

    /// Applies the journal's runs to `db`, in order; whether there was one. A line that cannot
    /// be read (a run killed mid-write) is passed over: it only cost that run's records.
    fn fold_journal(&self, db: &sled::Db) -> Result<bool, CacheError> {
        let text = match std::fs::read_to_string(&self.journal_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(CacheError::io("cannot read", &self.journal_path)(e)),
        };
        let apply = || -> sled::Result<()> {
            for entry in text
                .lines()
                .filter_map(|l| decode::<JournalEntry>(l.as_bytes()))
            {
                let uses: Vec<BlobUse> = entry
                    .uses
                    .into_iter()
                    .map(|(digest, size, media_type)| BlobUse {
                        digest,
                        size,
                        media_type,
                    })
                    .collect();
                record(db, &entry.refs, &uses, entry.at)?;
            }
            Ok(())
        };
        apply().map_err(|e| self.sled_error(e))?;
        Ok(true)
    }

    /// sled's settings: no background flusher thread (haul flushes before closing), so the
    /// database, and sled's own lock on it, is let go of when the handle is dropped.
    fn config(&self) -> sled::Config {
        sled::Config::new().path(&self.dir).flush_every_ms(None)
    }

    /// Opens the index, trying again briefly before calling it unreadable: a handle closed a
    /// moment ago may still hold sled's own file lock, and rebuilding would lose the
    /// reference records.
    fn open_patiently(&self) -> Result<sled::Db, CacheError> {
        let mut attempts = 0;
        loop {
            match self.open() {
                Ok(db) => return Ok(db),
                Err(_) if attempts < 25 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn open(&self) -> Result<sled::Db, CacheError> {
        if !self.dir.exists() {
            return self.rebuild();
        }
        let probe = || -> sled::Result<sled::Db> {
            let db = self.config().open()?;
            // Probe both trees: a damaged database may open and fail on first read.
            db.open_tree(BLOBS_TREE)?.first()?;
            db.open_tree(REFS_TREE)?.first()?;
            Ok(db)
        };
        probe().map_err(|e| self.sled_error(e))
    }

    /// Throws the database away and records every blob in `blobs/`, with its file's
    /// modification time as its last use.
    fn rebuild(&self) -> Result<sled::Db, CacheError> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .map_err(CacheError::io("cannot remove", &self.dir))?;
        }
        let db = self.config().open().map_err(|e| self.sled_error(e))?;
        let blobs = db.open_tree(BLOBS_TREE).map_err(|e| self.sled_error(e))?;
        let entries = std::fs::read_dir(&self.blobs_dir)
            .map_err(CacheError::io("cannot list", &self.blobs_dir))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(digest) = format!("sha256:{name}").parse::<Digest>() else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            let last_used = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            let record = BlobRecord {
                size: meta.len(),
                media_type: String::new(),
                last_used,
            };
            blobs
                .insert(digest.to_string(), encode(&record))
                .map_err(|e| self.sled_error(e))?;
        }
        db.flush().map_err(|e| self.sled_error(e))?;
        Ok(db)
    }

    fn sled_error(&self, error: sled::Error) -> CacheError {
        CacheError::Index {
            path: self.dir.clone(),
            source: error,
        }
    }

    /// Records a run in one opening of the index: what each reference resolved to, as
    /// (reference, platform key, manifest), and the blobs it used.
    pub fn record_run(
        &self,
        refs: &[(String, String, Digest)],
        uses: &[BlobUse],
    ) -> Result<(), CacheError> {
        let entry = JournalEntry {
            at: now_secs(),
            refs: refs.to_vec(),
            uses: uses
                .iter()
                .map(|u| (u.digest.clone(), u.size, u.media_type.clone()))
                .collect(),
        };
        let mut line = encode(&entry);
        line.push(b'\n');
        let journal_size = {
            let _lock = LockedFile::acquire_blocking(&self.lock_path, LockMode::Exclusive, || {})?;
            let mut journal = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.journal_path)
                .map_err(CacheError::io("cannot open", &self.journal_path))?;
            std::io::Write::write_all(&mut journal, &line)
                .map_err(CacheError::io("cannot write", &self.journal_path))?;
            journal.metadata().map_or(0, |m| m.len())
        };
        if journal_size > JOURNAL_FOLD_BYTES {
            self.with_db(|_| Ok(()))?;
        }
        Ok(())
    }

    /// Records that these blobs were just used (keeping a known media type).
    pub fn touch_blobs(&self, uses: &[BlobUse]) -> Result<(), CacheError> {
        self.with_db(|db| touch(db, uses))
    }

    /// Records what `reference` resolved to for `platform`.
    pub fn record_ref(
        &self,
        reference: &str,
        platform: &str,
        manifest: &Digest,
    ) -> Result<(), CacheError> {
        let record = RefRecord {
            reference: reference.to_string(),
            platform: platform.to_string(),
            manifest: manifest.clone(),
            last_used: now_secs(),
        };
        self.with_db(|db| {
            db.open_tree(REFS_TREE)?
                .insert(ref_key(reference, platform), encode(&record))?;
            Ok(())
        })
    }

    /// The manifest `reference` last resolved to for `platform`.
    pub fn lookup_ref(
        &self,
        reference: &str,
        platform: &str,
    ) -> Result<Option<RefRecord>, CacheError> {
        self.with_db(|db| {
            Ok(db
                .open_tree(REFS_TREE)?
                .get(ref_key(reference, platform))?
                .and_then(|v| decode(&v)))
        })
    }

    pub fn blobs(&self) -> Result<BTreeMap<Digest, BlobRecord>, CacheError> {
        self.with_db(|db| {
            let mut out = BTreeMap::new();
            for entry in &db.open_tree(BLOBS_TREE)? {
                let (key, value) = entry?;
                let digest = std::str::from_utf8(&key)
                    .ok()
                    .and_then(|k| k.parse::<Digest>().ok());
                if let (Some(digest), Some(record)) = (digest, decode::<BlobRecord>(&value)) {
                    out.insert(digest, record);
                }
            }
            Ok(out)
        })
    }

    pub fn refs(&self) -> Result<Vec<RefRecord>, CacheError> {
        self.with_db(|db| {
            let mut out = Vec::new();
            for entry in &db.open_tree(REFS_TREE)? {
                let (_, value) = entry?;
                out.extend(decode::<RefRecord>(&value));
            }
            Ok(out)
        })
    }

    /// Forgets blobs (after they were deleted).
    pub fn forget_blobs(&self, digests: &[Digest]) -> Result<(), CacheError> {
        self.with_db(|db| {
            let tree = db.open_tree(BLOBS_TREE)?;
            for digest in digests {
                tree.remove(digest.to_string())?;
            }
            Ok(())
        })
    }

    /// Forgets reference records.
    pub fn forget_refs(&self, records: &[RefRecord]) -> Result<(), CacheError> {
        self.with_db(|db| {
            let tree = db.open_tree(REFS_TREE)?;
            for record in records {
                tree.remove(ref_key(&record.reference, &record.platform))?;
            }
            Ok(())
        })
    }
}

/// Records a run that ended at `at`: what its references resolved to, and its blobs' use.
fn record(
    db: &sled::Db,
    refs: &[(String, String, Digest)],
    uses: &[BlobUse],
    at: u64,
) -> sled::Result<()> {
    let tree = db.open_tree(REFS_TREE)?;
    for (reference, platform, manifest) in refs {
        let record = RefRecord {
            reference: reference.clone(),
            platform: platform.clone(),
            manifest: manifest.clone(),
            last_used: at,
        };
        tree.insert(ref_key(reference, platform), encode(&record))?;
    }
    touch_at(db, uses, at)
}

/// Marks `uses` as used now, keeping a media type already known.
fn touch(db: &sled::Db, uses: &[BlobUse]) -> sled::Result<()> {
    touch_at(db, uses, now_secs())
}

/// Marks `uses` as used at `now`, keeping a media type already known.
fn touch_at(db: &sled::Db, uses: &[BlobUse], now: u64) -> sled::Result<()> {
    let tree = db.open_tree(BLOBS_TREE)?;
    for blob in uses {
        let key = blob.digest.to_string();
        let old: Option<BlobRecord> = tree.get(&key)?.and_then(|v| decode(&v));
        let media_type = if blob.media_type.is_empty() {
            old.map(|o| o.media_type).unwrap_or_default()
        } else {
            blob.media_type.clone()
        };
        let record = BlobRecord {
            size: blob.size,
            media_type,
            last_used: now,
        };
        tree.insert(key, encode(&record))?;
    }
    Ok(())
}

fn ref_key(reference: &str, platform: &str) -> String {
    format!("{reference}|{platform}")
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("index records serialize")
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::BlobStore;

    #[test]
    fn runs_go_to_the_journal_and_readers_fold_it_in() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let index = store.index();
        let manifest = Digest::of(b"manifest");
        let blob = BlobUse {
            digest: Digest::of(b"layer"),
            size: 5,
            media_type: "application/x".to_string(),
        };
        index
            .record_run(
                &[("a:1".into(), "linux/amd64".into(), manifest.clone())],
                std::slice::from_ref(&blob),
            )
            .unwrap();
        // No database was opened for it: only a line appended.
        assert!(!dir.path().join("index-v1").exists());
        // A line cut by a kill is passed over.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("index-v1.journal"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"at\":1,\"refs\""))
            .unwrap();
        let found = index.lookup_ref("a:1", "linux/amd64").unwrap().unwrap();
        assert_eq!(found.manifest, manifest);
        assert_eq!(
            index.blobs().unwrap()[&blob.digest].media_type,
            "application/x"
        );
        assert!(!dir.path().join("index-v1.journal").exists());

        // A journal grown past the threshold is folded by the run that grew it.
        let many: Vec<BlobUse> = (0..20_000u32)
            .map(|i| BlobUse {
                digest: Digest::of(&i.to_le_bytes()),
                size: 1,
                media_type: String::new(),
            })
            .collect();
        index.record_run(&[], &many).unwrap();
        assert!(!dir.path().join("index-v1.journal").exists());
        assert_eq!(index.blobs().unwrap().len(), 20_001);
    }

    #[test]
    fn records_and_rebuilds() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let digest = Digest::of(b"abc");
        store.put_bytes(&digest, b"abc").unwrap();
        let index = store.index();
        index
            .touch_blobs(&[BlobUse {
                digest: digest.clone(),
                size: 3,
                media_type: "m".into(),
            }])
            .unwrap();
        index.record_ref("r:1", "linux/amd64", &digest).unwrap();
        assert_eq!(index.blobs().unwrap()[&digest].media_type, "m");
        assert_eq!(
            index
                .lookup_ref("r:1", "linux/amd64")
                .unwrap()
                .unwrap()
                .manifest,
            digest
        );

        // A corrupt index is rebuilt from blobs/: blob records come back.
        let index_dir = dir.path().join("index-v1");
        for entry in std::fs::read_dir(&index_dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::write(&path, b"garbage garbage garbage").unwrap();
            }
        }
        let blobs = index.blobs().unwrap();
        assert_eq!(blobs[&digest].size, 3);

        // A missing index too.
        std::fs::remove_dir_all(&index_dir).unwrap();
        assert_eq!(index.blobs().unwrap()[&digest].size, 3);
    }

    /// Opening the index right after closing it finds sled's own lock released: the index
    /// is not taken for damaged and rebuilt, which would lose the reference records.
    #[test]
    fn back_to_back_openings_keep_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let index = store.index();
        let digest = Digest::of(b"m");
        for n in 0..20 {
            index
                .record_run(
                    &[(format!("r:{n}"), "linux/amd64".to_string(), digest.clone())],
                    &[BlobUse {
                        digest: digest.clone(),
                        size: 1,
                        media_type: String::new(),
                    }],
                )
                .unwrap();
            index.touch_blobs(&[]).unwrap();
        }
        assert_eq!(index.refs().unwrap().len(), 20);
    }
}
