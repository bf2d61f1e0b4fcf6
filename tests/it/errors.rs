//! Bad input and failing registries: each a clear message, exit status 1, no tar (nor a
//! partial one) left behind, and nothing unverified in the cache.

use crate::harness::*;

#[track_caller]
fn assert_nothing_left(haul: &Haul) {
    assert_eq!(
        haul.workdir_files(),
        Vec::<String>::new(),
        "a failed export left files behind"
    );
    haul.assert_cache_clean();
}

#[test]
fn unknown_image_and_unknown_tag() {
    let registry = Registry::start();
    let repository = unique("test/known");
    registry.push(
        &repository,
        "v1",
        &Image::runnable("x", vec![], Compression::Gzip, false),
    );
    let haul = Haul::new();
    let missing_repo = format!("{}/test/nothing-here:v1", registry.host());
    haul.run(&["export", &missing_repo, "-o", "out.tar"])
        .failure(&["not found", "test/nothing-here"]);
    let missing_tag = format!("{}/{repository}:v9", registry.host());
    haul.run(&["export", &missing_tag, "-o", "out.tar"])
        .failure(&["not found", ":v9"]);
    // A good image beside a missing one: no tar for the good one either, nor on stdout.
    let good = format!("{}/{repository}:v1", registry.host());
    haul.run(&["export", &good, &missing_tag, "-o", "both.tar"])
        .failure(&["not found", ":v9"]);
    let run = haul
        .run(&["export", &good, &missing_tag, "-o", "-"])
        .failure(&["not found", ":v9"]);
    assert!(run.stdout.is_empty(), "a failed export wrote to stdout");
    assert_nothing_left(&haul);
}

