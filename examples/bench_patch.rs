//! `make bench`, patch deltas (`export --since PREV --patch`): a Debian base made with
//! debootstrap (from the mirror apt is configured with), rebuilt as a security update
//! rebuilds one (every mtime moved, 50 files changed, 7 moved, a doc folder gone, 2 MiB of
//! new bytes) under the same 0.5 MiB app layer, compressed by GNU gzip and pushed to a local
//! registry. Measured: the delta without and with `--patch`, `zstd --patch-from` of the
//! uncompressed base layer, the speed of making and rebuilding, peak RSS; the same for a
//! 2 GiB layer; and which real tools' layers haul's encoders reproduce byte for byte (the
//! "exact" rebuilds). The section is appended to BENCHMARKS.md (replacing an earlier one).
//!
//! `HAUL_BENCH_QUICK=1` measures the rebuilt base alone (and writes no BENCHMARKS.md);
//! `HAUL_BENCH_ROOTFS=DIR` takes a debootstrap'd tree from DIR (copied) instead of making one.

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../tests/it/harness/images.rs"]
mod images;
#[path = "../tests/it/harness/registry.rs"]
mod registry;
#[path = "support/timing.rs"]
mod timing;
#[path = "../tests/it/harness/token.rs"]
mod token;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use registry::Registry;
use timing::{Sample, median, timed};

const RUNS: usize = 5;
const SECTION: &str = "## Patch deltas";

/// The median of `RUNS` runs of `command`, each after a sync.
fn median_of(command: &[String]) -> Sample {
    median(
        (0..RUNS)
            .map(|_| {
                let _ = Command::new("sync").status();
                timed(command)
            })
            .collect(),
    )
}

fn bash(script: &str) -> String {
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn sha256_file(path: &Path) -> String {
    format!(
        "sha256:{}",
        bash(&format!("sha256sum {} | cut -d' ' -f1", path.display()))
    )
}

fn secs(sample: Sample) -> f64 {
    sample.wall.as_secs_f64()
}

fn mib(sample: Sample) -> f64 {
    sample.rss_kib as f64 / 1024.0
}

/// The mirror apt uses for this release's main component (no host name is written down).
fn mirror() -> String {
    bash(
        ". /etc/os-release; apt-cache policy | awk -v s=\" $VERSION_CODENAME/main \" \
         'index($0, s) { print $2; exit }'",
    )
}

/// A layer on disk: its uncompressed tar and the gzip blob GNU gzip made of it.
struct LayerFiles {
    tar: PathBuf,
    blob: PathBuf,
    diff_id: String,
    digest: String,
}

fn layer(tar: PathBuf) -> LayerFiles {
    let blob = tar.with_extension("tar.gz");
    bash(&format!(
        "gzip -n -6 -c {} > {}",
        tar.display(),
        blob.display()
    ));
    LayerFiles {
        diff_id: sha256_file(&tar),
        digest: sha256_file(&blob),
        tar,
        blob,
    }
}

/// Pushes an image of `layers` as `repository:tag`; returns its reference.
fn push(registry: &Registry, repository: &str, tag: &str, layers: &[&LayerFiles]) -> String {
    for layer in layers {
        registry.push_blob_file(repository, &layer.blob, &layer.digest);
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh", "-c", "cat /opt/app/VERSION"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>()},
    }))
    .unwrap();
    let config_digest = registry.push_blob(repository, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "digest": l.digest, "size": size(&l.blob)})).collect::<Vec<_>>(),
    }))
    .unwrap();
    registry.push_manifest(
        repository,
        tag,
        "application/vnd.docker.distribution.manifest.v2+json",
        &manifest,
    );
    format!("{}/{repository}:{tag}", registry.host())
}

/// The figures of one rebuilt base.
struct Case {
    layer_bytes: u64,
    full_delta: u64,
    patch_delta: u64,
    base_patch: u64,
    zstd: Option<(u64, Sample)>,
    first_make: Sample,
    make: Sample,
    rebuild: Sample,
    rebuilt_bytes: u64,
    /// The same rebuild from `--format docker-v1` bundles, whose layers are uncompressed (as
    /// `docker save` of Docker's classic store gives them): no gunzip of the old layers.
    rebuild_uncompressed: Sample,
}

