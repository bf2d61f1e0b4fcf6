//! `make bench`, second part: lists of many images from a far registry, and a large cache.
//!
//! - A fleet of 40 images (busybox, a shared 4 MiB layer, a 2 MiB layer of their own, a small
//!   top) in 40 repositories, behind a proxy that adds a 100 ms round trip to every
//!   connection and request. Timed: the cold export of the list against `curl` of the same
//!   blobs 8 at a time through the same proxy; the warm export of the list (ten runs: median,
//!   least and most); the warm export of its lock, and how many connections it opened.
//! - A cache holding 200 images and 20,000 blobs: `cache ls`, `cache prune`, and a one-image
//!   export against the same export from a cache holding only that image.
//!
//! Appends its section to BENCHMARKS.md (written first by examples/bench.rs).

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../tests/it/harness/images.rs"]
mod images;
#[path = "../tests/it/harness/latency.rs"]
mod latency;
#[path = "../tests/it/harness/registry.rs"]
mod registry;
#[path = "../tests/it/harness/token.rs"]
mod token;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use haul::cache::{BlobStore, BlobUse};
use haul::digest::Digest;
use images::{Compression, Image, Layer};
use latency::LatencyProxy;
use registry::Registry;

const IMAGES: usize = 40;
const RTT: Duration = Duration::from_millis(100);