#[test]
fn unreachable_registry() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let haul = Haul::new();
    haul.run(&[
        "--retries",
        "0",
        "export",
        &format!("127.0.0.1:{port}/a/b:1"),
        "-o",
        "out.tar",
    ])
    .failure(&["could not connect", &format!("127.0.0.1:{port}")]);
    assert_nothing_left(&haul);

    // Refused connections are retried, each retry one short plain line (stderr is a pipe
    // here: no colour codes, no log prefixes).
    let run = haul
        .run(&[
            "--retries",
            "1",
            "export",
            &format!("127.0.0.1:{port}/a/b:1"),
            "-o",
            "out.tar",
        ])
        .failure(&["could not connect"]);
    let retries: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("retrying"))
        .collect();
    assert_eq!(retries.len(), 1, "{}", run.stderr);
    assert!(
        retries[0].starts_with("warning: cannot connect to 127.0.0.1:"),
        "{}",
        run.stderr
    );
    assert!(
        !retries[0].contains("check the registry name"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains('\x1b'),
        "colour codes: {:?}",
        run.stderr
    );

    // A host name that does not resolve will not resolve later: not retried.
    let run = haul
        .run(&["export", "no-such-host.invalid/a/b:1", "-o", "out.tar"])
        .failure(&[
            "could not connect",
            "no-such-host.invalid",
            "its host name does not resolve",
        ]);
    assert!(!run.stderr.contains("retrying"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("--insecure-registry"),
        "{}",
        run.stderr
    );
    assert_nothing_left(&haul);
}

#[test]
fn invalid_references_and_platforms() {
    let haul = Haul::new();
    haul.run(&["export", "Upper/Case", "-o", "out.tar"])
        .failure(&["invalid reference", "lowercase"]);
    haul.run(&["export", "busybox@sha256:../../etc", "-o", "out.tar"])
        .failure(&["invalid reference", "digest"]);
    haul.run(&["export", "busybox:bad/tag", "-o", "out.tar"])
        .failure(&["invalid reference"]);
    haul.run(&["export", "busybox", "--platform", "linux", "-o", "out.tar"])
        .failure(&["invalid platform"]);
    assert_nothing_left(&haul);
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() {
    let registry = Registry::start();
    let repository = unique("test/corrupt");
    let image = Image::runnable(
        "x",
        vec![Layer::text("etc/data", "precious\n", Compression::Gzip)],
        Compression::Gzip,
        false,
    );
    let pushed = registry.push(&repository, "v1", &image);
    // A hostile (or broken) registry: same length, other bytes.
    let victim = &pushed.layer_digests[1];
    let path = registry.blob_data_path(victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let haul = Haul::new();
    haul.run(&["export", &pushed.reference, "-o", "out.tar"])
        .failure(&["digest mismatch", victim, &pushed.reference]);
    assert_nothing_left(&haul);
    assert!(
        !haul
            .cache
            .path()
            .join("blobs/sha256")
            .join(hex_of(victim))
            .exists(),
        "the corrupt blob must not be in the cache"
    );
    assert!(
        haul.partials().is_empty(),
        "a corrupt download must not be kept for resuming"
    );
}

#[test]
fn a_single_platform_image_of_another_platform() {
    let registry = Registry::start();
    let repository = unique("test/arm-only");
    let image = Image::new(
        vec![Layer::text("etc/x", "x\n", Compression::Gzip)],
        false,
        "arm64",
        Some("v8"),
        "arm",
    );
    let pushed = registry.push(&repository, "v1", &image);
    let haul = Haul::new();
    haul.run(&[
        "export",
        &pushed.reference,
        "--platform",
        "linux/amd64",
        "-o",
        "out.tar",
    ])
    .failure(&["linux/arm64", "not linux/amd64"]);
    assert_nothing_left(&haul);
    // Without --platform a single-platform image is taken as it is.
    haul.run(&["export", &pushed.reference, "-o", "ok.tar"])
        .success();
}

#[test]
fn a_config_whose_diff_ids_do_not_match_the_layers() {
    let registry = Registry::start();
    let repository = unique("test/broken-config");
    let mut image = Image::runnable(
        "x",
        vec![Layer::text("etc/x", "x\n", Compression::Gzip)],
        Compression::Gzip,
        false,
    );
    // The config lists only the first layer's diff_id.
    let mut config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
    config["rootfs"]["diff_ids"] = serde_json::json!([image.layers[0].diff_id]);
    image.config = serde_json::to_vec(&config).unwrap();
    let pushed = registry.push(&repository, "v1", &image);
    let haul = Haul::new();
    haul.run(&["export", &pushed.reference, "-o", "out.tar"])
        .failure(&["2 layers", "1 diff_ids"]);
    assert_nothing_left(&haul);
}

#[test]
fn usage_errors_exit_2() {
    let haul = Haul::new();
    let run = haul.run(&["export"]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    let run = haul.run(&["export", "busybox", "--jobs", "0"]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    let run = haul.run(&["export", "busybox", "--username", "me"]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    // A long option with one dash: said as such, not clap's `-- -s`.
    let run = haul.run(&["export", "busybox", "-since", "v1.tar"]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("-since: a long option takes two dashes: --since"),
        "{}",
        run.stderr
    );
}

/// An OS error is said once, not once per layer of wrapping; `-o` naming a folder puts the
/// tar in it under its default name, as `cp` does.
#[test]
fn each_cause_once_and_an_output_folder_gets_the_default_name() {
    let registry = Registry::start();
    let repository = unique("test/outdir");
    registry.push(
        &repository,
        "v1",
        &Image::runnable("x", vec![], Compression::Gzip, false),
    );
    let reference = format!("{}/{repository}:v1", registry.host());
    let haul = Haul::new();
    let run = haul
        .run(&["export", &reference, "-o", "no-such-folder/out.tar"])
        .failure(&["cannot write no-such-folder/out.tar", "os error 2"]);
    assert_eq!(
        run.stderr.matches("os error").count(),
        1,
        "the cause is repeated:\n{}",
        run.stderr
    );
    assert_nothing_left(&haul);

    std::fs::create_dir(haul.workdir.path().join("adir")).unwrap();
    haul.run(&["export", &reference, "-o", "adir"]).success();
    let expected = format!(
        "{}_{}_v1_amd64.tar",
        registry.host().replace(':', "_"),
        repository.replace('/', "_")
    );
    let written: Vec<String> = std::fs::read_dir(haul.workdir.path().join("adir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written, vec![expected]);
    // A symbolic link (or a device, or a FIFO) is not replaced by the tar, nor by a receipt.
    let dir = haul.workdir.path();
    std::fs::write(dir.join("target.txt"), "keep me\n").unwrap();
    std::os::unix::fs::symlink("target.txt", dir.join("link.tar")).unwrap();
    haul.run(&["export", &reference, "-o", "link.tar"])
        .failure(&["link.tar", "does not replace"]);
    haul.run(&["export", &reference, "-o", "x.tar", "--receipt", "link.tar"])
        .failure(&["link.tar", "does not replace"]);
    assert!(
        std::fs::symlink_metadata(dir.join("link.tar"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("target.txt")).unwrap(),
        "keep me\n"
    );
    // Two images cannot both take a default name: the message says how to name the tar.
    registry.push(
        &repository,
        "v2",
        &Image::runnable("y", vec![], Compression::Gzip, false),
    );
    let second = format!("{}/{repository}:v2", registry.host());
    haul.run(&["export", &reference, &second, "-o", "adir/"])
        .failure(&["2 images go into one tar", "-o adir/FILE"]);
}

/// haul's own files beside a bundle (a receipt, a recovery part, the checksum list), a bundle
/// compressed in a way haul does not read (xz), and a set named by its tar's name, given where a bundle is expected:
/// each is named with what takes it, never reported as a broken tar.
#[test]
fn files_that_are_not_a_bundle_are_named_with_what_takes_them() {
    let registry = Registry::start();
    let pushed = registry.push_app(&unique("test/not-a-bundle"), "v1", "not a bundle");
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
    std::fs::create_dir(dir.join("disc")).unwrap();
    haul.run(&[
        "export",
        &pushed.reference,
        "-o",
        "disc/v1.tar",
        "--split",
        "64K",
        "--parity",
        "1",
    ])
    .success();
    std::fs::write(dir.join("v1.tar.xz"), b"\xfd7zXZ\0 not read").unwrap();
    let dest = registry.host();
    let cases: [(&[&str], &[&str]); 7] = [
        (
            &["verify", "v1.receipt"],
            &["v1.receipt is a haul receipt", "--since v1.receipt"],
        ),
        (&["load", "v1.receipt"], &["v1.receipt is a haul receipt"]),
        (
            &["verify", "v1.tar.xz"],
            &["xz-compressed", "unxz -k v1.tar.xz"],
        ),
        (&["push", "v1.tar.xz", &dest], &["xz-compressed"]),
        (
            &[
                "export",
                &pushed.reference,
                "-o",
                "v2.tar",
                "--since",
                "v1.tar.xz",
            ],
            &["--since: v1.tar.xz is xz-compressed"],
        ),
        (
            &["verify", "disc/v1.tar.r01"],
            &["a recovery part of the parts set disc/v1.tar.parts"],
        ),
        (
            &["inspect", "disc/v1.tar.sha256"],
            &[
                "a checksum list",
                "name the set by its record: disc/v1.tar.parts",
            ],
        ),
    ];
    for (args, needles) in cases {
        let run = haul.run(args).failure(needles);
        assert!(
            !run.stderr.contains("numeric field"),
            "tar internals: {}",
            run.stderr
        );
    }
    // A tar of something else: not "not whole", not "do not carry it".
    std::fs::write(dir.join("notes.txt"), "notes\n").unwrap();
    let tarred = std::process::Command::new("tar")
        .args(["-cf", "notes.tar", "notes.txt"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(tarred.success());
    for args in [
        &["verify", "notes.tar"][..],
        &["load", "notes.tar"],
        &["push", "notes.tar", &dest],
    ] {
        let run = haul
            .run(args)
            .failure(&["notes.tar is a tar, but not an image bundle"]);
        assert!(!run.stderr.contains("not whole"), "{}", run.stderr);
    }
    // Only the set lies there: it is pointed at.
    haul.run(&["verify", "disc/v1.tar"])
        .failure(&["disc/v1.tar is not there, but the parts set disc/v1.tar.parts is"]);
    assert!(!dir.join("v2.tar").exists());
}
