//! `haul inspect` against a real registry: what it reports matches what was pushed, it
//! downloads no layer and caches nothing but manifests, it sees what an export cached, it
//! reads an index's platforms, and bad input is exit status 1 (bad usage 2).

use crate::harness::*;

fn inspect_json(haul: &Haul, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["inspect", "--json"];
    all.extend_from_slice(args);
    let run = haul.run(&all).success();
    serde_json::from_slice(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "--json is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&run.stdout)
        )
    })
}

fn inspect_text(haul: &Haul, args: &[&str]) -> String {
    let mut all = vec!["inspect"];
    all.extend_from_slice(args);
    String::from_utf8(haul.run(&all).success().stdout).unwrap()
}

fn blobs_in_cache(haul: &Haul) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(haul.cache.path().join("blobs/sha256"))
        .map(|entries| {
            entries
                .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_single_image_before_and_after_export() {
    let registry = Registry::start();
    let repository = unique("test/inspect");
    // A gzip and a zstd layer, and the gzip one again: listed twice, downloaded once.
    let base = Layer::busybox(Compression::Gzip);
    let top = Layer::text("etc/motd", "hello\n", Compression::Zstd);
    let image = Image::new(
        vec![base.clone(), top.clone(), base.clone()],
        true,
        "amd64",
        None,
        "hi",
    );
    let pushed = registry.push(&repository, "v1", &image);
    let reference = pushed.reference.clone();
    let haul = Haul::new();

    let json = inspect_json(&haul, &[&reference]);
    let reports = json.as_array().expect("an array, one object per reference");
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    assert_eq!(report["reference"], reference.as_str());
    assert_eq!(report["digest"], pushed.manifest_digest.as_str());
    assert_eq!(report["media_type"], OCI_MANIFEST);
    assert!(report["platforms"].is_null(), "not an index: {report}");
    let summary = &report["image"];
    assert_eq!(summary["digest"], pushed.manifest_digest.as_str());
    assert_eq!(summary["platform"], "linux/amd64");
    assert_eq!(summary["config"]["digest"], pushed.config_digest.as_str());
    assert_eq!(summary["config"]["size"], image.config.len());
    assert_eq!(summary["config"]["cached"], false);
    let layers: Vec<(&str, &str, u64, bool)> = summary["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap(),
                l["compression"].as_str().unwrap(),
                l["size"].as_u64().unwrap(),
                l["cached"].as_bool().unwrap(),
            )
        })
        .collect();
    let base_size = base.compressed.len() as u64;
    let top_size = top.compressed.len() as u64;
    assert_eq!(
        layers,
        [
            (base.digest.as_str(), "gzip", base_size, false),
            (top.digest.as_str(), "zstd", top_size, false),
            (base.digest.as_str(), "gzip", base_size, false),
        ]
    );
    assert_eq!(summary["layers"][1]["media_type"], OCI_LAYER_ZSTD);
    let total = image.config.len() as u64 + base_size + top_size;
    assert_eq!(summary["size"], total);
    assert_eq!(summary["cached_size"], 0);
    assert_eq!(summary["download_size"], total);

    // It downloaded no layer, and cached nothing but the manifest; no image is recorded.
    for layer in [&base.digest, &top.digest] {
        assert_eq!(registry.blob_gets(&repository, layer), 0, "{layer} fetched");
    }
    assert_eq!(blobs_in_cache(&haul), vec![pushed.manifest_digest.clone()]);
    let ls = String::from_utf8(haul.run(&["cache", "ls"]).success().stdout).unwrap();
    assert!(
        !ls.contains(&repository),
        "inspect recorded an image:\n{ls}"
    );

    let text = inspect_text(&haul, &[&reference]);
    assert!(text.starts_with(&format!("{reference}\n")), "{text}");
    assert!(
        text.contains(&format!(
            "  manifest  {}  OCI manifest, linux/amd64\n",
            pushed.manifest_digest
        )),
        "{text}"
    );
    assert!(!text.contains("  index "), "{text}");
    assert!(text.contains("not cached"), "{text}");
    assert_eq!(text.matches(" gzip ").count(), 2, "{text}");
    assert_eq!(text.matches(" zstd ").count(), 1, "{text}");
    assert!(text.contains(": 0 B cached, "), "{text}");

    haul.export(&[&reference], "app.tar");
    let after = inspect_json(&haul, &[&reference]);
    let summary = &after[0]["image"];
    assert_eq!(summary["config"]["cached"], true);
    assert!(
        summary["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["cached"] == true),
        "{summary}"
    );
    assert_eq!(summary["cached_size"], total);
    assert_eq!(summary["download_size"], 0);
    assert!(
        inspect_text(&haul, &[&reference]).contains(" cached, 0 B to download\n"),
        "after an export everything is cached"
    );

    // Offline, from what the export recorded: the same image, all cached.
    let offline = inspect_json(&haul, &["--offline", &reference]);
    assert_eq!(offline[0]["digest"], pushed.manifest_digest.as_str());
    assert_eq!(offline[0]["image"]["download_size"], 0);
    assert_eq!(offline[0]["image"]["layers"], after[0]["image"]["layers"]);
}

#[test]
fn an_index_lists_its_platforms_and_the_one_chosen() {
    let registry = Registry::start();
    let repository = unique("test/inspect-multi");
    let amd64 = Image::runnable("amd64", vec![], Compression::Gzip, false);
    let arm64 = Image::new(
        vec![Layer::text("etc/arch", "arm64\n", Compression::Gzip)],
        false,
        "arm64",
        Some("v8"),
        "arm64",
    );
    let armv7 = Image::new(
        vec![Layer::text("etc/arch", "armv7\n", Compression::Gzip)],
        false,
        "arm",
        Some("v7"),
        "armv7",
    );
    let index_digest = registry.push_index(
        &repository,
        "1",
        &[
            (&amd64, "linux", "amd64", None),
            (&arm64, "linux", "arm64", Some("v8")),
            (&armv7, "linux", "arm", Some("v7")),
        ],
        false,
    );
    let reference = format!("{}/{repository}:1", registry.host());
    let haul = Haul::new();
    let chosen = |report: &serde_json::Value| -> Vec<(String, bool)> {
        report["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["platform"].as_str().unwrap().to_string(),
                    p["selected"].as_bool().unwrap(),
                )
            })
            .collect()
    };

    // Default: this machine's platform (the tests run on amd64).
    let json = inspect_json(&haul, &[&reference]);
    let report = &json[0];
    assert_eq!(report["digest"], index_digest.as_str());
    assert_eq!(report["media_type"], DOCKER_LIST);
    let amd64_manifest = sha256(&amd64.manifest());
    assert_eq!(
        chosen(report),
        [
            ("linux/amd64".to_string(), true),
            ("linux/arm64/v8".to_string(), false),
            ("linux/arm/v7".to_string(), false),
        ]
    );
    assert_eq!(report["platforms"][0]["digest"], amd64_manifest.as_str());
    assert_eq!(report["platforms"][0]["size"], amd64.manifest().len());
    assert_eq!(report["image"]["digest"], amd64_manifest.as_str());
    assert_eq!(report["image"]["platform"], "linux/amd64");
    assert_eq!(report["image"]["config"]["digest"], sha256(&amd64.config));

    let json = inspect_json(&haul, &["--platform", "linux/arm/v7", &reference]);
    assert_eq!(
        chosen(&json[0]),
        [
            ("linux/amd64".to_string(), false),
            ("linux/arm64/v8".to_string(), false),
            ("linux/arm/v7".to_string(), true),
        ]
    );
    assert_eq!(json[0]["image"]["digest"], sha256(&armv7.manifest()));
    assert_eq!(json[0]["image"]["platform"], "linux/arm/v7");

    let text = inspect_text(&haul, &["--platform", "linux/arm64", &reference]);
    assert!(
        text.contains(&format!(
            "  index     {index_digest}  Docker manifest list\n"
        )),
        "{text}"
    );
    let selected: Vec<&str> = text.lines().filter(|l| l.ends_with("selected")).collect();
    assert_eq!(selected.len(), 1, "{text}");
    assert!(selected[0].contains("linux/arm64/v8"), "{text}");
    assert!(
        text.contains(&format!(
            "  manifest  {}  Docker manifest, linux/arm64/v8\n",
            sha256(&arm64.manifest())
        )),
        "{text}"
    );

    haul.run(&["inspect", "--platform", "linux/s390x", &reference])
        .failure(&[
            "no matching platform linux/s390x",
            "linux/amd64, linux/arm64/v8, linux/arm/v7",
        ]);
}

