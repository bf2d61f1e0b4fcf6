//! Entry points for the fuzzers (`fuzz/`, cargo-fuzz) and for the test that replays their
//! corpora and every crash input on stable Rust (`tests/fuzz_corpora.rs`): one plain
//! `fn(&[u8])` per parser of what crosses the gap, calling what the commands call. Each must
//! return for any bytes (an error is fine), never panic, abort, stall or hold unbounded
//! memory.

use std::io::{Seek, Write};

/// A fuzz target's body: any bytes in, nothing out.
pub type Target = fn(&[u8]);

/// Every target, by the name of its folder under `fuzz/corpus/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("bundle", bundle),
    ("parts_record", parts_record),
    ("delta_record", delta_record),
    ("receipt", receipt),
    ("image_list", image_list),
    ("patch", patch),
    ("patch_encode", patch_encode),
    ("manifest", haul_oci::fuzzing::manifest),
    ("config", haul_oci::fuzzing::config),
    ("reference", haul_oci::fuzzing::reference),
    ("www_authenticate", haul_registry::fuzzing::www_authenticate),
    ("token_response", haul_registry::fuzzing::token_response),
    ("upload_range", haul_registry::fuzzing::upload_range),
    ("sigstore_bundle", haul_sigstore::fuzzing::sigstore_bundle),
    ("cosign_layer", haul_sigstore::fuzzing::cosign_layer),
    ("x509", haul_sigstore::fuzzing::x509),
    ("trusted_root", haul_sigstore::fuzzing::trusted_root),
    ("timestamp", haul_sigstore::fuzzing::timestamp),
    ("checkpoint", haul_sigstore::fuzzing::checkpoint),
    ("inclusion_proof", haul_sigstore::fuzzing::inclusion_proof),
    ("der", haul_sigstore::fuzzing::der),
];

/// Runs the target `name` on `data` (a fuzz target's body). Panics on an unknown name.
pub fn run(name: &str, data: &[u8]) {
    let (_, target) = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"));
    target(data);
}

/// A tar given as a bundle: read once as every command reads it, then summarised, its receipt
/// taken, as `inspect`, `verify --receipt` and `--since` do.
pub fn bundle(data: &[u8]) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    let bundle = runtime.block_on(crate::bundle::Bundle::read(data));
    let _ = crate::bundle::summary::Summary::of(&bundle).render();
    let _ = crate::delta::Receipt::of_bundle(&bundle);
    let _ = bundle.not_an_image_tar("fuzz", "nothing");
    let _ = bundle.tar_size();
    let _ = bundle.image_count();
}

/// A parts set's record (`NAME.parts`).
pub fn parts_record(data: &[u8]) {
    if let Ok(record) = serde_json::from_slice::<crate::parts::PartsRecord>(data) {
        let _ = record.all_parts().count();
        let _ = record.parity();
    }
}

/// `haul-delta.json`.
pub fn delta_record(data: &[u8]) {
    let _ = serde_json::from_slice::<crate::bundle::DeltaRecord>(data);
}

/// A receipt (`--since FILE.receipt`).
pub fn receipt(data: &[u8]) {
    let _ = crate::delta::Receipt::parse(data);
}

/// An image list or lock file (`-f LIST`).
pub fn image_list(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::list::ImageList::parse("fuzz", text);
    }
}

/// A small uncompressed layer tar, the source a patch is applied to or made against.
fn source_tar() -> Option<std::fs::File> {
    let mut builder = Vec::new();
    let mut header = [0u8; 512];
    header[..9].copy_from_slice(b"etc/hosts");
    let body = b"127.0.0.1 localhost\n".repeat(50);
    let size = format!("{:011o}\0", body.len());
    header[124..136].copy_from_slice(size.as_bytes());
    header[100..108].copy_from_slice(b"0000644\0");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    builder.extend_from_slice(&header);
    builder.extend_from_slice(&body);
    builder.resize(builder.len().div_ceil(512) * 512 + 1024, 0);
    unnamed_with(&builder)
}

/// `bytes` in a file with no name (removed once open), in the temporary folder.
fn unnamed_with(bytes: &[u8]) -> Option<std::fs::File> {
    let mut file = crate::fsx::unnamed_file(&std::env::temp_dir(), "fuzz").ok()?;
    file.write_all(bytes).ok()?;
    file.rewind().ok()?;
    Some(file)
}

/// Counts what is written; refuses past `limit`.
struct Bounded {
    written: u64,
    limit: u64,
}

impl Write for Bounded {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        self.written += buffer.len() as u64;
        if self.written > self.limit {
            return Err(std::io::Error::other("past the limit"));
        }
        Ok(buffer.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A patch (`application/vnd.haul.layer.patch.v1`) applied at the site to a source layer. It
/// must never write more than the layer it claims to rebuild.
pub fn patch(data: &[u8]) {
    let (Some(patch), Some(source)) = (unnamed_with(data), source_tar()) else {
        return;
    };
    let Ok(source) = crate::patch::SourceTar::whole(source) else {
        return;
    };
    let Ok(read) = crate::patch::Patch::read(&mut &data[..]) else {
        return;
    };
    let claimed = read.header.size;
    let mut out = Bounded {
        written: 0,
        limit: claimed.min(64 << 20),
    };
    let _ = crate::patch::rebuild::rebuild(&patch, &[source], &mut out);
    assert!(
        out.written <= claimed,
        "a patch claiming {claimed} bytes wrote {}",
        out.written
    );
}

/// A layer tar read by the patch encoder (the new layer), against a small source.
pub fn patch_encode(data: &[u8]) {
    let (Some(mut new), Some(source)) = (unnamed_with(data), source_tar()) else {
        return;
    };
    let target = crate::digest::Digest::of(data);
    let mut sources = [crate::patch::encode::Source {
        diff_id: crate::digest::Digest::of(b"source"),
        tar: source,
    }];
    let mut out = Bounded {
        written: 0,
        limit: 64 << 20,
    };
    let _ = crate::patch::encode::encode(
        &mut new,
        &target,
        &mut sources,
        &mut out,
        &std::env::temp_dir(),
    );
}
