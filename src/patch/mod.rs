//! Patch deltas: a layer a site lacks, carried as how to rebuild its uncompressed tar from
//! layers the site holds (its "sources"). A rebuilt base image changes a few files and moves
//! every timestamp; in files, that is: the same content at the same or another path (copied
//! from a source, costing nothing but its header), a changed file (patched against its old
//! version with zstd's reference-prefix mode), new files (compressed), and headers (compressed
//! with the sources' headers as their reference, so a moved timestamp costs a few bytes).
//!
//! A patch is checked by what it rebuilds: the caller hashes the output against the layer's
//! diff_id. Memory stays bounded: a changed file is patched in windows of [`WINDOW`] bytes,
//! the sources are read where the patch points, never held.
//!
//! The format (`application/vnd.haul.layer.patch.v1`), all integers little-endian:
//! ```text
//! "HAULPATCH1\n"
//! u32 n, n bytes: JSON header { target (diff_id), size, sources: [diff_id…] }
//! u64 n, n bytes: the operations, each a tag byte and LEB128 numbers:
//!     1 LITERAL len                        the next len bytes of the literal stream
//!     2 COPY    source offset len          bytes of a source's uncompressed tar
//!     3 PATCH   source offset len out at   a zstd frame (at `at` in the frames section)
//!                                          whose reference is the source's bytes there
//! u64 n, n bytes: the literal stream: one zstd frame whose reference is the sources'
//!                 header bytes (every byte of each source outside its files' data, in order)
//! the frames section, to the end
//! ```

pub mod encode;
pub mod rebuild;
pub mod recompress;

use std::io::{self, Read};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub const MAGIC: &[u8] = b"HAULPATCH1\n";
/// The media type of a patch blob, in a delta's record.
pub const MEDIA_TYPE: &str = "application/vnd.haul.layer.patch.v1";
/// A changed file is patched in windows of this many bytes (each against the same stretch of
/// its old version, give or take [`WINDOW_MARGIN`]): what bounds memory on either side.
pub const WINDOW: u64 = 32 << 20;
pub const WINDOW_MARGIN: u64 = 1 << 20;
/// The most header bytes of the sources used as the literal stream's reference.
pub const HEADERS_REFERENCE_MAX: usize = 64 << 20;
/// The largest zstd window a patch is made with (128 MiB), and so the most a rebuild gives
/// one frame: a frame asking for more is refused, not fed memory.
pub const WINDOW_LOG_MAX: u32 = 27;
/// zstd's level for the literal stream and the patches: fast enough for 100 MB/s of layer.
pub const LEVEL: i32 = 3;

/// What a patch rebuilds, from what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchHeader {
    /// The rebuilt layer's diff_id (the SHA-256 of its uncompressed tar).
    pub target: Digest,
    /// Its size.
    pub size: u64,
    /// The layers it is rebuilt from, by diff_id, in the order its operations number them.
    pub sources: Vec<Digest>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Literal {
        len: u64,
    },
    Copy {
        source: u32,
        offset: u64,
        len: u64,
    },
    Patch {
        source: u32,
        offset: u64,
        len: u64,
        /// Bytes it rebuilds.
        out: u64,
        /// Where its frame lies in the frames section, and its length.
        at: u64,
        frame: u64,
    },
}

fn put(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn get(bytes: &[u8], at: &mut usize) -> io::Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes
            .get(*at)
            .ok_or_else(|| malformed("an operation is cut short"))?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(malformed("a number is too long"))
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the patch cannot be read: {what}"),
    )
}

