//! One pass over a tar stream (a file or a pipe, read once): every regular file is hashed as
//! it streams by, and only what could be metadata (JSON of at most 4 MiB, within a budget) is
//! kept in memory. Nothing is written anywhere; names are only compared, never opened.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader, ReadBuf};

use super::Problem;
use crate::digest::{Digest, Verifier};
use crate::manifest::MAX_MANIFEST_BYTES;

/// All JSON-looking files kept together may take this much; beyond it, files are hashed but
/// not kept (and a config among them is reported as not checked).
pub const METADATA_BUDGET: u64 = 64 << 20;
/// Headers of one entry (long names, PAX records) may take this much. tokio-tar reads them
/// into memory whole, so a hostile tar could otherwise make it hold gigabytes.
pub const HEADER_LIMIT: u64 = 1 << 20;
/// Image tars hold a few files per layer; more than this is not one (and would make the
/// table of files, which is kept, grow without bound).
pub const MAX_ENTRIES: usize = 100_000;
const CHUNK: usize = 1 << 20;
const BLOCK: usize = 512;

/// What the pass saw.
#[derive(Debug, Default)]
pub struct Contents {
    /// Regular files by normalized path; a later entry of the same path replaces an earlier
    /// one, as it would when the tar is unpacked.
    pub files: BTreeMap<String, FileRecord>,
    /// Symbolic and hard links by normalized path → normalized target.
    pub links: BTreeMap<String, String>,
    /// Bytes of all regular files.
    pub bytes: u64,
    /// Problems of the tar itself: unreadable, truncated, unsafe names.
    pub problems: Vec<Problem>,
    /// Whether the whole tar was read, up to its end-of-archive marker.
    pub complete: bool,
}

impl Contents {
    /// The file at `path`, following links (a few; a loop names nothing).
    pub fn resolve(&self, path: &str) -> Option<&FileRecord> {
        let mut path = path;
        for _ in 0..super::MAX_LINKS {
            if let Some(file) = self.files.get(path) {
                return Some(file);
            }
            path = self.links.get(path)?;
        }
        None
    }

