//! The tar formats (`--format docker | docker-v1 | oci`) and `--decompress`, each read by the
//! loaders that read it: Docker 20.10 (classic store), Docker 26 (containerd store), podman
//! and skopeo.

use std::collections::BTreeMap;

use crate::harness::*;

/// busybox, a text layer, the text layer again (a repeated layer), and an empty layer.
fn image(message: &str, compression: Compression, oci: bool) -> Image {
    let text = Layer::text("etc/format", "f\n", compression);
    Image::runnable(
        message,
        vec![text.clone(), text, Layer::empty(compression)],
        compression,
        oci,
    )
}

/// `haul verify` finds the tar whole (every format is one it reads).
#[track_caller]
fn assert_verifies(haul: &Haul, tar: &std::path::Path) {
    let run = haul.run(&["verify", tar.to_str().unwrap()]).success();
    assert!(run.stderr.contains("ok:") || String::from_utf8_lossy(&run.stdout).contains("ok:"));
}

fn entries_by_name(tar: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    tar_entries(tar).into_iter().collect()
}

fn diff_ids(image: &Image) -> Vec<String> {
    image.layers.iter().map(|l| l.diff_id.clone()).collect()
}

#[test]
fn docker_v1_is_the_classic_layout_and_loads_everywhere() {
    let registry = Registry::start();
    let repository = unique("formats/v1");
    let image = image("classic layout", Compression::Gzip, false);
    let pushed = registry.push(&repository, "v1", &image);
    let haul = Haul::new();
    haul.run(&[
        "export",
        &pushed.reference,
        "-o",
        "v1.tar",
        "--format",
        "docker-v1",
    ])
    .success();
    let tar = haul.workdir.path().join("v1.tar");
    assert_verifies(&haul, &tar);
    let entries = entries_by_name(&tar);

    assert!(
        !entries
            .keys()
            .any(|n| n.starts_with("blobs/") || n == "index.json"),
        "{:?}",
        entries.keys()
    );
    let manifest = tar_json(&tar, "manifest.json");
    let config_name = format!("{}.json", hex_of(&pushed.config_digest));
    assert_eq!(manifest[0]["Config"], config_name.as_str());
    assert_eq!(sha256(&entries[&config_name]), pushed.config_digest);
    let layers: Vec<&str> = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    // Every layer, in order, uncompressed: each layer.tar hashes to its diff_id.
    assert_eq!(layers.len(), image.layers.len());
    for (path, diff_id) in layers.iter().zip(diff_ids(&image)) {
        assert!(path.ends_with("/layer.tar"), "{path}");
        assert_eq!(sha256(&entries[*path]), diff_id, "{path}");
        let id = path.trim_end_matches("/layer.tar");
        assert_eq!(entries[&format!("{id}/VERSION")], b"1.0");
        let json: serde_json::Value =
            serde_json::from_slice(&entries[&format!("{id}/json")]).unwrap();
        assert_eq!(json["id"], id);
    }
    // The repeated layer sits on another stack position: another folder.
    assert_ne!(layers[1], layers[2]);
    let top = layers.last().unwrap().trim_end_matches("/layer.tar");
    let top_json: serde_json::Value =
        serde_json::from_slice(&entries[&format!("{top}/json")]).unwrap();
    assert_eq!(top_json["config"]["Cmd"][2], "classic layout");
    assert_eq!(top_json["parent"], layers[2].trim_end_matches("/layer.tar"));
    let repositories = tar_json(&tar, "repositories");
    assert_eq!(
        repositories[&format!("{}/{repository}", registry.host())]["v1"],
        top
    );

    // Loaded and run by both Docker engines, read by podman and skopeo.
    for engine in [Engine::Classic, Engine::ContainerdStore] {
        let _cleanup = engine.cleanup(&[&pushed.reference]);
        engine.load(&tar);
        assert_eq!(engine.run(&pushed.reference, &[]).trim(), "classic layout");
    }
    let podman = Podman::new();
    podman.ok(&["load", "-i", tar.to_str().unwrap()]);
    let inspected = podman.ok(&["image", "inspect", &pushed.reference]);
    assert!(
        inspected.contains(hex_of(&pushed.config_digest)),
        "{inspected}"
    );
    skopeo_copies(&format!("docker-archive:{}", tar.display()));
}