impl Op {
    fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Op::Literal { len } => {
                out.push(1);
                put(out, len);
            }
            Op::Copy {
                source,
                offset,
                len,
            } => {
                out.push(2);
                put(out, source.into());
                put(out, offset);
                put(out, len);
            }
            Op::Patch {
                source,
                offset,
                len,
                out: rebuilt,
                at,
                frame,
            } => {
                out.push(3);
                put(out, source.into());
                put(out, offset);
                put(out, len);
                put(out, rebuilt);
                put(out, at);
                put(out, frame);
            }
        }
    }

    /// The operations of `bytes`.
    fn decode_all(bytes: &[u8]) -> io::Result<Vec<Op>> {
        let mut ops = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let tag = bytes[at];
            at += 1;
            let op = match tag {
                1 => Op::Literal {
                    len: get(bytes, &mut at)?,
                },
                2 => Op::Copy {
                    source: u32::try_from(get(bytes, &mut at)?)
                        .map_err(|_| malformed("a source number is too large"))?,
                    offset: get(bytes, &mut at)?,
                    len: get(bytes, &mut at)?,
                },
                3 => Op::Patch {
                    source: u32::try_from(get(bytes, &mut at)?)
                        .map_err(|_| malformed("a source number is too large"))?,
                    offset: get(bytes, &mut at)?,
                    len: get(bytes, &mut at)?,
                    out: get(bytes, &mut at)?,
                    at: get(bytes, &mut at)?,
                    frame: get(bytes, &mut at)?,
                },
                _ => return Err(malformed("an operation of an unknown kind")),
            };
            ops.push(op);
        }
        Ok(ops)
    }

    /// Bytes of output it makes.
    pub fn output_len(&self) -> u64 {
        match *self {
            Op::Literal { len } | Op::Copy { len, .. } => len,
            Op::Patch { out, .. } => out,
        }
    }
}

/// A regular file's data in a tar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// Its path, without a leading `./`.
    pub path: String,
    pub offset: u64,
    pub len: u64,
}

/// An uncompressed layer tar a patch is made against: a whole file, or a stretch of one (a
/// layer read in place, where it lies in a bundle).
pub struct SourceTar {
    pub file: std::fs::File,
    pub start: u64,
    pub len: u64,
}

impl SourceTar {
    /// All of `file`.
    pub fn whole(file: std::fs::File) -> io::Result<SourceTar> {
        let len = file.metadata()?.len();
        Ok(SourceTar {
            file,
            start: 0,
            len,
        })
    }

    pub fn try_clone(&self) -> io::Result<SourceTar> {
        Ok(SourceTar {
            file: self.file.try_clone()?,
            ..*self
        })
    }

    /// Its bytes `offset..offset + len`, read through their own position (`pread`), so that
    /// several stretches may be read at once; a stretch past its end is an error.
    pub fn section(&self, offset: u64, len: u64) -> io::Result<Section<'_>> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(Section {
                file: &self.file,
                start: self.start + offset,
                at: self.start + offset,
                end: self.start + end,
            }),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "bytes {offset}..+{len} of a source layer of {} bytes are asked for",
                    self.len
                ),
            )),
        }
    }
}

/// A stretch of a file, read with `pread` (its own position); seeks stay inside it.
pub struct Section<'a> {
    file: &'a std::fs::File,
    start: u64,
    at: u64,
    end: u64,
}

impl<'a> Section<'a> {
    /// `file`'s bytes `start..end`.
    pub fn of(file: &'a std::fs::File, start: u64, end: u64) -> Section<'a> {
        Section {
            file,
            start,
            at: start,
            end,
        }
    }
}

impl io::Read for Section<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let want = (self.end.saturating_sub(self.at)).min(buffer.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let read = crate::portable::read_at(self.file, &mut buffer[..want], self.at)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a file ended before the patch's bytes",
            ));
        }
        self.at += read as u64;
        Ok(read)
    }
}

impl io::Seek for Section<'_> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let (base, by) = match to {
            io::SeekFrom::Start(n) => (self.start, n as i128),
            io::SeekFrom::End(n) => (self.end, n as i128),
            io::SeekFrom::Current(n) => (self.at, n as i128),
        };
        let at = base as i128 + by;
        if at < self.start as i128 || at > self.end as i128 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a seek outside the layer",
            ));
        }
        self.at = at as u64;
        Ok(self.at - self.start)
    }
}

