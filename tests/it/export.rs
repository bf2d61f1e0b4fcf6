//! `haul export` end to end: images built here, pushed to a real registry, exported, checked
//! entry by entry, loaded into real Docker engines (both image stores) and run.

use crate::harness::*;

/// Checks the tar against the image: every layer listed in order (duplicates too), every
/// blob present once and intact, index.json pointing at the registry's manifest.
#[track_caller]
fn assert_tar_matches(tar: &std::path::Path, pushed: &Pushed, repo_tag: &str) {
    let entries = tar_entries(tar);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    for (name, data) in &entries {
        if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            assert_eq!(
                hex_of(&sha256(data)),
                hex,
                "{name} does not hash to its name"
            );
        }
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        names.len(),
        "an entry is written twice: {names:?}"
    );

    let manifest = tar_json(tar, "manifest.json");
    let entry = manifest
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["RepoTags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == repo_tag)
        })
        .unwrap_or_else(|| panic!("{repo_tag} not in manifest.json: {manifest}"));
    assert_eq!(
        entry["Config"],
        format!("blobs/sha256/{}", hex_of(&pushed.config_digest))
    );
    let layers: Vec<String> = pushed
        .layer_digests
        .iter()
        .map(|d| format!("blobs/sha256/{}", hex_of(d)))
        .collect();
    assert_eq!(
        entry["Layers"],
        serde_json::json!(layers),
        "Layers must be the manifest's list as is"
    );
    for layer in &layers {
        assert!(names.contains(&layer.as_str()), "{layer} named but missing");
    }

    let index = tar_json(tar, "index.json");
    assert!(
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["digest"] == pushed.manifest_digest.as_str()),
        "index.json does not point at the registry's manifest {}: {index}",
        pushed.manifest_digest
    );
    assert!(names.contains(&format!("blobs/sha256/{}", hex_of(&pushed.manifest_digest)).as_str()));
    assert!(names.contains(&"oci-layout") && names.contains(&"repositories"));
}

#[test]
fn docker_gzip_image_loads_and_runs_in_both_stores() {
    let registry = Registry::start();
    let repository = unique("test/gzip");
    let image = Image::runnable(
        "hello from haul",
        vec![
            Layer::text("etc/layer-one", "one\n", Compression::Gzip),
            Layer::text("etc/layer-two", "two\n", Compression::Gzip),
        ],
        Compression::Gzip,
        false,
    );
    let pushed = registry.push(&repository, "v1", &image);
    let haul = Haul::new();
    let tar = haul.export(&[&pushed.reference], "image.tar");
    assert_tar_matches(&tar, &pushed, &pushed.reference);

    let classic = Engine::Classic;
    let _cleanup = classic.cleanup(&[&pushed.reference]);
    assert!(classic.load(&tar).contains(&pushed.reference));
    assert_eq!(
        classic.image_id(&pushed.reference),
        pushed.config_digest,
        "classic store: ID is the config digest"
    );
    assert_eq!(
        classic.run(&pushed.reference, &[]).trim(),
        "hello from haul"
    );
    assert_eq!(
        classic.run(
            &pushed.reference,
            &["/bin/cat", "/etc/layer-one", "/etc/layer-two"]
        ),
        "one\ntwo\n"
    );

    let containerd = Engine::ContainerdStore;
    let _cleanup = containerd.cleanup(&[&pushed.reference]);
    assert!(containerd.load(&tar).contains(&pushed.reference));
    assert_eq!(
        containerd.image_id(&pushed.reference),
        pushed.manifest_digest,
        "containerd store: ID is the registry's manifest digest"
    );
    assert_eq!(
        containerd.run(&pushed.reference, &[]).trim(),
        "hello from haul"
    );
    assert_eq!(
        containerd.run(&pushed.reference, &["/bin/cat", "/etc/layer-two"]),
        "two\n"
    );

    // skopeo reads the tar through manifest.json and reports the layers' diff_ids.
    let diff_ids: Vec<&str> = image.layers.iter().map(|l| l.diff_id.as_str()).collect();
    assert_eq!(skopeo_inspect(&tar)["Layers"], serde_json::json!(diff_ids));
}

