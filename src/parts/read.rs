//! Reading a set as the tar it is, without joining it on disk: the data parts in order as one
//! stream ([`PartsReader`]; async readers wrap it in `crate::blocking::Reader`), or a stretch of that stream (a blob a push
//! uploads). Each part is checked as it ends, against the record: its size and SHA-256, and,
//! when those differ, its first bytes, which tell a damaged part from one of another set.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{PartHasher, PartRecord, PartsRecord};

/// A set on disk: its record, and the folder its parts are in.
#[derive(Clone, Debug)]
pub struct PartsSet {
    /// `NAME.parts`.
    pub path: PathBuf,
    pub record: PartsRecord,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot read {path}", path = path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a parts record haul wrote: {detail}", path = path.display())]
    Malformed { path: PathBuf, detail: String },
}

/// What is wrong with one part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartState {
    Missing,
    /// It begins as the set recorded, but its bytes differ further on (or it is cut short).
    Damaged {
        size: u64,
        sha256: String,
    },
    /// It begins otherwise: another export's part under this name, or overwritten.
    Foreign,
}

/// A part that is not as the set recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartProblem {
    pub file: String,
    pub expected_size: u64,
    pub expected_sha256: String,
    pub state: PartState,
}

impl fmt::Display for PartProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            PartState::Missing => write!(f, "{} is missing", self.file),
            PartState::Damaged { size, sha256 } if *size != self.expected_size => write!(
                f,
                "{} is damaged (it holds {size} bytes, the set expects {})",
                self.file, self.expected_size
            ),
            PartState::Damaged { sha256, .. } => write!(
                f,
                "{} is damaged (its SHA-256 is {sha256}, the set expects {})",
                self.file, self.expected_sha256
            ),
            PartState::Foreign => write!(
                f,
                "{} is not a part of this set (it begins otherwise: another export's part, or \
                 overwritten)",
                self.file
            ),
        }
    }
}

impl PartsSet {
    /// Reads the record at `path` (`NAME.parts`).
    pub fn open(path: &Path) -> Result<PartsSet, OpenError> {
        let bytes = std::fs::read(path).map_err(|source| OpenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let record: PartsRecord =
            serde_json::from_slice(&bytes).map_err(|e| OpenError::Malformed {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
        if record.version != super::RECORD_VERSION {
            return Err(OpenError::Malformed {
                path: path.to_path_buf(),
                detail: format!(
                    "version {}, this haul reads version {}",
                    record.version,
                    super::RECORD_VERSION
                ),
            });
        }
        let whole: u64 = record.parts.iter().map(|p| p.size).sum();
        if whole != record.size || record.parts.is_empty() {
            return Err(OpenError::Malformed {
                path: path.to_path_buf(),
                detail: format!(
                    "its parts add up to {whole} bytes, but it says the tar is {}",
                    record.size
                ),
            });
        }
        Ok(PartsSet {
            path: path.to_path_buf(),
            record,
        })
    }

    /// Where the part named `file` is: beside the record.
    pub fn part_path(&self, file: &str) -> PathBuf {
        match self.path.parent() {
            Some(dir) => dir.join(file),
            None => PathBuf::from(file),
        }
    }

    /// For messages: `v1.tar.parts`.
    pub fn describe(&self) -> String {
        self.path.display().to_string()
    }

    /// Checks `part` whole (reads it): `None` when it is as recorded.
    pub fn check_part(&self, part: &PartRecord) -> io::Result<Option<PartProblem>> {
        let mut file = match File::open(self.part_path(&part.file)) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Some(problem(part, PartState::Missing)));
            }
            Err(e) => return Err(e),
        };
        let mut hasher = PartHasher::default();
        super::read_through(&mut file, |bytes| hasher.update(bytes))?;
        Ok(judge(part, hasher))
    }

    /// Every part, data and recovery, checked; the problems found.
    pub fn check_all(&self) -> io::Result<Vec<PartProblem>> {
        let mut problems = Vec::new();
        for part in self.record.all_parts() {
            problems.extend(self.check_part(part)?);
        }
        Ok(problems)
    }

