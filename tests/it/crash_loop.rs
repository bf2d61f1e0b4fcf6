//! Crash loop: haul is killed with SIGKILL at 20 random moments of an export of a ~200 MB,
//! seven-layer image. Each rerun completes, fetching no more than what the kill left missing
//! (partial blobs resume), the tar loads and runs in Docker, and `haul cache verify` finds
//! nothing bad.

use std::time::Instant;

use crate::fault_proxy::FaultProxy;
use crate::harness::*;

const KILLS: u32 = 20;

/// Bytes of the image's blobs on disk in the cache: verified blobs and partial downloads.
fn bytes_on_disk(haul: &Haul, digests: &[(String, u64)]) -> u64 {
    digests
        .iter()
        .map(|(digest, size)| {
            let hex = hex_of(digest);
            let blob = haul.cache.path().join("blobs/sha256").join(hex);
            if blob.exists() {
                return *size;
            }
            let partial = haul
                .cache
                .path()
                .join("ingest")
                .join(format!("{hex}.partial"));
            std::fs::metadata(partial).map_or(0, |m| m.len().min(*size))
        })
        .sum()
}

#[test]
fn killed_at_random_moments_every_rerun_completes_and_resumes() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry.host());
    let repository = unique("test/crash");
    let layers: Vec<Layer> = (0..6)
        .map(|i| Layer::random(&format!("data/part-{i}"), 35 << 20, 100 + i))
        .collect();
    let image = Image::runnable("survived", layers, Compression::Gzip, false);
    let pushed = registry.push(&repository, "v1", &image);
    let reference = format!("{}/{repository}:v1", proxy.host());
    let mut blobs: Vec<(String, u64)> = image
        .layers
        .iter()
        .map(|l| (l.digest.clone(), l.compressed.len() as u64))
        .collect();
    blobs.push((pushed.config_digest.clone(), image.config.len() as u64));
    let total: u64 = blobs.iter().map(|(_, size)| size).sum();
    assert!(total > 200_000_000, "{total}");

    let haul = Haul::new();
    // How long an uninterrupted export takes here: kills land anywhere within it.
    let started = Instant::now();
    haul.export(&[&reference, "--limit-rate", "150M"], "out.tar");
    let window = started.elapsed();
    haul.run(&["cache", "prune", "--all"]).success();

    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    let engine = Engine::Classic;
    let loaded_name = format!("{}/{repository}:v1", proxy.host());
    let mut resumed_any = false;
    for kill in 0..KILLS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let moment = window.mul_f64((seed % 1000) as f64 / 1000.0);
        let _ = std::fs::remove_file(haul.workdir.path().join("out.tar"));
        let mut child = haul
            .command()
            .args([
                "-q",
                "--limit-rate",
                "150M",
                "export",
                &reference,
                "-o",
                "out.tar",
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(moment);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();

        let missing = total - bytes_on_disk(&haul, &blobs);
        resumed_any |= missing > 0 && missing < total;
        proxy.clear();
        haul.run(&[
            "-q",
            "--limit-rate",
            "150M",
            "export",
            &reference,
            "-o",
            "out.tar",
        ])
        .success();
        let fetched = proxy.blob_bytes();
        assert!(
            fetched <= missing + (64 << 10),
            "kill {kill} at {moment:?}: fetched {fetched} bytes, but only {missing} were missing"
        );
        let verify = haul.run(&["cache", "verify"]).success();
        assert!(
            String::from_utf8_lossy(&verify.stdout).starts_with("ok:"),
            "{}",
            verify.stderr
        );

        let tar = haul.workdir.path().join("out.tar");
        engine.remove(&loaded_name);
        engine.load(&tar);
        assert_eq!(engine.run(&loaded_name, &[]).trim(), "survived");
        engine.remove(&loaded_name);

        // Start the next round from an empty cache.
        haul.run(&["cache", "prune", "--all"]).success();
    }
    assert!(
        resumed_any,
        "no kill landed in the middle of a download (window {window:?})"
    );
}