/// Runs a command, failing loudly; returns its wall time.
fn time(command: &mut Command) -> Duration {
    let start = Instant::now();
    let output = command.output().expect("run");
    let took = start.elapsed();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    took
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let haul_bin =
        std::env::var("HAUL_BIN").map_or_else(|_| root.join("target/release/haul"), PathBuf::from);
    let work = tempfile::tempdir().unwrap();
    let haul = |cache: &Path| {
        let mut command = Command::new(&haul_bin);
        command
            .arg("-q")
            .arg("--cache-dir")
            .arg(cache)
            .current_dir(work.path());
        command
    };

    eprintln!("pushing a fleet of {IMAGES} images…");
    let registry = Registry::start();
    let busybox = Layer::busybox(Compression::Gzip);
    let shared = Layer::random("data/shared", 4 << 20, 1);
    let mut blobs: Vec<String> = vec![busybox.digest.clone(), shared.digest.clone()];
    for i in 0..IMAGES {
        let own = Layer::random("data/own", 2 << 20, 100 + i as u64);
        let top = Layer::text("etc/name", &format!("app-{i}\n"), Compression::Gzip);
        blobs.push(own.digest.clone());
        blobs.push(top.digest.clone());
        let image = Image::new(
            vec![busybox.clone(), shared.clone(), own, top],
            false,
            "amd64",
            None,
            &format!("app-{i}"),
        );
        blobs.push(images::sha256(&image.config));
        registry.push(&format!("fleet/app-{i}"), "v1", &image);
    }
    let proxy = LatencyProxy::start(&registry.host(), RTT);
    let list: String = (0..IMAGES)
        .map(|i| format!("{}/fleet/app-{i}:v1\n", proxy.host()))
        .collect();
    std::fs::write(work.path().join("fleet.txt"), &list).unwrap();
    let cache = work.path().join("cache");
    let export_list = |file: &str, out: &str| {
        let mut command = haul(&cache);
        command.args(["export", "-f", file, "-o", out]);
        command
    };

    eprintln!("cold…");
    let cold = median(
        (0..3)
            .map(|_| {
                let _ = std::fs::remove_dir_all(&cache);
                time(&mut export_list("fleet.txt", "fleet.tar"))
            })
            .collect(),
    );
    eprintln!("curl floor…");
    let urls: String = blobs
        .iter()
        .enumerate()
        .map(|(i, digest)| {
            // Each blob from a repository that has it (the shared ones from the first).
            let repository = if i < 2 { 0 } else { (i - 2) / 3 };
            format!(
                "http://{}/v2/fleet/app-{repository}/blobs/{digest}\n",
                proxy.host()
            )
        })
        .collect();
    std::fs::write(work.path().join("urls"), urls).unwrap();
    let floor_dir = work.path().join("floor");
    let floor = median(
        (0..3)
            .map(|_| {
                let _ = std::fs::remove_dir_all(&floor_dir);
                std::fs::create_dir_all(&floor_dir).unwrap();
                time(Command::new("bash").args([
                    "-c",
                    &format!(
                        "cd {} && xargs -P8 -n1 curl -sSfLO < {}",
                        floor_dir.display(),
                        work.path().join("urls").display()
                    ),
                ]))
            })
            .collect(),
    );

    eprintln!("warm…");
    let warm_runs: Vec<Duration> = (0..10)
        .map(|_| time(&mut export_list("fleet.txt", "fleet.tar")))
        .collect();
    let warm = median(warm_runs.clone());
    let (warm_min, warm_max) = (
        *warm_runs.iter().min().unwrap(),
        *warm_runs.iter().max().unwrap(),
    );

    eprintln!("lock…");
    let lock = time(haul(&cache).args(["lock", "-f", "fleet.txt", "-o", "fleet.lock"]));
    let before = proxy.connections();
    let locked = median(
        (0..5)
            .map(|_| time(&mut export_list("fleet.lock", "locked.tar")))
            .collect(),
    );
    let lock_connections = proxy.connections() - before;

    // A proxy that holds a TLS ClientHello unanswered (as HTTP-only middleboxes do): the
    // first run's one TLS attempt waits for --connect-timeout; later runs remember HTTP.
    eprintln!("a proxy that swallows TLS…");
    let swallowing = LatencyProxy::start_with(&registry.host(), RTT, true);
    let swallow_list = list.replace(&proxy.host(), &swallowing.host());
    std::fs::write(work.path().join("swallow.txt"), swallow_list).unwrap();
    let swallow_export = || {
        let mut command = export_list("swallow.txt", "swallow.tar");
        command.args(["--connect-timeout", "10"]);
        command
    };
    let swallow_first = time(&mut swallow_export());
    let swallow_next = median((0..5).map(|_| time(&mut swallow_export())).collect());

    eprintln!("a cache of 200 images and 20,000 blobs…");
    let big_cache = work.path().join("big-cache");
    fill_cache(&big_cache, 200, 100);
    let ls = median(
        (0..3)
            .map(|_| time(haul(&big_cache).args(["cache", "ls"])))
            .collect(),
    );
    // One image, straight from the registry (no delay), into the big cache and a fresh one.
    let one = format!("{}/fleet/app-0:v1", registry.host());
    let small_cache = work.path().join("small-cache");
    for c in [&big_cache, &small_cache] {
        time(haul(c).args(["pull", &one]));
    }
    let export_one = |c: &Path| {
        median(
            (0..5)
                .map(|_| time(haul(c).args(["export", &one, "-o", "one.tar"])))
                .collect(),
        )
    };
    let (one_small, one_big) = (export_one(&small_cache), export_one(&big_cache));
    // Prune away about a tenth (least recently used first).
    let prune = time(haul(&big_cache).args(["cache", "prune", "--max-size", "1200K"]));

    let mut text = String::new();
    let _ = writeln!(
        text,
        "## Lists from a far registry, and a large cache\n\nWritten by `make bench` \
         (examples/bench_fleet.rs). {IMAGES} images in {IMAGES} repositories (busybox, a shared \
         4 MiB layer, 2 MiB of their own, a small top: {} distinct blobs), behind a proxy \
         adding a {} ms round trip to each connection and request. Machine: {} cores.\n",
        blobs.len(),
        RTT.as_millis(),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    let _ = writeln!(text, "| run | time (s) |\n|---|---:|");
    let _ = writeln!(
        text,
        "| cold export of the list (median of 3) | {:.2} |",
        secs(cold)
    );
    let _ = writeln!(
        text,
        "| floor: `curl` of the same blobs, 8 at a time (median of 3) | {:.2} |",
        secs(floor)
    );
    let _ = writeln!(
        text,
        "| warm export of the list (median of 10; least {:.2}, most {:.2}) | {:.2} |",
        secs(warm_min),
        secs(warm_max),
        secs(warm)
    );
    let _ = writeln!(text, "| `haul lock` of the list | {:.2} |", secs(lock));
    let _ = writeln!(
        text,
        "| warm export through a proxy that holds TLS attempts unanswered, first run (one attempt, `--connect-timeout 10`) | {:.2} |",
        secs(swallow_first)
    );
    let _ = writeln!(
        text,
        "| the same, later runs (HTTP remembered; median of 5) | {:.2} |",
        secs(swallow_next)
    );
    let _ = writeln!(
        text,
        "| warm export of the lock (median of 5; {lock_connections} connections opened in 5 runs) | {:.2} |",
        secs(locked)
    );
    let _ = writeln!(
        text,
        "| `cache ls` with 200 images and 20,000 blobs (median of 3) | {:.2} |",
        secs(ls)
    );
    let _ = writeln!(
        text,
        "| `cache prune --max-size` there (about a tenth removed) | {:.2} |",
        secs(prune)
    );
    let _ = writeln!(
        text,
        "| one-image warm export, that cache / a cache of that image alone (median of 5) | {:.3} / {:.3} |",
        secs(one_big),
        secs(one_small)
    );
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "- cold / floor: {:.2}x (target ≤ 1.3x); warm: {:.2} s (target ≤ 1.5 s); lock: {:.2} s \
         (target ≤ 0.5 s, no request); one image with the large cache: {:+.0}% (target ≤ +10%)",
        secs(cold) / secs(floor),
        secs(warm),
        secs(locked),
        100.0 * (secs(one_big) / secs(one_small) - 1.0)
    );
    println!("{text}");
    let path = root.join("BENCHMARKS.md");
    let mut report = std::fs::read_to_string(&path).unwrap_or_default();
    if let Some(at) = report.find("## Lists from a far registry") {
        report.truncate(at);
    }
    report = report.trim_end().to_string() + "\n\n" + &text;
    std::fs::write(&path, report).unwrap();
    eprintln!("appended to BENCHMARKS.md");
}

