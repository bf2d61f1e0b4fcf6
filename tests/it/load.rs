//! `haul export --load`: the tar streams into `docker load` (whichever engine DOCKER_HOST
//! names) with no file written; a failed export loads nothing.

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