#[test]
fn oci_is_an_oci_layout_only_and_loads_where_oci_is_read() {
    let registry = Registry::start();
    let repository = unique("formats/oci");
    let image = image("oci layout", Compression::Gzip, true);
    let pushed = registry.push(&repository, "v1", &image);
    let haul = Haul::new();
    haul.run(&[
        "export",
        &pushed.reference,
        "-o",
        "oci.tar",
        "--format",
        "oci",
    ])
    .success();
    let tar = haul.workdir.path().join("oci.tar");
    assert_verifies(&haul, &tar);
    let entries = entries_by_name(&tar);
    assert!(entries.contains_key("oci-layout"));
    assert!(!entries.contains_key("manifest.json"));
    assert!(!entries.contains_key("repositories"));
    for (name, data) in &entries {
        if let Some(hex) = name.strip_prefix("blobs/sha256/")
            && !hex.is_empty()
        {
            assert_eq!(hex_of(&sha256(data)), hex, "{name}");
        }
    }
    let index = tar_json(&tar, "index.json");
    assert_eq!(
        index["manifests"][0]["digest"],
        pushed.manifest_digest.as_str()
    );
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "v1"
    );

    // Docker's containerd store reads OCI layouts; so do podman and skopeo.
    let engine = Engine::ContainerdStore;
    let _cleanup = engine.cleanup(&[&pushed.reference]);
    engine.load(&tar);
    assert_eq!(engine.run(&pushed.reference, &[]).trim(), "oci layout");
    let podman = Podman::new();
    podman.ok(&["load", "-i", tar.to_str().unwrap()]);
    let images = podman.ok(&["images", "--digests", "--format", "{{.Digest}}"]);
    assert!(images.contains(&pushed.manifest_digest), "{images}");
    skopeo_copies(&format!("oci-archive:{}:v1", tar.display()));
}

