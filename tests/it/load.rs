//! `haul export --load`: the tar streams into `docker load` (whichever engine DOCKER_HOST
//! names) with no file written; a failed export loads nothing. `haul load FILE` shows its
//! progress and says what it loaded.

use crate::harness::*;

#[test]
fn load_streams_into_either_engine_without_a_file() {
    let registry = Registry::start();
    let repository = unique("test/load");
    let image = Image::runnable(
        "loaded directly",
        vec![Layer::text("etc/l", "l\n", Compression::Gzip)],
        Compression::Gzip,
        false,
    );
    let pushed = registry.push(&repository, "v1", &image);
    let haul = Haul::new();

    let classic = Engine::Classic;
    classic.remove(&pushed.reference);
    haul.run(&["export", &pushed.reference, "--load"]).success();
    assert!(haul.workdir_files().is_empty(), "--load writes no file");
    assert_eq!(classic.image_id(&pushed.reference), pushed.config_digest);
    assert_eq!(
        classic.run(&pushed.reference, &[]).trim(),
        "loaded directly"
    );
    classic.remove(&pushed.reference);

    let containerd = Engine::ContainerdStore;
    containerd.remove(&pushed.reference);
    haul.run_with(&["export", &pushed.reference, "--load"], |c| {
        c.env("DOCKER_HOST", CONTAINERD_STORE_HOST);
    })
    .success();
    assert_eq!(
        containerd.image_id(&pushed.reference),
        pushed.manifest_digest
    );
    containerd.remove(&pushed.reference);
}

