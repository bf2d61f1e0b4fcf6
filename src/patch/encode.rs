//! Making a patch: the new layer's tar, file by file, against the sources'. Each file's data
//! is copied (its content is in a source, at any path), patched (its path is in a source,
//! with other content) or carried (new); everything else (headers, padding) goes into the
//! literal stream, compressed against the sources' headers.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use super::{
    HEADERS_REFERENCE_MAX, LEVEL, MAGIC, Op, PatchHeader, Region, WINDOW, WINDOW_MARGIN,
    data_regions, header_bytes,
};
use crate::digest::Digest;

/// A layer the site holds: its diff_id and its uncompressed tar.
pub struct Source {
    pub diff_id: Digest,
    pub tar: File,
}

/// What a patch is made of, in bytes of the layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Made {
    /// The patch's own size.
    pub size: u64,
    /// Layer bytes copied from a source, patched against one, and carried new (compressed).
    pub copied: u64,
    pub patched: u64,
    pub carried: u64,
}

/// The window of a source's file a window of a new file is patched against.
fn old_window(old: &Region, start: u64, len: u64) -> Option<(u64, u64)> {
    let from = start.saturating_sub(WINDOW_MARGIN).min(old.len);
    let to = (start + len + WINDOW_MARGIN).min(old.len);
    (to > from).then_some((old.offset + from, to - from))
}

fn read_at(file: &mut File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = vec![0u8; len as usize];
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn sha256_of(file: &mut File, offset: u64, len: u64) -> io::Result<[u8; 32]> {
    use sha2::Digest as _;
    file.seek(SeekFrom::Start(offset))?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 256 << 10];
    let mut left = len;
    while left > 0 {
        let take = left.min(buffer.len() as u64) as usize;
        file.read_exact(&mut buffer[..take])?;
        hasher.update(&buffer[..take]);
        left -= take as u64;
    }
    Ok(hasher.finalize().into())
}

/// zstd's window for a frame referring back over `reference` bytes and making `len`.
fn window_log(reference: u64, len: u64) -> u32 {
    let span = (reference + len).max(1 << 10);
    (64 - (span - 1).leading_zeros()).clamp(10, super::WINDOW_LOG_MAX)
}

/// A zstd encoder that refers to `reference`, sized to reach back over it.
fn encoder<'a, W: Write>(
    writer: W,
    reference: &'a [u8],
    len: u64,
) -> io::Result<zstd::stream::Encoder<'a, W>> {
    let mut encoder = if reference.is_empty() {
        zstd::stream::Encoder::new(writer, LEVEL)?
    } else {
        zstd::stream::Encoder::with_ref_prefix(writer, LEVEL, reference)?
    };
    encoder.window_log(window_log(reference.len() as u64, len))?;
    encoder.long_distance_matching(true)?;
    Ok(encoder)
}