#[test]
fn bad_input_is_exit_status_1_and_bad_usage_2() {
    let registry = Registry::start();
    let repository = unique("test/inspect-bad");
    let pushed = registry.push(
        &repository,
        "v1",
        &Image::runnable("x", vec![], Compression::Gzip, false),
    );
    let haul = Haul::new();
    let missing_tag = format!("{}/{repository}:v9", registry.host());
    let run = haul
        .run(&["inspect", &missing_tag])
        .failure(&["not found", ":v9"]);
    assert!(run.stdout.is_empty(), "a failed inspect printed a report");
    // One bad reference among good ones: no report at all, as export writes no tar.
    let run = haul
        .run(&["inspect", "--json", &pushed.reference, &missing_tag])
        .failure(&["not found", ":v9"]);
    assert!(run.stdout.is_empty(), "a failed inspect printed a report");
    haul.run(&["inspect", "--offline", &pushed.reference])
        .failure(&["has not been pulled", "haul pull"]);
    haul.run(&["inspect", "--platform", "linux/arm64", &pushed.reference])
        .failure(&["single-platform image for linux/amd64"]);

    for usage in [
        vec!["inspect"],
        vec!["inspect", "--no-such-option", &pushed.reference],
    ] {
        let run = haul.run(&usage);
        assert_eq!(run.status.code(), Some(2), "{usage:?}: {}", run.stderr);
    }
}
