//! `make demo`: haul's main job against a local registry. Starts Debian's `docker-registry` on
//! a free loopback port, builds and pushes a small runnable image (busybox plus two layers),
//! exports it with the release build of haul, twice (the second run is served by the cache),
//! lists the tar, and loads and runs it where a Docker engine answers.

#[path = "../tests/harness/images.rs"]
mod images;
#[path = "../tests/harness/registry.rs"]
mod registry;
// registry.rs can start a registry in token mode, which needs the token service.
#[path = "../tests/harness/token.rs"]
mod token;

use std::path::Path;
use std::process::Command;

use images::{Compression, Image, Layer};
use registry::Registry;

fn step(text: &str) {
    println!("\n==> {text}");
}

fn haul(cache: &Path, args: &[&str]) {
    // `make demo` says where it built haul; by hand, the release build in this tree.
    let binary = std::env::var_os("HAUL_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/haul"));
    println!("$ haul {}", args.join(" "));
    let status = Command::new(&binary)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); run `make demo`, which builds it",
                binary.display()
            )
        });
    assert!(status.success(), "haul failed");
}

fn main() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");

    step("starting a local registry (docker-registry)");
    let registry = Registry::start();
    println!("registry at http://{}", registry.host());

    step("building and pushing demo/hello:1 (busybox + 2 layers)");
    let image = Image::runnable(
        "hello from an image exported by haul",
        vec![
            Layer::text(
                "etc/motd",
                "exported by haul, verified blob by blob\n",
                Compression::Gzip,
            ),
            Layer::text("etc/version", "1\n", Compression::Gzip),
        ],
        Compression::Gzip,
        false,
    );
    let pushed = registry.push("demo/hello", "1", &image);
    println!("pushed {} ({})", pushed.reference, pushed.manifest_digest);

    step("exporting it (cold cache: every blob is downloaded and verified)");
    let tar = work.path().join("hello.tar");
    haul(
        &cache,
        &["export", &pushed.reference, "-o", tar.to_str().unwrap()],
    );

    step("exporting it again (warm cache: only the manifest is asked for)");
    haul(
        &cache,
        &["export", &pushed.reference, "-o", tar.to_str().unwrap()],
    );

    step("what the tar holds");
    let _ = Command::new("tar").arg("tvf").arg(&tar).status();

    step("haul cache ls");
    haul(&cache, &["cache", "ls"]);

    step("loading it into Docker");
    let engine_answers = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if engine_answers {
        let loaded = Command::new("docker")
            .arg("load")
            .arg("-i")
            .arg(&tar)
            .status()
            .unwrap();
        assert!(loaded.success(), "docker load failed");
        let ran = Command::new("docker")
            .args(["run", "--rm", "--network", "none", &pushed.reference])
            .status()
            .unwrap();
        assert!(ran.success(), "docker run failed");
        let _ = Command::new("docker")
            .args(["rmi", "-f", &pushed.reference])
            .output();
    } else {
        println!(
            "no Docker engine answers here: skipped loading (start dockerd, or run `make test`, to see it run)"
        );
    }
    println!("\ndone: the registry stops and the demo's files are removed");
}
