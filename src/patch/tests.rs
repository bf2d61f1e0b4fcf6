//! Patches of made-up layers: a base rebuilt (every mtime moved, files changed, moved, added
//! and removed, one file larger than a window) rebuilds byte for byte, small; a wrong source
//! or a damaged patch does not rebuild the layer.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

use super::SourceTar;
use super::encode::{Source, encode};
use super::rebuild::rebuild;
use crate::digest::Digest;

/// Bytes that look like a file's, distinct per seed, compressible as text is.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let words = [
        "alpha ",
        "beta ",
        "gamma ",
        "delta\n",
        "libc ",
        "usr/share ",
        "0x1f ",
    ];
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(words[(state % words.len() as u64) as usize].as_bytes());
        out.extend_from_slice(&state.to_le_bytes()[..2]);
    }
    out.truncate(len);
    out
}

fn layer(dir: &std::path::Path, name: &str, files: &[(String, Vec<u8>)], mtime: u64) -> File {
    let path = dir.join(name);
    let mut builder = tar::Builder::new(File::create(&path).unwrap());
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_cksum();
        builder
            .append_data(&mut header, name, bytes.as_slice())
            .unwrap();
    }
    builder.into_inner().unwrap().sync_all().unwrap();
    File::open(path).unwrap()
}

fn digest_of(file: &mut File) -> Digest {
    file.seek(SeekFrom::Start(0)).unwrap();
    let mut verifier = crate::digest::Verifier::new();
    let mut writer = VerifierWriter(&mut verifier);
    std::io::copy(file, &mut writer).unwrap();
    verifier.finish()
}

struct VerifierWriter<'a>(&'a mut crate::digest::Verifier);

impl Write for VerifierWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_rebuilt_base_patches_small_and_rebuilds_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut old_files: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            (
                format!("usr/lib/file{i:03}.so"),
                content(i, 1000 + (i as usize * 37) % 20_000),
            )
        })
        .collect();
    // One file larger than a patch window.
    old_files.push((
        "usr/lib/big.bin".to_string(),
        content(999, (super::WINDOW + (5 << 20)) as usize),
    ));
    let mut new_files = old_files.clone();
    for file in new_files.iter_mut().step_by(30) {
        let at = file.1.len() / 2;
        file.1[at..at + 8].copy_from_slice(b"PATCHED!");
    }
    let big = new_files.len() - 1;
    let at = (super::WINDOW + (1 << 20)) as usize;
    new_files[big].1[at..at + 4].copy_from_slice(b"NEW!");
    new_files[7].0 = "usr/lib/moved/file007.so".to_string();
    new_files.remove(11);
    new_files.push(("etc/new.conf".to_string(), content(5000, 3000)));
    let mut old = layer(dir.path(), "old.tar", &old_files, 1_700_000_000);
    let mut new = layer(dir.path(), "new.tar", &new_files, 1_700_086_400);
    let old_id = digest_of(&mut old);
    let new_id = digest_of(&mut new);
    let new_size = new.metadata().unwrap().len();

    let mut patch = tempfile::tempfile().unwrap();
    let made = encode(
        &mut new,
        &new_id,
        &mut [Source {
            diff_id: old_id.clone(),
            tar: old.try_clone().unwrap(),
        }],
        &mut patch,
        dir.path(),
    )
    .unwrap();
    assert_eq!(made.size, patch.metadata().unwrap().len());
    // Unchanged files copied (the moved one too), changed ones patched, the new one carried;
    // the patch a small share of the layer.
    assert!(made.copied > 1 << 20, "{made:?}");
    assert!(
        made.copied + made.patched + made.carried > new_size * 9 / 10,
        "{made:?}"
    );
    assert!(made.patched > 0 && made.carried >= 3000, "{made:?}");
    assert!(
        made.size < new_size / 50,
        "{made:?} for a layer of {new_size}"
    );

    let whole = |file: &File| SourceTar::whole(file.try_clone().unwrap()).unwrap();
    let mut rebuilt = Vec::new();
    let header = rebuild(&patch, &[whole(&old)], &mut rebuilt).unwrap();
    assert_eq!(header.target, new_id);
    assert_eq!(header.sources, vec![old_id]);
    assert_eq!(Digest::of(&rebuilt), new_id, "the rebuilt layer differs");

    // The source read in place, where it lies inside a larger file (a bundle): the same.
    let mut old_bytes = Vec::new();
    old.seek(SeekFrom::Start(0)).unwrap();
    std::io::Read::read_to_end(&mut old, &mut old_bytes).unwrap();
    let mut bundle = tempfile::tempfile().unwrap();
    bundle.write_all(&[7u8; 1536]).unwrap();
    bundle.write_all(&old_bytes).unwrap();
    bundle.write_all(&[9u8; 4096]).unwrap();
    let in_place = SourceTar {
        file: bundle.try_clone().unwrap(),
        start: 1536,
        len: old_bytes.len() as u64,
    };
    let mut rebuilt = Vec::new();
    rebuild(&patch, &[in_place], &mut rebuilt).unwrap();
    assert_eq!(
        Digest::of(&rebuilt),
        new_id,
        "rebuilt in place, the layer differs"
    );
    // A stretch shorter than the layer: the patch's reads past its end are refused.
    let cut = SourceTar {
        file: bundle,
        start: 1536,
        len: old_bytes.len() as u64 / 2,
    };
    let mut out = Vec::new();
    if rebuild(&patch, &[cut], &mut out).is_ok() {
        assert_ne!(Digest::of(&out), new_id);
    }

    // Another source: not the layer (the caller's hash check refuses it), or an error.
    let other = layer(dir.path(), "other.tar", &new_files[..10], 1);
    let mut wrong = Vec::new();
    if rebuild(&patch, &[whole(&other)], &mut wrong).is_ok() {
        assert_ne!(Digest::of(&wrong), new_id);
    }
    // A damaged patch: not the layer, or an error.
    let mut bytes = Vec::new();
    patch.seek(SeekFrom::Start(0)).unwrap();
    std::io::Read::read_to_end(&mut patch, &mut bytes).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let damaged = dir.path().join("damaged.patch");
    std::fs::write(&damaged, &bytes).unwrap();
    let mut out = Vec::new();
    if rebuild(&File::open(&damaged).unwrap(), &[whole(&old)], &mut out).is_ok() {
        assert_ne!(Digest::of(&out), new_id);
    }
}

#[test]
fn not_a_patch_is_named() {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(b"PK\x03\x04 not a patch at all").unwrap();
    let error = rebuild(&file, &[], &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(error.contains("not a haul patch"), "{error}");
}