#[test]
fn oci_zstd_image_loads_in_the_containerd_store() {
    let registry = Registry::start();
    let repository = unique("test/zstd");
    let image = Image::runnable(
        "zstd works",
        vec![Layer::text("etc/zstd", "z\n", Compression::Zstd)],
        Compression::Zstd,
        true,
    );
    let pushed = registry.push(&repository, "1", &image);
    let haul = Haul::new();
    let tar = haul.export(&[&pushed.reference], "zstd.tar");
    assert_tar_matches(&tar, &pushed, &pushed.reference);
    let index = tar_json(&tar, "index.json");
    assert_eq!(index["manifests"][0]["mediaType"], OCI_MANIFEST);
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        pushed.reference
    );
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "1"
    );

    // Docker 20.10 cannot read zstd layers; the current engine can.
    let containerd = Engine::ContainerdStore;
    let _cleanup = containerd.cleanup(&[&pushed.reference]);
    assert!(containerd.load(&tar).contains(&pushed.reference));
    assert_eq!(
        containerd.image_id(&pushed.reference),
        pushed.manifest_digest
    );
    assert_eq!(
        containerd.run(&pushed.reference, &["/bin/cat", "/etc/zstd"]),
        "z\n"
    );
    let diff_ids: Vec<&str> = image.layers.iter().map(|l| l.diff_id.as_str()).collect();
    assert_eq!(skopeo_inspect(&tar)["Layers"], serde_json::json!(diff_ids));
}

#[test]
fn an_index_is_narrowed_to_the_platform_variant_included() {
    let registry = Registry::start();
    let repository = unique("test/multi");
    let amd64 = Image::runnable("amd64 here", vec![], Compression::Gzip, true);
    let arm64 = Image::new(
        vec![Layer::text("etc/arch", "arm64\n", Compression::Gzip)],
        true,
        "arm64",
        Some("v8"),
        "arm64",
    );
    let armv7 = Image::new(
        vec![Layer::text("etc/arch", "armv7\n", Compression::Gzip)],
        true,
        "arm",
        Some("v7"),
        "armv7",
    );
    for oci in [true, false] {
        let tag = if oci { "oci" } else { "docker" };
        let (amd64, arm64, armv7) = (
            Image {
                oci,
                ..amd64.clone()
            },
            Image {
                oci,
                ..arm64.clone()
            },
            Image {
                oci,
                ..armv7.clone()
            },
        );
        registry.push_index(
            &repository,
            tag,
            &[
                (&amd64, "linux", "amd64", None),
                (&arm64, "linux", "arm64", Some("v8")),
                (&armv7, "linux", "arm", Some("v7")),
            ],
            oci,
        );
        let reference = format!("{}/{repository}:{tag}", registry.host());
        let haul = Haul::new();
        let config_of = |tar: &std::path::Path| {
            let manifest = tar_json(tar, "manifest.json");
            let config_path = manifest[0]["Config"].as_str().unwrap().to_string();
            let entries = tar_entries(tar);
            let (_, data) = entries.iter().find(|(n, _)| *n == config_path).unwrap();
            serde_json::from_slice::<serde_json::Value>(data).unwrap()
        };

        // Default: this machine's platform (the tests run on amd64).
        let tar = haul.export(&[&reference], "default.tar");
        assert_eq!(config_of(&tar)["architecture"], "amd64");
        // The tar names the platform's own manifest (not the index), as the registry has it.
        let amd64_manifest = sha256(&amd64.manifest());
        assert_eq!(
            tar_json(&tar, "index.json")["manifests"][0]["digest"],
            amd64_manifest.as_str()
        );
        assert_eq!(
            tar_json(&tar, "manifest.json")[0]["RepoTags"],
            serde_json::json!([reference])
        );
        if oci {
            // OCI media types with gzip layers load in both stores and run.
            for engine in [Engine::Classic, Engine::Classic26, Engine::ContainerdStore] {
                let _cleanup = engine.cleanup(&[&reference]);
                engine.load(&tar);
                let expected_id = match engine {
                    Engine::Classic | Engine::Classic26 => sha256(&amd64.config),
                    Engine::ContainerdStore => amd64_manifest.clone(),
                };
                assert_eq!(engine.image_id(&reference), expected_id, "{engine:?}");
                assert_eq!(engine.run(&reference, &[]).trim(), "amd64 here");
            }
        }

        haul.run(&[
            "export",
            &reference,
            "--platform",
            "linux/arm/v7",
            "-o",
            "armv7.tar",
        ])
        .success();
        let config = config_of(&haul.workdir.path().join("armv7.tar"));
        assert_eq!(
            (config["architecture"].as_str(), config["variant"].as_str()),
            (Some("arm"), Some("v7"))
        );

        haul.run(&[
            "export",
            &reference,
            "--platform",
            "linux/arm64",
            "-o",
            "arm64.tar",
        ])
        .success();
        assert_eq!(
            config_of(&haul.workdir.path().join("arm64.tar"))["architecture"],
            "arm64"
        );

        haul.run(&[
            "export",
            &reference,
            "--platform",
            "linux/s390x",
            "-o",
            "none.tar",
        ])
        .failure(&[
            "no matching platform",
            "linux/amd64",
            "linux/arm64/v8",
            "linux/arm/v7",
        ]);
        assert_eq!(
            haul.workdir_files(),
            ["arm64.tar", "armv7.tar", "default.tar"],
            "a failed export leaves no tar nor partial file"
        );
    }
}