/// A tar's files' data, in order. Everything else (headers, long names, padding, the end) is
/// "header bytes". Files' data is skipped by seeking, not read.
pub fn data_regions(tar: &SourceTar) -> io::Result<Vec<Region>> {
    let mut archive = tar::Archive::new(tar.section(0, tar.len)?);
    let mut regions = Vec::new();
    for entry in archive.entries_with_seek()? {
        let entry = entry?;
        let header = entry.header();
        let size = entry.size();
        if header.entry_type().is_file() && size > 0 && header.size()? == size {
            let path = entry.path()?.to_string_lossy().into_owned();
            regions.push(Region {
                path: path.trim_start_matches("./").to_string(),
                offset: entry.raw_file_position(),
                len: size,
            });
        }
    }
    Ok(regions)
}

/// The header bytes of a tar (all but its files' data), in order, up to `limit` bytes.
pub fn header_bytes(
    tar: &SourceTar,
    regions: &[Region],
    limit: usize,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let mut at = 0u64;
    let mut gaps: Vec<(u64, u64)> = Vec::new();
    for region in regions {
        gaps.push((at, region.offset - at));
        at = region.offset + region.len;
    }
    gaps.push((at, tar.len - at));
    for (offset, len) in gaps {
        let room = limit.saturating_sub(out.len()) as u64;
        let take = len.min(room);
        if take == 0 {
            break;
        }
        let start = out.len();
        out.resize(start + take as usize, 0);
        tar.section(offset, take)?.read_exact(&mut out[start..])?;
    }
    Ok(())
}

/// A patch as read back: its header, operations, and where its sections lie in the blob.
pub struct Patch {
    pub header: PatchHeader,
    pub ops: Vec<Op>,
    /// Offset and length of the literal stream's frame.
    pub literal: (u64, u64),
    /// Offset of the frames section.
    pub frames: u64,
}

impl Patch {
    /// Reads the patch's header and operations from `blob` (positioned at its start).
    pub fn read(blob: &mut impl Read) -> io::Result<Patch> {
        let mut magic = [0u8; 11];
        blob.read_exact(&mut magic)
            .map_err(|_| malformed("it is too short"))?;
        if magic != MAGIC {
            return Err(malformed(
                "it is not a haul patch (no HAULPATCH1 at its start)",
            ));
        }
        let mut len = [0u8; 4];
        blob.read_exact(&mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > 16 << 20 {
            return Err(malformed("its header is too large"));
        }
        let mut json = Vec::new();
        blob.take(len as u64).read_to_end(&mut json)?;
        if json.len() != len {
            return Err(malformed("it ends inside its header"));
        }
        let header: PatchHeader = serde_json::from_slice(&json)
            .map_err(|e| malformed(&format!("its header is not JSON: {e}")))?;
        let mut len = [0u8; 8];
        blob.read_exact(&mut len)?;
        let ops_len = u64::from_le_bytes(len);
        if ops_len > 1 << 30 {
            return Err(malformed("its operations are too large"));
        }
        // Read as far as the blob goes: a length that lies costs no memory.
        let mut ops = Vec::new();
        blob.take(ops_len).read_to_end(&mut ops)?;
        if ops.len() as u64 != ops_len {
            return Err(malformed("it ends inside its operations"));
        }
        let ops = Op::decode_all(&ops)?;
        blob.read_exact(&mut len)?;
        let literal_len = u64::from_le_bytes(len);
        let literal_at = (MAGIC.len() + 4 + json.len() + 8) as u64 + ops_len + 8;
        let frames = literal_at
            .checked_add(literal_len)
            .ok_or_else(|| malformed("its literal stream's length is out of range"))?;
        Ok(Patch {
            header,
            ops,
            literal: (literal_at, literal_len),
            frames,
        })
    }
}

#[cfg(test)]
mod tests;
