//! The tar format's size limit: a layer blob over 8 GiB (ustar's size field holds 8 GiB - 1)
//! must be written with a GNU size header and still load in Docker. The layer is an
//! uncompressed tar holding one zero-filled (sparse) file, so making it costs little; the
//! registry, the cache, the exported tar and Docker each hold it whole, about 8.3 GiB apiece.

use std::io::{Read, Seek, SeekFrom, Write};

use crate::harness::*;

/// 8 GiB + 256 MiB of zeros: past ustar's limit.
const FILE_SIZE: u64 = (8 << 30) + (256 << 20);
const UNCOMPRESSED_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// Writes a layer tar with one sparse file of `FILE_SIZE` zero bytes; returns its digest.
fn write_huge_layer(path: &std::path::Path) -> (String, u64) {
    let mut file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_path("data/zero").unwrap();
    header.set_size(FILE_SIZE);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    file.write_all(header.as_bytes()).unwrap();
    // The data (zeros, padded to 512) and the two end blocks: a hole, then the length.
    let total = 512 + FILE_SIZE.div_ceil(512) * 512 + 1024;
    file.set_len(total).unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut buffer = vec![0u8; 8 << 20];
    loop {
        let n = file.read(&mut buffer).unwrap();
        if n == 0 {
            break;
        }
        sha2::Digest::update(&mut hasher, &buffer[..n]);
    }
    (
        format!("sha256:{}", hex::encode(sha2::Digest::finalize(hasher))),
        total,
    )
}

#[test]
fn a_layer_over_8_gib_is_exported_with_a_gnu_size_header_and_loads() {
    let registry = Registry::start();
    let repository = unique("test/huge");
    let work = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let layer_path = work.path().join("huge.tar");
    let (huge_digest, huge_size) = write_huge_layer(&layer_path);
    registry.push_blob_file(&repository, &layer_path, &huge_digest);
    std::fs::remove_file(&layer_path).unwrap();

    let base = Layer::busybox(Compression::Gzip);
    registry.push_blob(&repository, &base.compressed);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/busybox", "stat", "-c", "%s", "/data/zero"]},
        "rootfs": {"type": "layers", "diff_ids": [base.diff_id, huge_digest]},
    }))
    .unwrap();
    let config_digest = registry.push_blob(&repository, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [
            {"mediaType": DOCKER_LAYER_GZIP, "digest": base.digest, "size": base.compressed.len()},
            {"mediaType": UNCOMPRESSED_LAYER, "digest": huge_digest, "size": huge_size},
        ],
    }))
    .unwrap();
    registry.push_manifest(&repository, "v1", DOCKER_MANIFEST, &manifest);
    let reference = format!("{}/{repository}:v1", registry.host());

    let haul = Haul::new();
    // Export, watching the process's peak resident memory (VmHWM) while it runs.
    let mut child = haul
        .command()
        .args(["-q", "export", &reference, "-o", "huge.tar"])
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:"))
        {
            peak_kib = peak_kib.max(line.split_whitespace().nth(1).unwrap().parse().unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success());
    assert!(peak_kib > 0);
    eprintln!("haul's peak RSS exporting an 8.25 GiB layer: {peak_kib} KiB");
    assert!(
        peak_kib < 64 * 1024,
        "peak RSS {peak_kib} KiB for an 8 GiB layer: memory must stay bounded"
    );
    let tar = haul.workdir.path().join("huge.tar");
    // Read the tar's headers (skipping data) and find the big entry's size.
    let mut archive = tar::Archive::new(std::fs::File::open(&tar).unwrap());
    let big = archive
        .entries_with_seek()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| {
            e.path()
                .unwrap()
                .to_string_lossy()
                .ends_with(hex_of(&huge_digest))
        })
        .expect("the huge layer is in the tar");
    assert_eq!(big.header().entry_size().unwrap(), huge_size);
    assert!(
        big.header().as_gnu().is_some(),
        "sizes past 8 GiB need a GNU header"
    );
    drop(archive);
    // The cache copy is no longer needed: make room for Docker's.
    haul.run(&["cache", "prune", "--all"]).success();

    let engine = Engine::Classic;
    engine.remove(&reference);
    engine.load(&tar);
    assert_eq!(engine.run(&reference, &[]).trim(), FILE_SIZE.to_string());
    engine.remove(&reference);
}
