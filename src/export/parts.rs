//! `--split SIZE [--parity N]`: the tar streamed into data parts of at most SIZE bytes, under
//! temporary names. A thread beside the writer hashes each part once it is complete (the
//! writer copies cached blobs with `copy_file_range` and never sees their bytes), and another
//! flushes it to disk. At the end come the recovery parts, then every part takes its name,
//! and the checksums (`NAME.sha256`) and the record (`NAME.parts`) are written last. An
//! export that fails leaves no part under a final name.
//!
//! The record holds no SHA-256 of the whole tar: the parts' checksums, in order, already
//! fix every byte of it, and a second hash of every byte cost a warm export 1.02x -> 1.20x
//! of the unsplit one on two cores.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use super::tar::Sink;
use crate::fsx::TempFile;
use crate::parts::{
    self, PartHasher, PartRecord, PartsRecord, Recovery, data_part_name, parity, recovery_part_name,
};

/// What `--split` asks for.
#[derive(Clone, Debug)]
pub struct Split {
    /// The tar's name; the parts are named after it.
    pub path: PathBuf,
    pub part_size: u64,
    /// Recovery parts.
    pub parity: usize,
}

/// The writer the tar streams into.
pub struct PartsWriter {
    split: Split,
    /// The data parts so far, the last being written.
    parts: Vec<TempFile>,
    current: Option<File>,
    current_len: u64,
    /// The size of each data part closed so far.
    sizes: Vec<u64>,
    hashing: Option<Hashing>,
}

/// Two threads beside the writer, each taking every finished part in order: one reads it
/// back (from the page cache) and hashes it, the other flushes it to disk. Together they
/// would make the hashing wait for the disk.
struct Hashing {
    parts: Worker<Vec<PartHasher>>,
    flush: Worker<()>,
}

struct Worker<T> {
    sender: mpsc::Sender<File>,
    thread: std::thread::JoinHandle<io::Result<T>>,
}

impl<T: Send + 'static> Worker<T> {
    fn spawn(
        name: &str,
        work: impl FnOnce(mpsc::Receiver<File>) -> io::Result<T> + Send + 'static,
    ) -> io::Result<Worker<T>> {
        let (sender, receiver) = mpsc::channel::<File>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || work(receiver))?;
        Ok(Worker { sender, thread })
    }

    fn send(&self, file: File) -> io::Result<()> {
        self.sender
            .send(file)
            .map_err(|_| io::Error::other("a thread hashing or flushing the parts stopped"))
    }

    fn finish(self) -> io::Result<T> {
        drop(self.sender);
        self.thread
            .join()
            .map_err(|_| io::Error::other("a thread hashing the parts panicked"))?
    }
}

impl PartsWriter {
    pub fn new(split: Split) -> io::Result<PartsWriter> {
        let hashing = Hashing {
            parts: Worker::spawn("haul-parts-hash", hash_each_part)?,
            flush: Worker::spawn("haul-parts-flush", flush_each_part)?,
        };
        Ok(PartsWriter {
            split,
            parts: Vec::new(),
            current: None,
            current_len: 0,
            sizes: Vec::new(),
            hashing: Some(hashing),
        })
    }

    /// The part being written, a new one when the last is full.
    fn part(&mut self) -> io::Result<&mut File> {
        if self.current.is_some() && self.current_len == self.split.part_size {
            self.close_current()?;
        }
        if self.current.is_none() {
            // Named by position for now; the final names need the count.
            let provisional =
                parts::with_suffix(&self.split.path, &format!("{}", self.parts.len() + 1));
            let temp = TempFile::create(&provisional)?;
            self.current = Some(temp.file.try_clone()?);
            self.parts.push(temp);
            self.current_len = 0;
        }
        Ok(self.current.as_mut().expect("a part is open"))
    }

