//! A bundle in parts, for discs and drives: the bytes of one tar cut into data parts
//! `NAME.001`, `NAME.002`, … of at most a size each (joined in order, they are the tar, byte
//! for byte), recovery parts `NAME.r01`, … (Reed–Solomon over the data parts: any N of the
//! parts may be lost or damaged and the set is still whole), `NAME.sha256` (a line per part,
//! for `sha256sum -c` at a site without haul) and `NAME.parts` (this module's [`PartsRecord`]:
//! sizes, checksums, the recovery scheme).
//!
//! - `crate::export::parts`: the writer the exporter streams the tar into.
//! - [`parity`]: recovery parts, made and used stripe by stripe (never a part in memory).
//! - [`read`]: a set read as one stream (or a stretch of it), each part checked as it ends.
//! - [`repair`]: missing and damaged parts rebuilt in place.

pub mod parity;
pub mod read;
pub mod repair;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Verifier;

/// The record's own version.
pub const RECORD_VERSION: u32 = 1;

/// The bytes of a part hashed apart from the rest, to tell a damaged part (its beginning is
/// intact) from one of another set (it begins otherwise).
pub const HEAD_BYTES: u64 = 4096;

/// `NAME.parts`: what the set holds and how to check and repair it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartsRecord {
    #[serde(rename = "haulParts")]
    pub version: u32,
    /// The tar's file name: the parts are `NAME.001`, … beside this record.
    pub name: String,
    /// The whole tar's size. Its bytes are fixed by the parts' checksums, in order.
    pub size: u64,
    /// The most bytes a part holds.
    pub part_size: u64,
    pub parts: Vec<PartRecord>,
    /// Recovery parts; none without `--parity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartRecord {
    pub file: String,
    pub size: u64,
    /// SHA-256 of the whole part, hex, as `sha256sum` prints it.
    pub sha256: String,
    /// SHA-256 of its first [`HEAD_BYTES`] bytes (or fewer, for a shorter part).
    pub head_sha256: String,
}

/// How the recovery parts were made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recovery {
    /// `reed-solomon-gf2^16` (Leopard-RS, as the reed-solomon-simd crate computes it).
    pub scheme: String,
    /// Bytes of each part coded together: stripe `i` of every data part (zero past its end)
    /// gives stripe `i` of every recovery part.
    pub stripe: u64,
    pub parts: Vec<PartRecord>,
}

impl PartsRecord {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("the record serializes")
    }

    /// Every part, data first, then recovery.
    pub fn all_parts(&self) -> impl Iterator<Item = &PartRecord> {
        self.parts
            .iter()
            .chain(self.recovery.iter().flat_map(|r| &r.parts))
    }

    /// `NAME.sha256`: a line per part, as `sha256sum` writes them.
    pub fn sha256sums(&self) -> String {
        self.all_parts()
            .map(|p| format!("{}  {}\n", p.sha256, p.file))
            .collect()
    }

    /// How many recovery parts there are.
    pub fn parity(&self) -> usize {
        self.recovery.as_ref().map_or(0, |r| r.parts.len())
    }
}

/// Hashes a part as its bytes go by: the whole, and its first [`HEAD_BYTES`].
#[derive(Clone, Default)]
pub struct PartHasher {
    whole: Verifier,
    head: Verifier,
}

impl PartHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        let room = HEAD_BYTES.saturating_sub(self.head.len()) as usize;
        self.head.update(&bytes[..room.min(bytes.len())]);
        self.whole.update(bytes);
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.whole.len()
    }

    pub fn is_empty(&self) -> bool {
        self.whole.is_empty()
    }

    /// The record of the part named `file`.
    pub fn finish(self, file: String) -> PartRecord {
        PartRecord {
            file,
            size: self.whole.len(),
            sha256: self.whole.finish().hex().to_string(),
            head_sha256: self.head.finish().hex().to_string(),
        }
    }
}

/// The file names of a set for the tar `name` (`v1.tar`): its record, its checksums, data
/// part `i` (from 0) of `count`, recovery part `i`.
pub fn record_path(tar: &Path) -> PathBuf {
    with_suffix(tar, "parts")
}

pub fn sha256_path(tar: &Path) -> PathBuf {
    with_suffix(tar, "sha256")
}

/// `NAME.001`: three digits, more when there are more than 999 parts (all of one width, so
/// that they sort in order).
pub fn data_part_name(name: &str, index: usize, count: usize) -> String {
    let width = count.to_string().len().max(3);
    format!("{name}.{:0width$}", index + 1)
}