#[test]
fn repeated_and_empty_layers_are_all_listed_and_load() {
    let registry = Registry::start();
    let repository = unique("test/repeat");
    let shared = Layer::text("etc/shared", "same bytes\n", Compression::Gzip);
    let image = Image::runnable(
        "repeats",
        vec![
            shared.clone(),
            Layer::empty(Compression::Gzip),
            shared.clone(),
            Layer::text("etc/top", "top\n", Compression::Gzip),
        ],
        Compression::Gzip,
        false,
    );
    let pushed = registry.push(&repository, "latest", &image);
    assert_eq!(pushed.layer_digests.len(), 5);
    assert_eq!(pushed.layer_digests[1], pushed.layer_digests[3]);
    let haul = Haul::new();
    let tar = haul.export(&[&pushed.reference], "repeat.tar");
    assert_tar_matches(&tar, &pushed, &pushed.reference);
    let stored = tar_entries(&tar)
        .iter()
        .filter(|(n, _)| n.ends_with(hex_of(&shared.digest)))
        .count();
    assert_eq!(stored, 1, "a blob used twice is stored once");

    // Both stores: the classic one reads manifest.json, the containerd one index.json and the
    // manifest blob; each must see all five layers, the repeated and the empty one included.
    let classic = Engine::Classic;
    let _cleanup = classic.cleanup(&[&pushed.reference]);
    classic.load(&tar);
    assert_eq!(classic.image_id(&pushed.reference), pushed.config_digest);
    assert_eq!(
        classic.run(&pushed.reference, &["/bin/cat", "/etc/shared", "/etc/top"]),
        "same bytes\ntop\n"
    );
    let containerd = Engine::ContainerdStore;
    let _cleanup = containerd.cleanup(&[&pushed.reference]);
    containerd.load(&tar);
    assert_eq!(
        containerd.image_id(&pushed.reference),
        pushed.manifest_digest
    );
    assert_eq!(
        containerd.run(&pushed.reference, &["/bin/cat", "/etc/shared", "/etc/top"]),
        "same bytes\ntop\n"
    );
}

#[test]
fn an_image_of_over_a_hundred_layers() {
    let registry = Registry::start();
    let repository = unique("test/many");
    let extra: Vec<Layer> = (0..104)
        .map(|i| {
            Layer::text(
                &format!("etc/layer-{i:03}"),
                &format!("{i}\n"),
                Compression::Gzip,
            )
        })
        .collect();
    let image = Image::runnable("many layers", extra, Compression::Gzip, false);
    let pushed = registry.push(&repository, "v1", &image);
    assert_eq!(pushed.layer_digests.len(), 105);
    let haul = Haul::new();
    let tar = haul.export(&[&pushed.reference, "--jobs", "8"], "many.tar");
    assert_tar_matches(&tar, &pushed, &pushed.reference);
    let engine = Engine::Classic;
    let _cleanup = engine.cleanup(&[&pushed.reference]);
    engine.load(&tar);
    assert_eq!(engine.image_id(&pushed.reference), pushed.config_digest);
    assert_eq!(
        engine.run(
            &pushed.reference,
            &["/bin/cat", "/etc/layer-000", "/etc/layer-103"]
        ),
        "0\n103\n"
    );
}