    /// What to do about `problems`, for a message: repair when the recovery parts can cover
    /// them, else what can.
    pub fn advice(&self, problems: usize) -> String {
        let parity = self.record.parity();
        let name = self.describe();
        if parity == 0 {
            "the set has no recovery parts (export with --parity N to have some): copy the \
             part again from its source"
                .to_string()
        } else if problems <= parity {
            format!(
                "{parity} recovery part{} can rebuild {}: `haul repair {name}`",
                if parity == 1 { "" } else { "s" },
                if problems == 1 { "it" } else { "them" }
            )
        } else {
            format!(
                "{problems} parts are lost and the set's {parity} recovery part{} can rebuild at \
                 most {parity}: copy at least {} of them again from their source",
                if parity == 1 { "" } else { "s" },
                problems - parity
            )
        }
    }

    /// The tar, read part after part. `log` collects the problems found; with `stop`, the
    /// first one is also a read error (nothing after a bad part is handed out), else a
    /// missing part is skipped and a bad one read through.
    pub fn reader(&self, log: ProblemLog, stop: bool) -> PartsReader {
        PartsReader {
            set: Arc::new(self.clone()),
            next: 0,
            current: None,
            log,
            stop,
        }
    }

    /// `len` bytes of the tar from `offset`, read across parts (unchecked: the caller checked
    /// the set, and checks what it reads by digest).
    pub fn range(&self, offset: u64, len: u64) -> io::Result<RangeReader> {
        RangeReader::new(self, offset, len)
    }
}

fn problem(part: &PartRecord, state: PartState) -> PartProblem {
    PartProblem {
        file: part.file.clone(),
        expected_size: part.size,
        expected_sha256: part.sha256.clone(),
        state,
    }
}

/// What the bytes hashed say of `part`.
fn judge(part: &PartRecord, hasher: PartHasher) -> Option<PartProblem> {
    let found = hasher.finish(part.file.clone());
    if found.size == part.size && found.sha256 == part.sha256 {
        return None;
    }
    let begins_alike = found.head_sha256 == part.head_sha256;
    let state = if begins_alike {
        PartState::Damaged {
            size: found.size,
            sha256: found.sha256,
        }
    } else {
        PartState::Foreign
    };
    Some(problem(part, state))
}

/// The problems a reader found, shared with whoever reads through it.
pub type ProblemLog = Arc<Mutex<Vec<PartProblem>>>;

/// The data parts in order, as one stream. See [`PartsSet::reader`].
pub struct PartsReader {
    set: Arc<PartsSet>,
    /// The index of the next part to open.
    next: usize,
    current: Option<Current>,
    log: ProblemLog,
    stop: bool,
}

struct Current {
    index: usize,
    file: File,
    hasher: PartHasher,
}

impl PartsReader {
    /// Opens the next part that is there; `None` past the last.
    fn open_next(&mut self) -> io::Result<Option<()>> {
        while self.next < self.set.record.parts.len() {
            let index = self.next;
            self.next += 1;
            let part = &self.set.record.parts[index];
            match File::open(self.set.part_path(&part.file)) {
                Ok(file) => {
                    self.current = Some(Current {
                        index,
                        file,
                        hasher: PartHasher::default(),
                    });
                    return Ok(Some(()));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.found(problem(part, PartState::Missing))?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Logs `problem`; an error when the reader stops at the first.
    fn found(&mut self, problem: PartProblem) -> io::Result<()> {
        let message = format!("{problem}; {}", self.set.advice(1));
        self.log.lock().unwrap().push(problem);
        if self.stop {
            return Err(io::Error::new(io::ErrorKind::InvalidData, message));
        }
        Ok(())
    }
}

impl Read for PartsReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.current.is_none() && self.open_next()?.is_none() {
                return Ok(0);
            }
            let current = self.current.as_mut().expect("a part is open");
            let read = current.file.read(buffer)?;
            if read > 0 {
                current.hasher.update(&buffer[..read]);
                return Ok(read);
            }
            // The part ended: it must be as recorded before the next one is read.
            let Current { index, hasher, .. } = self.current.take().expect("a part is open");
            let part = self.set.record.parts[index].clone();
            if let Some(problem) = judge(&part, hasher) {
                self.found(problem)?;
            }
        }
    }
}

/// A stretch of the tar, read across parts. See [`PartsSet::range`].
pub struct RangeReader {
    /// Each part's path and the stretch of it still to read: (path, from, len).
    pieces: std::collections::VecDeque<(PathBuf, u64, u64)>,
    current: Option<io::Take<File>>,
}

impl RangeReader {
    fn new(set: &PartsSet, offset: u64, len: u64) -> io::Result<RangeReader> {
        let mut pieces = std::collections::VecDeque::new();
        let (mut start, mut left) = (0u64, len);
        for part in &set.record.parts {
            let end = start + part.size;
            if left > 0 && offset + (len - left) < end {
                let from = offset + (len - left) - start;
                let take = (part.size - from).min(left);
                pieces.push_back((set.part_path(&part.file), from, take));
                left -= take;
            }
            start = end;
        }
        if left > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "bytes {offset}..{} lie past the end of {}",
                    offset + len,
                    set.describe()
                ),
            ));
        }
        Ok(RangeReader {
            pieces,
            current: None,
        })
    }
}

