//! Faults and hostile registries: for each, the export succeeds with a verified tar or fails
//! with a clear error; never a corrupt blob in the cache, never a tar under its final name
//! that is incomplete, nothing written outside the cache and the output path.

use crate::fault_proxy::{Fault, FaultProxy, ProxyOptions};
use crate::harness::*;
use std::path::Path;

/// Everything in the cache is where the layout says and every blob hashes to its name.
#[track_caller]
fn assert_cache_tidy(haul: &Haul) {
    haul.assert_cache_clean();
    let root = haul.cache.path();
    let allowed = [
        "blobs",
        "ingest",
        "index-v1",
        "index-v1.lock",
        "index-v1.journal",
        "transports",
        ".lock",
        "CACHEDIR.TAG",
        "quarantine",
    ];
    for entry in std::fs::read_dir(root).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            allowed.contains(&name.as_str()),
            "unexpected {name} in the cache"
        );
    }
    for entry in std::fs::read_dir(root.join("blobs")).unwrap() {
        assert_eq!(entry.unwrap().file_name(), "sha256");
    }
    // Lock files live only as long as the write they protect.
    for entry in std::fs::read_dir(root.join("ingest")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(name.ends_with(".partial"), "unexpected ingest/{name}");
    }
}

fn verified_tar(path: &Path) {
    for (name, data) in tar_entries(path) {
        if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            assert_eq!(hex_of(&sha256(&data)), hex, "{name}");
        }
    }
}

#[test]
fn blob_redirects_do_not_carry_the_authorization_header() {
    let registry = Registry::start_with_basic_auth("haul", "pw");
    // The "storage host": authorizes by itself, records what the client sent.
    let storage = FaultProxy::start_with(
        &registry.host(),
        ProxyOptions {
            basic_auth: Some(("haul".into(), "pw".into())),
        },
    );
    let front = FaultProxy::start(&registry.host());
    front.inject("/blobs/", Fault::RedirectTo(storage.host()), 100);
    let repository = unique("test/redirect");
    let image = Image::runnable(
        "redirected",
        vec![Layer::text("etc/r", "r\n", Compression::Gzip)],
        Compression::Gzip,
        false,
    );
    registry.push(&repository, "v1", &image);
    let reference = format!("{}/{repository}:v1", front.host());

    let haul = Haul::new();
    haul.run_stdin(
        &[
            "export",
            &reference,
            "-o",
            "out.tar",
            "-u",
            "haul",
            "--password-stdin",
        ],
        "pw",
    )
    .success();
    verified_tar(&haul.workdir.path().join("out.tar"));
    let at_front = front.blob_requests();
    assert_eq!(at_front.len(), 3);
    assert!(
        at_front.iter().all(|r| r.authorization && r.status == 307),
        "{at_front:?}"
    );
    let at_storage = storage.blob_requests();
    assert_eq!(at_storage.len(), 3);
    assert!(
        at_storage.iter().all(|r| !r.authorization),
        "Authorization followed the redirect to another host: {at_storage:?}"
    );
}

#[test]
fn a_stalled_transfer_times_out_and_resumes() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry.host());
    let repository = unique("test/stall");
    let big = Layer::random("data/b", 2 << 20, 11);
    let image = Image::runnable("stall", vec![big.clone()], Compression::Gzip, false);
    registry.push(&repository, "v1", &image);
    proxy.inject(hex_of(&big.digest), Fault::StallAfter(500_000), 1);
    let haul = Haul::new();
    let reference = format!("{}/{repository}:v1", proxy.host());
    haul.run(&[
        "--stall-timeout",
        "2",
        "export",
        &reference,
        "-o",
        "out.tar",
    ])
    .success();
    let requests: Vec<_> = proxy
        .blob_requests()
        .into_iter()
        .filter(|r| r.path.ends_with(&big.digest))
        .collect();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[1].range.as_deref(), Some("bytes=500000-"));
    verified_tar(&haul.workdir.path().join("out.tar"));
    assert_cache_tidy(&haul);
}