#[allow(clippy::too_many_arguments)]
fn measure(
    haul: &str,
    work: &Path,
    name: &str,
    registry: &Registry,
    base_v1: &LayerFiles,
    base_v2: &LayerFiles,
    app: &LayerFiles,
    zstd: bool,
) -> Case {
    let cache = work.join(format!("cache-{name}"));
    let v1 = push(registry, &format!("bench/{name}"), "v1", &[base_v1, app]);
    let v2 = push(registry, &format!("bench/{name}"), "v2", &[base_v2, app]);
    let run = |args: &[&str]| -> Vec<String> {
        let mut command = vec![
            haul.to_string(),
            "-q".into(),
            "--cache-dir".into(),
            cache.display().to_string(),
        ];
        command.extend(args.iter().map(ToString::to_string));
        command
    };
    let at = |file: &str| {
        work.join(format!("bundle-{name}-{file}"))
            .display()
            .to_string()
    };
    timed(&run(&["export", &v1, "-o", &at("v1.tar")]));
    timed(&run(&[
        "export",
        &v2,
        "-o",
        &at("delta.tar"),
        "--since",
        &at("v1.tar"),
    ]));
    let patch = run(&[
        "export",
        &v2,
        "-o",
        &at("patch.tar"),
        "--since",
        &at("v1.tar"),
        "--patch",
    ]);
    // The first run also decompresses both layers into the cache; the next ones find them.
    let first_make = timed(&patch);
    let make = median_of(&patch);
    let record: serde_json::Value = serde_json::from_str(&bash(&format!(
        "tar -xOf {} haul-delta.json",
        at("patch.tar")
    )))
    .unwrap();
    let patched = record["patched"].as_array().cloned().unwrap_or_default();
    let base_patch = patched
        .iter()
        .find(|l| l["diffId"] == base_v2.diff_id.as_str())
        .and_then(|l| l["patch"]["size"].as_u64())
        .expect("the base layer travels as a patch");
    let rebuilt_bytes: u64 = patched.iter().map(|l| l["tarSize"].as_u64().unwrap()).sum();
    let rebuild = median_of(&run(&[
        "rebuild",
        &at("patch.tar"),
        "--from",
        &at("v1.tar"),
        "-o",
        &at("full.tar"),
    ]));
    timed(&run(&["verify", &at("full.tar")]));
    timed(&run(&[
        "export",
        &v1,
        "--format",
        "docker-v1",
        "-o",
        &at("v1-classic.tar"),
    ]));
    timed(&run(&[
        "export",
        &v2,
        "--format",
        "docker-v1",
        "-o",
        &at("patch-classic.tar"),
        "--since",
        &at("v1-classic.tar"),
        "--patch",
    ]));
    let rebuild_uncompressed = median_of(&run(&[
        "rebuild",
        &at("patch-classic.tar"),
        "--from",
        &at("v1-classic.tar"),
        "-o",
        &at("full-classic.tar"),
    ]));
    let zstd = zstd.then(|| {
        let out = work.join(format!("{name}-base.zst"));
        let sample = timed(&[
            "zstd".into(),
            "-q".into(),
            "-f".into(),
            format!("--patch-from={}", base_v1.tar.display()),
            base_v2.tar.display().to_string(),
            "-o".into(),
            out.display().to_string(),
        ]);
        (size(&out), sample)
    });
    let case = Case {
        layer_bytes: size(&base_v2.tar) + size(&app.tar),
        full_delta: size(Path::new(&at("delta.tar"))),
        patch_delta: size(Path::new(&at("patch.tar"))),
        base_patch,
        zstd,
        first_make,
        make,
        rebuild,
        rebuilt_bytes,
        rebuild_uncompressed,
    };
    if std::env::var_os("HAUL_BENCH_QUICK").is_none() {
        bash(&format!(
            "rm -rf {} {}-*",
            cache.display(),
            work.join(format!("bundle-{name}")).display()
        ));
    }
    case
}

/// Whether haul's encoders make `blob` again from its uncompressed form.
fn reproduced(blob: &Path) -> bool {
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("layer.tar");
    let magic = std::fs::read(blob).map(|b| b[..4].to_vec()).unwrap();
    let decompress = if magic[..2] == [0x1f, 0x8b] {
        "gzip -dc"
    } else if magic == [0x28, 0xb5, 0x2f, 0xfd] {
        "zstd -dcq"
    } else {
        "cat"
    };
    bash(&format!(
        "{decompress} < {} > {}",
        blob.display(),
        tar.display()
    ));
    let digest: haul::digest::Digest = sha256_file(blob).parse().unwrap();
    let mut tar = std::fs::File::open(&tar).unwrap();
    let mut blob = std::fs::File::open(blob).unwrap();
    haul::patch::recompress::find(&mut tar, &mut blob, &digest)
        .unwrap()
        .is_some()
}