/// `NAME.r01`: not matched by `NAME.0*`, so that joining the data parts by a glob leaves
/// the recovery parts out.
pub fn recovery_part_name(name: &str, index: usize, count: usize) -> String {
    let width = count.to_string().len().max(2);
    format!("{name}.r{:0width$}", index + 1)
}

/// `DIR/NAME.suffix` for the tar `DIR/NAME`.
pub fn with_suffix(tar: &Path, suffix: &str) -> PathBuf {
    let mut name = tar.as_os_str().to_os_string();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Whether `path` names a parts set rather than a tar: its record (`NAME.parts`) or its first
/// data part (`NAME.001`) with the record beside it. Returns the record's path.
pub fn set_of(path: &Path) -> Option<PathBuf> {
    let text = path.to_string_lossy();
    if text.ends_with(".parts") {
        return Some(path.to_path_buf());
    }
    let (tar, number) = text.rsplit_once('.')?;
    if number.len() >= 3 && number.bytes().all(|b| b.is_ascii_digit()) {
        let record = record_path(Path::new(tar));
        if record.exists() {
            return Some(record);
        }
    }
    None
}

/// Reads `file` to its end, a MiB at a time, handing each piece to `each` (a hasher).
pub fn read_through(file: &mut std::fs::File, mut each: impl FnMut(&[u8])) -> std::io::Result<()> {
    use std::io::Read;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(());
        }
        each(&buffer[..read]);
    }
}

/// Why a text is not a part size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitSizeError {
    // Clap prints only this error's own text, so the size's error is carried in it.
    #[error("{0}; or name a medium: cd, dvd, dvd-dl, bd25, fat32")]
    NotASize(crate::units::SizeError),
    #[error(
        "{text:?} is smaller than the smallest part haul writes ({} KiB)",
        MIN_PART_SIZE >> 10
    )]
    TooSmall { text: String },
}

/// A part size: a number with K, M or G (powers of 1024, as `--limit-rate`), or a medium.
pub fn parse_split_size(text: &str) -> Result<u64, SplitSizeError> {
    let medium = match text.trim().to_ascii_lowercase().as_str() {
        "cd" => Some(700 << 20),
        "dvd" => Some(4_700_000_000),
        "dvd-dl" => Some(8_500_000_000),
        "bd25" => Some(25_025_314_816),
        "fat32" => Some((4u64 << 30) - 1),
        _ => None,
    };
    let size = match medium {
        Some(size) => size,
        None => crate::units::parse_size(text).map_err(SplitSizeError::NotASize)?,
    };
    // A part holds at least a tar block; much smaller sizes would only make thousands of files.
    if size < MIN_PART_SIZE {
        return Err(SplitSizeError::TooSmall {
            text: text.to_string(),
        });
    }
    Ok(size)
}

/// The smallest part size `--split` takes.
pub const MIN_PART_SIZE: u64 = 64 << 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_media() {
        assert_eq!(parse_split_size("100M"), Ok(100 << 20));
        assert_eq!(parse_split_size("cd"), Ok(700 << 20));
        assert_eq!(parse_split_size("DVD"), Ok(4_700_000_000));
        assert_eq!(parse_split_size("dvd-dl"), Ok(8_500_000_000));
        assert_eq!(parse_split_size("bd25"), Ok(25_025_314_816));
        assert_eq!(parse_split_size("fat32"), Ok(4_294_967_295));
        let floppy = parse_split_size("floppy").unwrap_err();
        assert!(matches!(floppy, SplitSizeError::NotASize(_)));
        assert!(floppy.to_string().contains("medium"));
        assert!(matches!(
            parse_split_size("1K"),
            Err(SplitSizeError::TooSmall { .. })
        ));
    }

    #[test]
    fn names_sort_and_stay_apart() {
        assert_eq!(data_part_name("v1.tar", 0, 7), "v1.tar.001");
        assert_eq!(data_part_name("v1.tar", 999, 1000), "v1.tar.1000");
        assert_eq!(data_part_name("v1.tar", 0, 1000), "v1.tar.0001");
        assert_eq!(recovery_part_name("v1.tar", 1, 2), "v1.tar.r02");
        assert_eq!(
            record_path(Path::new("d/v1.tar")),
            Path::new("d/v1.tar.parts")
        );
    }
}
