//! Delta bundles: `export --since` leaves out the layers a site holds from a bundle delivered
//! before, keeps every layer list whole, and the delta loads and runs in real engines after
//! the earlier bundle. Receipts stand in for the earlier tar, byte for byte.

use std::path::Path;

use crate::harness::*;

/// Two versions of an app that share their first two layers (a unique base, so that no
/// other test's images hold its chain), and differ in the top one.
struct App {
    registry: Registry,
    repository: String,
    base: Layer,
    middle: Layer,
}

impl App {
    fn new(name: &str) -> App {
        let registry = Registry::start();
        let repository = unique(name);
        let base = Layer::random("data/base", 300 << 10, unique_seed());
        let middle = Layer::text("etc/middle", "shared\n", Compression::Gzip);
        App {
            registry,
            repository,
            base,
            middle,
        }
    }

    /// Pushes version `tag`: busybox, the base, the middle layer, and a top layer of its own.
    fn push(&self, tag: &str, layers_below: Vec<Layer>) -> Pushed {
        let mut layers = layers_below;
        layers.push(Layer::text(
            "etc/version",
            &format!("{tag}\n"),
            Compression::Gzip,
        ));
        let image = Image::runnable(&format!("app {tag}"), layers, Compression::Gzip, false);
        self.registry.push(&self.repository, tag, &image)
    }

    fn standard(&self, tag: &str) -> Pushed {
        self.push(tag, vec![self.base.clone(), self.middle.clone()])
    }
}

fn unique_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ u64::from(std::process::id())
}

fn files(tar: &Path) -> Vec<String> {
    tar_entries(tar).into_iter().map(|(name, _)| name).collect()
}

fn holds(tar: &Path, digest: &str) -> bool {
    files(tar).contains(&format!("blobs/sha256/{}", hex_of(digest)))
}

fn stdout(run: Run) -> String {
    String::from_utf8(run.stdout).unwrap()
}