#[test]
fn decompress_makes_a_zstd_image_loadable_by_docker_20_and_is_done_once() {
    let registry = Registry::start();
    let repository = unique("formats/zstd");
    let image = image("zstd, decompressed", Compression::Zstd, true);
    let pushed = registry.push(&repository, "v1", &image);
    let haul = Haul::new();

    // As served (zstd), Docker 20.10 cannot load it.
    let plain = haul.export(&[&pushed.reference], "zstd.tar");
    let refused = Engine::Classic
        .docker()
        .args(["load", "-i", plain.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "Docker 20.10 loaded zstd layers");

    let run = haul
        .run(&[
            "export",
            &pushed.reference,
            "-o",
            "plain.tar",
            "--decompress",
        ])
        .success();
    assert_eq!(
        run.stderr.matches("decompressed to").count(),
        3,
        "three distinct layers: {}",
        run.stderr
    );
    let tar = haul.workdir.path().join("plain.tar");
    assert_verifies(&haul, &tar);
    let entries = entries_by_name(&tar);
    let manifest = tar_json(&tar, "manifest.json");
    let layers: Vec<String> = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = diff_ids(&image)
        .iter()
        .map(|d| format!("blobs/sha256/{}", hex_of(d)))
        .collect();
    assert_eq!(layers, expected);
    for layer in &layers {
        assert_eq!(
            format!("blobs/sha256/{}", hex_of(&sha256(&entries[layer]))),
            *layer
        );
    }
    // index.json points at the manifest of the stored layers, which is in the tar.
    let index = tar_json(&tar, "index.json");
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    assert_ne!(manifest_digest, pushed.manifest_digest);
    let stored: serde_json::Value =
        serde_json::from_slice(&entries[&format!("blobs/sha256/{}", hex_of(manifest_digest))])
            .unwrap();
    for (layer, diff_id) in stored["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(diff_ids(&image))
    {
        assert_eq!(layer["digest"], diff_id.as_str());
        assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar");
    }

    for engine in [Engine::Classic, Engine::ContainerdStore] {
        let _cleanup = engine.cleanup(&[&pushed.reference]);
        engine.load(&tar);
        assert_eq!(
            engine.run(&pushed.reference, &[]).trim(),
            "zstd, decompressed"
        );
    }

    // The uncompressed layers are in the cache under their diff_ids: the next export
    // neither decompresses nor downloads, even offline.
    let again = haul
        .run(&[
            "export",
            &pushed.reference,
            "-o",
            "again.tar",
            "--decompress",
            "--offline",
        ])
        .success();
    assert!(
        !again.stderr.contains("decompressed to"),
        "{}",
        again.stderr
    );
    assert_eq!(
        std::fs::read(&tar).unwrap(),
        std::fs::read(haul.workdir.path().join("again.tar")).unwrap()
    );
}

#[test]
fn a_layer_that_does_not_decompress_to_its_diff_id_is_refused() {
    let registry = Registry::start();
    let repository = unique("formats/lying");
    let mut image = image("lying config", Compression::Gzip, false);
    let mut config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
    let wrong = sha256(b"not this layer");
    config["rootfs"]["diff_ids"][1] = serde_json::json!(wrong);
    image.config = serde_json::to_vec(&config).unwrap();
    let pushed = registry.push(&repository, "v1", &image);

    let haul = Haul::new();
    haul.run(&[
        "export",
        &pushed.reference,
        "-o",
        "x.tar",
        "--format",
        "docker-v1",
    ])
    .failure(&["diff_id", &wrong, "inconsistent"]);
    assert!(
        haul.workdir_files().is_empty(),
        "{:?}",
        haul.workdir_files()
    );
    assert!(
        !haul
            .cache
            .path()
            .join("blobs/sha256")
            .join(hex_of(&wrong))
            .exists()
    );
}

/// Every `blobs/sha256/<hex>` entry hashes to its name, and everything the index.json tree
/// names (indexes, manifests, configs, layers) is there.
fn assert_oci_layout_whole(tar: &std::path::Path) -> serde_json::Value {
    let entries = entries_by_name(tar);
    for (name, data) in &entries {
        if let Some(hex) = name.strip_prefix("blobs/sha256/")
            && !hex.is_empty()
        {
            assert_eq!(hex_of(&sha256(data)), hex, "{name}");
        }
    }
    let blob = |digest: &str| -> &Vec<u8> {
        entries
            .get(&format!("blobs/sha256/{}", hex_of(digest)))
            .unwrap_or_else(|| panic!("{digest} is named but not in the tar"))
    };
    let index = tar_json(tar, "index.json");
    let mut pending: Vec<serde_json::Value> = index["manifests"].as_array().unwrap().clone();
    while let Some(descriptor) = pending.pop() {
        let data = blob(descriptor["digest"].as_str().unwrap());
        assert_eq!(data.len() as u64, descriptor["size"].as_u64().unwrap());
        let document: serde_json::Value = serde_json::from_slice(data).unwrap();
        if let Some(children) = document["manifests"].as_array() {
            pending.extend(children.iter().cloned());
        } else {
            blob(document["config"]["digest"].as_str().unwrap());
            for layer in document["layers"].as_array().unwrap() {
                let data = blob(layer["digest"].as_str().unwrap());
                assert_eq!(data.len() as u64, layer["size"].as_u64().unwrap());
            }
        }
    }
    index
}

#[test]
fn several_platforms_go_into_an_oci_layout_as_one_index() {
    let registry = Registry::start();
    let repository = unique("formats/multi");
    let amd64 = Image::new(
        vec![
            Layer::busybox(Compression::Gzip),
            Layer::text("etc/arch", "amd64\n", Compression::Gzip),
        ],
        true,
        "amd64",
        None,
        "amd64 of many",
    );
    let arm64 = Image::new(
        vec![Layer::text("etc/arch", "arm64\n", Compression::Gzip)],
        true,
        "arm64",
        Some("v8"),
        "arm64",
    );
    let arm = Image::new(
        vec![Layer::text("etc/arch", "arm\n", Compression::Gzip)],
        true,
        "arm",
        Some("v7"),
        "arm",
    );
    let index_digest = registry.push_index(
        &repository,
        "multi",
        &[
            (&amd64, "linux", "amd64", None),
            (&arm64, "linux", "arm64", Some("v8")),
            (&arm, "linux", "arm", Some("v7")),
        ],
        true,
    );
    let reference = format!("{}/{repository}:multi", registry.host());
    let haul = Haul::new();

    // The docker formats keep one platform per name: refused, saying what to do.
    haul.run(&["export", &reference, "-o", "x.tar", "--all-platforms"])
        .failure(&["--format oci"]);

    // All platforms: the registry's own index, whole, digest kept.
    haul.run(&["export", &reference, "--all-platforms", "--format", "oci"])
        .success();
    let all = haul.workdir.path().join(format!(
        "{}_{}_multi_all.tar",
        registry.host().replace(':', "_"),
        repository.replace('/', "_")
    ));
    assert_verifies(&haul, &all);
    let index = assert_oci_layout_whole(&all);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(index["manifests"][0]["digest"], index_digest.as_str());
    assert_eq!(
        index["manifests"][0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    skopeo_copies(&format!("oci-archive:{}:multi", all.display()));
    let engine = Engine::ContainerdStore;
    let _cleanup = engine.cleanup(&[&reference]);
    engine.load(&all);
    assert_eq!(engine.run(&reference, &[]).trim(), "amd64 of many");

    // Two of three: an index of those two; the third platform's content is not in the tar.
    haul.run(&[
        "export",
        &reference,
        "-o",
        "two.tar",
        "--format",
        "oci",
        "--platform",
        "linux/amd64,linux/arm64",
    ])
    .success();
    let two = haul.workdir.path().join("two.tar");
    assert_verifies(&haul, &two);
    let index = assert_oci_layout_whole(&two);
    let top = index["manifests"][0]["digest"].as_str().unwrap();
    assert_ne!(top, index_digest);
    let entries = entries_by_name(&two);
    let nested: serde_json::Value =
        serde_json::from_slice(&entries[&format!("blobs/sha256/{}", hex_of(top))]).unwrap();
    let platforms: Vec<String> = nested["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(platforms, vec!["amd64", "arm64"]);
    assert!(
        !entries
            .keys()
            .any(|n| n.ends_with(hex_of(&arm.layers[0].digest)))
    );

    // inspect shows each platform, all cached now.
    let run = haul
        .run(&[
            "inspect",
            &reference,
            "--all-platforms",
            "--json",
            "--offline",
        ])
        .success();
    let inspected: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let platforms: Vec<&str> = inspected
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["image"]["platform"].as_str().unwrap())
        .collect();
    assert_eq!(
        platforms,
        vec!["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]
    );
    for image in inspected.as_array().unwrap() {
        assert_eq!(image["image"]["download_size"], 0, "{image}");
    }

    // Uncompressed, from the cache alone: the index points at the rewritten manifests.
    let run = haul
        .run(&[
            "export",
            &reference,
            "-o",
            "plain.tar",
            "--format",
            "oci",
            "--all-platforms",
            "--decompress",
            "--offline",
        ])
        .success();
    assert!(run.stderr.contains("decompressed to"), "{}", run.stderr);
    let plain = haul.workdir.path().join("plain.tar");
    assert_verifies(&haul, &plain);
    assert_oci_layout_whole(&plain);
    skopeo_copies(&format!("oci-archive:{}:multi", plain.display()));
}

#[test]
fn the_default_format_loads_in_podman_and_skopeo_too() {
    let registry = Registry::start();
    let repository = unique("formats/default");
    let image = image("default layout", Compression::Gzip, false);
    let pushed = registry.push(&repository, "v1", &image);
    let haul = Haul::new();
    let tar = haul.export(&[&pushed.reference], "default.tar");
    assert_verifies(&haul, &tar);
    let podman = Podman::new();
    podman.ok(&["load", "-i", tar.to_str().unwrap()]);
    let inspected = podman.ok(&["image", "inspect", &pushed.reference]);
    assert!(
        inspected.contains(hex_of(&pushed.config_digest)),
        "{inspected}"
    );
    // (skopeo's OCI reader skips Docker media types in index.json: docker-archive: is its
    // reader for this format.)
    skopeo_copies(&format!("docker-archive:{}", tar.display()));
}