#[test]
fn flipped_bytes_are_caught_and_nothing_is_kept() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry.host());
    let repository = unique("test/flip");
    let layer = Layer::random("data/f", 300_000, 12);
    let image = Image::runnable("flip", vec![layer.clone()], Compression::Gzip, false);
    registry.push(&repository, "v1", &image);
    proxy.inject(hex_of(&layer.digest), Fault::FlipByteAt(123_456), 1);
    let haul = Haul::new();
    let reference = format!("{}/{repository}:v1", proxy.host());
    haul.run(&["export", &reference, "-o", "out.tar"])
        .failure(&["digest mismatch", &layer.digest]);
    assert!(haul.workdir_files().is_empty());
    assert!(
        haul.partials().is_empty(),
        "altered bytes are not kept for resuming"
    );
    assert_cache_tidy(&haul);
    // The fault was on the way, not in the registry: the next run succeeds.
    haul.export(&[&reference], "out.tar");
    verified_tar(&haul.workdir.path().join("out.tar"));
}

#[test]
fn a_body_shorter_or_longer_than_declared_is_refused() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry.host());
    let repository = unique("test/length");
    let image = Image::runnable(
        "length",
        vec![Layer::text("etc/l", "l\n", Compression::Gzip)],
        Compression::Gzip,
        false,
    );
    let pushed = registry.push(&repository, "v1", &image);
    // A manifest that declares another size for a layer than the registry serves.
    for declared in [10u64, 1 << 40] {
        let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest()).unwrap();
        manifest["layers"][1]["size"] = serde_json::json!(declared);
        proxy.clear();
        proxy.inject(
            "/manifests/v1",
            Fault::Respond {
                status: 200,
                content_type: DOCKER_MANIFEST.into(),
                body: serde_json::to_vec(&manifest).unwrap(),
            },
            1,
        );
        let haul = Haul::new();
        let reference = format!("{}/{repository}:v1", proxy.host());
        haul.run(&["export", &reference, "-o", "out.tar"])
            .failure(&[&pushed.layer_digests[1], &format!("declares {declared}")]);
        assert!(haul.workdir_files().is_empty());
        assert_cache_tidy(&haul);
    }
}

/// Serves `body` as the manifest of `tag` through the proxy and expects a clear failure.
#[track_caller]
fn hostile_manifest(
    proxy: &FaultProxy,
    repository: &str,
    content_type: &str,
    body: Vec<u8>,
    needles: &[&str],
) {
    proxy.clear();
    proxy.inject(
        "/manifests/",
        Fault::Respond {
            status: 200,
            content_type: content_type.into(),
            body,
        },
        10,
    );
    let haul = Haul::new();
    let reference = format!("{}/{repository}:v1", proxy.host());
    haul.run(&["export", &reference, "-o", "out.tar"])
        .failure(needles);
    assert!(
        haul.workdir_files().is_empty(),
        "{:?}",
        haul.workdir_files()
    );
    assert_cache_tidy(&haul);
    // Where `blobs/sha256/../../NAME` or one level further would land.
    for dir in [haul.cache.path(), haul.cache.path().parent().unwrap()] {
        assert!(
            !dir.join(ESCAPE_NAME).exists(),
            "a digest escaped into a path"
        );
    }
}

/// The file name a hostile digest tries to reach: unlikely to exist for any other reason.
const ESCAPE_NAME: &str = "haul-escaped-digest";

