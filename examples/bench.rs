//! `make bench`, end to end: a local registry, a generated image of over 500 MB in 8 layers
//! (text, binaries, incompressible data, 20,000 small files), and timed runs, medians of
//! several: haul cold, warm and incremental; the floor (curl of the same blobs, 4 at a time,
//! then cat into one file); and the peers where installed (skopeo copy, docker pull + save).
//! Peak RSS from /usr/bin/time -v. The table is printed and written to BENCHMARKS.md.

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../tests/it/harness/images.rs"]
mod images;
#[path = "../tests/it/harness/registry.rs"]
mod registry;
// registry.rs can start a registry in token mode, which needs the token service.
#[path = "support/timing.rs"]
mod timing;
#[path = "../tests/it/harness/token.rs"]
mod token;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use images::{Compression, Entry, Image, Layer};
use registry::Registry;
use timing::{Sample, median, timed};

const RUNS: usize = 3;

fn sh(script: &str) -> Vec<String> {
    vec!["bash".into(), "-c".into(), script.into()]
}

fn run_median(runs: usize, mut before: impl FnMut(), command: &[String]) -> Sample {
    let args: Vec<&str> = command.iter().map(String::as_str).collect();
    median(
        (0..runs)
            .map(|_| {
                before();
                timed(&args)
            })
            .collect(),
    )
}

fn available(tool: &str) -> bool {
    Command::new("which")
        .arg(tool)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn engine_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Text: log-like lines, compressible.
fn text_layer(megabytes: usize) -> Layer {
    let mut text = String::with_capacity(megabytes << 20);
    let mut i = 0u64;
    while text.len() < megabytes << 20 {
        let _ = writeln!(
            text,
            "2026-11-23T00:00:{:02}Z INFO request {i} served in {} ms path=/api/v1/items/{}",
            i % 60,
            i % 997,
            i * 7919 % 100_000
        );
        i += 1;
    }
    Layer::from_entries(
        &[Entry::File("var/log/app.log", text.as_bytes(), 0o644)],
        Compression::Gzip,
    )
}

/// Binaries: the host's shared libraries, up to `megabytes`.
fn binaries_layer(megabytes: u64) -> Layer {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut total = 0;
    for dir in ["/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/lib"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.is_file() || meta.len() == 0 {
                continue;
            }
            if total + meta.len() > megabytes << 20 {
                break;
            }
            if let Ok(bytes) = std::fs::read(&path) {
                total += bytes.len() as u64;
                files.push((format!("opt/bin{}", path.display()), bytes));
            }
        }
    }
    let entries: Vec<Entry> = files
        .iter()
        .map(|(p, b)| Entry::File(p, b, 0o755))
        .collect();
    Layer::from_entries(&entries, Compression::Gzip)
}