#[test]
fn several_images_in_one_tar_share_blobs() {
    let registry = Registry::start();
    let repository = unique("test/app");
    let base = Layer::busybox(Compression::Gzip);
    let v1 = Image::new(
        vec![
            base.clone(),
            Layer::text("etc/version", "1\n", Compression::Gzip),
        ],
        false,
        "amd64",
        None,
        "v1",
    );
    let v2 = Image::new(
        vec![
            base.clone(),
            Layer::text("etc/version", "2\n", Compression::Gzip),
        ],
        false,
        "amd64",
        None,
        "v2",
    );
    let p1 = registry.push(&repository, "v1", &v1);
    let p2 = registry.push(&repository, "v2", &v2);
    let haul = Haul::new();
    let tar = haul.export(&[&p1.reference, &p2.reference], "bundle.tar");
    assert_tar_matches(&tar, &p1, &p1.reference);
    assert_tar_matches(&tar, &p2, &p2.reference);
    assert_eq!(tar_json(&tar, "manifest.json").as_array().unwrap().len(), 2);
    assert_eq!(
        tar_json(&tar, "index.json")["manifests"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Both images load from the one tar, in both stores.
    for engine in [Engine::Classic, Engine::ContainerdStore] {
        let _cleanup = engine.cleanup(&[&p1.reference, &p2.reference]);
        let loaded = engine.load(&tar);
        assert!(
            loaded.contains(&p1.reference) && loaded.contains(&p2.reference),
            "{engine:?}: {loaded}"
        );
        assert_eq!(
            engine.run(&p1.reference, &["/bin/cat", "/etc/version"]),
            "1\n"
        );
        assert_eq!(
            engine.run(&p2.reference, &["/bin/cat", "/etc/version"]),
            "2\n"
        );
    }

    // Several images need an output name.
    haul.run(&["export", &p1.reference, &p2.reference])
        .failure(&["-o FILE"]);
}

#[test]
fn output_names_stdout_digests_and_byte_identical_exports() {
    let registry = Registry::start();
    let repository = unique("test/names");
    let image = Image::runnable("names", vec![], Compression::Gzip, false);
    let pushed = registry.push(&repository, "1.0", &image);
    let haul = Haul::new();

    // Without -o: <registry>_<repository>_<tag>_<arch>.tar, ':' and '/' as '_'.
    haul.run(&["export", &pushed.reference]).success();
    let expected = format!(
        "{}_{}_1.0_amd64.tar",
        registry.host().replace(':', "_"),
        repository.replace('/', "_")
    );
    assert_eq!(haul.workdir_files(), vec![expected.clone()]);
    let by_default = std::fs::read(haul.workdir.path().join(&expected)).unwrap();

    // -o - writes the same bytes to stdout; a second run with a fresh cache too.
    let streamed = haul
        .run(&["export", &pushed.reference, "-o", "-", "-q"])
        .success()
        .stdout;
    assert!(streamed == by_default, "stdout differs from the file");
    // … and that stream is what `haul export -o - | docker load` feeds docker.
    let classic = Engine::Classic;
    let _cleanup = classic.cleanup(&[&pushed.reference]);
    assert!(classic.load_stdin(&streamed).contains(&pushed.reference));
    assert_eq!(classic.run(&pushed.reference, &[]).trim(), "names");
    // The second and third runs were served by the cache: one download of each blob.
    for digest in pushed.layer_digests.iter().chain([&pushed.config_digest]) {
        assert_eq!(
            registry.blob_gets(&repository, digest),
            1,
            "{digest} was downloaded more than once:\n{}",
            registry.log()
        );
    }
    let other = Haul::new();
    let again = std::fs::read(other.export(&[&pushed.reference], "again.tar")).unwrap();
    assert!(
        again == by_default,
        "the same image exported twice must give the same bytes"
    );

    // By digest (and by tag plus digest): the same image; RepoTags only when a tag is given.
    let by_digest = format!(
        "{}/{repository}@{}",
        registry.host(),
        pushed.manifest_digest
    );
    let tar = haul.export(&[&by_digest], "digest.tar");
    assert_eq!(
        tar_json(&tar, "manifest.json")[0]["RepoTags"],
        serde_json::json!([])
    );
    assert_eq!(
        tar_json(&tar, "index.json")["manifests"][0]["digest"],
        pushed.manifest_digest.as_str()
    );
    let tagged_digest = format!(
        "{}/{repository}:pinned@{}",
        registry.host(),
        pushed.manifest_digest
    );
    let tar = haul.export(&[&tagged_digest], "pinned.tar");
    assert_eq!(
        tar_json(&tar, "manifest.json")[0]["RepoTags"],
        serde_json::json!([format!("{}/{repository}:pinned", registry.host())])
    );
}

#[test]
fn a_private_repository_behind_basic_auth() {
    let registry = Registry::start_with_basic_auth("haul", "s3cret");
    let repository = unique("private/app");
    let image = Image::runnable("private", vec![], Compression::Gzip, false);
    let pushed = registry.push(&repository, "1", &image);
    let haul = Haul::new();

    // No credentials: a clear refusal, no tar.
    haul.run(&["export", &pushed.reference, "-o", "anon.tar"])
        .failure(&["unauthorized", &registry.host()]);
    // --username with --password-stdin.
    haul.run_stdin(
        &[
            "export",
            &pushed.reference,
            "-o",
            "flag.tar",
            "--username",
            "haul",
            "--password-stdin",
        ],
        "s3cret\n",
    )
    .success();
    assert_tar_matches(
        &haul.workdir.path().join("flag.tar"),
        &pushed,
        &pushed.reference,
    );
    // Wrong password.
    haul.run_stdin(
        &[
            "export",
            &pushed.reference,
            "-o",
            "bad.tar",
            "-u",
            "haul",
            "--password-stdin",
        ],
        "wrong\n",
    )
    .failure(&["unauthorized"]);
    // docker's config.json, found through DOCKER_CONFIG.
    let docker_config = tempfile::tempdir().unwrap();
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"haul:s3cret");
    std::fs::write(
        docker_config.path().join("config.json"),
        serde_json::to_vec(&serde_json::json!({"auths": {registry.host(): {"auth": auth}}}))
            .unwrap(),
    )
    .unwrap();
    let fresh = Haul::new();
    fresh
        .run_with(&["export", &pushed.reference, "-o", "config.tar"], |c| {
            c.env("DOCKER_CONFIG", docker_config.path());
        })
        .success();
    assert_tar_matches(
        &fresh.workdir.path().join("config.tar"),
        &pushed,
        &pushed.reference,
    );
    // A config.json with the wrong password is refused too.
    let wrong = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"haul:nope");
    std::fs::write(
        docker_config.path().join("config.json"),
        serde_json::to_vec(&serde_json::json!({"auths": {registry.host(): {"auth": wrong}}}))
            .unwrap(),
    )
    .unwrap();
    Haul::new()
        .run_with(&["export", &pushed.reference, "-o", "config.tar"], |c| {
            c.env("DOCKER_CONFIG", docker_config.path());
        })
        .failure(&["unauthorized"]);
    assert_eq!(
        haul.workdir_files(),
        vec!["flag.tar".to_string()],
        "failed runs leave no tar"
    );
    haul.assert_cache_clean();
}

