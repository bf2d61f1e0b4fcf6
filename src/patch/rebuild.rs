//! Rebuilding a layer from its patch and its sources, as a stream: the caller hashes what
//! comes out against the layer's diff_id (a rebuild that does not match is refused there).

use std::fs::File;
use std::io::{self, Read, Write};

use super::{HEADERS_REFERENCE_MAX, Op, Patch, Section, SourceTar, data_regions, header_bytes};

fn exactly(reader: &mut impl Read, len: u64, out: &mut impl Write, what: &str) -> io::Result<()> {
    let copied = io::copy(&mut reader.take(len), out)?;
    if copied == len {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the patch's {what} ended {} bytes early", len - copied),
        ))
    }
}

/// Writes to `out` the layer `patch` (the blob) rebuilds from `sources` (the uncompressed tars
/// its header names, in that order). Returns the patch's header; the bytes written are its
/// `size` (else an error).
pub fn rebuild(
    patch: &File,
    sources: &[SourceTar],
    out: &mut impl Write,
) -> io::Result<super::PatchHeader> {
    let read = Patch::read(&mut Section::of(patch, 0, patch.metadata()?.len()))?;
    if read.header.sources.len() != sources.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the patch is made against {} layers, {} given",
                read.header.sources.len(),
                sources.len()
            ),
        ));
    }
    // The operations must make exactly the layer claimed, before a byte is written: a
    // hostile patch gets no further than its header.
    let total = read
        .ops
        .iter()
        .try_fold(0u64, |sum, op| sum.checked_add(op.output_len()));
    if total != Some(read.header.size) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the patch's operations make {} bytes; the layer it rebuilds has {}",
                total.map_or_else(|| "more than 2^64".to_string(), |t| t.to_string()),
                read.header.size
            ),
        ));
    }
    let mut headers = Vec::new();
    for source in sources {
        let regions = data_regions(source)?;
        header_bytes(source, &regions, HEADERS_REFERENCE_MAX, &mut headers)?;
    }
    let literal = Section::of(patch, read.literal.0, read.literal.0 + read.literal.1);
    let mut literal =
        zstd::stream::Decoder::with_ref_prefix(io::BufReader::new(literal), &headers)?;
    literal.window_log_max(super::WINDOW_LOG_MAX)?;

    let mut written = 0u64;
    for op in &read.ops {
        match *op {
            Op::Literal { len } => exactly(&mut literal, len, out, "literal stream")?,
            Op::Copy {
                source,
                offset,
                len,
            } => {
                let mut section = source_tar(sources, source)?.section(offset, len)?;
                exactly(&mut section, len, out, "source")?;
            }
            Op::Patch {
                source,
                offset,
                len,
                out: rebuilt,
                at,
                frame,
            } => {
                let source = source_tar(sources, source)?;
                // A patch refers to at most a window of its source (and its margins): a
                // larger reference is a damaged or hostile patch, not memory to give it.
                if len > super::WINDOW + 2 * super::WINDOW_MARGIN {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "the patch refers to {len} bytes of a source at once, more than a window"
                        ),
                    ));
                }
                let mut reference = vec![0u8; len as usize];
                source.section(offset, len)?.read_exact(&mut reference)?;
                let start = read.frames.checked_add(at);
                let (Some(start), Some(end)) = (start, start.and_then(|s| s.checked_add(frame)))
                else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the patch places a frame past any file's end",
                    ));
                };
                let frame = Section::of(patch, start, end);
                let mut decoder =
                    zstd::stream::Decoder::with_ref_prefix(io::BufReader::new(frame), &reference)?;
                decoder.window_log_max(super::WINDOW_LOG_MAX)?;
                exactly(&mut decoder, rebuilt, out, "patched file")?;
            }
        }
        written += op.output_len();
    }
    if written != read.header.size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the patch rebuilt {written} bytes; the layer has {}",
                read.header.size
            ),
        ));
    }
    Ok(read.header)
}

fn source_tar(sources: &[SourceTar], index: u32) -> io::Result<&SourceTar> {
    sources.get(index as usize).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the patch names source {index}, which it does not list"),
        )
    })
}