    /// The kept bytes of the (JSON) file at `path`.
    pub fn bytes_of(&self, path: &str) -> Option<&[u8]> {
        match &self.resolve(path)?.kept {
            Kept::Bytes(bytes) => Some(bytes),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct FileRecord {
    pub digest: Digest,
    pub size: u64,
    /// Where its bytes start in the tar (they run on, unbroken, for `size` bytes): a push
    /// reads a blob straight from a tar file.
    pub offset: u64,
    /// The content starts with a tar header (or a zero block) and is whole 512-byte blocks:
    /// an uncompressed tar, whose digest is then a diff_id.
    pub is_tar: bool,
    pub kept: Kept,
}

/// Whether a file's bytes were kept, and if not, why.
#[derive(Debug)]
pub enum Kept {
    Bytes(Vec<u8>),
    TooLarge,
    NotJson,
    OverBudget,
}

/// Paths every image tar may have at its root: kept whatever they hold (up to 4 MiB), so
/// a garbled one is reported as such rather than as missing.
fn is_index_file(path: &str) -> bool {
    matches!(path, "manifest.json" | "index.json")
}

/// Reads the whole tar from `reader`. Never fails: what goes wrong becomes a problem, and
/// what was read before it is still returned for the checks.
pub async fn scan<R: AsyncRead + Unpin>(reader: R) -> Contents {
    let track = Arc::new(Track::default());
    let input = Tracked {
        inner: BufReader::with_capacity(256 << 10, reader),
        track: track.clone(),
    };
    let mut archive = tokio_tar::Archive::new(input);
    let mut contents = Contents::default();
    let mut entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => {
            contents.problems.push(failed(&track, 0, None, false, e));
            return contents;
        }
    };
    let mut buffer = vec![0u8; CHUNK];
    let mut kept_total = 0u64;
    let mut count = 0usize;
    let mut last: Option<String> = None;
    loop {
        // Where the next entry's headers start: where a bad header is reported.
        let start = track.position();
        track.limit_to(HEADER_LIMIT);
        let mut entry = match entries.next().await {
            None => break,
            Some(Ok(entry)) => entry,
            Some(Err(e)) => {
                contents
                    .problems
                    .push(failed(&track, start, last, false, e));
                return contents;
            }
        };
        track.unlimit();
        count += 1;
        if count > MAX_ENTRIES {
            contents
                .problems
                .push(Problem::TooManyEntries { limit: MAX_ENTRIES });
            return contents;
        }
        let name = match entry.path_bytes() {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                contents
                    .problems
                    .push(failed(&track, start, last, false, e));
                return contents;
            }
        };
        last = Some(name.clone());
        let kind = entry.header().entry_type();
        let size = entry.effective_size();
        let path = normalize(&name, "");
        let regular = kind.is_file() || kind.is_contiguous();

        if regular && let Some(path) = path.as_deref().filter(|p| !p.is_empty()) {
            let keep = if size > MAX_MANIFEST_BYTES {
                Some(Kept::TooLarge)
            } else if !is_index_file(path) && kept_total + size > METADATA_BUDGET {
                Some(Kept::OverBudget)
            } else {
                None // decided on the first bytes
            };
            let offset = entry.raw_file_position();
            match hash_entry(&mut entry, &mut buffer, size, keep, is_index_file(path)).await {
                Ok(mut record) => {
                    record.offset = offset;
                    if let Kept::Bytes(bytes) = &record.kept {
                        kept_total += bytes.len() as u64;
                    }
                    contents.bytes += record.size;
                    contents.links.remove(path);
                    contents.files.insert(path.to_string(), record);
                }
                Err(e) => {
                    contents
                        .problems
                        .push(failed(&track, track.position(), last, true, e));
                    return contents;
                }
            }
            continue;
        }

        // Not hashed: read (and drop) any data here, so that the header limit above only
        // ever counts headers.
        if let Err(e) = discard(&mut entry, &mut buffer).await {
            contents
                .problems
                .push(failed(&track, track.position(), last, true, e));
            return contents;
        }
        let Some(path) = path.filter(|p| !p.is_empty() || kind.is_dir()) else {
            contents.problems.push(Problem::UnsafePath {
                path: name,
                named_by: None,
            });
            continue;
        };
        if kind.is_symlink() || kind.is_hard_link() {
            let target = match entry.link_name_bytes() {
                Ok(Some(target)) => String::from_utf8_lossy(&target).into_owned(),
                _ => String::new(),
            };
            // A symlink is relative to its folder, a hard link to the tar's root.
            let base = match path.rsplit_once('/') {
                Some((folder, _)) if kind.is_symlink() => folder,
                _ => "",
            };
            match normalize(&target, base) {
                // A link to the root folder names no file: nothing to record.
                Some(target) if target.is_empty() => {}
                Some(target) => {
                    contents.files.remove(&path);
                    contents.links.insert(path, target);
                }
                None => contents.problems.push(Problem::UnsafePath {
                    path: format!("{name} -> {target}"),
                    named_by: None,
                }),
            }
        }
    }
    drop(entries);
    contents.complete = check_end(archive, &track, last, &mut contents.problems).await;
    contents
}

/// A tar ends with a zero block; Go's reader (docker, containerd) then wants either nothing
/// more or a second zero block. Anything else, or input that just stops, is a damaged tar.
async fn check_end<R: AsyncRead + Unpin>(
    archive: tokio_tar::Archive<Tracked<R>>,
    track: &Track,
    last: Option<String>,
    problems: &mut Vec<Problem>,
) -> bool {
    if track.eof.load(Ordering::Relaxed) {
        problems.push(match track.position() {
            0 => Problem::Unreadable {
                offset: 0,
                after: None,
                detail: "the input is empty".to_string(),
            },
            offset => Problem::Truncated {
                offset,
                entry: last,
                inside: false,
            },
        });
        return false;
    }
    let Ok(mut input) = archive.into_inner() else {
        return true; // cannot happen: the entries are dropped
    };
    let mut block = [0u8; BLOCK];
    let mut filled = 0;
    while filled < BLOCK {
        match input.read(&mut block[filled..]).await {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) => {
                problems.push(failed(track, track.position(), last, false, e));
                return false;
            }
        }
    }
    let ok = match filled {
        0 => true,
        BLOCK if block.iter().all(|b| *b == 0) => true,
        BLOCK => {
            problems.push(unreadable(
                track.position() - BLOCK as u64,
                last,
                "data follows a single end-of-archive block; loaders stop with an error there"
                    .to_string(),
            ));
            false
        }
        _ => {
            problems.push(Problem::Truncated {
                offset: track.position(),
                entry: last,
                inside: false,
            });
            false
        }
    };
    // Read what follows (zero padding, usually) so that a writer piping the tar in does not
    // fail on a closed pipe.
    let _ = tokio::io::copy(&mut input, &mut tokio::io::sink()).await;
    ok
}

