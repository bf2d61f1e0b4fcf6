//! The incremental cache: each byte downloaded once, cut downloads resumed, blobs shared
//! between processes, offline exports, the cache commands, retries and the rate limit.
//! Requests are counted by a proxy between haul and the real registry.

use std::time::{Duration, Instant};

use crate::fault_proxy::{Fault, FaultProxy};
use crate::harness::*;

/// A registry, a proxy in front of it, and a reference through the proxy.
struct Setup {
    registry: Registry,
    proxy: FaultProxy,
}

impl Setup {
    fn new() -> Setup {
        let registry = Registry::start();
        let proxy = FaultProxy::start(&registry.host());
        Setup { registry, proxy }
    }

    /// Pushes `image` and returns its reference through the proxy.
    fn push(&self, repository: &str, tag: &str, image: &Image) -> (String, Pushed) {
        let pushed = self.registry.push(repository, tag, image);
        (format!("{}/{repository}:{tag}", self.proxy.host()), pushed)
    }
}

fn blob_size(image: &Image, digest: &str) -> u64 {
    image
        .layers
        .iter()
        .find(|l| l.digest == digest)
        .unwrap()
        .compressed
        .len() as u64
}

#[test]
fn a_second_export_downloads_no_blob_and_v2_only_what_v1_lacked() {
    let setup = Setup::new();
    let repository = unique("test/incremental");
    let base = Layer::busybox(Compression::Gzip);
    let v1 = Image::new(
        vec![base.clone(), Layer::text("etc/v", "1\n", Compression::Gzip)],
        false,
        "amd64",
        None,
        "v1",
    );
    let v2 = Image::new(
        vec![base.clone(), Layer::text("etc/v", "2\n", Compression::Gzip)],
        false,
        "amd64",
        None,
        "v2",
    );
    let (r1, p1) = setup.push(&repository, "v1", &v1);
    let (r2, p2) = setup.push(&repository, "v2", &v2);
    let haul = Haul::new();

    haul.export(&[&r1], "v1.tar");
    assert_eq!(
        setup.proxy.blob_requests().len(),
        3,
        "config and two layers"
    );

    setup.proxy.clear();
    haul.export(&[&r1], "v1-again.tar");
    assert_eq!(
        setup.proxy.blob_requests().len(),
        0,
        "a warm export asks for no blob"
    );
    let manifests: Vec<_> = setup
        .proxy
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/manifests/"))
        .collect();
    assert_eq!(manifests.len(), 1, "only the manifest: {manifests:?}");
    assert_eq!(
        std::fs::read(haul.workdir.path().join("v1.tar")).unwrap(),
        std::fs::read(haul.workdir.path().join("v1-again.tar")).unwrap()
    );

    setup.proxy.clear();
    haul.export(&[&r2], "v2.tar");
    let fetched: Vec<String> = setup
        .proxy
        .blob_requests()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        fetched.len(),
        2,
        "v2's config and its one new layer: {fetched:?}"
    );
    assert!(fetched.iter().any(|p| p.ends_with(&p2.config_digest)));
    assert!(fetched.iter().any(|p| p.ends_with(&p2.layer_digests[1])));
    assert!(
        !fetched.iter().any(|p| p.ends_with(&p1.layer_digests[0])),
        "the shared base is not fetched again"
    );
}

