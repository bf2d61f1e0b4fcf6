//! Files written whole or not at all: a temporary file beside the final one
//! (`.NAME.PID.partial`, on the same filesystem), renamed into place when complete and removed
//! if anything fails. Every file haul writes under a name a user or a later run reads (tars,
//! receipts, lock files, the cache's small records) goes through [`TempFile`] or
//! [`write_atomic`]; a blob enters the cache through `cache::Ingest`, which also verifies it.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Every temporary file ([`TempFile`], [`Scratch`]) this process holds. An interruption ends
/// the process without waiting for the threads that write (a split export's parts, a repaired
/// part, a rebuilt bundle), so their guards never drop: [`remove_held`] removes the files
/// instead, and no file is made after it.
static HELD: Mutex<Held> = Mutex::new(Held {
    stopping: false,
    paths: BTreeSet::new(),
});

struct Held {
    stopping: bool,
    paths: BTreeSet<PathBuf>,
}

fn held() -> std::sync::MutexGuard<'static, Held> {
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Creates the new file `path` with `options` and records it, under the lock: an
/// interruption then either finds it recorded or comes first and refuses it.
fn create_held(path: &Path, options: &std::fs::OpenOptions) -> io::Result<File> {
    let mut held = held();
    if held.stopping {
        return Err(io::Error::new(
            io::ErrorKind::Interrupted,
            "the run was interrupted",
        ));
    }
    let file = options.open(path)?;
    held.paths.insert(path.to_path_buf());
    Ok(file)
}

/// Removes the file `path` and forgets it, under the lock (a file made again under the same
/// name in between keeps its record).
fn release(path: &Path) {
    let mut held = held();
    let _ = std::fs::remove_file(path);
    held.paths.remove(path);
}

/// Removes every temporary file this process holds, and refuses new ones: for an
/// interruption (Ctrl-C, SIGTERM), before the process ends. A thread still writing one writes
/// into a file with no name; a rename that comes after fails.
pub fn remove_held() {
    let mut held = held();
    held.stopping = true;
    for path in std::mem::take(&mut held.paths) {
        let _ = std::fs::remove_file(path);
    }
}

/// Writes `bytes` to `path` (a file a user named: a receipt, a lock file), whole or not at
/// all; what a killed run left beside it is removed first. Blocks.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut temp = TempFile::create(path)?;
    temp.file.write_all(bytes)?;
    temp.persist()
}

/// As [`write_atomic`], for the cache's small records (transports, upload journals, blob
/// locations): the folder is created if needed and not scanned for leftovers, which may hold
/// thousands of records; `cache prune` removes stale temporary files by age.
pub fn write_record(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut temp = TempFile::create_beside(path)?;
    temp.file.write_all(bytes)?;
    temp.persist()
}

/// An output file under a temporary name beside its final one; removed on drop unless
/// persisted.
pub struct TempFile {
    pub temp_path: PathBuf,
    final_path: PathBuf,
    pub file: File,
    persisted: bool,
}

impl TempFile {
    /// A temporary file for `final_path`; what a killed run left beside it is removed.
    pub fn create(final_path: &Path) -> io::Result<TempFile> {
        TempFile::open(final_path, true)
    }

    /// As [`TempFile::create`], without looking for leftovers.
    pub fn create_beside(final_path: &Path) -> io::Result<TempFile> {
        TempFile::open(final_path, false)
    }