#[test]
fn the_cache_folder_comes_from_haul_cache_dir() {
    let registry = Registry::start();
    let repository = unique("test/env-cache");
    let image = Image::runnable("cache", vec![], Compression::Gzip, true);
    let pushed = registry.push(&repository, "1", &image);
    let haul = Haul::new();
    let cache = tempfile::tempdir().unwrap();
    // Not haul.command(), which passes --cache-dir: this run names the cache only in the
    // environment.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_haul"));
    command
        .current_dir(haul.workdir.path())
        .env("HAUL_CACHE_DIR", cache.path())
        .env(
            "DOCKER_CONFIG",
            haul.workdir.path().join("no-docker-config"),
        )
        .args(["export", &pushed.reference, "-o", "env.tar"]);
    Run::from(output_within(&mut command, None, COMMAND_TIMEOUT)).success();
    for digest in pushed.layer_digests.iter().chain([&pushed.config_digest]) {
        let blob = cache.path().join("blobs/sha256").join(hex_of(digest));
        assert!(
            blob.is_file(),
            "{} is not in HAUL_CACHE_DIR",
            blob.display()
        );
    }
    assert_tar_matches(
        &haul.workdir.path().join("env.tar"),
        &pushed,
        &pushed.reference,
    );
}

#[test]
fn one_image_under_two_names_is_one_entry_with_both_tags() {
    let registry = Registry::start();
    let repository = unique("test/twice");
    let image = Image::runnable("twice", vec![], Compression::Gzip, false);
    let a = registry.push(&repository, "a", &image);
    let b = registry.push(&repository, "b", &image);
    let haul = Haul::new();
    let run = haul
        .run(&["export", &a.reference, &b.reference, "-o", "twice.tar"])
        .success();
    // One config, fetched once: no waiting on its own download.
    assert!(
        !run.stderr.contains("waiting for another haul process"),
        "{}",
        run.stderr
    );
    let manifest = tar_json(&haul.workdir.path().join("twice.tar"), "manifest.json");
    assert_eq!(manifest.as_array().unwrap().len(), 1);
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!([a.reference, b.reference])
    );
}