#[test]
fn a_delta_leaves_out_what_the_site_holds_and_loads_in_both_docker_stores() {
    let app = App::new("test/delta");
    let v1 = app.standard("v1");
    let v2 = app.standard("v2");
    let haul = Haul::new();
    haul.run(&[
        "export",
        &v1.reference,
        "-o",
        "v1.tar",
        "--receipt",
        "v1.receipt",
    ])
    .success();
    haul.run(&["export", &v2.reference, "-o", "v2.tar"])
        .success();
    let run = haul
        .run(&[
            "--progress",
            "plain",
            "export",
            &v2.reference,
            "-o",
            "v2-delta.tar",
            "--since",
            "v1.tar",
        ])
        .success();
    // The closing line says it is a delta, and of what.
    let closing = run.stderr.lines().last().unwrap_or_default().to_string();
    assert!(
        closing.starts_with("wrote v2-delta.tar (")
            && closing.contains(": a delta, ")
            && closing.contains("left out, held where")
            && closing.contains(&v1.reference),
        "{}",
        run.stderr
    );
    haul.run(&[
        "export",
        &v2.reference,
        "-o",
        "v2-delta-r.tar",
        "--since",
        "v1.receipt",
    ])
    .success();
    let dir = haul.workdir.path();
    let (full, delta) = (dir.join("v2.tar"), dir.join("v2-delta.tar"));

    // The receipt stands in for the tar, byte for byte; it is small.
    assert_eq!(
        std::fs::read(&delta).unwrap(),
        std::fs::read(dir.join("v2-delta-r.tar")).unwrap()
    );
    assert!(std::fs::metadata(dir.join("v1.receipt")).unwrap().len() < 64 << 10);
    // `haul verify --receipt` of the tar writes the same receipt.
    haul.run(&["verify", "v1.tar", "--receipt", "v1.again"])
        .success();
    assert_eq!(
        std::fs::read(dir.join("v1.receipt")).unwrap(),
        std::fs::read(dir.join("v1.again")).unwrap()
    );

    // busybox, the base and the middle layer are left out; the top layer, the config and
    // the manifest are carried; the layer lists are whole.
    let layers = &v2.layer_digests;
    for shared in &layers[..3] {
        assert!(!holds(&delta, shared), "{shared} carried");
        assert!(holds(&full, shared));
    }
    assert!(holds(&delta, &layers[3]));
    assert!(holds(&delta, &v2.config_digest));
    assert!(holds(&delta, &v2.manifest_digest));
    assert_eq!(
        tar_json(&delta, "manifest.json")[0]["Layers"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let record = tar_json(&delta, "haul-delta.json");
    assert_eq!(record["leftOut"].as_array().unwrap().len(), 3, "{record}");
    assert!(std::fs::metadata(&delta).unwrap().len() < std::fs::metadata(&full).unwrap().len() / 2);
    let verified = stdout(haul.run(&["verify", "v2-delta.tar"]).success());
    assert!(
        verified.contains("delta: 3 blobs left out, expected at the destination"),
        "{verified}"
    );
    // A delta that lost a blob it did not declare left out is still not whole.
    let broken = dir.join("broken.tar");
    let kept: Vec<(String, Vec<u8>)> = tar_entries(&delta)
        .into_iter()
        .filter(|(name, _)| *name != format!("blobs/sha256/{}", hex_of(&layers[3])))
        .collect();
    write_tar(&broken, &kept);
    haul.run(&["verify", "broken.tar"])
        .failure(&["is missing", hex_of(&layers[3])]);

    for engine in [Engine::Classic, Engine::ContainerdStore] {
        let _cleanup = engine.cleanup(&[&v1.reference, &v2.reference]);
        engine.load(&dir.join("v1.tar"));
        engine.load(&delta);
        assert_eq!(
            engine.run(&v2.reference, &[]).trim(),
            "app v2",
            "{engine:?}"
        );
        assert_eq!(
            engine.run(&v2.reference, &["/bin/cat", "/etc/middle"]),
            "shared\n"
        );
    }
    // Without its base (v1's unique layers), the delta does not load in the classic store.
    let engine = Engine::Classic;
    let _cleanup = engine.cleanup(&[&v1.reference, &v2.reference]);
    let load = output_within(
        engine
            .docker()
            .args(["load", "-i", delta.to_str().unwrap()]),
        None,
        std::time::Duration::from_secs(120),
    );
    assert!(!load.status.success(), "a delta loaded without its base");
    assert!(
        String::from_utf8_lossy(&load.stderr).contains("no such file"),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let listed = output_within(
        engine.docker().args(["image", "inspect", &v2.reference]),
        None,
        std::time::Duration::from_secs(60),
    );
    assert!(!listed.status.success(), "the image was created");

    // `haul load` says so before loading anything, and names what to load first.
    haul.run(&["load", "v2-delta.tar"]).failure(&[
        "is a delta",
        "of the 3 layers it left out",
        &v1.reference,
        "nothing was loaded",
    ]);
    // --from names what patches are made against, not what the engine must hold: said so.
    haul.run(&["load", "v2-delta.tar", "--from", "v1.tar"])
        .failure(&["of the 3 layers it left out", "haul rebuild"]);
    let listed = output_within(
        engine.docker().args(["image", "inspect", &v2.reference]),
        None,
        std::time::Duration::from_secs(60),
    );
    assert!(!listed.status.success(), "the image was created");
    haul.run(&["load", "v1.tar"]).success();
    haul.run(&["load", "v2-delta.tar"]).success();
    assert_eq!(engine.run(&v2.reference, &[]).trim(), "app v2");
    let record = tar_json(&delta, "haul-delta.json");
    assert_eq!(
        record["since"],
        serde_json::json!([v1.reference]),
        "{record}"
    );
}

#[test]
fn the_rule_carries_a_shared_layer_on_other_parents_and_other_blobs() {
    let app = App::new("test/delta-rule");
    let v1 = app.standard("v1");
    // v3 has v1's middle layer, but on another base: another chain in docker's store.
    let other_base = Layer::random("data/other", 200 << 10, unique_seed() ^ 7);
    let v3 = app.push("v3", vec![other_base, app.middle.clone()]);
    let haul = Haul::new();
    haul.run(&["export", &v1.reference, "-o", "v1.tar"])
        .success();
    haul.run(&["export", &v3.reference, "-o", "v3.tar", "--since", "v1.tar"])
        .success();
    let dir = haul.workdir.path();
    let v3_tar = dir.join("v3.tar");
    // busybox (same chain: first layer) is left out; the middle layer is carried.
    assert!(!holds(&v3_tar, &v3.layer_digests[0]));
    assert!(holds(&v3_tar, &v3.layer_digests[2]), "the middle layer");

    // The same layers uncompressed are other blobs: nothing is left out of them…
    haul.run(&[
        "export",
        &v1.reference,
        "-o",
        "v1-plain.tar",
        "--decompress",
        "--since",
        "v1.tar",
    ])
    .success();
    assert!(
        !files(&dir.join("v1-plain.tar")).contains(&"haul-delta.json".to_string()),
        "a delta against compressed blobs"
    );
    // …but against an uncompressed bundle, they are.
    let v2 = app.standard("v2");
    haul.run(&[
        "export",
        &v2.reference,
        "-o",
        "v2-plain.tar",
        "--decompress",
        "--since",
        "v1-plain.tar",
    ])
    .success();
    let record = tar_json(&dir.join("v2-plain.tar"), "haul-delta.json");
    assert_eq!(record["leftOut"].as_array().unwrap().len(), 3, "{record}");

    // The classic layout: layer folders of held chains lose their layer.tar.
    haul.run(&[
        "export",
        &v1.reference,
        "-o",
        "v1-classic.tar",
        "--format",
        "docker-v1",
    ])
    .success();
    haul.run(&[
        "export",
        &v2.reference,
        "-o",
        "v2-classic.tar",
        "--format",
        "docker-v1",
        "--since",
        "v1-classic.tar",
    ])
    .success();
    let classic = dir.join("v2-classic.tar");
    let layer_tars = files(&classic)
        .iter()
        .filter(|f| f.ends_with("/layer.tar"))
        .count();
    assert_eq!(layer_tars, 1, "{:?}", files(&classic));
    let verified = stdout(haul.run(&["verify", "v2-classic.tar"]).success());
    assert!(verified.contains("delta: 3 blobs left out"), "{verified}");
    let engine = Engine::Classic;
    let _cleanup = engine.cleanup(&[&v1.reference, &v2.reference]);
    engine.load(&dir.join("v1-classic.tar"));
    engine.load(&classic);
    assert_eq!(engine.run(&v2.reference, &[]).trim(), "app v2");
}

#[test]
fn a_delta_of_a_delta_and_two_earlier_bundles() {
    let app = App::new("test/delta-chain");
    let v1 = app.standard("v1");
    let v2 = app.standard("v2");
    // v3 builds on v2's top layer: it needs what v1 and the v2 delta brought.
    let v2_top = Layer::text("etc/version", "v2\n", Compression::Gzip);
    let v3 = app.push("v3", vec![app.base.clone(), app.middle.clone(), v2_top]);
    let haul = Haul::new();
    haul.run(&["export", &v1.reference, "-o", "v1.tar"])
        .success();
    // Two images in one tar share their base: counted once, and said so.
    let planned = haul
        .run(&[
            "export",
            &v1.reference,
            &v2.reference,
            "-o",
            "both.tar",
            "--dry-run",
        ])
        .success();
    let said = String::from_utf8_lossy(&planned.stdout).to_string() + &planned.stderr;
    assert!(
        said.contains(&format!("shared with {} (counted there)", v1.reference)),
        "{said}"
    );
    let related = haul
        .run(&["export", &v2.reference, "-o", "v2.tar", "--since", "v1.tar"])
        .success();
    assert!(
        !related.stderr.contains("share no layer"),
        "{}",
        related.stderr
    );
    haul.run(&[
        "export",
        &v3.reference,
        "-o",
        "v3.tar",
        "--since",
        "v1.tar",
        "--since",
        "v2.tar",
    ])
    .success();
    let dir = haul.workdir.path();
    let v3_tar = dir.join("v3.tar");
    for held in &v3.layer_digests[..4] {
        assert!(!holds(&v3_tar, held), "{held} carried");
    }
    assert!(holds(&v3_tar, &v3.layer_digests[4]));
    let engine = Engine::ContainerdStore;
    let _cleanup = engine.cleanup(&[&v1.reference, &v2.reference, &v3.reference]);
    for tar in ["v1.tar", "v2.tar", "v3.tar"] {
        engine.load(&dir.join(tar));
    }
    assert_eq!(engine.run(&v3.reference, &[]).trim(), "app v3");
}

#[test]
fn since_something_that_is_not_a_whole_bundle_is_a_clear_error() {
    let app = App::new("test/delta-bad");
    let v1 = app.standard("v1");
    let haul = Haul::new();
    let dir = haul.workdir.path();
    std::fs::write(dir.join("notes.txt"), "not a bundle\n").unwrap();
    haul.run(&[
        "export",
        &v1.reference,
        "-o",
        "a.tar",
        "--since",
        "notes.txt",
    ])
    .failure(&["--since notes.txt", "not a whole image bundle"]);
    std::fs::write(dir.join("bad.receipt"), "{\"haulReceipt\": 7}").unwrap();
    haul.run(&[
        "export",
        &v1.reference,
        "-o",
        "a.tar",
        "--since",
        "bad.receipt",
    ])
    .failure(&["--since bad.receipt", "not a haul receipt"]);
    haul.run(&["export", &v1.reference, "-o", "v1.tar"])
        .success();
    let whole = std::fs::read(dir.join("v1.tar")).unwrap();
    std::fs::write(dir.join("cut.tar"), &whole[..whole.len() / 2]).unwrap();
    haul.run(&["export", &v1.reference, "-o", "a.tar", "--since", "cut.tar"])
        .failure(&["--since cut.tar", "not a whole image bundle"]);
    haul.run(&[
        "export",
        &v1.reference,
        "-o",
        "a.tar",
        "--since",
        "missing.tar",
    ])
    .failure(&["--since missing.tar", "cannot read it"]);
    assert!(!dir.join("a.tar").exists());

    // The receipt of other images: the bundle is whole, and that is said.
    let other = Image::new(
        vec![Layer::random("data/other", 10 << 10, unique_seed())],
        false,
        "amd64",
        None,
        "other",
    );
    let other = app.registry.push(&unique("test/other"), "v1", &other);
    haul.run(&[
        "export",
        &other.reference,
        "-o",
        "other.tar",
        "--receipt",
        "other.receipt",
    ])
    .success();
    let run = haul
        .run(&[
            "export",
            &v1.reference,
            "-o",
            "a.tar",
            "--since",
            "other.receipt",
        ])
        .success();
    assert!(
        run.stderr.contains(&format!(
            "share no layer with the earlier bundles given with --since (they hold {})",
            other.reference
        )) && run.stderr.contains("the bundle is whole"),
        "{}",
        run.stderr
    );
}

/// The bytes `--progress json` says the tar had.
fn exported_bytes(run: &Run) -> u64 {
    run.stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|event| event["event"] == "exported")
        .and_then(|event| event["bytes"].as_u64())
        .unwrap_or_else(|| panic!("no exported event:\n{}", run.stderr))
}

#[test]
fn load_asks_the_engine_and_sends_only_what_it_lacks() {
    let app = App::new("test/delta-load");
    let v1 = app.standard("v1");
    let v2 = app.standard("v2");
    let haul = Haul::new();
    haul.run(&["export", &v2.reference, "-o", "v2.tar"])
        .success();
    let full = std::fs::metadata(haul.workdir.path().join("v2.tar"))
        .unwrap()
        .len();
    let base_size = app.base.compressed.len() as u64;
    let engine = Engine::Classic;
    let _cleanup = engine.cleanup(&[&v1.reference, &v2.reference]);

    // An engine without v1: v1's own layers are all sent (busybox may be held already).
    let first = haul
        .run(&["--progress", "json", "export", &v1.reference, "--load"])
        .success();
    assert!(exported_bytes(&first) > base_size, "{}", first.stderr);
    // Now it holds v1: v2 goes without the base and the middle layer, and runs.
    let second = haul
        .run(&["--progress", "json", "export", &v2.reference, "--load"])
        .success();
    let sent = exported_bytes(&second);
    assert!(sent + base_size <= full, "sent {sent} of {full}");
    assert_eq!(engine.run(&v2.reference, &[]).trim(), "app v2");
    // --full sends everything.
    engine.remove(&v2.reference);
    let whole = haul
        .run(&[
            "--progress",
            "json",
            "export",
            &v2.reference,
            "--load",
            "--full",
        ])
        .success();
    assert_eq!(exported_bytes(&whole), full);
    assert_eq!(engine.run(&v2.reference, &[]).trim(), "app v2");

    // The containerd store: its images' manifests name the blobs it holds. v1's own layers go
    // in whole; then v2 without what v1 brought, and v2 is complete there (`docker save`).
    let containerd = Engine::ContainerdStore;
    let _cleanup = containerd.cleanup(&[&v1.reference, &v2.reference]);
    let socket = "unix:///run/haul-test/docker-cs.sock";
    let load_into = |reference: &str| {
        haul.run_with(
            &["--progress", "json", "export", reference, "--load"],
            |c| {
                c.env("DOCKER_HOST", socket);
            },
        )
        .success()
    };
    let first = load_into(&v1.reference);
    assert!(exported_bytes(&first) > base_size, "{}", first.stderr);
    let second = load_into(&v2.reference);
    assert!(!second.stderr.contains("cannot tell"), "{}", second.stderr);
    let sent = exported_bytes(&second);
    assert!(sent + base_size <= full, "sent {sent} of {full}");
    assert_eq!(containerd.run(&v2.reference, &[]).trim(), "app v2");
    let saved = haul.workdir.path().join("saved.tar");
    containerd
        .docker()
        .args(["save", "-o", saved.to_str().unwrap(), &v2.reference])
        .status()
        .unwrap()
        .success()
        .then_some(())
        .expect("docker save of the delta-loaded image");
    haul.run(&["verify", "saved.tar"]).success();

    // An engine that cannot be asked: one warning, and the whole image (which then fails to
    // load there, as any export would).
    let run = haul
        .run_with(&["export", &v2.reference, "--load"], |c| {
            c.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
        })
        .failure(&["docker load"]);
    assert_eq!(
        run.stderr.matches("sending every layer").count(),
        1,
        "{}",
        run.stderr
    );
}

/// Writes `entries` as a tar at `path`.
fn write_tar(path: &Path, entries: &[(String, Vec<u8>)]) {
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(if name.ends_with('/') {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        header.set_path(name).unwrap();
        header.set_cksum();
        builder.append(&header, &data[..]).unwrap();
    }
    builder.finish().unwrap();
}

/// A delta of two images with zstd layers, against a bundle of a third: in the OCI layout it
/// loads in the containerd store, in the default layout in podman, after that bundle.
#[test]
fn an_oci_zstd_delta_of_two_images_loads_in_the_containerd_store_and_podman() {
    let app = App::new("test/delta-oci");
    let middle = Layer::text("etc/middle", "shared\n", Compression::Zstd);
    let push = |tag: &str| {
        let layers = vec![
            app.base.clone(),
            middle.clone(),
            Layer::text("etc/version", &format!("{tag}\n"), Compression::Zstd),
        ];
        let image = Image::runnable(&format!("app {tag}"), layers, Compression::Zstd, true);
        app.registry.push(&app.repository, tag, &image)
    };
    let (v1, v2, v3) = (push("v1"), push("v2"), push("v3"));
    let haul = Haul::new();
    haul.run(&["export", &v1.reference, "-o", "v1.tar", "--format", "oci"])
        .success();
    haul.run(&[
        "export",
        &v2.reference,
        &v3.reference,
        "-o",
        "v23.tar",
        "--format",
        "oci",
        "--since",
        "v1.tar",
    ])
    .success();
    let dir = haul.workdir.path();
    let delta = dir.join("v23.tar");
    let verified = stdout(haul.run(&["verify", "v23.tar"]).success());
    assert!(verified.contains("delta: 3 blobs left out"), "{verified}");
    for held in &v2.layer_digests[..3] {
        assert!(!holds(&delta, held), "{held} carried");
    }
    assert!(holds(&delta, &v2.layer_digests[3]) && holds(&delta, &v3.layer_digests[3]));

    let engine = Engine::ContainerdStore;
    let _cleanup = engine.cleanup(&[&v1.reference, &v2.reference, &v3.reference]);
    engine.load(&dir.join("v1.tar"));
    engine.load(&delta);
    assert_eq!(engine.run(&v2.reference, &[]).trim(), "app v2");
    assert_eq!(engine.run(&v3.reference, &[]).trim(), "app v3");

    // podman reads one image from an OCI archive, and its docker-archive reader wants every
    // layer file ("Some layer tarfiles are missing"): it gets a one-image OCI delta.
    haul.run(&[
        "export",
        &v2.reference,
        "-o",
        "v2.tar",
        "--format",
        "oci",
        "--since",
        "v1.tar",
    ])
    .success();
    let podman = Podman::new();
    podman.ok(&["load", "-i", dir.join("v1.tar").to_str().unwrap()]);
    podman.ok(&["load", "-i", dir.join("v2.tar").to_str().unwrap()]);
    let inspected = podman.ok(&["image", "inspect", &v2.reference]);
    assert!(inspected.contains(hex_of(&v2.config_digest)), "{inspected}");
}

/// `ctr images import` (containerd 1.7, its own namespace per test): the base, then the delta;
/// the delta's image is complete in the content store and unpacks.
#[test]
fn ctr_imports_a_delta_after_its_base() {
    let ctr = "/opt/haul-test/trixie/usr/bin/ctr";
    require_tool(ctr);
    let app = App::new("test/delta-ctr");
    let v1 = app.standard("v1");
    let v2 = app.standard("v2");
    let haul = Haul::new();
    haul.run(&["export", &v1.reference, "-o", "v1.tar"])
        .success();
    haul.run(&["export", &v2.reference, "-o", "v2.tar", "--since", "v1.tar"])
        .success();
    let namespace = unique("haul-delta").replace('/', "-");
    let run_ctr = |args: &[&str]| {
        let output = output_within(
            std::process::Command::new(ctr)
                .args(["--address", "/run/haul-test/containerd/containerd.sock"])
                .args(["--namespace", &namespace])
                .args(args),
            None,
            std::time::Duration::from_secs(120),
        );
        assert!(
            output.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let dir = haul.workdir.path();
    run_ctr(&["images", "import", dir.join("v1.tar").to_str().unwrap()]);
    run_ctr(&["images", "import", dir.join("v2.tar").to_str().unwrap()]);
    let check = run_ctr(&["images", "check"]);
    let line = check
        .lines()
        .find(|l| l.starts_with(&v2.reference))
        .unwrap_or_else(|| panic!("{check}"));
    assert!(
        line.contains("complete") && !line.contains("incomplete"),
        "{check}"
    );
    // Leave the namespace empty for the next run.
    let images = run_ctr(&["images", "ls", "--quiet"]);
    let names: Vec<&str> = images.lines().collect();
    let mut rm = vec!["images", "rm"];
    rm.extend(names);
    run_ctr(&rm);
}