    fn open(final_path: &Path, scan_for_leftovers: bool) -> io::Result<TempFile> {
        let dir = match final_path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = final_path.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the output path has no file name",
            )
        })?;
        let name = name.to_string_lossy();
        refuse_to_replace_special(final_path)?;
        if scan_for_leftovers {
            remove_stale_temp_files(&dir, &name);
        }
        let temp_path = dir.join(format!(".{name}.{}.partial", std::process::id()));
        let file = create_held(&temp_path, File::options().write(true).create_new(true))?;
        Ok(TempFile {
            temp_path,
            final_path: final_path.to_path_buf(),
            file,
            persisted: false,
        })
    }

    pub fn persist(self) -> io::Result<()> {
        let path = self.final_path.clone();
        self.persist_as(&path)
    }

    /// Renames it to `path` (beside it) rather than the name it was made for: a part whose
    /// final name depends on how many parts there turn out to be.
    pub fn persist_as(mut self, path: &Path) -> io::Result<()> {
        let mut held = held();
        std::fs::rename(&self.temp_path, path)?;
        held.paths.remove(&self.temp_path);
        self.persisted = true;
        Ok(())
    }
}

/// The tar is renamed over its final path, which would replace a device (`-o /dev/null`), a
/// FIFO or a symbolic link with a regular file: refuse those, saying what to do instead.
pub fn refuse_to_replace_special(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() && !meta.is_dir() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "it is a device, a FIFO or a symbolic link, which haul does not replace; name a \
             regular file, or write to standard output (-o -) and redirect that",
        )),
        _ => Ok(()),
    }
}

/// Removes `.NAME.PID.partial` files that a killed run (SIGKILL, power loss) left beside
/// `name`: those whose process is gone, and one with this process's own id, which a run
/// before a PID reuse left. Only where `/proc` tells which processes live.
fn remove_stale_temp_files(dir: &Path, name: &str) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|f| f.strip_suffix(".partial"))
            .filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let own = pid == std::process::id().to_string();
        if own || !proc.join(pid).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            release(&self.temp_path);
        }
    }
}

/// A working file under a name (a tar kept while another process or a second pass reads
/// it), removed on drop. The name is new: [`Scratch::create`] never opens a file a link
/// left there points at.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    /// `path`, created empty (what a killed run left there is replaced).
    pub fn at(path: PathBuf) -> io::Result<(Scratch, File)> {
        let _ = std::fs::remove_file(&path);
        let file = create_held(
            &path,
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true),
        )?;
        Ok((Scratch { path }, file))
    }

    /// `dir/.haul-PID-N-what`, created empty.
    pub fn create(dir: &Path, what: &str) -> io::Result<(Scratch, File)> {
        static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        loop {
            let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.join(format!(".haul-{}-{n}-{what}", std::process::id()));
            match create_held(
                &path,
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true),
            ) {
                Ok(file) => return Ok((Scratch { path }, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        release(&self.path);
    }
}

/// Reads into `buffer` until it is full or the input ends; returns how much was read.
pub fn read_up_to(reader: &mut impl std::io::Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buffer.len() {
        match reader.read(&mut buffer[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A new file in `dir` with no name (removed once open): work in progress (a patch's
/// sections, a rebuilt layer) that must not outlive the run, even a killed one.
pub fn unnamed_file(dir: &Path, what: &str) -> io::Result<File> {
    let (scratch, file) = Scratch::create(dir, what)?;
    std::fs::remove_file(&scratch.path)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_killed_runs_temporary_file_is_removed_a_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let final_path = dir.path().join("out.tar");
        // Beyond Linux's largest pid: that process cannot be running.
        let dead = dir.path().join(".out.tar.4294967295.partial");
        // This process's own id, left by an earlier process with the same id.
        let own = dir
            .path()
            .join(format!(".out.tar.{}.partial", std::process::id()));
        // pid 1 is always running; other names are not ours to touch.
        let live = dir.path().join(".out.tar.1.partial");
        let other = dir.path().join(".other.tar.4294967295.partial");
        for path in [&dead, &own, &live, &other] {
            std::fs::write(path, b"partial").unwrap();
        }
        let temp = TempFile::create(&final_path).unwrap();
        assert!(!dead.exists());
        assert!(live.exists());
        assert!(other.exists());
        assert_eq!(temp.temp_path, own);
        temp.persist().unwrap();
        assert!(final_path.exists());
        assert!(!own.exists());
    }
}