    /// Hands the full part to the hashing thread (it reads it back from the page cache).
    fn close_current(&mut self) -> io::Result<()> {
        let Some(file) = self.current.take() else {
            return Ok(());
        };
        drop(file);
        self.sizes.push(self.current_len);
        let path = &self.parts.last().expect("a part").temp_path;
        if let Some(hashing) = &self.hashing {
            let sent = hashing.parts.send(File::open(path)?).and_then(|()| {
                // Opened for writing: Windows flushes a file only through a handle that may
                // write it (FlushFileBuffers).
                hashing
                    .flush
                    .send(std::fs::OpenOptions::new().write(true).open(path)?)
            });
            if let Err(stopped) = sent {
                // The thread that stopped says why.
                let hashing = self.hashing.take().expect("hashing runs until finish");
                hashing.parts.finish()?;
                hashing.flush.finish()?;
                return Err(stopped);
            }
        }
        Ok(())
    }

    /// Completes the set: recovery parts, names, checksums and record. Returns the record.
    pub fn finish(mut self) -> io::Result<PartsRecord> {
        if self.parts.is_empty() {
            self.part()?;
        }
        self.close_current()?;
        let hashing = self.hashing.take().expect("hashing runs until finish");
        let name = file_name(&self.split.path)?;
        let count = self.parts.len();
        let part_size = self.sizes[0];
        let size: u64 = self.sizes.iter().sum();

        // Recovery parts, from the data parts read back stripe by stripe, while the hashing
        // thread finishes on the other core; the flushing thread takes them too.
        let mut recovery_temps = Vec::new();
        let mut recovery = None;
        if self.split.parity > 0 {
            let stripe = parity::stripe_for(count + self.split.parity);
            let data: Vec<(File, u64)> = self
                .parts
                .iter()
                .zip(&self.sizes)
                .map(|(temp, size)| Ok((File::open(&temp.temp_path)?, *size)))
                .collect::<io::Result<_>>()?;
            let mut files: Vec<(File, PartHasher)> = Vec::new();
            for i in 0..self.split.parity {
                let temp = TempFile::create(&parts::with_suffix(
                    &self.split.path,
                    &format!("r{}", i + 1),
                ))?;
                files.push((temp.file.try_clone()?, PartHasher::default()));
                recovery_temps.push(temp);
            }
            parity::encode(&data, part_size, stripe, &mut files)?;
            let mut parts = Vec::new();
            for (i, (file, hasher)) in files.into_iter().enumerate() {
                hashing.flush.send(file)?;
                parts.push(hasher.finish(recovery_part_name(&name, i, self.split.parity)));
            }
            recovery = Some(Recovery {
                scheme: parity::SCHEME.to_string(),
                stripe,
                parts,
            });
        }
        let records: Vec<PartRecord> = hashing
            .parts
            .finish()?
            .into_iter()
            .enumerate()
            .map(|(i, hasher)| hasher.finish(data_part_name(&name, i, count)))
            .collect();
        hashing.flush.finish()?;
        let record = PartsRecord {
            version: parts::RECORD_VERSION,
            name: name.clone(),
            size,
            part_size,
            parts: records,
            recovery,
        };

        // Names: an earlier set of the same name is replaced whole, so that a glob of its
        // parts never mixes two sets.
        remove_earlier_set(&self.split.path, &name);
        let dir = self.split.path.parent().unwrap_or(Path::new(""));
        let finals = record.all_parts().map(|p| dir.join(&p.file));
        for (temp, path) in self
            .parts
            .into_iter()
            .chain(recovery_temps)
            .zip(finals.collect::<Vec<_>>())
        {
            temp.persist_as(&path)?;
        }
        crate::fsx::write_atomic(
            &parts::sha256_path(&self.split.path),
            record.sha256sums().as_bytes(),
        )?;
        crate::fsx::write_atomic(&parts::record_path(&self.split.path), &record.to_bytes())?;
        Ok(record)
    }
}

impl PartsWriter {
    /// The open part, with room left in it (a new one when the last is full).
    fn part_with_room(&mut self) -> io::Result<(&mut File, u64)> {
        self.part()?;
        let room = self.split.part_size - self.current_len;
        Ok((self.current.as_mut().expect("a part is open"), room))
    }
}

