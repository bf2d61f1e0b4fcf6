//! Rebuilding a layer from its patch and its sources, as a stream: the caller hashes what
//! comes out against the layer's diff_id (a rebuild that does not match is refused there).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

use super::{HEADERS_REFERENCE_MAX, Op, Patch, data_regions, header_bytes};

/// A stretch of a file read through its own position (`pread`), so that several stretches of
/// one file may be read at once.
struct Section<'a> {
    file: &'a File,
    at: u64,
    end: u64,
}

impl Read for Section<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.at).min(buffer.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let read = self.file.read_at(&mut buffer[..want], self.at)?;
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
    sources: &[File],
    out: &mut impl Write,
) -> io::Result<super::PatchHeader> {
    let read = Patch::read(&mut Section {
        file: patch,
        at: 0,
        end: patch.metadata()?.len(),
    })?;
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
    let mut headers = Vec::new();
    for source in sources {
        let regions = data_regions(source)?;
        let mut handle = source.try_clone()?;
        header_bytes(&mut handle, &regions, HEADERS_REFERENCE_MAX, &mut headers)?;
    }
    let literal = Section {
        file: patch,
        at: read.literal.0,
        end: read.literal.0 + read.literal.1,
    };
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
                let file = source_file(sources, source)?;
                let mut section = Section {
                    file,
                    at: offset,
                    end: offset + len,
                };
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
                let file = source_file(sources, source)?;
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
                file.read_exact_at(&mut reference, offset)?;
                let frame = Section {
                    file: patch,
                    at: read.frames + at,
                    end: read.frames + at + frame,
                };
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

fn source_file(sources: &[File], index: u32) -> io::Result<&File> {
    sources.get(index as usize).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the patch names source {index}, which it does not list"),
        )
    })
}