#[test]
fn a_failed_export_or_loader_loads_nothing() {
    let registry = Registry::start();
    let repository = unique("test/load-fail");
    let image = Image::runnable(
        "never",
        vec![Layer::text("etc/n", "n\n", Compression::Gzip)],
        Compression::Gzip,
        false,
    );
    let pushed = registry.push(&repository, "v1", &image);
    let haul = Haul::new();

    // The engine is not there: docker load fails, and haul says so.
    haul.run_with(&["export", &pushed.reference, "--load"], |c| {
        c.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    })
    .failure(&["`docker load` failed"]);

    // A corrupt layer: the loader is stopped before it sees the end of the tar.
    let victim = &pushed.layer_digests[1];
    let path = registry.blob_data_path(victim);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[5] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let classic = Engine::Classic;
    classic.remove(&pushed.reference);
    // A fresh cache: the first run may have cached the layer before docker load failed.
    let fresh = Haul::new();
    fresh
        .run(&["export", &pushed.reference, "--load"])
        .failure(&["digest mismatch"]);
    let inspect = classic
        .docker()
        .args(["image", "inspect", &pushed.reference])
        .output()
        .unwrap();
    assert!(
        !inspect.status.success(),
        "a failed export must load nothing"
    );

    // --load and -o do not go together.
    let usage = haul.run(&["export", &pushed.reference, "--load", "-o", "x.tar"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn haul_load_shows_its_progress_and_what_it_loaded() {
    let registry = Registry::start();
    // One layer of its own, no busybox: removing this image never takes a layer another test
    // (an `export --load` that found it held) relies on.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let image = Image::new(
        vec![Layer::random("data/load", 3 << 20, seed)],
        false,
        "amd64",
        None,
        "not run",
    );
    let pushed = registry.push(&unique("test/haul-load"), "v1", &image);
    let haul = Haul::new();
    let tar = haul.export(&[&pushed.reference], "app.tar");
    let size = std::fs::metadata(&tar).unwrap().len();
    let classic = Engine::Classic;
    let _cleanup = classic.cleanup(&[&pushed.reference]);

    // Plain lines (stderr is not a terminal): both steps, then what was loaded.
    classic.remove(&pushed.reference);
    let run = haul.run(&["load", "app.tar"]).success();
    let stderr = &run.stderr;
    assert!(stderr.contains("checking app.tar ("), "{stderr}");
    assert!(stderr.contains("loading app.tar ("), "{stderr}");
    assert!(
        stderr.contains("loaded app.tar into `docker load`: 1 image ("),
        "{stderr}"
    );
    // docker load's own lines stay on standard output.
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("Loaded image"), "{stdout}");
    assert_eq!(classic.image_id(&pushed.reference), pushed.config_digest);

    // JSON: each step's bytes add up to the file's size; the last event names the image.
    classic.remove(&pushed.reference);
    let run = haul
        .run(&["--progress", "json", "load", "app.tar"])
        .success();
    let events: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let mut steps: Vec<(String, u64)> = Vec::new();
    for event in &events {
        match event["event"].as_str().unwrap() {
            "load_step" => {
                assert_eq!(event["bytes"], size);
                steps.push((event["step"].as_str().unwrap().to_string(), 0));
            }
            "load_progress" => steps.last_mut().unwrap().1 += event["bytes"].as_u64().unwrap(),
            _ => {}
        }
    }
    assert_eq!(
        steps,
        vec![
            ("checking".to_string(), size),
            ("loading".to_string(), size)
        ],
        "{}",
        run.stderr
    );
    let loaded = events.last().unwrap();
    assert_eq!(loaded["event"], "loaded", "{}", run.stderr);
    assert_eq!(loaded["bytes"], size);
    let named = loaded["images"][0].as_str().unwrap_or_default();
    assert!(
        pushed
            .reference
            .ends_with(named.rsplit('/').next().unwrap()),
        "{loaded}"
    );
    assert_eq!(classic.image_id(&pushed.reference), pushed.config_digest);

    // An engine that is not there: the error says the file was not loaded, and why.
    haul.run(&["load", "-H", "unix:///nonexistent/docker.sock", "app.tar"])
        .failure(&[
            "app.tar was not loaded",
            "`docker -H unix:///nonexistent/docker.sock load` failed",
        ]);
}

/// A bundle compressed after export (gzip, zstd), as `docker load` takes it: verify, inspect,
/// `--since`, load and push read it as it is, with the same receipt as the tar.
#[test]
fn a_compressed_bundle_is_read_as_docker_load_reads_it() {
    let registry = Registry::start();
    let pushed = registry.push_app(&unique("test/compressed"), "v1", "compressed bundle");
    let haul = Haul::new();
    let dir = haul.workdir.path();
    haul.run(&[
        "export",
        &pushed.reference,
        "-o",
        "v1.tar",
        "--receipt",
        "v1.receipt",
    ])
    .success();
    for (tool, args) in [
        ("gzip", &["-k", "v1.tar"][..]),
        ("zstd", &["-q", "-k", "v1.tar"]),
    ] {
        let status = std::process::Command::new(tool)
            .args(args)
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(status.success(), "{tool}");
    }
    let receipt = std::fs::read(dir.join("v1.receipt")).unwrap();
    for file in ["v1.tar.gz", "v1.tar.zst"] {
        haul.run(&["verify", file, "--receipt", "again.receipt"])
            .success();
        assert_eq!(
            std::fs::read(dir.join("again.receipt")).unwrap(),
            receipt,
            "{file}"
        );
        let inspected = haul.run(&["inspect", file]).success();
        assert!(
            String::from_utf8_lossy(&inspected.stdout).contains(&pushed.reference),
            "{file}"
        );
        // Against it, nothing is new: every layer left out.
        let delta = haul
            .run(&[
                "export",
                &pushed.reference,
                "-o",
                "delta.tar",
                "--since",
                file,
            ])
            .success();
        assert!(delta.stderr.contains("left out"), "{}", delta.stderr);
    }
    let dest = Registry::start();
    haul.run(&["push", "v1.tar.zst", &dest.host()]).success();
    let target = format!(
        "{}/{}",
        dest.host(),
        pushed.reference.split_once('/').unwrap().1
    );
    let copied = haul.run(&["inspect", &target, "--json"]).success();
    assert!(
        String::from_utf8_lossy(&copied.stdout).contains(&pushed.manifest_digest),
        "the digest was not kept"
    );
    let classic = Engine::Classic;
    let _cleanup = classic.cleanup(&[&pushed.reference]);
    classic.remove(&pushed.reference);
    haul.run(&["load", "v1.tar.gz"]).success();
    assert_eq!(
        classic.run(&pushed.reference, &[]).trim(),
        "compressed bundle"
    );
}