#[test]
fn a_cut_download_resumes_with_a_range_request() {
    let setup = Setup::new();
    let repository = unique("test/resume");
    let big = Layer::random("data/blob", 6 << 20, 1);
    let image = Image::runnable("resume", vec![big.clone()], Compression::Gzip, false);
    let (reference, pushed) = setup.push(&repository, "v1", &image);
    let size = blob_size(&image, &big.digest);
    let cut_at: u64 = 2_000_000;
    let haul = Haul::new();

    // The connection dies at a known byte and no retry is allowed: the run fails…
    setup
        .proxy
        .inject(hex_of(&big.digest), Fault::CutAfter(cut_at), 1);
    haul.run(&["--retries", "0", "export", &reference, "-o", "out.tar"])
        .failure(&[&big.digest]);
    assert!(haul.workdir_files().is_empty(), "no tar after a failed run");
    // …and leaves exactly the bytes it received, not in blobs/.
    let partials = haul.partials();
    assert_eq!(partials.len(), 1, "{partials:?}");
    assert_eq!(std::fs::metadata(&partials[0]).unwrap().len(), cut_at);
    assert!(
        !haul
            .cache
            .path()
            .join("blobs/sha256")
            .join(hex_of(&big.digest))
            .exists()
    );

    // The next run asks only for the rest.
    setup.proxy.clear();
    let tar = haul.export(&[&reference], "out.tar");
    let requests: Vec<_> = setup
        .proxy
        .blob_requests()
        .into_iter()
        .filter(|r| r.path.ends_with(&big.digest))
        .collect();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        requests[0].range.as_deref(),
        Some(format!("bytes={cut_at}-").as_str())
    );
    assert_eq!(requests[0].status, 206);
    assert_eq!(
        requests[0].body_bytes,
        size - cut_at,
        "only the missing bytes are fetched"
    );
    assert!(haul.partials().is_empty());
    haul.assert_cache_clean();
    let layers = tar_json(&tar, "manifest.json")[0]["Layers"].clone();
    assert_eq!(layers.as_array().unwrap().len(), pushed.layer_digests.len());

    // With retries (the default) a cut is resumed within the same run.
    let fresh = Haul::new();
    setup.proxy.clear();
    setup
        .proxy
        .inject(hex_of(&big.digest), Fault::CutAfter(cut_at), 1);
    fresh.export(&[&reference], "out.tar");
    let fetched = setup.proxy.bytes_of(&big.digest);
    assert_eq!(
        fetched, size,
        "cut once, resumed: every byte fetched exactly once"
    );
}

#[test]
fn a_registry_that_ignores_range_makes_haul_start_over() {
    let setup = Setup::new();
    let repository = unique("test/norange");
    let big = Layer::random("data/blob", 3 << 20, 2);
    let image = Image::runnable("norange", vec![big.clone()], Compression::Gzip, false);
    let (reference, _) = setup.push(&repository, "v1", &image);
    let size = blob_size(&image, &big.digest);
    let haul = Haul::new();
    setup
        .proxy
        .inject(hex_of(&big.digest), Fault::CutAfter(1_000_000), 1);
    haul.run(&["--retries", "0", "export", &reference, "-o", "out.tar"])
        .failure(&[]);
    assert_eq!(haul.partials().len(), 1);

    setup.proxy.clear();
    setup
        .proxy
        .inject(hex_of(&big.digest), Fault::IgnoreRange, 1);
    let tar = haul.export(&[&reference], "out.tar");
    let request = setup
        .proxy
        .blob_requests()
        .into_iter()
        .find(|r| r.path.ends_with(&big.digest))
        .unwrap();
    assert!(request.range.is_some(), "haul asked for a range");
    assert_eq!(request.status, 200, "the registry ignored it");
    assert_eq!(request.body_bytes, size);
    haul.assert_cache_clean();
    assert!(tar.exists());
}