/// 20,000 small files of 1-4 KiB.
fn small_files_layer() -> Layer {
    let files: Vec<(String, Vec<u8>)> = (0..20_000u32)
        .map(|i| {
            let size = 1024 + (i as usize * 37) % 3072;
            let body: Vec<u8> = (0..size)
                .map(|j| b"abcdefghijklmnopqrstuvwxyz0123456789\n"[(i as usize + j * 7) % 37])
                .collect();
            (format!("srv/static/{:03}/file-{i}.txt", i % 200), body)
        })
        .collect();
    let entries: Vec<Entry> = files
        .iter()
        .map(|(p, b)| Entry::File(p, b, 0o644))
        .collect();
    Layer::from_entries(&entries, Compression::Gzip)
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let haul =
        std::env::var("HAUL_BIN").map_or_else(|_| root.join("target/release/haul"), PathBuf::from);
    assert!(
        haul.exists(),
        "{} is missing: `make bench` builds it",
        haul.display()
    );
    let haul = haul.to_str().unwrap().to_string();
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let out = work.path().join("out.tar");

    eprintln!("generating the image…");
    let mut layers = vec![
        Layer::busybox(Compression::Gzip),
        text_layer(60),
        binaries_layer(80),
        small_files_layer(),
    ];
    for seed in 0..4 {
        layers.push(Layer::random(
            &format!("data/blob-{seed}"),
            110 << 20,
            1000 + seed,
        ));
    }
    let top_v1 = Layer::text("etc/release", "v1\n", Compression::Gzip);
    let top_v2 = Layer::text("etc/release", "v2\n", Compression::Gzip);
    let v1 = Image::new(
        [layers.clone(), vec![top_v1]].concat(),
        false,
        "amd64",
        None,
        "bench",
    );
    let v2 = Image::new(
        [layers, vec![top_v2]].concat(),
        false,
        "amd64",
        None,
        "bench",
    );
    let image_bytes: u64 = v1
        .layers
        .iter()
        .map(|l| l.compressed.len() as u64)
        .sum::<u64>()
        + v1.config.len() as u64;

    eprintln!("starting a registry and pushing…");
    let registry = Registry::start();
    let repository = "bench/app";
    registry.push(repository, "v1", &v1);
    registry.push(repository, "v2", &v2);
    let ref_v1 = format!("{}/{repository}:v1", registry.host());
    let ref_v2 = format!("{}/{repository}:v2", registry.host());
    let layer_count = v1.layers.len();
    drop(v2);

    let export = |reference: &str| -> Vec<String> {
        vec![
            haul.clone(),
            "-q".into(),
            "--cache-dir".into(),
            cache.display().to_string(),
            "export".into(),
            reference.into(),
            "-o".into(),
            out.display().to_string(),
        ]
    };
    let clear_cache = || {
        let _ = std::fs::remove_dir_all(&cache);
    };
    let sync_drop = || {
        let _ = Command::new("sync").status();
    };

    eprintln!("cold…");
    let cold = run_median(
        RUNS,
        || {
            clear_cache();
            sync_drop();
        },
        &export(&ref_v1),
    );
    eprintln!("warm…");
    let warm = run_median(RUNS, sync_drop, &export(&ref_v1));
    // Parts for removable media (warm cache): against the warm export above.
    eprintln!("parts…");
    let haul_args = |args: &[&str]| -> Vec<String> {
        let mut command = vec![
            haul.clone(),
            "-q".into(),
            "--cache-dir".into(),
            cache.display().to_string(),
        ];
        command.extend(args.iter().map(ToString::to_string));
        command
    };
    let verify_tar = run_median(
        RUNS,
        sync_drop,
        &haul_args(&["verify", out.to_str().unwrap()]),
    );
    let parts_dir = work.path().join("parts");
    let parts_tar = parts_dir.join("v1.tar");
    let fresh_parts = || {
        let _ = std::fs::remove_dir_all(&parts_dir);
        std::fs::create_dir_all(&parts_dir).unwrap();
        sync_drop();
    };
    let split = |extra: &[&str]| {
        let mut args = vec!["export", &ref_v1, "-o", parts_tar.to_str().unwrap()];
        args.extend_from_slice(extra);
        haul_args(&args)
    };
    let split_plain = run_median(RUNS, fresh_parts, &split(&["--split", "100M"]));
    let split_parity = run_median(
        RUNS,
        fresh_parts,
        &split(&["--split", "100M", "--parity", "2"]),
    );
    let record = parts_dir.join("v1.tar.parts");
    let verify_parts = run_median(
        RUNS,
        sync_drop,
        &haul_args(&["verify", record.to_str().unwrap()]),
    );
    let lost = parts_dir.join("v1.tar.002");
    let repair = run_median(
        RUNS,
        || {
            let _ = std::fs::remove_file(&lost);
            sync_drop();
        },
        &haul_args(&["repair", record.to_str().unwrap()]),
    );
    let split_large = run_median(
        RUNS,
        fresh_parts,
        &split(&["--split", "1G", "--parity", "1"]),
    );

    eprintln!("incremental…");
    let cache_rm_v2 = || {
        let _ = Command::new(&haul)
            .args([
                "-q",
                "--cache-dir",
                cache.to_str().unwrap(),
                "cache",
                "rm",
                &ref_v2,
            ])
            .output();
        sync_drop();
    };
    let incremental = run_median(RUNS, cache_rm_v2, &export(&ref_v2));

    // A delta bundle: app:v2 for a site that loaded app:v1 (from the cache, warm).
    eprintln!("delta…");
    let receipt = work.path().join("v1.receipt");
    let v1_tar = work.path().join("v1.tar");
    let mut first = export(&ref_v1);
    *first.last_mut().unwrap() = v1_tar.display().to_string();
    first.extend(["--receipt".into(), receipt.display().to_string()]);
    timed(&first.iter().map(String::as_str).collect::<Vec<_>>());
    let full_v2 = run_median(RUNS, sync_drop, &export(&ref_v2));
    let full_v2_tar = work.path().join("v2-full.tar");
    std::fs::rename(&out, &full_v2_tar).unwrap();
    let mut since = export(&ref_v2);
    since.extend(["--since".into(), receipt.display().to_string()]);
    let delta = run_median(RUNS, sync_drop, &since);
    let size_of = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |m| m.len());
    let (full_bytes, delta_bytes) = (size_of(&full_v2_tar), size_of(&out));
    // `docker load` of each into an engine that holds app:v1.
    let loads = engine_answers().then(|| {
        let docker_load =
            |tar: &std::path::Path| sh(&format!("docker load -q -i {}", tar.display()));
        let reset = || {
            let _ = Command::new("docker").args(["rmi", "-f", &ref_v2]).output();
            sync_drop();
        };
        let _ = Command::new("docker").args(["rmi", "-f", &ref_v1]).output();
        let _ = Command::new("docker")
            .args(["load", "-q", "-i", v1_tar.to_str().unwrap()])
            .output();
        let full = run_median(RUNS, reset, &docker_load(&full_v2_tar));
        let delta = run_median(RUNS, reset, &docker_load(&out));
        // `haul export --load`, which asks the engine what it holds, against `--full`.
        let load = |extra: &[&str]| {
            let mut command = export(&ref_v2);
            command.truncate(command.len() - 2); // no -o
            command.push("--load".into());
            command.extend(extra.iter().map(ToString::to_string));
            command
        };
        let asked = run_median(RUNS, reset, &load(&[]));
        let whole = run_median(RUNS, reset, &load(&["--full"]));
        // The bytes each streamed, from `--progress json`.
        let streamed = |extra: &[&str]| {
            reset();
            let mut command = load(extra);
            command[1] = "--progress=json".into();
            let output = Command::new(&command[0])
                .args(&command[1..])
                .output()
                .unwrap();
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|e| e["event"] == "exported")
                .and_then(|e| e["bytes"].as_u64())
                .unwrap_or(0)
        };
        let (asked_bytes, whole_bytes) = (streamed(&[]), streamed(&["--full"]));
        reset();
        let _ = Command::new("docker").args(["rmi", "-f", &ref_v1]).output();
        (full, delta, asked, whole, asked_bytes, whole_bytes)
    });

    // Pushes of the v1 bundle into a site registry (a fresh one each run), against skopeo;
    // then again (nothing to upload), and the v2 delta onto it.
    eprintln!("push…");
    let push = |tar: &std::path::Path, dest: &str| -> Vec<String> {
        vec![
            haul.clone(),
            "-q".into(),
            "--cache-dir".into(),
            cache.display().to_string(),
            "push".into(),
            tar.display().to_string(),
            dest.into(),
        ]
    };
    let forget_pushes = || {
        let _ = std::fs::remove_dir_all(cache.join("uploads"));
        sync_drop();
    };
    let mut sites = Vec::new();
    let push_first = median(
        (0..RUNS)
            .map(|_| {
                let site = Registry::start();
                forget_pushes();
                let command = push(&v1_tar, &site.host());
                let sample = timed(&command.iter().map(String::as_str).collect::<Vec<_>>());
                sites.push(site);
                sample
            })
            .collect(),
    );
    let site = sites.pop().unwrap();
    let push_again = run_median(RUNS, sync_drop, &push(&v1_tar, &site.host()));
    let delta_tar = work.path().join("v2-delta.tar");
    std::fs::copy(&out, &delta_tar).unwrap();
    let push_delta = median(
        (0..RUNS)
            .map(|_| {
                let site = Registry::start();
                let first = push(&v1_tar, &site.host());
                timed(&first.iter().map(String::as_str).collect::<Vec<_>>());
                sync_drop();
                let command = push(&delta_tar, &site.host());
                timed(&command.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .collect(),
    );
    let pushed_digest = |site: &Registry| {
        let output = Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{}/{repository}:v1", site.host()),
            ])
            .output()
            .unwrap();
        images::sha256(&output.stdout)
    };
    let v1_digest = images::sha256(&v1.manifest());
    let haul_kept = pushed_digest(&site) == v1_digest;
    let skopeo_push = available("skopeo").then(|| {
        eprintln!("skopeo push…");
        let mut kept = false;
        let sample = median(
            (0..RUNS)
                .map(|_| {
                    let site = Registry::start();
                    sync_drop();
                    let script = format!(
                        "skopeo copy -q --dest-tls-verify=false docker-archive:{} docker://{}/{repository}:v1",
                        v1_tar.display(),
                        site.host()
                    );
                    let sample = timed(&sh(&script).iter().map(String::as_str).collect::<Vec<_>>());
                    kept = pushed_digest(&site) == v1_digest;
                    sample
                })
                .collect(),
        );
        (sample, kept)
    });

    // The floor: the same blobs with curl, 4 at a time, then cat into one file.
    let blobs_dir = work.path().join("floor");
    let urls: String = std::iter::once(v1.config.clone())
        .map(|c| images::sha256(&c))
        .chain(v1.layers.iter().map(|l| l.digest.clone()))
        .map(|d| format!("http://{}/v2/{repository}/blobs/{d}", registry.host()))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(work.path().join("urls"), &urls).unwrap();
    let floor_script = format!(
        "rm -rf {dir} && mkdir -p {dir} && cd {dir} && xargs -P4 -n1 curl -sSfLO < {urls} && cat * > {out}",
        dir = blobs_dir.display(),
        urls = work.path().join("urls").display(),
        out = work.path().join("floor.tar").display()
    );
    eprintln!("floor (curl + cat)…");
    let floor = run_median(RUNS, sync_drop, &sh(&floor_script));
    let cat_script = format!(
        "cat {}/* > {}",
        blobs_dir.display(),
        work.path().join("cat.out").display()
    );
    let cat = run_median(RUNS, sync_drop, &sh(&cat_script));
    // haul syncs the tar before it gives it its name: so does this one.
    let cat_sync_script = format!(
        "{cat_script} && sync {}",
        work.path().join("cat.out").display()
    );
    let cat_sync = run_median(RUNS, sync_drop, &sh(&cat_sync_script));

    let skopeo = available("skopeo").then(|| {
        eprintln!("skopeo…");
        let script = format!(
            "rm -f {out} && skopeo copy -q --src-tls-verify=false docker://{reference} docker-archive:{out}:{reference}",
            out = work.path().join("skopeo.tar").display(),
            reference = ref_v1
        );
        run_median(RUNS, sync_drop, &sh(&script))
    });
    let docker = engine_answers().then(|| {
        eprintln!("docker pull + save…");
        let reset = || {
            let _ = Command::new("docker").args(["rmi", "-f", &ref_v1]).output();
            sync_drop();
        };
        let script = format!(
            "docker pull -q {ref_v1} > /dev/null && docker save -o {} {ref_v1}",
            work.path().join("docker.tar").display()
        );
        let sample = run_median(RUNS, reset, &sh(&script));
        reset();
        sample
    });

    // Memory must not grow with the image: one cold export of an image four times larger.
    eprintln!("four times larger…");
    let extra: u64 = (4 * image_bytes).saturating_sub(image_bytes);
    let mut big_layers = v1.layers.clone();
    let mut seed = 2000;
    let mut added = 0u64;
    while added < extra {
        let layer = Layer::random(&format!("data/more-{seed}"), 110 << 20, seed);
        added += layer.compressed.len() as u64;
        registry.push_blob(repository, &layer.compressed);
        big_layers.push(layer);
        seed += 1;
    }
    let big = Image::new(big_layers, false, "amd64", None, "bench");
    let big_bytes: u64 = big.layers.iter().map(|l| l.compressed.len() as u64).sum();
    registry.push(repository, "big", &big);
    drop(big);
    let ref_big = format!("{}/{repository}:big", registry.host());
    clear_cache();
    let four_times = timed(
        &export(&ref_big)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );

    let secs = |s: Sample| s.wall.as_secs_f64();
    let mib = |s: Sample| s.rss_kib as f64 / 1024.0;
    let mut table = String::new();
    let _ = writeln!(
        table,
        "Image: {} layers, {:.0} MB compressed ({} runs each, medians). Machine: {} cores.\n",
        layer_count,
        image_bytes as f64 / 1e6,
        RUNS,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    let _ = writeln!(table, "| run | time (s) | vs floor | peak RSS (MiB) |");
    let _ = writeln!(table, "|---|---:|---:|---:|");
    let mut row = |name: &str, s: Sample, rss: bool| {
        let rss = if rss {
            format!("{:.1}", mib(s))
        } else {
            "-".to_string()
        };
        let _ = writeln!(
            table,
            "| {name} | {:.2} | {:.2}x | {rss} |",
            secs(s),
            secs(s) / secs(floor)
        );
    };
    row("haul cold (empty cache, export to a file)", cold, true);
    row("haul warm (everything cached)", warm, true);
    row("haul incremental (top layer changed)", incremental, true);
    row("floor: curl 4 at a time + cat", floor, false);
    row("cat of the same blobs into one file", cat, false);
    row(
        "cat of the same blobs, then sync of the copy",
        cat_sync,
        false,
    );
    if let Some(s) = skopeo {
        row("skopeo copy docker:// docker-archive:", s, true);
    }
    if let Some(s) = docker {
        row("docker pull + docker save", s, false);
    }
    let _ = writeln!(table);
    let _ = writeln!(
        table,
        "- cold / floor: {:.2}x (target ≤ 1.3x)",
        secs(cold) / secs(floor)
    );
    let _ = writeln!(
        table,
        "- warm / cat: {:.2}x (target ≤ 1.5x); warm / (cat + sync): {:.2}x (target ≤ 1.3x)",
        secs(warm) / secs(cat),
        secs(warm) / secs(cat_sync)
    );
    let _ = writeln!(
        table,
        "- peak RSS: {:.1} MiB cold (target < 64 MiB)",
        mib(cold)
    );
    let _ = writeln!(
        table,
        "- an image four times larger ({:.0} MB): cold export {:.2} s, peak RSS {:.1} MiB (target < 64 MiB)",
        big_bytes as f64 / 1e6,
        secs(four_times),
        mib(four_times)
    );
    let _ = writeln!(
        table,
        "- delta bundle of app:v2 for a site holding app:v1 (`--since` its receipt, warm cache): \
         {:.1} KiB in {:.2} s, against {:.1} MB in {:.2} s for the full bundle ({:.3}% of the bytes)",
        delta_bytes as f64 / 1024.0,
        secs(delta),
        full_bytes as f64 / 1e6,
        secs(full_v2),
        100.0 * delta_bytes as f64 / full_bytes.max(1) as f64
    );
    if let Some((full, delta, asked, whole, asked_bytes, whole_bytes)) = loads {
        let _ = writeln!(
            table,
            "- `docker load` into an engine holding app:v1 (Docker's classic store): the delta \
             {:.2} s, the full bundle {:.2} s",
            secs(delta),
            secs(full)
        );
        let _ = writeln!(
            table,
            "- `haul export app:v2 --load` into that engine (warm cache, `docker load` included): \
             {:.1} KiB streamed in {:.2} s, against {:.1} MB in {:.2} s with `--full`",
            asked_bytes as f64 / 1024.0,
            secs(asked),
            whole_bytes as f64 / 1e6,
            secs(whole)
        );
    }
    let _ = writeln!(
        table,
        "- parts for removable media (warm cache): `--split 100M` {:.2} s ({:.2}x the unsplit \
         export, target ≤ 1.1x), peak RSS {:.1} MiB; `--split 100M --parity 2` {:.2} s ({:.2}x, \
         target ≤ 1.5x), peak RSS {:.1} MiB; `--split 1G --parity 1` (one part as large as the \
         image) peak RSS {:.1} MiB (target < 128 MiB whatever the part size)",
        secs(split_plain),
        secs(split_plain) / secs(warm),
        mib(split_plain),
        secs(split_parity),
        secs(split_parity) / secs(warm),
        mib(split_parity),
        mib(split_large)
    );
    let _ = writeln!(
        table,
        "- `haul verify` of those parts (and their 2 recovery parts): {:.2} s, against {:.2} s \
         for the tar ({:.0} MB/s of parts read); `haul repair` of one lost 100 MiB part: {:.2} s, \
         peak RSS {:.1} MiB",
        secs(verify_parts),
        secs(verify_tar),
        (image_bytes as f64 + 2.0 * 100.0 * 1048576.0) / 1e6 / secs(verify_parts),
        secs(repair),
        mib(repair)
    );
    let kept = |kept: bool| {
        if kept {
            "digest kept"
        } else {
            "digest changed"
        }
    };
    let _ = writeln!(
        table,
        "- `haul push` of the v1 bundle into an empty site registry: {:.2} s, peak RSS {:.1} MiB \
         ({}); again, nothing to upload: {:.2} s; the v2 delta onto it: {:.2} s",
        secs(push_first),
        mib(push_first),
        kept(haul_kept),
        secs(push_again),
        secs(push_delta)
    );
    if let Some((s, skopeo_kept)) = skopeo_push {
        let _ = writeln!(
            table,
            "- `skopeo copy docker-archive: docker://` of the same bundle: {:.2} s, peak RSS {:.1} \
             MiB ({}); skopeo / haul: {:.2}x",
            secs(s),
            mib(s),
            kept(skopeo_kept),
            secs(s) / secs(push_first)
        );
    }
    if let Some(s) = skopeo {
        let _ = writeln!(
            table,
            "- skopeo / haul cold: {:.2}x (target ≥ 5x)",
            secs(s) / secs(cold)
        );
    }
    if let Some(s) = docker {
        let _ = writeln!(
            table,
            "- docker pull + save / haul cold: {:.2}x",
            secs(s) / secs(cold)
        );
    }
    println!("{table}");
    let report = format!(
        "# haul benchmarks\n\nWritten by `make bench` ({}).\n\n{table}",
        "examples/bench.rs"
    );
    std::fs::write(root.join("BENCHMARKS.md"), report).unwrap();
    eprintln!("written to BENCHMARKS.md");
}