/// Writes to `out` the patch that rebuilds `new` (the uncompressed tar of layer `target`)
/// from `sources`. `scratch` is a folder for the two sections written before they are joined.
pub fn encode(
    new: &mut File,
    target: &Digest,
    sources: &mut [Source],
    out: &mut impl Write,
    scratch: &std::path::Path,
) -> io::Result<Made> {
    // The sources' files, by content and by path; their headers, as one reference.
    let mut by_content: HashMap<([u8; 32], u64), (u32, u64)> = HashMap::new();
    let mut by_path: HashMap<String, (u32, Region)> = HashMap::new();
    let mut headers = Vec::new();
    for (index, source) in sources.iter_mut().enumerate() {
        let index = index as u32;
        let view = super::SourceTar::whole(source.tar.try_clone()?)?;
        let regions = data_regions(&view)?;
        for region in &regions {
            let hash = sha256_of(&mut source.tar, region.offset, region.len)?;
            by_content
                .entry((hash, region.len))
                .or_insert((index, region.offset));
            by_path.insert(region.path.clone(), (index, region.clone()));
        }
        header_bytes(&view, &regions, HEADERS_REFERENCE_MAX, &mut headers)?;
    }

    let size = new.metadata()?.len();
    let regions = data_regions(&super::SourceTar::whole(new.try_clone()?)?)?;
    let mut ops: Vec<Op> = Vec::new();
    let mut made = Made::default();
    let literal_file = crate::fsx::unnamed_file(scratch, "patch-literal")?;
    let frames_file = crate::fsx::unnamed_file(scratch, "patch-frames")?;
    let mut frames = io::BufWriter::new(frames_file);
    let mut frames_len = 0u64;
    let mut literal = encoder(io::BufWriter::new(literal_file), &headers, size)?;
    let push_literal = |ops: &mut Vec<Op>, len: u64| {
        if len == 0 {
            return;
        }
        match ops.last_mut() {
            Some(Op::Literal { len: last }) => *last += len,
            _ => ops.push(Op::Literal { len }),
        }
    };
    let copy_literal = |new: &mut File,
                        offset: u64,
                        len: u64,
                        literal: &mut zstd::stream::Encoder<'_, _>|
     -> io::Result<()> {
        new.seek(SeekFrom::Start(offset))?;
        let copied = io::copy(&mut (&mut *new).take(len), literal)?;
        if copied != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the new layer ended early",
            ));
        }
        Ok(())
    };

    let mut at = 0u64;
    for region in &regions {
        copy_literal(new, at, region.offset - at, &mut literal)?;
        push_literal(&mut ops, region.offset - at);
        at = region.offset + region.len;
        let hash = sha256_of(new, region.offset, region.len)?;
        if let Some(&(source, offset)) = by_content.get(&(hash, region.len)) {
            ops.push(Op::Copy {
                source,
                offset,
                len: region.len,
            });
            made.copied += region.len;
            continue;
        }
        let Some((source, old)) = by_path.get(&region.path) else {
            copy_literal(new, region.offset, region.len, &mut literal)?;
            push_literal(&mut ops, region.len);
            made.carried += region.len;
            continue;
        };
        // Patched window by window against the same stretch of the old version.
        let mut start = 0u64;
        while start < region.len {
            let len = (region.len - start).min(WINDOW);
            let Some((old_offset, old_len)) = old_window(old, start, len) else {
                copy_literal(new, region.offset + start, len, &mut literal)?;
                push_literal(&mut ops, len);
                made.carried += len;
                start += len;
                continue;
            };
            let reference = read_at(&mut sources[*source as usize].tar, old_offset, old_len)?;
            let bytes = read_at(new, region.offset + start, len)?;
            let mut frame = Vec::new();
            {
                let mut patch = encoder(&mut frame, &reference, len)?;
                patch.write_all(&bytes)?;
                patch.finish()?;
            }
            frames.write_all(&frame)?;
            ops.push(Op::Patch {
                source: *source,
                offset: old_offset,
                len: old_len,
                out: len,
                at: frames_len,
                frame: frame.len() as u64,
            });
            frames_len += frame.len() as u64;
            made.patched += len;
            start += len;
        }
    }
    copy_literal(new, at, size - at, &mut literal)?;
    push_literal(&mut ops, size - at);

    let mut literal_file = literal
        .finish()?
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?;
    let mut frames_file = frames
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?;
    let literal_len = literal_file.stream_position()?;

    let header = serde_json::to_vec(&PatchHeader {
        target: target.clone(),
        size,
        sources: sources.iter().map(|s| s.diff_id.clone()).collect(),
    })
    .expect("the header serializes");
    let mut encoded_ops = Vec::new();
    for op in &ops {
        op.encode(&mut encoded_ops);
    }
    out.write_all(MAGIC)?;
    out.write_all(&(header.len() as u32).to_le_bytes())?;
    out.write_all(&header)?;
    out.write_all(&(encoded_ops.len() as u64).to_le_bytes())?;
    out.write_all(&encoded_ops)?;
    out.write_all(&literal_len.to_le_bytes())?;
    literal_file.seek(SeekFrom::Start(0))?;
    io::copy(&mut literal_file, out)?;
    frames_file.seek(SeekFrom::Start(0))?;
    io::copy(&mut frames_file, out)?;
    made.size = (MAGIC.len() + 4 + header.len() + 8 + encoded_ops.len() + 8) as u64
        + literal_len
        + frames_len;
    Ok(made)
}