#[test]
fn two_processes_download_a_shared_blob_once() {
    let setup = Setup::new();
    let repository = unique("test/shared");
    let shared = Layer::random("data/shared", 4 << 20, 3);
    let a = Image::runnable(
        "a",
        vec![
            shared.clone(),
            Layer::text("etc/who", "a\n", Compression::Gzip),
        ],
        Compression::Gzip,
        false,
    );
    let b = Image::runnable(
        "b",
        vec![
            shared.clone(),
            Layer::text("etc/who", "b\n", Compression::Gzip),
        ],
        Compression::Gzip,
        false,
    );
    let (ra, pa) = setup.push(&repository, "a", &a);
    let (rb, pb) = setup.push(&repository, "b", &b);
    let haul = Haul::new();
    // Slow enough (2 MiB/s each) that the two runs overlap on the shared blob.
    let spawn = |reference: &str, out: &str| {
        haul.command()
            .args(["--limit-rate", "2M", "export", reference, "-o", out])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = spawn(&ra, "a.tar");
    let second = spawn(&rb, "b.tar");
    for child in [first, second] {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let downloads: Vec<_> = setup
        .proxy
        .blob_requests()
        .into_iter()
        .filter(|r| r.path.ends_with(&shared.digest))
        .collect();
    assert_eq!(
        downloads.len(),
        1,
        "the shared blob is downloaded once: {downloads:?}"
    );
    assert_no_lock_files(&haul);

    let engine = Engine::Classic;
    for (_, tar, who) in [(&pa, "a.tar", "a\n"), (&pb, "b.tar", "b\n")] {
        let tar = haul.workdir.path().join(tar);
        let loaded = engine.load(&tar);
        let proxied = loaded
            .lines()
            .find_map(|l| l.strip_prefix("Loaded image: "))
            .unwrap()
            .trim()
            .to_string();
        assert_eq!(engine.run(&proxied, &["/bin/cat", "/etc/who"]), who);
        engine.remove(&proxied);
    }
}

#[test]
fn offline_exports_come_from_the_cache_alone() {
    let setup = Setup::new();
    let repository = unique("test/offline");
    let image = Image::runnable(
        "offline",
        vec![Layer::text("etc/o", "o\n", Compression::Gzip)],
        Compression::Gzip,
        true,
    );
    let (reference, pushed) = setup.push(&repository, "v1", &image);
    let haul = Haul::new();

    // Never pulled: a clear error, no network needed to say so.
    haul.run(&["export", "--offline", &reference, "-o", "x.tar"])
        .failure(&["has not been pulled", &reference]);
    haul.run(&["pull", &reference]).success();
    assert!(haul.workdir_files().is_empty(), "pull writes no tar");
    let online = haul.export(&[&reference], "online.tar");

    drop(setup); // registry and proxy gone
    let offline = haul.export(&["--offline", &reference], "offline.tar");
    assert_eq!(
        std::fs::read(online).unwrap(),
        std::fs::read(offline).unwrap()
    );
    // By digest too.
    let by_digest = format!(
        "{}@{}",
        reference.rsplit_once(':').unwrap().0,
        pushed.manifest_digest
    );
    haul.export(&["--offline", &by_digest], "digest.tar");

    // A blob missing from the cache is named.
    let layer = &pushed.layer_digests[1];
    let path = haul.cache.path().join("blobs/sha256").join(hex_of(layer));
    std::fs::remove_file(path).unwrap();
    haul.run(&["export", "--offline", &reference, "-o", "y.tar"])
        .failure(&[layer, "not in the cache"]);
    assert!(!haul.workdir.path().join("y.tar").exists());
}

#[test]
fn a_lost_or_damaged_index_is_rebuilt_from_the_blobs() {
    let setup = Setup::new();
    let repository = unique("test/reindex");
    let image = Image::runnable("reindex", vec![], Compression::Gzip, false);
    let (reference, pushed) = setup.push(&repository, "v1", &image);
    let haul = Haul::new();
    haul.export(&[&reference], "a.tar");
    // A run only appends to the index's journal; the next reader folds it in.
    assert!(haul.cache.path().join("index-v1.journal").is_file());
    haul.run(&["cache", "ls"]).success();
    assert!(!haul.cache.path().join("index-v1.journal").exists());
    let index = haul.cache.path().join("index-v1");
    for entry in walk(&index) {
        std::fs::write(entry, b"not a database").unwrap();
    }
    let listing = String::from_utf8(haul.run(&["cache", "ls"]).success().stdout).unwrap();
    assert!(
        listing.contains(&hex_of(&pushed.layer_digests[0])[..12]),
        "{listing}"
    );
    std::fs::remove_dir_all(&index).unwrap();
    setup.proxy.clear();
    haul.export(&[&reference], "b.tar");
    assert_eq!(
        setup.proxy.blob_requests().len(),
        0,
        "blobs/ stays the source of truth"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn cache_ls_du_verify_prune_rm() {
    let setup = Setup::new();
    let repository = unique("test/commands");
    let base = Layer::busybox(Compression::Gzip);
    let v1 = Image::new(
        vec![base.clone(), Layer::random("data/one", 1 << 20, 4)],
        false,
        "amd64",
        None,
        "v1",
    );
    let v2 = Image::new(
        vec![base.clone(), Layer::random("data/two", 1 << 20, 5)],
        false,
        "amd64",
        None,
        "v2",
    );
    let (r1, p1) = setup.push(&repository, "v1", &v1);
    let (r2, p2) = setup.push(&repository, "v2", &v2);
    let haul = Haul::new();
    haul.run(&["pull", &r1, &r2]).success();

    let stdout = |args: &[&str]| String::from_utf8(haul.run(args).success().stdout).unwrap();
    let listing = stdout(&["cache", "ls"]);
    assert!(listing.contains(&r1) && listing.contains(&r2), "{listing}");
    assert!(listing.contains(&p1.manifest_digest[..19]), "{listing}");
    // A manifest shows its media type, read from its bytes.
    let manifest_line = listing
        .lines()
        .find(|l| l.starts_with(&p1.manifest_digest[..19]))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(manifest_line.contains("manifest"), "{listing}");
    // A pinned reference is long: the columns still line up.
    let pinned = format!("{r1}@{}", p1.manifest_digest);
    haul.run(&["pull", &pinned]).success();
    let listing = stdout(&["cache", "ls"]);
    let rows: Vec<&str> = listing
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    let column = |line: &str| line.rfind("sha256:").unwrap();
    let first = column(rows[1]);
    assert!(rows[1..].iter().all(|r| column(r) == first), "{listing}");
    assert!(rows[0].find("MANIFEST").unwrap() == first, "{listing}");
    haul.run(&["cache", "rm", &pinned]).success();
    let du = stdout(&["cache", "du"]);
    assert!(du.contains("blobs") && du.contains("MiB"), "{du}");
    assert!(stdout(&["cache", "verify"]).starts_with("ok: 7 blobs"));

    // A blob damaged on disk is found, moved aside, and fetched again by the next run.
    let victim = haul
        .cache
        .path()
        .join("blobs/sha256")
        .join(hex_of(&p1.layer_digests[1]));
    let mut permissions = std::fs::metadata(&victim).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(&victim, permissions).unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    haul.run(&["cache", "verify"])
        .failure(&["1 of 7 blobs were damaged"]);
    assert!(!victim.exists());
    assert!(
        haul.cache
            .path()
            .join("quarantine")
            .join(hex_of(&p1.layer_digests[1]))
            .exists()
    );
    haul.assert_cache_clean();
    setup.proxy.clear();
    haul.export(&[&r1], "v1.tar");
    assert_eq!(
        setup.proxy.blob_requests().len(),
        1,
        "only the damaged blob is fetched again"
    );

    // rm: v1's own blobs go, the shared base stays for v2.
    let removed = stdout(&["cache", "rm", &r1]);
    assert!(
        removed.contains("removed 1 image records and 3 blobs"),
        "{removed}"
    );
    let blobs = haul.cache.path().join("blobs/sha256");
    assert!(!blobs.join(hex_of(&p1.layer_digests[1])).exists());
    assert!(
        blobs.join(hex_of(&p2.layer_digests[0])).exists(),
        "the shared base stays"
    );
    haul.run(&["cache", "rm", &r1])
        .failure(&["not in the cache"]);

    // prune --max-size keeps the most recently used within the size.
    std::thread::sleep(Duration::from_millis(1100));
    haul.run(&["pull", &r1]).success(); // r1 is now more recent than r2's own layer
    let pruned = stdout(&["cache", "prune", "--max-size", "2M"]);
    assert!(pruned.contains("removed"), "{pruned}");
    let total: u64 = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(total <= 2 << 20, "{total} bytes left");
    assert!(
        !blobs.join(hex_of(&p2.layer_digests[1])).exists(),
        "the least recently used went first"
    );
    assert!(
        blobs.join(hex_of(&p1.layer_digests[1])).exists(),
        "the most recently used stayed"
    );

    // --older-than, and the argument checks.
    std::thread::sleep(Duration::from_millis(1100));
    stdout(&["cache", "prune", "--older-than", "1s"]);
    assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 0);
    let usage = haul.run(&["cache", "prune"]);
    assert_eq!(
        usage.status.code(),
        Some(2),
        "prune needs a policy: {}",
        usage.stderr
    );
    let usage = haul.run(&["cache", "prune", "--max-size", "lots"]);
    assert_eq!(usage.status.code(), Some(2), "{}", usage.stderr);
}

#[test]
fn prune_waits_for_a_running_export() {
    let setup = Setup::new();
    let repository = unique("test/busy");
    let image = Image::runnable(
        "busy",
        vec![Layer::random("data/slow", 3 << 20, 6)],
        Compression::Gzip,
        false,
    );
    let (reference, _) = setup.push(&repository, "v1", &image);
    let haul = Haul::new();
    let export = haul
        .command()
        .args(["--limit-rate", "1M", "export", &reference, "-o", "busy.tar"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let the export take the cache's shared lock.
    let deadline = Instant::now() + Duration::from_secs(20);
    while haul.partials().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let prune = haul.run(&["cache", "prune", "--all"]).success();
    let output = export.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        prune.stderr.contains("waiting for running haul exports"),
        "{}",
        prune.stderr
    );
    // The export finished whole before prune removed anything.
    let tar = haul.workdir.path().join("busy.tar");
    assert_eq!(
        tar_json(&tar, "manifest.json")[0]["Layers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    for (name, data) in tar_entries(&tar) {
        if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            assert_eq!(hex_of(&sha256(&data)), hex);
        }
    }
}

#[test]
fn retries_5xx_and_429_then_gives_up_with_a_clear_error() {
    let setup = Setup::new();
    let repository = unique("test/retry");
    let image = Image::runnable(
        "retry",
        vec![Layer::text("etc/r", "r\n", Compression::Gzip)],
        Compression::Gzip,
        false,
    );
    let (reference, pushed) = setup.push(&repository, "v1", &image);
    let victim = hex_of(&pushed.layer_digests[1]).to_string();

    let haul = Haul::new();
    setup.proxy.inject(&victim, Fault::Status(503), 2);
    haul.export(&[&reference], "a.tar");
    let attempts = setup
        .proxy
        .blob_requests()
        .iter()
        .filter(|r| r.path.contains(&victim))
        .count();
    assert_eq!(attempts, 3, "two 503s, then success");

    let haul = Haul::new();
    setup.proxy.clear();
    setup.proxy.inject(
        &victim,
        Fault::TooManyRequests {
            retry_after_secs: 2,
        },
        1,
    );
    let started = Instant::now();
    haul.export(&[&reference], "b.tar");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After was not honoured"
    );

    let haul = Haul::new();
    setup.proxy.clear();
    setup.proxy.inject(&victim, Fault::Status(502), 10);
    haul.run(&["--retries", "1", "export", &reference, "-o", "c.tar"])
        .failure(&["502", &pushed.layer_digests[1]]);
    let seen: Vec<_> = setup
        .proxy
        .blob_requests()
        .into_iter()
        .filter(|r| r.path.contains(&victim))
        .collect();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert!(haul.workdir_files().is_empty());
}

#[test]
fn limit_rate_caps_the_downloads() {
    let setup = Setup::new();
    let repository = unique("test/rate");
    let image = Image::runnable(
        "rate",
        vec![Layer::random("data/r", 3 << 20, 7)],
        Compression::Gzip,
        false,
    );
    let (reference, _) = setup.push(&repository, "v1", &image);
    let haul = Haul::new();
    let started = Instant::now();
    haul.run(&[
        "--limit-rate",
        "1M",
        "export",
        &reference,
        "-o",
        "rate.tar",
        "--jobs",
        "4",
    ])
    .success();
    // About 4.1 MiB in all at 1 MiB/s, less the 0.25 s burst: never under 3.5 s.
    assert!(
        started.elapsed() >= Duration::from_millis(3500),
        "took only {:?}",
        started.elapsed()
    );
}

#[test]
fn ctrl_c_and_kill_9_leave_a_partial_download_that_the_next_run_resumes() {
    let setup = Setup::new();
    let repository = unique("test/interrupt");
    let big = Layer::random("data/big", 4 << 20, 8);
    let image = Image::runnable("interrupted", vec![big.clone()], Compression::Gzip, false);
    let (reference, _) = setup.push(&repository, "v1", &image);
    let size = blob_size(&image, &big.digest);
    let haul = Haul::new();
    for signal in ["-INT", "-KILL"] {
        setup.proxy.clear();
        let child = haul
            .command()
            .args(["--limit-rate", "1M", "export", &reference, "-o", "out.tar"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until part of the big blob is on disk, then interrupt.
        let deadline = Instant::now() + Duration::from_secs(30);
        let partial = haul
            .cache
            .path()
            .join("ingest")
            .join(format!("{}.partial", hex_of(&big.digest)));
        while std::fs::metadata(&partial).map_or(0, |m| m.len()) < 1_000_000
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let killed = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let output = child.wait_with_output().unwrap();
        assert!(!output.status.success());
        if signal == "-INT" {
            assert_eq!(
                output.status.code(),
                Some(130),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                haul.workdir_files().is_empty(),
                "Ctrl-C removes the temporary tar: {:?}",
                haul.workdir_files()
            );
        }
        assert!(
            !haul.workdir.path().join("out.tar").exists(),
            "no tar under its final name"
        );
        let kept = std::fs::metadata(&partial).unwrap().len();
        assert!(
            kept >= 1_000_000 && kept < size,
            "partial file holds {kept} bytes"
        );

        setup.proxy.clear();
        haul.export(&[&reference], "out.tar");
        let fetched = setup.proxy.bytes_of(&big.digest);
        assert_eq!(
            fetched,
            size - kept,
            "{signal}: the rerun fetched only the missing bytes"
        );
        haul.assert_cache_clean();
        // Start over for the next signal.
        haul.run(&["cache", "prune", "--all"]).success();
        std::fs::remove_file(haul.workdir.path().join("out.tar")).unwrap();
    }
}

/// `cache rm`, `cache ls` and `cache prune` know what an `--all-platforms` record needs: its
/// index, every platform's manifest, the configs and layers, even when another record shares
/// them.
#[test]
fn the_cache_commands_know_what_an_all_platforms_record_needs() {
    let registry = Registry::start();
    let repository = unique("test/gc");
    let image = Image::runnable(
        "gc",
        vec![Layer::text("etc/g", "g\n", Compression::Gzip)],
        Compression::Gzip,
        true,
    );
    // `idx` is an index whose one entry is `idx-amd64`'s manifest.
    registry.push_index(
        &repository,
        "idx",
        &[(&image, "linux", "amd64", None)],
        true,
    );
    let all = format!("{}/{repository}:idx", registry.host());
    let one = format!("{}/{repository}:idx-amd64", registry.host());
    let haul = Haul::new();
    let export_all = ["export", &all, "--all-platforms", "--format", "oci"];
    haul.run(&[&export_all[..], &["-o", "all.tar"]].concat())
        .success();
    haul.run(&["export", &one, "-o", "one.tar"]).success();

    let listing = String::from_utf8(haul.run(&["cache", "ls"]).success().stdout).unwrap();
    let line = listing
        .lines()
        .find(|l| l.starts_with(&all) && l.split_whitespace().nth(1) == Some("all"))
        .unwrap_or_else(|| panic!("no all-platforms record:\n{listing}"));
    assert!(line.trim_end().ends_with("yes"), "not complete:\n{listing}");
    assert!(!line.contains(" ? "), "no size:\n{listing}");

    // Removing the single-platform record keeps what the index record still needs.
    let removed = String::from_utf8(haul.run(&["cache", "rm", &one]).success().stdout).unwrap();
    assert!(
        removed.contains("removed 1 image records and 0 blobs"),
        "{removed}"
    );
    haul.run(&[&export_all[..], &["--offline", "-o", "again.tar"]].concat())
        .success();
    // A prune that removes nothing keeps the record, complete.
    haul.run(&["cache", "prune", "--older-than", "1d"])
        .success();
    let listing = String::from_utf8(haul.run(&["cache", "ls"]).success().stdout).unwrap();
    assert!(listing.contains(&all), "{listing}");
    // Removing it too leaves no blob: index, manifest, config and two layers.
    let removed = String::from_utf8(haul.run(&["cache", "rm", &all]).success().stdout).unwrap();
    assert!(
        removed.contains("removed 1 image records and 5 blobs"),
        "{removed}"
    );
    assert_eq!(
        std::fs::read_dir(haul.cache.path().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_no_lock_files(&haul);
}

/// Lock files live only as long as the write they protect.
#[track_caller]
fn assert_no_lock_files(haul: &Haul) {
    let locks: Vec<String> = std::fs::read_dir(haul.cache.path().join("ingest"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".lock"))
        .collect();
    assert!(locks.is_empty(), "lock files left in ingest/: {locks:?}");
}

/// A cache that holds every platform (`pull --all-platforms`) serves any one of them offline,
/// the default platform and an explicit one, and the whole index.
#[test]
fn an_all_platforms_pull_serves_one_platform_offline() {
    let registry = Registry::start();
    let repository = unique("test/all-offline");
    let amd64 = Image::runnable("amd64 offline", vec![], Compression::Gzip, true);
    let arm64 = Image::new(
        vec![Layer::text("etc/arch", "arm64\n", Compression::Gzip)],
        true,
        "arm64",
        Some("v8"),
        "arm64 offline",
    );
    registry.push_index(
        &repository,
        "multi",
        &[
            (&amd64, "linux", "amd64", None),
            (&arm64, "linux", "arm64", Some("v8")),
        ],
        true,
    );
    let reference = format!("{}/{repository}:multi", registry.host());
    let haul = Haul::new();
    haul.run(&["pull", &reference, "--all-platforms"]).success();
    drop(registry);
    let manifest_of = |tar: &std::path::Path| {
        tar_json(tar, "index.json")["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let default = haul.export(&["--offline", &reference], "default.tar");
    assert_eq!(manifest_of(&default), sha256(&amd64.manifest()));
    let arm = haul.export(
        &["--offline", &reference, "--platform", "linux/arm64"],
        "arm64.tar",
    );
    assert_eq!(manifest_of(&arm), sha256(&arm64.manifest()));
    haul.export(
        &[
            "--offline",
            &reference,
            "--all-platforms",
            "--format",
            "oci",
        ],
        "all.tar",
    );
    // A platform the index lacks is still an error naming what it offers.
    haul.run(&[
        "export",
        "--offline",
        &reference,
        "--platform",
        "linux/s390x",
        "-o",
        "x.tar",
    ])
    .failure(&["linux/s390x"]);
}

/// What a push keeps for later runs (where blobs are, for mounts; layers it compressed) is
/// part of the cache: `cache du` counts it and `cache prune --all` removes it.
#[test]
fn prune_knows_upload_records_and_compressed_forms() {
    let registry = Registry::start();
    let repository = unique("test/derived");
    let pushed = registry.push_app(&repository, "v1", "derived");
    let haul = Haul::new();
    // The classic layout holds uncompressed layers: a push compresses them first.
    let tar = haul.export(&[&pushed.reference, "--format", "docker-v1"], "v1.tar");
    let dest = Registry::start();
    haul.run(&["push", tar.to_str().unwrap(), &dest.host()])
        .success();
    let files_under = |name: &str| -> usize {
        let mut count = 0;
        let mut pending = vec![haul.cache.path().join(name)];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.file_type().unwrap().is_dir() {
                    pending.push(entry.path());
                } else {
                    count += 1;
                }
            }
        }
        count
    };
    assert!(
        files_under("compressed") > 0,
        "the push compressed its layers"
    );
    assert!(
        files_under("uploads") > 0,
        "the push remembered where its blobs are"
    );
    let du = String::from_utf8(haul.run(&["cache", "du"]).success().stdout).unwrap();
    assert!(
        du.contains("upload records") && du.contains("compressed forms"),
        "{du}"
    );
    let pruned =
        String::from_utf8(haul.run(&["cache", "prune", "--all"]).success().stdout).unwrap();
    assert!(
        pruned.contains("upload records and compressed forms"),
        "{pruned}"
    );
    assert_eq!(files_under("compressed"), 0);
    assert_eq!(files_under("uploads"), 0);
}