fn unreadable(offset: u64, after: Option<String>, detail: String) -> Problem {
    Problem::Unreadable {
        offset,
        after,
        detail,
    }
}

/// A read that failed: where the input ran out, the tar was cut short (`inside` the data of
/// the entry `last`, or after it); otherwise it is not (or no longer) a tar from `at` on.
fn failed(track: &Track, at: u64, last: Option<String>, inside: bool, error: io::Error) -> Problem {
    let eof = track.eof.load(Ordering::Relaxed);
    if eof && last.is_none() && track.position() < BLOCK as u64 {
        unreadable(
            0,
            None,
            format!(
                "the input holds only {} bytes, less than one tar header",
                track.position()
            ),
        )
    } else if eof && track.position() > 0 {
        Problem::Truncated {
            offset: track.position(),
            entry: last,
            inside,
        }
    } else {
        unreadable(at, last, error.to_string())
    }
}

/// Hashes one entry's data; keeps it when it may be metadata (`keep` is None: decided by
/// whether it starts like JSON; `always`: an index file, kept whatever it starts with).
async fn hash_entry<R: AsyncRead + Unpin>(
    entry: &mut R,
    buffer: &mut [u8],
    size: u64,
    keep: Option<Kept>,
    always: bool,
) -> io::Result<FileRecord> {
    let mut verifier = Verifier::new();
    let mut first = [0u8; BLOCK];
    let mut first_len = 0;
    let mut kept = keep;
    let mut bytes = Vec::new();
    loop {
        let n = entry.read(buffer).await?;
        if n == 0 {
            break;
        }
        let chunk = &buffer[..n];
        if first_len < BLOCK {
            let take = (BLOCK - first_len).min(n);
            first[first_len..first_len + take].copy_from_slice(&chunk[..take]);
            first_len += take;
        }
        // Decided on the first bytes alone: a later read (a file cut by a part boundary, say)
        // starts in the middle of the document.
        if kept.is_none() && !always && verifier.is_empty() && !looks_like_json(chunk) {
            kept = Some(Kept::NotJson);
        }
        if kept.is_none() {
            bytes.extend_from_slice(chunk);
        }
        verifier.update(chunk);
    }
    if verifier.len() != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the entry ends after {} of {size} bytes", verifier.len()),
        ));
    }
    let is_tar = size >= BLOCK as u64
        && size.is_multiple_of(BLOCK as u64)
        && (first.iter().all(|b| *b == 0) || is_tar_header(&first));
    Ok(FileRecord {
        offset: 0,
        digest: verifier.finish(),
        size,
        is_tar,
        kept: kept.unwrap_or(Kept::Bytes(bytes)),
    })
}

async fn discard<R: AsyncRead + Unpin>(entry: &mut R, buffer: &mut [u8]) -> io::Result<()> {
    while entry.read(buffer).await? != 0 {}
    Ok(())
}

/// JSON documents start with `{` or `[` (after white space); layers (gzip, zstd, tar headers
/// with a file name) practically never do.
fn looks_like_json(chunk: &[u8]) -> bool {
    chunk
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'['))
}

/// A ustar/GNU/v7 header: its checksum field (octal) is the sum of its bytes, the field itself
/// counted as spaces.
fn is_tar_header(block: &[u8; BLOCK]) -> bool {
    let field = &block[148..156];
    let digits: String = field
        .iter()
        .map(|b| *b as char)
        .filter(|c| !matches!(c, '\0' | ' '))
        .collect();
    let Ok(expected) = u32::from_str_radix(&digits, 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as u32
            }
        })
        .sum();
    sum == expected
}

