//! A minimal tar writer for exports, on std I/O so that copying a cached blob into an output
//! file is `copy_file_range` in the kernel, not a loop through user-space buffers.
//!
//! Every entry has fixed metadata (mode 0644/0755, owner 0:0, mtime 0), so the same image
//! exported twice gives the same bytes. Sizes past ustar's 8 GiB field use GNU's base-256
//! size encoding, which Go's archive/tar (docker, containerd, skopeo) reads.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

const BLOCK: usize = 512;
/// ustar's 11 octal digits: 8 GiB - 1.
const USTAR_MAX_SIZE: u64 = 0o777_7777_7777;

/// Where a tar goes. Copying a cached file into it is the kernel's work where the sink is a
/// file or a pipe (`std::io::copy` specializes on the concrete types); a sink that cuts the
/// stream (a parts set) copies piece by piece into its files.
pub trait Sink: Write {
    /// Copies `size` bytes of the file at `path` into the sink; returns the bytes copied.
    fn copy_path(&mut self, path: &Path, size: u64) -> io::Result<u64> {
        let file = File::open(path)?;
        self.copy_file(&mut file.take(size))
    }

    /// Copies all of `from` into the sink; returns the bytes copied.
    fn copy_file(&mut self, from: &mut io::Take<File>) -> io::Result<u64> {
        io::copy(from, self)
    }
}

/// Counts what would be written, and reads nothing (`--dry-run`).
#[derive(Default)]
pub struct Counter;

impl Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink for Counter {
    fn copy_path(&mut self, _: &Path, size: u64) -> io::Result<u64> {
        Ok(size)
    }
}

impl Sink for File {}
impl Sink for io::Stdout {}
impl Sink for std::process::ChildStdin {}
impl Sink for Vec<u8> {}
impl Sink for crate::blocking::PipeWriter {}
impl Sink for io::BufWriter<File> {}

/// Writes tar entries to `out`, counting bytes.
pub struct TarWriter<W: Sink> {
    out: W,
    written: u64,
}

impl<W: Sink> TarWriter<W> {
    pub fn new(out: W) -> TarWriter<W> {
        TarWriter { out, written: 0 }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The tar's size once [`finish`](Self::finish) has added the end-of-archive marker.
    pub fn finished_size(&self) -> u64 {
        self.written + 2 * BLOCK as u64
    }

    pub fn append_dir(&mut self, name: &str) -> io::Result<()> {
        let header = header(name, 0, tar::EntryType::Directory, 0o755)?;
        self.write(header.as_bytes())
    }

    pub fn append_bytes(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let header = header(name, data.len() as u64, tar::EntryType::Regular, 0o644)?;
        self.write(header.as_bytes())?;
        self.write(data)?;
        self.pad(data.len() as u64)
    }

    /// Copies `size` bytes of the file at `path` into the entry `name`. The file must hold
    /// exactly `size` bytes: a short file is an error, never a short entry.
    pub fn append_file(&mut self, name: &str, path: &Path, size: u64) -> io::Result<()> {
        let header = header(name, size, tar::EntryType::Regular, 0o644)?;
        self.write(header.as_bytes())?;
        self.out.flush()?;
        // File → File (or pipe) through std::io::copy: the kernel copies, no user buffer.
        let copied = self.out.copy_path(path, size)?;
        self.written += copied;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} holds {copied} bytes, expected {size}", path.display()),
            ));
        }
        self.pad(size)
    }

    /// Copies `size` bytes from `reader` into the entry `name`: a short reader is an error,
    /// never a short entry.
    pub fn append_reader(
        &mut self,
        name: &str,
        reader: &mut dyn Read,
        size: u64,
    ) -> io::Result<()> {
        let header = header(name, size, tar::EntryType::Regular, 0o644)?;
        self.write(header.as_bytes())?;
        let copied = io::copy(&mut reader.take(size), &mut self.out)?;
        self.written += copied;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name}: {copied} bytes to copy, expected {size}"),
            ));
        }
        self.pad(size)
    }

    /// A hard link `name` to the entry `target` written before it.
    pub fn append_link(&mut self, name: &str, target: &str) -> io::Result<()> {
        let mut header = header(name, 0, tar::EntryType::Link, 0o644)?;
        header.set_link_name(target)?;
        header.set_cksum();
        self.write(header.as_bytes())
    }

    /// The output, as it is (no end-of-archive marker): to fail it.
    pub fn into_inner(self) -> W {
        self.out
    }

    /// Writes the end-of-archive marker (two zero blocks) and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.end()?;
        Ok(self.out)
    }

    /// Writes the end-of-archive marker and flushes, keeping the output (to fail it if this
    /// fails).
    pub fn end(&mut self) -> io::Result<()> {
        self.write(&[0u8; 2 * BLOCK])?;
        self.out.flush()
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rest = (size % BLOCK as u64) as usize;
        if rest != 0 {
            self.write(&[0u8; BLOCK][..BLOCK - rest])?;
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

fn header(name: &str, size: u64, kind: tar::EntryType, mode: u32) -> io::Result<tar::Header> {
    // GNU headers when the size needs base-256; ustar (what docker save writes) otherwise.
    let mut header = if size > USTAR_MAX_SIZE {
        tar::Header::new_gnu()
    } else {
        tar::Header::new_ustar()
    };
    header.set_path(name)?;
    header.set_size(size);
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_tar_the_tar_crate_reads() {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        std::fs::write(&blob, b"layer bytes").unwrap();
        let mut writer = TarWriter::new(Vec::new());
        writer.append_dir("blobs/").unwrap();
        writer.append_file("blobs/sha256/aa", &blob, 11).unwrap();
        writer.append_bytes("manifest.json", b"[]").unwrap();
        let size = writer.finished_size();
        let bytes = writer.finish().unwrap();
        assert_eq!(bytes.len() % 512, 0);
        assert_eq!(bytes.len() as u64, size);

        let mut archive = tar::Archive::new(&bytes[..]);
        let entries: Vec<(String, Vec<u8>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), data)
            })
            .collect();
        assert_eq!(
            entries,
            vec![
                ("blobs/".to_string(), vec![]),
                ("blobs/sha256/aa".to_string(), b"layer bytes".to_vec()),
                ("manifest.json".to_string(), b"[]".to_vec()),
            ]
        );
    }

    #[test]
    fn a_short_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        std::fs::write(&blob, b"short").unwrap();
        let mut writer = TarWriter::new(Vec::new());
        assert!(writer.append_file("x", &blob, 100).is_err());
    }

    #[test]
    fn huge_sizes_use_gnu_headers() {
        let h = header("big", 9 << 30, tar::EntryType::Regular, 0o644).unwrap();
        assert_eq!(h.size().unwrap(), 9 << 30);
        assert!(h.as_gnu().is_some());
    }
}
