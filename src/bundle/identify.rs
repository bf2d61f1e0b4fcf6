//! What a file given where a bundle is expected is, when it is not one: haul's own files
//! beside a bundle (a receipt, a parts set's record, checksums or recovery parts), a bundle
//! compressed after export, a set named by its tar's name. Each is said with the command or
//! name that takes it, before a tar reader would report its bytes as a broken tar.

use std::path::{Path, PathBuf};

/// Why a path given as a bundle is not one.
#[derive(Debug, thiserror::Error)]
pub enum NotABundle {
    #[error(
        "{path} is not there, but the parts set {record} is: name the set by its record \
         ({record}) or its first part",
        path = path.display(),
        record = record.display()
    )]
    SetBeside { path: PathBuf, record: PathBuf },
    #[error("{path} is {what}, not a bundle: {what_to_do}", path = path.display())]
    Other {
        path: PathBuf,
        what: String,
        what_to_do: String,
    },
}

/// A compression haul reads a bundle through, as `docker load` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleCompression {
    Gzip,
    Zstd,
}

/// The first 512 bytes (fewer in a shorter file) of the regular file at `path`; `None` for
/// anything else, or a file that cannot be read (the caller reports that). A pipe
/// (`<(ssh host cat v1.tar)`) is read once, by its reader: never sniffed.
pub fn first_bytes(path: &Path) -> Option<Vec<u8>> {
    if !path.metadata().is_ok_and(|m| m.is_file()) {
        return None;
    }
    let mut start = vec![0u8; 512];
    let read = std::fs::File::open(path)
        .and_then(|mut file| crate::fsx::read_up_to(&mut file, &mut start))
        .ok()?;
    start.truncate(read);
    Some(start)
}

/// The compression a file beginning with `start` is in; `None` for a tar (or anything else).
pub fn compression_of(start: &[u8]) -> Option<BundleCompression> {
    match start {
        [0x1f, 0x8b, ..] => Some(BundleCompression::Gzip),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(BundleCompression::Zstd),
        _ => None,
    }
}

/// Says what `path` (beginning with `start`, from [`first_bytes`]) is when it is something
/// haul recognises that is not a bundle; `None` for anything else (a tar, or what the tar
/// reader will report).
pub fn not_a_bundle(path: &Path, start: Option<&[u8]>) -> Option<NotABundle> {
    let shown = path.display().to_string();
    let record_beside = crate::parts::record_path(path);
    if !path.exists() {
        return record_beside.exists().then(|| NotABundle::SetBeside {
            path: path.to_path_buf(),
            record: record_beside,
        });
    }
    let start = start?;
    let other = |what: &str, what_to_do: String| {
        Some(NotABundle::Other {
            path: path.to_path_buf(),
            what: what.to_string(),
            what_to_do,
        })
    };
    let compressed = |tool: &str| {
        format!(
            "decompress it first (`{tool} {shown}`) and give haul the tar (haul reads a \
             gzip- or zstd-compressed bundle as it is, not this compression)"
        )
    };
    // gzip and zstd are read as they are (BundleFile::Compressed); these are not.
    match start {
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => {
            return other("xz-compressed", compressed("unxz -k"));
        }
        [b'B', b'Z', b'h', ..] => return other("bzip2-compressed", compressed("bunzip2 -k")),
        _ => {}
    }
    let text = String::from_utf8_lossy(start);
    let json = text.trim_start().starts_with('{');
    if json && text.contains("\"haulReceipt\"") {
        return other(
            "a haul receipt (the images a site holds)",
            format!(
                "a receipt stands in for a bundle only after --since: `haul export IMAGE \
                 --since {shown}`; give this command the .tar (or parts set) itself"
            ),
        );
    }
    if json && text.contains("\"haulParts\"") {
        return other(
            "a parts set's record under another name",
            "rename it back to NAME.parts, beside its parts NAME.001…".to_string(),
        );
    }
    let name = path.file_name()?.to_string_lossy().into_owned();
    let stem = path.with_file_name(name.rsplit_once('.')?.0);
    let record = crate::parts::record_path(&stem);
    if is_checksum_list(&text) {
        let what_to_do = if record.exists() {
            format!("name the set by its record: {}", record.display())
        } else {
            format!("check the files it lists with `sha256sum -c {shown}`")
        };
        return other("a checksum list (for sha256sum -c)", what_to_do);
    }
    let recovery = name
        .rsplit_once(".r")
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if recovery && record.exists() {
        return other(
            &format!("a recovery part of the parts set {}", record.display()),
            format!(
                "name the set by its record ({}); `haul repair {}` uses the recovery parts",
                record.display(),
                record.display()
            ),
        );
    }
    None
}

/// `sha256sum` output: lines of 64 hex digits, two spaces (or a space and `*`), a name.
fn is_checksum_list(text: &str) -> bool {
    let first = text.lines().next().unwrap_or_default();
    first.len() > 66
        && first.as_bytes()[..64].iter().all(u8::is_ascii_hexdigit)
        && (first[64..].starts_with("  ") || first[64..].starts_with(" *"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(name: &str, bytes: &[u8], beside: &[&str]) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        for other in beside {
            std::fs::write(dir.path().join(other), b"{}").unwrap();
        }
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        not_a_bundle(&path, first_bytes(&path).as_deref()).map(|e| e.to_string())
    }

    #[test]
    fn haul_s_own_files_and_compressed_bundles_are_named() {
        let said_of = |name, bytes: &[u8], beside: &[&str]| said(name, bytes, beside).unwrap();
        assert!(said_of("v1.tar.xz", b"\xfd7zXZ\0", &[]).contains("unxz -k"));
        assert!(
            said_of("v1.receipt", br#"{"haulReceipt": 1, "images": []}"#, &[]).contains("--since")
        );
        let sums = format!("{}  v1.tar.001\n", "ab".repeat(32));
        assert!(
            said_of("v1.tar.sha256", sums.as_bytes(), &["v1.tar.parts"])
                .contains("name the set by its record")
        );
        assert!(said_of("v1.tar.r01", b"\0\0\0", &["v1.tar.parts"]).contains("a recovery part"));
        // A tar, or bytes the tar reader will judge, are not for this module.
        let mut tar = vec![0u8; 1024];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(said("v1.tar", &tar, &[]), None);
        assert_eq!(said("notes.r01", b"x", &[]), None);
    }

    #[test]
    fn a_set_named_by_its_tar_s_name_is_pointed_at() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("v1.tar.parts"), b"{}").unwrap();
        let said = not_a_bundle(&dir.path().join("v1.tar"), None)
            .unwrap()
            .to_string();
        assert!(said.contains("but the parts set"), "{said}");
        assert!(not_a_bundle(&dir.path().join("v2.tar"), None).is_none());
    }
}