impl Write for PartsWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let (part, room) = self.part_with_room()?;
        let len = bytes.len().min(room as usize);
        let written = part.write(&bytes[..len])?;
        self.current_len += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.current {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl Sink for PartsWriter {
    /// Piece by piece, each into its part as the kernel's copy.
    fn copy_file(&mut self, from: &mut io::Take<File>) -> io::Result<u64> {
        let mut copied = 0;
        while from.limit() > 0 {
            let (part, room) = self.part_with_room()?;
            let piece = io::copy(&mut from.by_ref().take(room), part)?;
            if piece == 0 {
                break;
            }
            self.current_len += piece;
            copied += piece;
        }
        Ok(copied)
    }
}

/// Hashes each part sent.
fn hash_each_part(parts: mpsc::Receiver<File>) -> io::Result<Vec<PartHasher>> {
    let mut hashers = Vec::new();
    for mut file in parts {
        let mut hasher = PartHasher::default();
        parts::read_through(&mut file, |bytes| hasher.update(bytes))?;
        hashers.push(hasher);
    }
    Ok(hashers)
}

/// Flushes each part sent to disk, while the next is being written and hashed.
fn flush_each_part(parts: mpsc::Receiver<File>) -> io::Result<()> {
    for file in parts {
        file.sync_all()?;
    }
    Ok(())
}

fn file_name(path: &Path) -> io::Result<String> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the output path has no file name",
            )
        })
}

/// Removes the parts of an earlier set named `name` beside `tar` (`NAME.001`…, `NAME.r01`…).
fn remove_earlier_set(tar: &Path, name: &str) {
    let dir = match tar.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let prefix = format!("{name}.");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let digits = rest.strip_prefix('r').unwrap_or(rest);
        if digits.len() >= 2 && digits.bytes().all(|b| b.is_ascii_digit()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::read::{PartsSet, ProblemLog};
    use std::io::Read;

    #[test]
    fn the_parts_join_into_the_stream_and_carry_their_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("blob");
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
        std::fs::write(&source, &bytes).unwrap();
        let tar = dir.path().join("t.tar");
        let mut writer = PartsWriter::new(Split {
            path: tar.clone(),
            part_size: 64 << 10,
            parity: 2,
        })
        .unwrap();
        writer.write_all(&bytes[..1000]).unwrap();
        let mut file = File::open(&source).unwrap().take(bytes.len() as u64 - 1000);
        use std::io::Seek;
        file.get_mut().seek(io::SeekFrom::Start(1000)).unwrap();
        assert_eq!(
            writer.copy_file(&mut file).unwrap(),
            bytes.len() as u64 - 1000
        );
        let record = writer.finish().unwrap();
        assert_eq!(record.parts.len(), 5);
        assert_eq!(record.parity(), 2);
        assert_eq!(record.size, bytes.len() as u64);
        let mut joined = Vec::new();
        for part in &record.parts {
            joined.extend(std::fs::read(dir.path().join(&part.file)).unwrap());
        }
        assert_eq!(joined, bytes);
        let sums = std::fs::read_to_string(dir.path().join("t.tar.sha256")).unwrap();
        assert_eq!(sums.lines().count(), 7);
        assert!(sums.contains("  t.tar.001\n") && sums.contains("  t.tar.r02\n"));

        // Two parts lost: repaired byte for byte.
        let set = PartsSet::open(&dir.path().join("t.tar.parts")).unwrap();
        std::fs::remove_file(dir.path().join("t.tar.002")).unwrap();
        let mut flipped = std::fs::read(dir.path().join("t.tar.r01")).unwrap();
        flipped[10] ^= 1;
        std::fs::write(dir.path().join("t.tar.r01"), flipped).unwrap();
        assert_eq!(crate::parts::repair::repair(&set).unwrap().len(), 2);
        let mut read = Vec::new();
        set.reader(ProblemLog::default(), true)
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, bytes);
        assert!(set.check_all().unwrap().is_empty());

        // Three lost with two recovery parts: nothing changes.
        for file in ["t.tar.001", "t.tar.003", "t.tar.005"] {
            std::fs::remove_file(dir.path().join(file)).unwrap();
        }
        let error = crate::parts::repair::repair(&set).unwrap_err().to_string();
        assert!(error.contains("3 parts are missing or damaged"), "{error}");
        assert!(!dir.path().join("t.tar.001").exists());
    }
}