/// `name` as a clean relative path (no `.`, empty or trailing components), resolved against
/// the folder `base`; None when it is absolute or `..` leaves the root. Loaders unpack the tar
/// into a folder: a name that escapes it is hostile, whatever the loader then does.
pub fn normalize(name: &str, base: &str) -> Option<String> {
    if name.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// The input as the archive reads it: counts bytes (for messages), notices when input ends
/// (a tar must end with its marker, not just stop), and fails a read past the limit.
struct Tracked<R> {
    inner: R,
    track: Arc<Track>,
}

#[derive(Debug, Default)]
struct Track {
    position: AtomicU64,
    /// Reads fail at this position.
    limit: AtomicU64,
    eof: AtomicBool,
}

impl Track {
    fn position(&self) -> u64 {
        self.position.load(Ordering::Relaxed)
    }

    /// Allows `bytes` more, then fails reads.
    fn limit_to(&self, bytes: u64) {
        self.limit
            .store(self.position().saturating_add(bytes), Ordering::Relaxed);
    }

    fn unlimit(&self) {
        self.limit.store(u64::MAX, Ordering::Relaxed);
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Tracked<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let track = &this.track;
        if track.position() >= track.limit.load(Ordering::Relaxed) {
            return Poll::Ready(Err(io::Error::other(format!(
                "the headers of one entry (long names, PAX records) take more than {HEADER_LIMIT} bytes"
            ))));
        }
        let wanted = buf.remaining();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = buf.filled().len() - before;
        if read == 0 && wanted > 0 {
            track.eof.store(true, Ordering::Relaxed);
        }
        track.position.fetch_add(read as u64, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_and_escapes_refused() {
        assert_eq!(
            normalize("./manifest.json", "").as_deref(),
            Some("manifest.json")
        );
        assert_eq!(normalize("a//b/./c/", "").as_deref(), Some("a/b/c"));
        assert_eq!(normalize("a/../b", "").as_deref(), Some("b"));
        assert_eq!(
            normalize("../b/layer.tar", "a").as_deref(),
            Some("b/layer.tar")
        );
        assert_eq!(normalize("./", "").as_deref(), Some(""));
        for bad in ["../x", "/etc/passwd", "a/../../x"] {
            assert_eq!(normalize(bad, ""), None, "{bad}");
        }
        assert_eq!(normalize("../../x", "a"), None);
    }

    /// Hands out at most a few bytes per read, as a parts set does at a part boundary.
    struct Trickle<'a>(&'a [u8]);

    impl tokio::io::AsyncRead for Trickle<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            let take = self.0.len().min(buf.remaining()).min(7);
            buf.put_slice(&self.0[..take]);
            self.0 = &self.0[take..];
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_document_read_in_pieces_is_still_kept() {
        let mut writer = crate::export::tar::TarWriter::new(Vec::new());
        writer
            .append_bytes("blobs/sha256/ab", br#"{"schemaVersion": 2, "layers": []}"#)
            .unwrap();
        let tar = writer.finish().unwrap();
        let contents = scan(Trickle(&tar)).await;
        assert!(contents.problems.is_empty(), "{:?}", contents.problems);
        assert!(contents.bytes_of("blobs/sha256/ab").is_some());
    }

    #[test]
    fn uncompressed_tars_are_told_from_compressed_data() {
        let mut writer = crate::export::tar::TarWriter::new(Vec::new());
        writer.append_bytes("etc/data", b"x").unwrap();
        let tar = writer.finish().unwrap();
        assert!(is_tar_header(tar[..BLOCK].try_into().unwrap()));
        let mut gzip = [0u8; BLOCK];
        gzip[..4].copy_from_slice(&[0x1f, 0x8b, 8, 0]);
        assert!(!is_tar_header(&gzip));
        let mut changed: [u8; BLOCK] = tar[..BLOCK].try_into().unwrap();
        changed[0] ^= 1;
        assert!(!is_tar_header(&changed));
        assert!(looks_like_json(b"  \n{\"a\":1}"));
        assert!(looks_like_json(b"[1]"));
        assert!(!looks_like_json(&tar));
    }
}
