//! A full disk: cache and output on a small tmpfs the test mounts (the tests run as root, as
//! `make test` does). A clear error, nothing corrupt in the cache, no tar; once space is
//! freed the rerun succeeds, reusing what was verified and resuming what was partial.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fault_proxy::FaultProxy;
use crate::harness::*;

/// A tmpfs mounted on a temporary folder; unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mount tmpfs failed: the tests run as root (`make test`)"
        );
        SmallDisk { dir }
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn haul_on(disk: &Path, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_haul"))
        .arg("--cache-dir")
        .arg(disk.join("cache"))
        .args(args)
        .current_dir(disk.join("out"))
        .output()
        .unwrap();
    Run {
        status: output.status,
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[track_caller]
fn assert_blobs_verified(cache: &Path) {
    for blob in files_in(&cache.join("blobs/sha256")) {
        let bytes = std::fs::read(&blob).unwrap();
        assert_eq!(
            hex_of(&sha256(&bytes)),
            blob.file_name().unwrap().to_string_lossy()
        );
    }
}

#[test]
fn a_full_disk_fails_cleanly_and_the_rerun_succeeds() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry.host());
    let repository = unique("test/full");
    let big = Layer::random("data/big", 6 << 20, 21);
    let image = Image::runnable("full", vec![big.clone()], Compression::Gzip, false);
    registry.push(&repository, "v1", &image);
    let reference = format!("{}/{repository}:v1", proxy.host());

    // Room for the blobs, not for the tar as well.
    let disk = SmallDisk::mount("10m");
    std::fs::create_dir(disk.path().join("out")).unwrap();
    haul_on(disk.path(), &["export", &reference, "-o", "out.tar"])
        .failure(&["no space left on device", "hint: the disk is full"]);
    assert!(
        files_in(&disk.path().join("out")).is_empty(),
        "no tar, no temporary file"
    );
    assert_blobs_verified(&disk.path().join("cache"));

    disk.resize("40m");
    proxy.clear();
    haul_on(disk.path(), &["export", &reference, "-o", "out.tar"]).success();
    assert_eq!(
        proxy.blob_requests().len(),
        0,
        "the verified blobs were kept"
    );
    assert_eq!(
        tar_json(&disk.path().join("out/out.tar"), "manifest.json")[0]["Layers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_full_cache_keeps_nothing_unverified_and_the_download_resumes() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry.host());
    let repository = unique("test/full-cache");
    let big = Layer::random("data/big", 6 << 20, 22);
    let image = Image::runnable("full cache", vec![big.clone()], Compression::Gzip, false);
    registry.push(&repository, "v1", &image);
    let reference = format!("{}/{repository}:v1", proxy.host());
    let size = big.compressed.len() as u64;

    // Not even room for the big blob.
    let disk = SmallDisk::mount("4m");
    std::fs::create_dir(disk.path().join("out")).unwrap();
    haul_on(disk.path(), &["export", &reference, "-o", "out.tar"])
        .failure(&["no space left on device"]);
    assert!(files_in(&disk.path().join("out")).is_empty());
    let cache = disk.path().join("cache");
    assert_blobs_verified(&cache);
    assert!(
        !cache
            .join("blobs/sha256")
            .join(hex_of(&big.digest))
            .exists()
    );
    let partial = cache
        .join("ingest")
        .join(format!("{}.partial", hex_of(&big.digest)));
    let kept = std::fs::metadata(&partial).map_or(0, |m| m.len());

    disk.resize("40m");
    proxy.clear();
    haul_on(disk.path(), &["export", &reference, "-o", "out.tar"]).success();
    let fetched = proxy.bytes_of(&big.digest);
    assert_eq!(
        fetched,
        size - kept,
        "the rerun continued the partial download"
    );
    assert_blobs_verified(&cache);
}
