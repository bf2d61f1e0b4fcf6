//! Cross-process locks on files (std's `File::lock`, an `flock`): the cache's root lock, the
//! index's lock and one per blob being written. The OS releases them when the process dies.
//!
//! A lock file may be deleted by its holder ([`LockedFile::remove`]) so that `ingest/` does
//! not keep one file per blob ever downloaded. That is safe because acquiring checks, once
//! the lock is held, that the path still names the file that was locked (same device and
//! inode, or volume and file index on Windows: same-file's `Handle`), and starts over otherwise: a process that opened the file before its holder
//! deleted it does not go on holding a lock nobody else can see (as cargo and uv do).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use super::CacheError;

/// How a lock is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Many holders at once (exports and pulls on the root lock).
    Shared,
    /// One holder (prune and rm on the root lock; the writer of a blob).
    Exclusive,
}

/// A held lock; released on drop.
#[must_use = "the lock is released when this is dropped"]
#[derive(Debug)]
pub struct LockedFile {
    file: File,
    path: PathBuf,
}

impl LockedFile {
    /// Takes the lock on `path` (creating the file), waiting while another process holds it
    /// in a conflicting mode. `on_wait` is called once, before waiting. Blocks: call it from
    /// a blocking thread, or use [`LockedFile::acquire`].
    pub fn acquire_blocking(
        path: &Path,
        mode: LockMode,
        on_wait: impl FnOnce(),
    ) -> Result<LockedFile, CacheError> {
        let mut on_wait = Some(on_wait);
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .map_err(CacheError::io("cannot open lock", path))?;
            let attempt = match mode {
                LockMode::Shared => file.try_lock_shared(),
                LockMode::Exclusive => file.try_lock(),
            };
            match attempt {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    if let Some(on_wait) = on_wait.take() {
                        on_wait();
                    }
                    match mode {
                        LockMode::Shared => file.lock_shared(),
                        LockMode::Exclusive => file.lock(),
                    }
                    .map_err(CacheError::io("cannot lock", path))?;
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(CacheError::io("cannot lock", path)(e));
                }
            }
            if still_named_by(&file, path) {
                return Ok(LockedFile {
                    file,
                    path: path.to_path_buf(),
                });
            }
            // The holder removed (and maybe someone re-created) the file while this process
            // waited: this lock protects nothing. Try again with what the path names now.
        }
    }

    /// [`LockedFile::acquire_blocking`] on a blocking thread.
    pub async fn acquire(
        path: &Path,
        mode: LockMode,
        on_wait: impl FnOnce() + Send + 'static,
    ) -> Result<LockedFile, CacheError> {
        let path = path.to_path_buf();
        crate::blocking::run(move || LockedFile::acquire_blocking(&path, mode, on_wait)).await
    }

    /// Takes the lock on an existing lock file if nobody holds it; `None` if someone does
    /// or the file is gone.
    pub fn try_acquire(path: &Path, mode: LockMode) -> Result<Option<LockedFile>, CacheError> {
        let file = match OpenOptions::new().write(true).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::io("cannot open lock", path)(e)),
        };
        let attempt = match mode {
            LockMode::Shared => file.try_lock_shared(),
            LockMode::Exclusive => file.try_lock(),
        };
        match attempt {
            Ok(()) if still_named_by(&file, path) => Ok(Some(LockedFile {
                file,
                path: path.to_path_buf(),
            })),
            Ok(()) | Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(CacheError::io("cannot lock", path)(e)),
        }
    }

    /// Deletes the lock file (if the path still names it), then releases the lock. A process
    /// waiting for it finds, once it gets the lock, that the path no longer names its file,
    /// and starts over.
    pub fn remove(self) {
        if still_named_by(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
        drop(self.file);
    }
}

/// Whether `path` names the same file as the open `file`.
fn still_named_by(file: &File, path: &Path) -> bool {
    let open = file.try_clone().and_then(same_file::Handle::from_file);
    match (open, same_file::Handle::from_path(path)) {
        (Ok(open), Ok(named)) => open == named,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    #[test]
    fn a_removed_lock_is_not_held_by_its_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = LockedFile::acquire_blocking(&path, LockMode::Exclusive, || {}).unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let waiter = {
            let (path, barrier) = (path.clone(), barrier.clone());
            std::thread::spawn(move || {
                let waited = std::cell::Cell::new(false);
                let lock = LockedFile::acquire_blocking(&path, LockMode::Exclusive, || {
                    waited.set(true);
                    barrier.wait();
                })
                .unwrap();
                assert!(waited.get(), "the second taker had to wait");
                // It holds a lock on the file the path names now, not on the deleted one.
                assert!(still_named_by(&lock.file, &path));
                lock.remove();
            })
        };
        barrier.wait();
        std::thread::sleep(Duration::from_millis(50));
        first.remove();
        waiter.join().unwrap();
        assert!(!path.exists(), "both holders removed the file");
    }

    #[test]
    fn shared_holders_exclude_an_exclusive_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let a =
            LockedFile::acquire_blocking(&path, LockMode::Shared, || panic!("no wait")).unwrap();
        let b =
            LockedFile::acquire_blocking(&path, LockMode::Shared, || panic!("no wait")).unwrap();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        assert!(matches!(
            file.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop((a, b));
        assert!(file.try_lock().is_ok());
    }
}
