//! Whether a layer's blob can be rebuilt byte for byte from its uncompressed tar: found at
//! export time (a cheap probe on the first bytes at each level, then the whole blob made
//! again and its digest checked), carried in the delta's record as a [`Recipe`], and applied
//! at the site. Only then does the rebuilt image keep its manifest digest; otherwise it keeps
//! its content (the diff_ids, so the image ID) and travels uncompressed.
//!
//! What reproduces: an uncompressed layer (always), gzip as haul's flate2 (zlib-rs) writes it
//! at levels 1–9, and zstd as the libzstd haul is built with writes it at levels 1–19 with the
//! size pledged (with or without a checksum, as the `zstd` tool of the same version does).
//! What does not: Go's compress/gzip (Docker's push, BuildKit, most public layers), GNU gzip,
//! Go's zstd (klauspost's, skopeo's), and another libzstd version: their encoders are not
//! these.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Verifier};

/// How to make a layer's blob from its uncompressed tar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "compression")]
pub enum Recipe {
    /// The blob is the tar itself.
    None,
    /// flate2's gzip (header: no name, mtime 0, OS unknown) at this level.
    Gzip { level: u32 },
    /// libzstd's stream at this level, the size pledged (as the `zstd` tool writes it), with
    /// a content checksum or not.
    Zstd {
        level: i32,
        #[serde(default)]
        checksum: bool,
    },
}

impl std::fmt::Display for Recipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recipe::None => write!(f, "uncompressed"),
            Recipe::Gzip { level } => write!(f, "gzip level {level}"),
            Recipe::Zstd { level, checksum } => write!(
                f,
                "zstd level {level}{}",
                if *checksum { " with checksum" } else { "" }
            ),
        }
    }
}

/// How much of the tar a probe compresses, and how much of its output it compares.
const PROBE_INPUT: u64 = 2 << 20;
const PROBE_OUTPUT: usize = 16 << 10;

/// Writes the blob `recipe` makes of `tar` (`size` bytes, read from its start) to `out`.
pub fn compress(
    recipe: Recipe,
    tar: &mut impl Read,
    size: u64,
    out: &mut impl Write,
) -> io::Result<()> {
    compress_sized(recipe, tar, Some(size), out)
}

fn compress_sized(
    recipe: Recipe,
    tar: &mut impl Read,
    size: Option<u64>,
    out: &mut impl Write,
) -> io::Result<()> {
    match recipe {
        Recipe::None => {
            io::copy(tar, out)?;
        }
        Recipe::Gzip { level } => {
            let mut encoder = gzip_encoder(out, level);
            feed(tar, &mut encoder)?;
            encoder.finish()?;
        }
        Recipe::Zstd { level, checksum } => {
            let mut encoder = zstd_encoder(out, level, checksum, size)?;
            feed(tar, &mut encoder)?;
            encoder.finish()?;
        }
    }
    Ok(())
}

/// The encoders are fed in chunks of this size, whatever reads the tar: zlib-rs's output
/// depends on how its input is cut, and a blob is made again only by the same cuts.
const FEED_CHUNK: usize = 128 << 10;

