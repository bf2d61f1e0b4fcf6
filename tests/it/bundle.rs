//! Bundles that engines write. `docker save` from the containerd image store of a
//! multi-platform image pulled for one platform writes the whole index but only that
//! platform's blobs: `haul verify` says which platforms it holds and succeeds, `inspect`
//! lists it, `haul load` loads it, and `push` refuses to push the index (naming what is
//! absent) but pushes the platform it holds with `--platform`, its manifest digest kept.

use crate::harness::*;

#[test]
fn a_containerd_store_save_of_one_platform_of_an_index() {
    let registry = Registry::start();
    let repository = unique("bundle/partial");
    let amd64 = Image::runnable(
        "amd64 of two",
        vec![Layer::text("etc/arch", "amd64\n", Compression::Gzip)],
        Compression::Gzip,
        true,
    );
    let arm64 = Image::new(
        vec![Layer::text("etc/arch", "arm64\n", Compression::Gzip)],
        true,
        "arm64",
        Some("v8"),
        "arm64 of two",
    );
    let index_digest = registry.push_index(
        &repository,
        "multi",
        &[
            (&amd64, "linux", "amd64", None),
            (&arm64, "linux", "arm64", Some("v8")),
        ],
        true,
    );
    let amd64_manifest = sha256(&amd64.manifest());
    let arm64_manifest = sha256(&arm64.manifest());
    let reference = format!("{}/{repository}:multi", registry.host());
    let engine = Engine::ContainerdStore;
    let _cleanup = engine.cleanup(&[&reference]);
    let _classic_cleanup = Engine::Classic.cleanup(&[&reference]);
    engine.pull(&reference);
    let haul = Haul::new();
    let saved = haul.workdir.path().join("saved.tar");
    let output = output_within(
        engine
            .docker()
            .args(["save", "-o", saved.to_str().unwrap(), &reference]),
        None,
        COMMAND_TIMEOUT,
    );
    assert!(
        output.status.success(),
        "docker save: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let saved_arg = saved.to_str().unwrap();

    // What the engine wrote: the index and amd64's manifest, not arm64's.
    let names: Vec<String> = tar_entries(&saved).into_iter().map(|(n, _)| n).collect();
    let has = |digest: &str| names.iter().any(|n| n.ends_with(hex_of(digest)));
    assert!(has(&index_digest), "the index is in the tar: {names:?}");
    assert!(has(&amd64_manifest), "{names:?}");
    assert!(!has(&arm64_manifest), "{names:?}");

    // verify: whole, and says what it holds and what not.
    let run = haul.run(&["verify", saved_arg]).success();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(stdout.starts_with("ok: 1 image"), "{stdout}");
    assert!(
        stdout.contains("partial:")
            && stdout.contains("linux/amd64")
            && stdout.contains("linux/arm64/v8"),
        "{stdout}"
    );
    let run = haul.run(&["verify", "--json", saved_arg]).success();
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["ok"], true);
    let image = &report["contents"]["images"][0];
    assert_eq!(image["digest"], index_digest.as_str());
    assert_eq!(
        image["absent_platforms"],
        serde_json::json!(["linux/arm64/v8"])
    );
    assert_eq!(image["platforms"][0]["platform"], "linux/amd64");
    assert_eq!(image["platforms"][0]["manifest"], amd64_manifest.as_str());

    // inspect FILE: the bundle, not a reference (no network asked).
    let run = haul.run(&["inspect", saved_arg]).success();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(stdout.contains(&reference), "{stdout}");
    assert!(
        stdout.contains("not held") && stdout.contains("linux/arm64/v8"),
        "{stdout}"
    );
    let run = haul.run(&["inspect", "--json", saved_arg]).success();
    let listing: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(listing[0]["file"], saved_arg);
    assert_eq!(listing[0]["images"][0]["names"][0], reference.as_str());

    // load: into the containerd store, and into the classic store (manifest.json).
    engine.remove(&reference);
    haul.run(&["load", "-H", CONTAINERD_STORE_HOST, saved_arg])
        .success();
    assert_eq!(
        engine.run(&reference, &["cat", "/etc/arch"]).trim(),
        "amd64"
    );
    haul.run(&["load", saved_arg]).success();
    assert_eq!(
        Engine::Classic
            .run(&reference, &["cat", "/etc/arch"])
            .trim(),
        "amd64"
    );

    // push: the index cannot go up without arm64; the platform it holds can.
    let dest = Registry::start();
    haul.run(&["push", saved_arg, &dest.host()])
        .failure(&["linux/arm64/v8", "--platform linux/amd64"]);
    haul.run(&["push", saved_arg, &dest.host(), "--platform", "linux/arm64"])
        .failure(&["holds", "only for linux/amd64"]);
    haul.run(&["push", saved_arg, &dest.host(), "--platform", "linux/amd64"])
        .success();
    let pushed = format!("{}/{repository}:multi", dest.host());
    let manifest = skopeo_raw(&pushed, None).expect("the tag is there");
    assert_eq!(
        sha256(&manifest),
        amd64_manifest,
        "the manifest digest is kept"
    );
}