impl Read for RangeReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(current) = &mut self.current {
                let read = current.read(buffer)?;
                if read > 0 {
                    return Ok(read);
                }
                self.current = None;
            }
            let Some((path, from, len)) = self.pieces.pop_front() else {
                return Ok(0);
            };
            use std::io::Seek;
            let mut file = File::open(&path)?;
            file.seek(io::SeekFrom::Start(from))?;
            self.current = Some(file.take(len));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::PartsRecord;

    /// A set of `parts` written by hand: the bytes cut where given.
    fn set(dir: &Path, bytes: &[u8], cuts: &[usize]) -> PartsSet {
        let mut parts = Vec::new();
        let mut start = 0;
        for (i, end) in cuts.iter().chain(std::iter::once(&bytes.len())).enumerate() {
            let file = format!("t.tar.{:03}", i + 1);
            std::fs::write(dir.join(&file), &bytes[start..*end]).unwrap();
            let mut hasher = PartHasher::default();
            hasher.update(&bytes[start..*end]);
            parts.push(hasher.finish(file));
            start = *end;
        }
        let record = PartsRecord {
            version: 1,
            name: "t.tar".into(),
            size: bytes.len() as u64,
            part_size: cuts[0] as u64,
            parts,
            recovery: None,
        };
        let path = dir.join("t.tar.parts");
        std::fs::write(&path, record.to_bytes()).unwrap();
        PartsSet::open(&path).unwrap()
    }

    #[test]
    fn the_parts_read_as_the_tar_and_a_stretch_spans_them() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        let set = set(dir.path(), &bytes, &[4096, 8192]);
        let mut read = Vec::new();
        set.reader(ProblemLog::default(), true)
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, bytes);
        let mut stretch = Vec::new();
        set.range(4000, 5000)
            .unwrap()
            .read_to_end(&mut stretch)
            .unwrap();
        assert_eq!(stretch, &bytes[4000..9000]);
        assert!(set.range(9000, 2000).is_err());
    }

    #[test]
    fn a_missing_a_damaged_and_a_foreign_part_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let set = set(dir.path(), &bytes, &[5000, 10_000, 15_000]);
        std::fs::remove_file(dir.path().join("t.tar.002")).unwrap();
        let mut damaged = std::fs::read(dir.path().join("t.tar.003")).unwrap();
        damaged[4500] ^= 1;
        std::fs::write(dir.path().join("t.tar.003"), damaged).unwrap();
        std::fs::write(dir.path().join("t.tar.004"), vec![7u8; 5000]).unwrap();

        // Stopping: the first problem is a read error, and it says what to do.
        let mut out = Vec::new();
        let error = set
            .reader(ProblemLog::default(), true)
            .read_to_end(&mut out)
            .unwrap_err();
        assert!(
            error.to_string().contains("t.tar.002 is missing"),
            "{error}"
        );
        assert!(error.to_string().contains("no recovery parts"), "{error}");

        // Reading through: every problem, each told as what it is.
        let log = ProblemLog::default();
        set.reader(log.clone(), false)
            .read_to_end(&mut out)
            .unwrap();
        let states: Vec<PartState> = log
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.state.clone())
            .collect();
        assert_eq!(states[0], PartState::Missing);
        assert!(matches!(states[1], PartState::Damaged { size: 5000, .. }));
        assert_eq!(states[2], PartState::Foreign);
        assert_eq!(set.check_all().unwrap().len(), 3);
    }
}