/// Writes all of `reader` to `encoder` in [`FEED_CHUNK`]s.
fn feed(reader: &mut impl Read, encoder: &mut impl Write) -> io::Result<()> {
    let mut buffer = vec![0u8; FEED_CHUNK];
    loop {
        let want = FEED_CHUNK;
        let mut got = 0;
        while got < want {
            match reader.read(&mut buffer[got..want]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        encoder.write_all(&buffer[..got])?;
        if got < want {
            return Ok(());
        }
    }
}

fn gzip_encoder<W: Write>(out: W, level: u32) -> flate2::write::GzEncoder<W> {
    flate2::GzBuilder::new()
        .operating_system(255)
        .write(out, flate2::Compression::new(level))
}

fn zstd_encoder<W: Write>(
    out: W,
    level: i32,
    checksum: bool,
    size: Option<u64>,
) -> io::Result<zstd::stream::Encoder<'static, W>> {
    let mut encoder = zstd::stream::Encoder::new(out, level)?;
    encoder.include_contentsize(true)?;
    encoder.include_checksum(checksum)?;
    encoder.set_pledged_src_size(size)?;
    Ok(encoder)
}

/// The recipe that makes `blob` (of digest `digest`) from `tar`, if one of those tried does.
/// A layer of up to [`PROBE_INPUT`] bytes is simply compressed again at each level; a larger
/// one first costs a probe per level, and one whole compression only where a probe matched.
pub fn find(tar: &mut File, blob: &mut File, digest: &Digest) -> io::Result<Option<Recipe>> {
    let tar_size = tar.metadata()?.len();
    let mut start = vec![0u8; PROBE_OUTPUT];
    blob.seek(SeekFrom::Start(0))?;
    let got = crate::fsx::read_up_to(blob, &mut start)?;
    start.truncate(got);
    let candidates: Vec<Recipe> = match start.as_slice() {
        [0x1f, 0x8b, ..] => (1..=9).rev().map(|level| Recipe::Gzip { level }).collect(),
        // The frame header says whether the frame ends with a checksum.
        [0x28, 0xb5, 0x2f, 0xfd, descriptor, ..] => {
            let checksum = descriptor & 0x04 != 0;
            (1..=19)
                .map(|level| Recipe::Zstd { level, checksum })
                .collect()
        }
        _ => vec![Recipe::None],
    };
    for recipe in candidates {
        if tar_size > PROBE_INPUT {
            tar.seek(SeekFrom::Start(0))?;
            let probe = probe(recipe, &mut (&mut *tar).take(PROBE_INPUT), tar_size)?;
            let compare = probe.len().min(start.len());
            if probe.get(..compare) != start.get(..compare) {
                continue;
            }
        }
        // The whole blob, made again and hashed.
        tar.seek(SeekFrom::Start(0))?;
        let mut hashed = Hashing(Verifier::new());
        compress_sized(recipe, tar, Some(tar_size), &mut hashed)?;
        if &hashed.0.finish() == digest {
            return Ok(Some(recipe));
        }
    }
    Ok(None)
}

/// What `recipe` has written, and will not change, once it is given the first bytes of a tar
/// of `size` bytes (an encoder writes a block out only once it is decided).
fn probe(recipe: Recipe, start: &mut impl Read, size: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let written = match recipe {
        Recipe::None => {
            io::copy(start, &mut out)?;
            out.len()
        }
        Recipe::Gzip { level } => {
            let mut encoder = gzip_encoder(&mut out, level);
            feed(start, &mut encoder)?;
            // Dropped, the encoder would finish the stream: what it wrote so far is kept.
            let written = encoder.get_ref().len();
            drop(encoder);
            written
        }
        Recipe::Zstd { level, checksum } => {
            let mut encoder = zstd_encoder(&mut out, level, checksum, Some(size))?;
            feed(start, &mut encoder)?;
            let written = encoder.get_ref().len();
            drop(encoder);
            written
        }
    };
    out.truncate(written);
    Ok(out)
}

/// A writer that only hashes.
struct Hashing(Verifier);

impl Write for Hashing {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> Vec<u8> {
        // A few MiB of text-like bytes (past the probe's input), compressible but not trivially.
        let mut state = 7u64;
        (0..3_000_000u32)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b"etaoin shrdlu\n"[((state >> 33) % 14) as usize]
            })
            .collect()
    }

    fn file_of(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    #[test]
    fn finds_the_level_that_made_a_blob_and_refuses_others() {
        let tar = layer();
        for recipe in [
            Recipe::Gzip { level: 6 },
            Recipe::Gzip { level: 1 },
            Recipe::Zstd {
                level: 3,
                checksum: false,
            },
            Recipe::Zstd {
                level: 3,
                checksum: true,
            },
            Recipe::None,
        ] {
            let mut blob = Vec::new();
            compress_sized(recipe, &mut &tar[..], Some(tar.len() as u64), &mut blob).unwrap();
            let digest = Digest::of(&blob);
            // Levels may make the same bytes: any recipe found makes the very blob.
            let found = find(&mut file_of(&tar), &mut file_of(&blob), &digest)
                .unwrap()
                .unwrap_or_else(|| panic!("{recipe} not found"));
            assert_eq!(
                std::mem::discriminant(&found),
                std::mem::discriminant(&recipe)
            );
            let mut again = Vec::new();
            compress(found, &mut &tar[..], tar.len() as u64, &mut again).unwrap();
            assert_eq!(Digest::of(&again), digest, "{recipe}");
        }
        // A gzip blob another encoder made (here: another header) is not claimed.
        let mut blob = Vec::new();
        compress_sized(Recipe::Gzip { level: 6 }, &mut &tar[..], None, &mut blob).unwrap();
        blob[9] = 3;
        let digest = Digest::of(&blob);
        assert_eq!(
            find(&mut file_of(&tar), &mut file_of(&blob), &digest).unwrap(),
            None
        );
    }
}