/// A cache of `images` images of `layers` small layers each: the blobs written straight into
/// `blobs/`, the records through the index, as exports would leave them.
fn fill_cache(root: &Path, images: usize, layers: usize) {
    let _ = std::fs::remove_dir_all(root);
    let store = BlobStore::open(root).unwrap();
    let mut refs = Vec::new();
    let mut uses = Vec::new();
    let put = |bytes: &[u8], uses: &mut Vec<BlobUse>, media_type: &str| -> Digest {
        let digest = Digest::of(bytes);
        std::fs::write(store.blob_path(&digest), bytes).unwrap();
        uses.push(BlobUse {
            digest: digest.clone(),
            size: bytes.len() as u64,
            media_type: media_type.to_string(),
        });
        digest
    };
    for i in 0..images {
        let mut layer_descriptors = Vec::new();
        let mut diff_ids = Vec::new();
        for k in 0..layers {
            let bytes = format!("image {i} layer {k} {}", "x".repeat(40)).into_bytes();
            let digest = put(&bytes, &mut uses, images::DOCKER_LAYER_GZIP);
            diff_ids.push(digest.to_string());
            layer_descriptors.push(serde_json::json!({
                "mediaType": images::DOCKER_LAYER_GZIP, "digest": digest.to_string(), "size": bytes.len()
            }));
        }
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}
        }))
        .unwrap();
        let config_digest = put(&config, &mut uses, images::DOCKER_CONFIG);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": images::DOCKER_MANIFEST,
            "config": {"mediaType": images::DOCKER_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
            "layers": layer_descriptors,
        }))
        .unwrap();
        let manifest_digest = put(&manifest, &mut uses, "");
        refs.push((
            format!("registry.example.com/many/app-{i}:v1"),
            "linux/amd64".to_string(),
            manifest_digest,
        ));
    }
    store.index().record_run(&refs, &uses).unwrap();
}