/// The layer blobs of `reference` in `registry`'s storage, largest first.
fn layer_blobs(registry: &Registry, reference: &str) -> Vec<PathBuf> {
    let raw = bash(&format!(
        "skopeo inspect --tls-verify=false --raw docker://{reference}"
    ));
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| registry.blob_data_path(l["digest"].as_str().unwrap()))
        .collect()
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
    let haul = haul.display().to_string();
    // On the disk the build uses (gigabytes, not a tmpfs), wherever CARGO_TARGET_DIR puts it.
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    std::fs::create_dir_all(&target).unwrap();
    let work_dir = tempfile::tempdir_in(&target).unwrap();
    let work = work_dir.path();

    let quick = std::env::var_os("HAUL_BENCH_QUICK").is_some();
    let rootfs = work.join("rootfs");
    if let Some(tree) = std::env::var_os("HAUL_BENCH_ROOTFS") {
        bash(&format!(
            "cp -a {} {}",
            Path::new(&tree).display(),
            rootfs.display()
        ));
    } else {
        eprintln!("debootstrap of a minimal Debian base…");
        bash(&format!(
            ". /etc/os-release; debootstrap --variant=minbase $VERSION_CODENAME {} {} >/dev/null",
            rootfs.display(),
            mirror()
        ));
    }
    let tar_of = |name: &str, mtime: u64| {
        let tar = work.join(format!("{name}.tar"));
        bash(&format!(
            "tar --sort=name --numeric-owner --mtime=@{mtime} -C {} -cf {} .",
            rootfs.display(),
            tar.display()
        ));
        tar
    };
    let base_v1 = layer(tar_of("base-v1", 1_700_000_000));
    // The rebuild: 50 files changed, 7 moved, a doc folder gone, 2 MiB new, every mtime moved.
    bash(&format!(
        "cd {}
         find usr/lib usr/bin -type f -size +16k -printf '%s %p\\n' | sort -rn | awk 'NR <= 50' |
           while read size path; do
             head -c 64 /dev/urandom | dd of=\"$path\" bs=1 seek=$((size / 2)) conv=notrunc status=none
           done
         find usr/share -type f -size +4k | sort | awk 'NR <= 7' | while read p; do mv \"$p\" \"$p.moved\"; done
         rm -rf \"$(find usr/share/doc -mindepth 1 -maxdepth 1 -type d | sort | awk 'NR == 1')\"
         head -c 2097152 /dev/urandom > usr/lib/haul-bench-new.bin",
        rootfs.display()
    ));
    let base_v2 = layer(tar_of("base-v2", 1_710_000_000));
    let app_dir = work.join("app");
    bash(&format!(
        "mkdir -p {0}/opt/app && head -c 524288 /dev/urandom > {0}/opt/app/app.bin &&
         echo v1 > {0}/opt/app/VERSION &&
         tar --sort=name --numeric-owner --mtime=@1700000000 -C {0} -cf {1} .",
        app_dir.display(),
        work.join("app.tar").display()
    ));
    let app = layer(work.join("app.tar"));

    eprintln!("registry…");
    let registry = Registry::start();
    eprintln!("the rebuilt base…");
    let base = measure(
        &haul, work, "base", &registry, &base_v1, &base_v2, &app, true,
    );
    if quick {
        // The files stay, to look at.
        let kept = work_dir.keep();
        eprintln!("kept {}", kept.display());
        println!(
            "rebuilt base: patch delta {:.2} MB (zstd {:.2} MB), made {:.2} s ({:.2} s first), \
             {:.0} MB/s, rebuilt {:.2} s, {:.0} MB/s ({:.0} MB/s from uncompressed), RSS {:.0} / \
             {:.0} MiB",
            base.patch_delta as f64 / 1e6,
            base.zstd.map_or(0, |z| z.0) as f64 / 1e6,
            secs(base.make),
            secs(base.first_make),
            base.layer_bytes as f64 / 1e6 / secs(base.make),
            secs(base.rebuild),
            base.rebuilt_bytes as f64 / 1e6 / secs(base.rebuild),
            base.rebuilt_bytes as f64 / 1e6 / secs(base.rebuild_uncompressed),
            mib(base.make),
            mib(base.rebuild)
        );
        return;
    }

    eprintln!("a 2 GiB layer…");
    // The base's files eleven times over (about 2 GiB), then 1 file in 400 changed and every
    // mtime moved.
    let big = work.join("big");
    bash(&format!(
        "mkdir -p {0}; i=0; while [ \"$(du -sb {0} | cut -f1)\" -lt 2147483648 ]; do
           cp -a {1} {0}/copy-$i; i=$((i + 1)); done",
        big.display(),
        rootfs.display()
    ));
    let big_tar = |name: &str, mtime: u64| {
        let tar = work.join(format!("{name}.tar"));
        bash(&format!(
            "tar --sort=name --numeric-owner --mtime=@{mtime} -C {} -cf {} .",
            big.display(),
            tar.display()
        ));
        tar
    };
    let big_v1 = layer(big_tar("big-v1", 1_700_000_000));
    bash(&format!(
        "cd {} && find . -type f -size +1k | sort | awk 'NR % 400 == 0' |
           while read p; do head -c 64 /dev/urandom | dd of=\"$p\" bs=1 seek=512 conv=notrunc status=none; done",
        big.display()
    ));
    let big_v2 = layer(big_tar("big-v2", 1_710_000_000));
    bash(&format!("rm -rf {}", big.display()));
    let large = measure(&haul, work, "big", &registry, &big_v1, &big_v2, &app, false);

    eprintln!("which tools' layers rebuild exact…");
    let mut exact_rows: Vec<(String, usize, usize)> = Vec::new();
    let mut count = |tool: &str, blobs: Vec<PathBuf>| {
        let exact = blobs.iter().filter(|b| reproduced(b)).count();
        exact_rows.push((tool.to_string(), exact, blobs.len()));
    };
    let host = registry.host();
    // haul's own push of uncompressed layers (a docker-v1 bundle): gzipped as a patch's exact
    // rebuild does.
    {
        let source = push(&registry, "bench/plain", "v1", &[&base_v1, &app]);
        let bundle = work.join("plain-v1.tar");
        let cache = work.join("cache-plain");
        let haul_run = |args: &[&str]| {
            let mut command = vec![
                haul.clone(),
                "-q".into(),
                "--cache-dir".into(),
                cache.display().to_string(),
            ];
            command.extend(args.iter().map(ToString::to_string));
            timed(&command);
        };
        haul_run(&[
            "export",
            &source,
            "--format",
            "docker-v1",
            "-o",
            &bundle.display().to_string(),
        ]);
        haul_run(&[
            "push",
            &bundle.display().to_string(),
            &format!("{host}/site"),
            "--as",
            "bench/haul-push:v1",
        ]);
        count(
            "haul push of uncompressed layers (gzip level 6)",
            layer_blobs(&registry, &format!("{host}/site/bench/haul-push:v1")),
        );
        bash(&format!("rm -rf {} {}", bundle.display(), cache.display()));
    }
    // GNU gzip -6 -n (what this benchmark pushed), zstd's CLI (another libzstd than haul's).
    count(
        "GNU gzip -6 -n",
        vec![base_v1.blob.clone(), app.blob.clone()],
    );
    bash(&format!(
        "zstd -q -3 -f {0} -o {1}.zst && zstd -q -19 -f {2} -o {3}.zst",
        base_v1.tar.display(),
        base_v1.tar.display(),
        app.tar.display(),
        app.tar.display()
    ));
    count(
        "zstd CLI (-3, -19)",
        vec![
            PathBuf::from(format!("{}.zst", base_v1.tar.display())),
            PathBuf::from(format!("{}.zst", app.tar.display())),
        ],
    );
    // Docker's push (Go's compress/gzip), podman's (containers/image), skopeo's zstd.
    let docker_ok = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if docker_ok {
        let target = format!("{host}/bench/docker-push:v1");
        bash(&format!(
            "docker import {} {target} >/dev/null && docker push -q {target} >/dev/null",
            base_v1.tar.display()
        ));
        count(
            "docker push (Docker 20.10, Go gzip)",
            layer_blobs(&registry, &target),
        );
        let _ = Command::new("docker").args(["rmi", "-f", &target]).output();
    }
    if Command::new("podman").arg("--version").output().is_ok() {
        let target = format!("{host}/bench/podman-push:v1");
        bash(&format!(
            "podman import -q {} {target} >/dev/null && podman push -q --tls-verify=false {target}",
            base_v1.tar.display()
        ));
        count(
            "podman push (containers/image gzip)",
            layer_blobs(&registry, &target),
        );
        let zstd_target = format!("{host}/bench/skopeo-zstd:v1");
        bash(&format!(
            "skopeo copy -q --src-tls-verify=false --dest-tls-verify=false \
             --dest-compress-format zstd docker://{target} docker://{zstd_target}"
        ));
        count(
            "skopeo copy --dest-compress-format zstd",
            layer_blobs(&registry, &zstd_target),
        );
        let _ = Command::new("podman").args(["rmi", "-f", &target]).output();
    }

    let mut table = String::new();
    let _ = writeln!(table, "{SECTION}\n");
    let _ = writeln!(
        table,
        "A minimal Debian base (debootstrap) rebuilt: every mtime moved, 50 files changed, 7 \
         moved, a doc folder gone, 2 MiB new; under the same 0.5 MiB app layer; gzip -6 -n \
         blobs. `export v2 --since v1.tar`, warm cache, medians of {RUNS}.\n"
    );
    let _ = writeln!(
        table,
        "| case | layers (uncompressed) | delta | patch delta | base patch / zstd --patch-from | \
         make (first run) | made at | rebuild | rebuilt at | peak RSS make / rebuild |"
    );
    let _ = writeln!(table, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, case) in [
        ("rebuilt base", &base),
        ("2 GiB layer, 1 file in 400 changed", &large),
    ] {
        let zstd = case.zstd.map_or_else(
            || "zstd refuses > 2 GB".to_string(),
            |(bytes, sample)| {
                format!(
                    "{:.2} MB / {:.2} MB = {:.2}x (zstd: {:.2} s, {:.0} MiB)",
                    case.base_patch as f64 / 1e6,
                    bytes as f64 / 1e6,
                    case.base_patch as f64 / bytes.max(1) as f64,
                    secs(sample),
                    mib(sample)
                )
            },
        );
        let _ = writeln!(
            table,
            "| {name} | {:.0} MB | {:.1} MB | {:.2} MB | {zstd} | {:.2} s ({:.2} s) | {:.0} MB/s | \
             {:.2} s | {:.0} MB/s ({:.0} MB/s) | {:.0} / {:.0} MiB |",
            case.layer_bytes as f64 / 1e6,
            case.full_delta as f64 / 1e6,
            case.patch_delta as f64 / 1e6,
            secs(case.make),
            secs(case.first_make),
            case.layer_bytes as f64 / 1e6 / secs(case.make),
            secs(case.rebuild),
            case.rebuilt_bytes as f64 / 1e6 / secs(case.rebuild),
            case.rebuilt_bytes as f64 / 1e6 / secs(case.rebuild_uncompressed),
            mib(case.make),
            mib(case.rebuild),
        );
    }
    let _ = writeln!(
        table,
        "\n\"made at\": uncompressed layer bytes per second of the whole `export --patch` (the \
         first run also decompresses both layers into the cache); \"rebuilt at\": bytes of \
         rebuilt layers per second of the whole `haul rebuild` (the earlier bundle's layers \
         decompressed, the patches applied and checked, the whole bundle written and synced); \
         in brackets, from `--format docker-v1` bundles, whose layers need no gunzip (as `docker \
         save` of Docker's classic store gives them to `haul load`). \
         Targets: patch ≤ 1.1x zstd's, made at ≥ 100 MB/s, rebuilt at ≥ 200 MB/s, peak RSS < \
         256 MiB for a 2 GiB layer.\n"
    );
    let _ = writeln!(
        table,
        "Layers whose blob haul rebuilds exact (its digest kept):\n"
    );
    let _ = writeln!(table, "| made by | exact |");
    let _ = writeln!(table, "|---|---:|");
    for (tool, exact, total) in &exact_rows {
        let _ = writeln!(table, "| {tool} | {exact} of {total} |");
    }
    println!("{table}");
    let path = root.join("BENCHMARKS.md");
    let earlier = std::fs::read_to_string(&path).unwrap_or_else(|_| "# haul benchmarks\n\n".into());
    let kept = earlier
        .split_once(&format!("\n{SECTION}"))
        .map_or(earlier.as_str(), |(before, _)| before);
    std::fs::write(&path, format!("{}\n{table}", kept.trim_end())).unwrap();
    eprintln!("written to BENCHMARKS.md");
}