#[test]
fn hostile_manifests_and_indexes() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry.host());
    let repository = unique("test/hostile");
    let image = Image::runnable("hostile", vec![], Compression::Gzip, true);
    let pushed = registry.push(&repository, "v1", &image);
    let manifest: serde_json::Value = serde_json::from_slice(&image.manifest()).unwrap();
    let with_config_digest = |digest: &str| {
        let mut m = manifest.clone();
        m["config"]["digest"] = serde_json::json!(digest);
        serde_json::to_vec(&m).unwrap()
    };
    let hex = hex_of(&pushed.config_digest);

    hostile_manifest(
        &proxy,
        &repository,
        OCI_MANIFEST,
        with_config_digest(&format!("sha256:../../{ESCAPE_NAME}")),
        &["invalid digest"],
    );
    hostile_manifest(
        &proxy,
        &repository,
        OCI_MANIFEST,
        with_config_digest(&format!("sha256:{}", hex.to_uppercase())),
        &["invalid digest"],
    );
    hostile_manifest(
        &proxy,
        &repository,
        OCI_MANIFEST,
        with_config_digest(&format!("sha256:{}", &hex[..40])),
        &["invalid digest"],
    );
    hostile_manifest(
        &proxy,
        &repository,
        OCI_MANIFEST,
        with_config_digest(&format!("sha512:{hex}{hex}")),
        &["unsupported digest algorithm"],
    );
    hostile_manifest(
        &proxy,
        &repository,
        OCI_MANIFEST,
        with_config_digest(&format!("md5:{}", &hex[..32])),
        &["invalid digest"],
    );
    let mut negative = manifest.clone();
    negative["layers"][0]["size"] = serde_json::json!(-5);
    hostile_manifest(
        &proxy,
        &repository,
        OCI_MANIFEST,
        serde_json::to_vec(&negative).unwrap(),
        &["not valid json"],
    );

    // Over 4 MiB.
    let mut huge = manifest.clone();
    huge["annotations"] = serde_json::json!({"padding": "x".repeat(5 << 20)});
    hostile_manifest(
        &proxy,
        &repository,
        OCI_MANIFEST,
        serde_json::to_vec(&huge).unwrap(),
        &["larger than"],
    );

    // An index whose entry is another index.
    let inner_index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": pushed.manifest_digest, "size": 1,
                       "platform": {"os": "linux", "architecture": "amd64"}}]
    }))
    .unwrap();
    let outer_index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_INDEX, "digest": sha256(&inner_index), "size": inner_index.len(),
                       "platform": {"os": "linux", "architecture": "amd64"}}]
    }))
    .unwrap();
    hostile_manifest(
        &proxy,
        &repository,
        OCI_INDEX,
        outer_index,
        &["nested indexes are not supported"],
    );

    // Media types that lie: a body claiming to be an index that is an image manifest.
    let mut liar = manifest.clone();
    liar["mediaType"] = serde_json::json!(OCI_INDEX);
    hostile_manifest(
        &proxy,
        &repository,
        OCI_INDEX,
        serde_json::to_vec(&liar).unwrap(),
        &["not valid json of its kind"],
    );
    hostile_manifest(
        &proxy,
        &repository,
        "application/vnd.example+json",
        b"{\"schemaVersion\":2}".to_vec(),
        &["unsupported media type"],
    );
    hostile_manifest(
        &proxy,
        &repository,
        OCI_MANIFEST,
        b"<html>oops</html>".to_vec(),
        &["not valid json"],
    );
    // Docker schema 1.
    hostile_manifest(
        &proxy,
        &repository,
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        br#"{"schemaVersion":1,"name":"x","tag":"v1","fsLayers":[]}"#.to_vec(),
        &["schema 1"],
    );

    // A manifest asked for by digest must hash to that digest.
    proxy.clear();
    proxy.inject(
        "/manifests/sha256:",
        Fault::Respond {
            status: 200,
            content_type: OCI_MANIFEST.into(),
            body: with_config_digest(&pushed.config_digest)
                .into_iter()
                .chain(*b" ")
                .collect(),
        },
        1,
    );
    let haul = Haul::new();
    let by_digest = format!("{}/{repository}@{}", proxy.host(), pushed.manifest_digest);
    haul.run(&["export", &by_digest, "-o", "out.tar"])
        .failure(&["does not match the digest"]);
    assert!(haul.workdir_files().is_empty());
}
